"""Examples to padded batches. Padding is on the right for training: real tokens keep positions 0..n-1, so
position ids need no correction. Imports torch and nothing from transformers.
"""

from __future__ import annotations

import torch

from alignkit.errors import AlignkitError

PAD_SIDES = ("right", "left")


def pad_sequences(seqs: list[list[int]], pad_value, side: str = "right") -> torch.Tensor:
    """[B, T] tensor of `seqs` padded to the longest with `pad_value` (T = longest length).

    The dtype follows `pad_value`: bool -> torch.bool, int -> torch.long, float -> torch.float32.
    """
    if side not in PAD_SIDES:
        raise ValueError(f"side={side!r}; choose one of {PAD_SIDES}")
    if not seqs:
        raise ValueError("cannot pad an empty batch")
    dtype = (
        torch.bool
        if isinstance(pad_value, bool)
        else torch.long
        if isinstance(pad_value, int)
        else torch.float32
    )
    longest = max(len(seq) for seq in seqs)
    out = torch.full((len(seqs), longest), pad_value, dtype=dtype)
    for row, seq in enumerate(seqs):
        values = torch.as_tensor(seq, dtype=dtype)
        if side == "right":
            out[row, : len(seq)] = values
        else:
            out[row, longest - len(seq) :] = values
    return out


def collate_sft(examples: list[dict], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch of {"input_ids", "labels_mask"} examples (sft rows or pretraining blocks).

    `num_tokens` counts the scored next-token predictions, labels_mask[:, 1:]: the first token of a sequence
    is never predicted. Losses sum over tokens and divide by this count across accumulation steps.
    """
    if pad_id is None:
        raise AlignkitError(
            "the tokenizer has no pad token: set tokenizer.pad_token (its eos_token works: padded "
            "positions are masked out)"
        )
    input_ids = pad_sequences([e["input_ids"] for e in examples], pad_id)  # [B, T]
    attention_mask = pad_sequences([[1] * len(e["input_ids"]) for e in examples], 0)  # [B, T]
    labels_mask = pad_sequences([e["labels_mask"] for e in examples], False)  # [B, T]
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "labels_mask": labels_mask,
        "num_tokens": int(labels_mask[:, 1:].sum()),
    }


def collate_sft_packed(examples: list[dict], pad_id: int) -> dict:
    """Every example of the batch in ONE row, without padding (padding-free packing).

    A block-diagonal causal mask [1, 1, T, T] keeps examples apart and position ids restart at each one, so
    every token sees exactly what it would see alone. The first token of each example is never scored: in
    the packed row it would be "predicted" from the previous example's last token.
    """
    ids, labels, positions, documents = [], [], [], []
    for index, example in enumerate(examples):
        length = len(example["input_ids"])
        ids += example["input_ids"]
        labels += [False, *example["labels_mask"][1:]]
        positions += range(length)
        documents += [index] * length
    document = torch.tensor(documents)
    causal = torch.ones(len(ids), len(ids), dtype=torch.bool).tril()
    labels_mask = torch.tensor([labels])  # [1, T]
    return {
        "input_ids": torch.tensor([ids]),  # [1, T]
        "attention_mask": (causal & (document[:, None] == document[None, :]))[None, None],  # [1, 1, T, T]
        "position_ids": torch.tensor([positions]),  # [1, T]
        "labels_mask": labels_mask,
        "num_tokens": int(labels_mask[:, 1:].sum()),
    }
