"""Import deeplake 3.9 without touching the network.

`import deeplake` asks PyPI for a newer version unless `~/.activeloop/pypi_version.json` is less
than a day old (deeplake/util/check_latest_version.py): offline that costs a DNS failure or a 2 s
timeout on every start. We refresh that cache with the installed version first, which makes the
check a file read. `BUGGER_OFF=true` turns its usage reporting off.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from pathlib import Path
from types import ModuleType

_module: ModuleType | None = None


def _silence_version_check() -> None:
    path = Path(os.path.expanduser("~/.activeloop/pypi_version.json"))
    try:
        if path.is_file():
            _, saved = json.loads(path.read_text())
            if time.time() - float(saved) < 12 * 3600:
                return
        path.parent.mkdir(parents=True, exist_ok=True)
        version = importlib.metadata.version("deeplake")
        path.write_text(json.dumps([version, time.time()]))
    except (OSError, ValueError, TypeError, importlib.metadata.PackageNotFoundError):
        pass  # worst case deeplake does its own (bounded, 2 s) check


def import_deeplake() -> ModuleType:
    global _module
    if _module is None:
        os.environ.setdefault("BUGGER_OFF", "true")
        _silence_version_check()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import deeplake

        _module = deeplake
    return _module
