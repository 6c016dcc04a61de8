"""Recall before/after Deep Memory: a small painted bar chart plus the numbers, for a completed
run (no Qt Charts dependency)."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QRectF, QSize, Qt, Signal, Slot
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from dmdesk.deepmemory.guard import verdict_lines
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
    """Shown under the history for a selected completed run: its held-out figures, whether its
    model is the one search uses (and the guard's verdict), and the admin's choice."""

    use_requested = Signal(int)  # run id: use this run's model
    stop_using_requested = Signal()
    export_requested = Signal(int)  # run id: write its model for the admin's application

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("runDetails")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        self.title = QLabel()
        self.title.setObjectName("runDetailsTitle")
        self.title.setWordWrap(True)
        self.warning = QLabel()
        self.warning.setObjectName("smallSampleWarning")
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #92400e;")
        self.chart = RecallChart()
        self.numbers = QLabel()
        self.numbers.setObjectName("runDetailsNumbers")
        self.numbers.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Both verdicts: held-out synthetic pairs and the evaluation set of real questions (or
        # plainly that there is none and the verdict rests on synthetic questions).
        self.verdicts = QLabel()
        self.verdicts.setObjectName("verdictsLabel")
        self.verdicts.setWordWrap(True)
        self.verdicts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_state = QLabel()
        self.model_state.setObjectName("modelState")
        self.model_state.setWordWrap(True)
        self.model_state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        self.use_button = QPushButton("Use this model")
        self.use_button.setObjectName("useModelButton")
        self.stop_using_button = QPushButton("Stop using Deep Memory")
        self.stop_using_button.setObjectName("stopUsingButton")
        self.export_button = QPushButton("Export model…")
        self.export_button.setObjectName("exportModelButton")
        self.export_button.setToolTip(
            "Write this model as a folder your RAG application loads without dmdesk "
            "(sentence-transformers; README: Using Deep Memory in your application)"
        )
        buttons.addWidget(self.use_button)
        buttons.addWidget(self.stop_using_button)
        buttons.addWidget(self.export_button)
        buttons.addStretch(1)
        layout.addWidget(self.title)
        layout.addWidget(self.warning)
        layout.addWidget(self.chart)
        layout.addWidget(self.numbers)
        layout.addWidget(self.verdicts)
        layout.addWidget(self.model_state)
        layout.addLayout(buttons)
        self.use_button.clicked.connect(self._on_use_clicked)
        self.stop_using_button.clicked.connect(self.stop_using_requested)
        self.export_button.clicked.connect(self._on_export_clicked)
        self._run_id: int | None = None
        self.hide()

    @Slot()
    def _on_use_clicked(self) -> None:
        if self._run_id is not None:
            self.use_requested.emit(self._run_id)

    @Slot()
    def _on_export_clicked(self) -> None:
        if self._run_id is not None:
            self.export_requested.emit(self._run_id)

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
        decision = m.get("activation") or {}
        if where != "held-out pairs":
            self.warning.setText(
                "⚠ Too few pairs for a held-out test: these figures are on the pairs it trained "
                "on and prove nothing."
            )
            self.warning.show()
        elif decision.get("small_sample"):
            ci = decision.get("ci")
            interval = f" (95 % CI of the MRR gain {ci[0]:+.3f}…{ci[1]:+.3f})" if ci else ""
            self.warning.setText(
                f"⚠ A small sample: {decision.get('pairs', 0)} held-out pairs{interval}. "
                "These figures are uncertain."
            )
            self.warning.show()
        else:
            self.warning.hide()
        self._run_id = run.id
        lines = verdict_lines(m)
        self.verdicts.setText("\n".join(f"• {line}" for line in lines))
        self.verdicts.setVisible(bool(lines))
        note = run.activation_note or "no verdict"
        if run.model_active:
            chosen = "" if decision.get("activated") else " (your choice)"
            self.model_state.setText(f"✓ Search uses this model{chosen}. Guard: {note}")
        else:
            self.model_state.setText(f"Search does not use this model. Guard: {note}")
        self.use_button.setVisible(not run.model_active)
        self.stop_using_button.setVisible(run.model_active)
        # A DeepLake Cloud model lives on DeepLake: the application asks for it per search.
        self.export_button.setVisible(m.get("backend") == "local")
        self.show()
