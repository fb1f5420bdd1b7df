"""Read rows from a file, a saved `datasets` folder or a hub id, keeping where each row came from.

Every row carries a location ("prefs.jsonl:12", "data.parquet row 7") so that later errors and reports can
point at the exact line to fix. This module knows files, not row formats (schema.py does); it imports
pyarrow and datasets only inside the readers that need them.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from alignkit.errors import AlignkitError

ACCEPTED = (
    ".jsonl or .json (one JSON object per line, or one JSON array of objects), .parquet, "
    ".csv (with a header), a folder written by `datasets` save_to_disk, or a hub dataset id (needs network)"
)
JSON_SUFFIXES = (".jsonl", ".json")
FILE_SUFFIXES = (*JSON_SUFFIXES, ".parquet", ".csv")
# CSV has no types. `label` (unpaired rows) is the one scalar field of our row formats that is not a string,
# so its cells are read as booleans; list and object cells (e.g. `messages`) are read as JSON.
CSV_BOOLEAN_COLUMNS = ("label",)
CSV_BOOLEANS = {"true": True, "false": False}


@dataclass
class Rows:
    """Rows as plain dicts, with one human-readable location per row for error messages."""

    source: str
    rows: list[dict]
    locations: list[str]

    def __len__(self) -> int:
        return len(self.rows)

    def select(self, indices: Iterable[int]) -> Rows:
        """The rows at `indices`, in that order, with their original locations."""
        indices = list(indices)
        return Rows(self.source, [self.rows[i] for i in indices], [self.locations[i] for i in indices])

    @property
    def columns(self) -> list[str]:
        """Every key that appears in any row, in first-seen order (rows of a JSONL file may differ)."""
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row))
        return list(seen)


def read_rows(source: str | Path, split: str = "train") -> Rows:
    """Rows from a local file or folder, or from the hub when `source` is not a local path.

    `split` picks the split of a saved DatasetDict folder or a hub dataset; files have no splits.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        rows = _read_saved_dataset(path, split)
    elif path.is_file():
        rows = _read_file(path)
    elif _looks_local(str(source)):
        raise AlignkitError(f"{source} does not exist; data can be {ACCEPTED}")
    else:
        rows = _read_hub(str(source), split)
    if not rows.rows:
        raise AlignkitError(f"{source} holds no rows; give a file with at least one row")
    return rows


def split_holdout(rows: Rows, fraction: float, seed: int) -> tuple[Rows, Rows]:
    """(train, held-out) rows: a seeded random `fraction` is held out; both keep the file's order.

    The same rows, fraction and seed always give the same split, so a resumed run evaluates on the same rows.
    """
    if not 0 <= fraction < 1:
        raise AlignkitError(f"eval_fraction={fraction} must be in [0, 1)")
    if fraction == 0:
        return rows, rows.select([])
    n_heldout = max(1, round(len(rows) * fraction))
    if n_heldout >= len(rows):
        raise AlignkitError(
            f"eval_fraction={fraction} of {len(rows)} rows in {rows.source} leaves no training rows: "
            "lower data.eval_fraction or give a separate data.eval file"
        )
    heldout = set(random.Random(seed).sample(range(len(rows)), n_heldout))
    train = [i for i in range(len(rows)) if i not in heldout]
    return rows.select(train), rows.select(sorted(heldout))


def _looks_local(source: str) -> bool:
    """A source that can only be meant as a local path: never sent to the hub, so the error says 'missing'."""
    return (
        source.lower().endswith(FILE_SUFFIXES)
        or source.startswith(("/", ".", "~"))
        or source.count("/") > 1
        or "\\" in source
    )


def _read_file(path: Path) -> Rows:
    suffix = path.suffix.lower()
    if suffix not in FILE_SUFFIXES:
        raise AlignkitError(
            f"{path}: unsupported file type {suffix or '(no suffix)'}; data can be {ACCEPTED}"
        )
    if path.stat().st_size == 0:
        raise AlignkitError(f"{path} is empty; give a file with at least one row")
    if suffix == ".parquet":
        return _read_parquet(path)
    if suffix == ".csv":
        return _read_csv(path)
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".json" and text.lstrip().startswith("["):
        return _read_json_array(path, text)
    return _read_json_lines(path, text)


def _read_json_lines(path: Path, text: str) -> Rows:
    rows, locations = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise AlignkitError(
                f"{path} line {number}, column {err.colno}: {err.msg} (each line must be one JSON object)"
            ) from None
        if not isinstance(row, dict):
            raise AlignkitError(
                f'{path} line {number}: expected a JSON object like {{"prompt": ...}}, got {_json_type(row)}'
            )
        rows.append(row)
        locations.append(f"{path.name}:{number}")
    return Rows(str(path), rows, locations)


def _read_json_array(path: Path, text: str) -> Rows:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise AlignkitError(f"{path} line {err.lineno}, column {err.colno}: {err.msg}") from None
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise AlignkitError(f"{path} item {index}: expected a JSON object, got {_json_type(item)}")
    return Rows(str(path), items, [f"{path.name} row {i}" for i in range(len(items))])


def _json_type(value) -> str:
    names = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), "null" if value is None else type(value).__name__)


def _read_csv(path: Path) -> Rows:
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise AlignkitError(f"{path}: the first line must be a header naming the columns")
        if len(set(header)) != len(header):
            raise AlignkitError(f"{path} line 1: the header repeats a column name ({', '.join(header)})")
        rows, locations = [], []
        last_line = reader.line_num
        for cells in reader:
            # A quoted cell may span lines: a row starts on the line after the previous row ended.
            number, last_line = last_line + 1, reader.line_num
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                raise AlignkitError(
                    f"{path} line {number}: {len(cells)} cells, but the header has {len(header)} columns "
                    f"({', '.join(header)}); quote cells that contain commas or newlines"
                )
            rows.append({name: _csv_cell(name, cell) for name, cell in zip(header, cells)})
            locations.append(f"{path.name}:{number}")
    return Rows(str(path), rows, locations)


def _csv_cell(column: str, cell: str):
    """A CSV cell as a JSON list/object when it is one (e.g. a `messages` column), else the text itself."""
    if column in CSV_BOOLEAN_COLUMNS and cell.strip().lower() in CSV_BOOLEANS:
        return CSV_BOOLEANS[cell.strip().lower()]
    if cell.lstrip().startswith(("[", "{")):
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            return cell  # text that merely starts with a bracket
    return cell


def _read_parquet(path: Path) -> Rows:
    import pyarrow
    import pyarrow.parquet

    try:
        rows = pyarrow.parquet.read_table(path).to_pylist()
    except pyarrow.ArrowException as err:
        raise AlignkitError(f"{path}: not a readable Parquet file ({err})") from None
    return Rows(str(path), rows, [f"{path.name} row {i}" for i in range(len(rows))])


def _read_saved_dataset(path: Path, split: str) -> Rows:
    if not any(
        (path / marker).is_file() for marker in ("dataset_dict.json", "dataset_info.json", "state.json")
    ):
        raise AlignkitError(
            f"{path} is a folder but not one written by `datasets` save_to_disk (no dataset_info.json or "
            f"dataset_dict.json inside); data can be {ACCEPTED}"
        )
    import datasets

    loaded = datasets.load_from_disk(str(path))
    name = path.name
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise AlignkitError(f"{path} has splits {', '.join(loaded)}, not {split!r}; pick one of them")
        loaded, name = loaded[split], f"{path.name}[{split}]"
    rows = loaded.to_list()
    return Rows(str(path), rows, [f"{name} row {i}" for i in range(len(rows))])


def _read_hub(source: str, split: str) -> Rows:
    import datasets

    try:
        loaded = datasets.load_dataset(source, split=split)
    except Exception as err:  # noqa: BLE001 - offline, missing, private and bad-split all land here
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AlignkitError(
            f"{source} does not exist locally, and loading it as a hub dataset failed ({reason}). "
            f"Hub datasets need network access (unset HF_HUB_OFFLINE); local data can be {ACCEPTED}"
        ) from None
    rows = loaded.to_list()
    return Rows(source, rows, [f"{source}[{split}] row {i}" for i in range(len(rows))])


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """Write rows as JSON lines atomically: a temp file in the same folder, fsynced, then renamed over `path`,
    so `path` is never half written. NaN and infinity are refused (they are not JSON)."""

    def write(f) -> None:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, allow_nan=False) + "\n")

    return _write_atomically(path, write)


def write_json(path: str | Path, payload: dict) -> Path:
    """Write one indented JSON document atomically, as write_jsonl does; NaN and infinity are refused."""
    return _write_atomically(
        path, lambda f: f.write(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False) + "\n"))


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file (UTF-8) atomically, as write_jsonl does."""
    return _write_atomically(path, lambda f: f.write(text))


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a binary file (e.g. a PNG) atomically, as write_jsonl does."""
    return _write_atomically(path, lambda f: f.write(data), binary=True)


def _write_atomically(path: str | Path, write, binary: bool = False) -> Path:
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with (open(tmp, "wb") if binary else open(tmp, "w", encoding="utf-8")) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
