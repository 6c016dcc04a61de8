"""Training History: a QTreeView over RunHistoryModel (FR-7.7 … FR-7.10).

* Progress column next to Status; active rows paint a refresh icon in that cell. Clicking the icon
  asks for that one run again (`refresh_requested(run_id)`); the page updates the row in place.
* Active and failed rows expand, accordion-style, into a spanned child row holding the action bar:
  Refresh (active), Proceed and Delete (failed) and the error text (failed) — nothing else.
  A generated run without any approved pair expands too, with Delete and why (it cannot be
  trained). Clicking the open row closes it; other completed/generated rows do not expand.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QEvent,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    Signal,
    Slot,
)
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from dmdesk.domain.models import RunView
from dmdesk.domain.status import ACTIVE, FAILED, phase_label
from dmdesk.ui.history_model import (
    COL_PROGRESS,
    COL_STATUS,
    STOPPED_COLOR,
    HasRefreshRole,
    IsActionsRole,
    RunHistoryModel,
    RunRole,
    is_expandable,
)
from dmdesk.ui.resources import icon

ICON_SIZE = 16


class ProgressDelegate(QStyledItemDelegate):
    """Paints the Progress text, plus a clickable refresh icon on active rows."""

    refresh_clicked = Signal(int)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self.swallowed_click = False

    @staticmethod
    def icon_rect(cell: QRect) -> QRect:
        return QRect(
            cell.right() - ICON_SIZE - 4,
            cell.top() + (cell.height() - ICON_SIZE) // 2,
            ICON_SIZE,
            ICON_SIZE,
        )

    def paint(
        self,
        painter: Any,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        super().paint(painter, option, index)
        if index.data(HasRefreshRole):
            icon("refresh").paint(painter, self.icon_rect(option.rect))

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        size = super().sizeHint(option, index)
        return QSize(size.width() + ICON_SIZE + 8, max(size.height(), ICON_SIZE + 6))

    def editorEvent(
        self,
        event: QEvent,
        model: Any,
        option: Any,
        index: QModelIndex | QPersistentModelIndex,
    ) -> bool:
        if (
            event.type() == QEvent.Type.MouseButtonRelease
            and index.data(HasRefreshRole)
            and isinstance(event, QMouseEvent)
            and self.icon_rect(option.rect).contains(event.position().toPoint())
        ):
            run = index.data(RunRole)
            self.swallowed_click = True
            self.refresh_clicked.emit(run.id)
            return True
        return super().editorEvent(event, model, option, index)


class RunActions(QWidget):
    """The expandable area of one run: buttons by status, and the error text (FR-7.10)."""

    refresh_requested = Signal(int)
    proceed_requested = Signal(int)
    remove_requested = Signal(int)

    def __init__(self, run: RunView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_id = run.id
        self.setObjectName(f"runActions{run.id}")
        outer = QVBoxLayout(self)
        outer.setContentsMargins(24, 4, 8, 8)
        outer.setSpacing(4)
        row = QHBoxLayout()
        self.refresh_button = self.proceed_button = self.remove_button = None
        if run.status in ACTIVE:
            self.refresh_button = QPushButton(icon("refresh"), "Refresh")
            self.refresh_button.setObjectName("refreshButton")
            self.refresh_button.clicked.connect(self._on_refresh_clicked)
            row.addWidget(self.refresh_button)
        if run.status in FAILED:
            self.proceed_button = QPushButton("Proceed")
            self.proceed_button.setObjectName("proceedButton")
            self.proceed_button.setToolTip(
                "Resume generation, skipping chunks already done"
                if phase_label(run.status) == "generation"
                else "Re-submit training with the same approved pairs"
            )
            self.proceed_button.clicked.connect(self._on_proceed_clicked)
            row.addWidget(self.proceed_button)
        if run.removable:
            self.remove_button = QPushButton("Delete")
            self.remove_button.setObjectName("deleteButton")
            self.remove_button.setToolTip("Delete this run and all its training pairs")
            self.remove_button.clicked.connect(self._on_remove_clicked)
            row.addWidget(self.remove_button)
        row.addStretch(1)
        outer.addLayout(row)
        self.error_label: QLabel | None = None
        if run.status in FAILED or run.removable:
            text = (
                run.error_message or "The run failed without a message."
                if run.status in FAILED
                else "No pair of this run is approved, so it cannot be trained. Review its pairs "
                "again, or delete the run to start a new generation."
            )
            self.error_label = QLabel(text)
            self.error_label.setObjectName("runError")
            self.error_label.setWordWrap(True)
            self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            neutral = run.stopped_by_admin or run.status not in FAILED
            colour = STOPPED_COLOR.name() if neutral else "#b91c1c"
            self.error_label.setStyleSheet(f"color: {colour};")
            outer.addWidget(self.error_label)

    @Slot()
    def _on_refresh_clicked(self) -> None:
        self.refresh_requested.emit(self.run_id)

    @Slot()
    def _on_proceed_clicked(self) -> None:
        self.proceed_requested.emit(self.run_id)

    @Slot()
    def _on_remove_clicked(self) -> None:
        self.remove_requested.emit(self.run_id)


class HistoryView(QTreeView):
    refresh_requested = Signal(int)
    proceed_requested = Signal(int)
    remove_requested = Signal(int)

    def __init__(self, model: RunHistoryModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("historyView")
        self.setModel(model)
        self._model = model
        self.setRootIsDecorated(True)
        self.setUniformRowHeights(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.setExpandsOnDoubleClick(False)
        self.setAlternatingRowColors(True)
        self.delegate = ProgressDelegate(self)
        self.setItemDelegateForColumn(COL_PROGRESS, self.delegate)
        self.delegate.refresh_clicked.connect(self._on_delegate_refresh_clicked)
        # Columns are sized to their contents when the model is reset, not on every change:
        # ResizeToContents re-measures every cell on each dataChanged, which at 10 progress
        # updates a second blocked the GUI thread for ~100 ms at a time (bench/gui_stall.py).
        header = self.header()
        header.setStretchLastSection(True)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.clicked.connect(self._on_clicked)
        self.expanded.connect(self._on_expanded)
        # The view's own signal: a collapse through the branch arrow or the ← key goes
        # through C++ and never reaches the Python `collapse` below.
        self.collapsed.connect(self._on_collapsed)
        model.modelReset.connect(self._on_model_reset)
        model.rowsInserted.connect(self._on_rows_inserted)
        model.dataChanged.connect(self._on_data_changed)
        self._open: int | None = None  # run id of the expanded row

    # -- accordion -----------------------------------------------------------------------------

    def expanded_run_id(self) -> int | None:
        return self._open

    def toggle(self, run_id: int) -> None:
        index = self._model.row_of(run_id)
        run = self._model.run_at(index)
        if run is None or not is_expandable(run):
            return
        if self._open == run_id and self.isExpanded(index):
            self.collapse_all()
        else:
            self.expand(index)  # _on_expanded closes the previous one

    def open_run(self, run_id: int) -> None:
        """Show the run's row open (idempotent: an open row stays open)."""
        index = self._model.row_of(run_id)
        run = self._model.run_at(index)
        if run is None or not is_expandable(run):
            return
        if not self.isExpanded(index):
            self.expand(index)  # _on_expanded closes the previous one
        elif self.actions_widget(run_id) is None:
            self._install_actions(index)
        self._open = run_id

    @Slot(QModelIndex)
    def _on_collapsed(self, index: QModelIndex) -> None:
        run = self._model.run_at(index)
        if run is not None and run.id == self._open:
            self._open = None

    def collapse_all(self) -> None:
        if self._open is not None:
            index = self._model.row_of(self._open)
            self._open = None
            if index.isValid():
                self.collapse(index)

    @Slot(QModelIndex)
    def _on_clicked(self, index: QModelIndex) -> None:
        if self.delegate.swallowed_click:  # the click was on the refresh icon
            self.delegate.swallowed_click = False
            return
        if index.data(IsActionsRole):
            return
        run = index.data(RunRole)
        if run is not None:
            self.toggle(run.id)

    @Slot(QModelIndex)
    def _on_expanded(self, index: QModelIndex) -> None:
        run = self._model.run_at(index)
        if run is None:
            return
        previous = self._open
        self._open = run.id
        if previous is not None and previous != run.id:
            prev_index = self._model.row_of(previous)
            if prev_index.isValid():
                self.collapse(prev_index)
        self._install_actions(index)

    def collapse(self, index: QModelIndex | QPersistentModelIndex) -> None:
        run = self._model.run_at(index)
        if run is not None and run.id == self._open:
            self._open = None
        super().collapse(index)

    # -- the actions row -----------------------------------------------------------------------

    def actions_widget(self, run_id: int) -> RunActions | None:
        parent = self._model.row_of(run_id)
        child = self._model.index(0, 0, parent)
        widget = self.indexWidget(child) if child.isValid() else None
        return widget if isinstance(widget, RunActions) else None

    def _install_actions(self, parent: QModelIndex) -> None:
        run = self._model.run_at(parent)
        child = self._model.index(0, 0, parent)
        if run is None or not child.isValid():
            return
        self.setFirstColumnSpanned(0, parent, True)
        widget = RunActions(run)
        widget.refresh_requested.connect(self.refresh_requested)
        widget.proceed_requested.connect(self.proceed_requested)
        widget.remove_requested.connect(self.remove_requested)
        # A word-wrapped label's own size hint assumes a narrow width: size the row for the
        # width it really gets.
        layout = widget.layout()
        if layout is not None and layout.hasHeightForWidth():
            width = max(200, self.viewport().width() - self.indentation())
            widget.setFixedHeight(layout.totalHeightForWidth(width))
        self.setIndexWidget(child, widget)

    def _fit_columns(self) -> None:
        for column in range(self._model.columnCount() - 1):
            self.resizeColumnToContents(column)
        self.setColumnWidth(COL_STATUS, max(self.columnWidth(COL_STATUS), 200))
        self.setColumnWidth(COL_PROGRESS, max(self.columnWidth(COL_PROGRESS), 110))

    @Slot()
    def _on_model_reset(self) -> None:
        self._fit_columns()
        # A reset drops index widgets and expansion; reopen the row that was open if it still
        # expands (its actions rebuilt for its new status).
        open_id, self._open = self._open, None
        if open_id is not None:
            index = self._model.row_of(open_id)
            run = self._model.run_at(index)
            if run is not None and is_expandable(run):
                self.expand(index)

    @Slot(QModelIndex, int, int)
    def _on_rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        if parent.isValid() and self.isExpanded(parent):
            self._install_actions(parent)

    @Slot(QModelIndex, QModelIndex)
    def _on_data_changed(self, top_left: QModelIndex, bottom_right: QModelIndex) -> None:
        # A status change (e.g. training → training_failed) needs other buttons: rebuild the
        # open row's bar when its run changed.
        if top_left.data(IsActionsRole) and self.isExpanded(top_left.parent()):
            self._install_actions(top_left.parent())
            return
        # A cell that grew ("0 (0 approved)" → "1,204 (1,180 approved)") widens its column, so
        # no text is cut off until the next reset (issue 26: "11 (0 approv…"). Only the changed
        # cells are measured; the stretched last column needs nothing.
        last = self._model.columnCount() - 1
        for column in range(top_left.column(), min(bottom_right.column(), last - 1) + 1):
            for row in range(top_left.row(), bottom_right.row() + 1):
                cell = top_left.siblingAtRow(row).siblingAtColumn(column)
                wanted = self.sizeHintForIndex(cell).width() + 8
                if wanted > self.columnWidth(column):
                    self.setColumnWidth(column, wanted)

    @Slot(int)
    def _on_delegate_refresh_clicked(self, run_id: int) -> None:
        self.refresh_requested.emit(run_id)

    # -- keyboard ------------------------------------------------------------------------------

    def moveCursor(
        self, action: QAbstractItemView.CursorAction, modifiers: Qt.KeyboardModifier
    ) -> QModelIndex:
        """Up/Down move between runs: an open row's actions line is not a stop (Tab is how
        its buttons are reached)."""
        index = super().moveCursor(action, modifiers)
        if not index.data(IsActionsRole):
            return index
        parent = index.parent()
        if action in (
            QAbstractItemView.CursorAction.MoveUp,
            QAbstractItemView.CursorAction.MovePrevious,
            QAbstractItemView.CursorAction.MovePageUp,
        ):
            return parent
        below = self._model.index(parent.row() + 1, 0)
        return below if below.isValid() else parent

    def focusNextPrevChild(self, next: bool) -> bool:
        """Tab from an open row goes to its buttons (Proceed, Delete, Refresh) first."""
        run = self.currentIndex().data(RunRole)
        if next and run is not None and run.id == self._open:
            actions = self.actions_widget(run.id)
            buttons = [] if actions is None else actions.findChildren(QPushButton)
            if buttons:
                buttons[0].setFocus(Qt.FocusReason.TabFocusReason)
                return True
        return super().focusNextPrevChild(next)

    # keyboard: Enter/Space toggles like a click
    def keyPressEvent(self, event: Any) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Space):
            run = self.currentIndex().data(RunRole)
            if run is not None and not self.currentIndex().data(IsActionsRole):
                self.toggle(run.id)
                return
        super().keyPressEvent(event)

    def sizeHint(self) -> QSize:
        return QSize(700, 260)
