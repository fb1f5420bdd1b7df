"""PPO clip, the clipped value loss, the aggregation modes and explained variance, by hand."""

import math

import pytest
import torch

from alignkit.losses.policy import AGGREGATIONS, aggregate, explained_variance, ppo_clip_loss, value_clip_loss


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def hand_batch():
    """Two rows; row 1's last position is padding with junk that must not count.

    token  ratio  A    -A*ratio  -A*clip(ratio, 0.8, 1.2)  max   clipped term taken?
    0,0    1.5   +1     -1.5      -1.2                    -1.2   yes (high side)
    0,1    0.5   -1      0.5       0.8                     0.8   yes (low side)
    0,2    1.1   -1      1.1       1.1                     1.1   no (inside the range)
    0,3    0.7   +1     -0.7      -0.8                    -0.7   no (pessimistic: unclipped is larger)
    1,0    1.5   -1      1.5       1.2                     1.5   no
    1,1    1.0   +2     -2.0      -2.0                    -2.0   no
    """
    ratios = t([1.5, 0.5, 1.1, 0.7], [1.5, 1.0, math.e**3, 1.0])
    old_logps = t([-1.0, -2.0, -0.5, -3.0], [-1.0, -1.0, -4.0, 0.0])
    logps = (old_logps + ratios.log()).requires_grad_()
    advantages = t([1.0, -1.0, -1.0, 1.0], [-1.0, 2.0, 100.0, 0.0])
    response_mask = torch.tensor([[True, True, True, True], [True, True, False, False]])  # e^3, A=100 is junk
    return logps, old_logps, advantages, response_mask


def test_registry():
    assert set(AGGREGATIONS) == {"token_mean", "sequence_mean", "constant_length"}


def test_ppo_clip_by_hand_token_mean():
    logps, old_logps, advantages, response_mask = hand_batch()
    loss, metrics = ppo_clip_loss(logps, old_logps, advantages, response_mask)
    # (-1.2 + 0.8 + 1.1 - 0.7 + 1.5 - 2.0) / 6 = -0.5 / 6 = -0.0833333
    assert loss.item() == pytest.approx(-0.5 / 6, abs=1e-9)
    # 2 of 6 tokens take the clipped term
    assert metrics["policy/clipfrac"] == pytest.approx(2 / 6)
    # mean of (r - 1) - log r over r = 1.5, 0.5, 1.1, 0.7, 1.5, 1.0:
    # 0.094535 + 0.193147 + 0.004690 + 0.056675 + 0.094535 + 0 = 0.443582 -> / 6 = 0.073930
    assert metrics["policy/approxkl"] == pytest.approx(0.0739303, abs=1e-7)
    assert all(isinstance(v, float) for v in metrics.values())
    # clipped tokens get no gradient; d loss / d logp = -A * ratio / 6 on the others
    loss.backward()
    expected_grad = t([0.0, 0.0, 1.1 / 6, -0.7 / 6], [1.5 / 6, -2.0 / 6, 0.0, 0.0])
    torch.testing.assert_close(logps.grad, expected_grad)


def test_ppo_clip_aggregations_by_hand():
    logps, old_logps, advantages, response_mask = hand_batch()
    # row means: (-1.2 + 0.8 + 1.1 - 0.7) / 4 = 0; (1.5 - 2.0) / 2 = -0.25 -> mean over rows -0.125
    loss, _ = ppo_clip_loss(logps, old_logps, advantages, response_mask, aggregation="sequence_mean")
    assert loss.item() == pytest.approx(-0.125, abs=1e-9)
    # Dr. GRPO: sum -0.5 / (B * max_length) = -0.5 / (2 * 4) = -0.0625
    loss, _ = ppo_clip_loss(
        logps, old_logps, advantages, response_mask, aggregation="constant_length", max_length=4
    )
    assert loss.item() == pytest.approx(-0.0625, abs=1e-9)
    with pytest.raises(ValueError, match="max_length"):
        ppo_clip_loss(logps, old_logps, advantages, response_mask, aggregation="constant_length")
    with pytest.raises(ValueError, match="does not use max_length"):
        ppo_clip_loss(logps, old_logps, advantages, response_mask, max_length=4)
    with pytest.raises(ValueError, match="unknown aggregation"):
        aggregate("sum", torch.zeros(1, 1), torch.ones(1, 1, dtype=torch.bool))


def test_clip_higher_moves_only_the_high_side():
    # ratio 1.25, A = +1: eps_high 0.2 clips to -1.2; eps_high 0.28 leaves -1.25
    # ratio 0.7, A = -1: eps_low 0.2 clips to 0.8 either way (0.72 if low and high were swapped)
    logps, old_logps = t([math.log(1.25), math.log(0.7)]), t([0.0, 0.0])
    advantages, response_mask = t([1.0, -1.0]), torch.ones(1, 2, dtype=torch.bool)
    loss, metrics = ppo_clip_loss(logps, old_logps, advantages, response_mask)
    assert loss.item() == pytest.approx((-1.2 + 0.8) / 2)  # -0.2
    assert metrics["policy/clipfrac"] == pytest.approx(1.0)
    loss, metrics = ppo_clip_loss(logps, old_logps, advantages, response_mask, clip_low=0.2, clip_high=0.28)
    assert loss.item() == pytest.approx((-1.25 + 0.8) / 2)  # -0.225
    assert metrics["policy/clipfrac"] == pytest.approx(0.5)


def test_sequence_advantages_broadcast_over_tokens():
    logps, old_logps, _, response_mask = hand_batch()
    per_sequence = t(0.5, -2.0)
    loss_b, _ = ppo_clip_loss(logps, old_logps, per_sequence, response_mask)
    loss_bt, _ = ppo_clip_loss(logps, old_logps, per_sequence[:, None].expand(2, 4), response_mask)
    assert loss_b.item() == pytest.approx(loss_bt.item())


def test_value_clip_by_hand():
    # token  v     old  R    clip(v, old+-0.2)  (v-R)^2  (vc-R)^2  max
    # 0      1.5   1.0  2.0  1.2                0.25     0.64      0.64  clipped term larger
    # 1      0.9   1.0  0.0  0.9                0.81     0.81      0.81  equal: not counted as clipped
    # 2     -0.5   0.0  0.0 -0.2                0.25     0.04      0.25
    # 3      junk, masked out
    # loss = 0.5 * (0.64 + 0.81 + 0.25) / 3 = 0.5 * 1.7 / 3 = 0.2833333
    values = t([1.5, 0.9, -0.5, 50.0])
    old_values = t([1.0, 1.0, 0.0, 0.0])
    returns = t([2.0, 0.0, 0.0, -50.0])
    response_mask = torch.tensor([[True, True, True, False]])
    loss, metrics = value_clip_loss(values, old_values, returns, response_mask, clip=0.2)
    assert loss.item() == pytest.approx(0.2833333, abs=1e-7)
    assert metrics["val/clipfrac"] == pytest.approx(1 / 3)
    # a wider clip range lets token 0 through: 0.5 * (0.25 + 0.81 + 0.25) / 3 = 0.2183333
    loss, metrics = value_clip_loss(values, old_values, returns, response_mask, clip=1.0)
    assert loss.item() == pytest.approx(0.2183333, abs=1e-7)
    assert metrics["val/clipfrac"] == 0.0


def test_explained_variance_by_hand():
    # R = 1, 2, 3, 4 (var 1.25); R - V = 0, 0, 0, 1 (mean 0.25, var (3 * 0.0625 + 0.5625) / 4 = 0.1875)
    # -> 1 - 0.1875 / 1.25 = 0.85; the fifth entry is masked out
    returns, values = t([1.0, 2.0, 3.0, 4.0, 100.0]), t([1.0, 2.0, 3.0, 3.0, -100.0])
    mask = torch.tensor([[True, True, True, True, False]])
    assert explained_variance(values, returns, mask) == pytest.approx(0.85)
    assert explained_variance(returns, returns, mask) == pytest.approx(1.0)
    assert math.isnan(explained_variance(values, torch.ones_like(returns), mask))
