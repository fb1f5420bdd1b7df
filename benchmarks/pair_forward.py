"""Time one DPO policy step's forward+backward on a batch of preference pairs, three ways, on CPU.

  naive          separate layout (2B rows), full [2B, T, V] logits, float32 log_softmax over all of them
  separate       separate layout, output head on the scored positions only (models.forward.pair_logps)
  shared_prompt  B rows of [prompt | chosen | rejected] with a 4D mask, head on scored positions only

The timed steps of the methods interleave in one process, so a neighbour's load on a shared machine falls
on all of them alike; peak RSS is measured in a fresh process per method ("growth": the peak minus the RSS
once the model and batch are built, i.e. what a step adds: activations, logits, gradients). The model is
the "40m" preset of models/tiny.py at vocab 16,384 with random ids (no tokenizer needed), float32, train
mode.

    PYTHONPATH=src .venv/bin/python benchmarks/pair_forward.py [--threads 2] [--steps 5] [--attn sdpa]

Prints a table; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from alignkit.data.pairs import collate_pairs
from alignkit.models.forward import pair_logps
from alignkit.models.tiny import build_model

VOCAB, PAD, EOS = 16_384, 0, 1
PAIRS, PROMPT, RESPONSE, SPREAD, MAX_LENGTH = 8, 100, 80, 20, 256


class FakeVocab:
    """What build_model reads from a tokenizer."""

    pad_token_id, eos_token_id = PAD, EOS

    def __len__(self) -> int:
        return VOCAB


def make_examples(seed: int = 0) -> list[dict]:
    """B pairs with prompts of ~100 tokens and responses of ~80 (each +-20), every row within MAX_LENGTH."""
    generator = torch.Generator().manual_seed(seed)

    def around(mean: int) -> int:
        return mean + int(torch.randint(-SPREAD, SPREAD + 1, (), generator=generator))

    def ids(n: int) -> list[int]:
        return torch.randint(2, VOCAB, (n,), generator=generator).tolist()

    examples = []
    for _ in range(PAIRS):
        prompt, chosen, rejected = around(PROMPT), around(RESPONSE), around(RESPONSE)
        assert prompt + max(chosen, rejected) <= MAX_LENGTH
        chosen_ids, rejected_ids = ids(chosen - 1) + [EOS], ids(rejected - 1) + [EOS]
        examples.append({"prompt_ids": ids(prompt), "chosen_ids": chosen_ids, "rejected_ids": rejected_ids})
    return examples


def naive_logps(model, batch):
    """The textbook way: logits for every position of the 2B separate rows, log_softmax over all of them."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # [2B, T, V]
    logps = logits.float().log_softmax(-1)  # [2B, T, V] float32
    flat = logps.view(-1, logps.shape[-1])[batch["score_pos"]]  # [N, V]
    token = flat.gather(-1, batch["score_target"][:, None])[:, 0]  # [N]
    pairs = batch["num_pairs"]
    sums = token.new_zeros(2 * pairs).index_add(0, batch["score_side"] * pairs + batch["score_pair"], token)
    return sums[:pairs], sums[pairs:]


METHODS = {
    "naive": ("separate", naive_logps),
    "separate": ("separate", lambda model, batch: pair_logps(model, batch)[:2]),
    "shared_prompt": ("shared_prompt", lambda model, batch: pair_logps(model, batch)[:2]),
}


def rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak) of this process in MiB. Unlike getrusage's ru_maxrss, which a child
    inherits from the parent it was forked from, VmHWM belongs to this process's own memory map."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def step(model, logps_fn, batch) -> tuple[float, list[float]]:
    """One forward+backward of sum(chosen - rejected); (milliseconds, the first logps as a check)."""
    start = time.perf_counter()
    chosen, rejected = logps_fn(model, batch)
    (chosen - rejected).sum().backward()
    elapsed = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    return elapsed * 1000, chosen.tolist()[:2] + rejected.tolist()[:2]


def build(attn: str) -> torch.nn.Module:
    model = build_model(FakeVocab(), size="40m", max_position_embeddings=512, seed=0)
    model.config._attn_implementation = attn
    return model.train()


def time_methods(methods: list[str], steps: int, attn: str) -> dict[str, dict]:
    """Steps of every method interleaved in one process, so a neighbour's load falls on all of them alike."""
    model = build(attn)
    batches = {method: collate_pairs(make_examples(), PAD, METHODS[method][0]) for method in methods}
    results = {}
    for method in methods:  # warm-up
        _, first = step(model, METHODS[method][1], batches[method])
        shape = "x".join(map(str, batches[method]["input_ids"].shape))
        results[method] = {"shape": shape, "first": first, "times": []}
    for _ in range(steps):
        for method in methods:
            results[method]["times"].append(step(model, METHODS[method][1], batches[method])[0])
    return results


def peak_memory(method: str, attn: str) -> dict:
    """Peak RSS of a fresh process that builds the model and runs two steps of one method."""
    model = build(attn)
    batch = collate_pairs(make_examples(), PAD, METHODS[method][0])
    rss_before = rss_mb("VmRSS")
    for _ in range(2):
        step(model, METHODS[method][1], batch)
    peak = rss_mb("VmHWM")
    return {"peak": peak, "growth": peak - rss_before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps of each method after a warm-up")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--memory-of", help=argparse.SUPPRESS)  # child process: one method's peak RSS
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_of:
        print(json.dumps(peak_memory(args.memory_of, args.attn)))
        return
    methods = args.methods.split(",")
    load_before = os.getloadavg()[0]
    results = time_methods(methods, args.steps, args.attn)
    for method in methods:
        child = [sys.executable, __file__, "--memory-of", method, "--threads", str(args.threads)]
        out = subprocess.run([*child, "--attn", args.attn], check=True, capture_output=True, text=True).stdout
        results[method].update(json.loads(out.strip().splitlines()[-1]))
    print(
        f"B={PAIRS} pairs, prompt ~{PROMPT}, responses ~{RESPONSE} tokens, vocab {VOCAB:,}, 40m preset, "
        f"float32, attn={args.attn}, {args.threads} threads; {args.steps} interleaved steps each after a "
        f"warm-up; load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    columns = ("rows x T", "median ms", "min ms", "peak RSS MiB", "growth MiB")
    print(f"{'method':<14}" + "".join(f"{name:>14}" for name in columns))
    for method, r in results.items():
        print(
            f"{method:<14}{r['shape']:>14}{statistics.median(r['times']):>14.0f}{min(r['times']):>14.0f}"
            f"{r['peak']:>14.0f}{r['growth']:>14.0f}"
        )
    firsts = {method: [round(v, 3) for v in r["first"]] for method, r in results.items()}
    print("chosen[:2] + rejected[:2] logps:", firsts)


if __name__ == "__main__":
    main()
