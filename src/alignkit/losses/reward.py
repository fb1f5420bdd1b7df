"""Reward-model losses: Bradley-Terry pairs (with margin and centering), ensembles, step-level (PRM) labels.

Pure torch: scalar rewards in, per-pair losses and metric sums out; no models, tokenizers or configs, and
never transformers. Per-pair losses are returned unreduced; the recipe sums them and the training loop divides
by the number of pairs (see train/loop.py), and metrics are SUMS for the same reason.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """-log sigmoid(r_c - r_r - m) per pair. [B], [B], [B] -> [B].

    Ouyang et al. 2022, eq. 1 (m = 0); the margin m >= 0 from the annotators' preference strength as in
    Llama 2, Touvron et al. 2023, eq. 2, asks for a larger gap on clearly-preferred pairs.
    """
    gap = chosen_rewards - rejected_rewards  # [B]
    if margin is not None:
        gap = gap - margin
    return -F.logsigmoid(gap)


def response_nll(logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of each row's response tokens. [S, T, V], [S, T], [S, T] -> [S].

    response_mask marks the tokens to predict (the response, EOS included); logits at t predict token t+1.
    Added to the Bradley-Terry loss for the chosen responses, it keeps the backbone a language model while it
    learns to score (Yang et al. 2024, "Regularizing hidden states enables learning generalizable reward
    model for LLMs", GRM's SFT regulariser).
    """
    logps = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # [S, T-1, V]
    token_logps = logps.gather(-1, input_ids[:, 1:, None]).squeeze(-1)  # [S, T-1]
    mask = response_mask[:, 1:].to(token_logps.dtype)
    return -(token_logps * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)


def centering_penalty(
    chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, coef: float
) -> torch.Tensor:
    """coef * (r_c + r_r)^2 per pair. [B], [B] -> [B].

    Pins the Bradley-Terry loss's free offset so rewards stay near zero mean (Eisenstein et al. 2023, "Helping
    or herding? Reward model ensembles mitigate but do not eliminate reward hacking"; TRL's
    center_rewards_coefficient, suggested 0.01). Add it to `bradley_terry`'s losses.
    """
    if coef < 0:
        raise ValueError(f"centering coefficient must be >= 0, got {coef}")
    return coef * (chosen_rewards + rejected_rewards) ** 2


def reward_metrics(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> dict[str, float]:
    """SUMS over the batch's pairs; the training loop divides by the number of pairs.

    "accuracy" counts r_c > r_r as 1 and ties as 0.5 (a tie is a coin flip). "reward_sum", "reward_sq_sum"
    and "reward_count" run over both responses of every pair, so that the recipe (or a reader of
    metrics.jsonl) can form mean = reward_sum / reward_count and
    std = sqrt(reward_sq_sum / reward_count - mean^2); the ratios are unchanged by the loop's division.
    """
    chosen, rejected = chosen_rewards.detach().float(), rejected_rewards.detach().float()
    both = torch.cat([chosen, rejected])  # [2B]
    wins = (chosen > rejected).float() + 0.5 * (chosen == rejected).float()
    sums = torch.stack(
        [
            wins.sum(),
            (chosen - rejected).sum(),
            chosen.sum(),
            rejected.sum(),
            both.sum(),
            (both**2).sum(),
            torch.tensor(float(both.numel()), device=both.device),
        ]
    ).tolist()  # one device sync
    names = [
        "accuracy",
        "margin",
        "rewards/chosen",
        "rewards/rejected",
        "reward_sum",
        "reward_sq_sum",
        "reward_count",
    ]
    return dict(zip(names, sums))


def ensemble_mean(member_rewards: torch.Tensor, k: float) -> torch.Tensor:
    """The members' mean. [N, B] -> [B].

    Mean optimisation, Coste et al. 2023, "Reward model ensembles help mitigate overoptimization".
    """
    return member_rewards.mean(dim=0)


def ensemble_min(member_rewards: torch.Tensor, k: float) -> torch.Tensor:
    """Worst-case optimisation (WCO), Coste et al. 2023: the most pessimistic member. [N, B] -> [B]."""
    return member_rewards.min(dim=0).values


def ensemble_mean_minus_std(member_rewards: torch.Tensor, k: float) -> torch.Tensor:
    """mean - k * std over members (population std, 1/N). [N, B] -> [B].

    Coste et al. 2023's uncertainty-weighted optimisation (UWO) subtracts k times the VARIANCE; the std keeps
    the penalty in reward units, so k does not need retuning when the reward scale changes.
    """
    return member_rewards.mean(dim=0) - k * member_rewards.std(dim=0, correction=0)


ENSEMBLE_MODES = {"mean": ensemble_mean, "min": ensemble_min, "mean_minus_std": ensemble_mean_minus_std}


def ensemble_score(member_rewards: torch.Tensor, mode: str, k: float = 1.0) -> torch.Tensor:
    """One reward per sample from N reward models' scores, a mode of ENSEMBLE_MODES. [N, B] -> [B]."""
    if mode not in ENSEMBLE_MODES:
        raise ValueError(f"unknown ensemble mode {mode!r}: choose one of {', '.join(sorted(ENSEMBLE_MODES))}")
    if member_rewards.dim() != 2:
        raise ValueError(
            f"member_rewards must be [N members, B samples], got shape {tuple(member_rewards.shape)}"
        )
    if k != 1.0 and mode != "mean_minus_std":
        raise ValueError(
            f"ensemble mode {mode!r} ignores k={k}: leave it at 1.0 or use mode 'mean_minus_std'"
        )
    return ENSEMBLE_MODES[mode](member_rewards, k)


def stepwise_loss(
    step_logits: torch.Tensor, step_labels: torch.Tensor, step_mask: torch.Tensor
) -> torch.Tensor:
    """Summed binary cross-entropy over real steps, for process reward models. [B, S] x3 -> [].

    Each reasoning step gets its own "is this step correct" logit, as in Lightman et al. 2023, "Let's verify
    step by step". Padded steps (step_mask False) contribute nothing, whatever their logits or labels; the
    loop divides by the number of real steps.
    """
    per_step = F.binary_cross_entropy_with_logits(
        step_logits, step_labels.to(step_logits.dtype), reduction="none"
    )
    return torch.where(step_mask.bool(), per_step, torch.zeros_like(per_step)).sum()


def step_accuracy_sum(step_logits: torch.Tensor, step_labels: torch.Tensor, step_mask: torch.Tensor) -> float:
    """How many real steps are classified right (logit > 0 means "correct"). [B, S] x3 -> a count."""
    right = (step_logits.detach() > 0) == step_labels.bool()
    return float((right & step_mask.bool()).sum())
