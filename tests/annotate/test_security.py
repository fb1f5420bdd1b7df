"""Access control, CSRF, escaping, SQL metacharacters, the login rate limit and the session cookie."""

import json

import pytest

pytest.importorskip("sqlalchemy", reason="the annotation app needs the `annotate` extra")
pytest.importorskip("fastapi", reason="the annotation app needs the `annotate` extra")

from sqlalchemy import select

from conftest import PASSWORD, add_project, csrf_of, pair_items

from alignkit.annotate.db import Assignment, Item, Label, Project, User, make_engine, session_factory


def db(instance):
    return session_factory(make_engine(instance.database_url))


def assignments_of(instance, username):
    with db(instance).begin() as session:
        user = session.scalar(select(User).where(User.username == username))
        return list(session.scalars(select(Assignment.id).where(Assignment.user_id == user.id)))


def test_annotator_cannot_reach_admin_pages_other_items_or_export(instance, login):
    project = add_project(instance, "p", "pairwise", pair_items(4), ["ann1", "ann2"], per_item=1)
    other = add_project(instance, "other", "pairwise", pair_items(2), ["ann2"], per_item=1)
    ann1 = login("ann1")
    for url in ("/admin", f"/admin/projects/{project}", f"/admin/projects/{project}/export",
                f"/admin/projects/{project}/export?kind=ranked"):
        response = ann1.get(url)
        assert response.status_code == 403 and "for admins" in response.text, url
        assert "good answer" not in response.text
    for url, data in (("/admin/users", {"username": "mallory", "password": "x" * 10, "role": "admin"}),
                      ("/admin/projects", {"name": "evil", "task": "pairwise"}),
                      (f"/admin/projects/{project}/members", {"usernames": "ann1"})):
        assert ann1.post(url, data).status_code == 403, url
    for assignment in assignments_of(instance, "ann2"):  # another annotator's items: as if they did not exist
        assert ann1.get(f"/tasks/{assignment}").status_code == 404
        assert ann1.post(f"/tasks/{assignment}", {"choice": "A"}).status_code == 404
        assert ann1.post(f"/tasks/{assignment}", {"action": "skip"}).status_code == 404
    assert ann1.get(f"/projects/{other}/next").status_code == 404  # not a member
    missing = ann1.get("/no/such/page")
    assert missing.status_code == 404 and "<h1>404</h1>" in missing.text
    assert "other" not in ann1.get("/").text
    with db(instance).begin() as session:
        assert session.scalar(select(User).where(User.username == "mallory")) is None
        assert not list(session.scalars(select(Label)))
        assert all(a.status == "pending" for a in session.scalars(select(Assignment)))


def test_logged_out_visitors_are_sent_to_login(app):
    from fastapi.testclient import TestClient

    client = TestClient(app)
    for url in ("/", "/admin", "/admin/projects/1/export", "/tasks/1", "/projects/1/next"):
        response = client.get(url, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login", url


def test_post_without_or_with_a_wrong_csrf_token_is_refused(instance, login):
    project = add_project(instance, "p", "pairwise", pair_items(1), ["ann1"], per_item=1)
    ann1 = login("ann1")
    assignment = assignments_of(instance, "ann1")[0]
    for form in ({"choice": "A"}, {"choice": "A", "csrf": ""}, {"choice": "A", "csrf": "forged" * 8}):
        response = ann1.client.post(f"/tasks/{assignment}", data=form, follow_redirects=False)
        assert response.status_code == 403 and "security token" in response.text
    admin = login("admin")
    response = admin.client.post("/admin/users", data={"username": "x", "password": "y" * 10,
                                                       "role": "admin"}, follow_redirects=False)
    assert response.status_code == 403
    # Login itself carries a token too (no login CSRF), and logout needs one.
    from fastapi.testclient import TestClient

    fresh = TestClient(ann1.client.app)
    assert fresh.post("/login", data={"username": "ann1", "password": PASSWORD}).status_code == 403
    assert ann1.client.post("/logout", follow_redirects=False).status_code == 403
    with db(instance).begin() as session:
        assert not list(session.scalars(select(Label)))
        assert session.scalar(select(User).where(User.username == "x")) is None
    assert ann1.post(f"/tasks/{assignment}", {"choice": "A"}).status_code == 303  # with the token it works
    assert project


def test_a_script_tag_in_a_response_is_shown_as_text(instance, login):
    attack = "<script>alert('xss')</script><img src=x onerror=alert(1)>"
    items = [{"id": "x", "prompt": f"Say {attack}", "responses": [attack, "fine"]}]
    project = add_project(instance, "p", "pairwise", items, ["ann1"], per_item=1)
    response = login("ann1").get(f"/projects/{project}/next", follow_redirects=True)
    assert "&lt;script&gt;alert(&#39;xss&#39;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in response.text
    assert "<script>alert" not in response.text and "<img src=x" not in response.text
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]  # no inline script could run anyway


def test_sql_metacharacters_in_every_field_are_stored_as_data(instance, login):
    nasty = "Robert'); DROP TABLE users; -- \" ` \\ % _ ; /* */"
    admin = login("admin")
    assert admin.post("/admin/users", {"username": nasty, "password": nasty, "role": "annotator"}).status_code == 303
    response = admin.post("/admin/projects", {"name": nasty, "task": "pairwise", "per_item": "1",
                                              "gold_threshold": "0.7", "guidelines": nasty})
    assert response.status_code == 303
    project = int(response.headers["location"].rsplit("/", 1)[1])
    row = {"id": nasty, "prompt": nasty, "responses": [nasty + " A", nasty + " B"], nasty: nasty}
    upload = {"file": ("items.jsonl", (json.dumps(row) + "\n").encode())}
    assert admin.post(f"/admin/projects/{project}/import", files=upload).status_code == 303
    assert "1 item(s) imported, 0 new assignment(s)" in admin.get(f"/admin/projects/{project}").text
    assert "item(s) imported" not in admin.get(f"/admin/projects/{project}").text  # a message shows once
    assert admin.post(f"/admin/projects/{project}/members", {"usernames": nasty}).status_code == 303
    user = login(nasty, nasty)
    response = user.get(f"/projects/{project}/next", follow_redirects=True)
    assignment = int(response.text.split('action="/tasks/')[1].split('"')[0])
    assert user.post(f"/tasks/{assignment}", {"choice": "A", "reason": nasty}).status_code == 303
    with db(instance).begin() as session:
        assert session.scalar(select(User.username).where(User.username == nasty)) == nasty
        project_row = session.get(Project, project)
        assert project_row.name == nasty and project_row.guidelines == nasty
        item = session.scalar(select(Item))
        assert (item.external_id, item.prompt, item.extra) == (nasty, nasty, {nasty: nasty})
        assert session.scalar(select(Label.reason)) == nasty
        assert len(list(session.scalars(select(User)))) == 5  # the users table is still there, whole
    exported = json.loads(admin.get(f"/admin/projects/{project}/export").text)
    assert exported["prompt"] == nasty and exported[nasty] == nasty


def test_login_is_rate_limited_and_the_cookie_is_locked_down(app, login):
    from fastapi.testclient import TestClient

    client = TestClient(app)
    token = csrf_of(client.get("/login").text)
    for _ in range(5):
        response = client.post("/login", data={"csrf": token, "username": "ann1", "password": "wrong pw"})
        assert response.status_code == 401 and "Wrong username or password" in response.text
    response = client.post("/login", data={"csrf": token, "username": "ann1", "password": PASSWORD})
    assert response.status_code == 429 and "Too many failed logins" in response.text
    other = login("ann2")  # another account is not locked out
    cookie = other.client.cookies.get("alignkit_session")
    fresh = TestClient(app)
    page = fresh.get("/login")
    set_cookie = page.headers["set-cookie"].lower()
    assert "httponly" in set_cookie and "samesite=strict" in set_cookie
    fresh.cookies.set("alignkit_session", cookie[:-4] + ("AAAA" if not cookie.endswith("AAAA") else "BBBB"))
    assert fresh.get("/", follow_redirects=False).headers["location"] == "/login"  # a tampered cookie is void


def test_passwords_are_stored_as_argon2_hashes(instance):
    with db(instance).begin() as session:
        hashes = list(session.scalars(select(User.password_hash)))
    assert hashes and all(h.startswith("$argon2id$") and PASSWORD not in h for h in hashes)
