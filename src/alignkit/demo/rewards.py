"""The demo world's judge as reward functions. `gold`: its whole score, for RL runs that optimise the true
objective (a ceiling to compare proxy rewards with) and for tests. `verified`: only whether the answer is
right, on prompts that have one, as a verifiable reward (RLVR) checks a final answer against the truth.
Name them in a config as `alignkit.demo.rewards:gold` or `alignkit.demo.rewards:verified`.

Prompts must come from the demo world of seed 0 (`alignkit demo-data` and `alignkit demo` build that one);
any other prompt is an error, since the judge knows only its own world.
"""

from __future__ import annotations

from functools import lru_cache

from alignkit.demo.judge import SCORERS, assistant_reply, gold_score
from alignkit.demo.world import World
from alignkit.errors import AlignkitError


@lru_cache(maxsize=4)
def _world(seed: int) -> World:
    return World(seed)


def gold(prompts: list[str], completions: list[str], **_) -> list[float]:
    """The gold judge's score in [0, 1] of each completion to its prompt (demo world, seed 0)."""
    world = _world(0)
    scores = []
    for prompt, completion in zip(prompts, completions):
        try:
            scores.append(gold_score(world, prompt, completion))
        except ValueError as err:
            raise _unknown_prompt("gold", prompt, err) from None
    return scores


def verified(prompts: list[str], completions: list[str], **_) -> list[float | None]:
    """1.0 where the reply gives the prompt's right answer plainly (no hedge, no second value next to it),
    else 0.0; None (masked) for prompts without one answer (unsafe, unanswerable, benign requests).

    The built-in `exact_match` compares a text answer with the whole reply, so "The capital of Febril is
    Marn." never matches "Marn": this reads the answer out of a sentence as the gold judge does, and ignores
    style."""
    world = _world(0)
    rewards: list[float | None] = []
    for prompt, completion in zip(prompts, completions):
        try:
            task = world.parse(prompt)
        except ValueError as err:
            raise _unknown_prompt("verified", prompt, err) from None
        reply = assistant_reply(completion)
        rewards.append(None if task.answer is None else
                       float(bool(reply) and SCORERS[task.category](world, task, reply) == 1.0))
    return rewards


def _unknown_prompt(name: str, prompt: str, err: ValueError) -> AlignkitError:
    return AlignkitError(f"reward 'alignkit.demo.rewards:{name}' got a prompt the demo world did not make "
                         f"({prompt[:60]!r}): {err}")
