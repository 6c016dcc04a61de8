"""Training Workflow card: Generate, the active progress indicator, review and train (FR-7.11).

It holds no failed-run controls: Proceed and Delete live in the Training History rows.
"""

from __future__ import annotations

from PySide6.QtCore import Signal, Slot
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from dmdesk.domain.errors import STOPPED_BY_ADMIN, DmdeskError, GenerationBlocked
from dmdesk.domain.models import RunView
from dmdesk.domain.status import FAILED, RunStatus, phase_label

# A status in a sentence: words, not the database's names (`generating_failed`).
STATUS_PHRASE = {
    RunStatus.GENERATING: "is generating",
    RunStatus.GENERATED: "is generated",
    RunStatus.TRAINING: "is training",
    RunStatus.COMPLETED: "is completed",
    RunStatus.GENERATING_FAILED: "failed during generation",
    RunStatus.TRAINING_FAILED: "failed during training",
}
ATTENTION = "#92400e"  # amber: the admin has something to do
NEUTRAL = "#475569"  # slate: information
PHASE_TEXT = {"generation": "Generating questions", "training": "Training Deep Memory"}


def blocked_text(run: RunView) -> str:
    """FR-7.4: why Generate is disabled, naming the blocking run's status — a run the admin
    stopped reads as stopped, as its History row does."""
    stopped = run.status in FAILED and STOPPED_BY_ADMIN in (run.error_message or "")
    return blocked_message(run.id, run.status, run.approved_count, stopped=stopped)


def blocked_message(
    run_id: int, status: RunStatus | str, approved_count: int | None, *, stopped: bool = False
) -> str:
    """The window's words for a blocked generation: its buttons, not CLI commands (the error
    carries the facts; dmdesk.domain.errors.GenerationBlocked phrases them for the CLI)."""
    status = RunStatus(status)
    if status in FAILED:
        what = "Proceed with it or delete it in Training History below"
    elif status is RunStatus.GENERATED and approved_count == 0:
        what = "approve some of its pairs and train it, or delete it in Training History below"
    elif status is RunStatus.GENERATED:
        what = "review its pairs and train it first"
    elif status is RunStatus.GENERATING:
        what = "wait for its generation to finish"
    else:
        what = "wait for its training to finish"
    phrase = STATUS_PHRASE[status]
    if stopped:
        phrase = "was stopped during " + phase_label(status)
    return (
        f"Run #{run_id} {phrase}: a new generation can start only when every "
        f"run is completed or removed — {what}."
    )


def _next_step(blocking: RunView | None, runs: list[RunView] | None) -> str:
    """The review line when there is nothing to review: what comes next, from the runs."""
    if blocking is not None:
        if blocking.status is RunStatus.GENERATING:
            return f"Review and training follow when run #{blocking.id} has finished generating."
        if blocking.status in FAILED:
            return f"Run #{blocking.id} has to finish first: Proceed with it in Training History."
        return f"Run #{blocking.id} is training; its results appear in Training History."
    newest = runs[0] if runs else None
    if newest is not None and newest.status is RunStatus.COMPLETED:
        return (
            f"Run #{newest.id} is completed; its results are in Training History. Generate "
            "starts the next run."
        )
    return "Review and training follow a finished generation."


def user_message(exc: DmdeskError) -> str:
    """An error as the window says it."""
    if isinstance(exc, GenerationBlocked):
        return blocked_message(exc.run_id, exc.status, exc.approved_count)
    return exc.message


class WorkflowPanel(QGroupBox):
    generate_requested = Signal()
    stop_requested = Signal()
    review_requested = Signal(int)
    train_requested = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Training Workflow", parent)
        self.setObjectName("workflowCard")
        self._ended: tuple[int, RunStatus] | None = None  # what the last job's line describes
        # While the demo's store is built behind the open window: why Generate waits (and
        # whether that is a failure the admin must act on).
        self._preparing: tuple[str, bool] | None = None
        self._state: tuple[RunView | None, bool, list[RunView] | None] = (None, False, None)
        layout = QVBoxLayout(self)

        # 1. Generate
        row = QHBoxLayout()
        self.generate_button = QPushButton("Generate Training Data")
        self.generate_button.setObjectName("generateButton")
        self.generate_button.clicked.connect(self._on_generate_clicked)
        row.addWidget(self.generate_button)
        # What a new run would use and cost (dmdesk.services.estimate), beside the button.
        self.estimate_label = QLabel()
        self.estimate_label.setObjectName("generateEstimateLabel")
        self.estimate_label.setWordWrap(True)
        self.estimate_label.setStyleSheet("color: #475569;")
        keep = self.estimate_label.sizePolicy()
        keep.setRetainSizeWhenHidden(True)  # the button keeps its width when it is hidden
        self.estimate_label.setSizePolicy(keep)
        row.addWidget(self.estimate_label, 1)
        layout.addLayout(row)
        self.blocked_label = QLabel()
        self.blocked_label.setObjectName("generateBlockedLabel")
        self.blocked_label.setWordWrap(True)
        layout.addWidget(self.blocked_label)

        # the active progress indicator
        self.progress_box = QWidget()
        self.progress_box.setObjectName("progressBox")
        pl = QVBoxLayout(self.progress_box)
        pl.setContentsMargins(0, 0, 0, 0)
        self.progress_label = QLabel()
        self.progress_label.setObjectName("progressLabel")
        self.progress_label.setWordWrap(True)
        prow = QHBoxLayout()
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("progressBar")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop the run; it can be resumed later with Proceed")
        self.stop_button.clicked.connect(self._on_stop_clicked)
        prow.addWidget(self.progress_bar, 1)
        prow.addWidget(self.stop_button)
        pl.addWidget(self.progress_label)
        pl.addLayout(prow)
        layout.addWidget(self.progress_box)
        self.progress_box.hide()

        # 2. Review, 3. Train
        self.review_label = QLabel()
        self.review_label.setObjectName("reviewLabel")
        steps = QHBoxLayout()
        self.review_button = QPushButton("Review Pairs…")
        self.review_button.setObjectName("reviewButton")
        self.review_button.clicked.connect(self._on_review_clicked)
        self.train_button = QPushButton("Train Deep Memory")
        self.train_button.setObjectName("trainButton")
        self.train_button.clicked.connect(self._on_train_clicked)
        steps.addWidget(self.review_button)
        steps.addWidget(self.train_button)
        steps.addStretch(1)
        layout.addWidget(self.review_label)
        layout.addLayout(steps)
        self.set_state(None, job_running=False)

    # -- state ---------------------------------------------------------------------------------

    def set_state(
        self,
        blocking: RunView | None,
        *,
        job_running: bool,
        runs: list[RunView] | None = None,
    ) -> None:
        """Every line of the card from the current runs (newest first; the blocking run is the
        oldest unfinished one), each time they change — never left from an earlier moment. The
        running job's own progress line is the job's while it runs; the line a finished job
        left stays only while its run is still in the state it describes."""
        self._state = (blocking, job_running, runs)
        if not job_running and self._ended is not None and runs is not None:
            now = next((r for r in runs if r.id == self._ended[0]), None)
            if now is None or now.status is not self._ended[1]:
                self._ended = None
                self.progress_box.hide()
        self.generate_button.setEnabled(
            blocking is None and not job_running and self._preparing is None
        )
        self.estimate_label.setVisible(
            bool(self.estimate_label.text()) and self.generate_button.isEnabled()
        )
        if blocking is None and self._preparing is not None:
            text, failed = self._preparing
            self.blocked_label.setText(text)
            self.blocked_label.setStyleSheet(f"color: {ATTENTION if failed else NEUTRAL};")
            self.blocked_label.show()
        elif blocking is not None:
            self.blocked_label.setText(blocked_text(blocking))
            # Amber only when the blocking run waits for the admin (review, train, Proceed or
            # delete); a run at work is no alarm (issue 26).
            waits = blocking.status in FAILED or blocking.status is RunStatus.GENERATED
            self.blocked_label.setStyleSheet(f"color: {ATTENTION if waits else NEUTRAL};")
            self.blocked_label.show()
        else:
            self.blocked_label.clear()
            self.blocked_label.hide()
        generated = blocking is not None and blocking.status is RunStatus.GENERATED
        self.review_button.setEnabled(generated and not job_running)
        self.train_button.setEnabled(
            generated and not job_running and blocking is not None and blocking.approved_count > 0
        )
        if generated and blocking is not None:
            self.review_label.setText(
                f"Run #{blocking.id}: {blocking.pair_count} pairs, "
                f"{blocking.approved_count} approved. Approve pairs, then train."
            )
        else:
            self.review_label.setText(_next_step(blocking, runs))

    @property
    def preparing(self) -> bool:
        return self._preparing is not None

    def show_preparing(self, done: int, total: int, step: str) -> None:
        """The demo's store is being built: Generate waits, and the progress line says how far
        the build is (no Stop: the build ends when the window closes)."""
        self._preparing = (
            "Generate is ready once the demo knowledge base is built (Python's reference "
            "topics, embedded on this computer; about half a minute on the first start).",
            False,
        )
        self.progress_box.show()
        self.stop_button.hide()
        self.progress_bar.setStyleSheet("")
        # Busy (a moving bar) until the first chunks are embedded: loading the model takes
        # seconds, and "0 %" that long reads as stuck.
        self.progress_bar.setRange(0, total if done else 0)
        self.progress_bar.setValue(done)
        self.progress_label.setText(
            f"Preparing the demo knowledge base: {step}… {done}/{total}"
            if total
            else "Preparing the demo knowledge base…"
        )
        self._restate()

    def _restate(self) -> None:
        """The card again from the runs it last showed (the preparing state changed)."""
        blocking, job_running, runs = self._state
        self.set_state(blocking, job_running=job_running, runs=runs)

    def end_preparing(self, error: str = "") -> None:
        """The build ended: Generate follows the runs again, or says what failed and what to do."""
        self._preparing = (
            (
                f"The demo knowledge base could not be built: {error} Close dmdesk and start "
                "`dmdesk demo` again (the log says more).",
                True,
            )
            if error
            else None
        )
        self.progress_box.hide()
        self._restate()

    def show_estimate(self, text: str) -> None:
        """The estimate of a new run ("" hides it); shown while Generate can start one."""
        self.estimate_label.setText(text)
        self.estimate_label.setVisible(bool(text) and self.generate_button.isEnabled())

    def job_started(self, phase: str, run_id: int | None = None) -> None:
        self.progress_box.show()
        self.progress_bar.setStyleSheet("")
        self.stop_button.setEnabled(True)
        self.stop_button.show()
        self.progress_bar.setRange(0, 0)  # busy until the first report
        who = f"Run #{run_id}: " if run_id else ""
        self.progress_label.setText(f"{who}{PHASE_TEXT.get(phase, 'Starting')}…")

    def show_progress(self, processed: int, total: int, phase: str, message: str = "") -> None:
        self.progress_box.show()
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(processed)
        if phase == "generation":
            text = f"{PHASE_TEXT[phase]}: {processed}/{total} chunks"
            if message:
                text += f" — {message}"
        else:
            text = f"{PHASE_TEXT.get(phase, phase)}: {processed * 100 // max(1, total)}%"
            if message:
                text += f" — {message}"
        self.progress_label.setText(text)

    def show_stopping(self, text: str) -> None:
        """The job was asked to stop; it finishes its current step first."""
        self.stop_button.setEnabled(False)
        self.progress_label.setText(text)

    def job_ended(
        self, final: RunView | None, *, stopped: bool = False, handed_over: bool = False
    ) -> None:
        self.stop_button.hide()
        self._ended = (final.id, final.status) if final is not None else None
        if final is None:
            self.progress_box.hide()
            return
        if handed_over and final.status not in FAILED:
            self.progress_bar.setStyleSheet("")
            self.progress_label.setText(
                f"Run #{final.id} goes on in the background (a dmdesk process of its own)."
            )
        elif stopped and final.status in FAILED:
            # The admin's own Stop: a neutral fact, not an alarm (the status stays failed, as
            # the spec says, so that Proceed continues it).
            self.progress_bar.setStyleSheet("QProgressBar::chunk { background: #6b7280; }")
            self.progress_label.setText(
                f"Run #{final.id} stopped at {final.processed_chunks}/{final.total_chunks} "
                "chunks — Proceed in Training History continues it."
                if phase_label(final.status) == "generation"
                else f"Run #{final.id} stopped — Proceed in Training History continues it."
            )
        elif final.status in FAILED:
            # The notification of the failure (Scenario 1/2); its controls are in the History.
            self.progress_bar.setStyleSheet("QProgressBar::chunk { background: #b91c1c; }")
            self.progress_label.setText(
                f"Run #{final.id}: {final.error_message} — Proceed or Delete it in Training "
                "History below."
            )
        elif final.status is RunStatus.GENERATED:
            self.progress_bar.setRange(0, max(1, final.total_chunks))
            self.progress_bar.setValue(final.processed_chunks)
            self.progress_label.setText(
                f"Run #{final.id}: generated {final.pair_count} pairs from "
                f"{final.processed_chunks}/{final.total_chunks} chunks. Review them next."
            )
        else:
            if self.progress_bar.maximum() == 0:  # still "busy": no report came
                self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(self.progress_bar.maximum())
            self.progress_label.setText(f"Run #{final.id} is {final.status.value}.")

    # -- slots ---------------------------------------------------------------------------------

    @Slot()
    def _on_generate_clicked(self) -> None:
        self.generate_requested.emit()

    @Slot()
    def _on_stop_clicked(self) -> None:
        self.stop_button.setEnabled(False)
        self.progress_label.setText(self.progress_label.text() + " — stopping…")
        self.stop_requested.emit()

    @Slot()
    def _on_review_clicked(self) -> None:
        if (run := self._state[0]) is not None:
            self.review_requested.emit(run.id)

    @Slot()
    def _on_train_clicked(self) -> None:
        if (run := self._state[0]) is not None:
            self.train_requested.emit(run.id)
