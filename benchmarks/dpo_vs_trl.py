"""The same DPO workload through alignkit and through TRL's DPOTrainer, measured side by side.

    pip install -e '.[bench]'                       # installs TRL
    python benchmarks/dpo_vs_trl.py --steps 20      # builds the model and data under benchmarks/.work/

Fair by construction: one ~40M-parameter Llama-style model folder (vocab ~16k, hidden 512, 8 layers) built
locally, the demo world's preference pairs in conversational form (so both apply the same chat template),
fp32, no activation checkpointing, batch 8 pairs, max_length 256, a separate frozen reference model, the
same learning rate and steps, and the same number of torch threads. Each side runs in its own process so
peak RSS is its own. Timing skips the first 2 steps (warm-up). "Real tokens" are the tokens of
prompt+chosen and prompt+rejected of every pair trained on, the same count for both.
This is a benchmark, not a test: numbers depend on the machine. Results go in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work"
WARMUP = 2


def prepare(pairs: int) -> tuple[Path, Path]:
    """The demo world's pairs (conversational) and a 40M model folder, built once."""
    from alignkit.demo.build import write_demo_data
    from alignkit.models.tiny import make_tiny_model

    data_dir = WORK / "world"
    if not (data_dir / "prefs.jsonl").exists():
        write_demo_data(data_dir, seed=0, scale=1.0)
    model_dir = WORK / "model-40m"
    if not (model_dir / "config.json").exists():
        make_tiny_model(data_dir / "pretrain.jsonl", model_dir, size="40m", vocab_size=16384, seed=0)
    rows = [json.loads(line) for line in (data_dir / "prefs.jsonl").read_text().splitlines()][:pairs]
    conversational = WORK / f"prefs-{pairs}.jsonl"
    with open(conversational, "w") as f:
        for r in rows:
            f.write(json.dumps({
                "prompt": [{"role": "user", "content": r["prompt"]}],
                "chosen": [{"role": "assistant", "content": r["chosen"]}],
                "rejected": [{"role": "assistant", "content": r["rejected"]}],
            }) + "\n")
    return model_dir, conversational


def run_alignkit(model: Path, data: Path, steps: int, threads: int, out: Path) -> dict:
    import alignkit

    result = alignkit.run(
        "dpo", None, "name=bench", f"output_dir={out}", f"model.path={model}", f"data.train={data}",
        "data.max_length=256", "model.dtype=float32", "train.batch_size=8", f"train.max_steps={steps}",
        "train.lr=1e-6", "train.warmup_steps=0", "train.schedule=constant", f"train.threads={threads}",
        "train.max_grad_norm=1.0", "dpo.beta=0.1", "dpo.loss=sigmoid", "dpo.reference=model",
    )
    lines = [json.loads(x) for x in (result.path / "metrics.jsonl").read_text().splitlines()]
    times = [x["elapsed_s"] for x in lines if "elapsed_s" in x]
    return {"step_times": times, "step0_loss": lines[0]["loss"]}


def run_trl(model: Path, data: Path, steps: int, threads: int, out: Path) -> dict:
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model)
    policy = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    dataset = load_dataset("json", data_files=str(data), split="train")
    config = DPOConfig(
        output_dir=str(out / "trl"), per_device_train_batch_size=8, max_length=256, max_steps=steps,
        learning_rate=1e-6, lr_scheduler_type="constant", warmup_steps=0, beta=0.1, loss_type=["sigmoid"],
        bf16=False, fp16=False, use_cpu=True, gradient_checkpointing=False, logging_steps=1, report_to=[],
        save_strategy="no", dataloader_num_workers=0, max_grad_norm=1.0, seed=0, disable_tqdm=True,
    )
    stamps: list[float] = []
    losses: list[float] = []

    class Clock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            stamps.append(time.perf_counter())

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    trainer = DPOTrainer(model=policy, ref_model=reference, args=config, train_dataset=dataset,
                         processing_class=tokenizer, callbacks=[Clock()])
    trainer.train()
    return {"step_times": [t - stamps[0] for t in stamps[1:]], "step0_loss": losses[0]}


def real_tokens_per_pair(model: Path, data: Path) -> float:
    from alignkit.config import ModelSettings
    from alignkit.data.io import read_rows
    from alignkit.data.tokenize import tokenize_preference
    from alignkit.models.load import load_tokenizer

    pairs, _ = tokenize_preference(read_rows(data), load_tokenizer(ModelSettings(path=str(model))), 256, "error")
    return sum(2 * len(p["prompt_ids"]) + len(p["chosen_ids"]) + len(p["rejected_ids"]) for p in pairs) / len(pairs)


def child(impl: str, steps: int, threads: int, pairs: int) -> None:
    model, data = prepare(pairs)
    out = WORK / f"run-{impl}-{os.getpid()}"
    result = (run_alignkit if impl == "alignkit" else run_trl)(model, data, steps, threads, out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--impl", choices=["alignkit", "trl"], help="(internal) run one side in this process")
    args = parser.parse_args()
    pairs = 8 * args.steps
    if args.impl:
        return child(args.impl, args.steps, args.threads, pairs)
    model, data = prepare(pairs)
    tokens = real_tokens_per_pair(model, data) * 8
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1",
           "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TOKENIZERS_PARALLELISM": "false"}
    rows = {}
    for impl in ("trl", "alignkit"):
        out = subprocess.run([sys.executable, __file__, "--impl", impl, "--steps", str(args.steps),
                              "--threads", str(args.threads)], capture_output=True, text=True, env=env)
        line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            sys.exit(f"{impl} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
        result = json.loads(line[len("RESULT "):])
        times = result["step_times"]
        per_step = (times[-1] - times[WARMUP - 1]) / (len(times) - WARMUP)
        rows[impl] = {"s_per_step": per_step, "tokens_per_s": tokens / per_step, **result}
    print(f"\nDPO, {args.steps} steps, batch 8 pairs, {tokens / 8:.0f} real tokens per pair, {args.threads} threads")
    print(f"{'':10} {'s/step':>8} {'tokens/s':>10} {'peak RSS MB':>12} {'step-0 loss':>12}")
    for impl, r in rows.items():
        print(f"{impl:10} {r['s_per_step']:8.3f} {r['tokens_per_s']:10.0f} {r['peak_rss_mb']:12.0f} "
              f"{r['step0_loss']:12.6f}")
    ratio = rows["alignkit"]["tokens_per_s"] / rows["trl"]["tokens_per_s"]
    print(f"alignkit / TRL tokens/s: {ratio:.2f}x; step-0 loss difference "
          f"{abs(rows['alignkit']['step0_loss'] - rows['trl']['step0_loss']):.2e}")


if __name__ == "__main__":
    main()
