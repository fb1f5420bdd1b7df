"""Per-token KL estimators, KL coefficient controllers, and KL-shaped token rewards for RL on LMs.

Pure torch: tensors in, tensors out; no models, tokenizers or configs, and never transformers.

Tokens are sampled from the policy pi, so every estimator here estimates KL(pi || pi_ref) from the sampled
token's two log-probs. Positions outside the response carry logps = ref_logps = 0 (DESIGN section 2), which
every estimator maps to 0; `shaped_token_rewards` masks anyway.
"""

from __future__ import annotations

import torch


def kl_k1(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k1 = -log r = log pi - log pi_ref, r = pi_ref / pi. [B,T], [B,T] -> [B,T].

    Schulman 2020, "Approximating KL divergence": unbiased, high variance, negative on some tokens.
    The estimator OpenRLHF and InstructGPT put in the reward.
    """
    return logps - ref_logps


def kl_k2(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k2 = (log r)^2 / 2, r = pi_ref / pi. [B,T], [B,T] -> [B,T].

    Schulman 2020: biased, low variance, >= 0; the bias is third order in log r, so it is close to the KL
    when pi and pi_ref are close.
    """
    return 0.5 * (ref_logps - logps) ** 2


def kl_k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """k3 = (r - 1) - log r, r = pi_ref / pi. [B,T], [B,T] -> [B,T].

    Schulman 2020: unbiased (E_pi[r] = 1), low variance and >= 0 on every token (log x <= x - 1).
    The GRPO paper's KL term (Shao et al. 2024, eq. 4). Not clamped: r overflows float32 only for
    log r > ~88, which means pi_ref gives the token e^88 times the policy's probability.
    """
    log_ratio = ref_logps - logps
    return torch.expm1(log_ratio) - log_ratio


ESTIMATORS = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


class FixedKL:
    """A constant KL coefficient; `update` is a no-op so a recipe can hold either controller."""

    def __init__(self, coef: float):
        if coef < 0:
            raise ValueError(f"KL coef must be >= 0, got {coef}")
        self.coef = coef

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing to adapt: the coefficient stays `coef`."""


class AdaptiveKL:
    """Adaptive KL coefficient, Ziegler et al. 2019, "Fine-tuning language models from human preferences",
    section 2.2:

        e = clip(KL / target - 1, -0.2, 0.2);   coef <- coef * (1 + e * n_steps / horizon)

    n_steps is the number of samples (episodes) since the last update and horizon the paper's
    K_beta^-1 scale (10,000 in the paper), as in TRL's AdaptiveKLController.
    """

    def __init__(self, init_coef: float, target: float, horizon: float):
        if init_coef <= 0:
            raise ValueError(f"AdaptiveKL init_coef must be > 0 (a zero coef never moves), got {init_coef}")
        if target <= 0 or horizon <= 0:
            raise ValueError(
                f"AdaptiveKL target and horizon must be > 0, got target={target}, horizon={horizon}"
            )
        self.coef = init_coef
        self.target = target
        self.horizon = horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = min(max(current_kl / self.target - 1, -0.2), 0.2)
        self.coef *= 1 + error * n_steps / self.horizon


def last_token_index(response_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last True in each row: [B,T] bool -> [B] long. Works for any padding side."""
    T = response_mask.shape[1]
    return T - 1 - response_mask.flip(1).int().argmax(dim=1)


def shaped_token_rewards(
    scores: torch.Tensor, kl: torch.Tensor, response_mask: torch.Tensor, coef: float
) -> torch.Tensor:
    """Per-token rewards for PPO: -coef * kl on every response token, plus the sequence score on the last
    response token (Ouyang et al. 2022, InstructGPT, eq. 2; laid out per token as in OpenRLHF's
    compute_reward). [B], [B,T], [B,T] bool -> token_rewards [B,T], 0 outside the response.
    """
    if scores.dim() != 1 or kl.shape != response_mask.shape or kl.shape[0] != scores.shape[0]:
        raise ValueError(
            f"shaped_token_rewards wants scores [B], kl and response_mask [B,T]; got "
            f"{tuple(scores.shape)}, {tuple(kl.shape)}, {tuple(response_mask.shape)}"
        )
    empty = ~response_mask.any(dim=1)
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        raise ValueError(f"rows {rows} have no response tokens: there is no last token to put the score on")
    token_rewards = torch.where(response_mask, -coef * kl, torch.zeros_like(kl))  # [B,T]
    rows = torch.arange(scores.shape[0], device=scores.device)
    token_rewards[rows, last_token_index(response_mask)] += scores.to(token_rewards.dtype)
    return token_rewards
