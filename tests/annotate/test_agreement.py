"""Agreement measures against numbers worked out by hand (and Krippendorff's own published example)."""

import math
from collections import Counter

import pytest

from alignkit.annotate.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha, majority


def test_cohen_kappa_two_by_two_table():
    # 50 units: both yes 20, first yes / second no 5, first no / second yes 10, both no 15.
    # p_o = 35/50 = 0.7; first says yes 25/50 = 0.5, second 30/50 = 0.6;
    # p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4.
    first = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    second = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(first, second) == pytest.approx(0.4)


def test_cohen_kappa_edges():
    assert cohen_kappa(["a", "b", "a"], ["a", "b", "a"]) == pytest.approx(1.0)
    # Exactly opposite on a balanced binary label: p_o = 0, p_e = 0.5 -> -1.
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))  # one category: chance agreement is certain
    with pytest.raises(ValueError, match="same units"):
        cohen_kappa(["a"], ["a", "b"])


def test_fleiss_kappa_by_hand():
    # 3 units, 3 raters, 2 categories: [3, 0], [0, 3], [2, 1].
    # P_i = (sum n_ij^2 - 3) / 6 = 1, 1, (4 + 1 - 3) / 6 = 1/3; mean P = 7/9.
    # p = [5/9, 4/9]; P_e = 25/81 + 16/81 = 41/81; kappa = (63/81 - 41/81) / (40/81) = 22/40 = 0.55.
    assert fleiss_kappa([[3, 0], [0, 3], [2, 1]]) == pytest.approx(0.55)
    # With two raters Fleiss' kappa is Scott's pi: units (a,a), (a,b), (b,b), (b,b):
    # mean P = (1 + 0 + 1 + 1) / 4 = 0.75; p = [3/8, 5/8]; P_e = 34/64; pi = (0.75 - 34/64) / (30/64) = 14/30.
    assert fleiss_kappa([[2, 0], [1, 1], [0, 2], [0, 2]]) == pytest.approx(14 / 30)
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa([[2, 0], [1, 0]])


def test_krippendorff_alpha_published_example():
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units, missing values;
    # alpha = 0.743 for nominal data and 0.849 for interval data.
    observers = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[value for value in unit if value is not None] for unit in zip(*observers)]
    assert krippendorff_alpha(units) == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(units, "interval") == pytest.approx(0.849, abs=5e-4)


def test_krippendorff_alpha_by_hand():
    # Two units labelled by two coders: (a, a) and (a, b). Pairable values n = 4: a, a, a, b.
    # D_o = (1/4) * [0 + (1 + 1) / 1] = 0.5; D_e = (pairs of unequal values, ordered) / (n (n-1)) = 2*3/12 = 0.5;
    # alpha = 1 - 0.5 / 0.5 = 0. A unit with a single value is not pairable and changes nothing.
    assert krippendorff_alpha([["a", "a"], ["a", "b"]]) == pytest.approx(0.0)
    assert krippendorff_alpha([["a", "a"], ["a", "b"], ["b"]]) == pytest.approx(0.0)
    assert krippendorff_alpha([["a", "a"], ["b", "b"]]) == pytest.approx(1.0)


def test_majority_reports_ties():
    assert majority(Counter({"0": 2, "1": 1})) == ("0", [])
    assert majority(Counter({"0": 1, "1": 1, "tie": 0})) == (None, ["0", "1"])
    assert majority(Counter()) == (None, [])
