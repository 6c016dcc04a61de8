"""Programmatic Alembic: the app upgrades its database to head on every start.

The migrations folder is resolved at run time (next to the package in a checkout or an editable
install, under sys._MEIPASS in a PyInstaller bundle) — frozen apps that hard-code it crash with
"alembic versions doesn't exist".
"""

from __future__ import annotations

import sys
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlalchemy.exc import OperationalError

from dmdesk.db.session import make_engine
from dmdesk.domain.errors import DatabaseError


def migrations_dir() -> Path:
    frozen = getattr(sys, "_MEIPASS", None)
    candidates = [Path(frozen) / "migrations"] if frozen else []
    candidates.append(Path(__file__).resolve().parents[2] / "migrations")
    for c in candidates:
        if (c / "env.py").is_file():
            return c
    raise DatabaseError("dmdesk is installed without its migrations folder; reinstall it.")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _run(url: str, action: str, revision: str) -> None:
    cfg = alembic_config(url)
    # A dedicated engine with foreign keys OFF (see dmdesk.db.session).
    engine = make_engine(url, foreign_keys=False)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            getattr(command, action)(cfg, revision)
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    _run(url, "upgrade", revision)


def downgrade(url: str, revision: str) -> None:
    _run(url, "downgrade", revision)


def ensure_schema(engine: Engine) -> None:
    """Upgrade to head; refuse a database newer than this dmdesk, and say what is wrong."""
    url = engine.url.render_as_string(hide_password=False)
    safe = engine.url.render_as_string(hide_password=True)
    try:
        current = current_revision(engine)
        script = ScriptDirectory.from_config(alembic_config(url))
        if current is not None and current not in {s.revision for s in script.walk_revisions()}:
            raise DatabaseError(
                f"The database {safe} was written by a newer dmdesk (schema revision {current}); "
                "this version knows up to "
                f"{script.get_current_head()}. Upgrade dmdesk or point DMDESK_DATABASE_URL "
                "elsewhere."
            )
        if current != script.get_current_head():
            upgrade(url)
    except DatabaseError:
        raise
    except (OperationalError, SADatabaseError) as exc:
        raise DatabaseError(
            f"Cannot open the database {safe}: {exc.orig if hasattr(exc, 'orig') else exc}. "
            "Check that the file is a dmdesk database and is writable, or set DMDESK_DATABASE_URL."
        ) from None
