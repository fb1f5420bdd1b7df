"""Dataset converters: a fixture in each original format -> exact rows, and every skip counted by reason.

The fixtures in fixtures/convert/ are tiny files written by hand in each dataset's own layout (invented text).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_fixtures import assistant, rows_of, user, write_jsonl

from alignkit.data.convert import CONVERTERS, ConvertResult, convert_file
from alignkit.data.io import read_rows
from alignkit.data.schema import validate_rows
from alignkit.errors import AlignkitError

FIXTURES = Path(__file__).parent / "fixtures" / "convert"
H, A = "\n\nHuman: ", "\n\nAssistant: "


def convert(fmt: str, fixture: str) -> ConvertResult:
    return CONVERTERS[fmt](read_rows(FIXTURES / fixture))


# ---- HH-RLHF ----


def test_hh_single_turn_row():
    assert convert("hh-rlhf", "hh_rlhf.jsonl").rows[0] == {
        "prompt": [user("How do I keep basil alive indoors?")],
        "chosen": [assistant("Give it a sunny window and water it when the top of the soil feels dry.")],
        "rejected": [assistant("Basil cannot grow indoors.")],
    }


def test_hh_finds_a_shared_prompt_of_several_turns():
    assert convert("hh-rlhf", "hh_rlhf.jsonl").rows[1] == {
        "prompt": [
            user("I want to bake bread this weekend."),
            assistant("Nice! Do you have yeast?"),
            user("Only instant yeast."),
            assistant("Instant yeast works; mix it straight into the flour."),
            user("How long should the dough rise?"),
        ],
        "chosen": [assistant("About an hour, until it has doubled in size.")],
        "rejected": [assistant("Overnight, always.")],
    }


def test_hh_splits_only_at_turn_markers():
    # "Human:" inside a sentence and a blank line inside a reply are text, not new turns.
    assert convert("hh-rlhf", "hh_rlhf.jsonl").rows[2] == {
        "prompt": [user("What does the label Human: mean in a chat log?")],
        "chosen": [assistant("It marks what the person typed.\n\nThe other label marks the reply.")],
        "rejected": [assistant("Nothing.")],
    }


def test_hh_skipped_rows_are_counted_by_reason():
    result = convert("hh-rlhf", "hh_rlhf.jsonl")
    assert (result.kind, result.read, len(result.rows)) == ("preference", 8, 3)
    assert result.skipped == {
        "chosen and rejected differ before their final Assistant turn": ["hh_rlhf.jsonl:3"],
        "chosen and rejected are identical": ["hh_rlhf.jsonl:4"],
        "has an empty turn": ["hh_rlhf.jsonl:5"],
        "not a Human/Assistant transcript that starts with a Human turn": ["hh_rlhf.jsonl:6"],
        "a side does not end with an Assistant turn": ["hh_rlhf.jsonl:8"],
    }


def test_hh_prompt_is_found_by_comparing_turns_not_by_dropping_the_last_one():
    diverge_late = {  # share three turns, then each side has its own final reply
        "chosen": H + "Hi." + A + "Hello." + H + "Pick a number." + A + "Seven.",
        "rejected": H + "Hi." + A + "Hello." + H + "Pick a number." + A + "Three.",
    }
    longer_side = {  # the rejected side stops a whole exchange earlier: no single shared prompt
        "chosen": H + "Hi." + A + "Hello." + H + "Pick a number." + A + "Seven.",
        "rejected": H + "Hi." + A + "Hey.",
    }
    first_turn_differs = {"chosen": H + "Hi." + A + "Hello.", "rejected": H + "Yo." + A + "Hello."}
    # Two Assistant turns in a row: the shared "Hi." "Hello." ends with an Assistant turn, so the prompt is
    # cut back to "Hi.", which leaves each side two turns.
    shared_reply = {
        "chosen": H + "Hi." + A + "Hello." + A + "Still there?",
        "rejected": H + "Hi." + A + "Hello." + A + "Bye.",
    }
    rows = rows_of([diverge_late, longer_side, first_turn_differs, shared_reply], "hh.jsonl")
    result = CONVERTERS["hh-rlhf"](rows)
    prompts = [row["prompt"] for row in result.rows]
    assert prompts == [[user("Hi."), assistant("Hello."), user("Pick a number.")]]
    assert result.skipped == {
        "chosen and rejected differ before their final Assistant turn": [
            "hh.jsonl:2",
            "hh.jsonl:3",
            "hh.jsonl:4",
        ]
    }


def test_summary_names_counts_reasons_and_locations():
    assert convert("hh-rlhf", "hh_rlhf.jsonl").summary() == (
        "8 rows read -> 3 preference rows; left out:\n"
        "  1 chosen and rejected differ before their final Assistant turn (hh_rlhf.jsonl:3)\n"
        "  1 chosen and rejected are identical (hh_rlhf.jsonl:4)\n"
        "  1 has an empty turn (hh_rlhf.jsonl:5)\n"
        "  1 not a Human/Assistant transcript that starts with a Human turn (hh_rlhf.jsonl:6)\n"
        "  1 a side does not end with an Assistant turn (hh_rlhf.jsonl:8)"
    )


def test_summary_lists_five_locations_per_reason():
    result = ConvertResult([], "sft", {"'response' is empty": [f"d.jsonl:{i}" for i in range(1, 8)]}, read=7)
    assert result.summary() == (
        "7 rows read -> 0 sft rows; left out:\n"
        "  7 'response' is empty (d.jsonl:1, d.jsonl:2, d.jsonl:3, d.jsonl:4, d.jsonl:5, ... and 2 more)"
    )


# ---- UltraFeedback ----


def rated(prompt: str, scores: list[float]) -> dict:
    """A raw UltraFeedback row whose completion i answers "answer i" with overall_score scores[i]."""
    completions = [{"response": f"answer {i}", "overall_score": s} for i, s in enumerate(scores)]
    return {"instruction": prompt, "completions": completions}


def test_ultrafeedback_rows():
    rows = convert("ultrafeedback", "ultrafeedback.jsonl").rows
    assert rows[:3] == [
        {  # 7.0 ties 7.0: the first is chosen, the other is no reject, so 4.5 is the only candidate
            "prompt": "Explain why the sky is blue in one sentence.",
            "chosen": "Air scatters blue light more than red light.",
            "rejected": "Because it reflects the ocean.",
            "score_chosen": 7.0,
            "score_rejected": 4.5,
        },
        {  # the empty 9.0 completion is left out
            "prompt": "Give a synonym for 'quick'.",
            "chosen": "Fast.",
            "rejected": "Slow.",
            "score_chosen": 5.0,
            "score_rejected": 3.0,
        },
        {  # one completion has no overall_score, so fine-grained_score ranks the row
            "prompt": "Name a planet with rings.",
            "chosen": "Saturn.",
            "rejected": "Mars.",
            "score_chosen": 4.75,
            "score_rejected": 3.25,
        },
    ]
    # Aspect ratings only: mean of 5, 4, 5 (N/A left out) against the mean of 2, 3, 3, 2.
    assert rows[3]["chosen"] == "No; their wings are flippers for swimming."
    assert rows[3]["score_chosen"] == pytest.approx(14 / 3)
    assert rows[3]["score_rejected"] == 2.5


def test_ultrafeedback_skips_are_counted_by_reason():
    result = convert("ultrafeedback", "ultrafeedback.jsonl")
    assert (result.kind, result.read, len(result.rows)) == ("preference", 7, 4)
    assert result.skipped == {
        "all ratings tie": ["ultrafeedback.jsonl:2"],
        "completion with an empty response (left out of its row)": ["ultrafeedback.jsonl:3 completions[0]"],
        "fewer than 2 completions with a response": ["ultrafeedback.jsonl:6"],
        "the completions share no numeric rating (overall_score, fine-grained_score, annotations, ratings)": [
            "ultrafeedback.jsonl:7"
        ],
    }


def test_ultrafeedback_never_rejects_a_tie_with_the_best():
    # Three completions share the best score; were ties candidates, some of 30 prompts would reject one.
    rows = [rated(f"prompt {n}", [9.0, 9.0, 9.0, 2.0]) for n in range(30)]
    result = CONVERTERS["ultrafeedback"](rows_of(rows))
    assert {(row["chosen"], row["rejected"]) for row in result.rows} == {("answer 0", "answer 3")}


def test_ultrafeedback_rejected_pick_is_random_across_prompts():
    rows = [rated(f"prompt {n}", [9.0, 5.0, 4.0, 3.0]) for n in range(40)]
    result = CONVERTERS["ultrafeedback"](rows_of(rows))
    assert {row["rejected"] for row in result.rows} == {"answer 1", "answer 2", "answer 3"}


def test_ultrafeedback_rejected_pick_depends_only_on_the_prompt():
    rows = [rated(f"prompt {n}", [9.0, 5.0, 4.0, 3.0]) for n in range(40)]
    forward = CONVERTERS["ultrafeedback"](rows_of(rows)).rows
    again = CONVERTERS["ultrafeedback"](rows_of(rows)).rows
    backward = CONVERTERS["ultrafeedback"](rows_of(rows[::-1])).rows
    assert forward == again
    assert forward == backward[::-1]


def test_ultrafeedback_passes_binarized_rows_through():
    result = convert("ultrafeedback", "ultrafeedback_binarized.jsonl")
    assert result.rows == [
        {  # whole conversations in chosen/rejected are split at their shared prompt
            "prompt": [user("What is 12 times 12?")],
            "chosen": [assistant("144.")],
            "rejected": [assistant("124.")],
            "score_chosen": 8.5,
            "score_rejected": 4.0,
        },
        {
            "prompt": "Is ice lighter than water?",
            "chosen": "Yes, which is why it floats.",
            "rejected": "No.",
            "score_chosen": 5.0,
            "score_rejected": 2.0,
        },
    ]
    assert result.skipped == {"score_chosen is not above score_rejected": ["ultrafeedback_binarized.jsonl:2"]}


# ---- OpenAssistant ----

CAT_ROWS = [
    {
        "prompt": [user("What is a good name for a grey cat?")],
        "responses": [
            [assistant("Smokey suits a grey cat.")],  # rank 1
            [assistant("Ash, after the colour of its fur.")],  # rank 0
            [assistant("Mr. Whiskers.")],  # rank 2; "Cat." has no rank and is left out
        ],
        "ranking": [1, 0, 2],
    },
    {
        "prompt": [
            user("What is a good name for a grey cat?"),
            assistant("Ash, after the colour of its fur."),
            user("Something with two syllables?"),
        ],
        "responses": [[assistant("Pewter.")], [assistant("Misty.")]],
        "ranking": [1, 0],
    },
]


def test_oasst_flat_messages():
    result = convert("oasst", "oasst_messages.jsonl")
    assert (result.kind, result.read) == ("ranked", 10)
    assert result.rows == CAT_ROWS
    assert result.skipped == {
        "not connected to a root message (a parent is not in the file)": ["oasst_messages.jsonl:10"],
        "assistant reply without a rank": ["oasst_messages.jsonl:4"],
        "prompter message with fewer than 2 ranked assistant replies": ["oasst_messages.jsonl:9"],
    }


def test_oasst_nested_trees():
    result = convert("oasst", "oasst_trees.jsonl")
    assert result.rows == CAT_ROWS  # the first tree holds the same conversation as the flat file
    assert result.skipped == {
        "assistant reply without a rank": [
            "oasst_trees.jsonl:1 prompt.replies[2]",
            "oasst_trees.jsonl:3 prompt.replies[0]",
        ],
        "prompter message with fewer than 2 ranked assistant replies": [
            "oasst_trees.jsonl:1 prompt.replies[0].replies[0]",
            "oasst_trees.jsonl:3 prompt",
        ],
        "two replies of a prompter message share a rank": ["oasst_trees.jsonl:2 prompt"],
    }


def tree(*replies: dict) -> dict:
    return {"message_tree_id": "t", "prompt": {"role": "prompter", "text": "Q?", "replies": list(replies)}}


def reply(text: str, rank, role: str = "assistant") -> dict:
    return {"role": role, "text": text, "rank": rank, "replies": []}


def test_oasst_ranking_lists_rank_0_first():
    # Ranks as a dataframe gives them (floats, NaN for none) are read too.
    row = tree(reply("third", 2.0), reply("first", 0), reply("none", float("nan")), reply("second", 1))
    result = CONVERTERS["oasst"](rows_of([row], "trees.jsonl"))
    (converted,) = result.rows
    best_first = [converted["responses"][i][0]["content"] for i in converted["ranking"]]
    assert best_first == ["first", "second", "third"]
    assert converted["ranking"] == [1, 2, 0]
    assert result.skipped == {"assistant reply without a rank": ["trees.jsonl:1 prompt.replies[2]"]}


def test_oasst_unknown_role_leaves_out_its_branch():
    odd = {"role": "moderator", "text": "x", "rank": 3, "replies": [reply("y", 0, "prompter")]}
    result = CONVERTERS["oasst"](rows_of([tree(reply("a", 0), reply("b", 1), odd)], "trees.jsonl"))
    assert [row["ranking"] for row in result.rows] == [[0, 1]]
    assert result.skipped == {
        "role is not 'prompter' or 'assistant', or is under such a message": [
            "trees.jsonl:1 prompt.replies[2]",
            "trees.jsonl:1 prompt.replies[2].replies[0]",
        ]
    }


# ---- Dolly and UltraChat ----


def test_dolly_rows():
    result = convert("dolly", "dolly.jsonl")
    assert result.rows == [
        {
            "prompt": "Who wrote the letter in this note?\n\nDear Sam, the garden is blooming. Love, Priya.",
            "completion": "Priya wrote it.",
        },
        {  # an empty context adds nothing
            "prompt": "List three things to pack for a picnic.",
            "completion": "A blanket, sandwiches and water.",
        },
        {  # a context of spaces only is no context
            "prompt": "Classify each as a fruit or a vegetable: apple, carrot.",
            "completion": "Apple is a fruit; carrot is a vegetable.",
        },
    ]
    assert (result.kind, result.skipped) == ("sft", {"'response' is empty": ["dolly.jsonl:3"]})


def test_ultrachat_data_turns_alternate_from_user():
    result = convert("ultrachat", "ultrachat.jsonl")
    assert result.rows == [
        {
            "messages": [
                user("How do tides work?"),
                assistant("The Moon's gravity pulls the oceans into bulges."),
                user("Why two tides a day?"),
                assistant("Earth turns through both bulges each day."),
            ]
        },
        {  # a last user turn is kept as it is
            "messages": [
                user("Recommend a short novel."),
                assistant("Try a novella of about a hundred pages."),
                user("Thanks!"),
            ]
        },
    ]
    # An empty turn is caught by the validation every converted row goes through.
    assert result.skipped == {
        "invalid once converted: 'messages[1].content' is empty": ["ultrachat.jsonl:3"]
    }


def test_ultrachat_messages_are_kept_and_other_columns_dropped():
    result = convert("ultrachat", "ultrachat_200k.jsonl")
    assert result.rows[1] == {
        "messages": [
            user("What is a verb?"),
            assistant("A word for an action or a state."),
            user("An example?"),
            assistant("'Run' is a verb."),
        ]
    }
    assert [sorted(row) for row in result.rows] == [["messages"], ["messages"]]
    assert result.skipped == {}


# ---- wrong columns ----


def test_wrong_columns_name_the_file_the_columns_found_and_expected():
    with pytest.raises(AlignkitError) as err:
        convert("hh-rlhf", "dolly.jsonl")
    assert str(err.value) == (
        f"{FIXTURES / 'dolly.jsonl'} has columns instruction, context, response, category, but hh-rlhf rows "
        "(two Human/Assistant transcripts) need the columns (chosen, rejected); check that the file is "
        "hh-rlhf data, or pick the format it is in (hh-rlhf, ultrafeedback, oasst, dolly, ultrachat, "
        "judge-sft)"
    )


@pytest.mark.parametrize(
    ("fmt", "fixture", "found", "expected"),
    [
        (
            "ultrafeedback",
            "hh_rlhf.jsonl",
            "chosen, rejected",
            "(instruction, completions) or (prompt, completions) or (prompt, chosen, rejected)",
        ),
        ("oasst", "ultrachat.jsonl", "id, data", "(message_id, parent_id, role, text, rank) or"),
        ("dolly", "ultrachat_200k.jsonl", "prompt, prompt_id, messages", "(instruction, response)"),
        ("ultrachat", "dolly.jsonl", "instruction, context, response, category", "(messages) or (data)"),
    ],
)
def test_every_format_checks_its_columns(fmt, fixture, found, expected):
    with pytest.raises(AlignkitError) as err:
        convert(fmt, fixture)
    assert f"{fixture} has columns {found}, but {fmt} rows" in str(err.value)
    assert expected in str(err.value)


# ---- writing the output ----

ALL_FIXTURES = [
    ("hh-rlhf", "hh_rlhf.jsonl", "preference", 3),
    ("ultrafeedback", "ultrafeedback.jsonl", "preference", 4),
    ("ultrafeedback", "ultrafeedback_binarized.jsonl", "preference", 2),
    ("oasst", "oasst_messages.jsonl", "ranked", 2),
    ("oasst", "oasst_trees.jsonl", "ranked", 2),
    ("dolly", "dolly.jsonl", "sft", 3),
    ("ultrachat", "ultrachat.jsonl", "sft", 2),
    ("ultrachat", "ultrachat_200k.jsonl", "sft", 2),
]


@pytest.mark.parametrize(("fmt", "fixture", "kind", "count"), ALL_FIXTURES)
def test_convert_file_writes_jsonl_that_validates(tmp_path, fmt, fixture, kind, count):
    out = tmp_path / "converted" / "out.jsonl"
    result = convert_file(fmt, FIXTURES / fixture, out)
    written = read_rows(out)
    assert written.rows == result.rows
    assert len(written) == count
    assert validate_rows(written, [kind]) == kind
    assert [json.loads(line) for line in out.read_text().splitlines()] == result.rows
    assert [path.name for path in out.parent.iterdir()] == ["out.jsonl"]  # no temp file left behind


def test_convert_file_writes_nothing_when_no_row_converts(tmp_path):
    source = write_jsonl(tmp_path / "ties.jsonl", [rated("p", [5.0, 5.0])])
    out = tmp_path / "out.jsonl"
    out.write_text("earlier output\n")
    with pytest.raises(AlignkitError) as err:
        convert_file("ultrafeedback", source, out)
    assert str(err.value) == (
        f"{source}: no row could be converted as ultrafeedback, so nothing was written\n"
        "1 rows read -> 0 preference rows; left out:\n  1 all ratings tie (ties.jsonl:1)"
    )
    assert out.read_text() == "earlier output\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out.jsonl", "ties.jsonl"]


@pytest.mark.parametrize(
    ("fmt", "out", "message"),
    [
        ("alpaca", "out.jsonl", "unknown dataset format 'alpaca'; the formats are hh-rlhf, ultrafeedback"),
        ("dolly", "out.parquet", "converted rows are written as JSONL; give an output path ending in .jsonl"),
        ("dolly", "dolly.jsonl", "is the input file; give a different output path"),
    ],
)
def test_convert_file_refuses_bad_arguments(tmp_path, fmt, out, message):
    source = tmp_path / "dolly.jsonl"
    source.write_text((FIXTURES / "dolly.jsonl").read_text())
    with pytest.raises(AlignkitError) as err:
        convert_file(fmt, source, tmp_path / out)
    assert message in str(err.value)
    assert source.read_text() == (FIXTURES / "dolly.jsonl").read_text()


def test_convert_file_failing_mid_write_leaves_the_old_output(tmp_path, monkeypatch):
    out = tmp_path / "out.jsonl"
    out.write_text("earlier output\n")
    real_dumps, calls = json.dumps, []

    def dumps_then_fail(row, **kwargs):
        calls.append(row)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_dumps(row, **kwargs)

    monkeypatch.setattr("alignkit.data.io.json.dumps", dumps_then_fail)
    with pytest.raises(OSError, match="disk full"):
        convert_file("dolly", FIXTURES / "dolly.jsonl", out)
    assert out.read_text() == "earlier output\n"
    assert [path.name for path in tmp_path.iterdir()] == ["out.jsonl"]


# ---- judge-sft: preference rows -> a pairwise judge's training conversations ----


def test_judge_sft_teaches_both_orders_and_counts_what_it_leaves_out(tmp_path):
    from alignkit.rewards.judge import parse_verdict

    source = tmp_path / "prefs.jsonl"
    write_jsonl(source, [
        {"prompt": "What is 2 + 2?", "chosen": "4.", "rejected": "5."},
        {"prompt": "Hi", "chosen": "Hello.", "rejected": " Hello. "},  # the same text: no lesson in it
        {"prompt": [user("Hi")], "chosen": [assistant("a")], "rejected": [assistant("b")]},
    ])
    result = CONVERTERS["judge-sft"](read_rows(source))
    assert result.kind == "sft" and result.read == 3 and len(result.rows) == 2
    assert sorted(result.skipped) == ["chosen and rejected are the same text",
                                      "prompt, chosen and rejected are not all strings (conversational rows "
                                      "are not supported)"]
    first, second = (row["messages"] for row in result.rows)
    assert [m["role"] for m in first] == ["user", "assistant"]  # bare: no system message, no rubric
    # the chosen response is shown first, then second, and the verdict follows it
    assert "<response_a>\n4.\n</response_a>" in first[0]["content"]
    assert parse_verdict(first[1]["content"]) == "a"
    assert "<response_a>\n5.\n</response_a>" in second[0]["content"]
    assert parse_verdict(second[1]["content"]) == "b"
    out = tmp_path / "judge_sft.jsonl"
    convert_file("judge-sft", source, out)
    validate_rows(read_rows(out), ["sft"])


def test_judge_sft_rejects_rows_that_are_not_preference_pairs(tmp_path):
    source = tmp_path / "sft.jsonl"
    write_jsonl(source, [{"prompt": "p", "completion": "c"}])
    wanted = r"judge-sft rows .* need the columns \(prompt, chosen, rejected\)"
    with pytest.raises(AlignkitError, match=wanted):
        convert_file("judge-sft", source, tmp_path / "out.jsonl")
