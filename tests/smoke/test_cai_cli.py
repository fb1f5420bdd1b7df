"""`alignkit cai` through the real command line on the tiny SFT model, both phases, and then `alignkit sft`
and `alignkit dpo` training on what it wrote.

The tiny model is policy and critic: its critiques and revisions are gibberish, so the test checks shapes and
counts, not quality. As a judge it would never write a `Verdict:` line (docs/ai_feedback.md measured it), and
prefs.jsonl would be empty; so the judge here is a stub OpenAI-compatible endpoint on 127.0.0.1 that prefers
the shorter response. That also exercises the endpoint backend, and a known rule lets the test check that the
chosen side is the one the judge preferred after the position swap."""

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cli_runner import cli

import alignkit
from alignkit.data.io import read_rows, write_jsonl
from alignkit.rewards.constitution import load_constitution


@pytest.fixture
def shorter_wins_judge():
    """An endpoint answering every pairwise question with the shorter response (tie when equally long)."""
    asked = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            user = body["messages"][1]["content"]
            a, b = (re.search(f"<response_{s}>\n(.*?)\n</response_{s}>", user, re.S).group(1) for s in "ab")
            asked.append(body)
            verdict = "A" if len(a) < len(b) else "B" if len(b) < len(a) else "tie"
            answer = {"choices": [{"message": {"role": "assistant", "content": f"Verdict: {verdict}"}}]}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", asked
    server.shutdown()
    server.server_close()


def test_cai_writes_sft_and_preference_data_that_train(tmp_path, sft_model, world_dir, shorter_wins_judge):
    url, asked = shorter_wins_judge
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, read_rows(str(world_dir / "prompts.jsonl")).rows[:6])
    cli("init", "cai", str(tmp_path))
    cli("cai", str(tmp_path / "cai.yaml"), f"model.path={sft_model}", f"data.prompts={prompts}",
        f"output_dir={tmp_path}", "threads=1", "sampling.max_new_tokens=24", "critic.max_tokens=24",
        "cai.rounds=2", "judge.model=stub", f"judge.url={url}", "cai.principles_per_pair=3")
    run = tmp_path / "cai"
    summary = json.loads((run / "summary.json").read_text())
    read = lambda name: [json.loads(line) for line in (run / name).read_text().splitlines()]  # noqa: E731

    # supervised phase: a chain per prompt, two rounds each, under principles of the default constitution
    names = {p.name for p in load_constitution()}
    chains, sft = read("chains.jsonl"), read("sft.jsonl")
    assert summary["prompts"] == {"read": 6, "kept": 6, "dropped_too_long": 0}
    assert len(chains) == 6 and all(len(c["rounds"]) == 2 for c in chains)
    assert {step["principle"] for c in chains for step in c["rounds"]} <= names
    s = summary["sft"]
    assert s["rows"] == len(sft) == 6 - s["unrevised"] and s["failed_requests"] == 0
    assert s["empty_revisions"] == sum(not step["used"] for c in chains for step in c["rounds"])
    assert [row["completion"] for row in sft] == [c["final"] for c in chains if c["revised"]]

    # AI-feedback phase: each pair judged under 3 principles, both ways round, by the stub (no retries)
    prefs, p = read("prefs.jsonl"), summary["prefs"]
    assert p["pairs_judged"] + p["skipped_identical"] + p["skipped_empty"] == 6
    assert p["judgments"] == 3 * p["pairs_judged"] and len(asked) == 2 * p["judgments"]
    assert len(prefs) == p["pairs_judged"] - p["undecided"] > 0
    for row in prefs:
        assert len(row["chosen"]) < len(row["rejected"])  # the stub's preference, through the swap
        assert row["verdicts"] == ["chosen"] * 3 and set(row["principles"]) <= names
    assert p["position_bias_rate"] == 0.0 and p["judge"]["unparsed"] == 0

    # the files are what sft and dpo train on, as they are
    common = ["train.max_steps=2", "train.batch_size=4", "train.threads=1", "data.max_length=160",
              f"output_dir={tmp_path}", f"model.path={sft_model}"]
    trained = [alignkit.run("sft", None, "name=sl-cai", f"data.train={run / 'sft.jsonl'}", *common),
               alignkit.run("dpo", None, "name=rl-cai", f"data.train={run / 'prefs.jsonl'}", *common)]
    for result in trained:
        assert result.stopped == "done" and (result.path / "final" / "config.json").is_file()
        assert math.isfinite(result.metrics["loss"])
