"""The DPO family against numbers worked out by hand and a slow reference in plain Python floats."""

import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from alignkit.losses.preference import (
    LOSSES,
    REFERENCE_FREE,
    log_odds,
    orpo_nll,
    preference_loss,
    preference_metrics,
)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_registry_names_every_variant():
    assert set(LOSSES) == {"sigmoid", "conservative", "robust", "hinge", "ipo", "simpo", "orpo"}
    assert REFERENCE_FREE == {"simpo", "orpo"}


def test_dpo_by_hand():
    # log-ratios: chosen -10 - (-12) = 2, rejected -15 - (-15) = 0 -> h = 2
    # beta = 0.1 -> -log(sigmoid(0.2)) = log(1 + e^-0.2) = 0.598139
    losses, chosen_rewards, rejected_rewards = preference_loss(
        "sigmoid", t(-10.0), t(-15.0), t(-12.0), t(-15.0), beta=0.1
    )
    assert losses.item() == pytest.approx(0.598139, abs=1e-6)
    # implicit rewards beta * log(pi / pi_ref): 0.1 * 2 = 0.2 and 0.1 * 0 = 0
    assert chosen_rewards.item() == pytest.approx(0.2)
    assert rejected_rewards.item() == pytest.approx(0.0)


def slow_dpo(chosen, rejected, ref_chosen, ref_rejected, beta):
    """Rafailov et al. 2023, eq. 7, one pair at a time in Python floats."""
    out = []
    for pc, pr, rc, rr in zip(chosen, rejected, ref_chosen, ref_rejected):
        z = beta * ((pc - rc) - (pr - rr))
        out.append(-math.log(1.0 / (1.0 + math.exp(-z))))
    return out


def test_dpo_matches_slow_reference_on_a_random_batch():
    rng = random.Random(0)
    columns = [[rng.uniform(-60.0, -5.0) for _ in range(16)] for _ in range(4)]
    beta = 0.3
    expected = slow_dpo(*columns, beta)
    losses, _, _ = preference_loss(
        "sigmoid", *(torch.tensor(c, dtype=torch.float64) for c in columns), beta=beta
    )
    assert losses.tolist() == pytest.approx(expected, rel=1e-9)


def test_dpo_gradient_raises_chosen_and_lowers_rejected():
    chosen, rejected = t(-10.0, -20.0).requires_grad_(), t(-11.0, -9.0).requires_grad_()
    losses, chosen_rewards, rejected_rewards = preference_loss(
        "sigmoid", chosen, rejected, t(-10.5, -19.0), t(-10.0, -9.5), beta=0.1
    )
    losses.sum().backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()
    # d/dc -log sigmoid(beta h) = -beta * sigmoid(-beta h); pair 0: h = 0.5 - (-1) = 1.5
    assert chosen.grad[0].item() == pytest.approx(-0.1 / (1 + math.exp(0.15)))
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad


def test_conservative_label_smoothing_by_hand():
    # h = 2, beta = 0.1, eps = 0.1: -0.9 log sigmoid(0.2) - 0.1 log sigmoid(-0.2)
    # = 0.9 * 0.598139 + 0.1 * 0.798139 = 0.618139  (log sigmoid(x) - log sigmoid(-x) = x)
    losses, _, _ = preference_loss(
        "conservative", t(-10.0), t(-15.0), t(-12.0), t(-15.0), beta=0.1, label_smoothing=0.1
    )
    assert losses.item() == pytest.approx(0.618139, abs=1e-6)
    unsmoothed, _, _ = preference_loss("conservative", t(-10.0), t(-15.0), t(-12.0), t(-15.0), beta=0.1)
    assert unsmoothed.item() == pytest.approx(0.598139, abs=1e-6)


def test_robust_divides_by_one_minus_two_eps():
    # h = 2, beta = 0.1, eps = 0.1: (0.9 * 0.598139 - 0.1 * 0.798139) / (1 - 0.2) = 0.458511 / 0.8 = 0.573139
    # (without the 1/(1-2 eps) factor it would be 0.458511; with a + instead of - it would be 0.772639)
    losses, _, _ = preference_loss(
        "robust", t(-10.0), t(-15.0), t(-12.0), t(-15.0), beta=0.1, label_smoothing=0.1
    )
    assert losses.item() == pytest.approx(0.573139, abs=1e-6)


def test_hinge_on_both_sides_of_the_kink():
    # pair 0: h = 2, beta = 0.1 -> max(0, 1 - 0.2) = 0.8, slope -beta in h
    # pair 1: h = 15 -> 1 - 1.5 < 0 -> 0, no gradient
    chosen = t(-10.0, -10.0).requires_grad_()
    losses, _, _ = preference_loss(
        "hinge", chosen, t(-15.0, -15.0), t(-12.0, -25.0), t(-15.0, -15.0), beta=0.1
    )
    assert losses.tolist() == pytest.approx([0.8, 0.0])
    losses.sum().backward()
    assert chosen.grad.tolist() == pytest.approx([-0.1, 0.0])


def test_ipo_by_hand_on_mean_logps():
    # averaged log-probs: chosen -1.0 vs ref -1.5 (+0.5), rejected -2.0 vs ref -1.8 (-0.2) -> h = 0.7
    # beta = 0.5 -> target 1/(2 * 0.5) = 1 -> (0.7 - 1)^2 = 0.09; pair 1 sits on the target: h = 1 -> 0
    losses, chosen_rewards, _ = preference_loss(
        "ipo", t(-1.0, -1.0), t(-2.0, -2.0), t(-1.5, -2.0), t(-1.8, -2.0), beta=0.5
    )
    assert losses.tolist() == pytest.approx([0.09, 0.0])
    assert chosen_rewards.tolist() == pytest.approx([0.25, 0.5])  # 0.5 * 0.5 and 0.5 * 1.0


def test_simpo_with_target_margin_by_hand():
    # mean log-probs: chosen -6 / 3 = -2, rejected -12 / 4 = -3; beta = 2
    # gamma = 0.5: -log sigmoid(2 * (-2) - 2 * (-3) - 0.5) = -log sigmoid(1.5) = 0.201413
    # gamma = 0:   -log sigmoid(2.0) = 0.126928
    args = (t(-6.0), t(-12.0))
    lengths = {"chosen_lengths": torch.tensor([3]), "rejected_lengths": torch.tensor([4])}
    losses, chosen_rewards, rejected_rewards = preference_loss("simpo", *args, beta=2.0, gamma=0.5, **lengths)
    assert losses.item() == pytest.approx(0.201413, abs=1e-6)
    assert preference_loss("simpo", *args, beta=2.0, **lengths)[0].item() == pytest.approx(0.126928, abs=1e-6)
    # rewards are beta * mean log-prob: 2 * -2 = -4 and 2 * -3 = -6
    assert (chosen_rewards.item(), rejected_rewards.item()) == pytest.approx((-4.0, -6.0))


def test_orpo_log_odds_and_loss_by_hand():
    # chosen: 2 tokens, sum 2 log 0.5 -> mean log 0.5 -> P = 0.5, odds 1, log odds 0
    # rejected: 3 tokens, sum 3 log 0.2 -> P = 0.2, odds 0.2 / 0.8 = 0.25, log odds -1.386294
    # odds-ratio term: -log sigmoid(0 + 1.386294) = log(1 + 1/4) = 0.223144; lambda (= beta) 0.1 -> 0.0223144
    chosen, rejected = t(2 * math.log(0.5)), t(3 * math.log(0.2))
    lengths = {"chosen_lengths": torch.tensor([2]), "rejected_lengths": torch.tensor([3])}
    assert log_odds(t(math.log(0.5), math.log(0.2))).tolist() == pytest.approx([0.0, -1.386294], abs=1e-6)
    losses, chosen_rewards, _ = preference_loss("orpo", chosen, rejected, beta=0.1, **lengths)
    assert losses.item() == pytest.approx(0.0223144, abs=1e-7)
    assert chosen_rewards.item() == pytest.approx(0.1 * math.log(0.5))
    # the SFT term kept separate: -mean log-prob of the chosen response = log 2 = 0.693147
    assert orpo_nll(chosen, lengths["chosen_lengths"]).item() == pytest.approx(0.693147, abs=1e-6)


def test_log_odds_stays_accurate_and_differentiable_near_probability_one():
    # mean log-prob -1e-7: log(1 - e^-1e-7) = log(1e-7 - 5e-15) = -16.118096, so log odds = 16.118096;
    # in float32, log1p(-exp(x)) alone gives -15.94 (exp(-1e-7) rounds to 1 - 1.19e-7), and at -1e-8 it gives
    # -inf (exp rounds to 1) and a NaN gradient; the exact value there is log(1e-8) = -18.420681
    x = torch.tensor([-1e-7, -1e-8, -3.0], dtype=torch.float32, requires_grad=True)
    out = log_odds(x)
    assert out[0].item() == pytest.approx(16.118096, rel=1e-5)
    assert out[1].item() == pytest.approx(18.420681, rel=1e-5)
    assert out[2].item() == pytest.approx(-3.0 - math.log(1 - math.exp(-3.0)), rel=1e-6)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_metrics_are_sums_by_hand():
    chosen_rewards, rejected_rewards = t(0.5, -0.2, 0.1), t(0.1, 0.3, 0.1)
    metrics = preference_metrics(
        chosen_rewards, rejected_rewards, t(-10.0, -20.0, -30.0), t(-12.0, -18.0, -30.0)
    )
    assert metrics["rewards/chosen"] == pytest.approx(0.4)  # 0.5 - 0.2 + 0.1
    assert metrics["rewards/rejected"] == pytest.approx(0.5)  # 0.1 + 0.3 + 0.1
    assert metrics["rewards/margins"] == pytest.approx(-0.1)  # 0.4 - 0.5
    assert metrics["rewards/accuracies"] == 1.0  # only pair 0 wins; the tie in pair 2 is not a win
    assert metrics["logps/chosen"] == pytest.approx(-60.0)
    assert metrics["logps/rejected"] == pytest.approx(-60.0)
    assert all(isinstance(v, float) for v in metrics.values())


def test_metrics_from_a_real_loss_call():
    # rewards 0.1 * (2, -1) and 0.1 * (0, 1): margins 0.2 and -0.2, one correct pair
    _, chosen_rewards, rejected_rewards = preference_loss(
        "sigmoid", t(-10.0, -5.0), t(-15.0, -6.0), t(-12.0, -4.0), t(-15.0, -7.0), beta=0.1
    )
    metrics = preference_metrics(chosen_rewards, rejected_rewards, t(-10.0, -5.0), t(-15.0, -6.0))
    assert metrics["rewards/chosen"] == pytest.approx(0.1)
    assert metrics["rewards/rejected"] == pytest.approx(0.1)
    assert metrics["rewards/margins"] == pytest.approx(0.0)
    assert metrics["rewards/accuracies"] == 1.0


@pytest.mark.parametrize(
    "kind, kwargs, message",
    [
        ("dpo", {"ref": True}, "choose one of conservative, hinge, ipo, orpo, robust, sigmoid, simpo"),
        ("sigmoid", {}, "needs ref_chosen_logps and ref_rejected_logps"),
        ("simpo", {}, "pass chosen_lengths and rejected_lengths"),
        ("orpo", {"ref": True, "lengths": True}, "is reference-free"),
        ("ipo", {"ref": True, "lengths": True}, "already averaged"),
        ("sigmoid", {"ref": True, "label_smoothing": 0.1}, "ignores label_smoothing=0.1"),
        ("hinge", {"ref": True, "gamma": 0.5}, "ignores gamma=0.5: leave it at 0 or use one of simpo"),
        ("robust", {"ref": True, "label_smoothing": 0.5}, "must be in [0, 0.5)"),
        ("sigmoid", {"ref": True, "beta": 0.0}, "beta must be > 0"),
        ("simpo", {"lengths": "zero"}, "every response length must be > 0"),
    ],
)
def test_clear_errors(kind, kwargs, message):
    refs = (t(-1.0, -1.0), t(-1.0, -1.0)) if kwargs.pop("ref", False) else ()
    lengths = kwargs.pop("lengths", False)
    if lengths:
        kwargs["chosen_lengths"] = torch.tensor([2, 0 if lengths == "zero" else 2])
        kwargs["rejected_lengths"] = torch.tensor([2, 2])
    kwargs.setdefault("beta", 0.1)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace(")", r"\)")):
        preference_loss(kind, t(-1.0, -1.0), t(-2.0, -2.0), *refs, **kwargs)


def test_mismatched_shapes_are_an_error_not_a_broadcast():
    with pytest.raises(ValueError, match=r"must all be \[B\]"):
        preference_loss(
            "sigmoid", t(-1.0, -1.0), t(-2.0, -2.0), t(-1.0, -1.0).unsqueeze(1), t(-1.0, -1.0), beta=0.1
        )


def test_loss_modules_import_only_torch():
    code = (
        "import sys, alignkit.losses.preference, alignkit.losses.reward, alignkit.losses.kto;"
        "print(','.join(m for m in ('transformers', 'datasets', 'peft') if m in sys.modules))"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == ""
