"""The row formats of DESIGN.md section 3: detect which one a file holds and check every row of it.

Columns follow TRL's dataset formats so hub datasets work as they are. A field is "standard" (a string) or
"conversational" (a list of {"role", "content"} messages): a conversational `prompt` ends with a user turn,
and `completion`, `chosen`, `rejected` and each of `responses` hold one assistant message. Extra columns are
allowed and kept (reward functions and reports read them). Pure Python: no tokenizer, no torch.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from alignkit.data.io import Rows
from alignkit.errors import AlignkitError

KINDS = ("text", "sft", "preference", "ranked", "unpaired", "prompt", "stepwise")
ROLES = ("system", "user", "assistant")
MAX_LISTED_PROBLEMS = 10

# The column sets that make each kind, most specific first: the first kind whose columns a file has wins, so a
# ranked file (prompt, responses, ranking) is not taken for a prompt-only one.
DETECTION: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("stepwise", (("prompt", "completions", "labels"),)),
    ("ranked", (("prompt", "responses", "ranking"),)),
    ("preference", (("chosen", "rejected"),)),
    ("unpaired", (("prompt", "completion", "label"),)),
    ("sft", (("prompt", "completion"), ("messages",))),
    ("text", (("text",),)),
    ("prompt", (("prompt",),)),
)
COLUMNS_OF = {
    "text": "text",
    "sft": "prompt+completion or messages",
    "preference": "prompt+chosen+rejected (prompt may be left out when chosen/rejected are message lists "
    "that start with it)",
    "ranked": "prompt+responses+ranking (ranking: response indices, best first)",
    "unpaired": "prompt+completion+label (label: true for a desirable completion)",
    "prompt": "prompt (any other columns go along to reward functions)",
    "stepwise": "prompt+completions+labels (completions: the steps; labels: one true/false per step)",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row. `reason` is "missing", "empty" or "invalid" (doctor.py counts them)."""

    field: str
    reason: str
    message: str


def detect_kind(columns: Iterable[str], source: str = "the data") -> str:
    """The row kind a set of columns makes; extra columns are ignored. Unknown sets are an error."""
    present = set(columns)
    for kind, alternatives in DETECTION:
        if any(present.issuperset(required) for required in alternatives):
            return kind
    kinds = "\n".join(f"  {kind}: {COLUMNS_OF[kind]}" for kind in KINDS)
    raise AlignkitError(
        f"{source} has columns {_names(columns)}, which make no known row format; "
        f"rename its columns to one of these sets:\n{kinds}"
    )


def kind_columns(kind: str) -> set[str]:
    """Every column that rows of `kind` read; any other column is extra and kept as it is."""
    columns = {name for alternative in dict(DETECTION)[kind] for name in alternative}
    return (columns | {"prompt"}) if kind == "preference" else columns


def validate_rows(rows: Rows, allowed: Iterable[str]) -> str:
    """The kind of `rows`, after checking it is one the caller can use and that every row is well formed.

    Any file with a `prompt` column serves where prompt-only rows are wanted (its other columns go along).
    All problems are counted; the first MAX_LISTED_PROBLEMS are listed with their locations.
    """
    allowed = tuple(allowed)
    if unknown := [kind for kind in allowed if kind not in KINDS]:
        raise ValueError(f"unknown row kinds {unknown}; kinds are {KINDS}")
    columns = rows.columns
    kind = detect_kind(columns, rows.source)
    if kind not in allowed:
        if "prompt" not in allowed or "prompt" not in columns:
            needs = "; or ".join(f"{wanted} needs {COLUMNS_OF[wanted]}" for wanted in allowed)
            raise AlignkitError(f"{needs}; {rows.source} has columns {_names(columns)} (a {kind} file)")
        kind = "prompt"
    problems = [
        f"{location}: {problem.message}"
        for row, location in zip(rows.rows, rows.locations)
        for problem in row_problems(row, kind)
    ]
    if problems:
        listed = "\n".join(f"  {line}" for line in problems[:MAX_LISTED_PROBLEMS])
        more = (
            f"\n  ... and {len(problems) - MAX_LISTED_PROBLEMS:,} more"
            if len(problems) > MAX_LISTED_PROBLEMS
            else ""
        )
        raise AlignkitError(
            f"{rows.source}: {len(problems):,} problem(s) in {len(rows):,} {kind} rows; "
            f"fix or remove these rows:\n{listed}{more}"
        )
    return kind


def row_problems(row: dict, kind: str) -> list[Problem]:
    """Everything wrong with one row of `kind`; empty when the row is usable."""
    return CHECKS[kind](row)


def ranked_to_pairs(row: dict) -> list[dict]:
    """All K(K-1)/2 (chosen, rejected) pairs of a ranked row, the better-ranked response as chosen.

    Pairs come in rank order: (1st, 2nd), (1st, 3rd), ..., (2nd, 3rd), ... Other columns are copied to each.
    """
    others = {key: value for key, value in row.items() if key not in ("responses", "ranking")}
    best_first = [row["responses"][index] for index in row["ranking"]]
    return [
        {**others, "chosen": best_first[better], "rejected": best_first[worse]}
        for better in range(len(best_first))
        for worse in range(better + 1, len(best_first))
    ]


def as_messages(value: str | list[dict], role: str) -> list[dict]:
    """A field as a message list: a string becomes one message of `role`; a message list stays as it is."""
    return [{"role": role, "content": value}] if isinstance(value, str) else list(value)


def sft_conversation(row: dict) -> tuple[list[dict], list[int]]:
    """(messages, indices of the messages to score) of a valid sft row.

    prompt+completion rows score the completion only (assistant turns inside a multi-turn prompt are context);
    `messages` rows score every assistant turn.
    """
    if row.get("prompt") is not None and row.get("completion") is not None:
        prompt = as_messages(row["prompt"], "user")
        completion = as_messages(row["completion"], "assistant")
        return prompt + completion, list(range(len(prompt), len(prompt) + len(completion)))
    messages = row["messages"]
    return messages, [i for i, message in enumerate(messages) if message["role"] == "assistant"]


def preference_conversation(row: dict) -> tuple[list[dict], list[dict], list[dict]]:
    """(prompt, chosen, rejected) message lists of a valid preference row, the prompt made explicit."""
    if row.get("prompt") is None:
        return implicit_prompt(row["chosen"], row["rejected"])
    return (
        as_messages(row["prompt"], "user"),
        as_messages(row["chosen"], "assistant"),
        as_messages(row["rejected"], "assistant"),
    )


def implicit_prompt(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """Split two conversations into their shared prompt and each one's final reply (TRL's implicit prompt).

    The prompt is the longest shared beginning that ends with a user turn, so identical conversations split
    into a prompt and two identical replies (reported later) rather than into nothing. Raises ValueError with
    the reason when the two do not share a prompt or differ in more than their last reply.
    """
    shared = 0
    while shared < min(len(chosen), len(rejected)) and _same_message(chosen[shared], rejected[shared]):
        shared += 1
    while shared > 0 and chosen[shared - 1].get("role") != "user":
        shared -= 1
    if shared == 0:
        raise ValueError(
            "'chosen' and 'rejected' share no opening user turn; give the prompt in a 'prompt' column"
        )
    for name, conversation in (("chosen", chosen), ("rejected", rejected)):
        if len(conversation) - shared != 1 or conversation[shared].get("role") != "assistant":
            raise ValueError(
                f"'{name}' must hold one assistant reply after the prompt it shares with the other side "
                f"(its first {_messages(shared)}), but has {_messages(len(conversation) - shared)} there"
            )
    return chosen[:shared], chosen[shared:], rejected[shared:]


def _same_message(a: dict, b: dict) -> bool:
    return a.get("role") == b.get("role") and a.get("content") == b.get("content")


# ---- per-kind row checks: each returns the list of problems of one row ----


def _check_text_row(row: dict) -> list[Problem]:
    return _check_string(row.get("text"), "text")


def _check_sft_row(row: dict) -> list[Problem]:
    if row.get("prompt") is not None or row.get("completion") is not None:
        return _check_prompt_reply(row, "completion")
    if row.get("messages") is None:
        return [Problem("messages", "missing", "needs 'prompt' and 'completion', or 'messages'")]
    problems = _check_messages(row["messages"], "messages")
    if not problems and not any(message["role"] == "assistant" for message in row["messages"]):
        problems.append(Problem("messages", "invalid", "'messages' has no assistant turn to learn from"))
    return problems


def _check_preference_row(row: dict) -> list[Problem]:
    if row.get("prompt") is not None:
        return _check_prompt_reply(row, "chosen") + _check_reply_style(row, "rejected")
    problems = []
    for name in ("chosen", "rejected"):
        if isinstance(row.get(name), str):
            problems.append(
                Problem(
                    "prompt",
                    "missing",
                    f"'prompt' is missing: a string '{name}' needs a prompt "
                    "column (only message lists can carry their prompt inside)",
                )
            )
            return problems
        problems += _check_messages(row.get(name), name)
    if not problems:
        try:
            implicit_prompt(row["chosen"], row["rejected"])
        except ValueError as err:
            problems.append(Problem("prompt", "invalid", str(err)))
    return problems


def _check_ranked_row(row: dict) -> list[Problem]:
    problems = _check_prompt(row)
    responses, ranking = row.get("responses"), row.get("ranking")
    if not isinstance(responses, list) or len(responses) < 2:
        got = f"{len(responses)}" if isinstance(responses, list) else _type_name(responses)
        return problems + [
            Problem("responses", "invalid", f"'responses' must be a list of 2 or more, got {got}")
        ]
    for index, response in enumerate(responses):
        problems += _check_reply(response, f"responses[{index}]", row.get("prompt"))
    if not isinstance(ranking, list) or sorted(_as_int(r) for r in ranking) != list(range(len(responses))):
        problems.append(
            Problem(
                "ranking",
                "invalid",
                f"'ranking' must list the indices 0..{len(responses) - 1} of "
                f"'responses', each once, best first; got {ranking!r}",
            )
        )
    return problems


def _check_unpaired_row(row: dict) -> list[Problem]:
    problems = _check_prompt_reply(row, "completion")
    if not isinstance(row.get("label"), bool):
        problems.append(
            Problem(
                "label",
                "missing" if row.get("label") is None else "invalid",
                f"'label' must be true or false, got {row.get('label')!r}",
            )
        )
    return problems


def _check_stepwise_row(row: dict) -> list[Problem]:
    problems = _check_prompt(row)
    steps, labels = row.get("completions"), row.get("labels")
    if not isinstance(steps, list) or not steps:
        return problems + [
            Problem(
                "completions",
                "missing" if steps is None else "invalid",
                f"'completions' must be a non-empty list of step strings, got {steps!r}",
            )
        ]
    for index in range(len(steps)):
        problems += _check_string(steps[index], f"completions[{index}]", "completions")
    if not isinstance(labels, list) or not all(isinstance(label, bool) for label in labels):
        problems.append(
            Problem("labels", "invalid", f"'labels' must be a list of true/false, got {labels!r}")
        )
    elif len(labels) != len(steps):
        problems.append(
            Problem(
                "labels",
                "invalid",
                f"'labels' has {len(labels)} entries but 'completions' has {len(steps)} steps",
            )
        )
    return problems


def _check_prompt_only_row(row: dict) -> list[Problem]:
    return _check_prompt(row)


CHECKS = {
    "text": _check_text_row,
    "sft": _check_sft_row,
    "preference": _check_preference_row,
    "ranked": _check_ranked_row,
    "unpaired": _check_unpaired_row,
    "prompt": _check_prompt_only_row,
    "stepwise": _check_stepwise_row,
}


# ---- field checks ----


def _check_prompt_reply(row: dict, reply: str) -> list[Problem]:
    """A prompt and one reply field (completion, chosen, rejected) of the same style."""
    return _check_prompt(row) + _check_reply_style(row, reply)


def _check_reply_style(row: dict, reply: str) -> list[Problem]:
    return _check_reply(row.get(reply), reply, row.get("prompt"))


def _check_prompt(row: dict) -> list[Problem]:
    prompt = row.get("prompt")
    if not isinstance(prompt, list):
        return _check_string(prompt, "prompt")
    problems = _check_messages(prompt, "prompt")
    if not problems and prompt[-1]["role"] != "user":
        problems.append(
            Problem(
                "prompt",
                "invalid",
                f"'prompt' must end with a user turn, but ends with "
                f"{prompt[-1]['role']}; the reply belongs in the response column",
            )
        )
    return problems


def _check_reply(value, name: str, prompt) -> list[Problem]:
    """A response: a string, or a list holding one assistant message; the same style as its prompt."""
    column = name.split("[")[0]  # responses[2] is a field of the responses column
    if isinstance(value, list):
        problems = _check_messages(value, name)
        if not problems and (len(value) != 1 or value[0]["role"] != "assistant"):
            roles = ", ".join(message["role"] for message in value)
            problems.append(
                Problem(column, "invalid", f"'{name}' must hold one assistant message, got: {roles}")
            )
    else:
        problems = _check_string(value, name, column)
    if not problems and prompt is not None and isinstance(prompt, str) != isinstance(value, str):
        prompt_style, reply_style = (
            ("a string", "a message list") if isinstance(prompt, str) else ("a message list", "a string")
        )
        problems.append(
            Problem(
                column,
                "invalid",
                f"'prompt' is {prompt_style} but '{name}' is {reply_style}; "
                "use strings for both or message lists for both",
            )
        )
    return problems


def _check_string(value, name: str, column: str | None = None) -> list[Problem]:
    """A non-blank string; `name` is where it sits ("messages[2].content"), `column` the row's field."""
    column = column or name
    if value is None:
        return [Problem(column, "missing", f"'{name}' is missing")]
    if not isinstance(value, str):
        return [Problem(column, "invalid", f"'{name}' must be a string, got {_type_name(value)}")]
    if not value.strip():
        return [Problem(column, "empty", f"'{name}' is empty")]
    return []


def _check_messages(value, name: str) -> list[Problem]:
    column = name.split("[")[0]  # responses[2] is a field of the responses column
    if value is None:
        return [Problem(column, "missing", f"'{name}' is missing")]
    if not isinstance(value, list):
        return [
            Problem(
                column,
                "invalid",
                f'\'{name}\' must be a list of {{"role", "content"}} messages, got {_type_name(value)}',
            )
        ]
    if not value:
        return [Problem(column, "empty", f"'{name}' is an empty list")]
    problems = []
    for index, message in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            problems.append(
                Problem(
                    column,
                    "invalid",
                    f'\'{where}\' must be a {{"role", "content"}} message, got {message!r:.60}',
                )
            )
        elif message["role"] not in ROLES:
            problems.append(
                Problem(
                    column, "invalid", f"'{where}' has role {message['role']!r}; roles are {', '.join(ROLES)}"
                )
            )
        else:
            problems += _check_string(message["content"], f"{where}.content", column)
    return problems


def _as_int(value) -> int:
    """An index as an int, or -1 for anything that is not one (bools included: true is not index 1)."""
    return value if isinstance(value, int) and not isinstance(value, bool) else -1


def _type_name(value) -> str:
    return {
        list: "a list",
        dict: "an object",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
    }.get(type(value), "null" if value is None else type(value).__name__)


def _messages(n: int) -> str:
    return f"{n} message{'' if n == 1 else 's'}"


def _names(columns: Iterable[str]) -> str:
    return ", ".join(columns) or "(none)"
