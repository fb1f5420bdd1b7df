"""Tables, the engine and migrations of the annotation app.

SQLite (one file, WAL mode) unless a PostgreSQL URL is given. Every query goes through SQLAlchemy's
expression language: no SQL is ever assembled from strings. The schema is created and upgraded by the Alembic
migrations shipped in `migrations/`, never by `create_all`, so an old instance upgrades the same way a new one
is made.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

TASKS = ("pairwise", "ranking", "rating")
ROLES = ("admin", "annotator")
MIGRATIONS = Path(__file__).parent / "migrations"


def now() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task: Mapped[str] = mapped_column(String(16))
    per_item: Mapped[int] = mapped_column(Integer)  # m: how many annotators label each (non-gold) item
    guidelines: Mapped[str] = mapped_column(Text)
    gold_threshold: Mapped[float] = mapped_column(Float)  # annotators scoring below it on gold are flagged
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Member(Base):
    """An annotator who works on a project."""

    __tablename__ = "members"
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)


class Item(Base):
    """One prompt and its 2..K responses. `gold` is the known answer of a gold item, None otherwise."""

    __tablename__ = "items"
    __table_args__ = (UniqueConstraint("project_id", "external_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    prompt: Mapped[object] = mapped_column(JSON)  # a string or a message list, as imported
    responses: Mapped[list] = mapped_column(JSON)
    gold: Mapped[object | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    extra: Mapped[dict] = mapped_column(JSON)  # the imported row's other columns, exported again
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Assignment(Base):
    """An item given to one annotator, with the order its responses are shown in.

    `shown` is a permutation of the item's response indices: the response shown as A (or 1) is
    `responses[shown[0]]`. Labels are stored in the item's own indices, so exports never see the shuffle.
    """

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("item_id", "user_id"),)  # never the same item twice to one annotator
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    shown: Mapped[list] = mapped_column(JSON)
    position: Mapped[float] = mapped_column(Float)  # random queue order, so gold items are mixed in
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending, skipped, done
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


class Label(Base):
    """One annotator's answer to one assignment, in the item's response indices (see `Assignment.shown`).

    pairwise: {"choice": 0 | 1 | "tie" | "both_bad"}; ranking: {"ranking": [best, ..., worst]};
    rating: {"ratings": [1..7 per response]}.
    """

    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id", ondelete="CASCADE"), unique=True)
    value: Mapped[dict] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=now)


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, a busy timeout, foreign keys, `BEGIN IMMEDIATE` transactions."""
    for plain in ("postgresql://", "postgres://"):  # psycopg 3 rather than SQLAlchemy's default psycopg2
        if url.startswith(plain):
            url = "postgresql+psycopg://" + url.removeprefix(plain)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # The driver's own transaction handling is switched off so the "begin" hook below decides.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer, nor the writer them
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL is durable against a crash of the app
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):
        # Take the write lock at the start: a deferred transaction that reads, then writes, can fail at once
        # with "database is locked" when another writer got in between, whatever the busy timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (`alembic upgrade head`)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def session_factory(engine: Engine) -> sessionmaker:
    return sessionmaker(engine, expire_on_commit=False)
