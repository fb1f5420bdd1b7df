"""Win rate, its interval, position-swap reconciliation, per-category rates and length control, against numbers
worked out by hand (or, for coverage and length control, a seeded simulation with a known answer)."""

import math

import numpy as np
import pytest

from alignkit.eval.judges import Judge, judge_pairs, score_table_judge, verdict_from_scores
from alignkit.eval.winrate import (
    bounded_mean_interval,
    length_controlled_win_rate,
    logistic_fit,
    per_category,
    reconcile_swapped,
    win_rate,
)

Z = 1.959963984540054  # the 97.5% normal quantile


def test_no_ties_gives_wilsons_interval():
    # 8 wins of 10: Wilson (1927) = (p + z^2/2n -+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)
    p, n = 0.8, 10
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2)) / (1 + Z**2 / n)
    result = win_rate(["a"] * 8 + ["b"] * 2)
    assert result.win_rate == 0.8
    assert (result.ci_low, result.ci_high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook figures


def test_ties_count_half_and_narrow_the_interval_by_their_variance():
    # 6 wins, 2 ties, 2 losses: p = (6 + 1) / 10 = 0.7; c = mean x(1-x) = 2 * 0.25 / 10 = 0.05,
    # shrunk to c~ = 0.05 * 10 / (10 + z^2) = 0.0361224.
    # low/high = (2*10*0.7 + z^2 -+ z sqrt(4*10*(0.21 - c~) + z^2 (1 - 4 c~))) / (2 (10 + z^2))
    #          = (17.841459 -+ 1.959964 * sqrt(6.955104 + 3.286407)) / 27.682918 = (0.417916, 0.871071)
    result = win_rate(["a"] * 6 + ["tie"] * 2 + ["b"] * 2)
    assert result.win_rate == pytest.approx(0.7)
    assert (result.wins, result.ties, result.losses, result.units) == (6, 2, 2, 10)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.417916, 0.871071), abs=1e-6)
    # Wilson on the mean, ignoring that ties vary less than wins and losses, is wider
    as_if_bernoulli = win_rate(["a"] * 7 + ["b"] * 3)
    assert as_if_bernoulli.ci_high - as_if_bernoulli.ci_low > result.ci_high - result.ci_low


def test_interval_never_collapses_and_stays_in_bounds():
    all_wins = win_rate(["a"] * 10)
    assert all_wins.ci_high == pytest.approx(1.0) and 0.6 < all_wins.ci_low < 0.8  # Wilson: 10/10 -> (0.7225, 1)
    assert all_wins.ci_low == pytest.approx(10 / (10 + Z**2), abs=1e-12)
    all_ties = win_rate(["tie"] * 10)
    assert all_ties.win_rate == 0.5 and all_ties.ci_low < 0.4 and all_ties.ci_high > 0.6
    assert all_ties.ci_low + all_ties.ci_high == pytest.approx(1.0)  # symmetric about 0.5


@pytest.mark.parametrize("probabilities, n", [((0.5, 0.3, 0.2), 50), ((0.2, 0.6, 0.2), 30), ((0.9, 0.0, 0.1), 20)])
def test_interval_covers_the_true_win_rate_95_percent_of_the_time(probabilities, n):
    rng = np.random.default_rng(0)
    truth = probabilities[0] + probabilities[1] / 2
    trials = 2000
    covered = 0
    for _ in range(trials):
        x = rng.choice([1.0, 0.5, 0.0], size=n, p=probabilities)
        low, high = bounded_mean_interval(x)
        covered += low <= truth <= high
    assert 0.93 <= covered / trials <= 0.975  # binomial noise on 2,000 trials is about +-0.01


def test_groups_make_each_prompt_one_unit():
    # two prompts, two samples each: prompt 0 won both, prompt 1 split -> units (1.0, 0.5)
    grouped = win_rate(["a", "a", "a", "b"], groups=[0, 0, 1, 1])
    assert grouped.win_rate == 0.75 and grouped.units == 2
    assert (grouped.ci_low, grouped.ci_high) == pytest.approx(bounded_mean_interval(np.array([1.0, 0.5])))
    assert grouped.ci_high - grouped.ci_low > win_rate(["a", "a", "a", "b"]).ci_high - win_rate(
        ["a", "a", "a", "b"]).ci_low  # two independent units carry less evidence than four


def test_unknown_verdicts_are_refused():
    with pytest.raises(ValueError, match="verdicts must be one of"):
        win_rate(["a", "A"])


def test_per_category():
    result = per_category(["a", "b", "tie", "a"], ["x", "y", "x", "x"])
    assert list(result) == ["x", "y"]
    assert result["x"]["win_rate"] == pytest.approx(2.5 / 3) and result["x"]["units"] == 3
    assert result["y"]["win_rate"] == 0.0 and result["y"]["losses"] == 1


def test_swap_reconciliation():
    forward = ["a", "a", "b", "tie", "a", "b"]
    # second call sees (b, a): its "b" means the original a
    swapped = ["b", "a", "a", "tie", "tie", "b"]
    result = reconcile_swapped(forward, swapped)
    # pair 0: a both ways -> a; 1: first position won twice -> tie; 2: b both ways -> b; 3: tie both -> tie;
    # 4: a then tie -> tie; 5: second position won twice -> tie
    assert result.verdicts == ["a", "tie", "b", "tie", "tie", "tie"]
    assert result.position_bias_rate == pytest.approx(3 / 6)
    assert result.first_position_rate == pytest.approx(1 / 6)


def test_a_judge_that_always_picks_the_first_response_is_cancelled_by_the_swap():
    always_first = Judge("first", lambda prompt, a, b: "a", position_free=False)
    judged = judge_pairs(always_first, ["p"] * 4, ["x1", "x2", "x3", "x4"], ["y1", "y2", "y3", "y4"])
    assert judged.swapped and judged.forward == ["a"] * 4 and judged.backward == ["a"] * 4
    assert judged.verdicts == ["tie"] * 4 and win_rate(judged.verdicts).win_rate == 0.5
    assert judged.position_bias_rate == 1.0 and judged.first_position_rate == 1.0
    # a position-free judge is asked once
    longer = Judge("longer", lambda prompt, a, b: verdict_from_scores(len(a), len(b)), position_free=True)
    once = judge_pairs(longer, ["p"] * 2, ["long one", "s"], ["short", "also short"])
    assert once.verdicts == ["a", "b"] and not once.swapped and once.position_bias_rate is None


def test_score_table_judge_treats_a_missing_score_as_the_worst():
    judge = score_table_judge("rm", {("p", "x"): 1.0, ("p", "y"): 1.0, ("p", ""): None, ("p", " "): None})
    assert judge.compare("p", "x", "y") == "tie"
    assert judge.compare("p", "", "x") == "b" and judge.compare("p", "x", "") == "a"
    assert judge.compare("p", "", " ") == "tie"


def test_logistic_fit_matches_the_closed_form_of_an_intercept_only_model():
    # intercept only, 7 of 10 wins, ridge 0: sigmoid(theta) = 0.7 exactly
    theta = logistic_fit(np.ones((10, 1)), np.array([1.0] * 7 + [0.0] * 3), l2=0.0)
    assert 1 / (1 + math.exp(-theta[0])) == pytest.approx(0.7, abs=1e-9)
    # a tie as y = 0.5 is the same as half a win plus half a loss
    fractional = logistic_fit(np.ones((3, 1)), np.array([1.0, 0.5, 0.0]), l2=0.0)
    duplicated = logistic_fit(np.ones((4, 1)), np.array([1.0, 1.0, 0.0, 0.0]), np.array([1, 0.5, 0.5, 1]), l2=0.0)
    assert fractional == pytest.approx(duplicated, abs=1e-9) and fractional[0] == pytest.approx(0.0, abs=1e-9)


def simulated_lengths(seed: int, n: int = 3000):
    rng = np.random.default_rng(seed)
    policy = rng.normal(120, 40, n).clip(1)  # the policy writes longer answers on average
    baseline = rng.normal(80, 40, n).clip(1)
    return rng, policy, baseline


def test_length_controlled_win_rate_removes_a_pure_length_preference():
    # the judge prefers the longer answer and nothing else
    _, policy, baseline = simulated_lengths(0)
    verdicts = ["a" if p > b else "b" for p, b in zip(policy, baseline)]
    raw = win_rate(verdicts).win_rate
    lc = length_controlled_win_rate(verdicts, policy, baseline)
    assert raw > 0.7  # 75% raw: the policy "wins" by being longer
    assert abs(lc["win_rate"] - 0.5) < 0.05 and lc["phi"] > 0


def test_length_controlled_win_rate_keeps_a_real_advantage():
    # P(policy wins) = sigmoid(1 + 2 tanh(d / sd(d))): at equal length the policy wins sigmoid(1) = 0.731
    rng, policy, baseline = simulated_lengths(1)
    d = policy - baseline
    p_win = 1 / (1 + np.exp(-(1 + 2 * np.tanh(d / d.std()))))
    verdicts = ["a" if u < p else "b" for u, p in zip(rng.random(d.size), p_win)]
    lc = length_controlled_win_rate(verdicts, policy, baseline)
    assert lc["win_rate"] == pytest.approx(1 / (1 + math.exp(-1)), abs=0.03)
    assert lc["phi"] == pytest.approx(2.0, abs=0.3)
    assert win_rate(verdicts).win_rate > lc["win_rate"] + 0.05  # the raw rate also pays for length


def test_equal_lengths_leave_the_win_rate_as_it_is():
    lc = length_controlled_win_rate(["a"] * 6 + ["tie"] * 2 + ["b"] * 2, [5] * 10, [5] * 10)
    assert lc["phi"] == 0.0 and lc["length_scale"] == 0.0
    assert lc["win_rate"] == pytest.approx(0.7, abs=0.002)  # the small ridge pulls it a hair toward 0.5


def test_the_pure_modules_import_no_torch():
    import subprocess
    import sys

    code = ("import sys, alignkit.eval.winrate, alignkit.eval.diagnostics, alignkit.eval.demo_checks;"
            "print(','.join(m for m in ('torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
