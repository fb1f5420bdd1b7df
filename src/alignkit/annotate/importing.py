"""Reading a JSONL file of items to annotate: every line checked before anything is stored.

Three row shapes are accepted, so the outputs of other commands load as they are:
  {"prompt", "responses": [2..K]}            (optional "id", and "gold": the known answer of a gold item)
  {"prompt", "chosen", "rejected"}            (a preference row: its two sides become the responses)
  {"prompt", "completion", "sample"?}         (`alignkit generate` output: rows of one prompt are grouped)
Any other columns are kept and come back in the export. An error names the file, line, field and the fix, and
the import stores nothing unless every line is right.
"""

from __future__ import annotations

import json
from pathlib import Path

from alignkit.data.schema import row_problems
from alignkit.errors import AlignkitError

MAX_RESPONSES = 9  # the digit keys 1-9 pick responses
MAX_LISTED = 10
RESERVED = ("id", "prompt", "responses", "gold", "chosen", "rejected", "completion", "sample", "truncated")
CHOICES = ("tie", "both_bad")


def parse_items(text: str, source: str, task: str) -> list[dict]:
    """The items of a JSONL text: dicts of external_id, prompt, responses, gold, extra. Raises AlignkitError
    naming every bad line."""
    problems: list[str] = []
    grouped: dict[str, dict] = {}  # `alignkit generate` rows by prompt, in first-seen order
    items: list[dict] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{where}: not valid JSON ({err.msg} at column {err.colno}); "
                            "write one JSON object per line")
            continue
        if not isinstance(row, dict):
            problems.append(f"{where}: a line must be a JSON object, got {type(row).__name__}")
            continue
        if "responses" in row:
            item = _item(row, row["responses"], number)
        elif "chosen" in row or "rejected" in row:
            item = _item(row, [row.get("chosen"), row.get("rejected")], number)
        elif "completion" in row:
            key = json.dumps(row.get("prompt"), sort_keys=True)
            if key not in grouped:
                grouped[key] = {**_item(row, [], number), "line": number}
                items.append(grouped[key])
            grouped[key]["responses"].append(row["completion"])
            continue
        else:
            problems.append(f"{where}: no responses; give 'responses' (a list of 2 to {MAX_RESPONSES}), "
                            "'chosen' and 'rejected', or one 'completion' per line as "
                            "`alignkit generate` writes")
            continue
        items.append({**item, "line": number})
    for item in items:
        problems += [f"{source} line {item['line']}: {message}" for message in item_problems(item, task)]
    seen: dict[str, int] = {}
    for item in items:
        if item["external_id"] in seen:
            problems.append(f"{source} line {item['line']}, field 'id': {item['external_id']!r} is already "
                            f"used on line {seen[item['external_id']]}; give every item its own id")
        seen.setdefault(item["external_id"], item["line"])
    if problems:
        listed = "\n".join(f"  {p}" for p in problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise AlignkitError(f"{source}: {len(problems)} problem(s); nothing was imported. Fix these lines "
                            f"and import the file again:\n{listed}{more}")
    if not items:
        raise AlignkitError(f"{source} holds no items; write one JSON object per line")
    return items


def _item(row: dict, responses: list, number: int) -> dict:
    external_id = row.get("id", f"line-{number}")
    return {
        "external_id": str(external_id) if isinstance(external_id, (str, int)) else external_id,
        "prompt": row.get("prompt"),
        "responses": list(responses) if isinstance(responses, list) else responses,
        "gold": row.get("gold"),
        "extra": {key: value for key, value in row.items() if key not in RESERVED},
    }


def item_problems(item: dict, task: str) -> list[str]:
    """What is wrong with one item for `task`, as "field 'x': what; how to fix" messages."""
    responses = item["responses"]
    if not isinstance(item["external_id"], str) or not item["external_id"].strip():
        return [f"field 'id': must be a non-empty string or number, got {item['external_id']!r}"]
    if not isinstance(responses, list):
        return [f"field 'responses': must be a list of 2 to {MAX_RESPONSES} responses, got {responses!r:.60}"]
    wanted = (2, 2) if task == "pairwise" else (2, MAX_RESPONSES)
    if not wanted[0] <= len(responses) <= wanted[1]:
        need = "exactly 2" if task == "pairwise" else f"2 to {MAX_RESPONSES}"
        hint = "use a ranking project for more, or " if task == "pairwise" else ""
        return [f"field 'responses': a {task} item needs {need} responses, got {len(responses)}; "
                f"{hint}add or remove responses"]
    ranked = {"prompt": item["prompt"], "responses": responses, "ranking": list(range(len(responses)))}
    problems = [f"field '{p.field}': {p.message}" for p in row_problems(ranked, "ranked")]
    if item["gold"] is not None:
        problems += _gold_problems(item["gold"], len(responses), task)
    return problems


def _gold_problems(gold, k: int, task: str) -> list[str]:
    if task == "pairwise":
        if gold in (0, 1) and not isinstance(gold, bool) or gold in CHOICES:
            return []
        return [f"field 'gold': a pairwise gold answer is 0 or 1 (the index of the better response), \"tie\" "
                f"or \"both_bad\", got {gold!r}"]
    if isinstance(gold, list) and sorted(g for g in gold if isinstance(g, int)) == list(range(k)):
        return []
    return [f"field 'gold': a {task} gold answer lists the response indices 0..{k - 1} best first, "
            f"got {gold!r}"]


def read_items(path: str | Path, task: str) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise AlignkitError(f"{path}: no such file; give a JSONL file of items to import")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise AlignkitError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); "
                            "save it as UTF-8") from None
    return parse_items(text, path.name, task)
