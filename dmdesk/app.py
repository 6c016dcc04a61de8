"""Process start-up shared by the GUI and the CLI: logging, configuration, database, stale runs."""

from __future__ import annotations

import logging
import logging.handlers
import os
import subprocess
import sys
from pathlib import Path

from dmdesk.config import DmdeskConfig, load_config
from dmdesk.domain.models import RunView
from dmdesk.domain.status import RunStatus
from dmdesk.secrets import RedactingFormatter
from dmdesk.services.context import ServiceContext, build_context
from dmdesk.services.runs import TrainingRunService

_DETACHED: list[subprocess.Popen[bytes]] = []  # detached job workers this process started
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
    handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    handler._dmdesk = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if debug else logging.INFO)
    for noisy in ("httpx", "httpx2", "httpcore", "httpcore2", "openai", "urllib3", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return path


def log_file() -> Path | None:
    """The dmdesk.log this process writes, once logging is set up."""
    for h in logging.getLogger().handlers:
        if getattr(h, "_dmdesk", False):
            name = getattr(h, "baseFilename", None)
            return Path(name) if name else None
    return None


def dmdesk_command(*args: str) -> list[str]:
    """The command line of a dmdesk subcommand in a process of its own (this interpreter, or
    the frozen bundle's executable)."""
    cmd = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "dmdesk"]
    return cmd + list(args)


def spawn_job_worker(ctx: ServiceContext, run_id: int) -> None:
    """Run a run's job in a detached dmdesk process that takes over this context's ownership
    token (`dmdesk _job`). Its output goes to `<data dir>/logs/job-<id>.log`."""
    logs = ctx.config.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    cmd = dmdesk_command("_job", str(run_id), "--owner", ctx.owner)
    _DETACHED[:] = [p for p in _DETACHED if p.poll() is None]  # reap the ones that ended
    with open(logs / f"job-{run_id}.log", "ab") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=os.environ.copy(),
        )
    _DETACHED.append(proc)  # kept, so that it is reaped, never reported as leaked


def start(config: DmdeskConfig | None = None, *, recover_runs: bool = True) -> ServiceContext:
    """Open everything a dmdesk process needs and recover stale runs (DESIGN.md state machine):
    interrupted runs become failed; a cloud training run with a job id, or a batch-mode
    generation with open batches, is re-attached and followed by a detached worker."""
    config = config or load_config()
    setup_logging(config.data_dir)
    ctx = build_context(config)
    if recover_runs:
        recover(ctx)
    return ctx


def recover(ctx: ServiceContext) -> list[RunView]:
    """Stale runs become failed; a re-attached run (cloud training, a batch-mode generation
    with open LLM batches) gets a detached worker. Returns the runs recovered."""
    recovered = TrainingRunService(ctx).recover_stale()
    for run in recovered:
        if run.status in (RunStatus.TRAINING, RunStatus.GENERATING):
            spawn_job_worker(ctx, run.id)
    return recovered
