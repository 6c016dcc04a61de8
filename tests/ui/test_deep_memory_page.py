"""The Deep Memory window, driven with qtbot clicks on real widgets (FR-6.3/6.4, FR-7.1 … 7.11,
Scenario 6), on a real SQLite database, a local DeepLake store and the project's LLM server."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QPushButton

from dmdesk.domain.status import RunStatus
from dmdesk.jobs.runner import run_job
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import FakeLLMServer
from dmdesk.ui.history_model import COL_PROGRESS, COL_STATUS, FAILED_COLOR, HasRefreshRole
from dmdesk.ui.main_window import MainWindow
from dmdesk.ui.workflow_panel import ATTENTION, NEUTRAL, STATUS_PHRASE
from tests.helpers import insert_pairs, insert_run
from tests.ui.conftest import answer_box, buttons_of, click_refresh_icon, click_row

NON_COMPLETED = ["generating", "generated", "training", "generating_failed", "training_failed"]


def failed_generation(runs: TrainingRunService, llm: FakeLLMServer, after: int = 30) -> int:
    llm.configure(fail_after=after)
    run = run_job(runs.ctx, runs.start_generation().id)
    assert run.status is RunStatus.GENERATING_FAILED
    llm.configure(fail_after=None)
    return run.id


# -- FR-6: the cloud gate ----------------------------------------------------------------------


def test_fr6_3_local_store_shows_only_the_warning(
    qtbot, make_ctx: Callable[..., ServiceContext], store200
) -> None:
    ctx = make_ctx(vector_store_path=store200, deep_memory_backend="deeplake")
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    w.show()
    page = w.page
    assert page.gate_warning.isVisible()
    assert "only available with DeepLake Cloud" in page.gate_warning.text()
    assert "DMDESK_DEEP_MEMORY_BACKEND=local" in page.gate_warning.text()
    for card in (page.settings_card, page.workflow, page.history):
        assert not card.isVisible()


def test_fr6_4_header_with_brain_icon_stays_visible_in_both_states(
    qtbot, make_ctx: Callable[..., ServiceContext], store200
) -> None:
    for backend, gated in (("deeplake", True), ("local", False)):
        w = MainWindow(make_ctx(vector_store_path=store200, deep_memory_backend=backend))
        qtbot.addWidget(w)
        w.show()
        header = w.page.findChild(type(w.page.cards), "pageHeader")
        assert header.isVisible()
        assert w.page.findChild(type(w.page.gate_warning), "pageTitle").text() == (
            "Deep Memory Training"
        )
        assert not w.page.findChild(type(w.page.gate_warning), "brainIcon").pixmap().isNull()
        assert w.page.gate_warning.isVisible() is gated
        assert w.page.workflow.isVisible() is not gated


def test_fr6_cloud_store_shows_the_cards(qtbot, make_ctx) -> None:
    w = MainWindow(make_ctx(vector_store_path="hub://org/kb", deep_memory_backend="deeplake"))
    qtbot.addWidget(w)
    w.show()
    assert not w.page.gate_warning.isVisible()
    assert w.page.workflow.isVisible() and w.page.history.isVisible()


# -- Scenario 6 / FR-7.4: the Generate button --------------------------------------------------


@pytest.mark.parametrize("status", NON_COMPLETED)
def test_fr7_4_scenario6_generate_disabled_with_the_blocking_status(
    qtbot, ctx: ServiceContext, status: str
) -> None:
    run_id = insert_run(ctx, status, owner="other-process")
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    w.show()
    wf = w.page.workflow
    assert not wf.generate_button.isEnabled()
    assert wf.blocked_label.isVisible()
    phrase = STATUS_PHRASE[RunStatus(status)]  # the status in words, not `generating_failed`
    assert f"Run #{run_id} {phrase}" in wf.blocked_label.text()
    assert "completed or removed" in wf.blocked_label.text()
    # Issue 26: amber only when the run waits for the admin; a run at work reads as a fact.
    waits = status in ("generated", "generating_failed", "training_failed")
    assert (ATTENTION in wf.blocked_label.styleSheet()) is waits
    assert (NEUTRAL in wf.blocked_label.styleSheet()) is not waits


def test_scenario6_generate_enabled_when_every_run_is_completed(qtbot, ctx) -> None:
    insert_run(ctx, "completed")
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    w.show()
    assert w.page.workflow.generate_button.isEnabled()
    assert not w.page.workflow.blocked_label.isVisible()


# -- FR-7.1, 7.2, 7.10, 7.11: failed rows and their controls -----------------------------------


def test_fr7_1_failed_runs_show_status_phase_and_error_prominently(
    qtbot, window: MainWindow, runs, llm_server
) -> None:
    run_id = failed_generation(runs, llm_server)
    window.page.refresh()
    model, view = window.page.history_model, window.page.history
    status_index = model.index(model.row_of(run_id).row(), COL_STATUS)
    assert status_index.data() == "Generation failed"  # the phase is in the status (SC-1)
    assert status_index.data(Qt.ItemDataRole.ForegroundRole) == FAILED_COLOR
    assert status_index.data(Qt.ItemDataRole.FontRole).bold()
    click_row(qtbot, view, run_id)
    actions = view.actions_widget(run_id)
    assert actions is not None and actions.isVisible()
    assert "30/200" in actions.error_label.text() and "500" in actions.error_label.text()


def test_fr7_2_proceed_and_delete_are_in_the_expanded_history_row(
    qtbot, window: MainWindow, ctx
) -> None:
    run_id = insert_run(ctx, "training_failed")
    window.page.refresh()
    view = window.page.history
    assert view.actions_widget(run_id) is None  # nothing until the row is opened
    click_row(qtbot, view, run_id)
    actions = view.actions_widget(run_id)
    assert {"Proceed", "Delete"} <= set(buttons_of(actions))
    assert view.isExpanded(window.page.history_model.row_of(run_id))


@pytest.mark.parametrize(
    ("status", "expected", "has_error"),
    [
        ("generating", {"Refresh"}, False),
        ("training", {"Refresh"}, False),
        ("generating_failed", {"Proceed", "Delete"}, True),
        ("training_failed", {"Proceed", "Delete"}, True),
    ],
)
def test_fr7_10_expanded_area_holds_only_the_actions_of_its_status(
    qtbot, window: MainWindow, ctx, status: str, expected: set[str], has_error: bool
) -> None:
    run_id = insert_run(ctx, status, owner="other-process")
    window.page.refresh()
    click_row(qtbot, window.page.history, run_id)
    actions = window.page.history.actions_widget(run_id)
    assert set(buttons_of(actions)) == expected
    assert (actions.error_label is not None) is has_error


def test_fr7_11_the_workflow_card_has_no_failed_run_controls(
    qtbot, window: MainWindow, ctx
) -> None:
    insert_run(ctx, "generating_failed")
    window.page.refresh()
    texts = {b.text() for b in window.page.workflow.findChildren(QPushButton)}
    assert texts.isdisjoint({"Proceed", "Delete", "Remove"})


# -- FR-7.3: proceed --------------------------------------------------------------------------


def test_fr7_3_proceed_collapses_the_row_and_runs_to_total_in_the_workflow_card(
    qtbot, window: MainWindow, runs, llm_server: FakeLLMServer
) -> None:
    run_id = failed_generation(runs, llm_server, after=51)
    page = window.page
    page.refresh()
    click_row(qtbot, page.history, run_id)
    proceed = buttons_of(page.history.actions_widget(run_id))["Proceed"]
    llm_server.configure(latency_s=0.005)
    llm_server.reset_stats()
    with qtbot.waitSignal(page.job_finished, timeout=60_000) as done:
        qtbot.mouseClick(proceed, Qt.MouseButton.LeftButton)
        # At once: the row closes, the progress indicator shows (Clarifications).
        assert page.history.expanded_run_id() is None
        assert page.workflow.progress_box.isVisible()
        assert not page.workflow.generate_button.isEnabled()
    bar = page.workflow.progress_bar
    assert bar.maximum() == 200 and bar.value() == 200
    assert done.args[0].status is RunStatus.GENERATED
    # The LLM was asked only for the 149 chunks without pairs (FR-3.5).
    assert llm_server.stats.requests == 149


# -- FR-7.5, 7.6: delete ----------------------------------------------------------------------


def test_fr7_5_delete_asks_first_and_cancel_keeps_the_run(qtbot, window: MainWindow, ctx) -> None:
    run_id = insert_run(ctx, "generating_failed")
    insert_pairs(ctx, run_id, ["a", "b"])
    window.page.refresh()
    click_row(qtbot, window.page.history, run_id)
    delete = buttons_of(window.page.history.actions_widget(run_id))["Delete"]
    qtbot.mouseClick(delete, Qt.MouseButton.LeftButton)
    answer_box(qtbot, window.page, "confirmRemoveBox", QMessageBox.StandardButton.Cancel)
    assert [r.id for r in TrainingRunService(ctx).list_runs()] == [run_id]


def test_fr7_6_delete_confirmed_removes_and_refreshes_the_page(
    qtbot, window: MainWindow, ctx
) -> None:
    run_id = insert_run(ctx, "training_failed")
    window.page.refresh()
    assert not window.page.workflow.generate_button.isEnabled()
    click_row(qtbot, window.page.history, run_id)
    qtbot.mouseClick(
        buttons_of(window.page.history.actions_widget(run_id))["Delete"], Qt.MouseButton.LeftButton
    )
    with qtbot.waitSignal(window.page.refreshed, timeout=3000):
        answer_box(qtbot, window.page, "confirmRemoveBox", QMessageBox.StandardButton.Yes)
    assert TrainingRunService(ctx).list_runs() == []
    assert window.page.history_model.rowCount() == 0
    assert window.page.workflow.generate_button.isEnabled()  # Scenario 6: enabled again


# -- FR-7.7, 7.8: the Progress column ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "text", "icon"),
    [
        ("generating", "51/80", True),
        ("generating_failed", "51/80", False),
        ("training", "In progress", True),
        ("training_failed", "51/80", False),
        ("completed", "—", False),
        ("generated", "—", False),
    ],
)
def test_fr7_7_progress_column_next_to_status(
    qtbot, window: MainWindow, ctx, status: str, text: str, icon: bool
) -> None:
    insert_run(ctx, status, processed=51, total=80, owner="other-process")
    window.page.refresh()
    model = window.page.history_model
    assert model.headerData(COL_PROGRESS, Qt.Orientation.Horizontal, 0) == "Progress"
    assert COL_PROGRESS == COL_STATUS + 1
    cell = model.index(0, COL_PROGRESS)
    assert cell.data() == text
    assert bool(cell.data(HasRefreshRole)) is icon  # FR-7.8: icon only on active rows


def test_fr7_8_refresh_icon_updates_only_that_row_in_place(qtbot, window: MainWindow, ctx) -> None:
    insert_run(ctx, "completed")
    run_id = insert_run(ctx, "generating", processed=10, total=80, owner="other-process")
    window.page.refresh()
    model = window.page.history_model
    row = model.row_of(run_id).row()
    assert model.index(row, COL_PROGRESS).data() == "10/80"
    from sqlalchemy import update

    from dmdesk.db.models import TrainingRun

    with ctx.engine.begin() as c:  # the other process made progress
        c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(processed_chunks=42))
    with (
        qtbot.assertNotEmitted(model.modelReset),
        qtbot.assertNotEmitted(window.page.refreshed),
        qtbot.waitSignal(model.dataChanged, timeout=2000) as changed,
    ):
        click_refresh_icon(qtbot, window.page.history, run_id)
    assert changed.args[0].row() == row and changed.args[1].row() == row
    assert model.index(row, COL_PROGRESS).data() == "42/80"
    assert window.page.history.expanded_run_id() is None  # the icon click does not expand


def test_fr7_8_refresh_button_in_the_expanded_active_row(qtbot, window: MainWindow, ctx) -> None:
    run_id = insert_run(ctx, "generating", processed=1, total=80, owner="other-process")
    window.page.refresh()
    click_row(qtbot, window.page.history, run_id)
    from sqlalchemy import update

    from dmdesk.db.models import TrainingRun

    with ctx.engine.begin() as c:
        c.execute(update(TrainingRun).values(processed_chunks=7))
    with qtbot.assertNotEmitted(window.page.history_model.modelReset):
        qtbot.mouseClick(
            buttons_of(window.page.history.actions_widget(run_id))["Refresh"],
            Qt.MouseButton.LeftButton,
        )
    assert window.page.history_model.index(0, COL_PROGRESS).data() == "7/80"


# -- FR-7.9: accordion ------------------------------------------------------------------------


def test_fr7_9_rows_expand_accordion_style(qtbot, window: MainWindow, runs) -> None:
    """Two expandable rows (legacy data can hold them; the view must not care)."""
    from datetime import UTC, datetime

    from dmdesk.domain.models import RunView

    now = datetime.now(UTC)

    def view_of(i: int, status: str) -> RunView:
        return RunView(
            id=i,
            status=RunStatus(status),
            total_chunks=10,
            processed_chunks=3,
            pair_count=3,
            error_message="boom" if "failed" in status else None,
            deeplake_job_id=None,
            metrics=None,
            settings=None,
            created_at=now,
            updated_at=now,
            heartbeat_at=now,
        )

    model, view = window.page.history_model, window.page.history
    model.set_runs(
        [view_of(3, "generating_failed"), view_of(2, "training_failed"), view_of(1, "completed")]
    )
    click_row(qtbot, view, 3)
    assert view.expanded_run_id() == 3
    click_row(qtbot, view, 2)  # opening another closes the first
    assert view.expanded_run_id() == 2
    assert not view.isExpanded(model.row_of(3)) and view.isExpanded(model.row_of(2))
    click_row(qtbot, view, 2)  # clicking the open row closes it
    assert view.expanded_run_id() is None and not view.isExpanded(model.row_of(2))
    click_row(qtbot, view, 1)  # completed rows do not expand
    assert view.expanded_run_id() is None and model.rowCount(model.row_of(1)) == 0


@pytest.mark.parametrize("status", ["completed", "generated"])
def test_fr7_9_terminal_rows_do_not_expand(qtbot, window: MainWindow, ctx, status: str) -> None:
    run_id = insert_run(ctx, status)
    # (a generated run without any approved pair opens, with Delete: tests/ui/test_no_dead_end)
    insert_pairs(ctx, run_id, ["c1"], approved=True)
    window.page.refresh()
    click_row(qtbot, window.page.history, run_id)
    assert window.page.history.expanded_run_id() is None
    assert window.page.history.actions_widget(run_id) is None


def test_history_model_passes_qtmodeltester(qtmodeltester, window: MainWindow, ctx) -> None:
    insert_run(ctx, "completed")
    insert_run(ctx, "generating_failed")
    window.page.refresh()
    qtmodeltester.check(window.page.history_model, force_py=True)


def test_a_completed_run_shows_recall_before_and_after_as_chart_and_numbers(
    qtbot, window: MainWindow, ctx
) -> None:
    from sqlalchemy import update

    from dmdesk.db.models import TrainingRun

    run_id = insert_run(ctx, "completed")
    metrics = {
        "before": {
            "recall@1": 0.2,
            "recall@3": 0.3,
            "recall@5": 0.35,
            "recall@10": 0.4,
            "mrr": 0.25,
        },
        "after": {
            "recall@1": 0.5,
            "recall@3": 0.6,
            "recall@5": 0.65,
            "recall@10": 0.7,
            "mrr": 0.55,
        },
        "heldout_pairs": 40,
        "evaluated_on": "held-out pairs",
    }
    with ctx.engine.begin() as c:
        c.execute(update(TrainingRun).values(metrics=metrics))
    window.page.refresh()
    details = window.page.details
    assert not details.isVisible()
    click_row(qtbot, window.page.history, run_id)
    assert details.isVisible()
    assert details.chart.values[3] == ("recall@10", 0.4, 0.7)
    assert "recall@10 0.400 → 0.700" in details.numbers.text()
    assert "40 held-out pairs" in details.title.text()
    assert window.page.history.expanded_run_id() is None  # completed rows still do not expand


def test_a_cell_that_grows_widens_its_column_instead_of_being_cut_off(
    qtbot, ctx: ServiceContext
) -> None:
    """Issue 26: at the default size the Pairs column read "11 (0 approv…": columns were fitted
    at a reset only, and a run's pairs grow after it."""
    from dmdesk.ui.history_model import COL_PAIRS

    insert_run(ctx, "generating", owner="other-process")
    w = MainWindow(ctx)
    qtbot.addWidget(w)
    w.show()
    model, view = w.page.history_model, w.page.history
    run = model.run_at(model.index(0, 0))
    assert run is not None
    model.update_run(run.model_copy(update={"pair_count": 123_456, "approved_count": 120_000}))
    cell = model.index(0, COL_PAIRS)
    assert cell.data() == "123456 (120000 approved)"
    text_width = view.fontMetrics().horizontalAdvance(cell.data())
    assert view.columnWidth(COL_PAIRS) > text_width
