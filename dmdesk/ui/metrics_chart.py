"""Recall before/after Deep Memory: a small painted bar chart plus the numbers, for a completed
run (no Qt Charts dependency)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from dmdesk.domain.models import RunView

BEFORE = QColor("#9ca3af")
AFTER = QColor("#7c3aed")
KEYS = ("recall@1", "recall@3", "recall@5", "recall@10", "mrr")


def metric_pairs(metrics: dict[str, Any] | None) -> list[tuple[str, float, float]]:
    """(name, before, after) for the metrics both sides have."""
    if not metrics:
        return []
    before, after = metrics.get("before") or {}, metrics.get("after") or {}
    return [(k, float(before[k]), float(after[k])) for k in KEYS if k in before and k in after]


class RecallChart(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("recallChart")
        self.values: list[tuple[str, float, float]] = []
        self.setMinimumHeight(150)

    def set_values(self, values: list[tuple[str, float, float]]) -> None:
        self.values = values
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(420, 170)

    def paintEvent(self, _event: Any) -> None:
        if not self.values:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h = self.width(), self.height()
        top, bottom = 14, 22
        plot_h = h - top - bottom
        group = w / len(self.values)
        bar = min(28.0, group / 3)
        for i, (name, before, after) in enumerate(self.values):
            x0 = i * group + (group - 2 * bar - 4) / 2
            for j, (value, color) in enumerate(((before, BEFORE), (after, AFTER))):
                bh = max(1.0, plot_h * max(0.0, min(1.0, value)))
                rect = QRectF(x0 + j * (bar + 4), top + plot_h - bh, bar, bh)
                p.fillRect(rect, color)
                p.setPen(Qt.GlobalColor.black)
                p.drawText(
                    QRectF(rect.x() - 8, rect.y() - 14, bar + 16, 12),
                    Qt.AlignmentFlag.AlignCenter,
                    f"{value:.2f}",
                )
            p.drawText(
                QRectF(i * group, h - bottom + 4, group, 16), Qt.AlignmentFlag.AlignCenter, name
            )
        p.end()


class RunDetails(QWidget):
    """Shown under the history for a selected completed run."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runDetails")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        self.title = QLabel()
        self.title.setObjectName("runDetailsTitle")
        self.chart = RecallChart()
        self.numbers = QLabel()
        self.numbers.setObjectName("runDetailsNumbers")
        self.numbers.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.title)
        layout.addWidget(self.chart)
        layout.addWidget(self.numbers)
        self.hide()

    def show_run(self, run: RunView | None) -> None:
        values = metric_pairs(run.metrics if run else None)
        if run is None or not values:
            self.hide()
            return
        m = run.metrics or {}
        where = m.get("evaluated_on", "held-out pairs")
        self.title.setText(
            f"Run #{run.id}: retrieval before (grey) and after (purple) Deep Memory, on "
            f"{m.get('heldout_pairs', '?')} {where}"
        )
        self.chart.set_values(values)
        self.numbers.setText("   ".join(f"{k} {b:.3f} → {a:.3f}" for k, b, a in values))
        self.show()
