"""Labels out as training rows: preference rows (prompt, chosen, rejected) and ranked rows (prompt, responses,
ranking) that `alignkit reward` and `alignkit dpo` read as they are, each with its votes and agreement.

Aggregation is by majority vote per response pair. A pair whose top vote is shared (a tied vote), or whose
majority says "tie" or "both bad", has no chosen side and makes no preference row; the summary lists them.
Ranked rows order responses by Borda count (a ranking gives K-1 points to its first, 0 to its last; a rating
gives its 1-7 value), and a row whose scores tie anywhere is reported instead of exported. Gold items are the
annotators' test, not data, and are left out. Labels are already in each item's own response order, so the
A/B shuffle of the annotation screen never reaches the export.
"""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import select
from sqlalchemy.orm import Session

from alignkit.annotate.agreement import majority
from alignkit.annotate.db import Item, Project
from alignkit.annotate.quality import annotator_reports, load_labels, pair_vote, pairs_of

KINDS = ("preference", "ranked")


def export_rows(session: Session, project: Project, kind: str = "preference", exclude_flagged: bool = False,
                exclude: tuple[str, ...] = ()) -> tuple[list[dict], dict]:
    """(rows, summary). `exclude_flagged` drops the labels of annotators below the gold threshold."""
    if kind not in KINDS:
        raise ValueError(f"export kind {kind!r} is unknown; kinds are {', '.join(KINDS)}")
    excluded = set(exclude)
    if exclude_flagged:
        excluded |= {report.username for report in annotator_reports(session, project) if report.flagged}
    by_item = defaultdict(list)
    for label in load_labels(session, project.id):
        if label.username not in excluded:
            by_item[label.item_id].append(label.value)
    items = session.scalars(select(Item).where(Item.project_id == project.id, Item.gold.is_(None))
                            .order_by(Item.id))
    rows = []
    summary = {"kind": kind, "items": 0, "rows": 0, "unlabelled": 0, "tied": [], "no_preference": [],
               "excluded_annotators": sorted(excluded)}
    for item in items:
        summary["items"] += 1
        values = by_item.get(item.id, [])
        if not values:
            summary["unlabelled"] += 1
            continue
        to_rows = _preference_rows if kind == "preference" else _ranked_row
        rows += to_rows(item, values, summary)
    summary["rows"] = len(rows)
    return rows, summary


def _preference_rows(item: Item, values: list[dict], summary: dict) -> list[dict]:
    rows = []
    for i, j in pairs_of(len(item.responses)):
        votes = Counter(pair_vote(value, i, j) for value in values)
        winner, tied = majority(votes)
        where = item.external_id if len(item.responses) == 2 else f"{item.external_id} ({i}, {j})"
        if winner is None:
            summary["tied"].append({"id": where, "votes": dict(votes), "tied": tied})
            continue
        if winner in ("tie", "both_bad"):
            summary["no_preference"].append({"id": where, "majority": winner, "votes": dict(votes)})
            continue
        better, worse = (i, j) if winner == str(i) else (j, i)
        rows.append({
            **item.extra,
            "prompt": item.prompt,
            "chosen": item.responses[better],
            "rejected": item.responses[worse],
            "id": item.external_id,
            "votes": {"chosen": votes[str(better)], "rejected": votes[str(worse)], "tie": votes["tie"],
                      "both_bad": votes["both_bad"]},
            "agreement": votes[winner] / len(values),
            "annotators": len(values),
        })
    return rows


def borda(value: dict, k: int) -> list[float]:
    """A label's points per response: K-1 for a ranking's first down to 0 for its last; a rating's value; a
    pairwise choice as a ranking of two (a tie or both bad gives each half a point)."""
    if "ratings" in value:
        return [float(r) for r in value["ratings"]]
    if "ranking" in value:
        points = [0.0] * k
        for position, index in enumerate(value["ranking"]):
            points[index] = float(k - 1 - position)
        return points
    choice = value["choice"]
    return [0.5, 0.5] if not isinstance(choice, int) else [float(choice == 0), float(choice == 1)]


def _ranked_row(item: Item, values: list[dict], summary: dict) -> list[dict]:
    k = len(item.responses)
    scores = [sum(points) for points in zip(*(borda(value, k) for value in values))]
    if len(set(scores)) < k:
        summary["tied"].append({"id": item.external_id, "scores": scores})
        return []
    ranking = sorted(range(k), key=lambda index: -scores[index])
    # Agreement: over the K(K-1)/2 pairs, the mean share of labels that order the pair as the final ranking.
    shares = [sum(pair_vote(value, min(a, b), max(a, b)) == str(a) for value in values) / len(values)
              for rank, a in enumerate(ranking) for b in ranking[rank + 1:]]
    return [{
        **item.extra,
        "prompt": item.prompt,
        "responses": item.responses,
        "ranking": ranking,
        "id": item.external_id,
        "scores": scores,
        "agreement": sum(shares) / len(shares),
        "annotators": len(values),
    }]
