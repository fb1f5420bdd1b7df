"""The annotation web app: FastAPI routes over server-rendered Jinja2 pages.

Who may do what: anyone may log in; an annotator sees the projects they belong to and only their own
assignments; an admin manages users and projects, imports, assigns, watches quality and exports. Every POST
carries the session's CSRF token; pages are autoescaped and sent with a strict Content-Security-Policy (the
one script is a vendored file, no inline code). Each request runs in one database transaction.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from alignkit.annotate import work
from alignkit.annotate.db import TASKS, Assignment, Item, Member, Project, User, make_engine, session_factory
from alignkit.annotate.export import KINDS, export_rows
from alignkit.annotate.importing import parse_items
from alignkit.annotate.instance import Instance
from alignkit.annotate.quality import annotator_reports, project_agreement
from alignkit.annotate.security import LoginLimiter, check_password, new_token, same_token
from alignkit.errors import AlignkitError

HERE = Path(__file__).parent
SESSION_HOURS = 12
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    pass


router = APIRouter()


def create_app(instance: Instance, secure_cookies: bool = False, login_attempts: int = 5) -> FastAPI:
    """The app for one instance. `secure_cookies` marks the session cookie HTTPS-only (set it behind TLS)."""
    app = FastAPI(title="alignkit annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.engine = make_engine(instance.database_url)
    app.state.sessions = session_factory(app.state.engine)
    app.state.limiter = LoginLimiter(attempts=login_attempts)
    environment = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True)
    environment.filters["turns"] = turns
    environment.filters["pct"] = lambda x: "n/a" if x != x else f"{100 * x:.0f}%"
    environment.filters["num"] = lambda x: "n/a" if x != x else f"{x:.3f}"
    app.state.templates = Jinja2Templates(env=environment)
    app.add_middleware(SessionMiddleware, secret_key=instance.secret, session_cookie="alignkit_session",
                       max_age=SESSION_HOURS * 3600, same_site="strict", https_only=secure_cookies)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, _exc: LoginRequired):
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(StarletteHTTPException)  # FastAPI's HTTPException and unknown routes alike
    async def error_page(request: Request, exc: StarletteHTTPException):
        context = {"status": exc.status_code, "detail": exc.detail}
        return render(request, "error.html", context, exc.status_code)

    app.include_router(router)
    return app


# ---- helpers shared by the routes ----

@contextlib.contextmanager
def transaction(request: Request) -> Iterator[Session]:
    """One database transaction, committed before the response is built."""
    with request.app.state.sessions.begin() as session:
        yield session


def csrf_token(request: Request) -> str:
    if "csrf" not in request.session:
        request.session["csrf"] = new_token()
    return request.session["csrf"]


def render(request: Request, template: str, context: dict, status: int = 200) -> HTMLResponse:
    viewer = getattr(request.state, "viewer", None)
    return request.app.state.templates.TemplateResponse(
        request, template, {"csrf": csrf_token(request), "user": viewer, **context}, status_code=status)


async def checked_form(request: Request) -> dict:
    """The posted form, once its CSRF token matches the session's; 403 otherwise."""
    form = await request.form()
    if not same_token(request.session.get("csrf"), form.get("csrf")):
        raise HTTPException(403, "This form has no valid security token. Reload the page and try again.")
    return dict(form)


def current_user(session: Session, request: Request, admin: bool = False) -> User:
    user_id = request.session.get("uid")
    user = session.get(User, user_id) if isinstance(user_id, int) else None
    if user is None or not user.active:
        request.session.pop("uid", None)
        raise LoginRequired()
    # A plain copy for the page header: it outlives the transaction (error pages render after a rollback).
    request.state.viewer = {"username": user.username, "role": user.role}
    if admin and user.role != "admin":
        raise HTTPException(403, "This page is for admins.")
    return user


def member_project(session: Session, user: User, project_id: int) -> Project:
    project = session.get(Project, project_id)
    if project is None or (user.role != "admin" and session.get(Member, (project_id, user.id)) is None):
        raise HTTPException(404, "No such project.")
    return project


def own_assignment(session: Session, user: User, assignment_id: int) -> Assignment:
    """The assignment if it is this user's; another annotator's looks exactly like a missing one (404)."""
    assignment = session.get(Assignment, assignment_id)
    if assignment is None or assignment.user_id != user.id:
        raise HTTPException(404, "No such task.")
    return assignment


def turns(value) -> list[tuple[str, str]]:
    """A prompt or response, string or message list, as (role, text) turns to display."""
    if isinstance(value, str):
        return [("", value)]
    return [(str(message.get("role", "")), str(message.get("content", ""))) for message in value]


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


# ---- routes ----


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request):
    return render(request, "login.html", {"error": None, "username": ""})


@router.post("/login")
def login(request: Request, form: dict = Depends(checked_form)):
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    client = request.client.host if request.client else "?"
    limiter = request.app.state.limiter
    if wait := limiter.blocked_for(client, username):
        error = f"Too many failed logins. Try again in {int(wait) + 1} seconds."
        return render(request, "login.html", {"error": error, "username": username}, 429)
    with transaction(request) as session:
        user = session.scalar(select(User).where(User.username == username))
        ok = check_password(user.password_hash if user else None, password) and user.active
        user_id = user.id if ok else None
    if not ok:
        limiter.failed(client, username)
        error = "Wrong username or password."
        return render(request, "login.html", {"error": error, "username": username}, 401)
    limiter.succeeded(client, username)
    request.session.clear()  # a fresh session (and CSRF token) at login: no session fixation
    request.session.update({"uid": user_id, "csrf": new_token()})
    return redirect("/")


@router.post("/logout")
def logout(request: Request, form: dict = Depends(checked_form)):
    request.session.clear()
    return redirect("/login")


@router.get("/", response_class=HTMLResponse)
def home(request: Request):
    with transaction(request) as session:
        user = current_user(session, request)
        if user.role == "admin":
            return redirect("/admin")
        projects = session.scalars(select(Project).join(Member, Member.project_id == Project.id)
                                   .where(Member.user_id == user.id).order_by(Project.name)).all()
        mine = [(project, work.progress(session, project.id, user.id).get(user.id, {}))
                for project in projects]
        return render(request, "home.html", {"projects": mine})


@router.get("/projects/{project_id}/next")
def next_task(request: Request, project_id: int):
    with transaction(request) as session:
        user = current_user(session, request)
        project = member_project(session, user, project_id)
        assignment = work.next_assignment(session, user, project)
        if assignment is None:
            return render(request, "done.html", {"project": project})
        return redirect(f"/tasks/{assignment.id}")


@router.get("/tasks/{assignment_id}", response_class=HTMLResponse)
def task_page(request: Request, assignment_id: int):
    with transaction(request) as session:
        user = current_user(session, request)
        assignment = own_assignment(session, user, assignment_id)
        project = session.get(Project, assignment.project_id)
        item = session.get(Item, assignment.item_id)
        counts = work.progress(session, project.id, user.id).get(user.id, {})
        shown = [item.responses[index] for index in assignment.shown]
        return render(request, "task.html", {
            "project": project, "assignment": assignment, "item": item, "shown": shown,
            "done": counts.get("done", 0), "total": sum(counts.values()), "ratings": list(work.RATINGS),
            "error": None,
        })


@router.post("/tasks/{assignment_id}")
def submit_task(request: Request, assignment_id: int, form: dict = Depends(checked_form)):
    with transaction(request) as session:
        user = current_user(session, request)
        assignment = own_assignment(session, user, assignment_id)
        project = session.get(Project, assignment.project_id)
        try:
            if form.get("action") == "skip":
                work.skip(session, assignment)
            else:
                work.submit(session, assignment, project.task, form)
        except ValueError as err:
            raise HTTPException(400, f"{err}.") from None
        except work.Conflict as err:
            raise HTTPException(409, f"{err}.") from None
        return redirect(f"/projects/{project.id}/next")


@router.get("/admin", response_class=HTMLResponse)
def admin(request: Request):
    with transaction(request) as session:
        current_user(session, request, admin=True)
        projects = session.scalars(select(Project).order_by(Project.name)).all()
        users = session.scalars(select(User).order_by(User.username)).all()
        return render(request, "admin.html", {"projects": projects, "users": users, "tasks": TASKS,
                                              "message": request.session.pop("flash", None)})


@router.post("/admin/users")
def add_user(request: Request, form: dict = Depends(checked_form)):
    with transaction(request) as session:
        current_user(session, request, admin=True)
        with user_error():
            work.create_user(session, str(form.get("username", "")), str(form.get("password", "")),
                             str(form.get("role", "annotator")))
    return redirect("/admin")


@router.post("/admin/projects")
def add_project(request: Request, form: dict = Depends(checked_form)):
    with transaction(request) as session:
        current_user(session, request, admin=True)
        with user_error():
            project = work.create_project(
                session, str(form.get("name", "")), str(form.get("task", "")),
                per_item=number(form.get("per_item", "3"), int, "per_item"),
                guidelines=str(form.get("guidelines", "")),
                gold_threshold=number(form.get("gold_threshold", "0.7"), float, "gold_threshold"))
        return redirect(f"/admin/projects/{project.id}")


@router.get("/admin/projects/{project_id}", response_class=HTMLResponse)
def project_page(request: Request, project_id: int):
    with transaction(request) as session:
        user = current_user(session, request, admin=True)
        project = member_project(session, user, project_id)
        items = session.scalars(select(Item.id).where(Item.project_id == project.id)).all()
        gold = session.scalars(select(Item.id).where(Item.project_id == project.id,
                                                     Item.gold.is_not(None))).all()
        annotators = session.scalars(
            select(User).where(User.role == "annotator").order_by(User.username)).all()
        return render(request, "project.html", {
            "project": project, "items": len(items), "gold": len(gold),
            "reports": annotator_reports(session, project), "agreement": project_agreement(session, project),
            "annotators": annotators, "kinds": KINDS, "message": request.session.pop("flash", None),
        })


@router.post("/admin/projects/{project_id}/members")
def add_members(request: Request, project_id: int, form: dict = Depends(checked_form)):
    with transaction(request) as session:
        user = current_user(session, request, admin=True)
        project = member_project(session, user, project_id)
        names = [name.strip() for name in str(form.get("usernames", "")).replace("\n", ",").split(",")
                 if name.strip()]
        with user_error():
            work.add_members(session, project, names)
            made = work.assign(session, project)
    request.session["flash"] = f"{len(names)} annotator(s) added, {made} new assignment(s)"
    return redirect(f"/admin/projects/{project_id}")


@router.post("/admin/projects/{project_id}/guidelines")
def edit_guidelines(request: Request, project_id: int, form: dict = Depends(checked_form)):
    with transaction(request) as session:
        user = current_user(session, request, admin=True)
        project = member_project(session, user, project_id)
        project.guidelines = str(form.get("guidelines", "")).strip() or work.GUIDELINES
    request.session["flash"] = "Guidelines saved"
    return redirect(f"/admin/projects/{project_id}")


@router.post("/admin/projects/{project_id}/import")
async def import_items(request: Request, project_id: int, form: dict = Depends(checked_form)):
    upload = form.get("file")
    if upload is None or not hasattr(upload, "read"):
        raise HTTPException(400, "Choose a JSONL file to import.")
    data = await upload.read()
    name = Path(upload.filename or "upload.jsonl").name
    return await run_in_threadpool(_import, request, project_id, data, name)


def _import(request: Request, project_id: int, data: bytes, name: str):
    with transaction(request) as session:
        user = current_user(session, request, admin=True)
        project = member_project(session, user, project_id)
        with user_error():
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as err:
                raise AlignkitError(f"{name}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
            count = work.add_items(session, project, parse_items(text, name, project.task), name)
            made = work.assign(session, project) if session.scalar(
                select(Member.user_id).where(Member.project_id == project.id).limit(1)) else 0
    request.session["flash"] = f"{count} item(s) imported, {made} new assignment(s)"
    return redirect(f"/admin/projects/{project_id}")


@router.get("/admin/projects/{project_id}/export")
def export(request: Request, project_id: int, kind: str = "preference", exclude_flagged: bool = False):
    with transaction(request) as session:
        user = current_user(session, request, admin=True)
        project = member_project(session, user, project_id)
        if kind not in KINDS:
            raise HTTPException(400, f"Export kind must be one of {', '.join(KINDS)}.")
        rows, summary = export_rows(session, project, kind, exclude_flagged=exclude_flagged)
    body = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    filename = f"{safe_name(project.name)}-{kind}.jsonl"
    return Response(body, media_type="application/jsonl", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "X-Export-Summary": json.dumps({k: v if isinstance(v, int) else len(v) for k, v in summary.items()
                                        if k not in ("kind",)})})

@contextlib.contextmanager
def user_error() -> Iterator[None]:
    """An AlignkitError from the work layer as a 400 page with its message."""
    try:
        yield
    except AlignkitError as err:
        raise HTTPException(400, str(err)) from None


def number(value, kind: type, field: str):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise HTTPException(400, f"{field} must be a number, got {value!r}.") from None


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:60] or "project"
