"""Label quality of a project: gold scores per annotator, flags, and agreement between annotators.

Every task reduces to the same unit for agreement: one pair of responses (i < j) of one item, on which an
annotator's label votes "i", "j", "tie" or "both_bad" (a ranking orders the pair, ratings compare it, equal
ratings are a tie). Gold scores use the same reduction: the share of gold pairs an annotator orders as the
gold answer does (for pairwise gold, the exact choice).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from alignkit.annotate.agreement import cohen_kappa, fleiss_kappa, krippendorff_alpha
from alignkit.annotate.db import Assignment, Item, Label, Member, Project, User


@dataclass(frozen=True)
class Labelled:
    """One label with what it belongs to."""

    user_id: int
    username: str
    item_id: int
    value: dict


def load_labels(session: Session, project_id: int) -> list[Labelled]:
    query = (select(Assignment.user_id, User.username, Assignment.item_id, Label.value)
             .join(Label, Label.assignment_id == Assignment.id).join(User, User.id == Assignment.user_id)
             .where(Assignment.project_id == project_id).order_by(Label.id))
    return [Labelled(*row) for row in session.execute(query)]


def pair_vote(value: dict, i: int, j: int) -> str:
    """What one label says about responses i and j: "i", "j", "tie" or "both_bad" (as strings of indices)."""
    if "choice" in value:
        choice = value["choice"]
        return str(choice) if isinstance(choice, int) else choice
    if "ranking" in value:
        ranking = value["ranking"]
        return str(i) if ranking.index(i) < ranking.index(j) else str(j)
    ratings = value["ratings"]
    if ratings[i] == ratings[j]:
        return "tie"
    return str(i) if ratings[i] > ratings[j] else str(j)


def pairs_of(k: int) -> list[tuple[int, int]]:
    return list(itertools.combinations(range(k), 2))


def gold_score(value: dict, gold) -> float:
    """Share of the gold answer a label matches: the pairwise choice, or the gold order's pairs (a tie
    counts half)."""
    if "choice" in value:
        return float(value["choice"] == gold)
    better_first = list(gold)
    scores = []
    for rank, better in enumerate(better_first):
        for worse in better_first[rank + 1:]:
            vote = pair_vote(value, min(better, worse), max(better, worse))
            scores.append(1.0 if vote == str(better) else 0.5 if vote == "tie" else 0.0)
    return sum(scores) / len(scores)


@dataclass
class AnnotatorReport:
    user_id: int
    username: str
    assigned: int = 0
    done: int = 0
    skipped: int = 0
    gold_labels: int = 0
    gold_score: float = math.nan
    flagged: bool = False


def annotator_reports(session: Session, project: Project) -> list[AnnotatorReport]:
    """Progress and gold score of every member; flagged when the gold score is below the project threshold."""
    reports = {
        user_id: AnnotatorReport(user_id, username)
        for user_id, username in session.execute(
            select(User.id, User.username).join(Member, Member.user_id == User.id)
            .where(Member.project_id == project.id).order_by(User.username))
    }
    for user_id, status in session.execute(
        select(Assignment.user_id, Assignment.status).where(Assignment.project_id == project.id)
    ):
        report = reports.get(user_id)
        if report is not None:
            report.assigned += 1
            report.done += status == "done"
            report.skipped += status == "skipped"
    gold = dict(session.execute(select(Item.id, Item.gold).where(Item.project_id == project.id,
                                                                 Item.gold.is_not(None))).all())
    scores = defaultdict(list)
    for label in load_labels(session, project.id):
        if gold.get(label.item_id) is not None:
            scores[label.user_id].append(gold_score(label.value, gold[label.item_id]))
    for user_id, values in scores.items():
        if user_id in reports:
            report = reports[user_id]
            report.gold_labels, report.gold_score = len(values), sum(values) / len(values)
            report.flagged = report.gold_score < project.gold_threshold
    return list(reports.values())


def unit_votes(labels: list[Labelled], sizes: dict[int, int]) -> dict[tuple[int, int, int], dict[str, str]]:
    """{(item, i, j): {annotator: vote}} over every response pair of every labelled item."""
    units: dict[tuple[int, int, int], dict[str, str]] = defaultdict(dict)
    for label in labels:
        for i, j in pairs_of(sizes[label.item_id]):
            units[(label.item_id, i, j)][label.username] = pair_vote(label.value, i, j)
    return units


def project_agreement(session: Session, project: Project) -> dict:
    """Cohen's kappa per annotator pair, Fleiss' kappa and Krippendorff's alpha over the project's pair votes.

    Fleiss' kappa needs the same number of raters per unit: it uses the units with the most common count
    (normally the project's m) and says how many. Ratings also get Krippendorff's alpha on the 1-7 values
    (interval distance), per item and response.
    """
    sizes = {item_id: len(responses) for item_id, responses in
             session.execute(select(Item.id, Item.responses).where(Item.project_id == project.id))}
    labels = load_labels(session, project.id)
    units = unit_votes(labels, sizes)
    annotators = sorted({label.username for label in labels})
    cohen = []
    for first, second in itertools.combinations(annotators, 2):
        shared = [votes for votes in units.values() if first in votes and second in votes]
        if shared:
            cohen.append({"pair": (first, second), "units": len(shared),
                          "kappa": cohen_kappa([v[first] for v in shared], [v[second] for v in shared])})
    counts = Counter(len(votes) for votes in units.values() if len(votes) >= 2)
    fleiss, fleiss_units = math.nan, 0
    if counts:
        raters = max(counts, key=lambda n: (counts[n], n))
        table_units = [votes for votes in units.values() if len(votes) == raters]
        categories = sorted({vote for votes in table_units for vote in votes.values()})
        table = [[Counter(votes.values())[c] for c in categories] for votes in table_units]
        fleiss, fleiss_units = fleiss_kappa(table), len(table)
    result = {
        "units": len(units),
        "labels": len(labels),
        "cohen": cohen,
        "fleiss": fleiss,
        "fleiss_units": fleiss_units,
        "alpha": krippendorff_alpha([list(votes.values()) for votes in units.values()]),
    }
    if project.task == "rating":
        per_response = defaultdict(list)
        for label in labels:
            for index, rating in enumerate(label.value["ratings"]):
                per_response[(label.item_id, index)].append(rating)
        result["alpha_ratings"] = krippendorff_alpha(list(per_response.values()), "interval")
    return result
