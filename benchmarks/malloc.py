"""Training steps with glibc's malloc against tcmalloc (what the `alignkit` command preloads when it can).

    alignkit demo                                    # or any finished demo folder
    python benchmarks/malloc.py --demo runs/demo [--steps 100] [--rounds 2]
    python benchmarks/malloc.py --size 40m           # one training step of a bigger model instead

With --demo it reruns the demo's SFT, reward and DPO stages (their saved config.yaml) for --steps steps, each
once with ALIGNKIT_TCMALLOC=0 and once with tcmalloc preloaded, alternating over --rounds rounds so that a
machine that warms up or slows down favours neither, in separate folders under benchmarks/.work/. Prints the
training seconds of each run (from the command's "done: N steps in S s" line) and the median of each
allocator. With --size it times a forward, backward and AdamW step of a randomly initialised model of that
size (vocabulary 16,384, batch 8 x 256 tokens, 2 threads; the median of 5 steps after one warm-up) in a fresh
process per run. A benchmark, not a test: numbers depend on the machine. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from alignkit.config import recipe_of
from alignkit.malloc import tcmalloc_to_preload

WORK = Path(__file__).resolve().parent / ".work" / "malloc"
STAGES = ("sft", "reward", "dpo")
DONE = re.compile(r"done: \d+ steps in ([\d.]+) s")
ONE_STEP = """
import statistics, sys, time, torch
from transformers import LlamaConfig, LlamaForCausalLM
from alignkit.models.tiny import SIZES
torch.manual_seed(0); torch.set_num_threads(2)
model = LlamaForCausalLM(LlamaConfig(vocab_size=16384, **SIZES[sys.argv[1]]))
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
ids = torch.randint(0, 16384, (8, 256))
seconds = []
for _ in range(6):
    start = time.perf_counter()
    model(input_ids=ids, labels=ids).loss.backward(); optimizer.step(); optimizer.zero_grad(set_to_none=True)
    seconds.append(time.perf_counter() - start)
print(statistics.median(seconds[1:]))
"""


def train_seconds(stage_dir: Path, name: str, steps: int, env: dict) -> float:
    """Rerun a finished stage's config for `steps` steps under `env`; its training seconds."""
    config = stage_dir / "config.yaml"
    command = [sys.executable, "-m", "alignkit", recipe_of(config), str(config), f"output_dir={WORK}",
               f"name={name}", f"train.max_steps={steps}", "train.eval_every=0", "train.save_every=0"]
    out = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
    match = DONE.search(out.stdout + out.stderr)
    if out.returncode != 0 or match is None:
        raise SystemExit(f"{' '.join(command)} failed:\n{out.stderr[-2000:]}")
    return float(match.group(1))


def step_seconds(size: str, env: dict) -> float:
    out = subprocess.run([sys.executable, "-c", ONE_STEP, size], check=True, env=env, capture_output=True,
                         text=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--demo", type=Path, help="a finished `alignkit demo` folder")
    parser.add_argument("--size", help="time one step of a model of this size (alignkit.models.tiny.SIZES)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    library = tcmalloc_to_preload({k: v for k, v in os.environ.items() if k != "LD_PRELOAD"})
    if library is None:
        raise SystemExit("tcmalloc is not installed here (Debian: apt-get install libtcmalloc-minimal4)")
    plain = {**os.environ, "ALIGNKIT_TCMALLOC": "0"}
    plain.pop("LD_PRELOAD", None)
    fast = {**plain, "LD_PRELOAD": library}
    if (args.demo is None) == (args.size is None):
        raise SystemExit("give --demo DIR or --size SIZE")
    shutil.rmtree(WORK, ignore_errors=True)
    print(f"tcmalloc: {library}; {args.rounds} rounds")
    for stage in STAGES if args.demo else [f"{args.size} step"]:
        seconds: dict[str, list[float]] = {"glibc": [], "tcmalloc": []}
        for round_ in range(args.rounds):
            for label, env in (("glibc", plain), ("tcmalloc", fast)):
                name = f"{stage}_{label}_{round_}"
                seconds[label].append(step_seconds(args.size, env) if args.size else
                                      train_seconds(args.demo / stage, name, args.steps, env))
        glibc, tc = statistics.median(seconds["glibc"]), statistics.median(seconds["tcmalloc"])
        print(f"{stage:8s} glibc {' '.join(f'{s:5.1f}' for s in seconds['glibc'])} s   "
              f"tcmalloc {' '.join(f'{s:5.1f}' for s in seconds['tcmalloc'])} s   "
              f"median {glibc:.1f} -> {tc:.1f} s ({glibc / tc:.2f}x)")


if __name__ == "__main__":
    main()
