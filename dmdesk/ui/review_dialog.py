"""Review dialog: the pairs of a generated run with their chunk text; approve or reject one or
several, or approve all. Pairs and chunk texts load off the GUI thread."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QThread,
    Slot,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from dmdesk.domain.errors import DmdeskError
from dmdesk.domain.models import PairView
from dmdesk.services.context import ServiceContext
from dmdesk.services.runs import TrainingRunService
from dmdesk.ui.workers import TaskWorker, start_in_thread

MAX_SHOWN = 5_000  # pairs listed at once; "Approve all" still covers every pair
APPROVED_TEXT = {True: "✓ approved", False: "✗ rejected", None: "– not reviewed"}
APPROVED_COLOR = {True: QColor("#15803d"), False: QColor("#b91c1c"), None: QColor("#6b7280")}


class PairTableModel(QAbstractTableModel):
    HEADERS = ("Review", "Question", "Chunk")

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.pairs: list[PairView] = []
        self.texts: dict[str, str] = {}

    def set_pairs(self, pairs: list[PairView], texts: dict[str, str]) -> None:
        self.beginResetModel()
        self.pairs, self.texts = pairs, texts
        self.endResetModel()

    def set_approved(self, ids: set[int], approved: bool | None) -> None:
        for row, p in enumerate(self.pairs):
            if p.id in ids:
                self.pairs[row] = p.model_copy(update={"approved": approved})
                self.dataChanged.emit(self.index(row, 0), self.index(row, 0))

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.pairs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        p = self.pairs[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return (APPROVED_TEXT[p.approved], p.question, p.chunk_id)[index.column()]
        if role == Qt.ItemDataRole.ForegroundRole and index.column() == 0:
            return APPROVED_COLOR[p.approved]
        if role == Qt.ItemDataRole.ToolTipRole and index.column() == 2:
            return self.texts.get(p.chunk_id)
        return None


class ReviewDialog(QDialog):
    def __init__(self, ctx: ServiceContext, run_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("reviewDialog")
        self.setWindowTitle(f"Review pairs of run #{run_id}")
        self.resize(900, 600)
        self._ctx, self.run_id = ctx, run_id
        self._runs = TrainingRunService(ctx)
        self.model = PairTableModel(self)
        layout = QVBoxLayout(self)
        self.status_label = QLabel("Loading pairs…")
        self.status_label.setObjectName("reviewStatus")
        layout.addWidget(self.status_label)
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().hide()
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.chunk_view = QPlainTextEdit()
        self.chunk_view.setReadOnly(True)
        self.chunk_view.setPlaceholderText("The chunk of the selected pair appears here.")
        split.addWidget(self.table)
        split.addWidget(self.chunk_view)
        split.setSizes([400, 160])
        layout.addWidget(split, 1)
        row = QHBoxLayout()
        self.approve_button = QPushButton("Approve")
        self.reject_button = QPushButton("Reject")
        self.approve_all_button = QPushButton("Approve All")
        self.close_button = QPushButton("Close")
        for b in (self.approve_button, self.reject_button, self.approve_all_button):
            row.addWidget(b)
            b.setEnabled(False)
        row.addStretch(1)
        row.addWidget(self.close_button)
        layout.addLayout(row)
        self.approve_button.clicked.connect(self._on_approve_clicked)
        self.reject_button.clicked.connect(self._on_reject_clicked)
        self.approve_all_button.clicked.connect(self._on_approve_all_clicked)
        self.close_button.clicked.connect(self.accept)
        self._load()

    def _load(self) -> None:
        runs = self._runs
        run_id = self.run_id

        def fetch() -> tuple[list[PairView], dict[str, str], int]:
            total = runs.get_run(run_id).pair_count
            pairs = runs.list_pairs(run_id, limit=MAX_SHOWN)
            try:
                texts = runs.chunk_texts(run_id, [p.chunk_id for p in pairs])
            except DmdeskError:
                texts = {}  # the store moved: review the questions without their text
            return pairs, texts, total

        # Keep Python references: a worker without one is collected before it runs.
        self._load_worker = TaskWorker(fetch)
        self._load_worker.done.connect(self._on_loaded)
        self._load_worker.failed.connect(self._on_load_failed)
        self._load_worker.finished.connect(self._on_load_finished)
        self._load_thread: QThread | None = start_in_thread(self._load_worker, self)

    @Slot()
    def _on_load_finished(self) -> None:
        self._load_thread = None

    def done(self, result: int) -> None:
        # Never destroy a QThread that still runs (Qt aborts): let the short load finish.
        if self._load_thread is not None and self._load_thread.isRunning():
            self._load_thread.quit()
            self._load_thread.wait(30_000)
        super().done(result)

    @Slot(object)
    def _on_loaded(self, result: tuple[list[PairView], dict[str, str], int]) -> None:
        pairs, texts, total = result
        self.model.set_pairs(pairs, texts)
        shown = f"{len(pairs)} of {total}" if total > len(pairs) else f"{total}"
        self.status_label.setText(
            f"{shown} pairs. Select pairs and approve or reject them; only approved pairs train."
        )
        for b in (self.approve_button, self.reject_button, self.approve_all_button):
            b.setEnabled(True)
        if pairs:
            self.table.selectRow(0)

    @Slot(str)
    def _on_load_failed(self, message: str) -> None:
        self.status_label.setText(f"Cannot load the pairs: {message}")

    def selected_ids(self) -> set[int]:
        rows = {i.row() for i in self.table.selectionModel().selectedRows()}
        return {self.model.pairs[r].id for r in rows}

    def _set(self, approved: bool) -> None:
        ids = self.selected_ids()
        if not ids:
            return
        try:
            self._runs.set_approval(self.run_id, sorted(ids), approved)
        except DmdeskError as exc:
            self.status_label.setText(exc.message)
            return
        self.model.set_approved(ids, approved)

    @Slot()
    def _on_approve_clicked(self) -> None:
        self._set(True)

    @Slot()
    def _on_reject_clicked(self) -> None:
        self._set(False)

    @Slot()
    def _on_approve_all_clicked(self) -> None:
        try:
            n = self._runs.approve_all(self.run_id)
        except DmdeskError as exc:
            self.status_label.setText(exc.message)
            return
        self.model.set_approved({p.id for p in self.model.pairs}, True)
        self.status_label.setText(f"All {n} pairs approved.")

    @Slot(QModelIndex, QModelIndex)
    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        pair = self.model.pairs[current.row()]
        text = self.model.texts.get(pair.chunk_id, "(chunk text not available)")
        self.chunk_view.setPlainText(f"{pair.question}\n\n— chunk {pair.chunk_id} —\n{text}")
