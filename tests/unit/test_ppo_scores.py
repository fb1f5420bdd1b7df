"""PPO's score shaping by hand: normalisation with the reward run's statistics, the missing-EOS penalty and the
clip (ppo.normalize_reward, ppo.missing_eos_penalty, ppo.reward_clip), each switched on and off."""

import pytest
import torch

from alignkit.recipes.ppo import shape_scores

RAW = torch.tensor([3.0, -1.0, 11.0])
CUT = torch.tensor([False, True, False])  # the second response hit max_new_tokens
STATS = {"mean": 1.0, "std": 2.0}


def test_all_off_leaves_the_scores():
    assert torch.equal(shape_scores(RAW, CUT, None, None, None), RAW)


def test_normalise_then_penalise_then_clip_by_hand():
    # (3 - 1) / 2 = 1; (-1 - 1) / 2 = -1, minus 0.5 for the cut response = -1.5; (11 - 1) / 2 = 5 -> clip 4
    out = shape_scores(RAW, CUT, STATS, 0.5, 4.0)
    assert out.tolist() == pytest.approx([1.0, -1.5, 4.0])


def test_each_option_alone():
    assert shape_scores(RAW, CUT, STATS, None, None).tolist() == pytest.approx([1.0, -1.0, 5.0])
    assert shape_scores(RAW, CUT, None, 0.5, None).tolist() == pytest.approx([3.0, -1.5, 11.0])
    assert shape_scores(RAW, CUT, None, None, 2.0).tolist() == pytest.approx([2.0, -1.0, 2.0])
