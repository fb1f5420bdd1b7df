"""`alignkit demo`: the bundled pipeline, offline, on the demo world.

Stages, each skipped when its output already exists: demo data -> byte-level BPE tokenizer + tiny Llama
model -> pretrain -> SFT -> greedy answers to held-out prompts from the pretrained and the SFT model, scored
by the gold judge (sampled with alignkit's generation engine). It ends with a results table and
`summary.md` in the output folder. (Reward models,
DPO, PPO and the HTML report join as those recipes land.)
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
    False: dict(size="1m", scale=1.0, pretrain_epochs=1.0, sft_epochs=2.0, eval_prompts=300),
    True: dict(size="1m", scale=0.5, pretrain_epochs=1.0, sft_epochs=1.0, eval_prompts=120),
}


@dataclass
class Stage:
    name: str
    seconds: float
    skipped: bool


def run_demo(out: Path, quick: bool = False, seed: int = 0) -> dict:
    """Run every stage into `out`; return the results (also written to out/results.json and summary.md)."""
    out = Path(out)
    s = SETTINGS[quick]
    stages: list[Stage] = []

    data = out / "data"
    stages.append(_stage("demo data", data / "manifest.json", lambda: _write_data(data, seed, s["scale"])))
    tiny = out / "tiny-model"
    stages.append(_stage("tiny model", tiny / "config.json", lambda: _make_model(data, tiny, s["size"], seed)))
    pretrain_dir = out / "runs" / "pretrain"
    stages.append(_stage("pretrain", pretrain_dir / "final" / "config.json",
                         lambda: _train("pretrain", _pretrain_config(out, tiny, data, s, seed))))
    sft_dir = out / "runs" / "sft"
    stages.append(_stage("sft", sft_dir / "final" / "config.json",
                         lambda: _train("sft", _sft_config(out, pretrain_dir / "final", data, s, seed))))

    started = time.perf_counter()
    prompts = _eval_prompts(data, s["eval_prompts"])
    results = {name: judge_model(path, prompts, seed)
               for name, path in (("pretrained", pretrain_dir / "final"), ("sft", sft_dir / "final"))}
    stages.append(Stage("evaluation", time.perf_counter() - started, False))

    summary = format_summary(results, stages)
    (out / "results.json").write_text(json.dumps({"models": results, "stages": [vars(x) for x in stages]}, indent=2))
    (out / "summary.md").write_text(summary)
    print("\n" + summary)
    print(f"results: {out / 'results.json'}   summary: {out / 'summary.md'}")
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


def _make_model(data: Path, tiny: Path, size: str, seed: int) -> None:
    from alignkit.models.tiny import make_tiny_model

    make_tiny_model(data / "pretrain.jsonl", tiny, size=size, vocab_size=1024, seed=seed)


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


def _train(recipe: str, raw: dict) -> None:
    from importlib import import_module

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


def format_summary(results: dict, stages: list[Stage]) -> str:
    """A markdown table of gold scores per category and model, then stage timings."""
    names = list(results)
    categories = sorted({c for r in results.values() for c in r["per_category"]})
    lines = ["## alignkit demo: gold-judge scores on held-out prompts (0 to 1, higher is better)", "",
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
