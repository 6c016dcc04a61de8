"""Issue 26: one source for the Workflow card. After a completed run, a stop, a failure and a
removal — whether this window or another process did it — every line of the card says what
the History row says, never what an earlier moment said."""

from __future__ import annotations

from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.ui.history_model import COL_STATUS


def card(win) -> dict[str, str | bool]:
    w = win.page.workflow
    return {
        "progress": w.progress_label.text() if w.progress_box.isVisible() else "",
        "blocked": w.blocked_label.text() if w.blocked_label.isVisible() else "",
        "review": w.review_label.text(),
        "generate": w.generate_button.isEnabled(),
    }


def test_after_a_run_completed_elsewhere_the_card_says_completed_and_nothing_older(
    qtbot, dmdesk_window
) -> None:
    win = dmdesk_window(chunks=12)
    win.click("generateButton")
    win.wait_for_status(1, "generated")
    qtbot.waitUntil(lambda: "Review them next" in card(win)["progress"], timeout=5_000)
    runs = win.runs
    runs.approve_all(1)
    runs.start_training(1)
    assert run_job(runs.ctx, 1).status is RunStatus.COMPLETED  # as a terminal's `dmdesk train` does
    qtbot.waitUntil(
        lambda: win.page.history_model.runs()[0].status is RunStatus.COMPLETED, timeout=5_000
    )
    qtbot.waitUntil(lambda: card(win)["progress"] == "", timeout=2_000)
    now = card(win)
    assert now["review"].startswith("Run #1 is completed") and now["generate"]
    assert now["blocked"] == ""


def test_after_a_stop_the_card_and_the_row_both_say_stopped(
    qtbot, dmdesk_window, dmdesk_llm_server: FakeLLMServer
) -> None:
    dmdesk_llm_server.configure(latency_s=0.2)
    win = dmdesk_window(chunks=25, generation_concurrency=1)
    win.click("generateButton")
    qtbot.waitUntil(lambda: win.widget("progressBar").value() >= 2, timeout=30_000)
    win.click("stopButton")
    win.wait_for_status(1, "generating_failed")
    qtbot.waitUntil(lambda: "stopped" in card(win)["progress"], timeout=10_000)
    assert "stopped" in win.row_text(1).lower()
    now = card(win)
    assert "Run #1 was stopped during generation" in now["blocked"]
    assert "failed" not in now["blocked"] and not now["generate"]
    assert "Proceed" in now["review"]


def test_after_a_failure_then_a_removal_the_card_follows_each_time(
    qtbot, failed_generation
) -> None:
    win = failed_generation(chunks=12, fail_after=3)
    qtbot.waitUntil(lambda: "Proceed or Delete" in card(win)["progress"], timeout=5_000)
    assert "failed during generation" in card(win)["blocked"]
    assert win.row_text(1) == "Generation failed"
    win.runs.remove(1)  # another process removes it
    qtbot.waitUntil(lambda: win.page.history_model.rowCount() == 0, timeout=3_000)
    qtbot.waitUntil(lambda: card(win)["progress"] == "", timeout=2_000)
    now = card(win)
    assert now["blocked"] == "" and now["generate"]
    assert now["review"] == "Review and training follow a finished generation."


def test_a_rows_refresh_brings_the_card_along(qtbot, dmdesk_window) -> None:
    """A stale "generating" row refreshed by its own button: the card follows the row."""
    from tests.helpers import insert_run

    win = dmdesk_window(chunks=3)
    win.page.watcher.stop()  # only the row's refresh may tell the window
    insert_run(win.ctx, "generating", owner="other-process")
    win.page.refresh()
    assert "is generating" in card(win)["blocked"]
    from dmdesk.db.models import TrainingRun
    from dmdesk.db.session import session_scope

    with session_scope(win.ctx.sessions) as s:
        s.get(TrainingRun, 1).status = "generated"
    win.page._on_refresh_requested(1)
    assert win.page.history_model.row_of(1).siblingAtColumn(COL_STATUS).data() != "Generating"
    assert "is generated" in card(win)["blocked"]
    assert win.page.workflow.review_button.isEnabled()
