"""Constitutions for AI feedback (Bai et al. 2022, "Constitutional AI", arXiv:2212.08073): a list of
principles, each a critique request, a revision request and a comparison question; read from YAML or JSON and
checked field by field; and the conversations that put a principle's requests to a model after an answer.

Only PyYAML and the standard library: no model, no tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from alignkit.errors import AlignkitError

FIELDS = ("name", "critique", "revision", "comparison")


@dataclass(frozen=True)
class Principle:
    """One principle. `critique` and `revision` are the user turns of the supervised phase (asked after the
    answer, then after the critique); `comparison` is the judge's rubric in the AI-feedback phase."""

    name: str
    critique: str
    revision: str
    comparison: str


def default_constitution() -> str:
    """The text of the constitution that ships with alignkit (configs/constitution.yaml)."""
    return (resources.files("alignkit") / "configs" / "constitution.yaml").read_text(encoding="utf-8")


def load_constitution(path: str | Path | None = None) -> list[Principle]:
    """The principles in `path`, or the default constitution when None. The file holds a list of principles,
    or a mapping whose `principles` key holds one; JSON is read as the YAML it is a subset of."""
    if path is None:
        return parse_constitution(default_constitution(), "the default constitution")
    path = Path(path)
    if not path.is_file():
        raise AlignkitError(f"constitution {path} does not exist: give a YAML or JSON file of principles "
                            "(`alignkit init constitution` writes the default one to start from)")
    return parse_constitution(path.read_text(encoding="utf-8"), str(path))


def parse_constitution(text: str, source: str) -> list[Principle]:
    """Principles from a constitution's text; every problem names `source`, the principle and the field."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", err)
        raise AlignkitError(f"{source}{where}: not valid YAML or JSON ({problem})") from None
    if isinstance(raw, dict):
        if set(raw) != {"principles"}:
            raise AlignkitError(f"{source}: expected one top-level key, `principles`, holding the list of "
                                f"principles; found {', '.join(map(str, raw)) or 'none'}")
        raw = raw["principles"]
    if not isinstance(raw, list) or not raw:
        raise AlignkitError(f"{source}: expected a non-empty list of principles, each with "
                            f"{', '.join(FIELDS)}; got {type(raw).__name__ if raw else 'nothing'}")
    principles = [_principle(item, f"{source}: principle {index}") for index, item in enumerate(raw)]
    seen: dict[str, int] = {}
    for index, principle in enumerate(principles):
        if principle.name in seen:
            raise AlignkitError(f"{source}: principles {seen[principle.name]} and {index} are both named "
                                f"{principle.name!r}: names must be unique")
        seen[principle.name] = index
    return principles


def _principle(item, where: str) -> Principle:
    if not isinstance(item, dict):
        raise AlignkitError(f"{where}: expected a mapping with {', '.join(FIELDS)}, "
                            f"got {type(item).__name__}")
    name = item.get("name")
    if isinstance(name, str) and name.strip():
        where = f"{where} ({name!r})"
    if unknown := [key for key in item if key not in FIELDS]:
        raise AlignkitError(f"{where}: unknown field {', '.join(map(repr, unknown))}; a principle has "
                            f"{', '.join(FIELDS)}")
    for field in FIELDS:
        value = item.get(field)
        if value is None:
            raise AlignkitError(f"{where}: the field {field!r} is missing")
        if not isinstance(value, str) or not value.strip():
            raise AlignkitError(f"{where}: {field!r} must be non-empty text, got {value!r}")
    return Principle(*(item[field].strip() for field in FIELDS))


def critique_messages(prompt: list[dict], response: str, principle: Principle) -> list[dict]:
    """The conversation so far, the answer under review, then the principle's critique request."""
    return [*prompt, {"role": "assistant", "content": response},
            {"role": "user", "content": principle.critique}]


def revision_messages(prompt: list[dict], response: str, critique: str, principle: Principle) -> list[dict]:
    """critique_messages, the critique as the assistant's turn, then the principle's revision request."""
    return [*critique_messages(prompt, response, principle), {"role": "assistant", "content": critique},
            {"role": "user", "content": principle.revision}]
