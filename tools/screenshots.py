"""Render the Deep Memory window in its main states to PNG files (`make screenshots`).

States: the cloud-gate warning, idle, generating, and a failed row expanded. Everything is local:
a temporary DeepLake store, SQLite, and the project's test LLM server with some latency.
Run offscreen: `QT_QPA_PLATFORM=offscreen python tools/screenshots.py docs/`. A developer's
tool: it lives outside the product package (the wheel and the bundle do not ship it).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import cast

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from dmdesk.config import load_config
from dmdesk.services.context import build_context
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.ui.main_window import MainWindow
from dmdesk.vectorstore.service import create_local_store

TOPICS = [
    "The for statement iterates over the items of any sequence, in the order they appear.",
    "A with statement wraps the execution of a block with methods defined by a context manager.",
    "The try statement specifies exception handlers and/or cleanup code for a group of statements.",
    "Generators are functions that use yield to produce a sequence of values lazily.",
]


def wait_until(app: QApplication, predicate, timeout_ms: int = 60_000) -> None:
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: loop.quit() if predicate() else None)
    QTimer.singleShot(timeout_ms, loop.quit)
    timer.start()
    loop.exec()
    timer.stop()


def main(out: str = "docs") -> int:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    app = cast(QApplication, QApplication.instance() or QApplication(sys.argv[:1]))
    tmp = Path(tempfile.mkdtemp(prefix="dmdesk-shots-"))
    n = 120
    create_local_store(
        tmp / "store",
        [f"topic-{i:03d}" for i in range(n)],
        [f"{TOPICS[i % len(TOPICS)]} (section {i})" for i in range(n)],
    )
    server = FakeLLMServer(latency_s=0.15).start()
    os.environ.update(
        DMDESK_DATA_DIR=str(tmp / "data"),
        DMDESK_CONFIG_FILE=str(tmp / "config.toml"),
        DMDESK_VECTOR_STORE_PATH=str(tmp / "store"),
        DMDESK_LLM_BASE_URL=server.base_url,
        DMDESK_LLM_MODEL="gpt-4o-mini",
        DMDESK_LLM_MAX_RETRIES="0",
        DMDESK_GENERATION_CONCURRENCY="4",
        DMDESK_EMBEDDING="openai:text-embedding-3-small",
    )
    try:
        os.environ["DMDESK_DEEP_MEMORY_BACKEND"] = "deeplake"
        ctx = build_context(load_config())
        w = MainWindow(ctx)
        w.show()
        app.processEvents()
        w.grab().save(str(out_dir / "gate-warning.png"))
        w.close()
        ctx.dispose()

        os.environ["DMDESK_DEEP_MEMORY_BACKEND"] = "local"
        ctx = build_context(load_config())
        w = MainWindow(ctx)
        w.ask_before_stopping = False
        w.show()
        wait_until(app, lambda: w.page.workflow.estimate_label.text() != "")
        app.processEvents()
        w.grab().save(str(out_dir / "idle.png"))

        page = w.page
        page.workflow.generate_button.click()
        wait_until(app, lambda: page.workflow.progress_bar.value() >= 45)
        app.processEvents()
        w.grab().save(str(out_dir / "generating.png"))

        # The admin's Stop: "Stopping…" at once, then a neutral "stopped — Proceed continues".
        page.workflow.stop_button.click()
        w.grab().save(str(out_dir / "stopping.png"))
        wait_until(app, lambda: not page.job_running)
        app.processEvents()
        w.grab().save(str(out_dir / "stopped.png"))

        run_id = page.history_model.runs()[0].id
        page.history.open_run(run_id)
        app.processEvents()
        actions = page.history.actions_widget(run_id)
        assert actions is not None and actions.proceed_button is not None
        actions.proceed_button.click()
        wait_until(app, lambda: page.workflow.progress_bar.value() >= 60)
        server.configure(fail_after=server.stats.successes + 5, fail_status=503)
        wait_until(app, lambda: not page.job_running)
        app.processEvents()
        page.history.open_run(run_id)
        app.processEvents()
        w.grab().save(str(out_dir / "failed-row-expanded.png"))

        # Proceed, approve, train (local engine), then select the completed run.
        from dmdesk.services.runs import TrainingRunService

        server.configure(fail_after=None, latency_s=0.0)
        page.history.open_run(run_id)
        app.processEvents()
        actions = page.history.actions_widget(run_id)
        assert actions is not None and actions.proceed_button is not None
        actions.proceed_button.click()
        wait_until(app, lambda: not page.job_running)
        TrainingRunService(ctx).approve_all(run_id)
        page.refresh()
        page.workflow.train_button.click()
        wait_until(app, lambda: not page.job_running)
        page.history.setCurrentIndex(page.history_model.row_of(run_id))
        app.processEvents()
        w.grab().save(str(out_dir / "completed-run-metrics.png"))

        # A settings error, at its field.
        card = page.settings_card
        card.model_edit.setText("")
        card.base_url_edit.setText("not a url")
        card.save_button.click()
        page.scroll_area.ensureWidgetVisible(card)
        app.processEvents()
        w.grab().save(str(out_dir / "settings-error.png"))
        w.close()
        ctx.dispose()
    finally:
        server.stop()
    for name in (
        "gate-warning",
        "idle",
        "generating",
        "stopping",
        "stopped",
        "failed-row-expanded",
        "settings-error",
        "completed-run-metrics",
    ):
        print(out_dir / f"{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:2]))
