"""Policy-gradient losses for RL on LMs: PPO's clipped surrogate, the clipped value loss, and the ways of
averaging per-token losses over a batch.

Pure torch: tensors in, (loss, metrics) out; no models, tokenizers or configs, and never transformers.
Metrics are detached Python floats, named like TRL's logs.
"""

from __future__ import annotations

import torch


def _masked_sum(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.zeros_like(x)).sum()


def _masked_sum_rows(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask, x, torch.zeros_like(x)).sum(dim=1)


def _masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _masked_sum(x, mask) / mask.sum().clamp(min=1)


def token_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over every response token of the batch / number of response tokens (DAPO, Yu et al. 2025,
    eq. 12): every token weighs the same, so long responses weigh more."""
    return _masked_mean(per_token, mask)


def sequence_mean(per_token: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over each sequence's tokens, then over sequences (GRPO, Shao et al. 2024, eq. 3): every
    sequence weighs the same, so a token of a short response weighs more."""
    per_row = _masked_sum_rows(per_token, mask) / mask.sum(dim=1).clamp(min=1)  # [B,T] -> [B]
    return per_row.mean()


def constant_length(per_token: torch.Tensor, mask: torch.Tensor, max_length: int) -> torch.Tensor:
    """Sum over every response token / (B * max_length) (Dr. GRPO, Liu et al. 2025, section 3.1): a
    constant normaliser, so no length bias enters the gradient."""
    return _masked_sum(per_token, mask) / (per_token.shape[0] * max_length)


AGGREGATIONS = {"token_mean": token_mean, "sequence_mean": sequence_mean, "constant_length": constant_length}
# the aggregations that read max_length; passing it to any other is an error
NEEDS_MAX_LENGTH = {"constant_length"}


def aggregate(
    kind: str, per_token: torch.Tensor, mask: torch.Tensor, max_length: int | None = None
) -> torch.Tensor:
    """Reduce per-token losses [B,T] over the response tokens to a scalar, as AGGREGATIONS[kind] does."""
    if kind not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {kind!r}: choose one of {', '.join(sorted(AGGREGATIONS))}")
    if kind in NEEDS_MAX_LENGTH:
        if max_length is None or max_length <= 0:
            raise ValueError(f"aggregation {kind!r} divides by B * max_length: pass max_length > 0")
        return AGGREGATIONS[kind](per_token, mask, max_length)
    if max_length is not None:
        raise ValueError(f"aggregation {kind!r} does not use max_length; only constant_length does")
    return AGGREGATIONS[kind](per_token, mask)


def ppo_clip_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    aggregation: str = "token_mean",
    max_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate, Schulman et al. 2017, eq. 7, as a loss to minimise, per token:

        max(-A * ratio, -A * clip(ratio, 1 - clip_low, 1 + clip_high)),   ratio = pi / pi_old

    Separate low and high epsilons are DAPO's clip-higher (Yu et al. 2025, eq. 10; the paper uses 0.2 and
    0.28); equal ones are plain PPO. logps, old_logps, response_mask [B,T]; advantages [B,T], or [B] for
    one advantage per sequence (GRPO, RLOO), broadcast over its tokens.

    metrics: "policy/clipfrac", the fraction of response tokens where the clipped term is the one taken
    (its gradient is 0); "policy/approxkl", the mean over response tokens of (ratio - 1) - log ratio
    (k3 of Schulman 2020, estimating KL(pi_old || pi) from pi_old's samples).
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)  # [B] -> [B,1], broadcast over tokens
    if logps.shape != old_logps.shape or logps.shape != response_mask.shape:
        raise ValueError(
            f"ppo_clip_loss wants logps, old_logps and response_mask all [B,T]; got {tuple(logps.shape)}, "
            f"{tuple(old_logps.shape)}, {tuple(response_mask.shape)}"
        )
    advantages = advantages.detach()
    log_ratio = logps - old_logps.detach()
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_low, 1 + clip_high)
    per_token = torch.maximum(unclipped, clipped)  # [B,T]
    loss = aggregate(aggregation, per_token, response_mask, max_length)
    with torch.no_grad():
        clipfrac = _masked_mean((clipped > unclipped).to(ratio.dtype), response_mask)
        approxkl = _masked_mean(torch.expm1(log_ratio) - log_ratio, response_mask)
        values = torch.stack([clipfrac, approxkl]).tolist()  # one device sync
    return loss, {"policy/clipfrac": values[0], "policy/approxkl": values[1]}


def value_clip_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    response_mask: torch.Tensor,
    clip: float = 0.2,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped value loss (OpenAI baselines ppo2; OpenRLHF's ValueLoss), token mean over the response:

        0.5 * max((V - R)^2, (clip(V, V_old - clip, V_old + clip) - R)^2)

    The value may not move more than `clip` from the rollout's value while the max is the clipped term.
    metrics: "val/clipfrac", the fraction of response tokens where the clipped term is the larger.
    """
    if not (values.shape == old_values.shape == returns.shape == response_mask.shape):
        raise ValueError(
            f"value_clip_loss wants values, old_values, returns and response_mask all [B,T]; got "
            f"{tuple(values.shape)}, {tuple(old_values.shape)}, {tuple(returns.shape)}, "
            f"{tuple(response_mask.shape)}"
        )
    old_values, returns = old_values.detach(), returns.detach()
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped_values - returns) ** 2
    loss = 0.5 * _masked_mean(torch.maximum(unclipped_loss, clipped_loss), response_mask)
    clipfrac = _masked_mean((clipped_loss > unclipped_loss).to(values.dtype), response_mask)
    return loss, {"val/clipfrac": clipfrac.item()}


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(R - V) / Var(R) over the masked entries (as CleanRL logs it): 1 is a perfect critic, 0 one
    no better than a constant, negative worse. NaN when the returns do not vary."""
    values, returns = values.detach().double(), returns.detach().double()
    var_returns = _masked_var(returns, mask)
    if float(var_returns) == 0.0:
        return float("nan")
    return float(1 - _masked_var(returns - values, mask) / var_returns)


def _masked_var(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mean = _masked_mean(x, mask)
    return _masked_mean((x - mean) ** 2, mask)
