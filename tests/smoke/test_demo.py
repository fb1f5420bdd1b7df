"""`alignkit demo` end to end at the smallest size: every stage runs, each method is compared with SFT by the
gold judge, and the summary holds the win rates."""

import json

from alignkit.demo.pipeline import METHODS, run_demo

TINY = dict(size="100k", vocab=512, scale=0.1, pretrain_epochs=1.0, sft_epochs=1.0, eval_prompts=30,
            reward_steps=10, dpo_epochs=0.2, ppo_steps=3, grpo_steps=2, threads=1)


def test_smallest_demo_runs_every_stage_and_reports_win_rates(tmp_path):
    out = tmp_path / "demo"
    run_demo(out, settings=TINY)
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"pretrained", "sft", *METHODS}
    for method in METHODS:
        rate = results["win_rates_vs_sft"][method]["win_rate"]
        assert 0 <= rate["ci_low"] <= rate["win_rate"] <= rate["ci_high"] <= 1
        assert rate["wins"] + rate["ties"] + rate["losses"] == 30
        assert (out / "eval" / method / "eval.json").is_file()
    assert 0 <= results["reward_model_gold_agreement"] <= 1
    summary = (out / "summary.md").read_text()
    assert "gold win rate vs SFT" in summary and all(f"| {m} |" in summary for m in METHODS)
    # the reward-hacking variant: every checkpoint's proxy and gold reward against KL
    points = json.loads((out / "runs" / "ppo_hacking" / "overoptimization.json").read_text())
    assert [p["step"] for p in points] == [0, 1, 2, 3]
    assert points[0]["kl"] == 0.0 and all({"kl", "proxy", "gold"} <= set(p) for p in points)
    html = (out / "report.html").read_text()
    assert "win rate" in html.lower() and "Over-optimisation" in html
    stages = {s["name"] for s in results["stages"]}
    assert {"reward model", "reward model (biased)", "ppo (reward hacking)", *METHODS, "evaluation"} <= stages
