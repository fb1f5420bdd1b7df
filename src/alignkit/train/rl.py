"""The mechanics the on-policy RL recipes (PPO, GRPO) share around their own loop: which prompts each step
samples, the learning rate, the guarded optimizer step, checkpoints with exact resume, and the evaluation
prompts' greedy answers. The algorithm itself stays in the recipe, read top to bottom.

A step is one rollout plus the optimizer steps on it. Prompts come from BatchPlan (a seeded permutation per
epoch, a pure function of the step), so resuming at step k samples exactly the prompts step k would have.
"""

from __future__ import annotations

import math

import torch

from alignkit.errors import AlignkitError
from alignkit.train.batches import BatchPlan
from alignkit.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from alignkit.train.loop import clip_gradients
from alignkit.train.run import Run
from alignkit.train.schedule import lr_factor


def single_process(d, recipe: str) -> None:
    if d.world_size > 1:
        raise AlignkitError(f"`alignkit {recipe}` runs in one process for now: drop --procs / torchrun "
                            "(its rollouts are sampled by that process)")


def prompt_plan(num_examples: int, cfg) -> tuple[BatchPlan, int]:
    """The prompt schedule and the number of steps (rollouts)."""
    if num_examples < 1:
        raise AlignkitError("no prompts left to train on (see the data report above)")
    plan = BatchPlan(num_examples, cfg.train.batch_size, 1, 1, 0, cfg.seed)
    return plan, plan.total_steps(cfg.train.epochs, cfg.train.max_steps)


def prompt_splits(cfg, tokenizer):
    """(train rows, eval rows or None, train examples, eval examples or None, the two tokenization reports)
    from data.train and data.eval, through data.tokenize.tokenize_prompts."""
    from alignkit.data.io import read_rows
    from alignkit.data.tokenize import tokenize_prompts

    d = cfg.data
    train_rows = read_rows(d.train)
    eval_rows = read_rows(d.eval) if d.eval else None
    train, report = tokenize_prompts(train_rows, tokenizer, d.max_prompt_length, d.truncation)
    held_out, eval_report = (tokenize_prompts(eval_rows, tokenizer, d.max_prompt_length, d.truncation)
                             if eval_rows else (None, None))
    return train_rows, eval_rows, train, held_out, {"train": report, "eval": eval_report}


def set_lr(optimizer: torch.optim.Optimizer, cfg, step: int, total_steps: int) -> float:
    t = cfg.train
    lr = t.lr * lr_factor(step, total_steps, t.warmup_steps, t.schedule, t.min_lr_ratio)
    for group in optimizer.param_groups:
        group["lr"] = lr
    return lr


def guarded_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss: torch.Tensor,
                 max_grad_norm: float | None) -> tuple[float, bool]:
    """Backward, clip, and step unless the loss or gradient is not finite: (grad_norm, stepped)."""
    loss.backward()
    grad_norm = clip_gradients(model, max_grad_norm)
    finite = math.isfinite(float(loss.detach())) and math.isfinite(grad_norm)
    if finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, finite


class BadSteps:
    """Counts rollouts whose updates were all skipped as non-finite; too many in a row stop the run."""

    def __init__(self, run: Run, limit: int):
        self.run, self.limit, self.in_a_row = run, limit, 0

    def record(self, step: int, any_finite: bool) -> None:
        self.in_a_row = 0 if any_finite else self.in_a_row + 1
        if self.in_a_row >= self.limit:
            raise AlignkitError(
                f"every update was NaN/Inf for {self.in_a_row} rollouts in a row (up to step {step}): lower "
                f"train.lr, keep train.max_grad_norm set, or check the rewards; the last good checkpoint is "
                f"kept in {self.run.dir / 'checkpoints'}")


def save(run: Run, model: torch.nn.Module, optimizer, step: int, plan: BatchPlan, extra: dict) -> None:
    state = {"plan": _plan_state(plan), **extra}
    save_checkpoint(run.dir, step, model, optimizer, state, run.cfg.train.keep_last)


def maybe_resume(run: Run, model: torch.nn.Module, optimizer, plan: BatchPlan) -> tuple[int, dict]:
    """(step, saved state) of the newest checkpoint when train.resume is set, else (0, {})."""
    if not run.cfg.train.resume:
        return 0, {}
    latest = list_checkpoints(run.dir)[-1]
    state = load_checkpoint(latest, model, optimizer)
    if state.get("plan") != _plan_state(plan):
        raise AlignkitError(f"cannot resume exactly from {latest}: it was trained with {state.get('plan')}, this "
                            f"run has {_plan_state(plan)}; keep the prompts and train.batch_size unchanged")
    run.truncate_metrics(state["step"])
    print(f"resumed from {latest} (step {state['step']})")
    return state["step"], state


def _plan_state(plan: BatchPlan) -> dict:
    return {"num_examples": plan.num_examples, "global_batch": plan.global_batch}


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")
