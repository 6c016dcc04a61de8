"""Issue 12: whatever stops dmdesk from opening its database — here a schema upgrade that fails
half-way — is shown in a dialog (a desktop launcher has no terminal), never only on stderr."""

from __future__ import annotations

import sqlalchemy as sa
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from dmdesk.db import migrate
from dmdesk.domain.errors import EXIT_USAGE
from dmdesk.ui.main_window import run_gui


def test_a_failing_migration_shows_a_dialog(qtbot, dmdesk_config, tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(url, "0003")
    engine = sa.create_engine(url)
    with engine.begin() as c:  # what a crashed earlier upgrade could leave: 0004's temp table
        c.execute(sa.text("CREATE TABLE _alembic_tmp_deep_memory_training_runs (x INTEGER)"))
    engine.dispose()
    config = dmdesk_config(database_url=url)
    seen: list[str] = []

    def answer() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.objectName() == "startupErrorBox":
            seen.append(box.text())
            box.accept()
        else:
            QTimer.singleShot(50, answer)

    QTimer.singleShot(50, answer)
    code = run_gui(config)
    assert code == EXIT_USAGE
    assert seen and "Cannot upgrade the database" in seen[0]
    assert "Cannot upgrade the database" in capsys.readouterr().err
