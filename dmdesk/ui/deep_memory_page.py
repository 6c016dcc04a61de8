"""The Deep Memory page: header, FR-6 gate, and the three cards (Settings, Training Workflow,
Training History). Thin: every rule is a service call; this page only shows state and routes
clicks. Long work runs in a JobWorker thread; DB reads here are single small queries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal, Slot
from PySide6.QtWidgets import (
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from dmdesk.config import DmdeskConfig
from dmdesk.domain.errors import DmdeskError
from dmdesk.domain.models import RunView
from dmdesk.domain.status import FAILED, RunStatus
from dmdesk.services import activation, retrieval
from dmdesk.services import settings as settings_service
from dmdesk.services.context import ServiceContext
from dmdesk.services.estimate import estimate_with
from dmdesk.services.export import export_model, model_format_for
from dmdesk.services.runs import TrainingRunService
from dmdesk.ui import aio
from dmdesk.ui.history_model import COL_PAIRS, COL_PROGRESS, RunHistoryModel
from dmdesk.ui.history_view import HistoryView
from dmdesk.ui.jobs import JobController
from dmdesk.ui.live import RunWatcher
from dmdesk.ui.metrics_chart import RunDetails
from dmdesk.ui.resources import icon
from dmdesk.ui.review_dialog import ReviewDialog
from dmdesk.ui.search_card import SearchCard
from dmdesk.ui.settings_card import SettingsCard
from dmdesk.ui.workflow_panel import WorkflowPanel

log = logging.getLogger(__name__)


class DeepMemoryPage(QWidget):
    refreshed = Signal()  # after every full page refresh
    job_finished = Signal(object)  # final RunView of a job run from this page (or None)

    def __init__(self, ctx: ServiceContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("deepMemoryPage")
        self.ctx = ctx
        self.runs = TrainingRunService(ctx)
        self.jobs = JobController(ctx, self)  # the job this window runs, if any
        self.jobs.started.connect(self._on_job_started)
        self.jobs.run_started.connect(self._on_job_run_started)
        self.jobs.progress_changed.connect(self._on_job_progress)
        self.jobs.refused.connect(self._on_job_refused)
        self.jobs.ended.connect(self._on_job_ended)
        self.review_dialog: ReviewDialog | None = None

        outer = QVBoxLayout(self)
        # Header: always visible (FR-6.4).
        header = QWidget()
        header.setObjectName("pageHeader")
        hl = QHBoxLayout(header)
        hl.setContentsMargins(0, 0, 0, 0)
        brain = QLabel()
        brain.setObjectName("brainIcon")
        brain.setPixmap(icon("brain").pixmap(36, 36))
        title = QLabel("Deep Memory Training")
        title.setObjectName("pageTitle")
        title.setStyleSheet("font-size: 20px; font-weight: 600;")
        hl.addWidget(brain)
        hl.addWidget(title)
        hl.addStretch(1)
        outer.addWidget(header)

        # The gate warning (FR-6.3).
        self.gate_warning = QLabel()
        self.gate_warning.setObjectName("gateWarning")
        self.gate_warning.setWordWrap(True)
        self.gate_warning.setStyleSheet(
            "background: #fef3c7; border: 1px solid #f59e0b; border-radius: 6px; padding: 10px;"
            "color: #78350f;"
        )
        outer.addWidget(self.gate_warning)

        # The cards.
        self.cards = QWidget()
        self.cards.setObjectName("cards")
        cl = QVBoxLayout(self.cards)
        cl.setContentsMargins(0, 0, 0, 0)
        self.settings_card = SettingsCard(ctx.config)
        self.workflow = WorkflowPanel()
        self.history_model = RunHistoryModel(self)
        self.history = HistoryView(self.history_model)
        history_card = QGroupBox("Training History")
        history_card.setObjectName("historyCard")
        self.details = RunDetails()
        hc = QVBoxLayout(history_card)
        self.live_label = QLabel()  # the live view's state, only when it is not live
        self.live_label.setObjectName("liveStateLabel")
        self.live_label.setStyleSheet("color: #6b7280;")  # quiet: nothing is wrong with a run
        self.live_label.hide()
        hc.addWidget(self.live_label)
        hc.addWidget(self.history)
        hc.addWidget(self.details)
        self.usage_label = QLabel()
        self.usage_label.setObjectName("runUsage")
        self.usage_label.setWordWrap(True)
        self.usage_label.hide()
        hc.addWidget(self.usage_label)
        self.search_card = SearchCard(ctx)
        cl.addWidget(self.workflow)
        cl.addWidget(history_card, 1)
        cl.addWidget(self.search_card)
        cl.addWidget(self.settings_card)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.cards)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        self.scroll_area = scroll
        outer.addWidget(scroll, 1)
        self._filler = QWidget()  # takes the slack when only the header and warning show
        outer.addWidget(self._filler, 1)

        self.settings_card.settings_saved.connect(self._on_settings_saved)
        self.workflow.generate_requested.connect(self._on_generate_requested)
        self.workflow.stop_requested.connect(self._on_stop_requested)
        self.workflow.review_requested.connect(self._on_review_requested)
        self.workflow.train_requested.connect(self._on_train_requested)
        self.history.refresh_requested.connect(self._on_refresh_requested)
        self.history.proceed_requested.connect(self._on_proceed_requested)
        self.history.remove_requested.connect(self._on_remove_requested)
        self.history.selectionModel().currentRowChanged.connect(self._on_history_current_changed)
        self.history_model.modelReset.connect(self._on_history_reset)
        self.details.use_requested.connect(self._on_use_requested)
        self.details.stop_using_requested.connect(self._on_stop_using_requested)
        self.details.export_requested.connect(self._on_export_requested)
        self.refresh()
        # Live: changes by any process show within about a second (dmdesk.ui.live).
        self.watcher = RunWatcher(ctx, parent=self)
        self.watcher.runs_loaded.connect(self.apply_runs)
        self.watcher.health_changed.connect(self._on_live_health)
        self.watcher.start()
        # F5 is the main window's View → Refresh (one owner of the key: two would be ambiguous).

    # -- state ---------------------------------------------------------------------------------

    @property
    def job_running(self) -> bool:
        return self.jobs.running

    @Slot(str)
    def _on_live_health(self, health: str) -> None:
        self.live_label.setText(health)
        self.live_label.setVisible(bool(health))

    @Slot()
    def show_settings(self) -> None:
        """File → Settings…: the Settings card in view, its first field focused."""
        self.scroll_area.ensureWidgetVisible(self.settings_card, 0, 0)  # as much as fits
        self.scroll_area.ensureWidgetVisible(self.settings_card.store_edit)  # its first field
        self.settings_card.store_edit.setFocus()

    @Slot()
    def reload(self) -> None:
        """F5: read everything again now, changed or not."""
        self.refresh()
        self.watcher.poll(force=True)

    @Slot(object)
    def apply_runs(self, runs: list[RunView]) -> None:
        """The runs as the database has them now: only rows that changed are updated (the open
        row and the selection stay), and the Workflow card follows from the same data. This
        window's own job row is left to its progress signals, which are ahead of the table."""
        if self.scroll_area.isHidden():
            return  # the gate warning is showing: nothing of the runs is
        current = self.history_model.runs()
        if [r.id for r in current] != [r.id for r in runs]:
            self.history_model.set_runs(runs)
        else:
            own = self.jobs.run_id if self.job_running else None
            for old, new in zip(current, runs, strict=True):
                if new != old and new.id != own:
                    self.history_model.update_run(new)
        shown = self.history_model.run_at(self.history.currentIndex())
        if shown is not None:
            self._show_details(shown)
        self._show_blocking(runs)

    def _show_blocking(self, runs: list[RunView]) -> None:
        """The Workflow card from the same runs as the History: the oldest unfinished run
        blocks (runs come newest first), as the service says."""
        blocking = next((r for r in reversed(runs) if r.status is not RunStatus.COMPLETED), None)
        self.workflow.set_state(blocking, job_running=self.job_running, runs=runs)

    def refresh(self) -> None:
        """Reload everything the page shows (FR-7.6)."""
        # The gate follows from the configuration alone: no keyring read on the GUI thread.
        _, available, reason = settings_service.availability(self.ctx.config)
        self.gate_warning.setVisible(not available)
        self.scroll_area.setVisible(available)
        self._filler.setVisible(not available)
        if not available:
            self.gate_warning.setText(reason or "Deep Memory is not available.")
            self.refreshed.emit()
            return
        try:
            runs = self.runs.list_runs()
        except DmdeskError as exc:
            self.show_error("Cannot read the training history", exc.message)
            runs = []
        self.history_model.set_runs(runs)
        self._show_blocking(runs)
        self._update_estimate()
        watcher = getattr(self, "watcher", None)  # (the first refresh comes before it exists)
        if watcher is not None:
            watcher.invalidate()  # a read it has under way is older than this one
        self.refreshed.emit()

    def show_error(self, title: str, message: str) -> QMessageBox:
        """A window-modal message that does not block the event loop."""
        box = QMessageBox(
            QMessageBox.Icon.Warning, title, message, QMessageBox.StandardButton.Ok, self
        )
        box.setObjectName("errorBox")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        return box

    # -- jobs ----------------------------------------------------------------------------------

    def _start_job(
        self,
        phase: str,
        prepare: Callable[[TrainingRunService], RunView],
        run_id: int | None = None,
    ) -> None:
        if not self.jobs.start(phase, prepare, run_id):
            self.show_error("A run is in progress", "Wait for it to finish or stop it first.")

    def stop_job(self, wait: bool = False) -> None:
        if self.jobs.stop():
            self.workflow.show_stopping(
                "Stopping… (waiting for the current step to finish; the run stays resumable)"
            )
        if wait:
            self.jobs.wait()

    def hand_over_job(self) -> None:
        """Let the running job go on in a detached dmdesk process (closing the window with
        "Keep running in the background"): this worker stops without touching the run, and
        once it has, `dmdesk _job` takes the run over with this window's owner token."""
        if self.jobs.hand_over():
            self.workflow.show_stopping("Handing the run over to a background process…")

    @Slot(str, object)
    def _on_job_started(self, phase: str, run_id: int | None) -> None:
        self.workflow.job_started(phase, run_id)
        self.workflow.set_state(None, job_running=True)

    @Slot(object)
    def _on_job_run_started(self, _run: RunView) -> None:
        self.refresh()

    @Slot(int, int, int, str, str)
    def _on_job_progress(
        self, processed: int, total: int, pairs: int, phase: str, msg: str
    ) -> None:
        self.workflow.show_progress(processed, total, phase, msg)
        run_id = self.jobs.run_id
        if phase == "generation" and run_id is not None:
            run = self.history_model.run_at(self.history_model.row_of(run_id))
            if run is not None:
                self.history_model.update_run(
                    run.model_copy(
                        update={
                            "processed_chunks": processed,
                            "total_chunks": total,
                            "pair_count": pairs,
                        }
                    ),
                    columns=(COL_PROGRESS, COL_PAIRS),
                )

    @Slot(str)
    def _on_job_refused(self, message: str) -> None:
        self.show_error("The request was refused", message)

    @Slot(object, bool, bool)
    def _on_job_ended(self, final: RunView | None, stopped: bool, handed_over: bool) -> None:
        self.workflow.job_ended(final, stopped=stopped, handed_over=handed_over)
        self.refresh()
        if final is not None and final.status in FAILED:
            # Show the failed row open, with Proceed and Delete (Scenario 1/2 notification).
            self.history.open_run(final.id)
        self.job_finished.emit(final)

    @Slot(QModelIndex, QModelIndex)
    def _show_details(self, run: RunView | None) -> None:
        """The selected run's details: its metrics, and what its LLM calls used and cost."""
        self.details.show_run(run)
        usage = run.usage_text if run is not None else None
        self.usage_label.setText(f"Run #{run.id} LLM usage: {usage}" if run and usage else "")
        self.usage_label.setVisible(bool(usage))

    def _on_history_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._show_details(self.history_model.run_at(current))

    @Slot()
    def _on_history_reset(self) -> None:
        self._show_details(None)

    # -- requests ------------------------------------------------------------------------------

    @Slot()
    def _on_generate_requested(self) -> None:
        self._start_job("generation", lambda runs: runs.start_generation())

    @Slot()
    def _on_stop_requested(self) -> None:
        self.stop_job()

    @Slot(int)
    def _on_proceed_requested(self, run_id: int) -> None:
        run = self.history_model.run_at(self.history_model.row_of(run_id))
        phase = (
            "training"
            if run is not None and run.status is RunStatus.TRAINING_FAILED
            else "generation"
        )
        self.history.collapse_all()  # FR-7.3: the row closes, the progress shows in Workflow
        self._start_job(phase, lambda runs: runs.proceed(run_id), run_id)

    @Slot(int)
    def _on_train_requested(self, run_id: int) -> None:
        self._start_job("training", lambda runs: runs.start_training(run_id), run_id)

    @Slot(int)
    def _on_refresh_requested(self, run_id: int) -> None:
        """FR-7.8: re-read one run and update only its row."""
        try:
            run = self.runs.get_run(run_id)
        except DmdeskError as exc:
            self.show_error("Cannot refresh the run", exc.message)
            self.refresh()
            return
        self.history_model.update_run(run)
        self._show_blocking(self.history_model.runs())  # the card follows the row it refreshed

    @Slot(int)
    def _on_remove_requested(self, run_id: int) -> None:
        """FR-7.5: ask first; FR-7.6: refresh after."""
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Delete run",
            f"Delete run #{run_id} and all its training pairs? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            self,
        )
        box.setObjectName("confirmRemoveBox")
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda code: self._on_remove_answered(run_id, code))
        box.open()

    def _on_remove_answered(self, run_id: int, code: int) -> None:
        if code != QMessageBox.StandardButton.Yes:
            return
        try:
            self.runs.remove(run_id)
        except DmdeskError as exc:
            self.show_error("Cannot delete the run", exc.message)
        self.refresh()

    @Slot(int)
    def _on_use_requested(self, run_id: int) -> None:
        """The admin chooses this run's model for search (whatever the guard said)."""

        try:
            activation.activate(self.ctx, self.runs.get_run(run_id))
        except DmdeskError as exc:
            self.show_error("Cannot use this model", exc.message)
        self._reshow_details(run_id)

    @Slot()
    def _on_stop_using_requested(self) -> None:

        previous = activation.deactivate(self.ctx)
        if previous is not None:
            self._reshow_details(previous)

    def choose_export_folder(self, run_id: int) -> str | None:
        """Ask for the new folder the model goes to (None: cancelled)."""
        start = str(Path.home() / f"deep-memory-run-{run_id}")
        path, _ = QFileDialog.getSaveFileName(
            self, f"Export run #{run_id}'s model to a new folder", start
        )
        return path or None

    @Slot(int)
    def _on_export_requested(self, run_id: int) -> None:
        dest = self.choose_export_folder(run_id)
        if dest:
            self._export_task = aio.spawn(self._export(run_id, Path(dest)), name="export model")

    async def _export(self, run_id: int, dest: Path) -> None:
        """Write the model off the GUI thread (loading and saving the encoder takes seconds)."""

        button = self.details.export_button
        button.setEnabled(False)
        button.setText("Exporting…")
        try:
            fmt = await aio.in_thread(model_format_for, self.ctx, run_id)
            await aio.in_thread(export_model, self.ctx, run_id, dest, fmt)
        except DmdeskError as exc:
            self.show_error("Cannot export the model", exc.message)
            return
        finally:
            button.setEnabled(True)
            button.setText("Export model…")
        how = (
            f'SentenceTransformer("{dest}") loads it; encode_query gives the query embeddings '
            "with Deep Memory."
            if fmt == "sentence-transformers"
            else "The store's embedding is an API model: the folder holds the transform "
            "(deep_memory.safetensors) to apply to its query embeddings."
        )
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Model exported",
            f"Run #{run_id}'s model is in {dest}.\n\n{how} Its README.md (the model card) and "
            "dmdesk's README (Using Deep Memory in your application) show the code.",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setObjectName("exportDoneBox")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def choose_evaluation_files(self) -> tuple[str, str | None] | None:
        """Ask for real questions: a CSV of question,chunk_id rows, or BEIR queries (JSON lines)
        and then their qrels (None: cancelled)."""
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Real questions for the evaluation set",
            str(Path.home()),
            "Questions (*.csv *.jsonl);;All files (*)",
        )
        if not path:
            return None
        if not path.endswith(".jsonl"):
            return path, None
        qrels, _ = QFileDialog.getOpenFileName(
            self,
            "Their answers: qrels (query-id, corpus-id, score)",
            str(Path(path).parent),
            "qrels (*.tsv);;All files (*)",
        )
        return (path, qrels) if qrels else None

    @Slot()
    def import_evaluation_set(self) -> None:
        """File → Evaluation set…: real questions become the store's evaluation set, which
        every later training run is judged on (dmdesk.deepmemory.evalset)."""
        chosen = self.choose_evaluation_files()
        if chosen:
            self._evaluation_task = aio.spawn(
                self._save_evaluation_set(*chosen), name="evaluation set"
            )

    async def _save_evaluation_set(self, path: str, qrels: str | None) -> None:
        """Read, measure and save off the GUI thread (the store's embeddings are read)."""

        def work() -> dict[str, Any]:
            questions, relevant = (
                retrieval.read_question_csv(Path(path))
                if qrels is None
                else retrieval.read_labelled(Path(path), Path(qrels))
            )
            return retrieval.evaluate(self.ctx, questions, relevant, [1, 10], save_as=path)

        try:
            result = await aio.in_thread(work)
        except DmdeskError as exc:
            self.show_error("Cannot save the evaluation set", exc.message)
            return
        plain = result["without"]
        skipped = result.get("skipped_queries", 0)
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Evaluation set saved",
            f"Saved as this store's evaluation set: {result['saved']}."
            + (f" {skipped} questions have no answer chunk in the store and were left out."
               if skipped else "")
            + f"\n\nWithout Deep Memory: recall@1 {plain['recall@1']:.3f}, recall@10 "
            f"{plain['recall@10']:.3f}, MRR {plain['mrr']:.3f}.\n\nEvery training run from now "
            "on is judged on these questions too: a model worse on them is never used.",
            QMessageBox.StandardButton.Ok,
            self,
        )  # fmt: skip
        box.setObjectName("evaluationSavedBox")
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()

    def _reshow_details(self, run_id: int) -> None:
        try:
            run = self.runs.get_run(run_id)
        except DmdeskError:
            self.refresh()
            return
        self.history_model.update_run(run)
        self._show_details(run)

    @Slot(int)
    def _on_review_requested(self, run_id: int) -> None:
        dialog = ReviewDialog(self.ctx, run_id, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.finished.connect(self._on_review_finished)
        dialog.open()
        self.review_dialog = dialog

    @Slot(int)
    def _on_review_finished(self, _code: int) -> None:
        self.review_dialog = None
        QTimer.singleShot(0, self.refresh)

    @Slot(int, int, str)
    def show_preparing(self, done: int, total: int, step: str) -> None:
        """The demo's store is being built behind the open window (dmdesk.ui.demo_build):
        Generate and the search wait for it; the History and the Settings work meanwhile."""
        self.workflow.show_preparing(done, total, step)
        self.search_card.setEnabled(False)

    def end_preparing(self, config: DmdeskConfig | None, error: str = "") -> None:
        """The build ended: with the store there, the page reads everything again."""
        self.workflow.end_preparing(error)
        if config is None:
            return
        self.search_card.setEnabled(True)
        self.settings_card.load(config)
        self._on_settings_saved(config)

    def _update_estimate(self) -> None:
        if self.workflow.preparing:
            return  # nothing to estimate before the store exists; end_preparing asks again
        """Estimate a new run (reads the store and the keyring: off the GUI thread)."""
        task = getattr(self, "_estimate_task", None)
        if task is not None and not task.done():
            task.cancel()  # the settings it was for may have changed
        self._estimate_task = aio.spawn(self._estimate(), name="workflow estimate")

    async def _estimate(self) -> None:

        try:
            est = await aio.in_thread(estimate_with, self.ctx)
        except Exception as exc:  # an unreadable store says so elsewhere (Generate, the gate)
            log.info("no estimate: %s", exc)
            self.workflow.show_estimate("")
            return
        self.workflow.show_estimate(est.text)

    def stop_tasks(self) -> None:
        """Cancel the page's own coroutines (the window is closing). An export already writing
        finishes in its thread (its folder is renamed into place whole, or not at all)."""
        for name in ("_estimate_task", "_export_task", "_evaluation_task"):
            task = getattr(self, name, None)
            if task is not None:
                task.cancel()

    @Slot(object)
    def _on_settings_saved(self, config: DmdeskConfig) -> None:
        self.ctx.config = config
        self.refresh()
