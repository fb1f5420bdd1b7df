"""Constitutional AI (recipes/cai.py, rewards/constitution.py) without a model: constitution files and their
errors, and both phases on canned backends (objects with `chat(conversations, sampling)`), checked for the
chains, the counts and rows that the sft / reward / dpo data checks accept."""

import json
import random
import re

import pytest

from alignkit.config import load_config
from alignkit.data.io import Rows
from alignkit.data.schema import as_messages, validate_rows
from alignkit.errors import AlignkitError
from alignkit.recipes.cai import critique_and_revise, label_pairs, majority, sft_rows
from alignkit.rewards.constitution import Principle, load_constitution, parse_constitution
from alignkit.rewards.judge import LLMJudge
from alignkit.rewards.judge_backends import RequestStats, Sampling


class Canned:
    """A backend whose answer to each conversation is answer(messages); it records every batched call."""

    name, model = "canned", "canned"

    def __init__(self, answer):
        self.answer, self.calls, self.stats = answer, [], RequestStats()

    def chat(self, conversations, sampling):
        self.calls.append((len(conversations), sampling.seed))
        return [self.answer(messages) for messages in conversations]


def principle(name, comparison="Which response is better?"):
    return Principle(name, f"Critique under {name}.", f"Revise under {name}.", comparison)


# ------------------------------------------------------------------ constitution files

def test_default_constitution_covers_harmless_honest_helpful():
    principles = load_constitution()
    names = [p.name for p in principles]
    assert 8 <= len(principles) <= 12 and len(set(names)) == len(names)
    assert {"no-dangerous-help", "no-fabrication", "correct-false-premise", "admit-not-knowing",
            "answer-the-question", "concise", "no-needless-refusal"} <= set(names)
    for p in principles:
        assert p.critique and p.revision and p.comparison and "\n" not in p.critique


def test_a_json_list_is_read_like_yaml(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"name": "n", "critique": "c", "revision": "r", "comparison": "q"}]))
    assert load_constitution(path) == [Principle("n", "c", "r", "q")]


GOOD = {"name": "a", "critique": "c", "revision": "r", "comparison": "q"}


@pytest.mark.parametrize("content, message", [
    ({"principles": [GOOD, {"name": "b", "critique": "c", "comparison": "q"}]},
     r"c.yaml: principle 1 \('b'\): the field 'revision' is missing"),
    ({"principles": [{**GOOD, "critque": "typo"}]}, r"principle 0 \('a'\): unknown field 'critque'"),
    ({"principles": [{**GOOD, "comparison": "  "}]}, r"principle 0 \('a'\): 'comparison' must be non-empty"),
    ({"principles": [GOOD, GOOD]}, r"principles 0 and 1 are both named 'a'"),
    ({"principles": [GOOD, "be nice"]}, r"principle 1: expected a mapping"),
    ({"principles": []}, r"expected a non-empty list of principles"),
    ({"rules": [GOOD]}, r"one top-level key, `principles`"),
])
def test_constitution_errors_name_file_principle_and_field(tmp_path, content, message):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(AlignkitError, match=message):
        load_constitution(path)


def test_unreadable_constitution_files(tmp_path):
    with pytest.raises(AlignkitError, match="does not exist"):
        load_constitution(tmp_path / "missing.yaml")
    with pytest.raises(AlignkitError, match=r"bad.yaml at line 3, column 4: not valid YAML"):
        parse_constitution("principles:\n  - name: a\n   critique: b\n", "bad.yaml")


def test_config_checks(tmp_path):
    base = ["name=c", "model.path=m", "data.prompts=p.jsonl"]
    assert load_config("cai", None, base).cai.phase == "both"
    with pytest.raises(AlignkitError, match="sampling.temperature > 0"):
        load_config("cai", None, [*base, "sampling.temperature=0"])
    greedy = load_config("cai", None, [*base, "sampling.temperature=0", "cai.phase=sft"])
    assert greedy.sampling.temperature == 0
    with pytest.raises(AlignkitError, match="needs `model`"):
        load_config("cai", None, [*base, "judge.url=http://127.0.0.1:1/v1"])
    with pytest.raises(AlignkitError, match="did you mean 'rounds'"):
        load_config("cai", None, [*base, "cai.round=2"])


# ------------------------------------------------------------------ supervised phase: critique -> revise

PROMPTS = ["Q-ok", [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q-list"}],
           "Q-empty", "Q-fail"]


def critic_answer(messages):
    """Critiques name their principle; a revision rewrites the answer under review (messages[-4]); the
    Q-empty prompt only ever gets blank revisions, and Q-fail's critique requests fail."""
    question, request = messages[-5 if messages[-1]["content"].startswith("Revise") else -3], messages[-1]
    name = request["content"].split(" under ")[1].rstrip(".")
    if request["content"].startswith("Critique"):
        return None if question["content"] == "Q-fail" else f"critique ({name})"
    assert messages[-2]["content"] == f"critique ({name})"  # the revision sees its own critique
    return "  \n" if question["content"] == "Q-empty" else f"[{name}] {messages[-4]['content']}"


def test_chains_revise_round_after_round_and_count_what_was_not_used():
    constitution = [principle("p1"), principle("p2"), principle("p3")]
    policy = Canned(lambda messages: f" answer to {messages[-1]['content']} ")
    critic = Canned(critic_answer)
    prompts = [as_messages(p, "user") for p in PROMPTS]
    chains, counts = critique_and_revise(prompts, policy, critic, constitution, 2, random.Random(0),
                                         Sampling(seed=5), Sampling(seed=9))

    # one batched call for the answers; per round one for the critiques, one for the revisions still owed
    assert policy.calls == [(4, 5)]
    assert critic.calls == [(4, 9), (3, 9), (4, 10), (3, 10)]
    ok, listed, empty, failed = chains
    first, second = (step["principle"] for step in ok["rounds"])
    assert ok["initial"] == "answer to Q-ok"  # stripped
    assert ok["rounds"][0] == {"principle": first, "critique": f"critique ({first})",
                               "revision": f"[{first}] answer to Q-ok", "used": True}
    assert ok["final"] == f"[{second}] [{first}] answer to Q-ok" and ok["revised"]
    assert listed["final"].endswith("answer to Q-list")
    # blank revisions keep the answer before them; a failed critique skips its revision
    assert empty["final"] == "answer to Q-empty" and not empty["revised"]
    assert [step["used"] for step in empty["rounds"]] == [False, False]
    assert failed["final"] == "answer to Q-fail" and failed["rounds"][0]["critique"] == ""
    assert {key: counts[key] for key in ("empty_initial", "empty_critiques", "empty_revisions",
                                         "failed_requests", "unrevised")} == {
        "empty_initial": 0, "empty_critiques": 0, "empty_revisions": 2, "failed_requests": 2, "unrevised": 2}
    assert sum(counts["principles_drawn"].values()) == 8

    # the draws are the seeded RNG's: the same seed draws the same principles
    again, _ = critique_and_revise(prompts, policy, critic, constitution, 2, random.Random(0), Sampling(),
                                   Sampling())
    assert [[s["principle"] for s in c["rounds"]] for c in again] == \
           [[s["principle"] for s in c["rounds"]] for c in chains]

    rows = sft_rows(PROMPTS, chains)  # unrevised prompts are left out (counted above)
    assert [row["prompt"] for row in rows] == PROMPTS[:2]
    assert rows[0]["completion"] == ok["final"]
    assert rows[1]["completion"] == [{"role": "assistant", "content": listed["final"]}]  # the prompt's style
    assert validate_rows(Rows("sft.jsonl", rows, ["r0", "r1"]), ["sft"]) == "sft"


# ------------------------------------------------------------------ AI-feedback phase: judged pairs

ANSWERS = {"Q-short": ["Yes.", "Yes, certainly, here is a much longer answer."],
           "Q-flaky": ["same", "same", "Two.", "It is two, of course."],  # identical once, then different
           "Q-same": ["same"], "Q-empty": ["", "x"],
           "Q-list": ["A long answer that goes on and on.", "Short."]}


def pair_policy():
    drawn = {}

    def answer(messages):
        prompt = messages[-1]["content"]
        drawn[prompt] = drawn.get(prompt, -1) + 1
        return ANSWERS[prompt][drawn[prompt] % len(ANSWERS[prompt])]

    return Canned(answer)


def shorter_wins(messages):
    """A judge that prefers the shorter response, and never answers in format under the 'broken' rubric."""
    if "BROKEN" in messages[0]["content"]:
        return "I cannot decide."
    a, b = (re.search(f"<response_{s}>\n(.*?)\n</response_{s}>", messages[1]["content"], re.S).group(1)
            for s in "ab")
    return "Fine.\nVerdict: " + ("A" if len(a) < len(b) else "B" if len(b) < len(a) else "tie")


def test_pairs_are_judged_under_drawn_principles_and_voted():
    prompts = ["Q-short", "Q-flaky", "Q-same", "Q-empty",
               [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q-list"}]]
    constitution = [principle("short"), principle("brief"), principle("broken", "BROKEN")]
    judge = LLMJudge(Canned(shorter_wins), parse_retries=1)
    rows, counts = label_pairs(prompts, [as_messages(p, "user") for p in prompts], pair_policy(), judge,
                               constitution, 3, 2, random.Random(0), Sampling(temperature=1.0))

    assert [row["chosen"] for row in rows] == ["Yes.", "Two.", [{"role": "assistant", "content": "Short."}]]
    assert rows[0]["rejected"] == "Yes, certainly, here is a much longer answer."
    for row in rows:  # every principle judged each pair; the broken one failed and cast no vote
        assert sorted(row["principles"]) == ["brief", "broken", "short"]
        assert row["verdicts"] == [None if name == "broken" else "chosen" for name in row["principles"]]
    assert counts["resampled"] == 3 + 2  # Q-flaky, Q-same, Q-empty; then Q-same and Q-empty again
    assert (counts["skipped_identical"], counts["skipped_empty"], counts["pairs_judged"]) == (1, 1, 3)
    assert counts["judgments"] == 9 and counts["failed_judgments"] == 3 and counts["undecided"] == 0
    assert counts["votes"] == {"first": 4, "second": 2} and counts["position_bias_rate"] == 0.0
    assert judge.counts.unparsed == 6  # the broken principle's two orders of three pairs
    assert validate_rows(Rows("prefs.jsonl", rows, ["r0", "r1", "r2"]), ["preference"]) == "preference"


def test_a_judge_that_always_says_a_decides_nothing():
    """Through the position swap an always-A judge disagrees with itself: every pair is a tie, no row."""
    judge = LLMJudge(Canned(lambda messages: "Verdict: A"))
    rows, counts = label_pairs(["Q-short"], [as_messages("Q-short", "user")], pair_policy(), judge,
                               [principle("p")], 1, 0, random.Random(0), Sampling(temperature=1.0))
    assert rows == [] and counts["undecided"] == 1 and counts["ties"] == 1
    assert counts["position_bias_rate"] == 1.0


def test_a_bare_judge_is_asked_the_pair_alone():
    """judge.bare (a judge trained on judge-sft chats): one user turn holding the pair, no principle or system
    text, and its verdicts still make the rows."""
    asked = []

    def trained(messages):
        asked.append(messages)
        a, b = (re.search(f"<response_{s}>\n(.*?)\n</response_{s}>", messages[0]["content"], re.S).group(1)
                for s in "ab")
        return "Verdict: " + ("A" if len(a) < len(b) else "B")

    judge = LLMJudge(Canned(trained), bare=True)
    rows, counts = label_pairs(["Q-short"], [as_messages("Q-short", "user")], pair_policy(), judge,
                               [principle("p", "UNSEEN")], 1, 0, random.Random(0), Sampling(temperature=1.0))
    assert [m["role"] for messages in asked for m in messages] == ["user", "user"]
    assert not any("UNSEEN" in messages[0]["content"] for messages in asked)
    assert [row["chosen"] for row in rows] == ["Yes."] and counts["undecided"] == 0


@pytest.mark.parametrize("verdicts, winner", [
    (["a"], "a"), (["a", "b", "b"], "b"), (["a", "tie", None], "a"), (["a", "b"], None),
    (["tie", None], None), ([], None),
])
def test_majority(verdicts, winner):
    assert majority(verdicts) == winner


# ------------------------------------------------------------------ refusals before any model loads; pipeline

def test_a_finished_run_is_not_overwritten_and_principles_must_suffice(tmp_path):
    from alignkit.recipes.cai import main

    base = ["name=c", f"output_dir={tmp_path}", "model.path=unused", "data.prompts=unused.jsonl"]
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "summary.json").write_text("{}")
    with pytest.raises(AlignkitError, match="already holds a finished cai run"):
        main(load_config("cai", None, base))
    with pytest.raises(AlignkitError, match="principles_per_pair=11, but the constitution has only 10"):
        main(load_config("cai", None, [*base, "name=d", "cai.principles_per_pair=11"]))


def test_a_cai_stage_outputs_its_run_folder_for_later_stages(tmp_path):
    import yaml

    from alignkit.pipeline import is_complete, load_pipeline, output_of, resolve

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "stages": [
        {"name": "cai", "recipe": "cai", "overrides": {"model.path": "m", "data.prompts": "p.jsonl"}},
        {"name": "sl", "recipe": "sft", "overrides": {"model.path": "m", "data.train": "{cai}/sft.jsonl"}}]}))
    stage = load_pipeline(path).stages[0]
    folder = tmp_path / "runs" / "cai"
    assert output_of(stage, folder) == folder and not is_complete(stage, folder)
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text("{}")  # written last by a cai run
    assert is_complete(stage, folder)
    assert resolve("{cai}/sft.jsonl", {"cai": folder, "cai:run": folder}) == f"{folder}/sft.jsonl"
