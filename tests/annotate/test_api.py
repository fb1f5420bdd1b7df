"""The annotation workflow through the app's HTTP interface (a test client): import, assignment, the three
tasks, skip, progress, quality and export."""

import json
import re

import pytest

pytest.importorskip("sqlalchemy", reason="the annotation app needs the `annotate` extra")
pytest.importorskip("fastapi", reason="the annotation app needs the `annotate` extra")

from sqlalchemy import func, select

from conftest import add_project, pair_items

from alignkit.annotate.db import Assignment, Item, Label, make_engine, session_factory


def db(instance):
    return session_factory(make_engine(instance.database_url))


def open_task(user, project_id):
    """Follow /projects/P/next to the task page: (assignment id, page html), or (None, html) when done."""
    response = user.get(f"/projects/{project_id}/next", follow_redirects=True)
    assert response.status_code == 200, response.text
    match = re.search(r'action="/tasks/(\d+)"', response.text)
    return (int(match.group(1)) if match else None), response.text


def test_migrations_create_the_schema_once(instance):
    from alignkit.annotate.db import upgrade

    engine = make_engine(instance.database_url)
    upgrade(engine)  # a second upgrade is a no-op
    with engine.connect() as connection:
        assert connection.exec_driver_sql("select version_num from alembic_version").scalar() == "0001"
        assert connection.exec_driver_sql("pragma journal_mode").scalar() == "wal"


def test_each_item_goes_to_m_annotators_never_twice(instance):
    items = pair_items(10) + [{"id": "g", "prompt": "gold?", "responses": ["right", "wrong"], "gold": 0}]
    project = add_project(instance, "p", "pairwise", items, ["ann1", "ann2", "ann3"], per_item=2)
    with db(instance).begin() as session:
        rows = session.execute(select(Item.external_id, Assignment.user_id).join(Item)).all()
        per_item = {}
        for external_id, user in rows:
            per_item.setdefault(external_id, []).append(user)
        assert all(len(users) == 2 for name, users in per_item.items() if name != "g")
        assert len(per_item["g"]) == 3  # gold goes to everyone
        assert all(len(set(users)) == len(users) for users in per_item.values())
        loads = [n for _, n in session.execute(select(Assignment.user_id, func.count()).group_by(Assignment.user_id))]
        assert max(loads) - min(loads) <= 1  # 20 + 3 assignments spread evenly
        from alignkit.annotate.db import Project
        from alignkit.annotate.work import assign

        assert assign(session, session.get(Project, project)) == 0  # topping up again makes nothing new


def test_pairwise_label_is_stored_in_the_items_order(instance, login):
    project = add_project(instance, "p", "pairwise", pair_items(6), ["ann1"], per_item=1, seed=3)
    with db(instance).begin() as session:
        shown = [a.shown for a in session.scalars(select(Assignment).order_by(Assignment.id))]
    assert [0, 1] in shown and [1, 0] in shown  # sides are shuffled per assignment
    user = login("ann1")
    chosen = {}
    while True:
        assignment_id, page = open_task(user, project)
        if assignment_id is None:
            break
        # Pick whichever side shows the good answer; the stored label must name response 0 every time.
        good_side = "A" if page.index("good answer") < page.index("bad answer") else "B"
        assert user.post(f"/tasks/{assignment_id}", {"choice": good_side, "reason": "r"}).status_code == 303
        chosen[assignment_id] = good_side
    assert set(chosen.values()) == {"A", "B"}
    with db(instance).begin() as session:
        assert [label.value for label in session.scalars(select(Label))] == [{"choice": 0}] * 6
    admin = login("admin")
    rows = [json.loads(line) for line in admin.get(f"/admin/projects/{project}/export").text.splitlines()]
    assert len(rows) == 6 and all(row["chosen"].startswith("good") for row in rows)
    assert rows[0]["votes"] == {"chosen": 1, "rejected": 0, "tie": 0, "both_bad": 0} and rows[0]["agreement"] == 1


def test_ranking_and_rating_tasks(instance, login):
    items = [{"id": "r", "prompt": "Rank these", "responses": ["best", "middle", "worst"]}]
    ranking = add_project(instance, "rank", "ranking", items, ["ann1"], per_item=1, seed=1)
    rating = add_project(instance, "rate", "rating", items, ["ann1"], per_item=1, seed=2)
    user = login("ann1")
    with db(instance).begin() as session:
        shown = {a.project_id: a.shown for a in session.scalars(select(Assignment))}
    assignment_id, page = open_task(user, ranking)
    displayed = [str(shown[ranking].index(i) + 1) for i in (0, 1, 2)]  # display numbers of best, middle, worst
    assert user.post(f"/tasks/{assignment_id}", {"ranking": ",".join(displayed[:1] + displayed[1:])}).status_code == 303
    assignment_id, page = open_task(user, rating)
    ratings = {f"rating_{shown[rating].index(i) + 1}": value for i, value in enumerate(("7", "4", "1"))}
    bad = user.post(f"/tasks/{assignment_id}", {**ratings, "rating_1": "9"})
    assert bad.status_code == 400 and "rating_1 must be a whole number from 1 to 7" in bad.text
    assert user.post(f"/tasks/{assignment_id}", ratings).status_code == 303
    with db(instance).begin() as session:
        values = sorted((label.value for label in session.scalars(select(Label))), key=str)
    assert values == [{"ranking": [0, 1, 2]}, {"ratings": [7, 4, 1]}]
    admin = login("admin")
    for project in (ranking, rating):
        row = json.loads(admin.get(f"/admin/projects/{project}/export?kind=ranked").text)
        assert row["ranking"] == [0, 1, 2] and row["responses"] == ["best", "middle", "worst"]
        pairs = admin.get(f"/admin/projects/{project}/export?kind=preference").text.splitlines()
        assert len(pairs) == 3  # K(K-1)/2 pairs, each with its chosen side
        assert all(json.loads(p)["chosen"] != "worst" for p in pairs)


def test_skip_moves_an_item_to_the_back_and_progress_counts(instance, login):
    project = add_project(instance, "p", "pairwise", pair_items(3), ["ann1"], per_item=1)
    user = login("ann1")
    first, _ = open_task(user, project)
    assert user.post(f"/tasks/{first}", {"action": "skip"}).status_code == 303
    second, page = open_task(user, project)
    assert second != first and "0 / 3 done" in page
    user.post(f"/tasks/{second}", {"choice": "tie"})
    third, page = open_task(user, project)
    assert third not in (first, second) and "1 / 3 done" in page
    user.post(f"/tasks/{third}", {"choice": "both_bad"})
    again, _ = open_task(user, project)
    assert again == first  # the skipped item comes back at the end
    user.post(f"/tasks/{first}", {"choice": "A"})
    done, page = open_task(user, project)
    assert done is None and "All done" in page
    home = user.get("/").text
    assert re.search(r"<td>3</td><td>0</td><td>0</td>", home)  # done, skipped, to do
    assert user.post(f"/tasks/{first}", {"choice": "B"}).status_code == 409  # a label is given once


def test_gold_scores_flag_and_exclusion_from_export(instance, login):
    gold = [{"id": f"g{i}", "prompt": f"Gold {i}?", "responses": ["right", "wrong"], "gold": 0} for i in range(2)]
    project = add_project(instance, "p", "pairwise", pair_items(2) + gold, ["ann1", "ann2", "ann3"], per_item=3)
    answers = {"ann1": "right", "ann2": "right", "ann3": "wrong"}  # ann3 gets gold wrong and prefers bad answers
    for name, wanted in answers.items():
        user = login(name)
        while True:
            assignment_id, page = open_task(user, project)
            if assignment_id is None:
                break
            texts = re.findall(r'<h2>Response ([AB])</h2>\s*<div class="pre">([^<]*)</div>', page)
            good = [side for side, text in texts if text.startswith(("good", "right"))]
            side = good[0] if wanted == "right" else {"A": "B", "B": "A"}[good[0]]
            assert user.post(f"/tasks/{assignment_id}", {"choice": side}).status_code == 303
    admin = login("admin")
    page = admin.get(f"/admin/projects/{project}").text
    assert re.search(r'<tr class="flagged">\s*<td>ann3</td>', page) and "ann1 · ann3" in page
    rows = [json.loads(x) for x in admin.get(f"/admin/projects/{project}/export").text.splitlines()]
    assert len(rows) == 2 and all(r["votes"] == {"chosen": 2, "rejected": 1, "tie": 0, "both_bad": 0} for r in rows)
    assert all(r["agreement"] == pytest.approx(2 / 3) and r["id"].startswith("q") for r in rows)  # gold not exported
    strict = admin.get(f"/admin/projects/{project}/export?exclude_flagged=true")
    rows = [json.loads(x) for x in strict.text.splitlines()]
    assert all(r["votes"]["chosen"] == 2 and r["votes"]["rejected"] == 0 and r["agreement"] == 1 for r in rows)


def test_agreement_numbers_on_the_project_page(instance):
    from alignkit.annotate.db import Project
    from alignkit.annotate.quality import project_agreement
    from alignkit.annotate.work import submit

    project_id = add_project(instance, "p", "pairwise", pair_items(4), ["ann1", "ann2"], per_item=2)
    # ann1 prefers response 0 on all four items; ann2 on items 0, 1 and 2, and response 1 on item 3.
    with db(instance).begin() as session:
        for assignment in session.scalars(select(Assignment).order_by(Assignment.id)):
            item = session.get(Item, assignment.item_id)
            wanted = 1 if (assignment.user_id == 3 and item.external_id == "q3") else 0
            submit(session, assignment, "pairwise", {"choice": "AB"[assignment.shown.index(wanted)]})
        agreement = project_agreement(session, session.get(Project, project_id))
    # Votes ann1: 0 0 0 0, ann2: 0 0 0 1. p_o = 3/4; p_e = (4/4)(3/4) + 0 = 3/4 -> Cohen's kappa 0.
    assert agreement["cohen"][0]["kappa"] == pytest.approx(0.0)
    # Fleiss (= Scott's pi with two raters): mean P = 3/4; p = [7/8, 1/8]; P_e = 50/64 -> (48 - 50) / (64 - 50).
    assert agreement["fleiss"] == pytest.approx(-2 / 14)
    # Krippendorff: n = 8, D_o = 2/8; D_e = 2 * 7 * 1 / 56 = 1/4 -> alpha = 1 - 1 = 0... times n/(n-1) correction:
    # alpha = 1 - (n - 1) * sum D_o / sum D_e = 1 - 7 * (2/8) / (14/8) = 0.
    assert agreement["alpha"] == pytest.approx(0.0)


def test_majority_ties_are_reported_not_exported(instance, login):
    project = add_project(instance, "p", "pairwise", pair_items(1), ["ann1", "ann2"], per_item=2)
    for name, wanted in (("ann1", "good"), ("ann2", "bad")):
        user = login(name)
        assignment_id, page = open_task(user, project)
        side = "A" if page.index(f"{wanted} answer") < page.index(f"{'bad' if wanted == 'good' else 'good'} answer") else "B"
        user.post(f"/tasks/{assignment_id}", {"choice": side})
    admin = login("admin")
    response = admin.get(f"/admin/projects/{project}/export")
    assert response.text == "" and json.loads(response.headers["X-Export-Summary"])["tied"] == 1
    from alignkit.annotate.db import Project
    from alignkit.annotate.export import export_rows

    with db(instance).begin() as session:
        _, summary = export_rows(session, session.get(Project, project))
    assert summary["tied"] == [{"id": "q0", "votes": {"0": 1, "1": 1}, "tied": ["0", "1"]}]


def test_guidelines_default_rubric_and_edit(instance, login):
    project = add_project(instance, "p", "pairwise", pair_items(1), ["ann1"], per_item=1)
    ann1 = login("ann1")
    _, page = open_task(ann1, project)
    assert "Helpful:" in page and "Honest:" in page and "Harmless:" in page  # the default rubric ships
    admin = login("admin")
    assert admin.post(f"/admin/projects/{project}/guidelines", {"guidelines": "Prefer <b>short</b> answers."}
                      ).status_code == 303
    assert ann1.post(f"/admin/projects/{project}/guidelines", {"guidelines": "x"}).status_code == 403
    _, page = open_task(ann1, project)
    assert "Prefer &lt;b&gt;short&lt;/b&gt; answers." in page and "Helpful:" not in page
