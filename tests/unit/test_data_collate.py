"""Padding values, dtypes, sides and the scored-prediction count of collate_sft."""

from __future__ import annotations

import pytest
import torch

from alignkit.data.collate import collate_sft, pad_sequences
from alignkit.errors import AlignkitError


def test_pad_sequences_right_and_left():
    right = pad_sequences([[1, 2, 3], [4]], pad_value=0)
    assert right.dtype == torch.long
    assert right.tolist() == [[1, 2, 3], [4, 0, 0]]
    left = pad_sequences([[1, 2, 3], [4]], pad_value=-1, side="left")
    assert left.tolist() == [[1, 2, 3], [-1, -1, 4]]


def test_pad_sequences_dtype_follows_the_pad_value():
    assert pad_sequences([[True], [True, False]], False).tolist() == [[True, False], [True, False]]
    assert pad_sequences([[True], [True, False]], False).dtype == torch.bool
    assert pad_sequences([[0.5], []], 0.0).tolist() == [[0.5], [0.0]]
    with pytest.raises(ValueError, match="side='middle'"):
        pad_sequences([[1]], 0, side="middle")


def test_collate_sft_pads_right_and_counts_scored_predictions():
    examples = [
        {"input_ids": [11, 12, 13], "labels_mask": [False, True, True]},
        {"input_ids": [21, 22, 23, 24, 25], "labels_mask": [True, False, True, True, True]},
    ]
    batch = collate_sft(examples, pad_id=9)
    assert batch["input_ids"].tolist() == [[11, 12, 13, 9, 9], [21, 22, 23, 24, 25]]
    assert batch["input_ids"].dtype == torch.long
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert batch["attention_mask"].dtype == torch.long
    assert batch["labels_mask"].tolist() == [
        [False, True, True, False, False],
        [True, False, True, True, True],
    ]
    assert batch["labels_mask"].dtype == torch.bool
    # labels_mask[:, 1:]: row 1 -> True, True, False, False (2); row 2 -> False, True, True, True (3).
    # Row 2's first token is marked but never predicted (nothing comes before it), so it does not count.
    assert batch["num_tokens"] == 5


def test_collate_sft_needs_a_pad_id():
    with pytest.raises(AlignkitError, match="no pad token"):
        collate_sft([{"input_ids": [1], "labels_mask": [True]}], pad_id=None)
