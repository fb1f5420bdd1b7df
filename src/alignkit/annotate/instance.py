"""The instance folder of an annotation server: its settings, its secret key and (by default) its database.

  DIR/annotate.json   {"database_url": ...}; SQLite in DIR/annotate.db unless a URL was given at init
  DIR/secret_key      signs the session cookies; made at init, readable by the owner only
Environment variables win over the folder: ALIGNKIT_ANNOTATE_DATABASE_URL and ALIGNKIT_ANNOTATE_SECRET (so a
deployment can keep both out of the folder).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from alignkit.errors import AlignkitError

SETTINGS = "annotate.json"
SECRET = "secret_key"
DATABASE_ENV, SECRET_ENV = "ALIGNKIT_ANNOTATE_DATABASE_URL", "ALIGNKIT_ANNOTATE_SECRET"


@dataclass(frozen=True)
class Instance:
    folder: Path
    database_url: str
    secret: str


def init_instance(folder: str | Path, database_url: str | None = None) -> Instance:
    """Create (or reuse) the folder, write settings and a secret key if missing, and migrate the database."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / SETTINGS
    if not settings.exists():
        url = database_url or f"sqlite:///{(folder / 'annotate.db').resolve()}"
        settings.write_text(json.dumps({"database_url": url}, indent=2) + "\n")
    key = folder / SECRET
    if not key.exists():
        key.touch(mode=0o600)
        key.write_text(secrets.token_urlsafe(48))
    instance = open_instance(folder, migrate=True)
    return instance


def open_instance(folder: str | Path, migrate: bool = True) -> Instance:
    folder = Path(folder)
    settings = folder / SETTINGS
    if not settings.exists() and not os.environ.get(DATABASE_ENV):
        raise AlignkitError(f"{folder} is not an annotation instance (no {SETTINGS}); "
                            f"create it with `alignkit annotate init {folder}`")
    url = os.environ.get(DATABASE_ENV) or json.loads(settings.read_text())["database_url"]
    secret = os.environ.get(SECRET_ENV) or ((folder / SECRET).read_text().strip()
                                            if (folder / SECRET).exists() else "")
    if len(secret) < 32:
        raise AlignkitError(f"no session secret: {folder / SECRET} is missing or short; run "
                            f"`alignkit annotate init {folder}` or set {SECRET_ENV} to 32+ random characters")
    instance = Instance(folder, url, secret)
    if migrate:
        from alignkit.annotate.db import make_engine, upgrade

        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    return instance
