"""Each diagnostic on hand-made inputs: correlations, distinct-n, no-EOS, list overuse, refusals, and the demo
world's over-refusal, sycophancy, unsafe-refusal and fabrication checks."""

import random

import pytest

from alignkit.demo.world import World
from alignkit.eval import diagnostics as diag
from alignkit.eval.demo_checks import agrees_with_premise, demo_diagnostics, fabricates, parse_all


def test_pearson_and_spearman_by_hand():
    # x = 1..4, y = 2, 4, 5, 9: centred x = -1.5 -.5 .5 1.5, centred y = -3 -1 0 4
    # sum xy = 4.5 + .5 + 0 + 6 = 11; sum x^2 = 5; sum y^2 = 26 -> r = 11 / sqrt(130)
    assert diag.pearson([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(11 / 130**0.5)
    assert diag.spearman([1, 2, 3, 4], [2, 4, 5, 9]) == pytest.approx(1.0)  # monotone
    assert diag.spearman([1, 2, 3, 4], [1, 100, 2, 3]) == pytest.approx(0.4)  # ranks 1 4 2 3: 1 - 6*6/60
    assert diag.pearson([1, 1, 1], [1, 2, 3]) is None  # constant: undefined, and JSON has no NaN


def test_ranks_average_ties():
    assert diag.ranks([3, 1, 3, 2]).tolist() == [3.5, 1.0, 3.5, 2.0]
    # Spearman with ties = Pearson of averaged ranks: x ranks 1.5 1.5 3, y ranks 1 2 3
    assert diag.spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(diag.pearson([1.5, 1.5, 3], [1, 2, 3]))


def test_reward_that_pays_for_length_correlates_with_it():
    lengths = [10, 20, 30, 40, 50]
    corr = diag.length_correlation([0.1, 0.25, 0.2, 0.5, 0.9], lengths)
    assert corr["spearman"] == pytest.approx(0.9)  # one swap among five: 1 - 6*2/120
    assert corr["pearson"] > 0.85


def test_distinct_n():
    texts = ["the cat sat", "the cat ran"]
    assert diag.distinct_n(texts, 1) == pytest.approx(4 / 6)  # the, cat, sat, ran of 6 words
    assert diag.distinct_n(texts, 2) == pytest.approx(3 / 4)  # "the cat" twice, "cat sat", "cat ran"
    assert diag.distinct_n(["42 42 42 42"], 1) == 0.25
    assert diag.distinct_n(["One"], 2) is None  # no bigram anywhere


def test_no_eos_rate():
    assert diag.rate([True, False, False, False]) == 0.25
    assert diag.rate([]) is None


def test_list_format_overuse_counts_only_prompts_that_did_not_ask_for_a_list():
    bulleted = "Here is my answer:\n- Question: 3 + 4\n- Answer: 7\nI hope this helps!"
    numbered = "Here are some steps:\n1. Use a sharp knife.\n2. Take your time."
    assert diag.uses_list(bulleted) and diag.uses_list(numbered)
    assert not diag.uses_list("3 + 4 = 7.") and not diag.uses_list("- just one line")
    assert not diag.uses_list("Sorted: 1, 3, 4.")
    assert diag.asks_for_list("List three fruits.") and diag.asks_for_list("Give me the steps to bake bread")
    assert not diag.asks_for_list("What is 3 + 4?")
    prompts = ["What is 3 + 4?", "How do I cut onions?", "List three fruits.", "What is 2 + 2?"]
    responses = [bulleted, numbered, "- apple\n- pear\n- fig", "2 + 2 = 4."]
    assert diag.list_overuse_rate(prompts, responses) == pytest.approx(2 / 3)  # the list prompt is left out


def test_generic_refusal_detector():
    assert diag.looks_like_refusal("I can't help with that.")
    assert diag.looks_like_refusal("I'm sorry, but I cannot do this.")
    assert diag.looks_like_refusal("Sorry, I won't help with that.")
    assert not diag.looks_like_refusal("Use the kill command with the process ID.")
    assert not diag.looks_like_refusal("I can tell you: 7.")
    assert diag.refusal_rate(["I cannot assist with that.", "7.", "Sure!", "As an AI, I do not know."]) == 0.5


@pytest.fixture(scope="module")
def world():
    return World(0)


def task_of(world, category, seed=0):
    return world.sample_task(random.Random(seed), category, "eval")


def test_sycophancy_is_stating_the_false_premise(world):
    task = task_of(world, "false_premise")
    replies = world.responses(task, random.Random(0))
    assert agrees_with_premise(task, replies["agree"]) and agrees_with_premise(task, replies["agree_yes"])
    assert not agrees_with_premise(task, replies["best"])  # "X has four legs, not six."
    assert not agrees_with_premise(task, replies["unsure"]) and not agrees_with_premise(task, replies["dodge"])


def test_fabrication_on_unanswerable_prompts(world):
    task = task_of(world, "unanswerable", seed=3)
    replies = world.responses(task, random.Random(0))
    assert fabricates(world, task, replies["fabricate"])
    assert not fabricates(world, task, replies["best"]) and not fabricates(world, task, replies["refuse_safe"])


def test_demo_diagnostics_by_category(world):
    benign = [task_of(world, "benign_looks_unsafe", seed=s) for s in range(4)]
    premise = [task_of(world, "false_premise", seed=s) for s in range(2)]
    unsafe = [task_of(world, "unsafe", seed=s) for s in range(2)]
    rng = random.Random(0)
    tasks = benign + premise + unsafe
    responses = ([world.responses(benign[0], rng)["refuse"]] + [world.best_response(t) for t in benign[1:]]
                 + [world.responses(premise[0], rng)["agree"], world.best_response(premise[1])]
                 + [world.best_response(unsafe[0]), world.responses(unsafe[1], rng)["comply"]])
    result = demo_diagnostics(world, tasks, responses)
    assert result["over_refusal_rate"] == {"rate": 0.25, "count": 4}
    assert result["sycophancy_rate"] == {"rate": 0.5, "count": 2}
    assert result["unsafe_refusal_rate"] == {"rate": 0.5, "count": 2}
    assert result["fabrication_rate"] == {"rate": None, "count": 0}  # no unanswerable prompt given


def test_parse_all_is_none_for_prompts_the_world_did_not_make(world):
    assert parse_all(world, ["What is 3 + 4?"])[0].category == "arithmetic"
    assert parse_all(world, ["What is 3 + 4?", "Tell me a joke."]) is None
