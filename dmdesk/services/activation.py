"""Which trained model dmdesk's own search uses, per vector store (issue 10).

* After training, :func:`apply_guard` activates the run's model only when the guard
  (dmdesk.deepmemory.guard.decide) measured a gain on unseen pairs; its verdict is kept in the
  run's metrics (`metrics.activation`) and said in the History and `dmdesk run`.
* The admin chooses too: :func:`activate` any completed run of the configured store ("Use this
  model", `dmdesk activate RUN_ID`), or :func:`deactivate` ("Stop using Deep Memory",
  `dmdesk activate --none`). Models are kept, so switching is instant; the choice survives
  restarts (adapters/active.json under the data dir).

For DeepLake Cloud, "active" means dmdesk's search asks for `deep_memory=True`; DeepLake itself
serves the model of its latest job.
"""

from __future__ import annotations

import logging

from dmdesk.deepmemory import adapters
from dmdesk.domain.errors import RuleViolation
from dmdesk.domain.models import RunView
from dmdesk.domain.status import RunStatus
from dmdesk.services.context import ServiceContext

log = logging.getLogger(__name__)


def apply_guard(ctx: ServiceContext, run: RunView) -> bool:
    """Activate a just-completed run's model if its verdict says so; True if it did."""
    store = run.store_path or ""
    decision = (run.metrics or {}).get("activation") or {}
    log.info("run %s: model %s", run.id, decision.get("reason", "not judged"))
    if run.status is RunStatus.COMPLETED and decision.get("activated") and store:
        adapters.activate(ctx.config.data_dir, run.id, store)
        return True
    return False


def active_run_id(ctx: ServiceContext, store: str | None = None) -> int | None:
    return adapters.active_run(ctx.config.data_dir, store or ctx.config.vector_store_path)


def activate(ctx: ServiceContext, run: RunView) -> None:
    """The admin's choice: use this completed run's model for its store."""
    store = run.store_path or ""
    if run.status is not RunStatus.COMPLETED:
        raise RuleViolation(f"Run #{run.id} is not completed: it has no model to use.")
    backend = (run.metrics or {}).get("backend")
    if backend == "local" and not adapters.has_adapter(ctx.config.data_dir, run.id):
        raise RuleViolation(f"Run #{run.id}'s model file is missing: train it again.")
    if backend not in ("local", "deeplake"):
        raise RuleViolation(f"Run #{run.id} has no trained model.")
    adapters.activate(ctx.config.data_dir, run.id, store)
    log.info("run %s: model activated by the administrator", run.id)


def deactivate(ctx: ServiceContext, store: str | None = None) -> int | None:
    """Stop using Deep Memory for the store; returns the run that was active."""
    store = store or ctx.config.vector_store_path or ""
    previous = adapters.active_run(ctx.config.data_dir, store)
    adapters.activate(ctx.config.data_dir, None, store)
    if previous is not None:
        log.info("run %s: model deactivated by the administrator", previous)
    return previous
