"""The app in a real browser: Debian's Chromium driven by Playwright against `alignkit annotate serve` on
127.0.0.1. Login, a pairwise, a ranking and a rating task done by keyboard alone, and an admin export.

Screenshots go to $ALIGNKIT_SCREENSHOTS when set (docs/images holds the ones the docs show), else to tmp_path.
"""

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="the annotation app needs the `annotate` extra")
pytest.importorskip("fastapi", reason="the annotation app needs the `annotate` extra")

from sqlalchemy import select

from conftest import PASSWORD, Server, add_project, make_instance

from alignkit.annotate.db import Assignment, Item, Label, User, make_engine, session_factory
from alignkit.annotate.work import submit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.smoke,
    pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (Debian: apt-get install chromium); "
                                                "the browser tests are skipped"),
]

PAIRS = [
    {"id": "capital", "prompt": "What is the capital of France?",
     "responses": ["The capital of France is Paris.", "France's capital is Lyon, I think."]},
    {"id": "tea", "prompt": "How do I make a cup of green tea?",
     "responses": ["Heat water to about 80 °C, steep the leaves for 2-3 minutes, then strain.",
                   "Boil the leaves for twenty minutes <script>alert('x')</script>"]},
]
RANKED = [{"id": "poem", "prompt": "Write one line about the sea.",
           "responses": ["The sea keeps every secret the rivers tell it.", "Sea is water.",
                         "Waves come, waves go, and the shore remembers."],
           "best_first": [0, 2, 1]}]


@pytest.fixture
def served(tmp_path):
    instance = make_instance(tmp_path / "instance", annotators=2)
    pairwise = add_project(instance, "Helpful answers", "pairwise", PAIRS, ["ann1", "ann2"], per_item=2, seed=5)
    items = [{k: v for k, v in item.items() if k != "best_first"} for item in RANKED]
    ranking = add_project(instance, "Sea lines", "ranking", items, ["ann1"], per_item=1, seed=6)
    rating = add_project(instance, "Sea lines, rated", "rating", items, ["ann1"], per_item=1, seed=7)
    server = Server(tmp_path / "instance")
    yield instance, server, pairwise, ranking, rating
    server.stop()


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1000, "height": 720}, accept_downloads=True)
        yield context.new_page()
        browser.close()


def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("ALIGNKIT_SCREENSHOTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(page, url: str, username: str) -> None:
    page.goto(url + "/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    submit_by_key(page, "Enter")


def submit_by_key(page, key: str) -> None:
    with page.expect_navigation():
        page.keyboard.press(key)


def test_login_tasks_by_keyboard_and_export(served, page, tmp_path):
    instance, server, pairwise, ranking, rating = served
    out = shots(tmp_path)
    page.goto(server.url + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", "ann1")
    page.fill("input[name=password]", "wrong password")
    submit_by_key(page, "Enter")
    assert "Wrong username or password" in page.inner_text("main")
    page.screenshot(path=out / "annotate_login.png")
    log_in(page, server.url, "ann1")
    assert "Your projects" in page.inner_text("main")

    # Pairwise, keys only: a/b picks the side showing the better answer (sides are shuffled), Enter submits.
    page.goto(f"{server.url}/projects/{pairwise}/next")
    for _ in PAIRS:
        shown = page.locator(".response .pre").all_inner_texts()
        item = next(p for p in PAIRS if p["responses"][0] in shown)
        page.keyboard.press("a" if shown[0] == item["responses"][0] else "b")
        if item["id"] == "tea":
            assert "<script>" in shown[0] + shown[1]  # shown as text, not run
            page.keyboard.press("r")
            page.keyboard.type("the other one boils the leaves")
            page.keyboard.press("Escape")
            page.screenshot(path=out / "annotate_pairwise.png")
        submit_by_key(page, "Enter")
    assert "All done" in page.inner_text("main")

    # Ranking, keys only: press the displayed numbers best first (the last one fills itself in), Enter.
    page.goto(f"{server.url}/projects/{ranking}/next")
    shown = page.locator(".response .pre").all_inner_texts()
    for index in RANKED[0]["best_first"][:-1]:
        page.keyboard.press(str(shown.index(RANKED[0]["responses"][index]) + 1))
    assert page.locator(".response .rank").count() == 3
    page.screenshot(path=out / "annotate_ranking.png")
    submit_by_key(page, "Enter")
    assert "All done" in page.inner_text("main")

    # Rating, keys only: each digit rates the highlighted response and moves to the next.
    page.goto(f"{server.url}/projects/{rating}/next")
    shown = page.locator(".response .pre").all_inner_texts()
    wanted = {0: "7", 1: "2", 2: "5"}  # by the item's own response index
    for text in shown:
        page.keyboard.press(wanted[RANKED[0]["responses"].index(text)])
    page.screenshot(path=out / "annotate_rating.png")
    submit_by_key(page, "Enter")
    assert "All done" in page.inner_text("main")

    with session_factory(make_engine(instance.database_url)).begin() as session:
        labels = {(session.get(Assignment, label.assignment_id).project_id,
                   session.get(Item, session.get(Assignment, label.assignment_id).item_id).external_id): label
                  for label in session.scalars(select(Label))}
    assert labels[(pairwise, "capital")].value == {"choice": 0} and labels[(pairwise, "tea")].value == {"choice": 0}
    assert labels[(pairwise, "tea")].reason == "the other one boils the leaves"
    assert labels[(ranking, "poem")].value == {"ranking": RANKED[0]["best_first"]}
    assert labels[(rating, "poem")].value == {"ratings": [7, 2, 5]}

    # ann2 labels too (the better answer on "capital", the worse on "tea"), so the admin page has agreement.
    with session_factory(make_engine(instance.database_url)).begin() as session:
        for assignment in session.scalars(select(Assignment).join(User).where(User.username == "ann2")):
            wanted = 0 if session.get(Item, assignment.item_id).external_id == "capital" else 1
            submit(session, assignment, "pairwise", {"choice": "AB"[assignment.shown.index(wanted)]})

    # The annotator cannot open the admin pages; the admin watches progress and exports.
    page.goto(server.url + "/admin")
    assert "for admins" in page.inner_text("main")
    with page.expect_navigation():
        page.click("header button")  # log out
    log_in(page, server.url, "admin")
    with page.expect_navigation():
        page.click("text=Helpful answers")
    assert "ann1" in page.inner_text("#annotators")
    page.screenshot(path=out / "annotate_admin.png", full_page=True)
    with page.expect_download() as download:
        page.click("#export-preference")
    rows = [json.loads(line) for line in Path(download.value.path()).read_text().splitlines()]
    # "capital": both chose the right answer; "tea" is a 1-1 tie and is reported, not exported.
    assert [(row["id"], row["chosen"], row["votes"]["chosen"]) for row in rows] == [
        ("capital", PAIRS[0]["responses"][0], 2)]
