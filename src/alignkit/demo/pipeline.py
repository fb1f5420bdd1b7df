"""`alignkit demo`: the bundled pipeline (alignkit/configs/demo.yaml), offline, on the demo world.

`alignkit pipeline` runs the stages, each skipped when its output already exists: demo data -> byte-level BPE
tokenizer + tiny Llama model -> pretrain -> SFT -> reward model (from the simulated annotators' votes) -> DPO,
PPO (with that reward model) and GRPO (verified answers, and the reward model where there is no answer to
check) from the SFT model -> a reward-hacking run (a reward model from length-biased annotators, weak KL)
traced checkpoint by checkpoint -> each method against SFT on held-out prompts, judged by the gold judge
(alignkit eval) -> report.html. This module then scores every model's greedy answers with the gold judge per
category and writes the results table: summary.md and results.json.
"""

from __future__ import annotations

import json
from collections import defaultdict
from importlib import resources
from pathlib import Path

from alignkit.pipeline import TOOLS, StageResult, load_pipeline, run_pipeline

# --quick: the same stages, smaller (dotted overrides per stage, over configs/demo.yaml).
QUICK = {
    "data": {"scale": 0.5},
    "pretrain": {"train.epochs": 2.0},
    "sft": {"train.epochs": 1.0},
    "reward": {"train.max_steps": 60},
    "reward_biased": {"train.max_steps": 30},
    "dpo": {"train.epochs": 0.5},
    "ppo": {"train.max_steps": 30},
    "grpo": {"train.max_steps": 10},
    "ppo_hacking": {"train.max_steps": 14, "train.save_every": 2},
    "overopt": {"limit": 40},
    "eval_dpo": {"limit": 120}, "eval_ppo": {"limit": 120}, "eval_grpo": {"limit": 120},
}
QUICK_RLAIF = {"judge": {"train.epochs": 0.5}, "dpo_ai": {"train.epochs": 0.5}, "eval_dpo_ai": {"limit": 120}}
# The aligned models, each compared with the SFT model by the gold judge at the end.
METHODS = ("dpo", "ppo", "grpo")


def bundled_config(name: str = "demo") -> Path:
    return Path(str(resources.files("alignkit") / "configs" / f"{name}.yaml"))


def rlaif_config(out: Path) -> Path:
    """The --rlaif pipeline (rlaif_pipeline_text) written to out/demo_rlaif_pipeline.yaml, so the run shows
    what it ran."""
    from alignkit.data.io import write_text

    return write_text(out / "demo_rlaif_pipeline.yaml", rlaif_pipeline_text())


def rlaif_pipeline_text() -> str:
    """configs/demo.yaml with configs/demo_rlaif.yaml's stages after its own (whose report takes the place of
    demo.yaml's), as one runnable pipeline file (also what `alignkit init demo_rlaif` writes)."""
    import yaml

    demo = yaml.safe_load(bundled_config().read_text(encoding="utf-8"))
    extra = yaml.safe_load(bundled_config("demo_rlaif").read_text(encoding="utf-8"))
    demo["stages"] = [s for s in demo["stages"] if s["recipe"] != "report"] + extra["stages"]
    return ("# alignkit demo --rlaif as one pipeline: configs/demo.yaml, then configs/demo_rlaif.yaml's stages\n"
            "# (its report replaces demo.yaml's). The comments explaining each stage are in those two files.\n"
            "# Run it with `alignkit pipeline demo_rlaif.yaml`.\n"
            + yaml.safe_dump(demo, sort_keys=False, width=110))


def run_demo(out: Path, quick: bool = False, overrides: dict[str, dict] | None = None,
             threads: int | None = None, rlaif: bool = False) -> dict:
    """Run configs/demo.yaml into `out`; return the results (also written to out/results.json and summary.md).

    `overrides` adds dotted overrides per stage, over QUICK when `quick` (the tests run a tiny version);
    `threads` sets every training stage's torch threads; `rlaif` adds configs/demo_rlaif.yaml's stages (a
    trained judge's labels -> DPO, against DPO on the simulated human labels)."""
    out = Path(out)
    config = rlaif_config(out) if rlaif else bundled_config()
    stage_overrides: dict[str, dict] = defaultdict(dict)
    if threads is not None:
        for stage in load_pipeline(config).stages:
            if stage.recipe not in TOOLS:
                stage_overrides[stage.name]["train.threads"] = threads
    for extra in (QUICK if quick else {}, QUICK_RLAIF if quick and rlaif else {}, overrides or {}):
        for name, values in extra.items():
            stage_overrides[name].update(values)
    stages = run_pipeline(config, root=out, overrides=dict(stage_overrides))

    eval_settings = json.loads((out / "eval_dpo" / "eval.json").read_text())
    seed = json.loads((out / "data" / "manifest.json").read_text())["seed"]
    prompts = _eval_prompts(out / "data", eval_settings["num_prompts"])
    methods = (*METHODS, "dpo_ai") if rlaif else METHODS
    models = {"pretrained": out / "pretrain" / "final", "sft": out / "sft" / "final",
              **{m: out / m / "final" for m in methods}}
    results = {name: judge_model(path, prompts, seed) for name, path in models.items()}
    win_rates = {m: _versus_sft(out / f"eval_{m}") for m in methods}
    agreement = _last_metric(out / "reward", "eval/accuracy")
    accuracy = _verified_before_after(out / "grpo")
    feedback = _ai_feedback(out) if rlaif else None

    summary = format_summary(results, stages, win_rates, agreement, accuracy, feedback)
    (out / "results.json").write_text(json.dumps(
        {"models": results, "win_rates_vs_sft": win_rates, "reward_model_gold_agreement": agreement,
         "grpo_verified_accuracy": accuracy, **({"ai_feedback": feedback} if feedback else {}),
         "stages": [{"name": x.name, "seconds": x.seconds, "skipped": x.skipped} for x in stages]}, indent=2))
    (out / "summary.md").write_text(summary)
    print("\n" + summary)
    print(f"results: {out / 'results.json'}   summary: {out / 'summary.md'}")
    report = out / ("report_rlaif" if rlaif else "report") / "report.html"
    print(f"report: {report}  (open it in a browser: plots, win rates, samples side by side)")
    return results


def _ai_feedback(out: Path) -> dict:
    """The trained judge against gold on held-out pairs; its labels of the human-labelled pairs against gold,
    and the human labels against gold on the same pairs (those both the judge and gold decide)."""
    judge = json.loads((out / "judge_vs_gold" / "judge.json").read_text())["summary"]
    labels = json.loads((out / "ai_labels" / "judge.json").read_text())
    # in the pairs file "a" is the humans' chosen reply: gold == "a" means the humans agree with gold
    both = [p for p in labels["pairs"] if p["verdict"] in ("a", "b") and p["gold"] in ("a", "b")]
    return {"judge_gold_agreement": judge["gold"]["agreement"],
            "judge_position_bias": judge["position_bias_rate"], "judge_tie_rate": judge["tie_rate"],
            "ai_label_rows": labels["summary"]["prefs"]["rows"],
            "ai_label_pairs": labels["summary"]["pairs"], "pairs_both_decide": len(both),
            "ai_label_gold_agreement": sum(p["verdict"] == p["gold"] for p in both) / max(1, len(both)),
            "human_label_gold_agreement": sum(p["gold"] == "a" for p in both) / max(1, len(both))}


def _versus_sft(eval_dir: Path) -> dict:
    result = json.loads((eval_dir / "eval.json").read_text())
    return {"win_rate": result["win_rate"], "length_controlled": result["length_controlled"],
            "kl": result["kl"]}


def _verified_before_after(grpo_dir: Path) -> dict | None:
    """GRPO's verifiable objective on held-out prompts: the share of greedy answers verified right at step 0
    (the SFT model) and at the end (the `verified` term alone: the reward model scores the other prompts)."""
    values = [json.loads(line).get("eval/rewards/verified")
              for line in (grpo_dir / "metrics.jsonl").read_text().splitlines()]
    values = [v for v in values if v is not None]
    return {"sft": values[0], "grpo": values[-1]} if len(values) >= 2 else None


def _last_metric(run_dir: Path, key: str) -> float | None:
    values = [json.loads(line).get(key) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    values = [v for v in values if v is not None]
    return values[-1] if values else None


def _eval_prompts(data: Path, limit: int) -> list[dict]:
    rows = [json.loads(line) for line in (data / "prompts_eval.jsonl").read_text().splitlines() if line.strip()]
    return rows[:limit]


def judge_model(model_dir: Path, prompts: list[dict], seed: int, max_new_tokens: int = 64) -> dict:
    """Greedy answers to `prompts`, scored by the gold judge: mean score overall and per category."""
    from alignkit.demo.judge import gold_score
    from alignkit.demo.world import World

    world = World(seed)
    answers, stopped = greedy_answers(model_dir, [p["prompt"] for p in prompts], max_new_tokens)
    by_category: dict[str, list[float]] = defaultdict(list)
    for row, answer in zip(prompts, answers):
        by_category[row["category"]].append(gold_score(world, row["prompt"], answer))
    scores = [x for values in by_category.values() for x in values]
    return {
        "gold_score": sum(scores) / len(scores),
        "eos_rate": sum(stopped) / len(stopped),
        "per_category": {k: sum(v) / len(v) for k, v in sorted(by_category.items())},
        "samples": [{"prompt": p["prompt"], "answer": a} for p, a in zip(prompts[:8], answers[:8])],
    }


def greedy_answers(model_dir: Path, prompts: list[str], max_new_tokens: int, batch_size: int = 64):
    """Greedy completions of prompts (rendered with the model's chat template), and whether each ended with EOS."""
    from alignkit.eval.sampling import sample_responses
    from alignkit.generation.sampler import SamplingSettings

    settings = SamplingSettings(max_new_tokens=max_new_tokens, temperature=0.0)
    responses = sample_responses(str(model_dir), prompts, settings, batch_size)
    # no stop strings here: not truncated means it emitted EOS
    return responses.texts, [not truncated for truncated in responses.truncated]


def format_summary(results: dict, stages: list[StageResult], win_rates: dict | None = None,
                   reward_agreement: float | None = None, grpo_accuracy: dict | None = None,
                   feedback: dict | None = None) -> str:
    """Markdown: each method's gold win rate against SFT, gold scores per category and model, stage timings."""
    names = list(results)
    categories = sorted({c for r in results.values() for c in r["per_category"]})
    lines = []
    if win_rates:
        lines += ["## alignkit demo: each method against the SFT model, judged by the gold judge", "",
                  "| method | gold win rate vs SFT (95% CI) | length-controlled | wins / ties / losses | KL to SFT |",
                  "|---|---|---|---|---|"]
        for method, w in win_rates.items():
            r = w["win_rate"]
            kl = w["kl"]["mean"] if w.get("kl") else float("nan")
            lines.append(f"| {method} | {r['win_rate']:.1%} [{r['ci_low']:.1%}, {r['ci_high']:.1%}] | "
                         f"{w['length_controlled']['win_rate']:.1%} | {r['wins']} / {r['ties']} / {r['losses']} | "
                         f"{kl:.2f} |")
        if reward_agreement is not None:
            lines += ["", f"Reward model: agrees with the gold judge on {reward_agreement:.1%} of held-out pairs."]
        if feedback is not None:
            f = feedback
            lines += ["", "AI feedback (dpo_ai is DPO on a trained judge's labels, dpo on the simulated "
                      f"humans'): the judge agrees with gold on {f['judge_gold_agreement']:.1%} of held-out "
                      f"pairs (position bias {f['judge_position_bias']:.1%}, ties {f['judge_tie_rate']:.1%}) "
                      f"and decided {f['ai_label_rows']:,} of the {f['ai_label_pairs']:,} human-labelled "
                      f"pairs. On the {f['pairs_both_decide']:,} that it and gold both decide, its labels "
                      f"agree with gold on {f['ai_label_gold_agreement']:.1%}, the humans' on "
                      f"{f['human_label_gold_agreement']:.1%}."]
        if grpo_accuracy is not None:
            lines += ["", "GRPO's own objective, the share of greedy answers verified right, on held-out "
                      f"prompts with a verifiable answer: {grpo_accuracy['sft']:.1%} (SFT) -> "
                      f"{grpo_accuracy['grpo']:.1%}."]
        lines.append("")
    lines += ["## Gold-judge scores on held-out prompts (0 to 1, higher is better)", "",
              "| category | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for c in categories:
        lines.append(f"| {c} | " + " | ".join(f"{results[n]['per_category'].get(c, 0):.3f}" for n in names) + " |")
    lines.append("| **all** | " + " | ".join(f"**{results[n]['gold_score']:.3f}**" for n in names) + " |")
    lines.append("| stops with EOS | " + " | ".join(f"{results[n]['eos_rate']:.0%}" for n in names) + " |")
    lines += ["", "| stage | seconds |", "|---|---|"]
    lines += [f"| {st.name} | {'skipped' if st.skipped else f'{st.seconds:.1f}'} |" for st in stages]
    sample = results[names[-1]]["samples"][:4]
    lines += ["", f"Samples from `{names[-1]}`:", ""]
    lines += [f"- **{x['prompt']}** → {x['answer']}" for x in sample]
    return "\n".join(lines) + "\n"
