"""`alignkit prm`: a process reward model from stepwise rows, one "is this step correct" logit per step.

Rows are TRL's stepwise format, {"prompt", "completions": [step, ...], "labels": [bool per step]}. The steps,
joined by prm.step_separator, are one assistant reply; a scalar head on a causal-LM backbone is read at
each step's last token (data/stepwise.py explains the rule) and trained with binary cross-entropy per step,
as in Lightman et al. 2023, "Let's verify step by step". The loop's unit is a real step: the loss and the
step accuracy are means over steps. The held-out report compares the step accuracy with two baselines that
need no model: always the majority label, and the majority label of each step index (later steps are more
often wrong, so position alone beats the overall majority). final/ holds prm.json with the separator, so
rewards/prm.py splits completions exactly as training joined them.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from functools import partial

import torch

from alignkit.config import PRMConfig
from alignkit.data.stepwise import collate_steps, tokenize_stepwise
from alignkit.losses.reward import step_accuracy_sum, stepwise_loss
from alignkit.models.heads import load_scalar_model
from alignkit.models.load import save_pretrained
from alignkit.recipes.common import RunResult, create_run, finish, start, tokenized_splits
from alignkit.rewards.prm import step_logits, write_prm_info
from alignkit.train.distributed import to_device
from alignkit.train.loop import fit


class StepScorer(torch.nn.Module):
    """The PRM as one module whose forward returns step logits, so that under DDP the whole computation runs
    inside the wrapper's forward and gradients are synchronised (calling the backbone and the head of a
    wrapped model directly would bypass DDP)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, step_positions):
        return step_logits(self.model, input_ids, attention_mask, step_positions)  # [B, S]


def main(cfg: PRMConfig) -> RunResult:
    d = start(cfg)
    model, tokenizer = load_scalar_model(cfg.model, d.device, new_head=True)

    tokenize = partial(tokenize_stepwise, tokenizer=tokenizer, max_length=cfg.data.max_length,
                       truncation=cfg.data.truncation, separator=cfg.prm.step_separator)
    train_rows, eval_rows, reports = tokenized_splits(cfg, ["stepwise"], tokenize)
    run = create_run("prm", cfg, d, reports)

    collate = lambda rows: to_device(collate_steps(rows, tokenizer.pad_token_id), d.device)  # noqa: E731
    result = fit(run, StepScorer(model), train_rows, collate, prm_loss_step, weight_key="num_steps",
                 eval_examples=eval_rows or None)
    if eval_rows:
        baselines = label_baselines(eval_rows)
        run.log(result.steps, baselines)
        result.metrics.update(baselines)
        if d.is_main and "eval/step_accuracy" in result.metrics:
            print(f"held-out step accuracy {result.metrics['eval/step_accuracy']:.3f}; majority label "
                  f"{baselines['eval/majority_accuracy']:.3f}, majority label per step index "
                  f"{baselines['eval/position_majority_accuracy']:.3f}")
    if result.stopped == "done" and d.is_main:
        final = save_pretrained(model, tokenizer, run.dir / "final")
        write_prm_info(final, cfg.prm.step_separator)
    return finish(run.dir, result, d)


def prm_loss_step(scorer: torch.nn.Module, batch: dict):
    """Summed per-step BCE over the batch's real steps, and the number of steps classified right."""
    logits = scorer(batch["input_ids"], batch["attention_mask"], batch["step_positions"])  # [B, S]
    loss = stepwise_loss(logits, batch["step_labels"], batch["step_mask"])
    return loss, {"step_accuracy": step_accuracy_sum(logits, batch["step_labels"], batch["step_mask"])}


def label_baselines(examples: list[dict]) -> dict[str, float]:
    """Step accuracy of two model-free classifiers on `examples`, each told the answer's base rates:
    the majority label overall, and the majority label at each step index."""
    labels = [label for e in examples for label in e["step_labels"]]
    by_index: dict[int, Counter] = defaultdict(Counter)
    for e in examples:
        for index, label in enumerate(e["step_labels"]):
            by_index[index][label] += 1
    position_right = sum(max(counts.values()) for counts in by_index.values())
    return {
        "eval/majority_accuracy": max(Counter(labels).values()) / len(labels),
        "eval/position_majority_accuracy": position_right / len(labels),
    }
