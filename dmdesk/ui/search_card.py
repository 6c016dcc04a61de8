"""Look before you trust: a query, and the top results without and with Deep Memory side by side
(issue 10). Each row shows rank, score and the chunk's text; the "±" column marks where the two
lists differ (a chunk only one side found, or a rank that moved). The search runs off the GUI
thread through `dmdesk.services.retrieval.compare`, the same code as `dmdesk search`: a
coroutine on the GUI loop awaits it in a thread of its own (`aio.in_thread`), so closing the
window cancels the await and never waits for the search (it used to block up to 15 s)."""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Slot
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from dmdesk.services import retrieval
from dmdesk.services.context import ServiceContext
from dmdesk.services.retrieval import Hit
from dmdesk.ui import aio
from dmdesk.ui.workers import failure_text

K = 5
TEXT_CHARS = 160
DIFF_COLOR = QColor("#7c3aed")


def _flat(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= TEXT_CHARS else flat[: TEXT_CHARS - 1] + "…"


def differences(own: list[Hit], other: list[Hit] | None) -> list[str]:
    """For each hit of `own`: "" when the other list has it at the same rank, "new" when it
    does not have it, else the rank change ("↑2" = two places higher here)."""
    if other is None:
        return ["" for _ in own]
    where = {h.id: i for i, h in enumerate(other)}
    marks = []
    for i, h in enumerate(own):
        if h.id not in where:
            marks.append("new")
        elif where[h.id] == i:
            marks.append("")
        else:
            moved = where[h.id] - i
            marks.append(f"↑{moved}" if moved > 0 else f"↓{-moved}")
    return marks


class SearchCard(QGroupBox):
    def __init__(self, ctx: ServiceContext, parent: QWidget | None = None) -> None:
        super().__init__("Try a search", parent)
        self.setObjectName("searchCard")
        self.ctx = ctx
        self._task: asyncio.Task[None] | None = None
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.query = QLineEdit()
        self.query.setObjectName("searchBox")
        self.query.setPlaceholderText("A question your users would ask, e.g. what does assert do")
        self.button = QPushButton("Search")
        self.button.setObjectName("searchButton")
        row.addWidget(self.query, 1)
        row.addWidget(self.button)
        layout.addLayout(row)
        self.status = QLabel("Compare the top results without and with Deep Memory.")
        self.status.setObjectName("searchStatus")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        lists = QHBoxLayout()
        self.plain = self._results("searchResultsPlain", "Without Deep Memory")
        self.with_dm = self._results("searchResultsDeepMemory", "With Deep Memory")
        lists.addWidget(self.plain)
        lists.addWidget(self.with_dm)
        layout.addLayout(lists)
        self.query.returnPressed.connect(self._on_search_clicked)
        self.button.clicked.connect(self._on_search_clicked)

    @staticmethod
    def _results(name: str, title: str) -> QTreeWidget:
        tree = QTreeWidget()
        tree.setObjectName(name)
        tree.setHeaderLabels(["#", "±", "score", title])
        tree.setRootIsDecorated(False)
        tree.setWordWrap(True)
        tree.setMinimumHeight(140)
        for col, width in ((0, 28), (1, 34), (2, 56)):
            tree.setColumnWidth(col, width)
        return tree

    @property
    def busy(self) -> bool:
        return self._task is not None

    def stop(self) -> None:
        """The window closes: a search under way is dropped (its thread ends on its own)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    @Slot()
    def _on_search_clicked(self) -> None:
        text = self.query.text().strip()
        if not text or self.busy:
            return
        ctx = self.ctx
        self.status.setText("Searching… (the first search loads the embedding model)")
        self.button.setEnabled(False)
        self._task = aio.spawn(self._search(ctx, text), name="search")

    async def _search(self, ctx: ServiceContext, text: str) -> None:
        try:
            result = await aio.in_thread(retrieval.compare, ctx, text, K)
        except Exception as exc:
            self._show_failure(failure_text(exc, "search"))
        else:
            self._show(result)
        finally:
            self._task = None
            self.button.setEnabled(True)

    def _show(self, result: tuple[list[Hit], list[Hit] | None]) -> None:
        without, with_dm = result
        self._fill(self.plain, without, differences(without, with_dm))
        if with_dm is None:
            self.with_dm.clear()
            item = QTreeWidgetItem(["", "", "", "No Deep Memory is in use for this store."])
            self.with_dm.addTopLevelItem(item)
            self.status.setText(
                "No model is in use: train a run, or choose one under Training History."
            )
            return
        self._fill(self.with_dm, with_dm, differences(with_dm, without))
        changed = sum(1 for m in differences(with_dm, without) if m)
        self.status.setText(
            f"Top {K}: {changed} of {len(with_dm)} places differ with Deep Memory."
            if changed
            else f"Top {K}: the same with and without Deep Memory."
        )

    @staticmethod
    def _fill(tree: QTreeWidget, hits: list[Hit], marks: list[str]) -> None:
        tree.clear()
        for i, (hit, mark) in enumerate(zip(hits, marks, strict=True), 1):
            item = QTreeWidgetItem([str(i), mark, f"{hit.score:.3f}", _flat(hit.text)])
            item.setToolTip(3, f"{hit.id}\n\n{hit.text[:2000]}")
            if mark:
                item.setForeground(1, DIFF_COLOR)
            tree.addTopLevelItem(item)

    def _show_failure(self, message: str) -> None:
        self.status.setText(f"The search failed: {message}")
