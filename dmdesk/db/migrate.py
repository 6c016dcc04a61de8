"""Programmatic Alembic: the app upgrades its database to head on every start.

The migrations folder is resolved at run time (next to the package in a checkout or an editable
install, under sys._MEIPASS in a PyInstaller bundle) — frozen apps that hard-code it crash with
"alembic versions doesn't exist".
"""

from __future__ import annotations

import contextlib
import importlib.resources
import sys
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text
from sqlalchemy.exc import DatabaseError as SADatabaseError
from sqlalchemy.exc import OperationalError

from dmdesk.db.session import make_engine
from dmdesk.domain.errors import DatabaseError

# pg_advisory_lock key of dmdesk's schema upgrades (any constant shared by all dmdesk versions).
MIGRATION_LOCK_KEY = 0x646D_6465_736B  # "dmdesk"


def migrations_dir() -> Path:
    """The Alembic scripts: the package data `dmdesk.migrations` (a wheel, an sdist, an
    editable install: the checkout's top-level `migrations/`), or the PyInstaller bundle's copy."""
    frozen = getattr(sys, "_MEIPASS", None)
    candidates = [Path(frozen) / "migrations"] if frozen else []
    with contextlib.suppress(ModuleNotFoundError):  # else: a checkout on sys.path, no install
        candidates.append(Path(str(importlib.resources.files("dmdesk.migrations"))))
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


@contextlib.contextmanager
def _schema_lock(engine: Engine) -> Iterator[None]:
    """Serialise schema upgrades between processes: two dmdesk processes starting together on a
    new database must not both create its tables. SQLite: a lock file next to the database
    (`<db>.migrate.lock`); PostgreSQL: a session-level advisory lock; others: none."""
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        if not database or database == ":memory:":
            yield
            return
        from filelock import FileLock

        lock = FileLock(f"{database}.migrate.lock", timeout=600)
        try:
            lock.acquire()
        except OSError:  # a read-only folder: nobody can upgrade there anyway
            yield
            return
        try:
            yield
        finally:
            lock.release()
    elif engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
    else:
        yield


def ensure_schema(engine: Engine) -> None:
    """Upgrade to head; refuse a database newer than this dmdesk, and say what is wrong.

    The revision is read (again) once the schema lock is held, so the second of two racing
    processes sees the first one's upgrade instead of repeating it."""
    url = engine.url.render_as_string(hide_password=False)
    safe = engine.url.render_as_string(hide_password=True)
    try:
        script = ScriptDirectory.from_config(alembic_config(url))
        known = {s.revision for s in script.walk_revisions()}
        head = script.get_current_head()

        def check(current: str | None) -> bool:
            if current is not None and current not in known:
                raise DatabaseError(
                    f"The database {safe} was written by a newer dmdesk (schema revision "
                    f"{current}); this version knows up to {head}. Upgrade dmdesk or point "
                    "DMDESK_DATABASE_URL elsewhere."
                )
            return current != head

        # SQLite: the first connection to a new file switches it to WAL, which needs the
        # file to itself ("database is locked" at once, no busy wait, while another process
        # is creating the tables): there the whole check runs under the lock (a lock file,
        # microseconds when nobody holds it). PostgreSQL: checked first, locked to upgrade.
        if engine.dialect.name == "sqlite" or check(current_revision(engine)):
            with _schema_lock(engine):
                if check(current_revision(engine)):
                    _upgrade_or_explain(url, safe)
    except DatabaseError:
        raise
    except (OperationalError, SADatabaseError) as exc:
        reason = exc.orig if hasattr(exc, "orig") else exc
        if engine.dialect.name == "sqlite":
            hint = (
                "Check that the file is a dmdesk database and is writable, or set "
                "DMDESK_DATABASE_URL."
            )
        else:
            where = f"{engine.url.host or 'localhost'}:{engine.url.port or 5432}"
            hint = (
                f"Check that the database server at {where} is running and accepts this user, "
                "and that DMDESK_DATABASE_URL is right."
            )
        raise DatabaseError(f"Cannot open the database {safe}: {reason}. {hint}") from None


def _upgrade_or_explain(url: str, safe: str) -> None:
    """Upgrade to head; a migration that fails is a readable DatabaseError, never a bare
    traceback at start-up."""
    try:
        upgrade(url)
    except Exception as exc:
        reason = getattr(exc, "orig", None) or exc
        raise DatabaseError(
            f"Cannot upgrade the database {safe} to this dmdesk's schema "
            f"({type(exc).__name__}: {reason}). Keep a copy of the database and report this "
            "with the log file; an older dmdesk can still open a copy made before this start."
        ) from None
