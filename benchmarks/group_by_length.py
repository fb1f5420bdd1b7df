"""Reward-model training on the demo's pairs with and without `data.group_by_length`.

    alignkit demo                                    # or any finished demo folder
    python benchmarks/group_by_length.py --demo runs/demo

Reruns the demo's own reward stage (its saved config.yaml) twice, once as it was and once with
data.group_by_length=true, in separate folders under benchmarks/.work/, and prints for each: the share of
real (non-padding) tokens in the rows the steps would see, the training seconds, tokens/s and the final
agreement with the gold judge on the held-out pairs. It also counts the rows a batch of rankings scores:
each distinct response once. This is a benchmark, not a test: numbers depend on the machine. Results go in
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import alignkit
from alignkit.config import load_config
from alignkit.data.io import read_rows
from alignkit.data.tokenize import tokenize_preference
from alignkit.models.load import load_tokenizer
from alignkit.recipes.reward import collate_reward, group_by_prompt
from alignkit.train.batches import BatchPlan
from alignkit.train.loop import example_length

WORK = Path(__file__).resolve().parent / ".work" / "group_by_length"


def real_token_share(pairs: list[dict], plan: BatchPlan, steps: int) -> float:
    """Real tokens / padded tokens over the first `steps` steps' batches (rows padded to the longest)."""
    real = padded = 0
    for step in range(steps):
        for ids in plan.micro_batches(step):
            batch = collate_reward([[pairs[i]] for i in ids], pad_id=0)
            real += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
    return real / padded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", default="runs/demo", help="a finished `alignkit demo` folder")
    args = parser.parse_args()
    config = Path(args.demo) / "reward" / "config.yaml"
    cfg = load_config("reward", config)
    tokenizer = load_tokenizer(cfg.model)
    pairs, _ = tokenize_preference(read_rows(cfg.data.train), tokenizer, cfg.data.max_length, "error")
    lengths = [example_length(p) for p in pairs]
    steps = cfg.train.max_steps
    results = {}
    for grouped in (False, True):
        plan = BatchPlan(len(pairs), cfg.train.batch_size, 1, seed=cfg.seed,
                         lengths=lengths if grouped else None)
        run = alignkit.run("reward", str(config), f"output_dir={WORK}", f"name=grouped_{grouped}",
                           f"data.group_by_length={str(grouped).lower()}")
        lines = [json.loads(x) for x in (run.path / "metrics.jsonl").read_text().splitlines()]
        train = [x for x in lines if "elapsed_s" in x][-1]
        agreement = [x["eval/accuracy"] for x in lines if "eval/accuracy" in x][-1]
        results[f"group_by_length={grouped}"] = {
            "real_token_share": round(real_token_share(pairs, plan, steps), 3),
            "train_seconds": round(train["elapsed_s"], 1), "tokens_per_s": round(train["tokens_per_s"]),
            "gold_agreement": agreement}
    ranked = Path(cfg.data.train).with_name("ranked.jsonl")
    if ranked.is_file():
        ranked_pairs, _ = tokenize_preference(read_rows(ranked), tokenizer, cfg.data.max_length, "error")
        groups = group_by_prompt(ranked_pairs)[:16]
        batch = collate_reward(groups, pad_id=0)
        results["rankings"] = {"rankings": len(groups), "pairs": batch["num_pairs"],
                               "rows_scored": batch["input_ids"].shape[0],
                               "rows_if_per_pair": 2 * batch["num_pairs"]}
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
