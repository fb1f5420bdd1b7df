"""Rows to token ids: chat or plain format, response masks that end with EOS, and a truncation policy that
reports every row it cuts or drops.

The format is the tokenizer's chat template when it has one, else the plain format of DESIGN.md section 3
(`User: ...\\nAssistant: ...<eos>`). Prompt and response are tokenized together and the prompt's ids are
checked to be a prefix of the whole: byte-level BPE can merge characters across the boundary, and then the
pieces are tokenized apart instead (counted as `boundary_merges`). Takes any Hugging Face tokenizer object;
imports transformers only for type hints, and no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alignkit.data.io import Rows
from alignkit.data.schema import (
    as_messages,
    preference_conversation,
    ranked_to_pairs,
    sft_conversation,
    validate_rows,
)
from alignkit.errors import AlignkitError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

TRUNCATIONS = ("error", "left", "drop")
PLAIN_PREFIXES = {"system": "System: ", "user": "User: ", "assistant": "Assistant: "}
PLAIN_GENERATION_PROMPT = "Assistant:"
LISTED_IN_SUMMARY = 3


@dataclass
class TokenizeReport:
    """What tokenization did to the rows: every cut, drop and exclusion, with the row's location."""

    kind: str
    rows: int
    kept: int
    truncated: list[tuple[str, int, int]] = field(default_factory=list)  # (location, tokens before, after)
    dropped: list[tuple[str, str]] = field(default_factory=list)  # (location, reason)
    boundary_merges: int = 0
    identical_pairs: list[str] = field(default_factory=list)
    max_length: int = 0
    truncation: str = "error"

    def summary(self) -> str:
        """One short paragraph for the terminal."""
        parts = [f"{self.kind}: {_count(self.rows, 'row')} -> {_count(self.kept, 'example')}"]
        if self.truncated:
            parts.append(
                f"{_count(len(self.truncated), 'prompt')} cut from the left (max_length={self.max_length})"
            )
        if self.dropped:
            listed = "; ".join(f"{where}: {why}" for where, why in self.dropped[:LISTED_IN_SUMMARY])
            parts.append(f"{len(self.dropped):,} dropped ({listed}{_more(self.dropped)})")
        if self.identical_pairs:
            listed = ", ".join(self.identical_pairs[:LISTED_IN_SUMMARY])
            parts.append(
                f"{_count(len(self.identical_pairs), 'pair')} with chosen identical to rejected excluded "
                f"({listed}{_more(self.identical_pairs)})"
            )
        if self.boundary_merges:
            parts.append(
                f"{_count(self.boundary_merges, 'row')} where BPE merged across the prompt/response "
                "boundary (prompt and response tokenized apart)"
            )
        return "; ".join(parts) + "."

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "rows": self.rows,
            "kept": self.kept,
            "max_length": self.max_length,
            "truncation": self.truncation,
            "truncated": [list(item) for item in self.truncated],
            "dropped": [list(item) for item in self.dropped],
            "boundary_merges": self.boundary_merges,
            "identical_pairs": list(self.identical_pairs),
        }


@dataclass
class Encoded:
    """One conversation's ids; `spans` are the scored [start, end) token ranges, each ending with EOS."""

    ids: list[int]
    spans: list[tuple[int, int]]
    merged: bool  # tokenized in pieces because BPE merged across a prompt/response boundary

    @property
    def prompt_length(self) -> int:
        """Tokens before the first scored one: what left truncation may cut."""
        return self.spans[0][0]


def tokenize_sft(
    rows: Rows, tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str
) -> tuple[list[dict], TokenizeReport]:
    """Examples {"input_ids", "labels_mask", "location"} from sft rows, and the report of what was changed."""
    _check_policy(truncation, max_length)
    kind = validate_rows(rows, ["sft"])
    report = TokenizeReport(kind, rows=len(rows), kept=0, max_length=max_length, truncation=truncation)
    encoded = []
    for row, location in zip(rows.rows, rows.locations):
        messages, scored = sft_conversation(row)
        conversation = _encode_at(location, tokenizer, messages, scored)
        report.boundary_merges += conversation.merged
        encoded.append((location, conversation))
    if truncation == "error":
        _raise_if_over_length(
            [(loc, len(c.ids)) for loc, c in encoded], max_length, "prompt+response", "rows"
        )
    examples = []
    for location, conversation in encoded:
        cut = _fit(
            location, len(conversation.ids), conversation.prompt_length, max_length, truncation, report
        )
        if cut is None:
            continue
        mask = scored_mask(len(conversation.ids), conversation.spans)
        examples.append(
            {"input_ids": conversation.ids[cut:], "labels_mask": mask[cut:], "location": location}
        )
    report.kept = len(examples)
    return examples, report


def tokenize_preference(
    rows: Rows, tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str,
    margin_column: str | None = None,
) -> tuple[list[dict], TokenizeReport]:
    """Examples {"prompt_ids", "chosen_ids", "rejected_ids", "location", "group"} from preference or ranked rows.

    Ranked rows expand to all their pairs first ("ranked.jsonl:3 pair 2"); `group` is the source row, so a
    recipe can keep a prompt's pairs together. Pairs whose chosen equals rejected (as written, or once
    rendered and tokenized) teach nothing and are excluded and reported. Only the prompt is ever cut, so the
    length that must fit is the prompt plus the longer response. With `margin_column`, each example also
    carries that column's number as "margin" (a missing or non-numeric value is an error naming the row).
    """
    _check_policy(truncation, max_length)
    kind = validate_rows(rows, ["preference", "ranked"])
    report = TokenizeReport(kind, rows=len(rows), kept=0, max_length=max_length, truncation=truncation)
    encoded = []
    for location, group, row in _preference_pairs(rows, kind):
        prompt, chosen, rejected = preference_conversation(row)
        if chosen == rejected:
            report.identical_pairs.append(location)
            continue
        pair = _encode_pair(location, tokenizer, prompt, chosen, rejected)
        pair["group"] = group
        if margin_column is not None:
            pair["margin"] = _number(row, margin_column, location)
        report.boundary_merges += pair["merged"]
        if pair["chosen_ids"] == pair["rejected_ids"]:
            report.identical_pairs.append(location)
            continue
        encoded.append((location, pair))
    if truncation == "error":
        totals = [(loc, _pair_length(pair)) for loc, pair in encoded]
        _raise_if_over_length(totals, max_length, "prompt+longer response", "pairs")
    examples = []
    for location, pair in encoded:
        cut = _fit(location, _pair_length(pair), len(pair["prompt_ids"]), max_length, truncation, report)
        if cut is None:
            continue
        examples.append(
            {
                "prompt_ids": pair["prompt_ids"][cut:],
                "chosen_ids": pair["chosen_ids"],
                "rejected_ids": pair["rejected_ids"],
                "location": location,
                "group": pair["group"],
                **({"margin": pair["margin"]} if "margin" in pair else {}),
            }
        )
    report.kept = len(examples)
    return examples, report


def tokenize_prompts(
    rows: Rows, tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str
) -> tuple[list[dict], TokenizeReport]:
    """Examples {"prompt_ids", "row", "location"} from prompt rows, for sampling (PPO, GRPO, eval).

    The prompt (a string, one user turn, or a message list) is rendered with the generation prompt, so the
    model continues with the assistant's reply. `row` is the index of the source row, whose other columns a
    reward function receives. Over-long prompts follow the truncation policy: an error, cut from the left
    (the generation prompt at the end stays), or dropped; each cut and drop is in the report.
    """
    if truncation not in TRUNCATIONS:
        raise AlignkitError(f"data.truncation={truncation!r}; choose one of: {', '.join(TRUNCATIONS)}")
    kind = validate_rows(rows, ["prompt"])
    report = TokenizeReport(kind, rows=len(rows), kept=0, max_length=max_length, truncation=truncation)
    encoded = []
    for index, (row, location) in enumerate(zip(rows.rows, rows.locations)):
        text = render_messages(tokenizer, as_messages(row["prompt"], "user"), add_generation_prompt=True)
        encoded.append((index, location, tokenizer.encode(text, add_special_tokens=False)))
    if truncation == "error":
        _raise_if_over_length([(loc, len(ids)) for _, loc, ids in encoded], max_length, "the prompt", "prompts",
                              setting="data.max_prompt_length")
    examples = []
    for index, location, ids in encoded:
        if len(ids) > max_length:
            if truncation == "drop":
                report.dropped.append((location, f"{len(ids)} tokens, over max_length={max_length}"))
                continue
            report.truncated.append((location, len(ids), max_length))
            ids = ids[len(ids) - max_length :]
        examples.append({"prompt_ids": ids, "row": index, "location": location})
    report.kept = len(examples)
    return examples, report


def pack_texts(rows: Rows, tokenizer: PreTrainedTokenizerBase, block_size: int) -> list[dict]:
    """Pretraining blocks: every text plus EOS, joined into one stream and cut every `block_size` tokens.

    The last block may be shorter; it is kept, so every token of the data is trained on exactly once.
    """
    if block_size < 1:
        raise AlignkitError(f"block size must be at least 1 token, got {block_size}")
    validate_rows(rows, ["text"])
    eos_id = eos_token_id(tokenizer)
    stream: list[int] = []
    for row in rows.rows:
        stream += tokenizer.encode(row["text"], add_special_tokens=False) + [eos_id]
    blocks = [stream[start : start + block_size] for start in range(0, len(stream), block_size)]
    return [{"input_ids": block, "labels_mask": [True] * len(block)} for block in blocks]


# ---- rendering ----


def render_messages(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict], add_generation_prompt: bool
) -> str:
    """The conversation as text: the tokenizer's chat template if it has one, else the plain format."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=add_generation_prompt
            )
        except Exception as err:  # noqa: BLE001 - templates raise anything: raise_exception, KeyError, ...
            raise AlignkitError(f"the tokenizer's chat template failed on this conversation: {err}") from None
    return render_plain(messages, tokenizer.eos_token, add_generation_prompt)


def render_plain(messages: list[dict], eos_token: str, add_generation_prompt: bool) -> str:
    """DESIGN.md section 3's format: `System: s\\nUser: u\\nAssistant: a<eos>\\nUser: ...\\nAssistant:`.

    An assistant turn is followed by a newline only when something comes after it, so that every prefix of
    a conversation renders as a prefix of the whole (the masks depend on it).
    """
    parts = []
    for index, message in enumerate(messages):
        text = PLAIN_PREFIXES[message["role"]] + message["content"]
        if message["role"] == "assistant":
            followed = index < len(messages) - 1 or add_generation_prompt
            text += eos_token + ("\n" if followed else "")
        else:
            text += "\n"
        parts.append(text)
    if add_generation_prompt:
        parts.append(PLAIN_GENERATION_PROMPT)
    return "".join(parts)


# ---- encoding ----


def encode_conversation(
    tokenizer: PreTrainedTokenizerBase, messages: list[dict], scored: list[int]
) -> Encoded:
    """Ids of `messages` with the token spans of the messages at `scored` (ascending assistant indices).

    Each scored turn is located by rendering the conversation up to it (with the generation prompt) and
    through it; both must be prefixes of the whole rendering. Tokens after the last scored one are never
    trained on, so they are cut.
    """
    if not scored:
        raise ValueError("encode_conversation needs at least one message to score")
    full = render_messages(tokenizer, messages, add_generation_prompt=False)
    cuts = []
    for index in scored:
        for prefix in (
            render_messages(tokenizer, messages[:index], True),
            render_messages(tokenizer, messages[: index + 1], False),
        ):
            if not full.startswith(prefix):
                raise AlignkitError(
                    f"the chat template renders the conversation up to message {index} differently from "
                    "the whole conversation, so the response tokens cannot be located; use a template that "
                    "renders turn by turn, or clear tokenizer.chat_template to use the plain format"
                )
            cuts.append(len(prefix))
    ids, token_cuts, merged = encode_at_cuts(tokenizer, full, cuts)
    spans = list(zip(token_cuts[0::2], token_cuts[1::2]))
    ids, spans = end_spans_with_eos(ids, spans, eos_token_id(tokenizer))
    return Encoded(ids[: spans[-1][1]], spans, merged)


def encode_at_cuts(
    tokenizer: PreTrainedTokenizerBase, text: str, cuts: list[int]
) -> tuple[list[int], list[int], bool]:
    """(ids, the token index of each character cut, merged): the text tokenized whole when every cut falls
    on a token boundary, else tokenized piece by piece between the cuts (merged=True)."""
    whole = tokenizer.encode(text, add_special_tokens=False)
    boundaries = sorted(set(cuts))
    token_at = {}
    for cut in boundaries:
        prefix = tokenizer.encode(text[:cut], add_special_tokens=False)
        if whole[: len(prefix)] != prefix:
            break
        token_at[cut] = len(prefix)
    else:
        return whole, [token_at[cut] for cut in cuts], False
    ids: list[int] = []
    start = 0
    for cut in [*boundaries, len(text)]:
        ids += tokenizer.encode(text[start:cut], add_special_tokens=False)
        token_at[cut], start = len(ids), cut
    return ids, [token_at[cut] for cut in cuts], True


def end_spans_with_eos(
    ids: list[int], spans: list[tuple[int, int]], eos_id: int
) -> tuple[list[int], list[tuple[int, int]]]:
    """Make every scored span end with EOS, so the model learns to stop.

    A span that contains EOS ends at its last one (template text after it, like a newline, stays unscored
    context); a span without one gets EOS inserted at its end, shifting the spans after it.
    """
    ids, fixed, shift = list(ids), [], 0
    for start, end in spans:
        start, end = start + shift, end + shift
        eos_positions = [i for i in range(start, end) if ids[i] == eos_id]
        if eos_positions:
            fixed.append((start, eos_positions[-1] + 1))
        else:
            ids.insert(end, eos_id)
            fixed.append((start, end + 1))
            shift += 1
    return ids, fixed


def scored_mask(length: int, spans: list[tuple[int, int]]) -> list[bool]:
    mask = [False] * length
    for start, end in spans:
        mask[start:end] = [True] * (end - start)
    return mask


def eos_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    if tokenizer.eos_token_id is None:
        raise AlignkitError(
            "the tokenizer has no eos_token; responses end with it so the model learns to stop: "
            "set tokenizer.eos_token (and save the tokenizer with the model)"
        )
    return tokenizer.eos_token_id


def _encode_at(location: str, tokenizer, messages: list[dict], scored: list[int]) -> Encoded:
    try:
        return encode_conversation(tokenizer, messages, scored)
    except AlignkitError as err:
        raise AlignkitError(f"{location}: {err}") from None


def _encode_pair(
    location: str, tokenizer, prompt: list[dict], chosen: list[dict], rejected: list[dict]
) -> dict:
    """prompt/chosen/rejected ids; the prompt is the rendered prompt with its generation prompt, tokenized
    alone, in both the whole and the piecewise path, so it is the same for both responses."""
    sides = [_encode_at(location, tokenizer, prompt + reply, [len(prompt)]) for reply in (chosen, rejected)]
    (c_start, c_end), (r_start, r_end) = sides[0].spans[0], sides[1].spans[0]
    return {
        "prompt_ids": sides[0].ids[:c_start],
        "chosen_ids": sides[0].ids[c_start:c_end],
        "rejected_ids": sides[1].ids[r_start:r_end],
        "merged": sides[0].merged or sides[1].merged,
    }


def _preference_pairs(rows: Rows, kind: str) -> list[tuple[str, str, dict]]:
    """(location, group, pair): the pairs of one ranked row share a group (its row's location)."""
    if kind == "preference":
        return [(location, location, row) for location, row in zip(rows.locations, rows.rows)]
    return [
        (f"{location} pair {number}", location, pair)
        for location, row in zip(rows.locations, rows.rows)
        for number, pair in enumerate(ranked_to_pairs(row), start=1)
    ]


def _number(row: dict, column: str, location: str) -> float:
    value = row.get(column)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise AlignkitError(f"{location}: margin column {column!r} is {value!r}, not a number: "
                            f"fill it in every row or unset the margin column")
    return float(value)


def _pair_length(pair: dict) -> int:
    return len(pair["prompt_ids"]) + max(len(pair["chosen_ids"]), len(pair["rejected_ids"]))


# ---- truncation ----


def _check_policy(truncation: str, max_length: int) -> None:
    if truncation not in TRUNCATIONS:
        raise AlignkitError(f"data.truncation={truncation!r}; choose one of: {', '.join(TRUNCATIONS)}")
    if max_length < 2:
        raise AlignkitError(f"data.max_length={max_length} leaves no room for a prompt and a response")


def _raise_if_over_length(lengths: list[tuple[str, int]], max_length: int, what: str, items: str,
                          setting: str = "data.max_length") -> None:
    """The `error` policy: stop before training, naming the first long row and counting all of them."""
    over = [(location, length) for location, length in lengths if length > max_length]
    if not over:
        return
    location, length = over[0]
    longest = max(length for _, length in over)
    raise AlignkitError(
        f"{location}: {what} is {length:,} tokens, over {setting.split('.')[-1]}={max_length} "
        f"({len(over):,} of {len(lengths):,} {items} are over; the longest is {longest:,}): "
        f"raise {setting}, or set data.truncation=left (cut prompts from the left) "
        "or data.truncation=drop"
    )


def _fit(
    location: str, total: int, prompt_length: int, max_length: int, truncation: str, report: TokenizeReport
) -> int | None:
    """Tokens to cut from the front of the prompt so the row fits, or None when the row is dropped.

    Records the cut or the drop in `report`: nothing is cut or dropped without a line there.
    """
    if total <= max_length:
        return 0
    if truncation == "drop":
        report.dropped.append((location, f"{total} tokens, over max_length={max_length}"))
        return None
    excess = total - max_length
    if prompt_length - excess < 1:
        response = total - prompt_length
        reason = f"the response alone is {response} tokens; with at least 1 prompt token it cannot fit"
        report.dropped.append((location, f"{reason} max_length={max_length}"))
        return None
    report.truncated.append((location, total, total - excess))
    return excess


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _more(items: list) -> str:
    return f", and {len(items) - LISTED_IN_SUMMARY:,} more" if len(items) > LISTED_IN_SUMMARY else ""
