"""Row kinds: detection, validation errors with locations and fields, ranked -> pairs, implicit prompts."""

from __future__ import annotations

import pytest
from data_fixtures import assistant, rows_of, system, user

from alignkit.data.schema import (
    KINDS,
    detect_kind,
    implicit_prompt,
    preference_conversation,
    ranked_to_pairs,
    sft_conversation,
    validate_rows,
)
from alignkit.errors import AlignkitError


@pytest.mark.parametrize(
    ("columns", "kind"),
    [
        (["text"], "text"),
        (["prompt", "completion"], "sft"),
        (["messages"], "sft"),
        (["messages", "source"], "sft"),
        (["prompt", "chosen", "rejected"], "preference"),
        (["chosen", "rejected"], "preference"),
        (["prompt", "chosen", "rejected", "category", "votes_chosen"], "preference"),
        (["prompt", "responses", "ranking"], "ranked"),
        (["prompt", "completion", "label"], "unpaired"),
        (["prompt"], "prompt"),
        (["prompt", "answer", "difficulty"], "prompt"),
        (["prompt", "completions", "labels"], "stepwise"),
    ],
)
def test_detect_kind(columns, kind):
    assert detect_kind(columns) == kind


def test_unknown_columns_list_every_kind_and_its_columns():
    with pytest.raises(AlignkitError) as err:
        detect_kind(["question", "answer"], source="qa.jsonl")
    message = str(err.value)
    assert message.startswith("qa.jsonl has columns question, answer, which make no known row format")
    for kind in KINDS:
        assert f"\n  {kind}: " in message
    assert "sft: prompt+completion or messages" in message


VALID_ROWS = {
    "text": [{"text": "once upon a time"}],
    "sft": [
        {"prompt": "hi", "completion": "hello"},
        {"prompt": [system("be nice"), user("hi")], "completion": [assistant("hello")]},
        {"messages": [user("hi"), assistant("hello"), user("bye"), assistant("bye")]},
    ],
    "preference": [
        {"prompt": "2+2?", "chosen": "4", "rejected": "5", "category": "math"},
        {"prompt": [user("2+2?")], "chosen": [assistant("4")], "rejected": [assistant("5")]},
        {"chosen": [user("2+2?"), assistant("4")], "rejected": [user("2+2?"), assistant("5")]},
    ],
    "ranked": [
        {"prompt": "2+2?", "responses": ["4", "5", "22"], "ranking": [0, 2, 1]},
        {"prompt": [user("2+2?")], "responses": [[assistant("4")], [assistant("5")]], "ranking": [1, 0]},
    ],
    "unpaired": [{"prompt": "2+2?", "completion": "5", "label": False}],
    "prompt": [{"prompt": "2+2?", "answer": "4"}, {"prompt": [user("2+2?")]}],
    "stepwise": [{"prompt": "2+2*3?", "completions": ["2*3=6", "2+6=8"], "labels": [True, True]}],
}


@pytest.mark.parametrize("kind", KINDS)
def test_valid_rows_of_every_kind_pass(kind):
    assert validate_rows(rows_of(VALID_ROWS[kind]), [kind]) == kind


def test_wrong_kind_names_what_is_needed_and_what_the_file_is():
    rows = rows_of([{"prompt": "p", "chosen": "a", "rejected": "b"}], "prefs.jsonl")
    with pytest.raises(AlignkitError) as err:
        validate_rows(rows, ["sft"])
    assert str(err.value) == (
        "sft needs prompt+completion or messages; prefs.jsonl has columns prompt, chosen, rejected "
        "(a preference file)"
    )


def test_any_file_with_prompts_serves_prompt_only_recipes():
    rows = rows_of([{"prompt": "p", "chosen": "a", "rejected": "b"}])
    assert validate_rows(rows, ["prompt"]) == "prompt"


@pytest.mark.parametrize(
    ("row", "kind", "error"),
    [
        ({"prompt": "p", "chosen": "", "rejected": "b"}, "preference", "'chosen' is empty"),
        ({"prompt": "p", "chosen": "  \n", "rejected": "b"}, "preference", "'chosen' is empty"),
        (
            {"prompt": "p", "chosen": "a", "rejected": 3},
            "preference",
            "'rejected' must be a string, got a number",
        ),
        (
            {"prompt": "p", "chosen": [assistant("a")], "rejected": [assistant("b")]},
            "preference",
            "'prompt' is a string but 'chosen' is a message list",
        ),
        (
            {"chosen": "a", "rejected": "b"},
            "preference",
            "'prompt' is missing: a string 'chosen' needs a prompt column",
        ),
        (
            {"chosen": [user("x"), assistant("a")], "rejected": [user("y"), assistant("b")]},
            "preference",
            "'chosen' and 'rejected' share no opening user turn; give the prompt in a 'prompt' column",
        ),
        (
            {"chosen": [user("x"), assistant("a"), user("z")], "rejected": [user("x"), assistant("b")]},
            "preference",
            (
                "'chosen' must hold one assistant reply after the prompt it shares with the other side "
                "(its first 1 message), but has 2 messages there"
            ),
        ),
        (
            {"prompt": [user("p"), assistant("a")], "completion": [assistant("b")]},
            "sft",
            "'prompt' must end with a user turn, but ends with assistant",
        ),
        (
            {"prompt": "p", "completion": [assistant("a"), assistant("b")]},
            "sft",
            "'completion' must hold one assistant message, got: assistant, assistant",
        ),
        (
            {"messages": [user("hi"), {"role": "bot", "content": "x"}]},
            "sft",
            "'messages[1]' has role 'bot'; roles are system, user, assistant",
        ),
        ({"messages": [user("hi"), assistant("")]}, "sft", "'messages[1].content' is empty"),
        (
            {"messages": [user("hi"), {"content": "x"}]},
            "sft",
            '\'messages[1]\' must be a {"role", "content"}',
        ),
        ({"messages": [user("hi")]}, "sft", "'messages' has no assistant turn"),
        ({"messages": "hi"}, "sft", "'messages' must be a list of"),
        ({"prompt": "p", "completion": None}, "sft", "'completion' is missing"),
        (
            {"prompt": "p", "responses": ["a"], "ranking": [0]},
            "ranked",
            "'responses' must be a list of 2 or more",
        ),
        (
            {"prompt": "p", "responses": ["a", "b"], "ranking": [0, 0]},
            "ranked",
            "'ranking' must list the indices 0..1 of 'responses', each once, best first",
        ),
        ({"prompt": "p", "responses": ["a", "b"], "ranking": [True, False]}, "ranked", "'ranking' must list"),
        ({"prompt": "p", "responses": ["a", ""], "ranking": [0, 1]}, "ranked", "'responses[1]' is empty"),
        (
            {"prompt": "p", "completion": "c", "label": "yes"},
            "unpaired",
            "'label' must be true or false, got 'yes'",
        ),
        (
            {"prompt": "p", "completions": ["a", "b"], "labels": [True]},
            "stepwise",
            "'labels' has 1 entries but 'completions' has 2 steps",
        ),
        (
            {"prompt": "p", "completions": ["a", ""], "labels": [True, False]},
            "stepwise",
            "'completions[1]' is empty",
        ),
        (
            {"prompt": "p", "completions": ["a"], "labels": ["yes"]},
            "stepwise",
            "'labels' must be a list of true/false",
        ),
        ({"text": ""}, "text", "'text' is empty"),
        ({"prompt": [user("")]}, "prompt", "'prompt[0].content' is empty"),
    ],
)
def test_validation_errors_name_location_and_field(row, kind, error):
    good = VALID_ROWS[kind][0]
    rows = rows_of([good, good, row], "rows.jsonl")
    with pytest.raises(AlignkitError) as err:
        validate_rows(rows, [kind])
    assert f"\n  rows.jsonl:3: {error}" in str(err.value)
    assert "rows.jsonl:1" not in str(err.value)


def test_many_problems_are_counted_and_the_first_ten_listed():
    rows = rows_of([{"prompt": "p", "chosen": "", "rejected": "b"}] * 12, "prefs.jsonl")
    with pytest.raises(AlignkitError) as err:
        validate_rows(rows, ["preference"])
    message = str(err.value)
    assert message.startswith("prefs.jsonl: 12 problem(s) in 12 preference rows")
    assert message.count("'chosen' is empty") == 10
    assert "prefs.jsonl:10: 'chosen' is empty" in message and "prefs.jsonl:11:" not in message
    assert message.endswith("... and 2 more")


def test_ranked_to_pairs_all_pairs_best_first():
    row = {"prompt": "p", "responses": ["a", "b", "c"], "ranking": [2, 0, 1], "source": "s1"}
    pairs = ranked_to_pairs(row)
    # ranking [2, 0, 1]: c > a > b
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("c", "a"), ("c", "b"), ("a", "b")]
    assert pairs[0] == {"prompt": "p", "source": "s1", "chosen": "c", "rejected": "a"}


@pytest.mark.parametrize(("k", "pairs"), [(2, 1), (3, 3), (4, 6), (5, 10)])
def test_ranked_to_pairs_count_is_k_choose_2(k, pairs):
    row = {"prompt": "p", "responses": [f"r{i}" for i in range(k)], "ranking": list(range(k))}
    result = ranked_to_pairs(row)
    assert len(result) == pairs
    # with ranking 0..k-1, chosen always has the smaller index: it is ranked higher
    assert all(int(p["chosen"][1:]) < int(p["rejected"][1:]) for p in result)


def test_implicit_prompt_is_the_shared_beginning_ending_with_a_user_turn():
    shared = [system("s"), user("a"), assistant("b"), user("c")]
    prompt, chosen, rejected = implicit_prompt(shared + [assistant("good")], shared + [assistant("bad")])
    assert prompt == shared and chosen == [assistant("good")] and rejected == [assistant("bad")]
    # identical conversations still split into a prompt and two (identical) replies
    prompt, chosen, rejected = implicit_prompt(shared + [assistant("x")], shared + [assistant("x")])
    assert prompt == shared and chosen == rejected == [assistant("x")]


def test_conversations_from_rows():
    assert preference_conversation({"prompt": "p", "chosen": "a", "rejected": "b"}) == (
        [user("p")],
        [assistant("a")],
        [assistant("b")],
    )
    messages = [user("hi"), assistant("a"), user("more"), assistant("b")]
    assert sft_conversation({"messages": messages}) == (messages, [1, 3])
    # in prompt+completion rows only the completion is scored, not assistant turns inside the prompt
    assert sft_conversation({"prompt": messages[:3], "completion": [assistant("b")]}) == (messages, [3])
