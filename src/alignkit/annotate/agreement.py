"""Inter-annotator agreement and vote aggregation. Pure Python: lists and counts in, numbers out.

Chance-corrected agreement is (observed - expected) / (1 - expected): 1 is perfect agreement, 0 is what
annotators guessing with the same label frequencies would reach, below 0 is systematic disagreement. A value
is NaN when it is undefined (one category only, or too few shared labels).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Sequence


def cohen_kappa(first: Sequence[Hashable], second: Sequence[Hashable]) -> float:
    """Cohen's kappa of two annotators' labels on the same units (Cohen 1960).

    p_o = share of units they label alike; p_e = sum over categories k of p_first(k) * p_second(k);
    kappa = (p_o - p_e) / (1 - p_e).
    """
    if len(first) != len(second):
        raise ValueError(f"cohen_kappa needs labels of the same units, got {len(first)} and {len(second)}")
    n = len(first)
    if n == 0:
        return math.nan
    observed = sum(a == b for a, b in zip(first, second)) / n
    first_counts, second_counts = Counter(first), Counter(second)
    expected = sum(first_counts[k] * second_counts[k] for k in first_counts) / (n * n)
    return math.nan if expected == 1 else (observed - expected) / (1 - expected)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float:
    """Fleiss' kappa (Fleiss 1971) from a table: counts[i][j] = raters putting unit i in category j.

    Every unit needs the same number of raters n. P_i = (sum_j n_ij^2 - n) / (n (n - 1)) is the agreeing share
    of rater pairs on unit i; p_j = sum_i n_ij / (N n); kappa = (mean P_i - sum_j p_j^2) / (1 - sum_j p_j^2).
    """
    if not counts:
        return math.nan
    raters = {sum(row) for row in counts}
    if len(raters) != 1:
        raise ValueError(f"fleiss_kappa needs the same number of raters on every unit, got {sorted(raters)}")
    n = raters.pop()
    if n < 2:
        return math.nan
    units = len(counts)
    agreement = sum((sum(c * c for c in row) - n) / (n * (n - 1)) for row in counts) / units
    shares = [sum(row[j] for row in counts) / (units * n) for j in range(len(counts[0]))]
    expected = sum(p * p for p in shares)
    return math.nan if expected == 1 else (agreement - expected) / (1 - expected)


def nominal(a, b) -> float:
    return 0.0 if a == b else 1.0


def interval(a, b) -> float:
    return float(a - b) ** 2


DISTANCES = {"nominal": nominal, "interval": interval}


def krippendorff_alpha(units: Sequence[Sequence], distance: str = "nominal") -> float:
    """Krippendorff's alpha (Krippendorff 2004, ch. 11); any number of annotators, missing labels allowed.

    `units` holds, per unit, the values it received (missing ones simply absent). Units with fewer than two
    values are not pairable and drop out. With n pairable values in all and m_u in unit u:
    D_o = (1/n) sum_u 1/(m_u - 1) sum_{i != j in u} delta(v_i, v_j)
    D_e = 1/(n (n - 1)) sum_{i != j over all pairable values} delta(v_i, v_j)
    alpha = 1 - D_o / D_e. delta is 0/1 for nominal data and the squared difference for interval data.
    """
    delta = DISTANCES[distance]
    pairable = [list(values) for values in units if len(values) >= 2]
    n = sum(len(values) for values in pairable)
    if n < 2:
        return math.nan
    observed = sum(
        sum(delta(a, b) for i, a in enumerate(values) for j, b in enumerate(values) if i != j)
        / (len(values) - 1)
        for values in pairable
    ) / n
    # Expected disagreement from the pooled values: count distinct values to stay O(categories^2).
    pooled = Counter(value for values in pairable for value in values)
    expected = sum(
        count_a * (count_b - (a == b)) * delta(a, b)
        for a, count_a in pooled.items()
        for b, count_b in pooled.items()
    ) / (n * (n - 1))
    if expected == 0:
        return math.nan
    return 1 - observed / expected


def majority(votes: Counter) -> tuple[Hashable | None, list]:
    """The most voted option, or None and the tied options when two or more share the top count."""
    if not votes:
        return None, []
    top = max(votes.values())
    leaders = sorted((option for option, count in votes.items() if count == top), key=str)
    return (leaders[0], []) if len(leaders) == 1 else (None, leaders)
