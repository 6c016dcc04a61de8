"""Review dialog: the pairs of a generated run with the quality filters' verdict and their chunk
text; approve (A) or reject (R) one or several, or approve all — which approves only pairs not
reviewed yet (flagged pairs only when asked; a pair the admin rejected never). Sortable, with
"show flagged first" and counts of approved / rejected / flagged / not reviewed. Enter does not
approve anything. Pairs and chunk texts load off the GUI thread."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    Slot,
)
from PySide6.QtGui import QColor, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
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
from dmdesk.ui import aio
from dmdesk.ui.workers import failure_text

MAX_SHOWN = 5_000  # pairs listed at once; "Approve all" still covers every pair
APPROVED_TEXT = {True: "✓ approved", False: "✗ rejected", None: "– not reviewed"}
APPROVED_COLOR = {True: QColor("#15803d"), False: QColor("#b91c1c"), None: QColor("#6b7280")}
FLAG_COLOR = QColor("#b45309")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
COL_REVIEW, COL_VERDICT, COL_QUESTION, COL_CHUNK = range(4)
EXCERPT = 110


def _excerpt(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT else flat[: EXCERPT - 1] + "…"


class PairTableModel(QAbstractTableModel):
    HEADERS = ("Review", "Verdict", "Question", "Chunk")

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
                self.dataChanged.emit(self.index(row, COL_REVIEW), self.index(row, COL_REVIEW))

    def counts(self) -> dict[str, int]:
        return {
            "approved": sum(p.approved is True for p in self.pairs),
            "rejected": sum(p.approved is False for p in self.pairs),
            "flagged": sum(p.flags is not None for p in self.pairs),
            "unreviewed": sum(p.approved is None for p in self.pairs),
        }

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
        col = index.column()
        text = self.texts.get(p.chunk_id)
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_REVIEW:
                return APPROVED_TEXT[p.approved]
            if col == COL_VERDICT:
                return f"⚑ {p.flags}" if p.flags else "ok"
            if col == COL_QUESTION:
                return p.question
            return _excerpt(text) if text else p.chunk_id
        if role == SORT_ROLE:
            if col == COL_REVIEW:
                return {False: 0, None: 1, True: 2}[p.approved]
            if col == COL_VERDICT:
                return (0 if p.flags else 1, p.id)  # flagged first, then in order
            return p.question if col == COL_QUESTION else (text or p.chunk_id)
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == COL_REVIEW:
                return APPROVED_COLOR[p.approved]
            if col == COL_VERDICT and p.flags:
                return FLAG_COLOR
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == COL_VERDICT and p.flags:
                return f"Flagged by the quality filters: {p.flags}. It starts rejected."
            if col == COL_CHUNK:
                return f"{p.chunk_id}\n\n{(text or '')[:2000]}"
        return None


class _PairSort(QSortFilterProxyModel):
    def lessThan(
        self, left: QModelIndex | QPersistentModelIndex, right: QModelIndex | QPersistentModelIndex
    ) -> bool:
        a, b = left.data(SORT_ROLE), right.data(SORT_ROLE)
        try:
            return bool(a < b)
        except TypeError:
            return str(a) < str(b)


class ReviewDialog(QDialog):
    def __init__(self, ctx: ServiceContext, run_id: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("reviewDialog")
        self.setWindowTitle(f"Review pairs of run #{run_id}")
        self.resize(1000, 640)
        self._ctx, self.run_id = ctx, run_id
        self._runs = TrainingRunService(ctx)
        self.model = PairTableModel(self)
        self.proxy = _PairSort(self)
        self.proxy.setSourceModel(self.model)
        layout = QVBoxLayout(self)
        self.status_label = QLabel("Loading pairs…")
        self.status_label.setObjectName("reviewStatus")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.counts_label = QLabel()
        self.counts_label.setObjectName("reviewCounts")
        tools = QHBoxLayout()
        tools.addWidget(self.counts_label, 1)
        self.flagged_first = QCheckBox("Show flagged first")
        self.flagged_first.setObjectName("flaggedFirstCheck")
        self.flagged_first.toggled.connect(self._on_flagged_first_toggled)
        tools.addWidget(self.flagged_first)
        layout.addLayout(tools)
        split = QSplitter(Qt.Orientation.Vertical)
        self.table = QTableView()
        self.table.setObjectName("pairTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.proxy.sort(-1)  # generation order until a header is clicked
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(COL_QUESTION, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(COL_CHUNK, QHeaderView.ResizeMode.Stretch)
        header.resizeSection(COL_REVIEW, 120)
        header.resizeSection(COL_VERDICT, 200)
        self.table.verticalHeader().hide()
        self.table.selectionModel().currentRowChanged.connect(self._on_current_changed)
        self.chunk_view = QPlainTextEdit()
        self.chunk_view.setObjectName("chunkView")
        self.chunk_view.setReadOnly(True)
        self.chunk_view.setPlaceholderText("The chunk of the selected pair appears here.")
        split.addWidget(self.table)
        split.addWidget(self.chunk_view)
        split.setSizes([420, 180])
        layout.addWidget(split, 1)
        row = QHBoxLayout()
        self.approve_button = QPushButton("&Approve")
        self.approve_button.setObjectName("approveButton")
        self.approve_button.setToolTip("Approve the selected pairs (A)")
        self.reject_button = QPushButton("&Reject")
        self.reject_button.setObjectName("rejectButton")
        self.reject_button.setToolTip("Reject the selected pairs (R)")
        self.approve_all_button = QPushButton("Approve All")
        self.approve_all_button.setObjectName("approveAllButton")
        self.approve_all_button.setToolTip(
            "Approve every pair not reviewed yet. Pairs you rejected stay rejected."
        )
        self.include_flagged = QCheckBox("including flagged pairs")
        self.include_flagged.setObjectName("includeFlaggedCheck")
        self.close_button = QPushButton("Close")
        self.close_button.setObjectName("closeReviewButton")
        for b in (self.approve_button, self.reject_button, self.approve_all_button):
            row.addWidget(b)
            b.setEnabled(False)
        row.addWidget(self.include_flagged)
        row.addStretch(1)
        row.addWidget(self.close_button)
        layout.addLayout(row)
        # Enter must not approve the selected row: no button is the dialog's default.
        for b in (
            self.approve_button,
            self.reject_button,
            self.approve_all_button,
            self.close_button,
        ):
            b.setAutoDefault(False)
            b.setDefault(False)
        for key, slot in (("A", self._on_approve_clicked), ("R", self._on_reject_clicked)):
            shortcut = QShortcut(QKeySequence(key), self)
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            shortcut.activated.connect(slot)
        # Enter in the table goes to the next pair, as in a spreadsheet (issue 26: Down and
        # Enter did nothing visible); on a button, Enter is still that button's.
        for enter in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            next_pair = QShortcut(QKeySequence(enter), self.table)
            next_pair.setContext(Qt.ShortcutContext.WidgetShortcut)
            next_pair.activated.connect(self._select_next)
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

        self._loading: asyncio.Task[None] | None = aio.spawn(self._fetch(fetch), name="pairs")

    async def _fetch(self, fetch: Callable[[], tuple[list[PairView], dict[str, str], int]]) -> None:
        """The pairs are read in a thread of their own, awaited on the GUI loop: a dialog closed
        meanwhile cancels the await and never waits for the read (it used to block up to 30 s)."""
        try:
            result = await aio.in_thread(fetch)
        except Exception as exc:
            self._on_load_failed(failure_text(exc, "loading the pairs"))
        else:
            self._on_loaded(result)
        finally:
            self._loading = None

    def done(self, result: int) -> None:
        if self._loading is not None:
            self._loading.cancel()
            self._loading = None
        super().done(result)

    def _on_loaded(self, result: tuple[list[PairView], dict[str, str], int]) -> None:
        pairs, texts, total = result
        self.model.set_pairs(pairs, texts)
        shown = f"{len(pairs)} of {total}" if total > len(pairs) else f"{total}"
        self.status_label.setText(
            f"{shown} pairs. Select pairs and approve (A) or reject (R) them; only approved "
            "pairs train. Flagged pairs start rejected: the Verdict column says why."
        )
        self._show_counts()
        for b in (self.approve_button, self.reject_button, self.approve_all_button):
            b.setEnabled(True)
        if pairs:
            self.table.selectRow(0)
            self.table.setFocus()  # the keys act at once: A, R, Down, Enter

    def _show_counts(self) -> None:
        c = self.model.counts()
        self.counts_label.setText(
            f"{c['approved']} approved · {c['rejected']} rejected · {c['flagged']} flagged · "
            f"{c['unreviewed']} not reviewed"
        )

    @Slot(bool)
    def _on_flagged_first_toggled(self, on: bool) -> None:
        if on:
            self.table.sortByColumn(COL_VERDICT, Qt.SortOrder.AscendingOrder)
        else:
            self.table.horizontalHeader().setSortIndicator(-1, Qt.SortOrder.AscendingOrder)
            self.proxy.sort(-1)

    def _on_load_failed(self, message: str) -> None:
        self.status_label.setText(f"Cannot load the pairs: {message}")

    def selected_ids(self) -> set[int]:
        rows = {self.proxy.mapToSource(i).row() for i in self.table.selectionModel().selectedRows()}
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
        self._show_counts()
        if len(ids) == 1:
            self._select_next()  # one pair decided: on to the next, as a mail client does

    @Slot()
    def _select_next(self) -> None:
        current = self.table.currentIndex()
        row = current.row() + 1 if current.isValid() else 0
        if row < self.proxy.rowCount():
            self.table.selectRow(row)
            self.table.scrollTo(self.proxy.index(row, 0))

    @Slot()
    def _on_approve_clicked(self) -> None:
        self._set(True)

    @Slot()
    def _on_reject_clicked(self) -> None:
        self._set(False)

    @Slot()
    def _on_approve_all_clicked(self) -> None:
        include = self.include_flagged.isChecked()
        try:
            n = self._runs.approve_all(self.run_id, include_flagged=include)
        except DmdeskError as exc:
            self.status_label.setText(exc.message)
            return
        # the same rule as the service: not reviewed yet, or (asked) flagged and rejected
        self.model.set_approved(
            {
                p.id
                for p in self.model.pairs
                if p.approved is None or (include and p.flags and p.approved is False)
            },
            True,
        )
        self._show_counts()
        left = "" if include else " Flagged pairs and pairs you rejected stay rejected."
        self.status_label.setText(f"{n} pairs approved.{left}")

    @Slot(QModelIndex, QModelIndex)
    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        pair = self.model.pairs[self.proxy.mapToSource(current).row()]
        text = self.model.texts.get(pair.chunk_id, "(chunk text not available)")
        verdict = f"\n⚑ flagged: {pair.flags}\n" if pair.flags else ""
        self.chunk_view.setPlainText(
            f"{pair.question}\n{verdict}\n— chunk {pair.chunk_id} —\n{text}"
        )
