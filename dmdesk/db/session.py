"""Engines and sessions.

SQLite gets, on every connection: `foreign_keys=ON` (without it ON DELETE CASCADE silently does
nothing), WAL (readers never block the writer: the GUI reads while a job writes), a 30 s busy
timeout (two processes may write at once), and `synchronous=NORMAL` (safe with WAL, one fsync per
checkpoint instead of per commit). Migrations use a separate engine with foreign keys OFF: an
Alembic batch migration rebuilds the parent table, and with foreign keys on SQLite would cascade
the DROP to every pair (DESIGN.md "Known facts").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from dmdesk.domain.errors import DatabaseError


def _sqlite_path(url: str) -> Path | None:
    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def make_engine(url: str, *, foreign_keys: bool = True) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(f"DMDESK_DATABASE_URL is not a database URL: {url!r}") from None
    path = _sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        # dmdesk creates its own data folder (build_context); a URL naming a folder that does
        # not exist is most likely a typo, and creating it silently would hide the database.
        raise DatabaseError(
            f"The folder of the database {path} does not exist: create it, or fix "
            "DMDESK_DATABASE_URL."
        )
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(url, **kwargs)
    except Exception as exc:  # unknown dialect, missing driver
        raise DatabaseError(f"Cannot use the database URL ({type(exc).__name__}: {exc}).") from None

    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
