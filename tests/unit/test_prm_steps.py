"""Process reward models: step reductions by hand, where each step is scored, and scoring a completion."""

from __future__ import annotations

import json

import pytest
import torch
from data_fixtures import PLAIN_TEMPLATE, TRIMMING_TEMPLATE, make_tokenizer

from alignkit.best_of_n import choose, reward_function
from alignkit.config import load_config
from alignkit.data.io import Rows
from alignkit.data.stepwise import collate_steps, encode_steps, split_steps, tokenize_stepwise
from alignkit.errors import AlignkitError
from alignkit.recipes.prm import label_baselines
from alignkit.rewards.prm import REDUCTIONS, ProcessReward, read_prm_info, write_prm_info

# ---- reductions ----

# logits -1, 2, 0 -> probabilities sigmoid: 0.268941, 0.880797, 0.5
LOGITS = [-1.0, 2.0, 0.0]


def test_reductions_by_hand():
    assert REDUCTIONS["min"](LOGITS) == pytest.approx(0.268941, abs=1e-6)
    assert REDUCTIONS["product"](LOGITS) == pytest.approx(0.268941 * 0.880797 * 0.5, abs=1e-6)  # 0.118443
    assert REDUCTIONS["last"](LOGITS) == pytest.approx(0.5, abs=1e-6)
    assert REDUCTIONS["min"]([3.0]) == REDUCTIONS["product"]([3.0]) == REDUCTIONS["last"]([3.0])  # one step


def test_reductions_do_not_overflow():
    assert REDUCTIONS["min"]([1000.0, 800.0]) == 1.0
    assert REDUCTIONS["product"]([-800.0] * 3) == 0.0
    assert REDUCTIONS["last"]([5.0, -1000.0]) == 0.0
    assert REDUCTIONS["product"]([40.0] * 1000) == pytest.approx(1.0)  # many sure steps stay ~1


# ---- where steps are scored ----


def test_split_steps_drops_blank_pieces():
    assert split_steps("a\n\nb\n", "\n") == ["a", "b"]
    assert split_steps("one step", "\n") == ["one step"]
    assert split_steps(" \n", "\n") == []


def _text_through(tokenizer, encoded, position: int) -> str:
    return tokenizer.decode(encoded.ids[: position + 1])


@pytest.mark.parametrize("template", [None, PLAIN_TEMPLATE])
def test_each_step_is_scored_at_its_own_last_token(template):
    tokenizer = make_tokenizer(template)
    steps = ["two plus two is four.", "blue is a color.", "one, two, three."]
    encoded = encode_steps(tokenizer, "count to three", steps, "\n")
    assert not encoded.merged
    assert len(encoded.ids) == encoded.step_ends[-1] + 1  # nothing after the last step (no EOS) is kept
    for i, end in enumerate(encoded.step_ends):
        # the text through the scored token ends exactly with step i: no separator, nothing of step i+1
        assert _text_through(tokenizer, encoded, end).endswith("Assistant: " + "\n".join(steps[: i + 1]))
    prompt = tokenizer.decode(encoded.ids[: encoded.prompt_length])
    assert prompt.endswith("User: count to three\nAssistant:")


def test_a_step_merged_with_the_separator_by_bpe_still_ends_on_its_own_token():
    tokenizer = make_tokenizer(PLAIN_TEMPLATE)
    steps = ["a:", "b:", "c"]  # "a:" + ":\n" holds "::", one token of this BPE: the cut falls inside it
    encoded = encode_steps(tokenizer, "say hello", steps, ":\n")
    assert encoded.merged
    for i, end in enumerate(encoded.step_ends):
        assert _text_through(tokenizer, encoded, end).endswith("Assistant: " + ":\n".join(steps[: i + 1]))


def test_steps_that_do_not_split_back_are_errors():
    tokenizer = make_tokenizer(PLAIN_TEMPLATE)
    with pytest.raises(AlignkitError, match=r"step 1 contains the step separator '\\n'.*prm.step_separator"):
        encode_steps(tokenizer, "hi", ["one", "two\nthree"], "\n")
    with pytest.raises(AlignkitError, match="split back into"):  # "x:" + "::" reads as "x" then ":y"
        encode_steps(tokenizer, "hi", ["x:", "y"], "::")
    with pytest.raises(AlignkitError, match="does not render the reply's steps as written"):
        encode_steps(make_tokenizer(TRIMMING_TEMPLATE), "hi", ["one", "two "], "\n")


def stepwise_rows(*rows: dict) -> Rows:
    return Rows("steps.jsonl", list(rows), [f"steps.jsonl:{i + 1}" for i in range(len(rows))])


ROWS = stepwise_rows(
    {"prompt": "what is two plus two?", "completions": ["two plus two is four.", "four."],
     "labels": [True, False]},
    {"prompt": "name a color", "completions": ["blue is a color."], "labels": [True]},
)


def test_tokenize_stepwise_names_the_row_with_a_bad_step():
    bad = stepwise_rows(ROWS.rows[0], {"prompt": "hi", "completions": ["a\nb"], "labels": [True]})
    with pytest.raises(AlignkitError, match=r"steps.jsonl:2: step 0 contains the step separator"):
        tokenize_stepwise(bad, make_tokenizer(PLAIN_TEMPLATE), 128, "error", "\n")


def test_left_truncation_moves_the_step_positions_with_the_ids():
    tokenizer = make_tokenizer(PLAIN_TEMPLATE)
    whole, _ = tokenize_stepwise(ROWS, tokenizer, 128, "error", "\n")
    assert [e["step_labels"] for e in whole] == [[True, False], [True]]
    longest = len(whole[0]["input_ids"])
    with pytest.raises(AlignkitError, match="steps.jsonl:1: prompt\\+steps is"):
        tokenize_stepwise(ROWS, tokenizer, longest - 3, "error", "\n")
    cut, report = tokenize_stepwise(ROWS, tokenizer, longest - 3, "left", "\n")
    assert report.truncated == [("steps.jsonl:1", longest, longest - 3)]
    assert cut[0]["input_ids"] == whole[0]["input_ids"][3:]
    assert [cut[0]["input_ids"][p] for p in cut[0]["step_positions"]] == \
        [whole[0]["input_ids"][p] for p in whole[0]["step_positions"]]
    assert [p - 3 for p in whole[0]["step_positions"]] == cut[0]["step_positions"]
    # row 1's steps alone are 10 tokens: with max_length=10 they leave no room for a prompt token
    kept, report = tokenize_stepwise(ROWS, tokenizer, 10, "left", "\n")
    assert [e["location"] for e in kept] == ["steps.jsonl:2"]
    assert [where for where, _ in report.dropped] == ["steps.jsonl:1"]
    assert "the response alone is 10 tokens" in report.dropped[0][1]


def test_collate_steps_pads_steps_and_counts_real_ones():
    examples = [
        {"input_ids": [5, 6, 7, 8], "step_positions": [1, 3], "step_labels": [True, False]},
        {"input_ids": [5, 6], "step_positions": [1], "step_labels": [False]},
    ]
    batch = collate_steps(examples, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 6, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["step_positions"].tolist() == [[1, 3], [1, 0]]
    assert batch["step_mask"].tolist() == [[True, True], [True, False]]
    assert batch["step_labels"].tolist() == [[1.0, 0.0], [0.0, 0.0]]
    assert batch["num_steps"] == 3


def test_label_baselines_by_hand():
    labels = [[True, True, False], [True, False, False], [True, True, True], [False, False, False]]
    found = label_baselines([{"step_labels": x} for x in labels])
    assert found["eval/majority_accuracy"] == pytest.approx(6 / 12)  # 6 true, 6 false
    # index 0: 3 true of 4; index 1: 2 of 4; index 2: 3 false of 4 -> (3 + 2 + 3) / 12
    assert found["eval/position_majority_accuracy"] == pytest.approx(8 / 12)


def test_config_separator_must_not_be_empty():
    cfg = load_config("prm", None, ["name=p", "model.path=m", "data.train=t.jsonl"])
    assert cfg.prm.step_separator == "\n"
    with pytest.raises(AlignkitError, match="prm.step_separator"):
        load_config("prm", None, ["name=p", "model.path=m", "data.train=t.jsonl", "prm.step_separator="])


# ---- scoring completions with a PRM folder ----


@pytest.fixture(scope="module")
def prm_folder(tmp_path_factory):
    from transformers import AutoModelForSequenceClassification

    from alignkit.models.tiny import build_model

    tokenizer = make_tokenizer(PLAIN_TEMPLATE)
    lm = tmp_path_factory.mktemp("lm")
    build_model(tokenizer, size="100k").save_pretrained(lm)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(lm, num_labels=1, pad_token_id=0)
    folder = tmp_path_factory.mktemp("prm")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    write_prm_info(folder, "\n")
    return folder


def test_batched_scores_equal_scores_alone_and_ignore_later_steps(prm_folder):
    reward = ProcessReward(prm_folder, "min", batch_size=8, device=torch.device("cpu"))
    prompts = ["count to three", "name a color", "say hello"]
    completions = ["one, two, three.\ntwo plus two is four.\nblue is a color.", "blue.",
                   "hello there,\nhow are you?"]
    together = reward.step_logits(prompts, completions)
    alone = [reward.step_logits([p], [c])[0] for p, c in zip(prompts, completions)]
    assert [len(x) for x in together] == [3, 1, 2]
    for batched, single in zip(together, alone):
        assert batched == pytest.approx(single, abs=1e-5)
    # a step's score depends on the prompt and the steps up to it only
    prefix = reward.step_logits(prompts[:1], ["one, two, three.\ntwo plus two is four."])[0]
    assert prefix == pytest.approx(together[0][:2], abs=1e-5)
    assert len(set(round(x, 4) for x in together[0])) == 3  # the steps are told apart
    assert reward(prompts, completions) == pytest.approx([REDUCTIONS["min"](x) for x in together])


def test_unscorable_completions_are_none(prm_folder):
    reward = ProcessReward(prm_folder, "last", max_length=20, device=torch.device("cpu"))
    long_reply = "two plus two is four. " * 10
    scores = reward(["say hello"] * 3, ["", "hello there", long_reply])
    assert scores[0] is None and scores[2] is None and 0.0 < scores[1] < 1.0


def test_prm_info_is_required_and_checked(prm_folder, tmp_path):
    assert read_prm_info(prm_folder) == {"step_separator": "\n"}
    assert read_prm_info(tmp_path) is None
    with pytest.raises(AlignkitError, match="not a process reward model"):
        ProcessReward(tmp_path)
    with pytest.raises(AlignkitError, match="choose one of min, product, last"):
        ProcessReward(prm_folder, "mean")
    (tmp_path / "prm.json").write_text(json.dumps({"step_separator": ""}))
    with pytest.raises(AlignkitError, match="non-empty string"):
        read_prm_info(tmp_path)


# ---- best-of-n choice ----


def test_choose_takes_the_best_scored_sample():
    assert choose([0.1, None, 0.7, 0.7, 0.2]) == 2  # the first of equals
    assert choose([None, -3.0]) == 1  # unscored samples are never chosen
    assert choose([None, None]) == 0


def test_reduce_is_refused_for_a_reward_model(tmp_path):
    with pytest.raises(AlignkitError, match="drop --reduce"):
        reward_function(str(tmp_path), "min", batch_size=4, max_length=64)
