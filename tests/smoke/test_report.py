"""`alignkit report` on real folders: a short SFT run and its evaluation against the untrained model, through
the command line; the page shows the run's curves and the evaluation's win rate, and the two are one entry."""

import base64
import json

from cli_runner import cli

import alignkit
from alignkit.eval.run import EvalSettings, evaluate


def test_report_of_a_real_run_and_its_evaluation(tmp_path, tiny_model, world_dir):
    run = alignkit.run(
        "sft", None, "name=sft", f"output_dir={tmp_path / 'runs'}", f"model.path={tiny_model}",
        f"data.train={world_dir / 'sft.jsonl'}", f"data.eval={world_dir / 'sft_eval.jsonl'}",
        "data.max_length=128", "train.lr=3e-3", "train.batch_size=16", "train.max_steps=40",
        "train.eval_every=20", "train.threads=1", "train.warmup_steps=5",
    ).path
    result = evaluate(EvalSettings(policy=str(run / "final"), prompts=str(world_dir / "prompts_eval.jsonl"),
                                   baseline=str(tiny_model), out=str(tmp_path / "eval"), limit=12,
                                   max_new_tokens=24))

    out = tmp_path / "report" / "report.html"
    printed = cli("report", str(run), str(tmp_path / "eval"), "--out", str(out))
    w = result["win_rate"]
    interval = f"[{100 * w['ci_low']:.1f}%, {100 * w['ci_high']:.1f}%]"
    row = f"| sft | tiny | gold | {100 * w['win_rate']:.1f}% {interval} |"
    assert row in printed.stdout  # the terminal summary, as pasted
    assert row in (tmp_path / "report" / "report.md").read_text()
    assert "## alignkit report: 1 run(s)" in printed.stdout  # the evaluation is paired with its run
    assert "training run (sft)" in printed.stdout and "evaluation of" in printed.stdout

    page = (tmp_path / "report" / "report.html").read_text()
    plots = tmp_path / "report" / "plots"
    assert sorted(p.name for p in plots.iterdir()) == ["sft-curves.png", "win_rates.png"]
    for png in plots.iterdir():
        assert base64.b64encode(png.read_bytes()).decode() in page
    assert f"<b>{100 * w['win_rate']:.1f}%</b>" in page
    samples = [json.loads(line) for line in (tmp_path / "eval" / "samples.jsonl").read_text().splitlines()]
    shown = min(8, len(samples))
    assert page.count("class=\"verdict-") == shown  # one row per sample shown, side by side
    assert "http://" not in page and "https://" not in page
