"""`alignkit demo`: the bundled pipeline, offline, on the demo world.

Stages, each skipped when its output already exists: demo data -> byte-level BPE tokenizer + tiny Llama
model -> pretrain -> SFT -> reward model (from the simulated annotators' votes) -> DPO, PPO (with that reward
model) and GRPO (exact-match rewards) from the SFT model -> evaluation: greedy answers to held-out prompts
scored by the gold judge, and each method's gold win rate against SFT (alignkit eval). It ends with a results
table, `summary.md` and `report.html` in the output folder.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from alignkit.config import CONFIGS, validate_config

# Model size, data scale and training length of the full demo and of --quick.
SETTINGS = {
    False: dict(size="1m", scale=1.0, pretrain_epochs=1.0, sft_epochs=2.0, eval_prompts=300,
                reward_steps=150, dpo_epochs=1.0, ppo_steps=120, grpo_steps=60),
    True: dict(size="1m", scale=0.5, pretrain_epochs=1.0, sft_epochs=1.0, eval_prompts=120,
               reward_steps=60, dpo_epochs=0.5, ppo_steps=30, grpo_steps=15),
}
# The aligned models, each compared with the SFT model by the gold judge at the end.
METHODS = ("dpo", "ppo", "grpo")


@dataclass
class Stage:
    name: str
    seconds: float
    skipped: bool


def run_demo(out: Path, quick: bool = False, seed: int = 0, settings: dict | None = None) -> dict:
    """Run every stage into `out`; return the results (also written to out/results.json and summary.md).

    `settings` overrides entries of SETTINGS[quick] (the tests run a tiny version)."""
    out = Path(out)
    s = {"vocab": 1024, "threads": None, **SETTINGS[quick], **(settings or {})}
    stages: list[Stage] = []

    data = out / "data"
    stages.append(_stage("demo data", data / "manifest.json", lambda: _write_data(data, seed, s["scale"])))
    tiny = out / "tiny-model"
    stages.append(_stage("tiny model", tiny / "config.json", lambda: _make_model(data, tiny, s, seed)))
    pretrain_dir = out / "runs" / "pretrain"
    stages.append(_stage("pretrain", pretrain_dir / "final" / "config.json",
                         lambda: _train("pretrain", _pretrain_config(out, tiny, data, s, seed), s["threads"])))
    sft_dir = out / "runs" / "sft"
    stages.append(_stage("sft", sft_dir / "final" / "config.json",
                         lambda: _train("sft", _sft_config(out, pretrain_dir / "final", data, s, seed), s["threads"])))

    sft_final = sft_dir / "final"
    reward_dir = out / "runs" / "reward"
    stages.append(_stage("reward model", reward_dir / "final" / "config.json",
                         lambda: _train("reward", _reward_config(out, sft_final, data, s, seed), s["threads"])))
    configs = {"dpo": lambda: _dpo_config(out, sft_final, data, s, seed),
               "ppo": lambda: _ppo_config(out, sft_final, reward_dir / "final", data, s, seed),
               "grpo": lambda: _grpo_config(out, sft_final, data, s, seed)}
    for method in METHODS:
        stages.append(_stage(method, out / "runs" / method / "final" / "config.json",
                             lambda m=method: _train(m, configs[m](), s["threads"])))

    # The reward-hacking variant: a reward model from the biased annotators (who favour long, list-heavy
    # answers), optimised with a weak KL penalty; its checkpoints trace proxy and gold reward against KL.
    biased_dir = out / "runs" / "reward_biased"
    stages.append(_stage("reward model (biased)", biased_dir / "final" / "config.json",
                         lambda: _train("reward", _reward_config(out, sft_final, data, s, seed, biased=True),
                                        s["threads"])))
    hacking_dir = out / "runs" / "ppo_hacking"
    stages.append(_stage("ppo (reward hacking)", hacking_dir / "overoptimization.json",
                         lambda: _reward_hacking(out, sft_final, biased_dir / "final", data, s, seed)))

    started = time.perf_counter()
    prompts = _eval_prompts(data, s["eval_prompts"])
    models = {"pretrained": pretrain_dir / "final", "sft": sft_final,
              **{m: out / "runs" / m / "final" for m in METHODS}}
    results = {name: judge_model(path, prompts, seed) for name, path in models.items()}
    win_rates = {m: _versus_sft(out, m, models[m], sft_final, reward_dir / "final", data, s, seed)
                 for m in METHODS}
    results["reward_model_gold_agreement"] = _last_metric(reward_dir, "eval/accuracy")
    stages.append(Stage("evaluation", time.perf_counter() - started, False))

    agreement = results.pop("reward_model_gold_agreement")
    summary = format_summary(results, stages, win_rates, agreement)
    (out / "results.json").write_text(json.dumps(
        {"models": results, "win_rates_vs_sft": win_rates, "reward_model_gold_agreement": agreement,
         "stages": [vars(x) for x in stages]}, indent=2))
    (out / "summary.md").write_text(summary)
    report = _report(out)
    print("\n" + summary)
    print(f"results: {out / 'results.json'}   summary: {out / 'summary.md'}")
    print(f"report: {report}  (open it in a browser: plots, win rates, samples side by side)")
    return results


def _stage(name: str, done_marker: Path, action) -> Stage:
    if done_marker.exists():
        print(f"[demo] {name}: already done ({done_marker.parent}), skipped")
        return Stage(name, 0.0, True)
    print(f"[demo] {name} ...")
    started = time.perf_counter()
    action()
    return Stage(name, time.perf_counter() - started, False)


def _write_data(data: Path, seed: int, scale: float) -> None:
    from alignkit.demo.build import write_demo_data

    write_demo_data(data, seed=seed, scale=scale)


def _make_model(data: Path, tiny: Path, s: dict, seed: int) -> None:
    from alignkit.models.tiny import make_tiny_model

    make_tiny_model(data / "pretrain.jsonl", tiny, size=s["size"], vocab_size=s["vocab"], seed=seed)


def _pretrain_config(out: Path, tiny: Path, data: Path, s: dict, seed: int) -> dict:
    return {
        "name": "pretrain", "output_dir": str(out / "runs"), "seed": seed,
        "model": {"path": str(tiny)},
        "data": {"train": str(data / "pretrain.jsonl"), "eval_fraction": 0.02, "max_length": 128},
        "train": {"lr": 3e-3, "warmup_steps": 20, "min_lr_ratio": 0.1, "weight_decay": 0.1,
                  "adam_betas": [0.9, 0.95], "batch_size": 32, "epochs": s["pretrain_epochs"], "log_every": 10},
    }


def _sft_config(out: Path, base: Path, data: Path, s: dict, seed: int) -> dict:
    return {
        "name": "sft", "output_dir": str(out / "runs"), "seed": seed,
        "model": {"path": str(base)},
        "data": {"train": str(data / "sft.jsonl"), "eval": str(data / "sft_eval.jsonl"), "max_length": 192},
        "train": {"lr": 1e-3, "warmup_steps": 10, "min_lr_ratio": 0.1, "batch_size": 32,
                  "epochs": s["sft_epochs"], "log_every": 10, "eval_every": 100},
    }


def _reward_config(out: Path, sft: Path, data: Path, s: dict, seed: int, biased: bool = False) -> dict:
    # prefs.jsonl holds the simulated annotators' majority votes; prefs_eval.jsonl is labelled by the gold
    # judge, so eval/accuracy is the reward model's agreement with gold.
    train = data / ("prefs_biased.jsonl" if biased else "prefs.jsonl")
    return {
        "name": "reward_biased" if biased else "reward", "output_dir": str(out / "runs"), "seed": seed,
        "model": {"path": str(sft)},
        "data": {"train": str(train), "eval": str(data / "prefs_eval.jsonl"), "max_length": 192},
        "train": {"lr": 1e-3, "warmup_steps": 10, "min_lr_ratio": 0.1, "batch_size": 32,
                  "max_steps": s["reward_steps"], "log_every": 10, "eval_every": 50},
    }


def _dpo_config(out: Path, sft: Path, data: Path, s: dict, seed: int) -> dict:
    return {
        "name": "dpo", "output_dir": str(out / "runs"), "seed": seed, "model": {"path": str(sft)},
        "data": {"train": str(data / "prefs.jsonl"), "eval": str(data / "prefs_eval.jsonl"), "max_length": 192},
        "dpo": {"beta": 0.1, "nll_weight": 1.0},
        "train": {"lr": 1e-4, "warmup_steps": 10, "batch_size": 16, "epochs": s["dpo_epochs"], "log_every": 10},
    }


def _ppo_config(out: Path, sft: Path, reward: Path, data: Path, s: dict, seed: int) -> dict:
    return {
        "name": "ppo", "output_dir": str(out / "runs"), "seed": seed, "model": {"path": str(sft)},
        "data": {"train": str(data / "prompts.jsonl")}, "rollout": {"max_new_tokens": 48},
        # Without these the policy learned, within 30 steps, to stop ending its answers (the reward model
        # scores a cut-off answer at its last token) and drifted to a KL of ~24 nats from SFT.
        "ppo": {"reward_model": str(reward), "missing_eos_penalty": 1.0, "kl_coef": 0.2},
        "train": {"lr": 2e-5, "schedule": "constant", "batch_size": 16, "max_steps": s["ppo_steps"],
                  "log_every": 1},
    }


def _grpo_config(out: Path, sft: Path, data: Path, s: dict, seed: int) -> dict:
    # Verifiable rewards: the final answer against the prompt's `answer` column (arithmetic and knowledge
    # prompts; rows without an answer are masked out).
    return {
        "name": "grpo", "output_dir": str(out / "runs"), "seed": seed, "model": {"path": str(sft)},
        "data": {"train": str(data / "prompts.jsonl")}, "rollout": {"max_new_tokens": 32},
        "grpo": {"rewards": [{"function": "exact_match"}], "group_size": 8},
        "train": {"lr": 1e-4, "schedule": "constant", "batch_size": 16, "max_steps": s["grpo_steps"],
                  "log_every": 1},
    }


def _reward_hacking(out: Path, sft: Path, biased_reward: Path, data: Path, s: dict, seed: int) -> None:
    """PPO on the biased reward model with a weak KL penalty and no missing-EOS penalty, a checkpoint every
    few steps, then each checkpoint's proxy and gold reward against KL (overoptimization.json)."""
    from alignkit.eval.overopt import write_overoptimization

    raw = _ppo_config(out, sft, biased_reward, data, s, seed)
    raw["name"] = "ppo_hacking"
    raw["ppo"] = {"reward_model": str(biased_reward), "kl_coef": 0.01}
    raw["train"].update(lr=5e-5, save_every=max(1, s["ppo_steps"] // 6), keep_last=100)
    _train("ppo", raw, s["threads"])
    write_overoptimization(out / "runs" / "ppo_hacking", str(data / "prompts_eval.jsonl"), str(biased_reward),
                           limit=s["eval_prompts"], world_seed=seed)


def _report(out: Path) -> Path:
    """report.html over the training runs, the evaluations against SFT and the reward-hacking curve."""
    from alignkit.eval.report import build_report

    folders = [out / "runs" / name for name in ("sft", "reward", *METHODS, "ppo_hacking")]
    folders += [out / "eval" / method for method in METHODS]
    return build_report([f for f in folders if f.exists()], out / "report.html").html


def _versus_sft(out: Path, method: str, model: Path, sft: Path, reward: Path, data: Path, s: dict,
                seed: int) -> dict:
    """Greedy answers of `model` against the SFT model's on held-out prompts, judged by the gold judge."""
    from alignkit.eval.run import EvalSettings, evaluate

    result = evaluate(EvalSettings(
        policy=str(model), prompts=str(data / "prompts_eval.jsonl"), out=str(out / "eval" / method),
        baseline=str(sft), reward_model=str(reward), reference=str(sft), world_seed=seed,
        limit=s["eval_prompts"], max_new_tokens=64))
    return {"win_rate": result["win_rate"], "length_controlled": result["length_controlled"],
            "kl": result["kl"]}


def _last_metric(run_dir: Path, key: str) -> float | None:
    values = [json.loads(line).get(key) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    values = [v for v in values if v is not None]
    return values[-1] if values else None


def _train(recipe: str, raw: dict, threads: int | None = None) -> None:
    from importlib import import_module

    raw["train"]["threads"] = threads
    cfg = validate_config(CONFIGS[recipe], {"recipe": recipe, **raw}, source=f"demo {recipe} config")
    import_module(f"alignkit.recipes.{recipe}").main(cfg)


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


def format_summary(results: dict, stages: list[Stage], win_rates: dict | None = None,
                   reward_agreement: float | None = None) -> str:
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
