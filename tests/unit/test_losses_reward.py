"""Reward-model losses against hand-computed numbers and torch's own BCE."""

import math

import pytest
import torch
import torch.nn.functional as F

from alignkit.losses.reward import (
    ENSEMBLE_MODES,
    bradley_terry,
    centering_penalty,
    ensemble_score,
    response_nll,
    reward_metrics,
    step_accuracy_sum,
    stepwise_loss,
)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_bradley_terry_by_hand():
    # r_c - r_r = 1.0 - 0.5 = 0.5 -> -log sigmoid(0.5) = log(1 + e^-0.5) = 0.474077
    # pair 1 ranks the wrong way: -0.5 -> log(1 + e^0.5) = 0.974077
    assert bradley_terry(t(1.0, 0.5), t(0.5, 1.0)).tolist() == pytest.approx([0.474077, 0.974077], abs=1e-6)


def test_bradley_terry_margin_by_hand():
    # margin 1.0 on pair 0: -log sigmoid(0.5 - 1.0) = 0.974077
    # margin 0 on pair 1 leaves -log sigmoid(2 - 0) = 0.126928
    losses = bradley_terry(t(1.0, 2.0), t(0.5, 0.0), margin=t(1.0, 0.0))
    assert losses.tolist() == pytest.approx([0.974077, 0.126928], abs=1e-6)


def test_bradley_terry_gradient_separates_the_pair():
    chosen, rejected = t(0.0).requires_grad_(), t(0.0).requires_grad_()
    bradley_terry(chosen, rejected).sum().backward()
    # d/dr_c -log sigmoid(r_c - r_r) = -sigmoid(-(0)) = -0.5
    assert (chosen.grad.item(), rejected.grad.item()) == pytest.approx((-0.5, 0.5))


def test_centering_penalty_by_hand():
    # coef 0.01: (1.0 + 0.5)^2 = 2.25 -> 0.0225; (0.3 - 0.3)^2 = 0 -> 0
    assert centering_penalty(t(1.0, 0.3), t(0.5, -0.3), 0.01).tolist() == pytest.approx([0.0225, 0.0])
    with pytest.raises(ValueError, match="must be >= 0"):
        centering_penalty(t(1.0), t(0.5), -0.01)


def test_reward_metrics_sums_by_hand():
    chosen, rejected = t(1.0, 0.2, 0.4), t(0.5, 0.7, 0.4)
    metrics = reward_metrics(chosen, rejected)
    assert metrics["accuracy"] == 1.5  # win + loss + tie = 1 + 0 + 0.5
    assert metrics["margin"] == pytest.approx(0.0)  # 0.5 - 0.5 + 0
    assert metrics["rewards/chosen"] == pytest.approx(1.6)
    assert metrics["rewards/rejected"] == pytest.approx(1.6)
    assert metrics["reward_sum"] == pytest.approx(3.2)
    assert metrics["reward_sq_sum"] == pytest.approx(2.1)  # 1 + 0.04 + 0.16 + 0.25 + 0.49 + 0.16
    assert metrics["reward_count"] == 6.0
    # the recipe's mean and std: 3.2 / 6 = 0.533333, sqrt(2.1 / 6 - 0.533333^2) = sqrt(0.065556) = 0.256038
    mean = metrics["reward_sum"] / metrics["reward_count"]
    std = math.sqrt(metrics["reward_sq_sum"] / metrics["reward_count"] - mean**2)
    assert (mean, std) == pytest.approx((0.533333, 0.256038), abs=1e-6)


MEMBERS = torch.tensor([[1.0, 4.0], [2.0, 0.0], [6.0, 2.0]])  # 3 reward models x 2 samples


def test_ensemble_modes_by_hand():
    assert set(ENSEMBLE_MODES) == {"mean", "min", "mean_minus_std"}
    assert ensemble_score(MEMBERS, "mean").tolist() == pytest.approx([3.0, 2.0])  # 9/3, 6/3
    assert ensemble_score(MEMBERS, "min").tolist() == pytest.approx([1.0, 0.0])
    # population std: column 0 sqrt((4 + 1 + 9) / 3) = 2.160247; column 1 sqrt((4 + 4 + 0) / 3) = 1.632993
    assert ensemble_score(MEMBERS, "mean_minus_std").tolist() == pytest.approx([0.839753, 0.367007], abs=1e-6)
    assert ensemble_score(MEMBERS, "mean_minus_std", k=0.5).tolist() == pytest.approx(
        [1.919877, 1.183503], abs=1e-6
    )


def test_ensemble_errors():
    with pytest.raises(ValueError, match="choose one of mean, mean_minus_std, min"):
        ensemble_score(MEMBERS, "max")
    with pytest.raises(ValueError, match="ignores k=2.0"):
        ensemble_score(MEMBERS, "min", k=2.0)
    with pytest.raises(ValueError, match=r"\[N members, B samples\]"):
        ensemble_score(MEMBERS[0], "mean")


def test_stepwise_loss_by_hand():
    # real steps: logit 0 (any label) -> log 2 = 0.693147; logit log 3, label True -> -log 0.75 = 0.287682;
    # logit log 3, label False -> -log 0.25 = 1.386294; the padded step (logit 50, label False) would add 50
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(3.0), 50.0]])
    labels = torch.tensor([[True, True], [False, False]])
    mask = torch.tensor([[True, True], [True, False]])
    assert stepwise_loss(logits, labels, mask).item() == pytest.approx(
        0.693147 + 0.287682 + 1.386294, abs=1e-5
    )
    # 0 > 0 is "incorrect" (wrong for label True); log 3 > 0 right for True, wrong for False
    assert step_accuracy_sum(logits, labels, mask) == 1.0


def test_stepwise_loss_matches_torch_bce_on_masked_steps():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=g, requires_grad=True)
    labels = torch.rand(4, 6, generator=g) > 0.5
    mask = torch.arange(6).expand(4, 6) < torch.tensor([[6], [3], [1], [4]])  # ragged step counts
    ours = stepwise_loss(logits, labels, mask)
    reference = F.binary_cross_entropy_with_logits(logits[mask], labels[mask].float(), reduction="sum")
    assert torch.allclose(ours, reference, atol=1e-6)
    ours.backward()
    assert (logits.grad[~mask] == 0).all() and (logits.grad[mask] != 0).all()


def test_response_nll_averages_the_response_tokens_only():
    # Vocabulary of 2; logits at t predict token t+1. Row 0: prompt [0], response [1, 1]; row 1: prompt
    # [0, 1], response [0], then padding (mask 0) that must not count.
    logits = torch.zeros(2, 3, 2)
    logits[0, 0] = torch.tensor([0.0, math.log(3.0)])  # p(1) = 3/4
    logits[0, 1] = torch.tensor([0.0, 0.0])  # p(1) = 1/2
    logits[1, 1] = torch.tensor([math.log(4.0), 0.0])  # p(0) = 4/5
    input_ids = torch.tensor([[0, 1, 1], [0, 1, 0]])
    response_mask = torch.tensor([[0, 1, 1], [0, 0, 1]])
    expected = torch.tensor([-(math.log(3 / 4) + math.log(1 / 2)) / 2, -math.log(4 / 5)])
    assert torch.allclose(response_nll(logits, input_ids, response_mask), expected)
    padded = torch.cat([logits, torch.full((2, 1, 2), 9.0)], dim=1)  # a padding column changes nothing
    assert torch.allclose(response_nll(padded, torch.cat([input_ids, torch.zeros(2, 1, dtype=torch.long)], 1),
                                       torch.cat([response_mask, torch.zeros(2, 1, dtype=torch.long)], 1)),
                          expected)
