"""Labels collected in the app, exported over HTTP, train a reward model (`alignkit reward`) and a DPO policy
(`alignkit dpo`) as they are."""

import json

import pytest

pytest.importorskip("sqlalchemy", reason="the annotation app needs the `annotate` extra")
pytest.importorskip("fastapi", reason="the annotation app needs the `annotate` extra")

from sqlalchemy import select

from conftest import add_project, pair_items

import alignkit
from alignkit.annotate.db import Assignment, Item, make_engine, session_factory
from alignkit.annotate.work import submit
from alignkit.data.io import read_rows
from alignkit.data.schema import validate_rows


def label_everything(instance, task: str) -> None:
    """Every annotator prefers the good answer, except ann3, who votes for the bad one (outvoted 2 to 1)."""
    with session_factory(make_engine(instance.database_url)).begin() as session:
        for assignment in session.scalars(select(Assignment).order_by(Assignment.id)):
            item = session.get(Item, assignment.item_id)
            order = [i for i, r in sorted(enumerate(item.responses), key=lambda p: p[1].startswith("bad"))]
            if assignment.user_id == 4:
                order.reverse()
            shown = assignment.shown
            if task == "pairwise":
                form = {"choice": "AB"[shown.index(order[0])]}
            else:
                form = {"ranking": ",".join(str(shown.index(index) + 1) for index in order)}
            submit(session, assignment, task, form)


@pytest.mark.smoke
@pytest.mark.parametrize("task, kind", [("pairwise", "preference"), ("ranking", "ranked")])
def test_export_trains_a_reward_model(instance, login, tiny_model, tmp_path, task, kind):
    items = pair_items(24) if task == "pairwise" else [
        {**item, "responses": [*item["responses"], f"bad answer {i} again"]} for i, item in enumerate(pair_items(24))]
    project = add_project(instance, "p", task, items, ["ann1", "ann2", "ann3"], per_item=3)
    label_everything(instance, task)
    response = login("admin").get(f"/admin/projects/{project}/export?kind={kind}")
    assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
    data = tmp_path / "exported.jsonl"
    data.write_bytes(response.content)
    rows = read_rows(str(data))
    assert validate_rows(rows, ["preference", "ranked"]) == kind and len(rows) == 24
    first = rows.rows[0]
    if kind == "preference":
        assert first["chosen"].startswith("good") and first["votes"] == {"chosen": 2, "rejected": 1, "tie": 0,
                                                                         "both_bad": 0}
    else:
        assert first["responses"][first["ranking"][0]].startswith("good")
    result = alignkit.run(
        "reward", None, "name=rm", f"output_dir={tmp_path}", f"model.path={tiny_model}", f"data.train={data}",
        "data.max_length=64", "train.lr=3e-3", "train.batch_size=8", "train.max_steps=30", "train.threads=1",
        "train.warmup_steps=2", "train.log_every=5",
    )
    metrics = [json.loads(line) for line in (result.path / "metrics.jsonl").read_text().splitlines()]
    accuracy = [m["accuracy"] for m in metrics if "accuracy" in m]
    assert accuracy and accuracy[-1] > 0.9, accuracy  # the majority's choice is learnable: good beats bad
    assert metrics[-1]["loss"] < metrics[0]["loss"] / 2
    assert (result.path / "final").is_dir()
    dpo = alignkit.run(  # the same file feeds DPO as it is
        "dpo", None, "name=dpo", f"output_dir={tmp_path}", f"model.path={tiny_model}", f"data.train={data}",
        "data.max_length=64", "train.batch_size=8", "train.max_steps=4", "train.threads=1", "train.log_every=2",
    )
    assert (dpo.path / "final").is_dir()
