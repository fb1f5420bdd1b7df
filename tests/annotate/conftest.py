"""Fixtures for the annotation app: an instance folder, logged-in test clients, a real server in a subprocess,
a throwaway PostgreSQL server, and a tiny model for the export -> `alignkit reward` test."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "smoke"))  # cli_runner, shared with the smoke tests

PASSWORD = "correct horse"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


class User:
    """An httpx-style client logged in as one user; `post` adds the session's CSRF token to the form."""

    def __init__(self, client, username: str, password: str = PASSWORD):
        self.client, self.username = client, username
        page = client.get("/login")
        response = client.post("/login", data={"csrf": csrf_of(page.text), "username": username,
                                               "password": password}, follow_redirects=False)
        assert response.status_code == 303, response.text
        self.csrf = csrf_of(client.get("/", follow_redirects=True).text)

    def get(self, url: str, **kwargs):
        return self.client.get(url, **kwargs)

    def post(self, url: str, data: dict | None = None, **kwargs):
        kwargs.setdefault("follow_redirects", False)
        return self.client.post(url, data={"csrf": self.csrf, **(data or {})}, **kwargs)


@functools.cache
def password_hash() -> str:
    """PASSWORD's argon2 hash, made once: hashing costs ~0.2 s by design, and the tests make many users.
    Creating users through the real path (create_user) is covered by the web form and the CLI tests."""
    from alignkit.annotate.security import hash_password

    return hash_password(PASSWORD)


def make_instance(folder: Path, database_url: str | None = None, annotators: int = 3):
    """An instance with an admin and `annotators` annotators (ann1, ann2, ...), all with PASSWORD."""
    from alignkit.annotate.db import User, make_engine, session_factory
    from alignkit.annotate.instance import init_instance

    instance = init_instance(folder, database_url)
    engine = make_engine(instance.database_url)
    with session_factory(engine).begin() as session:
        names = [("admin", "admin")] + [(f"ann{n}", "annotator") for n in range(1, annotators + 1)]
        session.add_all(User(username=name, password_hash=password_hash(), role=role, active=True)
                        for name, role in names)
    engine.dispose()
    return instance


def add_project(instance, name: str, task: str, items: list[dict], annotators: list[str], per_item: int = 2,
                seed: int = 0, gold_threshold: float = 0.7) -> int:
    from alignkit.annotate.db import make_engine, session_factory
    from alignkit.annotate.importing import parse_items
    from alignkit.annotate.work import add_items, add_members, assign, create_project

    engine = make_engine(instance.database_url)
    with session_factory(engine).begin() as session:
        project = create_project(session, name, task, per_item, gold_threshold=gold_threshold)
        text = "".join(json.dumps(item) + "\n" for item in items)
        add_items(session, project, parse_items(text, "items.jsonl", task), "items.jsonl")
        add_members(session, project, annotators)
        assign(session, project, seed=seed)
        project_id = project.id
    engine.dispose()
    return project_id


def pair_items(n: int, prefix: str = "q") -> list[dict]:
    return [{"id": f"{prefix}{i}", "prompt": f"Question {i}?", "responses": [f"good answer {i}", f"bad answer {i}"]}
            for i in range(n)]


@pytest.fixture
def instance(tmp_path):
    return make_instance(tmp_path / "instance")


@pytest.fixture
def app(instance):
    from alignkit.annotate.app import create_app

    return create_app(instance)


@pytest.fixture
def login(app):
    """login("ann1") -> a logged-in User on a fresh TestClient of the app."""
    from fastapi.testclient import TestClient

    clients = []

    def _login(username: str, password: str = PASSWORD) -> User:
        client = TestClient(app)
        clients.append(client)
        return User(client, username, password)

    yield _login
    for client in clients:
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`alignkit annotate serve` in a subprocess on 127.0.0.1 and a free port, as a user would start it."""

    def __init__(self, folder: Path, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(folder / "server.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alignkit", "annotate", "serve", str(folder), "--port", str(self.port)],
            stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        self.wait_ready()

    def wait_ready(self, timeout: float = 30.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {Path(self.log.name).read_text()}")
            try:
                if httpx.get(self.url + "/login", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the server did not answer in time")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server on a temporary data directory and a free port, run as an unprivileged user when
    the tests run as root (postgres refuses root). Skipped only where PostgreSQL is not installed."""
    bin_dir = PG_BIN if (PG_BIN / "initdb").exists() else None
    if bin_dir is None and shutil.which("initdb"):
        bin_dir = Path(shutil.which("initdb")).parent
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no initdb): the PostgreSQL load test is skipped")
    prefix: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="alignkit-pg-"))
    if os.geteuid() == 0:
        import pwd

        account = next((name for name in ("postgres", "nobody") if _has_user(name)), None)
        if account is None:
            pytest.skip("running as root and no unprivileged account to run PostgreSQL as")
        entry = pwd.getpwnam(account)
        os.chown(data, entry.pw_uid, entry.pw_gid)
        prefix = ["runuser", "-u", account, "--"]
    cluster, port = data / "db", free_port()
    subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(cluster), "-U", "alignkit", "--auth=trust",
                    "-E", "UTF8"], check=True, capture_output=True)
    server = subprocess.Popen([*prefix, str(bin_dir / "postgres"), "-D", str(cluster), "-p", str(port),
                               "-k", str(data), "-h", "127.0.0.1", "-c", "max_connections=100",
                               "-c", "fsync=off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql://alignkit@127.0.0.1:{port}/postgres"
    try:
        _wait_postgres(url)
        yield url
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(data, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _wait_postgres(url: str, timeout: float = 30.0) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A ~100k-parameter model whose tokenizer knows the words of the test items."""
    from alignkit.models.tiny import make_tiny_model

    folder = tmp_path_factory.mktemp("annotate_model")
    texts = folder / "texts.jsonl"
    lines = [f"User: Question {i}?\nAssistant: good answer {i}" for i in range(50)]
    lines += [f"User: Question {i}?\nAssistant: bad answer {i}" for i in range(50)]
    texts.write_text("".join(json.dumps({"text": line}) + "\n" for line in lines))
    return make_tiny_model(texts, folder / "tiny", size="100k", vocab_size=300, seed=0)
