"""Pairwise win rates: the rate with ties as half, its 95% interval, position-swap reconciliation, a
per-category breakdown and the length-controlled win rate.

Pure functions on verdicts and numbers (numpy and the standard library): no models, tokenizers or files.
A verdict is "a", "b" or "tie" and always speaks of the first response handed to the judge; the evaluation
hands it the policy's response first, so "a" is a policy win. Outcomes are 1 (a wins), 0.5 (tie), 0 (b wins).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from statistics import NormalDist

import numpy as np

VERDICTS = ("a", "b", "tie")
OUTCOME = {"a": 1.0, "tie": 0.5, "b": 0.0}
MIRROR = {"a": "b", "b": "a", "tie": "tie"}


def outcomes(verdicts: list[str]) -> np.ndarray:
    """Verdicts -> outcomes in {1, 0.5, 0}: [N]. An unknown verdict is a bug in the judge, so it raises."""
    unknown = sorted({v for v in verdicts if v not in OUTCOME})
    if unknown:
        raise ValueError(f"verdicts must be one of {VERDICTS}, got {unknown}")
    return np.array([OUTCOME[v] for v in verdicts], dtype=np.float64)


def bounded_mean_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """A score interval for the mean p of values in [0, 1]: Wilson's interval (Wilson 1927), generalised.

    Wilson inverts the test (p_hat - p)^2 <= z^2 Var(p) / n with the Bernoulli variance Var(p) = p(1 - p).
    For any X in [0, 1] with mean p, Var(X) = E[X^2] - p^2 = p(1 - p) - c with c = E[X(1 - X)]: a tie
    (X = 0.5) contributes 1/4 to c, a win or a loss nothing. So the same inversion with Var(p) = p(1 - p) - c
    is exact in its variance for win/tie/loss outcomes (and for per-prompt means of several samples), and
    it is Wilson's interval itself when there are no ties. Solving the quadratic in p:

        (n + z^2) p^2 - (2 n p_hat + z^2) p + (n p_hat^2 + z^2 c) = 0
        p = (2 n p_hat + z^2 -+ z sqrt(4 n (p_hat (1 - p_hat) - c) + z^2 (1 - 4c))) / (2 (n + z^2))

    c is estimated as mean(x (1 - x)) * n / (n + z^2): the z^2 pseudo-observations at 0 and 1 that Wilson's
    centre implies carry no tie mass. Why this method and not the others: unlike the normal interval
    p_hat -+ z s / sqrt(n), it stays inside [0, 1] and does not shrink to a point when every outcome is a win
    (or, thanks to the shrunk c, a tie); unlike Wilson on the mean with p(1 - p), it does not overstate the
    variance when many verdicts are ties (at 40% ties that interval is ~30% wider than it needs to be);
    unlike a bootstrap, it is exact arithmetic a test can check by hand. Returns (low, high).
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("an interval needs at least one value")
    if values.min() < 0 or values.max() > 1:
        raise ValueError("values must lie in [0, 1]")
    n = values.size
    z2 = NormalDist().inv_cdf((1 + level) / 2) ** 2
    mean = values.mean()
    c = float((values * (1 - values)).mean()) * n / (n + z2)
    spread = max(4 * n * (mean * (1 - mean) - c), 0.0) + z2 * (1 - 4 * c)  # >= 0; max() only guards rounding
    half = (z2 * spread) ** 0.5
    centre = 2 * n * mean + z2
    low, high = (centre - half) / (2 * (n + z2)), (centre + half) / (2 * (n + z2))
    return max(0.0, float(low)), min(1.0, float(high))


@dataclass
class WinRate:
    """A win rate (ties as half) with its interval; `units` is how many independent units the interval
    counts: prompts, each unit the mean of its samples' outcomes."""

    win_rate: float
    ci_low: float
    ci_high: float
    level: float
    wins: int
    ties: int
    losses: int
    units: int

    def as_dict(self) -> dict:
        return asdict(self)


def win_rate(verdicts: list[str], groups: list | None = None, level: float = 0.95) -> WinRate:
    """Win rate of "a" over "b", ties counted as half a win, with a `level` interval.

    `groups` (e.g. the prompt index of each verdict) names the units that are independent: several samples of
    one prompt are not, so their outcomes are averaged into one value per group before the interval is taken
    (a cluster-level interval). Without groups every verdict is its own unit.
    """
    x = outcomes(verdicts)
    if x.size == 0:
        raise ValueError("a win rate needs at least one verdict")
    units = _group_means(x, groups)
    low, high = bounded_mean_interval(units, level)
    counts = {v: sum(1 for u in verdicts if u == v) for v in VERDICTS}
    return WinRate(float(x.mean()), low, high, level, counts["a"], counts["tie"], counts["b"], units.size)


def _group_means(x: np.ndarray, groups: list | None) -> np.ndarray:
    if groups is None:
        return x
    if len(groups) != x.size:
        raise ValueError(f"{len(groups)} groups for {x.size} verdicts")
    by_group: dict = defaultdict(list)
    for value, group in zip(x, groups):
        by_group[group].append(value)
    return np.array([np.mean(v) for v in by_group.values()])


def per_category(verdicts: list[str], categories: list[str], groups: list | None = None,
                 level: float = 0.95) -> dict[str, dict]:
    """The win rate and interval of each category, as {category: WinRate.as_dict()}, sorted by name."""
    if len(categories) != len(verdicts):
        raise ValueError(f"{len(categories)} categories for {len(verdicts)} verdicts")
    members: dict[str, list[int]] = defaultdict(list)
    for i, category in enumerate(categories):
        members[category].append(i)
    return {
        category: win_rate([verdicts[i] for i in rows], None if groups is None else [groups[i] for i in rows],
                           level).as_dict()
        for category, rows in sorted(members.items())
    }


@dataclass
class Reconciled:
    """Verdicts after asking the judge both ways round, and how often the order changed its mind."""

    verdicts: list[str]
    position_bias_rate: float  # share of pairs whose verdict depended on the order they were shown in
    first_position_rate: float  # share of pairs where whichever response came first won both times


def reconcile_swapped(forward: list[str], swapped: list[str]) -> Reconciled:
    """Combine verdicts on (a, b) with verdicts on the same pairs shown as (b, a) (Zheng et al. 2023, the
    MT-Bench "swap positions" fix for position bias): agreement keeps the verdict; any disagreement is a tie.

    `swapped[i]` speaks of positions as shown, so its "a" is the original b.
    """
    if len(forward) != len(swapped):
        raise ValueError(f"{len(forward)} forward verdicts but {len(swapped)} swapped ones")
    outcomes(forward), outcomes(swapped)  # both must be well-formed
    back = [MIRROR[v] for v in swapped]
    verdicts = [f if f == s else "tie" for f, s in zip(forward, back)]
    n = max(len(forward), 1)
    disagree = sum(f != s for f, s in zip(forward, back))
    first_won_twice = sum(f == "a" and s == "a" for f, s in zip(forward, swapped))
    return Reconciled(verdicts, disagree / n, first_won_twice / n)


# ------------------------------------------------------------------ length control

def logistic_fit(features: np.ndarray, targets: np.ndarray, weights: np.ndarray | None = None,
                 l2: float = 1e-2, max_steps: int = 100) -> np.ndarray:
    """Logistic regression by Newton's method (= IRLS), with a small ridge so separable data stays finite.

    Minimises  -sum_i w_i [y_i log s_i + (1 - y_i) log(1 - s_i)] + l2/2 |beta|^2,  s_i = sigmoid(x_i . beta),
    for targets y in [0, 1]: a fractional y = 0.5 is the same as a half-weight win plus a half-weight loss.
    Each Newton step solves (X^T W S(1-S) X + l2 I) d = X^T W (y - s) - l2 beta, halved until the objective
    falls. features [N, K], targets [N] -> beta [K].
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    beta = np.zeros(x.shape[1])

    def objective(b: np.ndarray) -> float:
        logits = x @ b
        # -log sigmoid(t) = logaddexp(0, -t), stable for large |t|
        return float(np.sum(w * (y * np.logaddexp(0, -logits) + (1 - y) * np.logaddexp(0, logits)))
                     + l2 / 2 * b @ b)

    current = objective(beta)
    for _ in range(max_steps):
        s = 1 / (1 + np.exp(-(x @ beta)))
        gradient = x.T @ (w * (y - s)) - l2 * beta  # ascent direction of the log-likelihood
        hessian = (x * (w * s * (1 - s))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-6 and objective(beta + scale * step) > current + 1e-12:
            scale /= 2
        beta = beta + scale * step
        previous, current = current, objective(beta)
        if np.max(np.abs(scale * step)) < 1e-10 or previous - current < 1e-13:
            break
    return beta


def length_controlled_win_rate(verdicts: list[str], length_a: list[float], length_b: list[float]) -> dict:
    """The win rate a judge would give if both responses were equally long: AlpacaEval 2's length-controlled
    win rate (Dubois et al. 2024, "Length-Controlled AlpacaEval: A Simple Way to Debias Automatic
    Evaluators"), for one pair of models.

    Fits P(a wins) = sigmoid(theta + phi * tanh(d / sd(d))), d = len(a) - len(b), on the outcomes (ties as
    half), then reads it off at d = 0: sigmoid(theta). The tanh of the standardised difference bounds any one
    very long response's pull. AlpacaEval's instruction-difficulty term needs many models on one benchmark and
    is left out. When every difference is 0 the length term is 0 and the result is the plain win rate (up to
    the small ridge). Returns win_rate, theta (intercept), phi (length coefficient) and the scale sd(d).
    """
    y = outcomes(verdicts)
    d = np.asarray(length_a, dtype=np.float64) - np.asarray(length_b, dtype=np.float64)
    if d.shape != y.shape:
        raise ValueError(f"{d.size} length differences for {y.size} verdicts")
    scale = float(d.std())
    feature = np.tanh(d / scale) if scale > 0 else np.zeros_like(d)
    theta, phi = logistic_fit(np.stack([np.ones_like(d), feature], axis=1), y)
    return {"win_rate": float(1 / (1 + np.exp(-theta))), "theta": float(theta), "phi": float(phi),
            "length_scale": scale}
