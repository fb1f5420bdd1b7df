"""read_rows for every supported source, with locations and errors; split_holdout; light imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from alignkit.data.io import Rows, read_rows, split_holdout
from alignkit.errors import AlignkitError

PREFS = [
    {"prompt": "what is 2+2?", "chosen": "4", "rejected": "5"},
    {"prompt": "capital of France?", "chosen": "Paris", "rejected": "Lyon", "category": "geo"},
]
MESSAGES = [{"role": "user", "content": "hi, there"}, {"role": "assistant", "content": "hello"}]


def test_jsonl_rows_keep_line_numbers_and_skip_blank_lines(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps(PREFS[0]) + "\n\n   \n" + json.dumps(PREFS[1]) + "\n")
    rows = read_rows(path)
    assert rows.rows == PREFS
    assert rows.locations == ["prefs.jsonl:1", "prefs.jsonl:4"]
    assert rows.source == str(path)
    assert rows.columns == ["prompt", "chosen", "rejected", "category"]


def test_malformed_json_line_names_file_line_and_column(tmp_path):
    path = tmp_path / "prefs.jsonl"
    path.write_text(json.dumps(PREFS[0]) + "\n" + '{"prompt": "a" "chosen": "b"}\n')
    with pytest.raises(AlignkitError, match=r"prefs\.jsonl line 2, column 16: Expecting ',' delimiter"):
        read_rows(path)


def test_a_line_that_is_not_an_object_is_an_error(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(PREFS[0]) + "\n[1, 2]\n")
    with pytest.raises(AlignkitError, match=r"rows\.jsonl line 2: expected a JSON object .* got a list"):
        read_rows(path)


def test_json_array_file(tmp_path):
    path = tmp_path / "prefs.json"
    path.write_text(json.dumps(PREFS, indent=2))
    rows = read_rows(path)
    assert rows.rows == PREFS
    assert rows.locations == ["prefs.json row 0", "prefs.json row 1"]


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_empty_file_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    with pytest.raises(AlignkitError, match="empty|no rows"):
        read_rows(path)


def test_csv_parses_json_cells_and_labels_and_counts_lines(tmp_path):
    path = tmp_path / "chat.csv"
    # Row 1 on line 2; row 2's quoted prompt spans lines 3-4; a blank line 5; row 3 on line 6.
    path.write_text(
        "messages,prompt,label\n"
        '"[{""role"": ""user"", ""content"": ""hi, there""}, '
        '{""role"": ""assistant"", ""content"": ""hello""}]",x,true\n'
        '[],"two\nlines",False\n'
        "\n"
        "{not json,[plain text,maybe\n"
    )
    rows = read_rows(path)
    assert rows.rows[0] == {"messages": MESSAGES, "prompt": "x", "label": True}
    assert rows.rows[1] == {"messages": [], "prompt": "two\nlines", "label": False}
    assert rows.rows[2] == {"messages": "{not json", "prompt": "[plain text", "label": "maybe"}
    assert rows.locations == ["chat.csv:2", "chat.csv:3", "chat.csv:6"]


def test_csv_row_with_wrong_cell_count_names_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,completion\na,b\nc,d,e\n")
    with pytest.raises(AlignkitError, match=r"bad\.csv line 3: 3 cells, but the header has 2 columns"):
        read_rows(path)


def test_parquet_rows(tmp_path):
    import pyarrow
    import pyarrow.parquet

    path = tmp_path / "data.parquet"
    rows = [{"messages": MESSAGES, "source": "a"}, {"messages": MESSAGES[:1], "source": "b"}]
    pyarrow.parquet.write_table(pyarrow.Table.from_pylist(rows), path)
    loaded = read_rows(path)
    assert loaded.rows == rows
    assert loaded.locations == ["data.parquet row 0", "data.parquet row 1"]


def test_saved_dataset_and_dataset_dict_folders(tmp_path):
    import datasets

    datasets.Dataset.from_list(PREFS[:1]).save_to_disk(str(tmp_path / "one"))
    loaded = read_rows(tmp_path / "one")
    assert loaded.rows == PREFS[:1]
    assert loaded.locations == ["one row 0"]

    splits = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list([PREFS[0]] * 3), "test": datasets.Dataset.from_list([PREFS[0]])}
    )
    splits.save_to_disk(str(tmp_path / "both"))
    assert len(read_rows(tmp_path / "both")) == 3
    test = read_rows(tmp_path / "both", split="test")
    assert len(test) == 1 and test.locations == ["both[test] row 0"]
    with pytest.raises(AlignkitError, match="has splits train, test, not 'validation'"):
        read_rows(tmp_path / "both", split="validation")


def test_plain_folder_is_not_a_dataset(tmp_path):
    with pytest.raises(AlignkitError, match="not one written by `datasets` save_to_disk"):
        read_rows(tmp_path)


def test_hub_id_offline_says_local_path_missing_and_network_needed(monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hugging Face Hub (offline mode is enabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(AlignkitError) as err:
        read_rows("someone/prefs")
    message = str(err.value)
    assert "someone/prefs does not exist locally" in message
    assert "need network access" in message
    assert ".jsonl" in message and ".parquet" in message and ".csv" in message
    assert "offline mode" in message


def test_missing_local_file_never_goes_to_the_hub(monkeypatch, tmp_path):
    import datasets

    monkeypatch.setattr(
        datasets, "load_dataset", lambda *a, **k: pytest.fail("asked the hub for a local path")
    )
    with pytest.raises(AlignkitError, match=r"missing\.jsonl does not exist; data can be \.jsonl"):
        read_rows(tmp_path / "missing.jsonl")


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(AlignkitError, match=r"unsupported file type \.txt; data can be \.jsonl"):
        read_rows(path)


def test_select_keeps_locations():
    rows = Rows("x.jsonl", [{"a": 1}, {"a": 2}, {"b": 3}], ["x.jsonl:1", "x.jsonl:2", "x.jsonl:3"])
    picked = rows.select([2, 0])
    assert picked.rows == [{"b": 3}, {"a": 1}]
    assert picked.locations == ["x.jsonl:3", "x.jsonl:1"]
    assert len(picked) == 2 and picked.columns == ["b", "a"]


def test_split_holdout_is_deterministic_disjoint_and_ordered():
    rows = Rows("x", [{"i": i} for i in range(10)], [f"x:{i + 1}" for i in range(10)])
    train, heldout = split_holdout(rows, 0.3, seed=0)
    assert (len(train), len(heldout)) == (7, 3)
    train_ids, heldout_ids = [r["i"] for r in train.rows], [r["i"] for r in heldout.rows]
    assert sorted(train_ids + heldout_ids) == list(range(10))
    assert train_ids == sorted(train_ids) and heldout_ids == sorted(heldout_ids)
    assert train.locations == [f"x:{i + 1}" for i in train_ids]
    again_train, again_heldout = split_holdout(rows, 0.3, seed=0)
    assert again_heldout.rows == heldout.rows and again_train.rows == train.rows
    other_seeds = {tuple(r["i"] for r in split_holdout(rows, 0.3, seed=s)[1].rows) for s in range(1, 6)}
    assert len(other_seeds | {tuple(heldout_ids)}) > 1  # the seed matters


def test_split_holdout_edges():
    rows = Rows("x", [{"i": i} for i in range(3)], ["x:1", "x:2", "x:3"])
    train, heldout = split_holdout(rows, 0.0, seed=0)
    assert len(train) == 3 and len(heldout) == 0
    assert len(split_holdout(rows, 0.01, seed=0)[1]) == 1  # a positive fraction holds out at least one row
    with pytest.raises(AlignkitError, match="leaves no training rows"):
        split_holdout(Rows("x", [{"i": 0}], ["x:1"]), 0.5, seed=0)


def test_importing_the_data_modules_loads_no_heavy_library():
    code = (
        "import sys, alignkit.data, alignkit.data.io, alignkit.data.schema, alignkit.data.tokenize, "
        "alignkit.data.doctor; print([m for m in ('torch', 'transformers', 'datasets') if m in sys.modules])"
    )
    src = str(Path(__file__).resolve().parents[2] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"},
    )
    assert out.stdout.strip() == "[]"
