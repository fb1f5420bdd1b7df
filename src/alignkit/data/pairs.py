"""Preference pairs to one batch for scoring chosen and rejected responses, in one of two layouts.

`separate` is the standard one (TRL concatenates chosen and rejected the same way): 2B right-padded rows,
prompt+chosen for every pair, then prompt+rejected. `shared_prompt` runs the prompt once: B rows of
[prompt | chosen | rejected], with a 4D attention mask that hides chosen from rejected, and position ids that
restart so rejected token i sits at len(prompt) + i, exactly where it would directly after the prompt. Both
give the same log-probs (tests/unit/test_pairs.py proves it against one forward per sequence).

Every layout also carries the flat index tensors that say which logits score which token, so the forward
applies the output head to those positions only (`models/forward.py: pair_logps`). Imports torch only.
"""

from __future__ import annotations

import torch

from alignkit.data.collate import pad_sequences
from alignkit.errors import AlignkitError

CHOSEN, REJECTED = 0, 1  # score_side values
# Segment ids of the shared_prompt layout: a token sees the prompt and earlier tokens of its own segment.
PROMPT, CHOSEN_SEGMENT, REJECTED_SEGMENT, PAD_SEGMENT = 0, 1, 2, 3


def collate_pairs(examples: list[dict], pad_id: int, layout: str = "shared_prompt") -> dict:
    """A batch of {"prompt_ids", "chosen_ids", "rejected_ids"} examples (tokenize_preference's output).

    Returns input_ids, attention_mask, position_ids, the scoring indices and the response lengths:
      score_pos [N]:    flat index into the [rows * T] positions whose logits predict each scored token
      score_target [N]: the scored token ids
      score_pair [N]:   the pair each scored token belongs to (0..B-1)
      score_side [N]:   0 for a chosen token, 1 for a rejected one
      chosen_lengths, rejected_lengths [B]; num_pairs = B; layout.
    """
    if layout not in LAYOUTS:
        raise AlignkitError(f"layout={layout!r}; choose one of: {', '.join(LAYOUTS)}")
    if not examples:
        raise ValueError("cannot collate an empty batch of pairs")
    if pad_id is None:
        raise AlignkitError(
            "the tokenizer has no pad token: set tokenizer.pad_token (its eos_token works: padded "
            "positions are never attended to or scored)"
        )
    for index, example in enumerate(examples):
        _check_example(index, example)
    return LAYOUTS[layout](examples, pad_id)


def collate_separate(examples: list[dict], pad_id: int) -> dict:
    """2B rows, prompt+chosen of every pair then prompt+rejected, right-padded; a 2D attention mask."""
    rows, scores = [], []
    for side, key in ((CHOSEN, "chosen_ids"), (REJECTED, "rejected_ids")):
        for pair, example in enumerate(examples):
            prompt, response = example["prompt_ids"], example[key]
            rows.append(prompt + response)
            # response token k sits at len(prompt) + k and is predicted by the position before it
            start = len(prompt) - 1
            scores.append((len(rows) - 1, range(start, start + len(response)), response, pair, side))
    input_ids = pad_sequences(rows, pad_id)  # [2B, T]
    width = input_ids.shape[1]
    return {
        "input_ids": input_ids,
        "attention_mask": pad_sequences([[1] * len(row) for row in rows], 0),  # [2B, T]
        "position_ids": torch.arange(width).expand(len(rows), width).clone(),  # [2B, T]
        **_score_indices(scores, width),
        **_lengths(examples),
        "layout": "separate",
    }


def collate_shared_prompt(examples: list[dict], pad_id: int) -> dict:
    """B rows of [prompt | chosen | rejected], right-padded; a boolean [B, 1, T, T] mask (True = attend).

    Query i sees key j when j <= i and j is a prompt token or in i's own segment, so chosen tokens see the
    prompt and earlier chosen tokens and rejected tokens see the prompt and earlier rejected tokens. A padding
    token sees only itself: a query row with nothing to attend to turns softmax into NaN, and a NaN in an
    unscored row still poisons the gradient (0 * NaN). The first rejected token is predicted from the last
    prompt position, so that position is scored twice (once per side).
    """
    rows, segments, positions, scores = [], [], [], []
    for pair, example in enumerate(examples):
        prompt, chosen, rejected = example["prompt_ids"], example["chosen_ids"], example["rejected_ids"]
        p, c, r = len(prompt), len(chosen), len(rejected)
        rows.append(prompt + chosen + rejected)
        segments.append([PROMPT] * p + [CHOSEN_SEGMENT] * c + [REJECTED_SEGMENT] * r)
        positions.append([*range(p + c), *range(p, p + r)])  # rejected restarts right after the prompt
        scores.append((pair, range(p - 1, p + c - 1), chosen, pair, CHOSEN))
        rejected_from = [p - 1, *range(p + c, p + c + r - 1)]  # first rejected token: last prompt position
        scores.append((pair, rejected_from, rejected, pair, REJECTED))
    input_ids = pad_sequences(rows, pad_id)  # [B, T]
    segment = pad_sequences(segments, PAD_SEGMENT)  # [B, T]
    return {
        "input_ids": input_ids,
        "attention_mask": shared_prompt_mask(segment),  # [B, 1, T, T] bool
        "position_ids": pad_sequences(positions, 0),  # [B, T]
        **_score_indices(scores, input_ids.shape[1]),
        **_lengths(examples),
        "layout": "shared_prompt",
    }


def collate_packed(examples: list[dict], pad_id: int) -> dict:
    """ONE row holding every pair, [prompt | chosen | rejected] after one another, with no padding at all.

    The shared_prompt rules hold inside each pair, and a token never sees another pair (the mask is block
    diagonal); positions restart at every pair. Short pairs of different lengths waste nothing, where the
    B-row layouts pad every row to the longest one.
    """
    ids, segments, documents, positions, scores = [], [], [], [], []
    for pair, example in enumerate(examples):
        prompt, chosen, rejected = example["prompt_ids"], example["chosen_ids"], example["rejected_ids"]
        p, c, r, start = len(prompt), len(chosen), len(rejected), len(ids)
        ids += prompt + chosen + rejected
        segments += [PROMPT] * p + [CHOSEN_SEGMENT] * c + [REJECTED_SEGMENT] * r
        documents += [pair] * (p + c + r)
        positions += [*range(p + c), *range(p, p + r)]
        scores.append((0, range(start + p - 1, start + p + c - 1), chosen, pair, CHOSEN))
        rejected_from = [start + p - 1, *range(start + p + c, start + p + c + r - 1)]
        scores.append((0, rejected_from, rejected, pair, REJECTED))
    segment, document = torch.tensor([segments]), torch.tensor([documents])  # [1, T]
    return {
        "input_ids": torch.tensor([ids]),  # [1, T]
        "attention_mask": shared_prompt_mask(segment, document),  # [1, 1, T, T] bool
        "position_ids": torch.tensor([positions]),  # [1, T]
        **_score_indices(scores, len(ids)),
        **_lengths(examples),
        "layout": "packed",
    }


def shared_prompt_mask(segment: torch.Tensor, document: torch.Tensor | None = None) -> torch.Tensor:
    """[B, T] segment ids (PROMPT, CHOSEN_SEGMENT, REJECTED_SEGMENT, PAD_SEGMENT) -> [B, 1, T, T] bool.

    With `document` ([B, T] pair ids, for the packed layout) a token sees only tokens of its own pair.
    """
    width = segment.shape[1]
    causal = torch.ones(width, width, dtype=torch.bool).tril()  # [T, T], key j <= query i
    query, key = segment[:, :, None], segment[:, None, :]  # [B, T, 1], [B, 1, T]
    visible = (key == PROMPT) | (key == query)
    if document is not None:
        visible &= document[:, :, None] == document[:, None, :]
    real = (query != PAD_SEGMENT) & (key != PAD_SEGMENT)
    padding_self = (query == PAD_SEGMENT) & torch.eye(width, dtype=torch.bool)
    return ((causal & visible & real) | padding_self).unsqueeze(1)  # [B, 1, T, T]


LAYOUTS = {"shared_prompt": collate_shared_prompt, "packed": collate_packed, "separate": collate_separate}
EMPTY_REASONS = {"prompt_ids": "the first response token would have no position to be predicted from"}


def _check_example(index: int, example: dict) -> None:
    where = example.get("location", f"example {index}")
    for key in ("prompt_ids", "chosen_ids", "rejected_ids"):
        if key not in example:
            raise AlignkitError(f"{where}: no {key!r}; pairs come from data.tokenize.tokenize_preference")
        if not example[key]:
            why = EMPTY_REASONS.get(key, "nothing to score")
            raise AlignkitError(f"{where}: {key} is empty ({why})")


def _score_indices(scores: list[tuple], width: int) -> dict[str, torch.Tensor]:
    """Flat scoring tensors from (row, predicting positions, targets, pair, side) groups."""
    pos, target, pair, side = [], [], [], []
    for row, predicting, targets, pair_index, side_index in scores:
        pos += [row * width + position for position in predicting]
        target += targets
        pair += [pair_index] * len(targets)
        side += [side_index] * len(targets)
    return {
        "score_pos": torch.tensor(pos, dtype=torch.long),
        "score_target": torch.tensor(target, dtype=torch.long),
        "score_pair": torch.tensor(pair, dtype=torch.long),
        "score_side": torch.tensor(side, dtype=torch.long),
    }


def _lengths(examples: list[dict]) -> dict:
    return {
        "chosen_lengths": torch.tensor([len(e["chosen_ids"]) for e in examples]),
        "rejected_lengths": torch.tensor([len(e["rejected_ids"]) for e in examples]),
        "num_pairs": len(examples),
    }
