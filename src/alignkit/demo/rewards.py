"""The demo world's gold judge as a reward function, for RL runs that optimise the true objective (a ceiling
to compare proxy rewards with) and for tests. Name it in a config as `alignkit.demo.rewards:gold`.

Prompts must come from the demo world of seed 0 (`alignkit demo-data` and `alignkit demo` build that one);
any other prompt is an error, since the judge knows only its own world.
"""

from __future__ import annotations

from functools import lru_cache

from alignkit.demo.judge import gold_score
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
            raise AlignkitError(f"reward 'alignkit.demo.rewards:gold' got a prompt the demo world did not make "
                                f"({prompt[:60]!r}): {err}") from None
    return scores
