"""The Training History model: runs as top-level rows, each expandable run with one child
"actions" row (the view spans it and puts the action bar in it).

Rows whose status is active (generating, training) or failed (generating_failed,
training_failed) have the child; completed and generated rows do not expand (FR-7.9).
`set_runs` replaces everything (a page refresh); `update_run` changes one row in place with a
`dataChanged` over that row only (FR-7.8: no reload for one run).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor, QFont

from dmdesk.domain.models import RunView
from dmdesk.domain.status import ACTIVE, FAILED, RunStatus

RunRole = Qt.ItemDataRole.UserRole + 1  # the RunView of the row
IsActionsRole = Qt.ItemDataRole.UserRole + 2  # True on the child "actions" row
HasRefreshRole = Qt.ItemDataRole.UserRole + 3  # True on the Progress cell of active rows

COLUMNS = ("Run", "Status", "Progress", "Pairs", "Created")
COL_ID, COL_STATUS, COL_PROGRESS, COL_PAIRS, COL_CREATED = range(len(COLUMNS))

STATUS_TEXT = {
    RunStatus.GENERATING: "Generating",
    RunStatus.GENERATED: "Generated — ready to review",
    RunStatus.TRAINING: "Training",
    RunStatus.COMPLETED: "Completed",
    RunStatus.GENERATING_FAILED: "Generation failed",
    RunStatus.TRAINING_FAILED: "Training failed",
}
STOPPED_TEXT = {
    RunStatus.GENERATING_FAILED: "Generation stopped",
    RunStatus.TRAINING_FAILED: "Training stopped",
}
FAILED_COLOR = QColor("#b91c1c")
STOPPED_COLOR = QColor("#4b5563")  # an admin's own Stop: neutral
ACTIVE_COLOR = QColor("#1d4ed8")


def is_expandable(run: RunView) -> bool:
    return run.status in ACTIVE or run.removable


class _Root:
    """internalPointer of top-level indexes; child indexes point at their run's node."""


_ROOT = _Root()


class _RunNode:
    __slots__ = ("run",)

    def __init__(self, run: RunView) -> None:
        self.run = run


class RunHistoryModel(QAbstractItemModel):
    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._nodes: list[_RunNode] = []
        self._row_of: dict[int, int] = {}

    # -- updates -------------------------------------------------------------------------------

    def set_runs(self, runs: list[RunView]) -> None:
        self.beginResetModel()
        self._nodes = [_RunNode(r) for r in runs]
        self._row_of = {r.id: i for i, r in enumerate(runs)}
        self.endResetModel()

    def update_run(self, run: RunView, columns: tuple[int, int] | None = None) -> bool:
        """Replace one run in place. If its expandability changed, its child row is added or
        removed with row signals; the rest of the model is untouched. `columns` narrows the
        dataChanged signal to the cells that changed (progress updates touch two)."""
        row = self._row_of.get(run.id)
        if row is None:
            return False
        node = self._nodes[row]
        was, now = is_expandable(node.run), is_expandable(run)
        parent = self.index(row, 0)
        if was and not now:
            self.beginRemoveRows(parent, 0, 0)
            node.run = run
            self.endRemoveRows()
        elif now and not was:
            self.beginInsertRows(parent, 0, 0)
            node.run = run
            self.endInsertRows()
        else:
            node.run = run
            if columns is not None:
                self.dataChanged.emit(self.index(row, columns[0]), self.index(row, columns[1]))
                return True
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
        if now:
            child = self.index(0, 0, parent)
            self.dataChanged.emit(child, child)
        return True

    def run_at(self, index: QModelIndex | QPersistentModelIndex) -> RunView | None:
        if not index.isValid():
            return None
        node = index.internalPointer()
        if node is _ROOT:
            return self._nodes[index.row()].run
        return node.run if isinstance(node, _RunNode) else None

    def row_of(self, run_id: int) -> QModelIndex:
        row = self._row_of.get(run_id)
        return self.index(row, 0) if row is not None else QModelIndex()

    def runs(self) -> list[RunView]:
        return [n.run for n in self._nodes]

    # -- QAbstractItemModel --------------------------------------------------------------------

    def index(
        self, row: int, column: int, parent: QModelIndex | QPersistentModelIndex = QModelIndex()
    ) -> QModelIndex:
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, _ROOT)
        if parent.internalPointer() is _ROOT and row == 0:
            return self.createIndex(0, column, self._nodes[parent.row()])
        return QModelIndex()

    def parent(self, index: Any = QModelIndex()) -> QModelIndex:  # type: ignore[override]
        if not index.isValid():
            return QModelIndex()
        node = index.internalPointer()
        if node is _ROOT or not isinstance(node, _RunNode):
            return QModelIndex()
        row = self._row_of.get(node.run.id)
        return self.createIndex(row, 0, _ROOT) if row is not None else QModelIndex()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        if not parent.isValid():
            return len(self._nodes)
        if parent.internalPointer() is _ROOT and parent.column() == 0:
            return 1 if is_expandable(self._nodes[parent.row()].run) else 0
        return 0

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        if index.internalPointer() is _ROOT:
            return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return Qt.ItemFlag.ItemIsEnabled

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        if not index.isValid():
            return None
        node = index.internalPointer()
        if node is not _ROOT:  # the actions row: the view's index widget draws it
            run = node.run
            if role == IsActionsRole:
                return True
            if role == RunRole:
                return run
            return None
        run = self._nodes[index.row()].run
        col = index.column()
        if role == RunRole:
            return run
        if role == IsActionsRole:
            return False
        if role == Qt.ItemDataRole.DisplayRole:
            if col == COL_ID:
                return f"#{run.id}"
            if col == COL_STATUS:
                if run.status is RunStatus.COMPLETED:
                    return (
                        "Completed — model in use" if run.model_active else "Completed — not in use"
                    )
                if run.stopped_by_admin:
                    return STOPPED_TEXT[run.status]
                if run.status is RunStatus.GENERATED and run.approved_count:
                    return "Generated — ready to train"  # reviewed: training is what is next
                return STATUS_TEXT[run.status]
            if col == COL_PROGRESS:
                return run.progress_text
            if col == COL_PAIRS:
                return f"{run.pair_count} ({run.approved_count} approved)"
            if col == COL_CREATED:
                return run.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
        if role == Qt.ItemDataRole.ToolTipRole:
            if run.error_message:
                return run.error_message
            if run.activation_note:
                return run.activation_note
            return f"Status: {run.status.value}"
        if role == Qt.ItemDataRole.ForegroundRole and col == COL_STATUS:
            if run.stopped_by_admin:
                return STOPPED_COLOR
            if run.status in FAILED:
                return FAILED_COLOR
            if run.status in ACTIVE:
                return ACTIVE_COLOR
        if (
            role == Qt.ItemDataRole.FontRole
            and col == COL_STATUS
            and run.status in FAILED
            and not run.stopped_by_admin
        ):
            f = QFont()
            f.setBold(True)
            return f
        if role == HasRefreshRole:
            return col == COL_PROGRESS and run.status in ACTIVE
        return None
