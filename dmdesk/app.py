"""Process start-up shared by the GUI and the CLI: logging, configuration, database, stale runs."""

from __future__ import annotations

import logging
import logging.handlers
from pathlib import Path

from dmdesk.config import DmdeskConfig, load_config
from dmdesk.services.context import ServiceContext, build_context
from dmdesk.services.runs import TrainingRunService

LOG_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"


def setup_logging(data_dir: Path, *, debug: bool = False) -> Path | None:
    """Log to `<data dir>/logs/dmdesk.log` (rotated). Secrets are never logged by dmdesk; the
    file exists for the admin and for bug reports."""
    root = logging.getLogger()
    if any(getattr(h, "_dmdesk", False) for h in root.handlers):
        return None
    path = data_dir / "logs" / "dmdesk.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=2_000_000, backupCount=3, encoding="utf-8"
        )
    except OSError:
        handler, path = logging.NullHandler(), None  # type: ignore[assignment]
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler._dmdesk = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


def start(config: DmdeskConfig | None = None, *, recover: bool = True) -> ServiceContext:
    """Open everything a dmdesk process needs and fail stale runs (DESIGN.md state machine)."""
    config = config or load_config()
    setup_logging(config.data_dir)
    ctx = build_context(config)
    if recover:
        TrainingRunService(ctx).recover_stale()
    return ctx
