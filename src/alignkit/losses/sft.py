"""Supervised fine-tuning loss: negative log-likelihood of the response tokens only. Pure torch.

The loss is returned as a SUM over scored tokens; the training loop divides by the number of scored
tokens in the whole accumulated (and, with several processes, global) batch, so gradient accumulation and
data parallelism give the same update as one big batch (a mean of micro-batch means would weight the
tokens of short micro-batches more).
"""

from __future__ import annotations

import torch


def nll_sum(logps: torch.Tensor, labels_mask: torch.Tensor) -> torch.Tensor:
    """Summed negative log-likelihood of the scored tokens: -sum_t mask_t * log pi(y_t). [B, T] -> []."""
    return -(logps * labels_mask).sum()

