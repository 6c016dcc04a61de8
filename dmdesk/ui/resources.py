"""Icons and other files of the top-level resources/ folder, resolved at run time (an install or
the PyInstaller bundle)."""

from __future__ import annotations

import importlib.resources
import sys
from functools import cache
from pathlib import Path

from PySide6.QtGui import QIcon


def resources_dir() -> Path:
    """The package data `dmdesk.resources` (the checkout's top-level `resources/` in an editable
    install), or the PyInstaller bundle's copy."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    try:
        return Path(str(importlib.resources.files("dmdesk.resources")))
    except ModuleNotFoundError:  # a checkout on sys.path without an install
        return Path(__file__).resolve().parents[2] / "resources"


@cache
def icon(name: str) -> QIcon:
    return QIcon(str(resources_dir() / f"{name}.svg"))
