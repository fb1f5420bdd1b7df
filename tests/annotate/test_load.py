"""Load: 20 annotators label at once for 30 seconds against a real server (`alignkit annotate serve` in a
subprocess), on SQLite and on PostgreSQL. No request may fail, and every label the server accepted must be
stored exactly once; a label sent twice must be refused, not stored again."""

import random
import re
import threading
import time

import pytest

pytest.importorskip("sqlalchemy", reason="the annotation app needs the `annotate` extra")
pytest.importorskip("fastapi", reason="the annotation app needs the `annotate` extra")

import httpx
from sqlalchemy import func, select

from conftest import PASSWORD, Server, add_project, csrf_of, make_instance, pair_items

from alignkit.annotate.db import Assignment, Label, make_engine, session_factory

ANNOTATORS = 20
SECONDS = 30.0


def annotate_until(url: str, username: str, project: int, deadline: float, seed: int, result: dict) -> None:
    """One annotator's session: log in, then open the next task and submit it, again and again."""
    rng = random.Random(seed)
    accepted, refused, errors = [], 0, []
    with httpx.Client(base_url=url, timeout=60) as client:
        try:
            token = csrf_of(client.get("/login").text)
            login = client.post("/login", data={"csrf": token, "username": username, "password": PASSWORD})
            assert login.status_code == 303, f"login of {username}: {login.status_code}"
            token = csrf_of(client.get("/", follow_redirects=True).text)
            while time.monotonic() < deadline:
                page = client.get(f"/projects/{project}/next", follow_redirects=True)
                if page.status_code != 200:
                    errors.append(f"next: {page.status_code}")
                    continue
                match = re.search(r'action="/tasks/(\d+)"', page.text)
                if match is None:
                    break  # all done
                assignment = int(match.group(1))
                form = {"csrf": token, "choice": rng.choice(["A", "B", "tie", "both_bad"]), "reason": "load"}
                response = client.post(f"/tasks/{assignment}", data=form)
                if response.status_code == 303:
                    accepted.append(assignment)
                else:
                    errors.append(f"submit: {response.status_code} {response.text[:200]}")
                if rng.random() < 0.1:  # a double submission (a second click): refused, never stored twice
                    again = client.post(f"/tasks/{assignment}", data=form)
                    refused += again.status_code == 409
                    if again.status_code != 409:
                        errors.append(f"second submit: {again.status_code}")
        except Exception as err:  # noqa: BLE001 - any failure of any kind is what the test counts
            errors.append(repr(err))
    result[username] = {"accepted": accepted, "refused": refused, "errors": errors}


def run_load(tmp_path, database_url: str | None) -> dict:
    instance = make_instance(tmp_path / "instance", database_url, annotators=ANNOTATORS)
    names = [f"ann{n}" for n in range(1, ANNOTATORS + 1)]
    project = add_project(instance, "load", "pairwise", pair_items(400), names, per_item=ANNOTATORS)
    server = Server(tmp_path / "instance")
    results: dict = {}
    try:
        deadline = time.monotonic() + SECONDS
        started = time.monotonic()
        threads = [threading.Thread(target=annotate_until, args=(server.url, name, project, deadline, n, results))
                   for n, name in enumerate(names)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    finally:
        server.stop()
    errors = [error for result in results.values() for error in result["errors"]]
    accepted = [a for result in results.values() for a in result["accepted"]]
    with session_factory(make_engine(instance.database_url)).begin() as session:
        stored = list(session.scalars(select(Label.assignment_id)))
        done = session.scalar(select(func.count()).select_from(Assignment).where(Assignment.status == "done"))
    figures = {"labels": len(accepted), "labels_per_s": len(accepted) / elapsed,
               "double_submits_refused": sum(r["refused"] for r in results.values()), "errors": len(errors),
               "duplicates": len(stored) - len(set(stored))}
    print(f"\nload on {'PostgreSQL' if database_url else 'SQLite'}: {figures}")
    assert len(results) == ANNOTATORS
    assert not errors, errors[:5]
    assert len(accepted) > ANNOTATORS  # everyone got work done
    assert sorted(stored) == sorted(accepted) and len(set(accepted)) == len(accepted)  # each stored once
    assert done == len(accepted)
    return figures


@pytest.mark.smoke
def test_twenty_annotators_at_once_on_sqlite(tmp_path):
    figures = run_load(tmp_path, None)  # run_load asserts every accepted label stored exactly once
    assert figures["errors"] == 0 and figures["duplicates"] == 0 and figures["labels"] > 0


@pytest.mark.smoke
def test_twenty_annotators_at_once_on_postgresql(tmp_path, postgres_url):
    figures = run_load(tmp_path, postgres_url)  # run_load asserts every accepted label stored exactly once
    assert figures["errors"] == 0 and figures["duplicates"] == 0 and figures["labels"] > 0
