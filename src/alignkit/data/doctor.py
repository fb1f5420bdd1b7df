"""The engine of `alignkit validate`: what a data file holds and what training would do to it, before a run.

Unlike validate_rows, nothing here stops at the first bad row: problems are counted and shown next to the
token lengths, duplicates and the truncation report, so one look tells what to fix. Lengths use the same
rendering and tokenization as training (tokenize.py), so the numbers are the ones training will see.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alignkit.data.io import Rows
from alignkit.data.schema import (
    as_messages,
    kind_columns,
    preference_conversation,
    row_problems,
    sft_conversation,
)
from alignkit.data.tokenize import (
    encode_conversation,
    pack_texts,
    render_messages,
    tokenize_preference,
    tokenize_sft,
)
from alignkit.errors import AlignkitError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

LISTED = 5  # locations shown per finding
PERCENTILES = (50, 90, 99)
STEP_SEPARATOR = "\n"  # stepwise lengths: the steps read as one reply, one step per line


def data_report(
    rows: Rows, kind: str, tokenizer: PreTrainedTokenizerBase, max_length: int, truncation: str
) -> dict:
    """Counts, token-length percentiles, over-length rows, empty fields, duplicates, identical pairs and the
    tokenization report of `rows` read as `kind`. JSON-serializable; format_report renders it."""
    problems_by_row = [row_problems(row, kind) for row in rows.rows]
    valid = rows.select(i for i, problems in enumerate(problems_by_row) if not problems)
    lengths, identical = _lengths(valid, kind, tokenizer)
    # Texts are packed into blocks of max_length, so a long text is never cut or dropped.
    over = (
        [] if kind == "text" else [(where, total) for where, total in lengths["total"] if total > max_length]
    )
    tokenization = _tokenization(valid, kind, tokenizer, max_length, truncation)
    return {
        "source": rows.source,
        "kind": kind,
        "rows": len(rows),
        "valid_rows": len(valid),
        "columns": rows.columns,
        "extra_columns": [name for name in rows.columns if name not in kind_columns(kind)],
        "max_length": max_length,
        "truncation": truncation,
        "lengths": {name: percentiles([n for _, n in pairs]) for name, pairs in lengths.items() if pairs},
        "over_max_length": {"count": len(over), "locations": [where for where, _ in over[:LISTED]]},
        "empty_fields": _empty_fields(rows, problems_by_row),
        "invalid": _invalid(rows, problems_by_row),
        "duplicates": duplicate_rows(rows),
        "identical_pairs": identical,
        "tokenization": tokenization,
        # What would stop training: rows that fail validation, and a tokenization error (over-length rows
        # under truncation=error). Duplicates and identical pairs are reported but do not stop a run.
        "problems": len(rows) - len(valid) + int(tokenization is not None and "error" in tokenization),
    }


def percentiles(values: list[int]) -> dict[str, int]:
    """Nearest-rank percentiles (the smallest value with at least q% of values at or below it) and the max."""
    ordered = sorted(values)
    picked = {f"p{q}": ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] for q in PERCENTILES}
    return {**picked, "max": ordered[-1]}


def duplicate_rows(rows: Rows) -> dict:
    """Rows equal to an earlier row in every column: they weigh double in training and leak into held-out
    splits. Lists each repeat as "where = where first seen"."""
    first_seen: dict[str, str] = {}
    repeats = []
    for row, location in zip(rows.rows, rows.locations):
        key = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
        if key in first_seen:
            repeats.append(f"{location} = {first_seen[key]}")
        else:
            first_seen[key] = location
    return {"count": len(repeats), "examples": repeats[:LISTED]}


def format_report(report: dict) -> str:
    """The report as plain text for the terminal."""
    extra = f"; extra: {', '.join(report['extra_columns'])}" if report["extra_columns"] else ""
    columns = ", ".join(report["columns"])
    lines = [
        f"{report['source']}: {_count(report['rows'], report['kind'] + ' row')} (columns {columns}{extra})"
    ]
    lines += _length_table(report["lengths"], report["kind"])
    over = report["over_max_length"]
    if report["kind"] != "text":
        lines.append(f"over max_length={report['max_length']}: {_count(over['count'], 'row')}{_where(over)}")
    for name, found in report["empty_fields"].items():
        lines.append(f"empty '{name}': {_count(found['count'], 'row')}{_where(found)}")
    if report["invalid"]["count"]:
        lines.append(f"other problems: {_count(report['invalid']['count'], 'row')}")
        lines += [f"  {example}" for example in report["invalid"]["examples"]]
    duplicates = report["duplicates"]
    lines.append(f"exact duplicates: {_count(duplicates['count'], 'row')}{_where(duplicates, 'examples')}")
    if report["identical_pairs"] is not None:
        same = report["identical_pairs"]
        lines.append(
            f"chosen identical to rejected: {same['as_written']:,} as written, {same['once_tokenized']:,} "
            f"more once rendered and tokenized{_where(same)}"
        )
    tokenization = report["tokenization"]
    if tokenization is not None:
        lines.append(f"training with truncation={report['truncation']}: {tokenization['summary']}")
    if report["problems"]:
        lines.append(f"NOT ready to train: {_count(report['problems'], 'problem')} above")
    else:
        lines.append("ready to train")
    return "\n".join(lines)


# ---- lengths ----


@dataclass
class Measured:
    """Token counts of one row; `total` is what must fit max_length (preference: prompt + longer response)."""

    prompt: int | None
    responses: list[int]
    total: int
    replies: list = field(default_factory=list)  # the responses as messages, for identical-pair checks
    reply_ids: list[list[int]] = field(default_factory=list)


def measure_row(tokenizer: PreTrainedTokenizerBase, row: dict, kind: str) -> Measured:
    """The lengths training would see for one valid row, through the same rendering and encoding."""
    if kind == "text":
        n = len(tokenizer.encode(row["text"], add_special_tokens=False)) + 1  # + EOS
        return Measured(None, [], n)
    if kind == "prompt":
        prompt = render_messages(tokenizer, as_messages(row["prompt"], "user"), add_generation_prompt=True)
        n = len(tokenizer.encode(prompt, add_special_tokens=False))
        return Measured(n, [], n)
    if kind in ("sft", "unpaired"):
        encoded = encode_conversation(tokenizer, *sft_conversation(row))
        return Measured(encoded.prompt_length, [len(encoded.ids) - encoded.prompt_length], len(encoded.ids))
    prompt, replies = _prompt_and_replies(row, kind)
    encoded = [encode_conversation(tokenizer, prompt + reply, [len(prompt)]) for reply in replies]
    prompt_length = encoded[0].prompt_length
    reply_ids = [e.ids[prompt_length:] for e in encoded]
    lengths = [len(ids) for ids in reply_ids]
    return Measured(prompt_length, lengths, prompt_length + max(lengths), replies, reply_ids)


def _prompt_and_replies(row: dict, kind: str) -> tuple[list[dict], list[list[dict]]]:
    if kind == "preference":
        prompt, chosen, rejected = preference_conversation(row)
        return prompt, [chosen, rejected]
    if kind == "ranked":
        return as_messages(row["prompt"], "user"), [as_messages(r, "assistant") for r in row["responses"]]
    if kind == "stepwise":
        steps = STEP_SEPARATOR.join(row["completions"])
        return as_messages(row["prompt"], "user"), [[{"role": "assistant", "content": steps}]]
    raise ValueError(f"unknown row kind {kind!r}")


def _lengths(rows: Rows, kind: str, tokenizer) -> tuple[dict[str, list[tuple[str, int]]], dict | None]:
    """(location, tokens) per row for prompt / response / total, and the identical-pair findings."""
    lengths: dict[str, list[tuple[str, int]]] = {"prompt": [], "response": [], "total": []}
    identical = (
        {"as_written": 0, "once_tokenized": 0, "locations": []} if kind in ("preference", "ranked") else None
    )
    for row, location in zip(rows.rows, rows.locations):
        try:
            measured = measure_row(tokenizer, row, kind)
        except AlignkitError as err:
            raise AlignkitError(f"{location}: {err}") from None
        if measured.prompt is not None:
            lengths["prompt"].append((location, measured.prompt))
        lengths["response"] += [(location, n) for n in measured.responses]
        lengths["total"].append((location, measured.total))
        if identical is not None:
            _count_identical(identical, location, measured.replies, measured.reply_ids)
    return lengths, identical


def _count_identical(identical: dict, location: str, replies: list, reply_ids: list[list[int]]) -> None:
    """Pairs whose two responses are equal as written, or differ only in text the template or tokenizer
    erases (a trimmed trailing space): either way the pair carries no preference."""
    for better in range(len(replies)):
        for worse in range(better + 1, len(replies)):
            if replies[better] == replies[worse]:
                identical["as_written"] += 1
            elif reply_ids[better] == reply_ids[worse]:
                identical["once_tokenized"] += 1
            else:
                continue
            if len(identical["locations"]) < LISTED:
                identical["locations"].append(location)


# ---- findings ----


def _empty_fields(rows: Rows, problems_by_row: list) -> dict:
    found: dict[str, list[str]] = defaultdict(list)
    for location, problems in zip(rows.locations, problems_by_row):
        for column in dict.fromkeys(p.field for p in problems if p.reason == "empty"):
            found[column].append(location)
    return {column: {"count": len(where), "locations": where[:LISTED]} for column, where in found.items()}


def _invalid(rows: Rows, problems_by_row: list) -> dict:
    """Rows with a missing or malformed field (empty ones are counted by _empty_fields)."""
    bad = [
        f"{location}: {'; '.join(p.message for p in problems if p.reason != 'empty')}"
        for location, problems in zip(rows.locations, problems_by_row)
        if any(p.reason != "empty" for p in problems)
    ]
    return {"count": len(bad), "examples": bad[:LISTED]}


def _tokenization(rows: Rows, kind: str, tokenizer, max_length: int, truncation: str) -> dict | None:
    """What training's tokenization reports on the valid rows, or the error that would stop it."""
    if not rows.rows:
        return None
    try:
        if kind == "sft":
            report = tokenize_sft(rows, tokenizer, max_length, truncation)[1]
        elif kind in ("preference", "ranked"):
            report = tokenize_preference(rows, tokenizer, max_length, truncation)[1]
        elif kind == "text":
            blocks = pack_texts(rows, tokenizer, max_length)
            tokens = sum(len(block["input_ids"]) for block in blocks)
            return {
                "summary": f"{len(rows):,} texts -> {tokens:,} tokens in {len(blocks):,} blocks of up to "
                f"{max_length}",
                "blocks": len(blocks),
                "tokens": tokens,
            }
        else:
            return None  # unpaired, prompt and stepwise rows are tokenized by their own recipes
    except AlignkitError as err:
        return {"summary": f"training would stop: {err}", "error": str(err)}
    return {**report.to_dict(), "summary": report.summary()}


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _where(found: dict, key: str = "locations") -> str:
    listed = found.get(key) or []
    more = ", ..." if found.get("count", len(listed)) > len(listed) else ""
    return f" ({', '.join(listed)}{more})" if listed else ""


def _length_table(lengths: dict, kind: str) -> list[str]:
    if not lengths:
        return ["tokens: no valid rows to measure"]
    columns = ("p50", "p90", "p99", "max")
    lines = [f"{'tokens':<20}" + "".join(f"{name:>8}" for name in columns)]
    for name, stats in lengths.items():
        lines.append(f"  {name:<18}" + "".join(f"{stats[key]:>8,}" for key in columns))
    if kind == "stepwise":
        lines.append("  (response: the steps joined by newlines, as one reply)")
    return lines
