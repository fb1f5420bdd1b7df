"""Advantage estimators: GAE against a slow Python loop and by hand; group-relative baselines, DAPO's
dynamic sampling and overlong penalty, and masked whitening by hand."""

import random

import pytest
import torch

from alignkit.ops.advantages import (
    GROUP_ADVANTAGES,
    dr_grpo_advantages,
    dynamic_sampling_keep,
    gae,
    grpo_advantages,
    masked_whiten,
    overlong_penalty,
    rloo_advantages,
)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def slow_gae(token_rewards, values, response_mask, gamma, lam):
    """Schulman et al. 2016, eq. 16, one row at a time over the list of its response positions."""
    B, T = len(token_rewards), len(token_rewards[0])
    advantages = [[0.0] * T for _ in range(B)]
    returns = [[0.0] * T for _ in range(B)]
    for b in range(B):
        positions = [i for i in range(T) if response_mask[b][i]]
        running = 0.0
        for k in reversed(range(len(positions))):
            i = positions[k]
            next_value = values[b][positions[k + 1]] if k + 1 < len(positions) else 0.0
            delta = token_rewards[b][i] + gamma * next_value - values[b][i]
            running = delta + gamma * lam * running
            advantages[b][i] = running
            returns[b][i] = running + values[b][i]
    return advantages, returns


def test_gae_matches_slow_loop_on_ragged_masks():
    rng = random.Random(0)
    B, T = 6, 9
    token_rewards = torch.randn(B, T, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    values = torch.randn(B, T, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    response_mask = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):
        start = rng.randint(0, 3)  # a prompt before the response
        end = rng.randint(start + 1, T)  # right padding after it
        response_mask[b, start:end] = True
    response_mask[5] = torch.tensor([0, 1, 1, 0, 0, 1, 1, 1, 0], dtype=torch.bool)  # a hole inside
    for gamma, lam in [(1.0, 1.0), (0.99, 0.95), (0.9, 0.0), (0.5, 0.7)]:
        advantages, returns = gae(token_rewards, values, response_mask, gamma, lam)
        want_adv, want_ret = slow_gae(
            token_rewards.tolist(), values.tolist(), response_mask.tolist(), gamma, lam
        )
        torch.testing.assert_close(advantages, torch.tensor(want_adv, dtype=torch.float64))
        torch.testing.assert_close(returns, torch.tensor(want_ret, dtype=torch.float64))


def test_gae_by_hand_gamma_lam_one_is_reward_to_go_minus_value():
    # row 0: rewards 0, 0, 1 -> reward-to-go 1, 1, 1; values 0.5, 0.2, 0.4 -> A = 0.5, 0.8, 0.6
    # row 1: one response token then padding with junk: reward 2, value 0.5 -> A = 1.5, R = 2
    token_rewards = t([0.0, 0.0, 1.0], [2.0, 7.0, 7.0])
    values = t([0.5, 0.2, 0.4], [0.5, 9.0, 9.0])
    response_mask = torch.tensor([[True, True, True], [True, False, False]])
    advantages, returns = gae(token_rewards, values, response_mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(advantages, t([0.5, 0.8, 0.6], [1.5, 0.0, 0.0]))
    torch.testing.assert_close(returns, t([1.0, 1.0, 1.0], [2.0, 0.0, 0.0]))


def test_gae_by_hand_lam_zero_is_one_step_td():
    # lam = 0: A_t = r_t + gamma V_{t+1} - V_t, with V = 0 after the last token
    # gamma 0.5: A_0 = 0 + 0.5 * 0.2 - 0.5 = -0.4; A_1 = 0 + 0.5 * 0.4 - 0.2 = 0.0; A_2 = 1 - 0.4 = 0.6
    advantages, _ = gae(t([0.0, 0.0, 1.0]), t([0.5, 0.2, 0.4]), torch.ones(1, 3, dtype=torch.bool), 0.5, 0.0)
    torch.testing.assert_close(advantages, t([-0.4, 0.0, 0.6]))


def test_masked_whiten_by_hand():
    # masked entries 1, 2, 3: mean 2, population var (1 + 0 + 1) / 3 = 2/3, std 0.816497
    # -> (x - 2) / 0.816497 = -1.224745, 0, 1.224745; the 100 is left out and comes back 0
    x = t(1.0, 2.0, 3.0, 100.0)
    mask = torch.tensor([True, True, True, False])
    torch.testing.assert_close(masked_whiten(x, mask), t(-1.224745, 0.0, 1.224745, 0.0), atol=1e-6, rtol=0)
    # shift_mean=False adds the mean 2 back: 0.775255, 2, 3.224745
    torch.testing.assert_close(
        masked_whiten(x, mask, shift_mean=False), t(0.775255, 2.0, 3.224745, 0.0), atol=1e-6, rtol=0
    )


def test_masked_whiten_statistics_ignore_masked_out_entries():
    generator = torch.Generator().manual_seed(0)
    x = 3.0 + 2.0 * torch.randn(4, 10, dtype=torch.float64, generator=generator)
    mask = torch.rand(4, 10, generator=generator) > 0.4
    x_junk = torch.where(mask, x, torch.full_like(x, 1e6))  # huge values off the mask must change nothing
    whitened = masked_whiten(x_junk, mask)
    picked = whitened[mask]
    assert float(picked.mean()) == pytest.approx(0.0, abs=1e-9)
    assert float(picked.std(unbiased=False)) == pytest.approx(1.0, abs=1e-6)
    assert bool((whitened[~mask] == 0).all())
    torch.testing.assert_close(whitened, masked_whiten(x, mask))


def test_group_advantages_two_groups_by_hand():
    rewards = t(1.0, 2.0, 3.0, 0.0, 0.0, 3.0)  # G = 3: groups [1, 2, 3] and [0, 0, 3]
    # GRPO: group 1 mean 2, sample std 1 -> (-1, 0, 1) / (1 + 1e-4) = -0.99990001, 0, 0.99990001
    #       group 2 mean 1, sample var (1 + 1 + 4) / 2 = 3, std 1.7320508
    #       -> (-1, -1, 2) / (1.7320508 + 1e-4) = -0.57731694, -0.57731694, 1.15463388
    torch.testing.assert_close(
        grpo_advantages(rewards, 3),
        t(-0.99990001, 0.0, 0.99990001, -0.57731694, -0.57731694, 1.15463388),
        atol=1e-8,
        rtol=0,
    )
    # Dr. GRPO: r - group mean, no std
    torch.testing.assert_close(dr_grpo_advantages(rewards, 3), t(-1.0, 0.0, 1.0, -1.0, -1.0, 2.0))
    # RLOO: r_i - mean of the other two: 1 - 2.5, 2 - 2, 3 - 1.5; 0 - 1.5, 0 - 1.5, 3 - 0
    torch.testing.assert_close(rloo_advantages(rewards, 3), t(-1.5, 0.0, 1.5, -1.5, -1.5, 3.0))
    assert GROUP_ADVANTAGES == {
        "grpo": grpo_advantages,
        "dr_grpo": dr_grpo_advantages,
        "rloo": rloo_advantages,
    }


def test_group_advantages_all_equal_group_is_zero_and_bad_shapes_fail():
    # group [1, 1]: all equal -> 0 (std 0, no NaN); group [0, 1]: mean 0.5, sample var 0.25 * 2 / 1 = 0.5,
    # std 0.7071068 -> +-0.5 / (0.7071068 + 1e-4) = +-0.7070068
    torch.testing.assert_close(
        grpo_advantages(t(1.0, 1.0, 0.0, 1.0), 2), t(0.0, 0.0, -0.7070068, 0.7070068), atol=1e-7, rtol=0
    )
    with pytest.raises(ValueError, match="multiple of group_size"):
        dr_grpo_advantages(t(1.0, 2.0, 3.0), 2)
    with pytest.raises(ValueError, match="group_size >= 2"):
        rloo_advantages(t(1.0, 2.0), 1)


def test_dynamic_sampling_keep_by_hand():
    # G = 3: [1, 1, 1] all equal (drop), [0, 1, 0] mixed (keep), [0, 0, 0] all equal (drop)
    rewards = t(1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0)
    assert dynamic_sampling_keep(rewards, 3).tolist() == [False, True, False]


def test_overlong_penalty_by_hand():
    # max_len 20, cache 4: free up to 16 tokens; (16 - |y|) / 4 between 16 and 20; -1 beyond
    lengths = torch.tensor([10, 16, 17, 18, 20, 21, 50])
    penalties = overlong_penalty(lengths, max_len=20, cache_len=4)
    torch.testing.assert_close(penalties, torch.tensor([0.0, 0.0, -0.25, -0.5, -1.0, -1.0, -1.0]))
    with pytest.raises(ValueError, match="cache_len"):
        overlong_penalty(lengths, max_len=20, cache_len=0)


def test_masked_group_advantages_use_only_valid_samples_by_hand():
    from alignkit.ops.advantages import masked_group_advantages

    nan = float("nan")
    # group 0: sample 2 failed; the baseline is over rewards (1, 0, 1) only, as a group of 3.
    # group 1: all valid. group 2: one valid sample, so no baseline: nothing usable.
    rewards = torch.tensor([1.0, 0.0, nan, 1.0, 2.0, 0.0, 0.0, 2.0, nan, 5.0, nan, nan])
    valid = ~torch.isnan(rewards)
    adv, usable = masked_group_advantages("dr_grpo", rewards, valid, 4)
    third = 1 / 3
    expected = [1 - 2 * third, -2 * third, 0.0, 1 - 2 * third, 1.0, -1.0, -1.0, 1.0, 0, 0, 0, 0]
    assert torch.allclose(adv, torch.tensor(expected), atol=1e-6)
    assert usable.tolist() == [True, True, False, True, True, True, True, True, False, False, False, False]
    assert not torch.isnan(adv).any()
    # rloo on the valid subset (1, 0, 1): 1 - (0 + 1)/2 = 0.5, 0 - (1 + 1)/2 = -1
    adv, _ = masked_group_advantages("rloo", rewards, valid, 4)
    assert torch.allclose(adv[:4], torch.tensor([0.5, -1.0, 0.0, 0.5]))
    # all valid: identical to the plain function
    full = torch.tensor([1.0, 0.0, 3.0, 2.0])
    adv, usable = masked_group_advantages("grpo", full, torch.ones(4, dtype=torch.bool), 4)
    assert torch.allclose(adv, grpo_advantages(full, 4)) and usable.all()


def test_dynamic_sampling_keep_compares_valid_samples_only():
    nan = float("nan")
    rewards = torch.tensor([1.0, 1.0, nan, 0.0, 1.0, nan, 1.0, 1.0, 1.0, nan, nan, nan])
    valid = ~torch.isnan(rewards)
    # group 0 varies among its valid samples; group 1's valid ones are all 1; group 2 has one valid sample
    assert dynamic_sampling_keep(rewards, 4, valid).tolist() == [True, False, False]
