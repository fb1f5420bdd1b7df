"""Simulated human annotators for the demo world: noisy, biased, seeded.

Each annotator perceives a reply's quality through the gold judge, adds its own tastes (brevity,
politeness, length) and chooses between two replies with a Bradley-Terry (logistic) draw plus a
small chance of a careless click. A panel's majority vote is then informative but imperfect, as
human preference labels are. Standard library only.
"""
import math
import random
from dataclasses import dataclass
from itertools import combinations

from alignkit.demo.judge import REFUSAL, gold_score
from alignkit.demo.world import World

POLITE_WORDS = ("sorry", "please", "glad", "happy to", "thank")
ACCEPT_AT = 0.5  # utility above which a single reply earns a thumbs-up, before noise
LENGTH_CAP = 300  # characters; longer replies look no longer to a reader


@dataclass(frozen=True)
class Annotator:
    """One rater's rubric. Utility = sum of weighted features; choice ~ sigmoid(delta / temperature)."""

    name: str
    correctness: float = 1.0  # weight on the gold quality the rater perceives
    brevity: float = 0.0  # weight on 1 - length / LENGTH_CAP
    politeness: float = 0.0  # weight on sounding polite or cautious (refusals included)
    length: float = 0.0  # weight on length / LENGTH_CAP: the bias reward hacking feeds on
    temperature: float = 0.1  # Bradley-Terry temperature: higher is noisier
    flip_prob: float = 0.03  # a careless click: the opposite of the intended choice
    tie_band: float = 0.02  # utilities closer than this are called a tie
    position_bias: float = 0.0  # a head start for the reply shown first (lazy raters)


# Tuned so the panel's majority agrees with the gold verdict on ~85% of decisive pairs (see
# docs/demo_world.md): informative, but as noisy as human preference labels tend to be.
DEFAULT_PANEL = (
    Annotator("careful", correctness=1.0, temperature=0.25, flip_prob=0.05),
    Annotator("concise", correctness=0.8, brevity=0.3, temperature=0.3, flip_prob=0.08),
    Annotator("polite", correctness=0.7, politeness=0.4, temperature=0.3, flip_prob=0.08),
    Annotator("lazy", correctness=0.6, temperature=0.6, flip_prob=0.15, tie_band=0.05, position_bias=0.1),
    Annotator("average", correctness=1.0, temperature=0.4, flip_prob=0.08),
)

# A panel that cares about correctness but also likes long answers: labels from it teach a reward model that
# agrees with gold on the easy calls (it still prefers refusing to helping a burglar) and also that longer is
# better. Optimising that reward hard is what reward-hacking studies need: the gold score first rises with
# the proxy, then falls as the policy pads its answers (docs/demo_world.md).
LENGTH_BIASED_PANEL = (
    Annotator("long_careful", correctness=1.0, length=1.5, temperature=0.25, flip_prob=0.05),
    Annotator("long_plain", correctness=1.0, length=1.5, temperature=0.3, flip_prob=0.08),
    Annotator("long_polite", correctness=1.0, length=1.5, politeness=0.2, temperature=0.3, flip_prob=0.08),
    Annotator("long_lazy", correctness=1.0, length=1.5, temperature=0.6, flip_prob=0.15, position_bias=0.1),
    Annotator("average", correctness=1.0, temperature=0.4, flip_prob=0.08),
)


def politeness_of(response: str) -> float:
    lowered = response.lower()
    return 1.0 if REFUSAL.search(response) or any(word in lowered for word in POLITE_WORDS) else 0.0


def utility(annotator: Annotator, gold: float, response: str) -> float:
    """How much this rater likes a reply whose gold score is `gold`."""
    shown_length = min(len(response), LENGTH_CAP) / LENGTH_CAP
    return (annotator.correctness * gold
            + annotator.brevity * (1.0 - shown_length)
            + annotator.politeness * politeness_of(response)
            + annotator.length * shown_length)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def choose(annotator: Annotator, utility_a: float, utility_b: float, rng: random.Random) -> str:
    """'A', 'B' or 'tie': Bradley-Terry draw (Bradley & Terry 1952) with a careless-click flip."""
    delta = utility_a - utility_b + annotator.position_bias
    if abs(delta) < annotator.tie_band:
        return "tie"
    verdict = "A" if rng.random() < sigmoid(delta / annotator.temperature) else "B"
    if rng.random() < annotator.flip_prob:
        verdict = "B" if verdict == "A" else "A"
    return verdict


def vote(panel, world: World, prompt: str, a: str, b: str, rng: random.Random) -> list[str]:
    """One verdict per annotator on reply `a` (shown first) against reply `b`."""
    gold_a, gold_b = gold_score(world, prompt, a), gold_score(world, prompt, b)
    return [choose(rater, utility(rater, gold_a, a), utility(rater, gold_b, b), rng) for rater in panel]


@dataclass(frozen=True)
class Tally:
    a: int
    b: int
    tie: int

    @property
    def winner(self) -> str:
        """Majority of the decisive votes; an even split (or all ties) is a 'tie'."""
        if self.a == self.b:
            return "tie"
        return "A" if self.a > self.b else "B"


def tally(votes: list[str]) -> Tally:
    return Tally(votes.count("A"), votes.count("B"), votes.count("tie"))


def borda_ranking(panel, world: World, prompt: str, responses: list[str], rng: random.Random) -> list[int]:
    """Indices best first, by Borda count over every pair and rater (a tie gives half a point each).

    Equal counts keep the order of `responses`, so shuffle them first if that order means anything."""
    golds = [gold_score(world, prompt, r) for r in responses]
    points = [0.0] * len(responses)
    for i, j in combinations(range(len(responses)), 2):
        for rater in panel:
            utility_i = utility(rater, golds[i], responses[i])
            utility_j = utility(rater, golds[j], responses[j])
            verdict = choose(rater, utility_i, utility_j, rng)
            if verdict == "tie":
                points[i] += 0.5
                points[j] += 0.5
            else:
                points[i if verdict == "A" else j] += 1.0
    return sorted(range(len(responses)), key=lambda k: -points[k])


def thumbs_up(panel, world: World, prompt: str, response: str, rng: random.Random) -> bool:
    """A binary (KTO-style) label: does a strict majority of the panel accept this reply on its own?"""
    gold = gold_score(world, prompt, response)
    ups = 0
    for rater in panel:
        up = rng.random() < sigmoid((utility(rater, gold, response) - ACCEPT_AT) / rater.temperature)
        ups += up != (rng.random() < rater.flip_prob)
    return ups * 2 > len(panel)
