"""Public datasets -> our rows: HH-RLHF, UltraFeedback, OpenAssistant, Dolly and UltraChat; and our own
preference rows -> training conversations for a generative judge (judge-sft).

Each converter is a function `Rows -> ConvertResult`, registered in CONVERTERS under the name that
`alignkit convert FORMAT IN OUT` takes. A converter never drops anything silently: every input row (or part of
one, such as a completion or a reply) it leaves out is recorded under a reason, with its location, and every
row it keeps passes schema.row_problems. Pure Python: no datasets, no tokenizer, no torch.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from alignkit.data.io import JSON_SUFFIXES, Rows, read_rows, write_jsonl
from alignkit.data.schema import implicit_prompt, row_problems, validate_rows
from alignkit.errors import AlignkitError

LISTED = 5  # locations shown per reason in a summary


@dataclass
class ConvertResult:
    """Converted rows of one kind, and what was left out: reason -> locations of the inputs."""

    rows: list[dict]
    kind: str
    skipped: dict[str, list[str]] = field(default_factory=dict)
    read: int = 0  # input rows read (messages, for a flat OpenAssistant file)

    def summary(self) -> str:
        """`8 rows read -> 3 preference rows`, then one line per reason with its count and first locations."""
        head = f"{self.read:,} rows read -> {len(self.rows):,} {self.kind} rows"
        if not self.skipped:
            return head
        lines = [f"  {len(where):,} {reason} ({_listed(where)})" for reason, where in self.skipped.items()]
        return head + "; left out:\n" + "\n".join(lines)


class _Skip(Exception):
    """Raised by a per-row converter: the row is left out, for the reason in the message."""


class _Output:
    """The rows a converter keeps and the inputs it leaves out. Keeps only rows that pass validation."""

    def __init__(self, kind: str):
        self.kind = kind
        self.rows: list[dict] = []
        self.skipped: dict[str, list[str]] = {}

    def add(self, row: dict, where: str) -> None:
        # The backstop for input no converter foresaw (a number where text belongs, an empty turn): such a row
        # is left out and counted here, so a written file always passes validate_rows.
        if problems := row_problems(row, self.kind):
            self.skip(f"invalid once converted: {problems[0].message}", where)
        else:
            self.rows.append(row)

    def skip(self, reason: str, where: str) -> None:
        self.skipped.setdefault(reason, []).append(where)

    def result(self, read: int) -> ConvertResult:
        return ConvertResult(self.rows, self.kind, self.skipped, read)


def convert_file(fmt: str, source: str | Path, out: str | Path) -> ConvertResult:
    """Read `source`, convert it as `fmt`, check the result with validate_rows and write it to `out` as JSONL.

    `out` is written atomically (a temp file, then a rename), and only when at least one row converted.
    """
    if fmt not in CONVERTERS:
        raise AlignkitError(f"unknown dataset format {fmt!r}; the formats are {', '.join(CONVERTERS)}")
    out = Path(out).expanduser()
    if out.suffix.lower() not in JSON_SUFFIXES:
        raise AlignkitError(
            f"{out}: converted rows are written as JSONL; give an output path ending in .jsonl"
        )
    if out.exists() and out.resolve() == Path(source).expanduser().resolve():
        raise AlignkitError(f"{out} is the input file; give a different output path")
    rows = read_rows(source)
    result = CONVERTERS[fmt](rows)
    if not result.rows:
        raise AlignkitError(
            f"{rows.source}: no row could be converted as {fmt}, so nothing was written\n{result.summary()}"
        )
    locations = [f"{out.name}:{line}" for line in range(1, len(result.rows) + 1)]
    validate_rows(Rows(str(out), result.rows, locations), [result.kind])
    write_jsonl(out, result.rows)
    return result


def convert_stage(out_dir: str | Path, format: str, source: str) -> ConvertResult:  # noqa: A002 - CLI name
    """`alignkit convert` as a pipeline stage: out_dir/data.jsonl, then out_dir/convert.json with the counts
    (written last: the stage is done once it exists)."""
    from alignkit.data.io import write_json

    out = Path(out_dir)
    result = convert_file(format, source, out / "data.jsonl")
    left_out = {reason: len(where) for reason, where in result.skipped.items()}
    write_json(out / "convert.json", {"format": format, "source": str(source), "read": result.read,
                                      "rows": len(result.rows), "kind": result.kind, "left_out": left_out})
    print(result.summary())
    return result


# ---- Anthropic HH-RLHF ----

HH_MARKER = re.compile(r"(?:^|\n\n)(Human|Assistant):")
HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def hh_rlhf(rows: Rows) -> ConvertResult:
    """Anthropic HH-RLHF (Bai et al. 2022): two whole transcripts per row -> conversational preference rows.

    Each side is split into turns on its "\\n\\nHuman:" / "\\n\\nAssistant:" markers. The prompt is found, not
    assumed: the two conversations are compared turn by turn, the prompt is their longest shared opening that
    ends with a Human turn, and after it each side must hold exactly one Assistant turn.
    """
    _require_columns(rows, "hh-rlhf", (("chosen", "rejected"),), "two Human/Assistant transcripts")
    return _each_row(rows, "preference", _hh_row)


def _hh_row(row: dict) -> dict:
    chosen, rejected = _hh_turns(row.get("chosen")), _hh_turns(row.get("rejected"))
    if chosen is None or rejected is None:
        raise _Skip("not a Human/Assistant transcript that starts with a Human turn")
    if not all(turn["content"] for turn in chosen + rejected):
        raise _Skip("has an empty turn")
    if chosen == rejected:
        raise _Skip("chosen and rejected are identical")
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        raise _Skip("a side does not end with an Assistant turn")
    shared = 0  # longest run of equal turns at the start ...
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    while shared > 0 and chosen[shared - 1]["role"] != "user":  # ... cut back to end with a Human turn
        shared -= 1
    if len(chosen) - shared != 1 or len(rejected) - shared != 1:
        raise _Skip("chosen and rejected differ before their final Assistant turn")
    return {"prompt": chosen[:shared], "chosen": chosen[shared:], "rejected": rejected[shared:]}


def _hh_turns(transcript) -> list[dict] | None:
    """The turns of a transcript as messages, stripped of surrounding spaces; None when it is not one."""
    if not isinstance(transcript, str):
        return None
    pieces = HH_MARKER.split(transcript)  # [before, marker, text, marker, text, ...]
    if len(pieces) < 3 or pieces[0].strip() or pieces[1] != "Human":
        return None
    markers, texts = pieces[1::2], pieces[2::2]
    return [{"role": HH_ROLES[marker], "content": text.strip()} for marker, text in zip(markers, texts)]


# ---- UltraFeedback ----


def _number(value) -> float | None:
    """A finite number from a number or numeric text ("4"); None for anything else ("N/A", booleans)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _mean(values) -> float | None:
    numbers = [number for number in map(_number, values) if number is not None]
    return sum(numbers) / len(numbers) if numbers else None


def _annotations_mean(completion: dict) -> float | None:
    """Mean of the aspect ratings (helpfulness, honesty, ...: {"Rating": "4"}); "N/A" ratings are left out."""
    annotations = completion.get("annotations")
    if not isinstance(annotations, dict):
        return None
    return _mean(aspect.get("Rating") for aspect in annotations.values() if isinstance(aspect, dict))


def _ratings_mean(completion: dict) -> float | None:
    """Mean of a list of ratings, or of a dict of them by aspect."""
    ratings = completion.get("ratings")
    if isinstance(ratings, dict):
        ratings = list(ratings.values())
    return _mean(ratings) if isinstance(ratings, list) else None


# The rating a row is ranked by: the first of these that every completion of the row has. One scale per row,
# never a mix (overall_score runs 1-10, the aspect ratings 1-5).
UF_SCORES: dict[str, Callable[[dict], float | None]] = {
    "overall_score": lambda completion: _number(completion.get("overall_score")),
    "fine-grained_score": lambda completion: _number(completion.get("fine-grained_score")),
    "annotations": _annotations_mean,
    "ratings": _ratings_mean,
}
UF_COLUMNS = (("instruction", "completions"), ("prompt", "completions"), ("prompt", "chosen", "rejected"))


def ultrafeedback(rows: Rows) -> ConvertResult:
    """UltraFeedback (Cui et al. 2023) -> preference rows with score_chosen and score_rejected.

    From rated completions: chosen is the best-rated one (the first, if several tie for best) and rejected a
    random one of those rated strictly lower, as in HuggingFaceH4/ultrafeedback_binarized. The pick is seeded
    by a hash of the prompt's text, so every run, in any row order, gives the same pairs. Already-binarized
    rows (prompt, chosen, rejected, score_chosen, score_rejected) pass through.
    """
    _require_columns(rows, "ultrafeedback", UF_COLUMNS, "rated completions, or binarized pairs")
    out = _Output("preference")
    for row, where in zip(rows.rows, rows.locations):
        try:
            out.add(_uf_rated_row(row, where, out) if "completions" in row else _uf_pair_row(row), where)
        except _Skip as skip:
            out.skip(str(skip), where)
    return out.result(len(rows))


def _uf_rated_row(row: dict, where: str, out: _Output) -> dict:
    prompt = row.get("instruction") if row.get("instruction") is not None else row.get("prompt")
    if _blank(prompt):
        raise _Skip("'instruction' (or 'prompt') is empty")
    if not isinstance(row["completions"], list):
        raise _Skip("'completions' is not a list")
    answered = []
    for index, completion in enumerate(row["completions"]):
        if isinstance(completion, dict) and not _blank(completion.get("response")):
            answered.append(completion)
        else:
            where_completion = f"{where} completions[{index}]"
            out.skip("completion with an empty response (left out of its row)", where_completion)
    if len(answered) < 2:
        raise _Skip("fewer than 2 completions with a response")
    scores = _common_scores(answered)
    if scores is None:
        raise _Skip(f"the completions share no numeric rating ({', '.join(UF_SCORES)})")
    best = max(scores)
    # Strictly lower: a completion that ties with the best is no reject (it was as good).
    lower = [index for index, score in enumerate(scores) if score < best]
    if not lower:
        raise _Skip("all ratings tie")
    chosen = scores.index(best)
    rejected = random.Random(_text_seed(prompt)).choice(lower)
    return {
        "prompt": prompt,
        "chosen": answered[chosen]["response"],
        "rejected": answered[rejected]["response"],
        "score_chosen": best,
        "score_rejected": scores[rejected],
    }


def _common_scores(completions: list[dict]) -> list[float] | None:
    """Each completion's rating on the first scale of UF_SCORES that all have; None if none is shared."""
    for score in UF_SCORES.values():
        scores = [score(completion) for completion in completions]
        if None not in scores:
            return scores
    return None


def _uf_pair_row(row: dict) -> dict:
    """A binarized row as it is; whole conversations in chosen/rejected are split at their shared prompt."""
    prompt, chosen, rejected = row.get("prompt"), row.get("chosen"), row.get("rejected")
    if _is_conversation(chosen) and _is_conversation(rejected):
        try:
            prompt, chosen, rejected = implicit_prompt(chosen, rejected)
        except ValueError:
            raise _Skip("chosen and rejected do not share a prompt") from None
    if chosen == rejected:
        raise _Skip("chosen and rejected are identical")
    scores = {name: _number(row.get(name)) for name in ("score_chosen", "score_rejected")}
    if None not in scores.values() and scores["score_chosen"] <= scores["score_rejected"]:
        raise _Skip("score_chosen is not above score_rejected")
    scored = {name: score for name, score in scores.items() if score is not None}
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, **scored}


def _is_conversation(value) -> bool:
    """A message list holding a user turn, i.e. the whole conversation rather than one assistant reply."""
    return (
        isinstance(value, list)
        and all(isinstance(message, dict) for message in value)
        and any(message.get("role") == "user" for message in value)
    )


def _text_seed(text: str) -> int:
    # sha256, not hash(): Python salts str hashes per process, which would change the picks on every run.
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


# ---- OpenAssistant (oasst1, oasst2) ----

OASST_ROLES = {"prompter": "user", "assistant": "assistant"}
OASST_MESSAGES = ("message_id", "parent_id", "role", "text", "rank")
OASST_TREES = ("message_tree_id", "prompt")


@dataclass
class _Message:
    """One message of an OpenAssistant tree; `where` is its location in the input file."""

    role: str | None
    text: str | None
    rank: int | None
    where: str
    replies: list[_Message] = field(default_factory=list)


def oasst(rows: Rows) -> ConvertResult:
    """OpenAssistant conversations (Köpf et al. 2023) -> ranked rows, one per prompter message with 2 or more
    ranked assistant replies.

    Input is either flat messages (message_id, parent_id, role, text, rank: 0 is best) or one nested tree per
    row (message_tree_id, prompt: {text, role, replies: [...]}). The prompt is the thread from the root to the
    prompter message; the responses are its ranked replies in file order, `ranking` lists them best first.
    Replies without a rank are left out and counted.
    """
    columns = _require_columns(
        rows, "oasst", (OASST_MESSAGES, OASST_TREES), "flat messages, or one nested message tree per row"
    )
    out = _Output("ranked")
    roots = _flat_roots(rows, out) if columns == OASST_MESSAGES else _nested_roots(rows, out)
    for root in roots:
        _walk(root, [], out)
    return out.result(len(rows))


def _flat_roots(rows: Rows, out: _Output) -> list[_Message]:
    """The trees of flat messages, linked through parent_id; messages no root leads to are counted."""
    by_id: dict[object, _Message] = {}
    parent_of: dict[object, object] = {}
    for row, where in zip(rows.rows, rows.locations):
        message_id = row.get("message_id")
        if message_id in (None, "") or message_id in by_id:
            out.skip("message_id is missing or repeats an earlier message's", where)
            continue
        by_id[message_id] = _Message(row.get("role"), row.get("text"), _rank(row.get("rank")), where)
        parent_of[message_id] = row.get("parent_id")
    roots = []
    for message_id, message in by_id.items():
        parent = parent_of[message_id]
        if parent in (None, ""):
            roots.append(message)
        elif parent in by_id:
            by_id[parent].replies.append(message)
    reached = {id(message) for root in roots for message in _subtree(root)}
    for message in by_id.values():
        if id(message) not in reached:
            out.skip("not connected to a root message (a parent is not in the file)", message.where)
    return roots


def _nested_roots(rows: Rows, out: _Output) -> list[_Message]:
    roots = []
    for row, where in zip(rows.rows, rows.locations):
        if isinstance(row.get("prompt"), dict):
            roots.append(_nested_message(row["prompt"], f"{where} prompt"))
        else:
            out.skip("'prompt' is not a message tree", where)
    return roots


def _nested_message(node, where: str) -> _Message:
    if not isinstance(node, dict):
        return _Message(None, None, None, where)
    replies = node.get("replies") if isinstance(node.get("replies"), list) else []
    return _Message(
        node.get("role"),
        node.get("text"),
        _rank(node.get("rank")),
        where,
        [_nested_message(reply, f"{where}.replies[{index}]") for index, reply in enumerate(replies)],
    )


def _walk(message: _Message, thread: list[dict], out: _Output) -> None:
    """Add a ranked row for every prompter message under `message`; `thread` is the conversation above it."""
    if message.role not in OASST_ROLES:
        for lost in _subtree(message):
            out.skip("role is not 'prompter' or 'assistant', or is under such a message", lost.where)
        return
    thread = [*thread, {"role": OASST_ROLES[message.role], "content": message.text}]
    if message.role == "prompter":
        _add_ranked(message, thread, out)
    for reply in message.replies:
        _walk(reply, thread, out)


def _add_ranked(prompter: _Message, thread: list[dict], out: _Output) -> None:
    ranked = []
    for reply in prompter.replies:
        if reply.role == "assistant" and reply.rank is None:
            out.skip("assistant reply without a rank", reply.where)
        elif reply.role == "assistant":
            ranked.append(reply)
    if len(ranked) < 2:
        out.skip("prompter message with fewer than 2 ranked assistant replies", prompter.where)
    elif len({reply.rank for reply in ranked}) < len(ranked):
        out.skip("two replies of a prompter message share a rank", prompter.where)
    else:
        row = {
            "prompt": thread,
            "responses": [[{"role": "assistant", "content": reply.text}] for reply in ranked],
            "ranking": sorted(range(len(ranked)), key=lambda index: ranked[index].rank),
        }
        out.add(row, prompter.where)


def _subtree(message: _Message) -> Iterator[_Message]:
    yield message
    for reply in message.replies:
        yield from _subtree(reply)


def _rank(value) -> int | None:
    """A rank as an int; None when unranked (null, NaN from a dataframe, an empty CSV cell, a fraction)."""
    number = _number(value)
    return int(number) if number is not None and number == int(number) else None


# ---- Dolly and UltraChat (demonstrations) ----

ULTRACHAT_ROLES = ("user", "assistant")


def dolly(rows: Rows) -> ConvertResult:
    """databricks-dolly-15k -> prompt+completion sft rows; the context, when present, follows the instruction
    after a blank line."""
    _require_columns(rows, "dolly", (("instruction", "response"),), "instruction, context, response")
    return _each_row(rows, "sft", _dolly_row)


def _dolly_row(row: dict) -> dict:
    instruction, context, response = row.get("instruction"), row.get("context"), row.get("response")
    if _blank(instruction):
        raise _Skip("'instruction' is empty")
    if _blank(response):
        raise _Skip("'response' is empty")
    prompt = instruction if _blank(context) else f"{instruction}\n\n{context}"
    return {"prompt": prompt, "completion": response}


def ultrachat(rows: Rows) -> ConvertResult:
    """UltraChat (Ding et al. 2023) -> sft `messages` rows.

    `data` is a list of turns, user first, alternating; `messages` (as in ultrachat_200k) is kept as it is.
    """
    _require_columns(rows, "ultrachat", (("messages",), ("data",)), "a conversation")
    return _each_row(rows, "sft", _ultrachat_row)


def _ultrachat_row(row: dict) -> dict:
    if row.get("messages") is not None:
        return {"messages": row["messages"]}
    turns = row.get("data")
    if not isinstance(turns, list):
        raise _Skip("'data' is not a list of turns")
    return {"messages": [{"role": ULTRACHAT_ROLES[i % 2], "content": turn} for i, turn in enumerate(turns)]}


# ---- preference rows -> a generative judge's SFT rows ----


def judge_sft(rows: Rows) -> ConvertResult:
    """Preference rows (string prompt, chosen, rejected) -> sft `messages` rows that teach a model to be a
    pairwise judge (rewards/judge.py): each pair becomes two conversations, the chosen response shown first
    (answer `Verdict: A`) and second (`Verdict: B`), so the judge learns no position preference. The prompt is
    the judge's bare task (no system message: the rubric is in the labels), which `alignkit judge
    --judge-bare` and `make_judge(..., bare=True)` ask, so the trained model is asked what it learned from."""
    from alignkit.rewards.judge import pairwise_messages

    _require_columns(rows, "judge-sft", (("prompt", "chosen", "rejected"),), "prompt, chosen, rejected")
    out = _Output("sft")
    for row, where in zip(rows.rows, rows.locations):
        texts = [row.get(name) for name in ("prompt", "chosen", "rejected")]
        if not all(isinstance(text, str) for text in texts):
            out.skip("prompt, chosen and rejected are not all strings (conversational rows are not "
                     "supported)", where)
            continue
        prompt, chosen, rejected = texts
        if chosen.strip() == rejected.strip():
            out.skip("chosen and rejected are the same text", where)
            continue
        for first, second, verdict in ((chosen, rejected, "A"), (rejected, chosen, "B")):
            messages = pairwise_messages(prompt, first, second, bare=True)
            out.add({"messages": [*messages, {"role": "assistant", "content": f"Verdict: {verdict}"}]}, where)
    return out.result(len(rows.rows))


CONVERTERS: dict[str, Callable[[Rows], ConvertResult]] = {
    "hh-rlhf": hh_rlhf,
    "ultrafeedback": ultrafeedback,
    "oasst": oasst,
    "dolly": dolly,
    "ultrachat": ultrachat,
    "judge-sft": judge_sft,
}


# ---- shared mechanics ----


def _each_row(rows: Rows, kind: str, convert_row: Callable[[dict], dict]) -> ConvertResult:
    """Convert row by row; a row whose converter raises _Skip is counted under the reason it gives."""
    out = _Output(kind)
    for row, where in zip(rows.rows, rows.locations):
        try:
            out.add(convert_row(row), where)
        except _Skip as skip:
            out.skip(str(skip), where)
    return out.result(len(rows))


def _require_columns(rows: Rows, fmt: str, alternatives: tuple[tuple[str, ...], ...], what: str):
    """The first column set of `alternatives` that `rows` has; none is an error naming found and expected."""
    present = set(rows.columns)
    for needed in alternatives:
        if present.issuperset(needed):
            return needed
    expected = " or ".join(f"({', '.join(needed)})" for needed in alternatives)
    raise AlignkitError(
        f"{rows.source} has columns {', '.join(rows.columns) or '(none)'}, but {fmt} rows ({what}) need the "
        f"columns {expected}; check that the file is {fmt} data, or pick the format it is in "
        f"({', '.join(CONVERTERS)})"
    )


def _blank(value) -> bool:
    return not isinstance(value, str) or not value.strip()


def _listed(locations: list[str]) -> str:
    more = f", ... and {len(locations) - LISTED:,} more" if len(locations) > LISTED else ""
    return ", ".join(locations[:LISTED]) + more
