"""`alignkit annotate ...`: the annotation app's commands. Only typer is imported here; each command imports
what it needs, so `alignkit --help` stays fast and works without the `annotate` extra."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(no_args_is_help=True,
                  help="The preference-annotation web app: init, serve, import, export, users.")
users_app = typer.Typer(no_args_is_help=True, help="Add, list and disable the app's users.")
app.add_typer(users_app, name="users")

FOLDER = typer.Argument(..., help="the instance folder (made by `alignkit annotate init`)")
PASSWORD = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True,
                        envvar="ALIGNKIT_ANNOTATE_PASSWORD", help="8+ characters (or the env variable)")


def _need_extra() -> None:
    import importlib.util

    from alignkit.errors import AlignkitError

    missing = [name for name in ("fastapi", "sqlalchemy", "alembic", "argon2", "jinja2", "uvicorn")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise AlignkitError(f"alignkit annotate needs {', '.join(missing)}: install the annotate extra, "
                            "pip install -e '.[annotate]' (or 'alignkit[annotate]')")


def _sessions(folder: Path):
    _need_extra()
    from alignkit.annotate.db import make_engine, session_factory
    from alignkit.annotate.instance import open_instance

    instance = open_instance(folder)
    return session_factory(make_engine(instance.database_url))


@app.command()
def init(
    folder: Path = FOLDER,
    admin: str = typer.Option("admin", help="username of the first admin"),
    password: str = PASSWORD,
    database_url: Optional[str] = typer.Option(None, help="e.g. postgresql://user:pw@host/db; default SQLite "
                                               "in the folder"),
) -> None:
    """Create an instance folder: settings, a session secret, the database schema and the first admin."""
    _need_extra()
    from sqlalchemy import select

    from alignkit.annotate.db import User
    from alignkit.annotate.instance import init_instance
    from alignkit.annotate.work import create_user

    init_instance(folder, database_url)
    with _sessions(folder).begin() as session:
        if session.scalar(select(User).where(User.username == admin)) is None:
            create_user(session, admin, password, "admin")
            print(f"admin {admin!r} created")
    print(f"instance ready in {folder}; start it with `alignkit annotate serve {folder}`")


@app.command()
def serve(
    folder: Path = FOLDER,
    host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0 exposes it to the network)"),
    port: int = typer.Option(8000),
    secure_cookies: bool = typer.Option(False, help="send the session cookie over HTTPS only (behind TLS)"),
) -> None:
    """Run the web app (one process; put a TLS proxy in front to serve it beyond this machine)."""
    _need_extra()
    import uvicorn

    from alignkit.annotate.app import create_app
    from alignkit.annotate.instance import open_instance

    app_ = create_app(open_instance(folder), secure_cookies=secure_cookies)
    uvicorn.run(app_, host=host, port=port, log_level="warning", proxy_headers=False)


@app.command("import")
def import_cmd(
    folder: Path = FOLDER,
    source: Path = typer.Argument(..., help="JSONL: prompt + responses, preference rows, or "
                                  "`alignkit generate` output"),
    project: str = typer.Option(..., help="project name (made when --task is given and it does not exist)"),
    task: Optional[str] = typer.Option(None, help="pairwise, ranking or rating: create the project"),
    per_item: int = typer.Option(3, help="annotators per item, for a new project"),
    gold_threshold: float = typer.Option(0.7, help="flag annotators below this gold score, for a new "
                                         "project"),
    guidelines: Optional[Path] = typer.Option(None, help="a text file of guidelines, for a new project"),
    annotators: Optional[str] = typer.Option(None, help="comma-separated annotators to add and assign"),
) -> None:
    """Import items into a project (all or nothing) and assign them to the project's annotators."""
    from sqlalchemy import select

    from alignkit.annotate.db import Member, Project
    from alignkit.annotate.importing import read_items
    from alignkit.annotate.work import add_items, add_members, assign, create_project, find_project

    with _sessions(folder).begin() as session:
        if task and session.scalar(select(Project).where(Project.name == project)) is None:
            text = guidelines.read_text() if guidelines else ""
            found = create_project(session, project, task, per_item, text, gold_threshold)
        else:
            found = find_project(session, project)
        count = add_items(session, found, read_items(source, found.task), source.name)
        if annotators:
            add_members(session, found, [name for name in annotators.split(",") if name.strip()])
        has_members = session.scalar(select(Member.user_id).where(Member.project_id == found.id).limit(1))
        made = assign(session, found) if has_members else 0
    print(f"{count} item(s) imported into {project!r}; {made} new assignment(s)")


@app.command()
def export(
    folder: Path = FOLDER,
    out: Path = typer.Argument(..., help="the JSONL file to write"),
    project: str = typer.Option(...),
    kind: str = typer.Option("preference", help="preference (prompt/chosen/rejected) or ranked "
                             "(prompt/responses/ranking)"),
    exclude_flagged: bool = typer.Option(False, help="leave out annotators below the gold threshold"),
    exclude: Optional[str] = typer.Option(None, help="comma-separated annotators to leave out"),
) -> None:
    """Write the project's labels as training rows, aggregated by majority vote; prints a summary."""
    from alignkit.annotate.export import export_rows
    from alignkit.annotate.work import find_project
    from alignkit.data.io import write_jsonl
    from alignkit.errors import AlignkitError

    with _sessions(folder).begin() as session:
        try:
            names = tuple(name.strip() for name in (exclude or "").split(",") if name.strip())
            rows, summary = export_rows(session, find_project(session, project), kind, exclude_flagged, names)
        except ValueError as err:
            raise AlignkitError(str(err)) from None
    write_jsonl(out, rows)
    print(json.dumps({**summary, "out": str(out)}, indent=2))


@users_app.command("add")
def users_add(
    folder: Path = FOLDER,
    username: str = typer.Argument(...),
    role: str = typer.Option("annotator", help="annotator or admin"),
    password: str = PASSWORD,
) -> None:
    """Add a user."""
    from alignkit.annotate.work import create_user

    with _sessions(folder).begin() as session:
        create_user(session, username, password, role)
    print(f"{role} {username!r} added")


@users_app.command("list")
def users_list(folder: Path = FOLDER) -> None:
    """List users with their role and whether they may log in."""
    from sqlalchemy import select

    from alignkit.annotate.db import User

    with _sessions(folder).begin() as session:
        for user in session.scalars(select(User).order_by(User.username)):
            print(f"{user.username}\t{user.role}\t{'active' if user.active else 'disabled'}")


@users_app.command("disable")
def users_disable(folder: Path = FOLDER, username: str = typer.Argument(...)) -> None:
    """Stop a user from logging in (their labels stay)."""
    from sqlalchemy import select

    from alignkit.annotate.db import User
    from alignkit.errors import AlignkitError

    with _sessions(folder).begin() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None:
            raise AlignkitError(f"no user named {username!r}; see `alignkit annotate users list {folder}`")
        user.active = False
    print(f"{username!r} disabled")
