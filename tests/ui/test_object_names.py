"""Every object name of the testers' contract (dmdesk.testing.names, README "Testing dmdesk with
pytest-qt") exists where the README says, driven through the public `dmdesk_window` fixture."""

from __future__ import annotations

from datetime import UTC, datetime

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QApplication, QPushButton, QWidget

from dmdesk.domain.models import RunView
from dmdesk.domain.status import RunStatus
from dmdesk.testing.names import OBJECT_NAMES
from dmdesk.ui.history_view import RunActions
from tests.ui.conftest import click_row

ELSEWHERE = {"refreshButton", "gateWarning"}  # an active run's row; an unavailable page


def visible_names() -> set[str]:
    names: set[str] = set()
    for top in QApplication.topLevelWidgets():
        if top.isVisible():
            names.add(top.objectName())
            names.update(w.objectName() for w in top.findChildren(QWidget))
            names.update(a.objectName() for a in top.findChildren(QAction))
    return names


def test_every_contract_name_exists_in_the_window(
    qtbot, dmdesk_window, dmdesk_llm_server, tmp_path, monkeypatch
) -> None:
    dmdesk_llm_server.configure(fail_after=3)
    win = dmdesk_window(chunks=6, generation_concurrency=1)
    seen = visible_names()
    win.click("generateButton")
    win.wait_for_status(1, "generating_failed")
    win.expand_row(1)
    seen |= visible_names()
    win.press_row_button(1, "deleteButton")
    seen |= visible_names()
    win.answer("confirmRemoveBox", "Cancel")
    dmdesk_llm_server.configure(fail_after=None)
    win.press_row_button(1, "proceedButton")
    win.wait_for_status(1, "generated")
    win.click("reviewButton")
    qtbot.waitUntil(lambda: win.widget("approveAllButton").isEnabled(), timeout=10_000)
    seen |= visible_names()
    win.click("approveAllButton")
    win.click("closeReviewButton")
    win.click("trainButton")
    win.wait_for_status(1, "completed")
    click_row(qtbot, win.page.history, 1)
    seen |= visible_names()
    csv = tmp_path / "real.csv"
    csv.write_text("".join(f"what is in {c}?,{c}\n" for c in win.chunk_ids))
    monkeypatch.setattr(win.page, "choose_evaluation_files", lambda: (str(csv), None))
    win.window.findChild(QAction, "evaluationSetAction").trigger()
    qtbot.waitUntil(lambda: "evaluationSavedBox" in visible_names(), timeout=30_000)
    seen |= visible_names()
    win.page.show_error("A test error", "shown to see its name")
    win.window.findChild(QAction, "settingsAction").trigger()
    seen |= visible_names()
    missing = sorted(set(OBJECT_NAMES) - ELSEWHERE - seen)
    assert not missing, f"object names gone from the window: {missing}"


def test_refresh_and_the_gate_warning_keep_their_names(qtbot, dmdesk_window) -> None:
    now = datetime.now(UTC)
    active = RunView(
        id=9,
        status=RunStatus.GENERATING,
        total_chunks=3,
        processed_chunks=1,
        pair_count=1,
        error_message=None,
        deeplake_job_id=None,
        metrics=None,
        settings=None,
        created_at=now,
        updated_at=now,
        heartbeat_at=now,
    )
    actions = RunActions(active)
    qtbot.addWidget(actions)
    assert actions.findChild(QPushButton, "refreshButton") is not None
    win = dmdesk_window(chunks=2, deep_memory_backend="deeplake")  # a local store: the gate
    assert win.widget("gateWarning").isVisible()
