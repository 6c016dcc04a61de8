"""Architecture guards: Qt only under dmdesk/ui; the services never import the GUI."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "dmdesk"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_qt_is_imported_only_under_dmdesk_ui() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        if "ui" in path.relative_to(PKG).parts[:1]:
            continue
        qt = {m for m in imported_modules(path) if m.split(".")[0] in ("PySide6", "shiboken6")}
        if qt:
            offenders.append(f"{path.relative_to(PKG)}: {sorted(qt)}")
    assert offenders == []


def test_services_do_not_import_the_gui() -> None:
    for path in (PKG / "services").rglob("*.py"):
        assert not any(m.startswith("dmdesk.ui") for m in imported_modules(path)), path


def test_cli_and_services_load_without_qt() -> None:
    code = (
        "import sys, dmdesk.cli, dmdesk.services.runs, dmdesk.jobs.generation, "
        "dmdesk.jobs.training, dmdesk.services.settings; "
        "print(any(m.startswith('PySide6') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_the_cli_module_loads_no_service_so_help_and_usage_errors_are_quick() -> None:
    """`dmdesk --help`, `dmdesk settings` and a usage error import `dmdesk.cli` only: the
    services, the jobs and the SDKs (SQLAlchemy, openai, deeplake, Qt) load in the commands
    that use them (0.6 s against 1.3 s when a job module was imported at the top)."""
    code = (
        "import sys, dmdesk.cli; "
        "print(sorted(m for m in ('sqlalchemy', 'openai', 'deeplake', 'PySide6', 'dmdesk.jobs', "
        "'dmdesk.services') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
