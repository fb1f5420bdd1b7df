"""Pairwise judges and the position swap.

A judge is a function (prompt, a, b) -> "a" | "b" | "tie" plus one fact about it: whether it is position-free
(judging (b, a) always mirrors judging (a, b)). A judge that may not be (an LLM judge reading two answers in
order) is asked both ways round and its verdicts are reconciled (winrate.reconcile_swapped). The gold judge and
a reward model score each response alone, so they are position-free and asked once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from alignkit.eval.winrate import reconcile_swapped


@dataclass
class Judge:
    name: str
    compare: Callable[[str, str, str], str]  # (prompt, a, b) -> "a" | "b" | "tie"
    position_free: bool


@dataclass
class Judged:
    verdicts: list[str]  # reconciled when swapped
    swapped: bool
    forward: list[str]  # the verdicts on (a, b) as shown
    backward: list[str] | None  # the verdicts on (b, a) as shown (its "a" is the original b), when swapped
    position_bias_rate: float | None
    first_position_rate: float | None


def judge_pairs(judge: Judge, prompts: list[str], first: list[str], second: list[str]) -> Judged:
    """Judge (prompt, first[i], second[i]) for every i; a judge that is not position-free is also asked
    (prompt, second[i], first[i]) and a verdict stands only if both orders agree."""
    forward = [judge.compare(p, a, b) for p, a, b in zip(prompts, first, second, strict=True)]
    if judge.position_free:
        return Judged(forward, False, forward, None, None, None)
    backward = [judge.compare(p, b, a) for p, a, b in zip(prompts, first, second)]
    reconciled = reconcile_swapped(forward, backward)
    return Judged(reconciled.verdicts, True, forward, backward, reconciled.position_bias_rate,
                  reconciled.first_position_rate)


def verdict_from_scores(score_a: float, score_b: float, tie_margin: float = 0.0) -> str:
    """'a' or 'b' for the higher score, 'tie' within tie_margin."""
    if abs(score_a - score_b) <= tie_margin:
        return "tie"
    return "a" if score_a > score_b else "b"


def gold_judge(world) -> Judge:
    """The demo world's gold judge: each response scored alone in [0, 1], ties within its TIE_MARGIN."""
    from alignkit.demo.judge import gold_verdict

    return Judge("gold", lambda prompt, a, b: gold_verdict(world, prompt, a, b).lower(), position_free=True)


def score_table_judge(name: str, scores: dict[tuple[str, str], float | None], tie_margin: float = 0.0) -> Judge:
    """A judge from precomputed scores of (prompt, response): a reward model scores every response in
    batches first, then comparing two is a lookup. A None score (an empty response) loses to any score."""

    def compare(prompt: str, a: str, b: str) -> str:
        score_a, score_b = scores[prompt, a], scores[prompt, b]
        if score_a is None or score_b is None:
            return "tie" if score_a is score_b else ("b" if score_a is None else "a")
        return verdict_from_scores(score_a, score_b, tie_margin)

    return Judge(name, compare, position_free=True)


def reward_model_scores(model_path: str, prompts: list[str], responses: list[str], max_length: int = 1024,
                        batch_size: int = 16) -> list[float | None]:
    """The reward model's score of each (prompt, response), via `alignkit score`'s own scoring. An empty
    response cannot be rendered as a row, so it gets None (the rewards/ convention: masked out, counted)."""
    from alignkit.data.io import Rows
    from alignkit.score import score_rows

    kept = [i for i, r in enumerate(responses) if r.strip()]
    scores: list[float | None] = [None] * len(responses)
    if kept:
        rows = Rows(f"responses scored by {model_path}",
                    [{"prompt": prompts[i], "completion": responses[i]} for i in kept],
                    [f"response {i}" for i in kept])
        for i, score in zip(kept, score_rows(model_path, rows, max_length, batch_size).tolist()):
            scores[i] = score
    return scores
