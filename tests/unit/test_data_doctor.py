"""data_report / format_report on small files: counts, duplicates, percentiles, identical pairs, readiness.

Token counts are those of the test tokenizer (pinned in test_data_tokenize.test_reference_lengths):
"User: hi\\nAssistant:" 7, "User: what is two plus two?\\nAssistant:" 11; " yes.<eos>" 3, " no.<eos>" 4,
" five.<eos>" 6, " yes. <eos>" 4, " two plus two is four.<eos>" 7.
"""

from __future__ import annotations

import json

from data_fixtures import TRIMMING_TEMPLATE, assistant, make_tokenizer, rows_of, user, write_jsonl

from alignkit.data.doctor import data_report, duplicate_rows, format_report, percentiles
from alignkit.data.io import read_rows

PREFS = [
    {"prompt": "hi", "chosen": "yes.", "rejected": "no."},  # 1: 7 + (3, 4)
    {
        "prompt": "what is two plus two?",
        "chosen": "two plus two is four.",
        "rejected": "five.",
        "category": "math",
    },  # 2: 11 + (7, 6) = 18
    {"prompt": "hi", "chosen": "yes.", "rejected": "yes."},  # 3: identical as written; 7 + (3, 3)
    {"prompt": "name a color", "chosen": "", "rejected": "blue is a color."},  # 4: empty chosen
    {"prompt": "hi", "chosen": "yes.", "rejected": "no."},  # 5: duplicate of 1
    {
        "prompt": "hi",
        "chosen": "yes.",
        "rejected": "yes. ",
    },  # 6: identical once a trimming template renders it
    {"prompt": "hi", "chosen": 3, "rejected": "no."},  # 7: invalid
]


def test_percentiles_nearest_rank_by_hand():
    assert percentiles(list(range(1, 11))) == {"p50": 5, "p90": 9, "p99": 10, "max": 10}
    assert percentiles([10, 3, 1, 2]) == {"p50": 2, "p90": 10, "p99": 10, "max": 10}
    assert percentiles([7]) == {"p50": 7, "p90": 7, "p99": 7, "max": 7}


def test_duplicates_ignore_key_order():
    rows = rows_of([{"a": 1, "b": 2}, {"b": 2, "a": 1}, {"a": 1}, {"a": 1}, {"a": 1, "b": 2}])
    assert duplicate_rows(rows) == {
        "count": 3,
        "examples": [
            "data.jsonl:2 = data.jsonl:1",
            "data.jsonl:4 = data.jsonl:3",
            "data.jsonl:5 = data.jsonl:1",
        ],
    }


def test_preference_report_counts(tmp_path):
    rows = read_rows(write_jsonl(tmp_path / "prefs.jsonl", PREFS))
    report = data_report(rows, "preference", make_tokenizer(), max_length=16, truncation="error")
    assert (report["rows"], report["valid_rows"], report["kind"]) == (7, 5, "preference")
    assert report["columns"] == ["prompt", "chosen", "rejected", "category"]
    assert report["extra_columns"] == ["category"]
    # valid rows 1, 2, 3, 5, 6: prompts 7, 11, 7, 7, 7
    assert report["lengths"]["prompt"] == {"p50": 7, "p90": 11, "p99": 11, "max": 11}
    # responses, both sides: 3 4 | 7 6 | 3 3 | 3 4 | 3 4 -> sorted 3 3 3 3 3 4 4 4 6 7
    assert report["lengths"]["response"] == {"p50": 3, "p90": 6, "p99": 7, "max": 7}
    # prompt + longer response: 11, 18, 10, 11, 11
    assert report["lengths"]["total"] == {"p50": 11, "p90": 18, "p99": 18, "max": 18}
    assert report["over_max_length"] == {"count": 1, "locations": ["prefs.jsonl:2"]}
    assert report["empty_fields"] == {"chosen": {"count": 1, "locations": ["prefs.jsonl:4"]}}
    assert report["invalid"] == {
        "count": 1,
        "examples": ["prefs.jsonl:7: 'chosen' must be a string, got a number"],
    }
    assert report["duplicates"] == {"count": 1, "examples": ["prefs.jsonl:5 = prefs.jsonl:1"]}
    assert report["identical_pairs"] == {"as_written": 1, "once_tokenized": 0, "locations": ["prefs.jsonl:3"]}
    # truncation=error and one pair over max_length: training would stop, and says so
    assert report["tokenization"]["error"].startswith(
        "prefs.jsonl:2: prompt+longer response is 18 tokens, over max_length=16 (1 of 4 pairs are over"
    )
    assert report["problems"] == 3  # two invalid rows and the length error
    json.dumps(report)  # the CLI may write it as JSON


def test_identical_once_tokenized_and_tokenization_report(tmp_path):
    rows = read_rows(write_jsonl(tmp_path / "prefs.jsonl", PREFS))
    report = data_report(
        rows, "preference", make_tokenizer(TRIMMING_TEMPLATE), max_length=16, truncation="left"
    )
    assert report["identical_pairs"] == {
        "as_written": 1,
        "once_tokenized": 1,
        "locations": ["prefs.jsonl:3", "prefs.jsonl:6"],
    }
    tokenization = report["tokenization"]
    assert (tokenization["rows"], tokenization["kept"]) == (5, 3)
    assert tokenization["truncated"] == [["prefs.jsonl:2", 18, 16]]
    assert tokenization["identical_pairs"] == ["prefs.jsonl:3", "prefs.jsonl:6"]
    assert report["problems"] == 2


def test_format_report_text(tmp_path):
    rows = read_rows(write_jsonl(tmp_path / "prefs.jsonl", PREFS))
    text = format_report(data_report(rows, "preference", make_tokenizer(), max_length=16, truncation="left"))
    lines = text.splitlines()
    assert lines[0].endswith(
        "prefs.jsonl: 7 preference rows (columns prompt, chosen, rejected, category; extra: category)"
    )
    assert lines[1].split() == ["tokens", "p50", "p90", "p99", "max"]
    assert lines[2].split() == ["prompt", "7", "11", "11", "11"]
    assert "over max_length=16: 1 row (prefs.jsonl:2)" in lines
    assert "empty 'chosen': 1 row (prefs.jsonl:4)" in lines
    assert "  prefs.jsonl:7: 'chosen' must be a string, got a number" in lines
    assert "exact duplicates: 1 row (prefs.jsonl:5 = prefs.jsonl:1)" in lines
    assert (
        "chosen identical to rejected: 1 as written, 0 more once rendered and tokenized (prefs.jsonl:3)"
        in lines
    )
    assert (
        "training with truncation=left: preference: 5 rows -> 4 examples; 1 prompt cut from the left "
        "(max_length=16); 1 pair with chosen identical to rejected excluded (prefs.jsonl:3)."
    ) in lines
    assert lines[-1] == "NOT ready to train: 2 problems above"


def test_clean_sft_file_is_ready(tmp_path):
    rows = read_rows(
        write_jsonl(
            tmp_path / "sft.jsonl",
            [
                {"prompt": "hi", "completion": "yes."},  # 7 + 3
                {
                    "messages": [user("hi"), assistant("yes."), user("hi"), assistant("no.")]
                },  # 7 + 3 + (1 + 7 + 4)
            ],
        )
    )
    report = data_report(rows, "sft", make_tokenizer(), max_length=64, truncation="error")
    assert report["lengths"]["prompt"]["max"] == 7
    assert report["lengths"]["total"] == {"p50": 10, "p90": 22, "p99": 22, "max": 22}
    assert (
        report["problems"] == 0 and report["duplicates"]["count"] == 0 and report["identical_pairs"] is None
    )
    assert report["tokenization"]["kept"] == 2
    assert format_report(report).splitlines()[-1] == "ready to train"


def test_text_report_counts_blocks_not_long_rows(tmp_path):
    rows = read_rows(
        write_jsonl(tmp_path / "text.jsonl", [{"text": "once upon a time"}, {"text": "cats eat fish"}])
    )
    report = data_report(rows, "text", make_tokenizer(), max_length=8, truncation="error")
    assert report["lengths"] == {"total": {"p50": 6, "p90": 6, "p99": 6, "max": 6}}  # 5 tokens + EOS each
    assert report["over_max_length"]["count"] == 0  # packed, never cut
    assert (report["tokenization"]["blocks"], report["tokenization"]["tokens"]) == (2, 12)
    assert "over max_length" not in format_report(report)
