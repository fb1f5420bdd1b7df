"""KTO (Ethayarajh et al. 2024): Kahneman-Tversky Optimization from unpaired, labelled completions.

Pure torch: sequence log-probs (summed over response tokens) in, per-completion losses and implicit rewards
out; no models, tokenizers or configs, and never transformers.
"""

from __future__ import annotations

import torch


def kl_reference_point(
    mismatched_policy_logps: torch.Tensor, mismatched_ref_logps: torch.Tensor
) -> torch.Tensor:
    """z0 = max(0, mean(log pi(y'|x) - log pi_ref(y'|x))) over mismatched pairs, detached. [B], [B] -> [].

    Ethayarajh et al. 2024 (the estimate given with eq. 8): a batch estimate of KL(pi || pi_ref) from each
    prompt x paired with another row's completion y' (TRL shifts the completions by one row). No gradient
    flows through z0, and it is clamped at 0 because a KL is never negative (a negative estimate is noise).
    With several processes, average it across them before use (TRL all-gathers), so all ranks share one z0.
    """
    return (mismatched_policy_logps - mismatched_ref_logps).mean().clamp(min=0).detach()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    kl_ref_point: torch.Tensor,
    *,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-completion losses [B] and detached implicit rewards beta * r [B]; Ethayarajh et al. 2024, eq. 8.

    r = log pi(y|x) - log pi_ref(y|x) and z0 = kl_ref_point (detached, clamped at >= 0):
      desirable:   lambda_D * (1 - sigmoid(beta * (r - z0)))
      undesirable: lambda_U * (1 - sigmoid(beta * (z0 - r)))
    i.e. lambda_y - v(x, y). Choose the weights so lambda_D * n_D / (lambda_U * n_U) lies in [1, 4/3]
    (the paper's recommendation for imbalanced data).
    """
    if desirable.dtype != torch.bool:
        raise ValueError(
            f"desirable must be a bool tensor (True = desirable completion), got {desirable.dtype}"
        )
    if not (policy_logps.shape == ref_logps.shape == desirable.shape) or policy_logps.dim() != 1:
        raise ValueError(
            f"policy_logps, ref_logps and desirable must all be [B], got "
            f"{tuple(policy_logps.shape)}, {tuple(ref_logps.shape)}, {tuple(desirable.shape)}"
        )
    if kl_ref_point.numel() != 1:
        raise ValueError(
            f"kl_ref_point must be one scalar for the batch, got shape {tuple(kl_ref_point.shape)}"
        )
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if desirable_weight < 0 or undesirable_weight < 0:
        raise ValueError(
            f"desirable_weight and undesirable_weight must be >= 0, got "
            f"{desirable_weight} and {undesirable_weight}"
        )
    z0 = kl_ref_point.detach().clamp(min=0).reshape(())
    logratios = policy_logps - ref_logps  # [B] r
    desirable_losses = desirable_weight * (1 - torch.sigmoid(beta * (logratios - z0)))
    undesirable_losses = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - logratios)))
    losses = torch.where(desirable, desirable_losses, undesirable_losses)
    return losses, beta * logratios.detach()


def kto_metrics(
    rewards: torch.Tensor, policy_logps: torch.Tensor, desirable: torch.Tensor, kl_ref_point: torch.Tensor
) -> dict[str, float]:
    """SUMS over the batch, named as TRL logs them; the training loop divides by the number of completions.

    Rewards and log-probs are summed per class, with the class counts beside them: the mean reward of the
    desirable completions is rewards/chosen_sum / count/chosen (a ratio the loop's division leaves intact).
    "kl" is z0 times the batch size, so that after the division it reads as z0 averaged over batches.
    """
    rewards, policy_logps = rewards.detach().float(), policy_logps.detach().float()
    chosen, rejected = desirable.float(), (~desirable).float()
    sums = torch.stack(
        [
            (rewards * chosen).sum(),
            (rewards * rejected).sum(),
            (policy_logps * chosen).sum(),
            (policy_logps * rejected).sum(),
            chosen.sum(),
            rejected.sum(),
            kl_ref_point.detach().float().reshape(()) * desirable.numel(),
        ]
    ).tolist()  # one device sync
    names = [
        "rewards/chosen_sum",
        "rewards/rejected_sum",
        "logps/chosen_sum",
        "logps/rejected_sum",
        "count/chosen",
        "count/rejected",
        "kl",
    ]
    return dict(zip(names, sums))
