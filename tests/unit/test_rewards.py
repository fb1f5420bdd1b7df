"""Rule rewards and reward composition against values written out by hand: exact answers, format,
length and repetition penalties, loading user functions, and failures that must become None (never 0)."""

import math
import sys
import time

import pytest

from alignkit.errors import AlignkitError
from alignkit.rewards.compose import BUILTINS, load_reward_function, safe_call, weighted_sum
from alignkit.rewards.rules import exact_match, length_penalty, regex_format, repetition_penalty


# --- exact_match -------------------------------------------------------------------------------------------

def test_exact_match_numeric_answer_is_the_last_number():
    completions = ["17 + 25 = 42.", "I think 42 then 43", "42.0", "no number here", "1,000 apples", "-3"]
    answers = ["42", "42", "42", "42", "1000", "-3"]
    assert exact_match([""] * 6, completions, answer=answers) == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]


def test_exact_match_text_answer_ignores_case_and_trailing_punctuation():
    completions = ["Paris.", "  paris!  ", "Paris, France", "Lyon"]
    assert exact_match([""] * 4, completions, answer=["paris"] * 4) == [1.0, 1.0, 0.0, 0.0]


def test_exact_match_none_answer_gives_none():
    assert exact_match(["", ""], ["42", "42"], answer=[None, "42"]) == [None, 1.0]


def test_exact_match_without_answer_column_is_a_user_error():
    with pytest.raises(AlignkitError, match="'answer' column"):
        exact_match(["q"], ["42"])
    with pytest.raises(AlignkitError, match="1 answers for 2 completions"):
        exact_match(["q", "q"], ["1", "2"], answer=["1"])


# --- regex_format, length_penalty, repetition_penalty -----------------------------------------------------

def test_regex_format_full_match_across_lines():
    reward = regex_format(r"<think>.*</think>\s*<answer>\d+</answer>")
    completions = ["<think>a\nb</think>\n<answer>7</answer>\n", "<answer>7</answer>",
                   "<think>x</think><answer>7</answer> extra"]
    assert reward([""] * 3, completions) == [1.0, 0.0, 0.0]


def test_regex_format_bad_pattern_fails_at_construction():
    with pytest.raises(AlignkitError, match="not a valid regular expression"):
        regex_format("(unclosed")


def test_length_penalty_by_hand():
    reward = length_penalty(target=10, scale=0.5)
    # lengths 5, 10, 15, 30 -> 0, 0, -0.5*5/10 = -0.25, -0.5*20/10 = -1.0
    assert reward([""] * 4, ["a" * 5, "a" * 10, "a" * 15, "a" * 30]) == [0.0, 0.0, -0.25, -1.0]


def test_repetition_penalty_by_hand():
    reward = repetition_penalty(n=2)
    # "a b a b a b": bigrams ab ba ab ba ab -> 5 total, 2 distinct -> -(3/5)
    # "a b c d": 3 distinct bigrams -> 0;  "a": no bigram -> 0
    scores = reward([""] * 3, ["a b a b a b", "a b c d", "a"])
    assert scores == pytest.approx([-0.6, 0.0, 0.0])
    # default n=3: "x y z x y z" -> xyz yzx zxy xyz -> 4 total, 3 distinct -> -0.25
    assert repetition_penalty()([""], ["x y z x y z"]) == [-0.25]


# --- load_reward_function ---------------------------------------------------------------------------------

def test_load_builtin_by_name():
    assert load_reward_function("exact_match") is exact_match
    assert load_reward_function("repetition_penalty") is BUILTINS["repetition_penalty"]
    with pytest.raises(AlignkitError, match="not a built-in"):
        load_reward_function("exact_matc")


def test_load_user_function_from_module(tmp_path, monkeypatch):
    (tmp_path / "my_rewards_ak.py").write_text(
        "def starts_with_yes(prompts, completions, **_):\n"
        "    return [float(c.startswith('yes')) for c in completions]\n"
        "NOT_CALLABLE = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fn = load_reward_function("my_rewards_ak:starts_with_yes")
    assert fn(["", ""], ["yes sir", "no"]) == [1.0, 0.0]
    with pytest.raises(AlignkitError, match="has no attribute 'missing'"):
        load_reward_function("my_rewards_ak:missing")
    with pytest.raises(AlignkitError, match="not a function"):
        load_reward_function("my_rewards_ak:NOT_CALLABLE")


def test_load_missing_module_and_broken_import(tmp_path, monkeypatch):
    with pytest.raises(AlignkitError, match="no module named 'no_such_module_ak'"):
        load_reward_function("no_such_module_ak:score")
    (tmp_path / "broken_rewards_ak.py").write_text("import no_such_dependency_ak\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AlignkitError, match="importing 'broken_rewards_ak' failed"):
        load_reward_function("broken_rewards_ak:score")
    with pytest.raises(AlignkitError, match="'module:function'"):
        load_reward_function(":score")


# --- safe_call ---------------------------------------------------------------------------------------------

def raises(prompts, completions, **_):
    raise ValueError("boom")


def slow(prompts, completions, **_):
    time.sleep(1.0)
    return [1.0] * len(completions)


def test_raising_function_gives_none_for_every_row_and_counts_them():
    assert safe_call(raises, ["", "", ""], ["a", "b", "c"], {}, timeout_s=None) == ([None] * 3, 3)
    assert safe_call(raises, ["", ""], ["a", "b"], {}, timeout_s=5.0) == ([None] * 2, 2)


def test_slow_function_times_out_to_none():
    start = time.perf_counter()
    assert safe_call(slow, ["", ""], ["a", "b"], {}, timeout_s=0.05) == ([None, None], 2)
    assert time.perf_counter() - start < 0.5
    assert safe_call(slow, [""], ["a"], {}, timeout_s=5.0) == ([1.0], 0)


def test_columns_are_passed_as_keywords():
    scores, failed = safe_call(exact_match, ["", ""], ["42", "7"], {"answer": ["42", "8"]}, timeout_s=1.0)
    assert (scores, failed) == ([1.0, 0.0], 0)


def test_wrong_length_is_a_user_error_naming_the_function():
    def two_scores(prompts, completions, **_):
        return [1.0, 1.0]
    with pytest.raises(AlignkitError, match="'two_scores' returned 2 scores for 3 completions"):
        safe_call(two_scores, [""] * 3, ["a", "b", "c"], {}, timeout_s=None)


def test_non_finite_scores_become_none_and_count():
    def odd(prompts, completions, **_):
        return [math.nan, 2, math.inf, None]
    assert safe_call(odd, [""] * 4, ["a"] * 4, {}, timeout_s=None) == ([None, 2.0, None, None], 2)


def test_bools_and_strings_are_not_scores():
    def bools(prompts, completions, **_):
        return [True]

    def strings(prompts, completions, **_):
        return ["1.0"]
    with pytest.raises(AlignkitError, match="'bools', row 0: score True is a bool"):
        safe_call(bools, [""], ["a"], {}, timeout_s=None)
    with pytest.raises(AlignkitError, match="is a str"):
        safe_call(strings, [""], ["a"], {}, timeout_s=None)


# --- weighted_sum ------------------------------------------------------------------------------------------

def test_weighted_sum_by_hand_with_a_none_masking_the_row():
    def fmt(prompts, completions, **_):
        return [1.0, 0.0, 1.0]
    completions = ["42", "41", "x"]
    totals, per_function, failures = weighted_sum(
        [(exact_match, 2.0), (fmt, 0.5)], [""] * 3, completions, {"answer": ["42", "42", None]})
    # row 0: 2*1 + 0.5*1 = 2.5; row 1: 2*0 + 0.5*0 = 0.0; row 2: exact_match None -> masked
    assert totals == [2.5, 0.0, None]
    assert per_function == {"exact_match": [1.0, 0.0, None], "fmt": [1.0, 0.0, 1.0]}
    assert failures == {"exact_match": 0, "fmt": 0}


def test_weighted_sum_failed_function_masks_every_row_and_repeated_names_stay_apart():
    def fmt(prompts, completions, **_):
        return [1.0, 3.0]
    totals, per_function, failures = weighted_sum(
        [(fmt, 1.0), (fmt, -1.0), (raises, 1.0)], ["", ""], ["a", "b"], {})
    assert totals == [None, None]
    assert per_function == {"fmt": [1.0, 3.0], "fmt#2": [1.0, 3.0], "raises": [None, None]}
    assert failures == {"fmt": 0, "fmt#2": 0, "raises": 2}
    totals, _, _ = weighted_sum([(fmt, 1.0), (fmt, -0.5)], ["", ""], ["a", "b"], {})
    assert totals == [0.5, 1.5]


def test_fallback_scores_only_the_rows_a_primary_declined():
    def verifier(prompts, completions, **_):  # declines the rows without an answer
        return [None if p == "open" else float(c == "42") for p, c in zip(prompts, completions)]

    def rm(prompts, completions, **_):
        return [0.3, -0.2, 0.7, float("nan")]

    prompts, completions = ["sum", "sum", "open", "open"], ["42", "41", "x", "y"]
    totals, per_function, failures = weighted_sum(
        [(verifier, 2.0), (rm, 0.5)], prompts, completions, {}, fallback=[False, True])
    # rows 0-1: the verifier's 2*1 and 2*0, the reward model unused; row 2: 0.5*0.7 alone;
    # row 3: the fallback itself failed (NaN), so the row is masked
    assert totals == [2.0, 0.0, 0.35, None]
    assert per_function == {"verifier": [1.0, 0.0, None, None], "rm": [0.3, -0.2, 0.7, None]}
    assert failures == {"verifier": 0, "rm": 1}
    # without the flag, a declined row is masked as before
    totals, _, _ = weighted_sum([(verifier, 2.0), (rm, 0.5)], prompts, completions, {})
    assert totals == [2.15, -0.1, None, None]


def test_fallback_never_covers_a_failed_primary():
    def rm(prompts, completions, **_):
        return [1.0, 1.0]
    totals, _, failures = weighted_sum([(raises, 1.0), (rm, 1.0)], ["", ""], ["a", "b"], {},
                                       fallback=[False, True])
    assert totals == [None, None] and failures == {"raises": 2, "rm": 0}


def test_fallback_flags_must_match_and_leave_a_primary():
    def rm(prompts, completions, **_):
        return [1.0]
    with pytest.raises(AlignkitError, match="2 fallback flags for 1 reward functions"):
        weighted_sum([(rm, 1.0)], [""], ["a"], {}, fallback=[True, False])
    with pytest.raises(AlignkitError, match="every reward is a fallback"):
        weighted_sum([(rm, 1.0)], [""], ["a"], {}, fallback=[True])


def test_importing_rewards_does_not_import_torch():
    import subprocess
    code = "import sys, alignkit.rewards.compose; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
