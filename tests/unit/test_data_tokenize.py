"""Formats, masks, EOS, boundary merges, truncation policies, identical pairs and packing, on a real BPE.

Token counts below come from the test tokenizer of data_fixtures.py (deterministic BPE training); the test
`test_reference_lengths` pins them, so a change of tokenizer shows up there first.
"""

from __future__ import annotations

import json

import pytest
from data_fixtures import (
    GLUED_TEMPLATE,
    PLAIN_TEMPLATE,
    TRIMMING_TEMPLATE,
    assistant,
    make_tokenizer,
    rows_of,
    system,
    user,
)

from alignkit.data.tokenize import (
    end_spans_with_eos,
    pack_texts,
    render_messages,
    render_plain,
    tokenize_preference,
    tokenize_sft,
)
from alignkit.errors import AlignkitError

EOS_ID = 1
SFT_ROWS = [
    {"prompt": "what is two plus two?", "completion": "two plus two is four."},  # 11 + 7 = 18 tokens
    {"prompt": "name a color", "completion": "blue is a color."},  # 8 + 6 = 14
    {
        "prompt": "tell me a story about a cat and a dog",
        "completion": "once upon a time there was a cat.",
    },  # 19 + 11
    {"prompt": "hi", "completion": "yes."},  # 7 + 3 = 10
]
MULTI_TURN = {
    "messages": [
        system("you are terse."),
        user("is the sky blue?"),
        assistant("yes."),
        user("say hello"),
        assistant("hello there"),
    ]
}


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False)


def scored_text(tokenizer, example: dict) -> str:
    return tokenizer.decode([i for i, m in zip(example["input_ids"], example["labels_mask"]) if m])


def context_text(tokenizer, example: dict) -> str:
    return tokenizer.decode([i for i, m in zip(example["input_ids"], example["labels_mask"]) if not m])


def test_reference_lengths():
    tokenizer = make_tokenizer()
    assert len(encode(tokenizer, "User: what is two plus two?\nAssistant:")) == 11
    assert len(encode(tokenizer, " two plus two is four.<|eos|>")) == 7
    assert len(encode(tokenizer, "User: tell me a story about a cat and a dog\nAssistant:")) == 19
    assert len(encode(tokenizer, " once upon a time there was a cat.<|eos|>")) == 11
    assert len(encode(tokenizer, "User: hi\nAssistant:")) == 7
    assert (len(encode(tokenizer, " yes.<|eos|>")), len(encode(tokenizer, " no.<|eos|>"))) == (3, 4)
    assert tokenizer.eos_token_id == EOS_ID and tokenizer.pad_token_id == 0


def test_plain_format_text():
    messages = [system("s"), user("u"), assistant("a"), user("v")]
    assert (
        render_plain(messages, "<E>", add_generation_prompt=True)
        == "System: s\nUser: u\nAssistant: a<E>\nUser: v\nAssistant:"
    )
    assert (
        render_plain(messages[:3], "<E>", add_generation_prompt=False)
        == "System: s\nUser: u\nAssistant: a<E>"
    )
    assert render_plain([user("hi")], "<E>", add_generation_prompt=True) == "User: hi\nAssistant:"


def test_chat_template_and_plain_format_give_identical_ids():
    plain, templated = make_tokenizer(), make_tokenizer(PLAIN_TEMPLATE)
    conversation = MULTI_TURN["messages"]
    for add in (True, False):
        assert render_messages(templated, conversation[:4], add) == render_messages(
            plain, conversation[:4], add
        )
    sft = rows_of(
        [
            *SFT_ROWS,
            MULTI_TURN,
            {"prompt": [system("be kind"), user("hi")], "completion": [assistant("yes.")]},
        ]
    )
    assert tokenize_sft(sft, plain, 512, "error")[0] == tokenize_sft(sft, templated, 512, "error")[0]
    prefs = rows_of(
        [
            {"prompt": "hi", "chosen": "yes.", "rejected": "no."},
            {"chosen": [user("hi"), assistant("yes.")], "rejected": [user("hi"), assistant("no.")]},
        ]
    )
    assert (
        tokenize_preference(prefs, plain, 512, "error")[0]
        == tokenize_preference(prefs, templated, 512, "error")[0]
    )


def test_the_tiny_model_template_matches_the_plain_format():
    tiny = pytest.importorskip("alignkit.models.tiny")
    templated = make_tokenizer(getattr(tiny, "CHAT_TEMPLATE", None) or pytest.skip("no CHAT_TEMPLATE"))
    rows = rows_of([*SFT_ROWS, MULTI_TURN])
    assert (
        tokenize_sft(rows, templated, 512, "error")[0]
        == tokenize_sft(rows, make_tokenizer(), 512, "error")[0]
    )


def test_mask_covers_exactly_the_response_and_its_eos():
    tokenizer = make_tokenizer()
    examples, report = tokenize_sft(rows_of(SFT_ROWS[:1]), tokenizer, 512, "error")
    (example,) = examples
    assert scored_text(tokenizer, example) == " two plus two is four.<|eos|>"
    assert context_text(tokenizer, example) == "User: what is two plus two?\nAssistant:"
    assert example["labels_mask"] == [False] * 11 + [True] * 7
    assert example["input_ids"][-1] == EOS_ID
    assert example["input_ids"] == encode(
        tokenizer, "User: what is two plus two?\nAssistant: two plus two is four.<|eos|>"
    )
    assert example["location"] == "data.jsonl:1"
    assert (report.rows, report.kept, report.boundary_merges) == (1, 1, 0)


def test_multi_turn_masks_every_assistant_turn():
    tokenizer = make_tokenizer()
    (example,), _ = tokenize_sft(rows_of([MULTI_TURN]), tokenizer, 512, "error")
    assert scored_text(tokenizer, example) == " yes.<|eos|> hello there<|eos|>"
    assert tokenizer.decode(example["input_ids"]) == (
        "System: you are terse.\nUser: is the sky blue?\nAssistant: yes.<|eos|>\n"
        "User: say hello\nAssistant: hello there<|eos|>"
    )
    spans = [i for i, m in enumerate(example["labels_mask"]) if m]
    assert [example["input_ids"][i] for i in spans].count(EOS_ID) == 2


def test_prompt_completion_rows_do_not_score_assistant_turns_inside_the_prompt():
    tokenizer = make_tokenizer()
    row = {"prompt": [user("hi"), assistant("no."), user("again")], "completion": [assistant("yes.")]}
    (example,), _ = tokenize_sft(rows_of([row]), tokenizer, 512, "error")
    assert scored_text(tokenizer, example) == " yes.<|eos|>"


def test_boundary_merge_falls_back_to_separate_tokenization_and_is_counted():
    tokenizer = make_tokenizer(GLUED_TEMPLATE)  # "Assistant:" + reply, no space between
    prompt_text = "User: hi\nAssistant:"
    # the precondition: ":" + "::" merges into "::" + ":", so the prompt's ids are not a prefix of the whole
    whole = encode(tokenizer, prompt_text + ":: x<|eos|>")
    assert whole[: len(encode(tokenizer, prompt_text))] != encode(tokenizer, prompt_text)

    rows = rows_of([{"prompt": "hi", "completion": ":: x"}, {"prompt": "hi", "completion": "yes."}])
    examples, report = tokenize_sft(rows, tokenizer, 512, "error")
    assert report.boundary_merges == 1
    assert examples[0]["input_ids"] == encode(tokenizer, prompt_text) + encode(tokenizer, ":: x<|eos|>")
    assert scored_text(tokenizer, examples[0]) == ":: x<|eos|>"
    assert examples[1]["input_ids"] == encode(tokenizer, prompt_text + "yes.<|eos|>")
    assert "1 row where BPE merged across the prompt/response boundary" in report.summary()

    prefs = rows_of([{"prompt": "hi", "chosen": ":: x", "rejected": "no."}])
    (pair,), pair_report = tokenize_preference(prefs, tokenizer, 512, "error")
    assert pair_report.boundary_merges == 1
    assert pair["prompt_ids"] == encode(tokenizer, prompt_text)
    assert pair["chosen_ids"] == encode(tokenizer, ":: x<|eos|>")
    assert pair["rejected_ids"] == encode(tokenizer, "no.<|eos|>")


def test_eos_is_appended_when_the_template_does_not_write_it():
    tokenizer = make_tokenizer(PLAIN_TEMPLATE.replace(" + eos_token", ""))
    (example,), _ = tokenize_sft(rows_of(SFT_ROWS[:1]), tokenizer, 512, "error")
    assert example["input_ids"][-1] == EOS_ID
    assert scored_text(tokenizer, example) == " two plus two is four.<|eos|>"


def test_text_after_the_eos_of_a_turn_is_not_scored():
    # Like templates that end a turn with "<eos>\n": the newline is context, and the example ends at EOS.
    tokenizer = make_tokenizer(PLAIN_TEMPLATE.replace("+ eos_token }}", "+ eos_token + '\\n' }}"))
    (example,), _ = tokenize_sft(rows_of([MULTI_TURN]), tokenizer, 512, "error")
    assert example["input_ids"][-1] == EOS_ID
    assert scored_text(tokenizer, example) == " yes.<|eos|> hello there<|eos|>"


def test_end_spans_with_eos_by_hand():
    ids = [5, 6, 7, 1, 9, 5, 8, 6, 7]
    fixed_ids, spans = end_spans_with_eos(ids, [(2, 5), (7, 9)], eos_id=1)
    # span 1 holds EOS at 3: it ends there (9 stays as unscored context); span 2 has none: EOS is inserted
    assert fixed_ids == [5, 6, 7, 1, 9, 5, 8, 6, 7, 1]
    assert spans == [(2, 4), (7, 10)]


def test_truncation_error_counts_every_long_row_first():
    with pytest.raises(AlignkitError) as err:
        tokenize_sft(rows_of(SFT_ROWS, "sft.jsonl"), make_tokenizer(), 16, "error")
    assert str(err.value) == (
        "sft.jsonl:1: prompt+response is 18 tokens, over max_length=16 (2 of 4 rows are over; the longest is "
        "30): raise data.max_length, or set data.truncation=left (cut prompts from the left) or "
        "data.truncation=drop"
    )


def test_truncation_left_cuts_prompts_from_the_left_and_drops_what_cannot_fit():
    tokenizer = make_tokenizer()
    full = tokenize_sft(rows_of(SFT_ROWS), tokenizer, 512, "error")[0]
    examples, report = tokenize_sft(rows_of(SFT_ROWS), tokenizer, 11, "left")
    assert [e["location"] for e in examples] == ["data.jsonl:1", "data.jsonl:2", "data.jsonl:4"]
    assert examples[0]["input_ids"] == full[0]["input_ids"][7:]  # 18 tokens, the first 7 cut
    assert examples[1]["input_ids"] == full[1]["input_ids"][3:]  # 14 tokens, the first 3 cut
    assert examples[2] == full[3]  # 10 tokens: untouched
    assert all(len(e["input_ids"]) <= 11 for e in examples)
    assert scored_text(tokenizer, examples[0]) == " two plus two is four.<|eos|>"  # the response is whole
    assert report.truncated == [("data.jsonl:1", 18, 11), ("data.jsonl:2", 14, 11)]
    reason = "the response alone is 11 tokens; with at least 1 prompt token it cannot fit max_length=11"
    assert report.dropped == [("data.jsonl:3", reason)]
    assert report.summary() == (
        "sft: 4 rows -> 3 examples; 2 prompts cut from the left (max_length=11); "
        f"1 dropped (data.jsonl:3: {reason})."
    )


def test_truncation_drop_drops_and_records_long_rows():
    tokenizer = make_tokenizer()
    examples, report = tokenize_sft(rows_of(SFT_ROWS), tokenizer, 16, "drop")
    assert [e["location"] for e in examples] == ["data.jsonl:2", "data.jsonl:4"]
    assert report.dropped == [
        ("data.jsonl:1", "18 tokens, over max_length=16"),
        ("data.jsonl:3", "30 tokens, over max_length=16"),
    ]
    assert report.truncated == [] and (report.rows, report.kept) == (4, 2)
    assert json.loads(json.dumps(report.to_dict()))["dropped"][0] == [
        "data.jsonl:1",
        "18 tokens, over max_length=16",
    ]


def test_unknown_truncation_policy():
    with pytest.raises(AlignkitError, match="data.truncation='cut'; choose one of: error, left, drop"):
        tokenize_sft(rows_of(SFT_ROWS), make_tokenizer(), 16, "cut")


PREFERENCES = [
    {"prompt": "hi", "chosen": "yes.", "rejected": "no."},  # 7 + max(3, 4) = 11
    {"prompt": "hi", "chosen": "yes.", "rejected": "yes."},  # identical as written
    {"prompt": "hi", "chosen": "yes.", "rejected": "yes. "},  # identical once a trimming template renders it
]


def test_preference_examples():
    tokenizer = make_tokenizer()
    (pair, spaced), report = tokenize_preference(
        rows_of([PREFERENCES[0], PREFERENCES[2]], "p.jsonl"), tokenizer, 512, "error"
    )
    assert pair == {
        "prompt_ids": encode(tokenizer, "User: hi\nAssistant:"),
        "chosen_ids": encode(tokenizer, " yes.<|eos|>"),
        "rejected_ids": encode(tokenizer, " no.<|eos|>"),
        "location": "p.jsonl:1",
        "group": "p.jsonl:1",
    }
    assert spaced["rejected_ids"][-1] == EOS_ID and spaced["rejected_ids"] != spaced["chosen_ids"]
    assert (report.kind, report.rows, report.kept, report.identical_pairs) == ("preference", 2, 2, [])


def test_identical_pairs_before_and_after_tokenization_are_excluded_and_reported():
    rows = rows_of(PREFERENCES, "p.jsonl")
    plain_examples, plain_report = tokenize_preference(rows, make_tokenizer(), 512, "error")
    assert [e["location"] for e in plain_examples] == ["p.jsonl:1", "p.jsonl:3"]
    assert plain_report.identical_pairs == ["p.jsonl:2"]
    trimmed_examples, trimmed_report = tokenize_preference(
        rows, make_tokenizer(TRIMMING_TEMPLATE), 512, "error"
    )
    assert [e["location"] for e in trimmed_examples] == ["p.jsonl:1"]
    assert trimmed_report.identical_pairs == ["p.jsonl:2", "p.jsonl:3"]
    assert trimmed_report.kept == 1
    assert (
        "2 pairs with chosen identical to rejected excluded (p.jsonl:2, p.jsonl:3)"
        in trimmed_report.summary()
    )


def test_preference_truncation_cuts_only_the_prompt():
    tokenizer = make_tokenizer()
    (pair,), report = tokenize_preference(rows_of(PREFERENCES[:1]), tokenizer, 9, "left")
    assert pair["prompt_ids"] == encode(tokenizer, "User: hi\nAssistant:")[2:]
    assert pair["rejected_ids"] == encode(tokenizer, " no.<|eos|>")
    assert report.truncated == [("data.jsonl:1", 11, 9)]
    with pytest.raises(
        AlignkitError, match=r"data.jsonl:1: prompt\+longer response is 11 tokens, over max_length=9"
    ):
        tokenize_preference(rows_of(PREFERENCES[:1]), tokenizer, 9, "error")
    assert tokenize_preference(rows_of(PREFERENCES[:1]), tokenizer, 4, "left")[1].dropped == [
        (
            "data.jsonl:1",
            "the response alone is 4 tokens; with at least 1 prompt token it cannot fit max_length=4",
        )
    ]


def test_ranked_rows_expand_to_pairs_in_rank_order():
    tokenizer = make_tokenizer()
    row = {"prompt": "hi", "responses": ["no.", "yes.", "maybe."], "ranking": [1, 0, 2]}
    examples, report = tokenize_preference(rows_of([row], "r.jsonl"), tokenizer, 512, "error")
    decoded = [(tokenizer.decode(e["chosen_ids"]), tokenizer.decode(e["rejected_ids"])) for e in examples]
    assert decoded == [
        (" yes.<|eos|>", " no.<|eos|>"),
        (" yes.<|eos|>", " maybe.<|eos|>"),
        (" no.<|eos|>", " maybe.<|eos|>"),
    ]
    assert [e["location"] for e in examples] == ["r.jsonl:1 pair 1", "r.jsonl:1 pair 2", "r.jsonl:1 pair 3"]
    assert (report.kind, report.rows, report.kept) == ("ranked", 1, 3)


def test_implicit_prompt_preference_rows():
    tokenizer = make_tokenizer()
    row = {"chosen": [user("hi"), assistant("yes.")], "rejected": [user("hi"), assistant("no.")]}
    (pair,), _ = tokenize_preference(rows_of([row]), tokenizer, 512, "error")
    assert pair["prompt_ids"] == encode(tokenizer, "User: hi\nAssistant:")
    assert pair["chosen_ids"] == encode(tokenizer, " yes.<|eos|>")


def test_tokenize_refuses_rows_of_the_wrong_kind():
    with pytest.raises(AlignkitError, match="sft needs prompt\\+completion or messages"):
        tokenize_sft(rows_of(PREFERENCES), make_tokenizer(), 512, "error")


def test_pack_texts_keeps_every_token():
    tokenizer = make_tokenizer()
    texts = ["once upon a time", "cats eat fish", "hello"]  # 5, 5 and 2 tokens, + EOS each = 15
    blocks = pack_texts(rows_of([{"text": t} for t in texts]), tokenizer, block_size=4)
    stream = [i for t in texts for i in encode(tokenizer, t) + [EOS_ID]]
    assert len(stream) == 15
    assert [len(b["input_ids"]) for b in blocks] == [4, 4, 4, 3]
    assert [i for b in blocks for i in b["input_ids"]] == stream
    assert all(b["labels_mask"] == [True] * len(b["input_ids"]) for b in blocks)
    assert len(pack_texts(rows_of([{"text": t} for t in texts]), tokenizer, block_size=15)) == 1
