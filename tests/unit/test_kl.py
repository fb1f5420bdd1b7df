"""KL estimators against the exact KL of small categorical distributions, the controllers against their
formulas, and KL-shaped rewards by hand."""

import math

import pytest
import torch

from alignkit.ops.kl import ESTIMATORS, AdaptiveKL, FixedKL, kl_k1, kl_k2, kl_k3, shaped_token_rewards


def sample_logps(p, q, n, seed):
    """n tokens drawn from p (seeded); the log-probs of each drawn token under p and under q."""
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.multinomial(p, n, replacement=True, generator=generator)
    return p.log()[tokens].unsqueeze(0), q.log()[tokens].unsqueeze(0)  # [1, n] each, as [B,T]


def exact_kl(p, q):
    return float((p * (p / q).log()).sum())


def test_registry():
    assert ESTIMATORS == {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def test_estimators_by_hand():
    # pi = 0.5, pi_ref = 0.25 -> r = 0.5, log r = -0.693147
    # k1 = -log r = 0.693147; k2 = 0.693147^2 / 2 = 0.240227; k3 = (0.5 - 1) + 0.693147 = 0.193147
    logps, ref_logps = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    assert kl_k1(logps, ref_logps).item() == pytest.approx(0.693147, abs=1e-6)
    assert kl_k2(logps, ref_logps).item() == pytest.approx(0.240227, abs=1e-6)
    assert kl_k3(logps, ref_logps).item() == pytest.approx(0.193147, abs=1e-6)
    # masked positions carry 0 log-probs on both sides and must give 0
    zeros = torch.zeros(2, 3)
    for estimator in ESTIMATORS.values():
        assert torch.equal(estimator(zeros, zeros), zeros)


@pytest.mark.parametrize("name", ["k1", "k3"])
def test_unbiased_estimators_match_exact_kl(name):
    p = torch.tensor([0.5, 0.2, 0.15, 0.1, 0.05], dtype=torch.float64)
    q = torch.tensor([0.1, 0.3, 0.2, 0.2, 0.2], dtype=torch.float64)
    logps, ref_logps = sample_logps(p, q, 200_000, seed=0)
    estimates = ESTIMATORS[name](logps, ref_logps)
    standard_error = float(estimates.std()) / math.sqrt(estimates.numel())
    # exact KL(p||q) = 0.4938 here: far from 0, so an estimator of the wrong sign or scale is many SEs off
    assert abs(float(estimates.mean()) - exact_kl(p, q)) < 4 * standard_error
    assert standard_error < 0.01 * exact_kl(p, q)


def test_k2_close_for_nearby_distributions_and_k3_lower_variance():
    p = torch.tensor([0.3, 0.25, 0.2, 0.15, 0.1], dtype=torch.float64)
    q = torch.tensor([0.28, 0.27, 0.19, 0.16, 0.10], dtype=torch.float64)
    logps, ref_logps = sample_logps(p, q, 200_000, seed=1)
    kl = exact_kl(p, q)  # ~1.4e-3
    k2 = float(kl_k2(logps, ref_logps).mean())
    assert k2 == pytest.approx(kl, rel=0.05)
    # Schulman 2020: k3 has far lower variance than k1 when the distributions are close
    assert kl_k3(logps, ref_logps).std() < 0.2 * kl_k1(logps, ref_logps).std()


def test_k3_nonnegative_everywhere_k1_not():
    grid = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    logps = torch.zeros_like(grid).unsqueeze(0)
    ref_logps = grid.unsqueeze(0)  # log r from -20 to 20
    assert bool((kl_k3(logps, ref_logps) >= 0).all())
    assert bool((kl_k2(logps, ref_logps) >= 0).all())
    assert bool((kl_k1(logps, ref_logps) < 0).any())


def test_fixed_kl_never_moves():
    controller = FixedKL(0.05)
    controller.update(current_kl=100.0, n_steps=512)
    assert controller.coef == 0.05


def test_adaptive_kl_steps_by_hand():
    controller = AdaptiveKL(init_coef=0.1, target=6.0, horizon=10_000)
    # KL 9: e = clip(9/6 - 1 = 0.5) = 0.2 -> 0.1 * (1 + 0.2 * 256/10000) = 0.1 * 1.00512 = 0.100512
    controller.update(9.0, 256)
    assert controller.coef == pytest.approx(0.100512, rel=1e-12)
    # KL 6.6: e = 0.1 (unclipped) -> 0.100512 * 1.00256 = 0.10076931072
    controller.update(6.6, 256)
    assert controller.coef == pytest.approx(0.10076931072, rel=1e-12)
    # KL 0: e = clip(-1) = -0.2 -> 0.10076931072 * 0.99488 = 0.100253371849...
    controller.update(0.0, 256)
    assert controller.coef == pytest.approx(0.1002533718491, rel=1e-12)
    # KL on target: e = 0, coef unchanged
    controller.update(6.0, 1000)
    assert controller.coef == pytest.approx(0.1002533718491, rel=1e-12)


def test_adaptive_kl_against_formula():
    controller = AdaptiveKL(init_coef=0.2, target=3.0, horizon=500)
    coef = 0.2
    for kl, n in [(1.0, 64), (2.9, 64), (3.4, 128), (12.0, 32), (3.0, 64)]:
        controller.update(kl, n)
        coef *= 1 + min(max(kl / 3.0 - 1, -0.2), 0.2) * n / 500  # Ziegler et al. 2019, section 2.2
        assert controller.coef == pytest.approx(coef, rel=1e-12)


def test_shaped_rewards_score_on_last_real_token():
    # right-padded rows of lengths 3, 1 and 4; the padded kl is junk that must not leak
    response_mask = torch.tensor(
        [[True, True, True, False], [True, False, False, False], [True, True, True, True]]
    )
    kl = torch.tensor([[0.1, 0.2, -0.3, 9.0], [0.5, 9.0, 9.0, 9.0], [0.0, 0.1, 0.2, 0.3]])
    scores = torch.tensor([2.0, -1.0, 0.5])
    token_rewards = shaped_token_rewards(scores, kl, response_mask, coef=0.1)
    expected = torch.tensor(
        [
            [-0.01, -0.02, 0.03 + 2.0, 0.0],  # -0.1 * kl, score 2 on token 2
            [-0.05 - 1.0, 0.0, 0.0, 0.0],  # only one token: it gets both
            [0.0, -0.01, -0.02, -0.03 + 0.5],
        ]
    )
    torch.testing.assert_close(token_rewards, expected)


def test_shaped_rewards_after_a_prompt_and_empty_rows():
    # response after two prompt positions: the last real token is index 3
    response_mask = torch.tensor([[False, False, True, True, False]])
    token_rewards = shaped_token_rewards(torch.tensor([1.0]), torch.zeros(1, 5), response_mask, coef=0.1)
    torch.testing.assert_close(token_rewards, torch.tensor([[0.0, 0.0, 0.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="no response tokens"):
        shaped_token_rewards(torch.tensor([1.0]), torch.zeros(1, 3), torch.zeros(1, 3, dtype=torch.bool), 0.1)
