"""Issue 10 in the window: the review dialog's verdicts, counts, sorting and keys; "Approve All"
leaves flagged pairs and rejections alone; the search box compares without and with Deep Memory;
a completed run's details say whether its model is used, and the admin switches it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox
from sqlalchemy import text, update

from dmdesk.db.models import TrainingRun
from dmdesk.deepmemory import adapters
from dmdesk.services import activation, retrieval
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.testing.llm_server import EMBED_DIM
from dmdesk.ui.main_window import MainWindow
from dmdesk.ui.review_dialog import COL_VERDICT
from tests.conftest import chunk_ids
from tests.helpers import insert_pairs, insert_run
from tests.ui.conftest import click_row
from tests.ui.test_workflow import click

FLAGGED = {"chunk-00001": "generic: 14 chunks match about as well", "chunk-00004": "malformed"}


def generated_run_with_verdicts(ctx: ServiceContext) -> int:
    run_id = insert_run(ctx, "generated", total=6, processed=6)
    insert_pairs(ctx, run_id, chunk_ids(6))
    with ctx.engine.begin() as c:
        for cid, flags in FLAGGED.items():
            c.execute(
                text(
                    "UPDATE deep_memory_training_pairs SET flags = :f, approved = false "
                    "WHERE chunk_id = :c"
                ),
                {"f": flags, "c": cid},
            )
    return run_id


def open_review(qtbot, window: MainWindow, run_id: int):
    page = window.page
    page.refresh()
    click(qtbot, page.workflow.review_button)
    dialog = page.review_dialog
    qtbot.waitUntil(lambda: dialog.approve_all_button.isEnabled(), timeout=10_000)
    return dialog


def row_of(dialog, chunk_id: str) -> int:
    """The view row (through the sort proxy) of a chunk's pair."""
    for row in range(dialog.proxy.rowCount()):
        source = dialog.proxy.mapToSource(dialog.proxy.index(row, 0)).row()
        if dialog.model.pairs[source].chunk_id == chunk_id:
            return row
    raise AssertionError(chunk_id)


def test_review_shows_verdicts_and_approve_all_leaves_flagged_and_rejected_pairs(
    qtbot, window: MainWindow, ctx: ServiceContext
) -> None:
    run_id = generated_run_with_verdicts(ctx)
    dialog = open_review(qtbot, window, run_id)
    verdicts = {
        p.chunk_id: dialog.model.index(i, COL_VERDICT).data()
        for i, p in enumerate(dialog.model.pairs)
    }
    assert verdicts["chunk-00001"] == "⚑ generic: 14 chunks match about as well"
    assert verdicts["chunk-00000"] == "ok"
    assert dialog.counts_label.text() == "0 approved · 2 rejected · 2 flagged · 4 not reviewed"
    dialog.table.selectRow(row_of(dialog, "chunk-00002"))
    click(qtbot, dialog.reject_button)  # the admin rejects a clean pair
    click(qtbot, dialog.approve_all_button)
    got = {p.chunk_id: p.approved for p in TrainingRunService(ctx).list_pairs(run_id)}
    assert got == {
        "chunk-00000": True,
        "chunk-00001": False,
        "chunk-00002": False,
        "chunk-00003": True,
        "chunk-00004": False,
        "chunk-00005": True,
    }
    assert dialog.counts_label.text() == "3 approved · 3 rejected · 2 flagged · 0 not reviewed"
    dialog.include_flagged.setChecked(True)
    click(qtbot, dialog.approve_all_button)
    got = {p.chunk_id: p.approved for p in TrainingRunService(ctx).list_pairs(run_id)}
    assert got["chunk-00001"] is True and got["chunk-00004"] is True
    assert got["chunk-00002"] is False  # never the admin's own rejection… of a clean pair
    dialog.reject()


def test_review_keys_a_and_r_work_and_enter_approves_nothing(
    qtbot, window: MainWindow, ctx: ServiceContext
) -> None:
    run_id = generated_run_with_verdicts(ctx)
    dialog = open_review(qtbot, window, run_id)
    dialog.table.setFocus()
    start = row_of(dialog, "chunk-00003")
    dialog.table.selectRow(start)
    qtbot.keyClick(dialog.table, Qt.Key.Key_Return)
    qtbot.keyClick(dialog.table, Qt.Key.Key_Enter)
    assert next(p for p in dialog.model.pairs if p.chunk_id == "chunk-00003").approved is None
    assert dialog.isVisible()
    assert dialog.table.currentIndex().row() == start + 2  # Enter goes to the next pair
    dialog.table.selectRow(start)
    qtbot.keyClick(dialog.table, Qt.Key.Key_A)
    assert next(p for p in dialog.model.pairs if p.chunk_id == "chunk-00003").approved is True
    dialog.table.selectRow(row_of(dialog, "chunk-00005"))
    qtbot.keyClick(dialog.table, Qt.Key.Key_R)
    got = {p.chunk_id: p.approved for p in TrainingRunService(ctx).list_pairs(run_id)}
    assert got["chunk-00003"] is True and got["chunk-00005"] is False
    dialog.reject()


def test_the_review_is_driven_by_keyboard_alone_a_and_r_move_on(
    qtbot, window: MainWindow, ctx: ServiceContext
) -> None:
    """Issue 26: A then R acted on the same row, the selection never moved on, and the keys
    needed a click in the table first."""
    run_id = generated_run_with_verdicts(ctx)
    dialog = open_review(qtbot, window, run_id)
    qtbot.waitUntil(lambda: dialog.table.hasFocus(), timeout=3000)  # no click needed
    order = [
        dialog.model.pairs[dialog.proxy.mapToSource(dialog.proxy.index(r, 0)).row()]
        for r in range(dialog.proxy.rowCount())
    ]
    for key in (Qt.Key.Key_A, Qt.Key.Key_R, Qt.Key.Key_A):
        qtbot.keyClick(dialog.table, key)
    qtbot.keyClick(dialog.table, Qt.Key.Key_Down)
    qtbot.keyClick(dialog.table, Qt.Key.Key_R)
    got = {p.id: p.approved for p in TrainingRunService(ctx).list_pairs(run_id)}
    assert [got[p.id] for p in order[:5]] == [True, False, True, order[3].approved, False]
    assert dialog.table.currentIndex().row() == 5
    assert order[5].question in dialog.chunk_view.toPlainText()  # the pane follows
    dialog.reject()


def test_show_flagged_first_sorts_the_flagged_pairs_to_the_top(
    qtbot, window: MainWindow, ctx: ServiceContext
) -> None:
    run_id = generated_run_with_verdicts(ctx)
    dialog = open_review(qtbot, window, run_id)
    assert row_of(dialog, "chunk-00000") == 0
    dialog.flagged_first.setChecked(True)
    assert {row_of(dialog, "chunk-00001"), row_of(dialog, "chunk-00004")} == {0, 1}
    dialog.flagged_first.setChecked(False)
    assert row_of(dialog, "chunk-00000") == 0
    dialog.reject()


def active_adapter_for(ctx: ServiceContext, run_id: int) -> None:
    """A saved, activated adapter for the window's store: a random rotation, so the lists with
    and without it differ."""
    rng = np.random.default_rng(5)
    rotation, _ = np.linalg.qr(rng.normal(size=(EMBED_DIM, EMBED_DIM)))
    store = ctx.config.vector_store_path
    adapters.save_adapter(ctx.config.data_dir, run_id, rotation, store, "openai:test", {})
    adapters.activate(ctx.config.data_dir, run_id, store)


def test_the_search_box_shows_results_without_and_with_deep_memory(
    qtbot, window: MainWindow, ctx: ServiceContext
) -> None:
    card = window.page.search_card
    card.query.setText("topic number 7 in detail")
    with qtbot.waitSignal(card.button.clicked, timeout=1000):
        click(qtbot, card.button)
    qtbot.waitUntil(lambda: card.button.isEnabled(), timeout=30_000)
    assert card.plain.topLevelItemCount() == 5
    assert card.with_dm.topLevelItem(0).text(3) == "No Deep Memory is in use for this store."
    assert "chunk" in card.plain.topLevelItem(0).text(3).lower()

    active_adapter_for(ctx, 7)
    click(qtbot, card.button)
    qtbot.waitUntil(lambda: card.button.isEnabled(), timeout=30_000)
    assert card.plain.topLevelItemCount() == card.with_dm.topLevelItemCount() == 5
    marks = [card.with_dm.topLevelItem(i).text(1) for i in range(5)]
    assert any(marks)  # a random rotation reorders the top 5
    assert "places differ with Deep Memory" in card.status.text()


def test_closing_the_window_during_a_search_does_not_wait_for_it(
    qtbot, dmdesk_window, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 24: the close waited up to 15 s on the GUI thread for a running search (a first
    search loads the embedding model). The search here holds until after the close; the close
    must end with no thread of the window left running, and the search's late result is
    dropped."""
    release = threading.Event()
    real = retrieval.compare

    def slow(ctx: ServiceContext, query: str, k: int) -> object:
        release.wait(60)
        return real(ctx, query, k)

    monkeypatch.setattr(retrieval, "compare", slow)
    win = dmdesk_window(chunks=5)
    card = win.page.search_card
    card.query.setText("topic number 2")
    click(qtbot, card.button)
    assert card.busy and not card.button.isEnabled()
    try:
        assert win.close(timeout_ms=3_000), "a thread of the window ran on after the close"
        assert not card.busy
    finally:
        release.set()
    qtbot.wait(200)  # the search's thread ends on its own; nothing reaches the closed window


def completed_run(ctx: ServiceContext) -> int:
    run_id = insert_run(ctx, "completed")
    metrics = {
        "backend": "local",
        "before": {"recall@1": 0.2, "recall@10": 0.4, "mrr": 0.25},
        "after": {"recall@1": 0.22, "recall@10": 0.41, "mrr": 0.26},
        "heldout_pairs": 12,
        "evaluated_on": "held-out pairs",
        "activation": {
            "activated": False,
            "reason": "not activated: no measurable gain (held-out MRR 0.250 → 0.260 …)",
            "ci": [-0.05, 0.07],
            "pairs": 12,
            "small_sample": True,
        },
    }
    with ctx.engine.begin() as c:
        c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(metrics=metrics))
    rotation = np.eye(EMBED_DIM)
    adapters.save_adapter(
        ctx.config.data_dir, run_id, rotation, ctx.config.vector_store_path, "x", metrics
    )
    return run_id


def test_details_say_whether_the_model_is_used_and_the_admin_switches_it(
    qtbot, window: MainWindow, ctx: ServiceContext
) -> None:
    run_id = completed_run(ctx)
    page = window.page
    page.refresh()
    assert page.history_model.index(0, 1).data() == "Completed — not in use"
    click_row(qtbot, page.history, run_id)
    details = page.details
    assert details.isVisible()
    assert "Search does not use this model" in details.model_state.text()
    assert "no measurable gain" in details.model_state.text()
    assert (
        details.warning.isVisible() and "small sample: 12 held-out pairs" in details.warning.text()
    )
    assert "-0.050…+0.070" in details.warning.text()
    click(qtbot, details.use_button)
    assert activation.active_run_id(ctx) == run_id
    assert "✓ Search uses this model" in details.model_state.text()
    assert page.history_model.index(0, 1).data() == "Completed — model in use"
    assert details.stop_using_button.isVisible() and not details.use_button.isVisible()
    click(qtbot, details.stop_using_button)
    assert activation.active_run_id(ctx) is None
    assert "Search does not use this model" in details.model_state.text()


def test_export_model_from_the_details_writes_the_folder_off_the_gui_thread(
    qtbot, window: MainWindow, ctx: ServiceContext, tmp_path, monkeypatch
) -> None:
    """Export model… in a completed local run's details: the admin names a new folder, the
    model is written there (this store's embedding is not the bundled encoder, so the transform
    alone) and a message says how an application loads it."""
    from safetensors.numpy import load_file

    run_id = completed_run(ctx)
    page = window.page
    page.refresh()
    click_row(qtbot, page.history, run_id)
    button = page.details.export_button
    assert button.isVisible()
    dest = tmp_path / "exported-model"
    monkeypatch.setattr(page, "choose_export_folder", lambda _run_id: str(dest))
    click(qtbot, button)
    qtbot.waitUntil(
        lambda: page.findChild(QMessageBox, "exportDoneBox") is not None, timeout=30_000
    )
    box = page.findChild(QMessageBox, "exportDoneBox")
    assert str(dest) in box.text() and "deep_memory.safetensors" in box.text()
    assert np.array_equal(
        load_file(str(dest / "deep_memory.safetensors"))["weight"], np.eye(EMBED_DIM)
    )
    assert f"run #{run_id}" in (dest / "README.md").read_text()
    box.accept()
    # a second export into the same folder is refused with the reason, nothing overwritten
    click(qtbot, button)
    qtbot.waitUntil(lambda: page.findChild(QMessageBox, "errorBox") is not None, timeout=30_000)
    assert "not an empty folder" in page.findChild(QMessageBox, "errorBox").text()
    assert button.isEnabled() and button.text() == "Export model…"


def test_a_cloud_run_has_no_export_button(qtbot, window: MainWindow, ctx: ServiceContext) -> None:
    run_id = completed_run(ctx)
    with ctx.engine.begin() as c:
        metrics = {"backend": "deeplake", "before": {"mrr": 0.2}, "after": {"mrr": 0.3}}
        c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(metrics=metrics))
    page = window.page
    page.refresh()
    click_row(qtbot, page.history, run_id)
    assert page.details.isVisible() and not page.details.export_button.isVisible()


def test_file_evaluation_set_saves_real_questions_off_the_gui_thread(
    qtbot, window: MainWindow, ctx: ServiceContext, tmp_path, monkeypatch
) -> None:
    """Issue 25: File → Evaluation set… reads a CSV of question,chunk_id, measures it without
    Deep Memory and keeps it as the store's evaluation set; a bad file gets an error dialog."""
    from PySide6.QtGui import QAction

    from dmdesk.deepmemory import evalset
    from dmdesk.testing.plugin import chunk_texts

    csv = tmp_path / "real.csv"
    texts = chunk_texts(200)
    csv.write_text(
        "question,chunk_id\n" + "".join(f'"{texts[i]}",{chunk_ids(200)[i]}\n' for i in range(20))
    )
    page = window.page
    monkeypatch.setattr(page, "choose_evaluation_files", lambda: (str(csv), None))
    action = window.findChild(QAction, "evaluationSetAction")
    action.trigger()
    qtbot.waitUntil(
        lambda: page.findChild(QMessageBox, "evaluationSavedBox") is not None, timeout=30_000
    )
    box = page.findChild(QMessageBox, "evaluationSavedBox")
    assert "20 real questions from real.csv" in box.text()
    assert "Without Deep Memory: recall@1" in box.text() and "judged on these" in box.text()
    saved = evalset.load(ctx.config.data_dir, ctx.config.vector_store_path)
    assert saved is not None and len(saved) == 20
    box.accept()
    csv.write_text("a question without its chunk\n")
    action.trigger()
    qtbot.waitUntil(lambda: page.findChild(QMessageBox, "errorBox") is not None, timeout=30_000)
    assert "needs a question and a chunk id" in page.findChild(QMessageBox, "errorBox").text()


def test_details_show_both_verdicts_or_say_they_rest_on_synthetic_questions(
    qtbot, window: MainWindow, ctx: ServiceContext
) -> None:
    from dmdesk.deepmemory.guard import NO_EVALUATION_SET, decide

    run_id = completed_run(ctx)
    page = window.page
    page.refresh()
    click_row(qtbot, page.history, run_id)
    label = page.details.verdicts
    assert label.isVisible() and NO_EVALUATION_SET in label.text()

    metrics = {
        "backend": "local",
        "before": {"recall@1": 0.2, "mrr": 0.3},
        "after": {"recall@1": 0.3, "mrr": 0.4},
        "evaluated_on": "held-out pairs",
        "heldout_pairs": 40,
        "heldout_ranks": {"before": [3] * 40, "after": [1] * 40},
        "evaluation_ranks": {"before": [1] * 30, "after": [2] * 30},
    }
    metrics["activation"] = decide(metrics)
    with ctx.engine.begin() as c:
        c.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(metrics=metrics))
    page.refresh()
    click_row(qtbot, page.history, run_id)
    text_shown = label.text()
    assert "Held-out synthetic questions (40): MRR 0.333 → 1.000" in text_shown
    assert "Evaluation set (30 real questions): MRR 1.000 → 0.500" in text_shown
    assert "worse on the evaluation set" in page.details.model_state.text()
