"""`alignkit serve` over the tiny model, started as a user would on a free port and asked over real HTTP:
chat and text completions (streamed and not), models, errors, batching of concurrent requests; then the LLM
judge client and `alignkit judge --against gold` run against it end to end."""

import json
import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from cli_runner import cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_model):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "alignkit", "serve", str(tiny_model), "--port", str(port), "--max-batch", "8"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(f"{url}/v1/models", timeout=1).raise_for_status()
            break
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"alignkit serve did not start:\n{process.stdout.read()}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=10)


def chat_body(content="What is 2+2?", **fields):
    return {"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": 12,
            "temperature": 0, **fields}


def sse_events(response) -> list:
    lines = [line for line in response.text.split("\n") if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    return [json.loads(line[len("data: "):]) for line in lines[:-1]]


def test_models_and_chat(server):
    models = httpx.get(f"{server}/v1/models").json()
    assert [m["id"] for m in models["data"]] == ["tiny"] and models["object"] == "list"

    reply = httpx.post(f"{server}/v1/chat/completions", json=chat_body(n=2, temperature=1.0, seed=3)).json()
    assert reply["object"] == "chat.completion" and len(reply["choices"]) == 2
    for choice in reply["choices"]:
        assert choice["message"]["role"] == "assistant" and isinstance(choice["message"]["content"], str)
        assert choice["finish_reason"] in ("stop", "length")
    usage = reply["usage"]
    assert usage["prompt_tokens"] > 0 and 2 <= usage["completion_tokens"] <= 24
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    again = httpx.post(f"{server}/v1/chat/completions", json=chat_body(n=2, temperature=1.0, seed=3)).json()
    assert [c["message"] for c in again["choices"]] == [c["message"] for c in reply["choices"]]  # seeded

    one_token = httpx.post(f"{server}/v1/chat/completions", json=chat_body(max_tokens=1)).json()
    assert one_token["usage"]["completion_tokens"] == 1
    assert one_token["choices"][0]["finish_reason"] in ("length", "stop")


def test_streaming_matches_the_whole_answer(server):
    whole = httpx.post(f"{server}/v1/chat/completions", json=chat_body()).json()["choices"][0]
    streamed = httpx.post(f"{server}/v1/chat/completions",
                          json=chat_body(stream=True, stream_options={"include_usage": True}))
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = sse_events(streamed)
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    deltas = [e["choices"][0]["delta"] for e in events if e["choices"]]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert "".join(d.get("content", "") for d in deltas) == whole["message"]["content"]
    finishes = [e["choices"][0]["finish_reason"] for e in events if e["choices"]]
    assert finishes[-1] == whole["finish_reason"] and set(finishes[:-1]) == {None}
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] > 0


def test_text_completions(server):
    body = {"model": "tiny", "prompt": "User: hello\nAssistant:", "max_tokens": 6, "temperature": 0}
    reply = httpx.post(f"{server}/v1/completions", json=body).json()
    assert reply["object"] == "text_completion" and reply["usage"]["completion_tokens"] <= 6
    text = reply["choices"][0]["text"]
    events = sse_events(httpx.post(f"{server}/v1/completions", json={**body, "stream": True}))
    assert "".join(e["choices"][0]["text"] for e in events) == text
    stopped = httpx.post(f"{server}/v1/completions", json={**body, "max_tokens": 20, "stop": text[1:3]}).json()
    if text[1:3].strip():  # a stop string from the greedy answer itself ends it there
        assert stopped["choices"][0]["finish_reason"] == "stop" and text[1:3] not in stopped["choices"][0]["text"]


@pytest.mark.parametrize("path, body, status, param", [
    ("/v1/chat/completions", {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 404, "model"),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}, 400, "model"),
    ("/v1/chat/completions", {"model": "tiny", "messages": []}, 400, "messages"),
    ("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "robot", "content": "x"}]}, 400, "messages"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "temperature": -1}, 400, "temperature"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 0}, 400, "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 5000}, 400, "max_tokens"),
    ("/v1/completions", {"model": "tiny", "prompt": "hi", "n": 2.5}, 400, "n"),
    ("/v1/completions", {"model": "tiny", "prompt": 3}, 400, "prompt"),
])
def test_errors_are_openai_style(server, path, body, status, param):
    response = httpx.post(f"{server}{path}", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["message"] and error["type"] == "invalid_request_error"


def test_concurrent_requests_are_batched(server):
    before = httpx.get(f"{server}/stats").json()
    bodies = [chat_body(f"What is {i}+{i}?", max_tokens=24) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda b: httpx.post(f"{server}/v1/chat/completions", json=b, timeout=60), bodies))
    assert all(r.status_code == 200 for r in replies)
    after = httpx.get(f"{server}/stats").json()
    assert after["sequences"] - before["sequences"] == 8
    new_calls = {int(size): calls - before["batch_sizes"].get(size, 0) for size, calls in after["batch_sizes"].items()}
    assert sum(size * calls for size, calls in new_calls.items()) == 8
    assert max(size for size, calls in new_calls.items() if calls > 0) > 1  # several requests sampled at once


def test_judge_client_end_to_end(server, world_dir, tmp_path):
    from alignkit.eval.judge_run import read_pairs
    from alignkit.rewards.judge import make_judge

    prompts, chosen, rejected = (x[:4] for x in read_pairs(str(world_dir / "prefs_eval.jsonl")))
    judge = make_judge("tiny", url=f"{server}/v1", max_tokens=24, parse_retries=1, cache=str(tmp_path / "c"))
    result = judge.pairwise(prompts, chosen, rejected)
    counts = judge.counts
    assert counts.questions == 8 and counts.request_failed == 0
    # every judgment either parsed or is counted as unparsed; a pair is judged only if both orders parsed
    parsed = sum(v is not None for v in result.forward + result.backward)
    assert parsed + counts.unparsed == 8
    assert len(result.judged) <= parsed // 2
    assert judge.backend.stats.requests == 8 + counts.parse_retries

    out = tmp_path / "judge.json"
    shown = cli("judge", str(world_dir / "prefs_eval.jsonl"), "--model", "tiny", "--judge-url", f"{server}/v1",
                "--against", "gold", "--limit", "3", "--max-tokens", "16", "--parse-retries", "0",
                "--out", str(out))
    summary = json.loads(out.read_text())["summary"]
    assert summary["pairs"] == 3 and summary["gold"]["world_seed"] == 0
    assert summary["failures"]["questions"] == 6
    assert summary["failures"]["unparsed"] + sum(
        (p["verdict_forward"] is not None) + (p["verdict_swapped"] is not None)
        for p in json.loads(out.read_text())["pairs"]) == 6
    assert "agreement with gold" in shown.stdout


def test_eval_with_a_local_llm_judge(tiny_model, world_dir, tmp_path):
    """`alignkit eval --judge llm` with a local model folder as the judge (the local backend): the pairs are
    judged both ways round and eval.json counts the judge's failures (a random tiny model fails most)."""
    out = tmp_path / "eval"
    shown = cli("eval", str(tiny_model), str(world_dir / "prefs_eval.jsonl"), "--baseline-column", "chosen",
                "--judge", "llm", "--judge-model", str(tiny_model), "--limit", "3", "--max-new-tokens", "4",
                "--out", str(out))
    result = json.loads((out / "eval.json").read_text())
    assert result["judge"].startswith("llm judge") and result["position_swap"]["swapped"] is True
    failures = result["judge_failures"]
    assert failures["questions"] == 6 and failures["request_failed"] == 0
    assert failures["parse_retries"] <= 2 * failures["questions"]
    if failures["unparsed"]:
        assert "read as ties" in shown.stdout
