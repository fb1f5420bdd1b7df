"""Model-level forward helpers that turn a batch into the per-token quantities the losses take.

Kept apart from `losses/` (which never sees a model) so every recipe computes log-probs the same way.
"""

from __future__ import annotations

import torch

from alignkit.ops.logprobs import shifted_logps


def next_token_logps(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward a right-padded batch; return (logps, scored_mask, logits), each for positions 1..T-1.

    logps[b, t] = log pi(input_ids[b, t+1] | input_ids[b, :t+1]); scored_mask marks the tokens the batch
    scores (`labels_mask` shifted by one), so padding and prompt tokens never count.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits  # [B, T, V]
    logps = shifted_logps(logits, batch["input_ids"])  # [B, T-1]
    scored = batch["labels_mask"][:, 1:].to(logps.dtype)  # [B, T-1]
    return logps, scored, logits


def token_accuracy_sum(logits: torch.Tensor, input_ids: torch.Tensor, scored: torch.Tensor) -> float:
    """How many scored next tokens are the model's argmax prediction (TRL logs the mean as mean_token_accuracy)."""
    hits = logits[:, :-1].argmax(-1) == input_ids[:, 1:]
    return float((hits & scored.bool()).sum())
