"""Issue 16, in the window: a generated run whose pairs were all rejected opens in Training
History with Delete and why; deleting it lets a new generation start."""

from __future__ import annotations

from dmdesk.services.runs import TrainingRunService
from dmdesk.ui.history_view import RunActions


def test_a_generated_run_with_every_pair_rejected_offers_delete(qtbot, dmdesk_window) -> None:
    win = dmdesk_window(chunks=6)
    win.click("generateButton")
    win.wait_for_status(1, "generated")
    runs = TrainingRunService(win.ctx)
    runs.set_approval(1, [p.id for p in runs.list_pairs(1)], False)
    win.page.refresh()
    assert "delete it in Training History" in win.widget("generateBlockedLabel").text()
    actions = win.expand_row(1)
    assert isinstance(actions, RunActions) and actions.remove_button is not None
    assert actions.proceed_button is None
    assert "cannot be trained" in actions.error_label.text()
    win.press_row_button(1, "deleteButton")
    win.answer("confirmRemoveBox", "Yes")
    qtbot.waitUntil(lambda: win.page.history_model.rowCount() == 0, timeout=5000)
    assert win.widget("generateButton").isEnabled()


def test_a_generated_run_with_an_approved_pair_does_not_open(qtbot, dmdesk_window) -> None:
    win = dmdesk_window(chunks=6)
    win.click("generateButton")
    win.wait_for_status(1, "generated")
    runs = TrainingRunService(win.ctx)
    runs.set_approval(1, [runs.list_pairs(1)[0].id], True)
    win.page.refresh()
    win.page.history.toggle(1)
    assert not win.page.history.isExpanded(win.row_of(1))
