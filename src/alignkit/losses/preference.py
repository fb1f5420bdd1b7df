"""Direct preference losses (the DPO family): per-pair sequence log-probs in, per-pair losses out.

Pure torch: no models, tokenizers or configs, and never transformers.

Every variant is a function of two per-pair scores [B] and is registered in `LOSSES`. For reference-based
variants a score is the log-ratio log pi(y|x) - log pi_ref(y|x) of one response; for the reference-free
variants in `REFERENCE_FREE` it is the mean log-prob per response token, log pi(y|x) / |y|. The implicit
reward of a response is beta * score: DPO's r(x, y) = beta * log(pi / pi_ref) (Rafailov et al. 2023, eq. 5,
without the beta * log Z(x) term that cancels between the two responses), or beta times the mean log-prob
for SimPO and ORPO, as TRL logs them, so the curves compare.

Log-probs are SUMMED over response tokens, except for IPO, which expects them averaged (see `ipo`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sigmoid(chosen: torch.Tensor, rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO, Rafailov et al. 2023, eq. 7: -log sigmoid(beta * h), h = chosen log-ratio - rejected log-ratio."""
    return -F.logsigmoid(beta * (chosen - rejected))


def conservative(
    chosen: torch.Tensor, rejected: torch.Tensor, beta: float, label_smoothing: float
) -> torch.Tensor:
    """Conservative DPO (cDPO), Mitchell 2023, "A note on DPO with noisy preferences & relationship to IPO".

    -(1 - eps) log sigmoid(beta * h) - eps log sigmoid(-beta * h): DPO against labels that are flipped with
    probability eps (label smoothing; TRL's loss_type="sigmoid" with label_smoothing=eps). eps in [0, 0.5).
    """
    h = chosen - rejected
    return -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)


def robust(chosen: torch.Tensor, rejected: torch.Tensor, beta: float, label_smoothing: float) -> torch.Tensor:
    """Robust DPO (rDPO), Chowdhury et al. 2024, "Provably robust DPO: aligning language models with noisy
    feedback".

    [(1 - eps) * (-log sigmoid(beta * h)) - eps * (-log sigmoid(-beta * h))] / (1 - 2 * eps): an unbiased
    estimate of the clean-label DPO loss when labels flip with known probability eps (TRL's
    loss_type="robust").
    Unlike `conservative`, the eps term is subtracted, and the loss can be negative. eps in [0, 0.5).
    """
    h = chosen - rejected
    flipped = label_smoothing * -F.logsigmoid(-beta * h)
    return ((1 - label_smoothing) * -F.logsigmoid(beta * h) - flipped) / (1 - 2 * label_smoothing)


def hinge(chosen: torch.Tensor, rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """SLiC-HF calibration loss, Zhao et al. 2023, with reference log-ratios (as TRL's loss_type="hinge").

    max(0, 1 - beta * h) = beta * max(0, delta - h) with the paper's margin delta = 1 / beta.
    """
    return torch.relu(1 - beta * (chosen - rejected))


def ipo(chosen: torch.Tensor, rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """IPO, Azar et al. 2023, eq. 17: (h - 1 / (2 * beta))^2, with beta as the paper's tau.

    The caller passes log-probs AVERAGED over response tokens (policy and reference alike), as TRL does; the
    paper's h uses sums, and with sums the target 1/(2 beta) would mean different things for long and short
    responses. This function cannot tell the two apart: averaging is the recipe's job.
    """
    return (chosen - rejected - 1 / (2 * beta)) ** 2


def simpo(chosen: torch.Tensor, rejected: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    """SimPO, Meng et al. 2024, eq. 6: -log sigmoid(beta * mean_logp_c - beta * mean_logp_r - gamma).

    Reference-free; gamma is the paper's target reward margin (TRL's simpo_gamma, same scale).
    """
    return -F.logsigmoid(beta * (chosen - rejected) - gamma)


def orpo(chosen: torch.Tensor, rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """ORPO's odds-ratio term, Hong et al. 2024, eq. 6-7: -lambda log sigmoid(log odds(y_c) - log odds(y_r)).

    log odds(y) = log(P / (1 - P)) with P = exp(mean_logp) (the paper's length-normalised likelihood), and
    beta plays the paper's lambda (as in TRL). The paper's full loss adds the chosen response's NLL; that
    term is `orpo_nll`, kept separate so this function stays a preference loss like the others.
    """
    return -beta * F.logsigmoid(log_odds(chosen) - log_odds(rejected))


def log_odds(mean_logps: torch.Tensor) -> torch.Tensor:
    """log(P / (1 - P)) for P = exp(mean_logps) < 1: mean_logps - log(1 - exp(mean_logps)).

    log(1 - exp(x)) is computed as log(-expm1(x)) near 0 and log1p(-exp(x)) below -log 2 (Maechler 2012,
    "Accurately computing log(1 - exp(-|a|))"); plain log1p(-exp(x)) loses every digit when P is close to 1.
    The log1p branch sees its input clamped below -log 2: for x within ~6e-8 of 0 (float32), exp(x) rounds to
    1 and that branch, though not taken, would put 0 * inf = NaN into the gradient.
    """
    near_one = mean_logps > -math.log(2)
    small_gap = torch.log(-torch.expm1(mean_logps))
    large_gap = torch.log1p(-torch.exp(mean_logps.clamp(max=-math.log(2))))
    return mean_logps - torch.where(near_one, small_gap, large_gap)


def orpo_nll(chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """ORPO's L_SFT per pair, Hong et al. 2024, eq. 6: -log pi(y_c|x) / |y_c|. [B], [B] -> [B].

    Per-pair ORPO loss = orpo_nll(...) + preference_loss("orpo", ...)[0].
    (TRL averages the NLL over all chosen tokens of the batch instead; that weights long responses more.)
    """
    return -chosen_logps / chosen_lengths


LOSSES = {
    "sigmoid": sigmoid,
    "conservative": conservative,
    "robust": robust,
    "hinge": hinge,
    "ipo": ipo,
    "simpo": simpo,
    "orpo": orpo,
}
# these take the policy's mean log-prob per token: no reference model, and response lengths are required
REFERENCE_FREE = {"simpo", "orpo"}
# the options each kind reads; passing a non-default option to a kind that ignores it is an error
OPTIONS = {"conservative": {"label_smoothing"}, "robust": {"label_smoothing"}, "simpo": {"gamma"}}


def preference_loss(
    kind: str,
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    *,
    beta: float,
    label_smoothing: float = 0.0,
    gamma: float = 0.0,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair losses [B] and the detached implicit rewards [B] of the chosen and rejected responses.

    Reference-based kinds take ref_*_logps; reference-free kinds (REFERENCE_FREE) take chosen_lengths and
    rejected_lengths (response tokens, > 0) instead and score the mean log-prob per token.
    """
    _check_arguments(
        kind,
        chosen_logps,
        rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        chosen_lengths,
        rejected_lengths,
        beta=beta,
        label_smoothing=label_smoothing,
        gamma=gamma,
    )
    if kind in REFERENCE_FREE:
        chosen_scores = chosen_logps / chosen_lengths  # [B] mean log-prob per response token
        rejected_scores = rejected_logps / rejected_lengths
    else:
        chosen_scores = chosen_logps - ref_chosen_logps  # [B] log pi/pi_ref
        rejected_scores = rejected_logps - ref_rejected_logps
    options = {"label_smoothing": label_smoothing, "gamma": gamma}
    used = {name: options[name] for name in OPTIONS.get(kind, ())}
    losses = LOSSES[kind](chosen_scores, rejected_scores, beta, **used)
    return losses, beta * chosen_scores.detach(), beta * rejected_scores.detach()


def preference_metrics(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
) -> dict[str, float]:
    """SUMS over the batch's pairs, named as TRL logs them; the training loop divides by the pair count."""
    chosen_rewards, rejected_rewards = chosen_rewards.detach().float(), rejected_rewards.detach().float()
    sums = torch.stack(
        [
            chosen_rewards.sum(),
            rejected_rewards.sum(),
            (chosen_rewards - rejected_rewards).sum(),
            (chosen_rewards > rejected_rewards).float().sum(),
            chosen_logps.detach().float().sum(),
            rejected_logps.detach().float().sum(),
        ]
    ).tolist()  # one device sync instead of six
    names = [
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "rewards/accuracies",
        "logps/chosen",
        "logps/rejected",
    ]
    return dict(zip(names, sums))


def _check_arguments(
    kind,
    chosen_logps,
    rejected_logps,
    ref_chosen_logps,
    ref_rejected_logps,
    chosen_lengths,
    rejected_lengths,
    *,
    beta,
    label_smoothing,
    gamma,
) -> None:
    if kind not in LOSSES:
        raise ValueError(f"unknown preference loss {kind!r}: choose one of {', '.join(sorted(LOSSES))}")
    free = ", ".join(sorted(REFERENCE_FREE))
    if kind in REFERENCE_FREE:
        if ref_chosen_logps is not None or ref_rejected_logps is not None:
            raise ValueError(
                f"loss {kind!r} is reference-free: do not pass ref_chosen_logps/ref_rejected_logps "
                f"(skip the reference model), or use a reference-based kind"
            )
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(
                f"loss {kind!r} scores the mean log-prob per token: pass chosen_lengths and "
                f"rejected_lengths (response tokens per pair, [B])"
            )
        if bool((chosen_lengths <= 0).any()) or bool((rejected_lengths <= 0).any()):
            raise ValueError(
                f"loss {kind!r}: every response length must be > 0 (an empty response has no "
                f"mean log-prob); drop empty responses when building the data"
            )
    else:
        if ref_chosen_logps is None or ref_rejected_logps is None:
            raise ValueError(
                f"loss {kind!r} needs ref_chosen_logps and ref_rejected_logps (the frozen reference "
                f"model's log-probs); the reference-free kinds are {free}"
            )
        if chosen_lengths is not None or rejected_lengths is not None:
            hint = " (pass log-probs already averaged over response tokens instead)" if kind == "ipo" else ""
            raise ValueError(
                f"loss {kind!r} does not use chosen_lengths/rejected_lengths{hint}; only {free} do"
            )
    given = [
        t
        for t in (
            chosen_logps,
            rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            chosen_lengths,
            rejected_lengths,
        )
        if t is not None
    ]
    if len({tuple(t.shape) for t in given}) != 1 or chosen_logps.dim() != 1:
        raise ValueError(
            f"preference inputs must all be [B] (one value per pair), got shapes "
            f"{[tuple(t.shape) for t in given]}"
        )
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    for name, value in (("label_smoothing", label_smoothing), ("gamma", gamma)):
        if value != 0.0 and name not in OPTIONS.get(kind, ()):
            readers = sorted(k for k, names in OPTIONS.items() if name in names)
            raise ValueError(
                f"loss {kind!r} ignores {name}={value}: leave it at 0 or use one of {', '.join(readers)}"
            )
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(
            f"label_smoothing is the probability that a label is flipped: it must be in [0, 0.5), "
            f"got {label_smoothing}"
        )
