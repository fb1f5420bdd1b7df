"""Per-token log-probabilities and entropy from logits, computed a slice of rows at a time.

A full float32 log-softmax over [B, T, V] is the largest tensor in most steps; working on a few rows at a
time keeps the peak to [rows, T, V] and upcasts bf16 logits to float32 only inside the slice. Pure torch.
"""

from __future__ import annotations

import torch

ROWS_PER_CHUNK = 4


def token_logps(logits: torch.Tensor, labels: torch.Tensor, rows_per_chunk: int = ROWS_PER_CHUNK) -> torch.Tensor:
    """log p(labels[b, t] | logits[b, t]) for every position: [B, T, V], [B, T] -> [B, T] float32.

    Uses log p(y) = z_y - logsumexp(z), so no normalised [B, T, V] copy is kept.
    """
    out = torch.empty(labels.shape, dtype=torch.float32, device=logits.device)
    for start in range(0, logits.shape[0], rows_per_chunk):
        chunk = logits[start : start + rows_per_chunk].float()
        picked = chunk.gather(-1, labels[start : start + rows_per_chunk].unsqueeze(-1)).squeeze(-1)
        out[start : start + rows_per_chunk] = picked - torch.logsumexp(chunk, dim=-1)
    return out


def token_entropy(logits: torch.Tensor, rows_per_chunk: int = ROWS_PER_CHUNK) -> torch.Tensor:
    """Entropy of the next-token distribution at every position: [B, T, V] -> [B, T] float32.

    H = logsumexp(z) - sum_v softmax(z)_v * z_v.
    """
    out = torch.empty(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    for start in range(0, logits.shape[0], rows_per_chunk):
        chunk = logits[start : start + rows_per_chunk].float()
        out[start : start + rows_per_chunk] = torch.logsumexp(chunk, -1) - (chunk.softmax(-1) * chunk).sum(-1)
    return out


def shifted_logps(logits: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
    """Log-probs of each next token: position t scores input_ids[t + 1]. [B, T, V], [B, T] -> [B, T - 1]."""
    return token_logps(logits[:, :-1], input_ids[:, 1:])


TOKENS_PER_CHUNK = 1024


def logps_of_targets(
    logits: torch.Tensor,
    targets: torch.Tensor,
    rows_per_chunk: int = TOKENS_PER_CHUNK,
    *,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """log p(targets[n] | logits[rows[n]]) for a flat list of scored tokens: [U, V], [N], [N] -> [N] float32.

    `rows` maps each target to its row of logits (default: row n), so one position that predicts two
    tokens (the last prompt position of a shared-prompt pair predicts the first chosen and the first
    rejected token) is projected once. log p(y) = z_y - logsumexp(z); the logsumexp runs `rows_per_chunk`
    rows at a time, so a bf16 [U, V] is upcast to float32 only a slice at a time.
    """
    if rows is None:
        rows = torch.arange(targets.shape[0], device=targets.device)
    normalisers = torch.cat(
        [
            torch.logsumexp(logits[start : start + rows_per_chunk].float(), dim=-1)
            for start in range(0, logits.shape[0], rows_per_chunk)
        ]
    )  # [U]
    picked = logits[rows, targets].float()  # [N]
    return picked - normalisers[rows]
