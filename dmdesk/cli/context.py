"""The service context a command works in, opened late (`dmdesk --help` and a usage error never
load the services) and always disposed."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from dmdesk.config import DmdeskConfig

if TYPE_CHECKING:
    from dmdesk.services.context import ServiceContext


@contextmanager
def started(config: DmdeskConfig, *, recover_runs: bool = True) -> Iterator[ServiceContext]:
    """`dmdesk.app.start` (stale runs recovered unless told not to), disposed at the end."""
    from dmdesk import app  # late: the services, SQLAlchemy and the migrations

    ctx = app.start(config, recover_runs=recover_runs)
    try:
        yield ctx
    finally:
        ctx.dispose()
