"""Start-up and wrap-up steps that every recipe performs identically.

Not a base class: plain functions a recipe calls in its own order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from alignkit.config import ModelSettings, RunConfig
from alignkit.data.io import Rows, read_rows, split_holdout
from alignkit.data.schema import validate_rows
from alignkit.train.distributed import Dist, barrier, init_distributed
from alignkit.train.loop import FitResult
from alignkit.train.run import Run


@dataclass
class RunResult:
    """What `alignkit.run(...)` and every recipe's `main` return."""

    path: Path
    metrics: dict[str, float] = field(default_factory=dict)
    stopped: str = "done"


def start(cfg: RunConfig) -> Dist:
    """Join the process group, fix the seed and the thread count."""
    d = init_distributed()
    torch.manual_seed(cfg.seed)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    return d


def finish(run_dir: Path, result: FitResult, d: Dist) -> RunResult:
    barrier()
    if d.is_main:
        print(
            f"{result.stopped}: {result.steps} steps in {result.seconds:.1f} s, "
            f"{result.tokens_per_s:,.0f} tokens/s, peak memory {result.peak_memory_mb:,.0f} MB; run folder {run_dir}"
        )
    return RunResult(path=run_dir, metrics=result.metrics, stopped=result.stopped)


def load_train_eval(data, kinds: list[str], seed: int) -> tuple[Rows, Rows | None]:
    """Validated training rows and held-out rows: from data.eval, a data.eval_fraction of train, or none."""
    train_rows = read_rows(data.train)
    validate_rows(train_rows, kinds)
    if data.eval:
        eval_rows = read_rows(data.eval)
        validate_rows(eval_rows, kinds)
        return train_rows, eval_rows
    if data.eval_fraction > 0:
        return split_holdout(train_rows, data.eval_fraction, seed)
    return train_rows, None


def tokenized_splits(cfg: RunConfig, kinds: list[str], tokenize) -> tuple[list, list | None, dict]:
    """Train and held-out examples through `tokenize(rows) -> (examples, report)`, and both reports."""
    train_rows, eval_rows = load_train_eval(cfg.data, kinds, cfg.seed)
    train, train_report = tokenize(train_rows)
    held_out, eval_report = tokenize(eval_rows) if eval_rows is not None else (None, None)
    return train, held_out, {"train": train_report, "eval": eval_report}


def create_run(recipe: str, cfg: RunConfig, d: Dist, reports: dict) -> Run:
    """The run folder, with the tokenization reports saved (data_report.json) and the training one printed."""
    run = Run.create(recipe, cfg, d)
    run.write_json("data_report.json", {k: r.to_dict() if r is not None else None for k, r in reports.items()})
    if d.is_main:
        print(reports["train"].summary())
    return run


def reference_settings(model: ModelSettings, path: str | None) -> ModelSettings:
    """The frozen reference: `path` (default: the policy's starting model), same dtype and trust rules, no LoRA."""
    return ModelSettings(path=path or model.path, dtype=model.dtype, trust_remote_code=model.trust_remote_code)
