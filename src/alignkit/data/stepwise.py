"""Stepwise rows to token ids, with the position of each step's score: the data side of process reward models.

A row's steps are joined by a separator into one assistant reply and rendered with the prompt like any other
conversation (chat template, or the plain format). Step i is scored at its OWN LAST TOKEN: the last token
whose text lies inside step i, before the separator. With causal attention that position has read the prompt
and steps 0..i and nothing after, so a step's score never depends on later steps, the separator's own
tokenization, or whether a step is the last one (the final step has no separator after it). To make every
step end exactly on a token, the text is tokenized whole when each step's end already falls on a token
boundary, and otherwise piece by piece between the step ends (as tokenize.py does at the prompt/response
boundary); tokens after the last step (EOS, template text) are never read, so they are cut.

Training (`tokenize_stepwise`) and scoring (rewards/prm.py) both go through `encode_steps`, so a completion
is scored on exactly the tokens the model was trained on. No torch, except in `collate_steps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from alignkit.data.io import Rows
from alignkit.data.schema import as_messages, validate_rows
from alignkit.data.tokenize import (
    TokenizeReport,
    _check_policy,
    _fit,
    _raise_if_over_length,
    encode_at_cuts,
    render_messages,
)
from alignkit.errors import AlignkitError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


@dataclass
class EncodedSteps:
    """A prompt and its steps as ids; `step_ends[i]` is the index of the last token of step i."""

    ids: list[int]
    prompt_length: int  # tokens up to the start of the reply (what left truncation may cut)
    step_ends: list[int]
    merged: bool  # tokenized piece by piece because BPE merged across a step or prompt boundary


def split_steps(completion: str, separator: str) -> list[str]:
    """A generated completion's steps: split at the separator; blank pieces (a doubled or trailing
    separator) are dropped, so "a\\n\\nb\\n" has the two steps "a" and "b"."""
    return [piece for piece in completion.split(separator) if piece.strip()]


def encode_steps(
    tokenizer: PreTrainedTokenizerBase, prompt: str | list[dict], steps: list[str], separator: str
) -> EncodedSteps:
    """Ids of the prompt and the steps joined by `separator` as one assistant reply, and where each step ends.

    The steps must be what splitting their joined text gives back (scoring splits completions at the
    separator): a step may not contain the separator, nor overlap it at its ends. Raises AlignkitError for
    that, for an empty step, and for a chat template that rewrites the reply (the steps could not be found
    in its rendering).
    """
    if not steps:
        raise AlignkitError("a stepwise reply needs at least one step")
    for index, step in enumerate(steps):
        if separator in step:
            raise AlignkitError(
                f"step {index} contains the step separator {separator!r} ({step!r}); completions are split "
                "at it when scored, so this step would be read as several: remove it from the step, or set "
                "prm.step_separator to a string no step contains"
            )
        if not step.strip():
            raise AlignkitError(f"step {index} is empty: every step needs some text to be scored on")
    reply = separator.join(steps)
    if split_steps(reply, separator) != list(steps):
        raise AlignkitError(
            f"the steps joined by {separator!r} split back into {split_steps(reply, separator)!r}, not the "
            "steps as written (a step starts or ends with part of the separator): change those steps or "
            "prm.step_separator"
        )
    messages = as_messages(prompt, "user")
    head = render_messages(tokenizer, messages, add_generation_prompt=True)
    full = render_messages(tokenizer, [*messages, {"role": "assistant", "content": reply}], False)
    start = full.find(reply, len(head)) if full.startswith(head) else -1
    if start < 0:
        raise AlignkitError(
            "the chat template does not render the reply's steps as written after the prompt (does it strip "
            "or rewrite the reply?), so the steps cannot be located: use a template that renders the "
            "assistant's content verbatim, or clear tokenizer.chat_template to use the plain format"
        )
    char_ends, offset = [], start
    for step in steps:
        offset += len(step)
        char_ends.append(offset)
        offset += len(separator)
    ids, token_cuts, merged = encode_at_cuts(tokenizer, full[: char_ends[-1]], [len(head), *char_ends])
    prompt_length, step_cuts = token_cuts[0], token_cuts[1:]
    return EncodedSteps(ids, prompt_length, [cut - 1 for cut in step_cuts], merged)


def tokenize_stepwise(
    rows: Rows, tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str, separator: str
) -> tuple[list[dict], TokenizeReport]:
    """Examples {"input_ids", "step_positions", "step_labels", "location"} from stepwise rows, and the report.

    Only the prompt is ever cut (from the left, with truncation=left); a row whose steps alone do not fit
    is dropped and reported.
    """
    _check_policy(truncation, max_length)
    kind = validate_rows(rows, ["stepwise"])
    report = TokenizeReport(kind, rows=len(rows), kept=0, max_length=max_length, truncation=truncation)
    encoded = []
    for row, location in zip(rows.rows, rows.locations):
        try:
            steps = encode_steps(tokenizer, row["prompt"], row["completions"], separator)
        except AlignkitError as err:
            raise AlignkitError(f"{location}: {err}") from None
        report.boundary_merges += steps.merged
        encoded.append((location, steps, row["labels"]))
    if truncation == "error":
        lengths = [(location, len(steps.ids)) for location, steps, _ in encoded]
        _raise_if_over_length(lengths, max_length, "prompt+steps", "rows")
    examples = []
    for location, steps, labels in encoded:
        cut = _fit(location, len(steps.ids), steps.prompt_length, max_length, truncation, report)
        if cut is None:
            continue
        examples.append({
            "input_ids": steps.ids[cut:],
            "step_positions": [end - cut for end in steps.step_ends],
            "step_labels": list(labels),
            "location": location,
        })
    report.kept = len(examples)
    return examples, report


def collate_steps(examples: list[dict], pad_id: int) -> dict:
    """Right-padded ids [B, T] and mask, step positions [B, S] (0 where padded), step mask [B, S], and, when
    the examples carry labels, step labels [B, S] and "num_steps" (the real steps, the loss's units)."""
    from alignkit.data.collate import pad_sequences

    batch = {
        "input_ids": pad_sequences([e["input_ids"] for e in examples], pad_id),
        "attention_mask": pad_sequences([[1] * len(e["input_ids"]) for e in examples], 0),
        "step_positions": pad_sequences([e["step_positions"] for e in examples], 0),
        "step_mask": pad_sequences([[True] * len(e["step_positions"]) for e in examples], False),
    }
    if examples and "step_labels" in examples[0]:
        batch["step_labels"] = pad_sequences([[float(x) for x in e["step_labels"]] for e in examples], 0.0)
        batch["num_steps"] = sum(len(e["step_positions"]) for e in examples)
    return batch
