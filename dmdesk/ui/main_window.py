"""Main window (shell; the Deep Memory page grows in its own issue)."""

from __future__ import annotations

import sys

from PySide6.QtWidgets import QApplication, QLabel, QMainWindow

from dmdesk.config import DmdeskConfig


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("dmdesk — Deep Memory")
        self.setCentralWidget(QLabel("Deep Memory"))
        self.resize(1000, 700)


def run_gui(config: DmdeskConfig) -> int:
    app = QApplication.instance() or QApplication(sys.argv)
    w = MainWindow()
    w.show()
    return app.exec()
