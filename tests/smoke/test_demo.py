"""`alignkit demo` end to end at the smallest size: every stage of the bundled pipeline runs, each method is
compared with SFT by the gold judge, and the summary holds the win rates."""

import json

from alignkit.demo.pipeline import METHODS, run_demo

EVAL = {"limit": 30}
TINY = {  # dotted overrides per stage of configs/demo.yaml
    "data": {"scale": 0.1},
    "tiny-model": {"size": "100k", "vocab_size": 512},
    "sft": {"train.epochs": 1.0},
    "reward": {"train.max_steps": 10},
    "reward_biased": {"train.max_steps": 10},
    "dpo": {"train.epochs": 0.2},
    "ppo": {"train.max_steps": 3},
    "grpo": {"train.max_steps": 2},
    "ppo_hacking": {"train.max_steps": 3, "train.save_every": 1},
    "overopt": {"limit": 30},
    "eval_dpo": EVAL, "eval_ppo": EVAL, "eval_grpo": EVAL,
}
# A 100k-parameter judge answers "Verdict: A" to everything, so every pair reconciles to a tie; sampling its
# answers (temperature 1) decides some pairs at random: noise labels, enough to run the stages after it.
RLAIF = {"judge": {"train.max_steps": 80, "train.batch_size": 8, "train.lr": 3.0e-3,
                   "data.max_length": 448},  # a 512-token vocabulary: longer chats
         "ai_labels": {"temperature": 1.0}, "dpo_ai": {"train.epochs": 0.2}, "eval_dpo_ai": EVAL}


def test_smallest_demo_runs_every_stage_and_reports_win_rates(tmp_path):
    out = tmp_path / "demo"
    run_demo(out, overrides=TINY, threads=1)
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"pretrained", "sft", *METHODS}
    for method in METHODS:
        rate = results["win_rates_vs_sft"][method]["win_rate"]
        assert 0 <= rate["ci_low"] <= rate["win_rate"] <= rate["ci_high"] <= 1
        assert rate["wins"] + rate["ties"] + rate["losses"] == 30
        assert (out / f"eval_{method}" / "eval.json").is_file()
    assert 0 <= results["reward_model_gold_agreement"] <= 1
    assert set(results["grpo_verified_accuracy"]) == {"sft", "grpo"}  # held-out accuracy, before and after
    summary = (out / "summary.md").read_text()
    assert "gold win rate vs SFT" in summary and all(f"| {m} |" in summary for m in METHODS)
    # the reward-hacking variant: every checkpoint's proxy and gold reward against KL
    points = json.loads((out / "ppo_hacking" / "overoptimization.json").read_text())
    assert [p["step"] for p in points] == [0, 1, 2, 3]
    assert points[0]["kl"] == 0.0 and all({"kl", "proxy", "gold"} <= set(p) for p in points)
    html = (out / "report" / "report.html").read_text()
    assert "win rate" in html.lower() and "Over-optimisation" in html
    stages = {s["name"] for s in results["stages"]}
    assert stages == {"data", "tiny-model", "pretrain", "sft", "reward", *METHODS, "reward_biased", "ppo_hacking",
                      "overopt", *(f"eval_{m}" for m in METHODS), "report"}
    # a rerun skips every finished stage; with --rlaif it runs only the RLAIF stages
    run_demo(out, overrides=TINY, threads=1)
    again = json.loads((out / "results.json").read_text())
    assert all(stage["skipped"] for stage in again["stages"])
    assert again["win_rates_vs_sft"] == results["win_rates_vs_sft"]

    run_demo(out, overrides={**TINY, **RLAIF}, threads=1, rlaif=True)
    rlaif = json.loads((out / "results.json").read_text())
    ran = [s["name"] for s in rlaif["stages"] if not s["skipped"]]
    assert ran == ["judge_data", "judge", "judge_vs_gold", "ai_labels", "dpo_ai", "eval_dpo_ai",
                   "report_rlaif"]
    assert rlaif["win_rates_vs_sft"]["dpo"] == results["win_rates_vs_sft"]["dpo"]
    assert "dpo_ai" in rlaif["win_rates_vs_sft"] and "dpo_ai" in rlaif["models"]
    feedback = rlaif["ai_feedback"]
    assert 0 <= feedback["judge_gold_agreement"] <= 1
    assert 0 < feedback["ai_label_rows"] <= feedback["ai_label_pairs"]
    assert "AI feedback" in (out / "summary.md").read_text()
    assert "dpo_ai" in (out / "report_rlaif" / "report.html").read_text()
