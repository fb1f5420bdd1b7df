"""KTO against hand-computed numbers; the reference point z0 is clamped and carries no gradient."""

import math

import pytest
import torch

from alignkit.losses.kto import kl_reference_point, kto_loss, kto_metrics


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


def test_kto_desirable_and_undesirable_by_hand():
    # row 0, desirable:   r = -10 - (-11) = 1,  z0 = 0.5, beta = 0.5 -> 1.5 * (1 - sigmoid(0.5 * 0.5))
    #                     = 1.5 * (1 - 0.562177) = 0.656735
    # row 1, undesirable: r = -8 - (-6) = -2,  z0 - r = 2.5 -> 2.0 * (1 - sigmoid(1.25))
    #                     = 2 * 0.222700 = 0.445400
    losses, rewards = kto_loss(
        t(-10.0, -8.0),
        t(-11.0, -6.0),
        torch.tensor([True, False]),
        t(0.5),
        beta=0.5,
        desirable_weight=1.5,
        undesirable_weight=2.0,
    )
    assert losses.tolist() == pytest.approx([0.656735, 0.445400], abs=1e-6)
    assert losses[0].item() == pytest.approx(1.5 * (1 - sigmoid(0.25)))
    assert rewards.tolist() == pytest.approx([0.5, -1.0])  # beta * r


def test_kto_gradient_raises_desirable_and_lowers_undesirable():
    policy = t(-10.0, -8.0).requires_grad_()
    losses, rewards = kto_loss(policy, t(-11.0, -6.0), torch.tensor([True, False]), t(0.5), beta=0.5)
    losses.sum().backward()
    assert policy.grad[0] < 0 < policy.grad[1]
    assert not rewards.requires_grad


def test_negative_reference_point_is_clamped_to_zero():
    # z0 = -1 is read as 0: r = 1, beta = 0.5 -> 1 - sigmoid(0.5) = 0.377541
    # (unclamped: 1 - sigmoid(0.5 * (1 + 1)) = 0.268941)
    losses, _ = kto_loss(t(-10.0), t(-11.0), torch.tensor([True]), t(-1.0), beta=0.5)
    assert losses.item() == pytest.approx(0.377541, abs=1e-6)


def test_kl_reference_point_by_hand():
    # mismatched log-ratios: -5 - (-6) = 1, -7 - (-6) = -1, -3 - (-6) = 3 -> mean 1
    assert kl_reference_point(t(-5.0, -7.0, -3.0), t(-6.0, -6.0, -6.0)).item() == pytest.approx(1.0)
    # mean (-1 - 3) / 2 = -2 -> clamped to 0
    assert kl_reference_point(t(-7.0, -9.0), t(-6.0, -6.0)).item() == 0.0


def test_no_gradient_flows_through_the_reference_point():
    mismatched = t(-5.0, -7.0, -3.0).requires_grad_()
    z0 = kl_reference_point(mismatched, t(-6.0, -6.0, -6.0))
    assert not z0.requires_grad
    # even a z0 that still carries a graph is detached inside kto_loss
    live_z0 = (mismatched - torch.full((3,), -6.0, dtype=torch.float64)).mean()
    policy = t(-10.0, -8.0).requires_grad_()
    losses, _ = kto_loss(policy, t(-11.0, -6.0), torch.tensor([True, False]), live_z0, beta=0.5)
    losses.sum().backward()
    assert mismatched.grad is None
    assert policy.grad is not None


def test_kto_metrics_sums_by_hand():
    desirable = torch.tensor([True, False, True])
    rewards, policy_logps = t(0.5, -1.0, 0.25), t(-10.0, -8.0, -4.0)
    metrics = kto_metrics(rewards, policy_logps, desirable, t(0.3))
    assert metrics["rewards/chosen_sum"] == pytest.approx(0.75)  # 0.5 + 0.25
    assert metrics["rewards/rejected_sum"] == pytest.approx(-1.0)
    assert metrics["logps/chosen_sum"] == pytest.approx(-14.0)
    assert metrics["logps/rejected_sum"] == pytest.approx(-8.0)
    assert (metrics["count/chosen"], metrics["count/rejected"]) == (2.0, 1.0)
    assert metrics["kl"] == pytest.approx(0.9)  # z0 * B = 0.3 * 3, the loop divides by 3


def test_kto_errors():
    with pytest.raises(ValueError, match="desirable must be a bool tensor"):
        kto_loss(t(-1.0), t(-1.0), t(1.0), t(0.0), beta=0.1)
    with pytest.raises(ValueError, match="one scalar for the batch"):
        kto_loss(t(-1.0, -2.0), t(-1.0, -2.0), torch.tensor([True, False]), t(0.0, 0.0), beta=0.1)
    with pytest.raises(ValueError, match="must be >= 0"):
        kto_loss(t(-1.0), t(-1.0), torch.tensor([True]), t(0.0), beta=0.1, undesirable_weight=-1.0)
