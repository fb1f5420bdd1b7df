import math

import pytest

from alignkit.train.schedule import lr_factor


def test_warmup_is_linear_from_small_to_one():
    # warmup 3 steps: (s+1)/(w+1) = 1/4, 2/4, 3/4, then the decay starts at 1.0
    assert [lr_factor(s, 10, 3, "constant") for s in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_cosine_hits_one_half_and_min_ratio():
    # total 11, no warmup: decay over 10 intervals; the middle step (5) is cos(pi/2) -> 0.5
    assert lr_factor(0, 11, 0, "cosine") == pytest.approx(1.0)
    assert lr_factor(5, 11, 0, "cosine") == pytest.approx(0.5)
    assert lr_factor(10, 11, 0, "cosine") == pytest.approx(0.0)
    # with min_ratio 0.1 the end is 0.1 and the middle is 0.1 + 0.9 * 0.5 = 0.55
    assert lr_factor(10, 11, 0, "cosine", 0.1) == pytest.approx(0.1)
    assert lr_factor(5, 11, 0, "cosine", 0.1) == pytest.approx(0.55)


def test_linear_decay_by_hand():
    # warmup 2 of 12 steps: decay over 12 - 2 - 1 = 9 intervals; step 5 is 3/9 of the way -> 1 - 1/3
    assert lr_factor(5, 12, 2, "linear") == pytest.approx(1 - 3 / 9)
    assert lr_factor(11, 12, 2, "linear") == pytest.approx(0.0)


def test_cosine_quarter_point():
    # progress 0.25 -> 0.5 * (1 + cos(pi/4))
    assert lr_factor(1, 5, 0, "cosine") == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
