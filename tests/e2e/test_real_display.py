"""The window on a real X server (Xvfb, Qt's xcb platform), not only offscreen: the platform
plugin loads (the Debian libraries `make` installs) and the window comes up on a local store."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dmdesk.testing.cli import dmdesk_env


def xvfb() -> str:
    found = shutil.which("xvfb-run")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("xvfb-run is missing on CI (the Makefile installs xvfb)")
        pytest.skip("xvfb is not installed (apt-get install xvfb xauth)")
    return found


def test_the_window_comes_up_on_a_real_x_server(tmp_path: Path, store200: Path) -> None:
    env = dmdesk_env(tmp_path, vector_store_path=store200, deep_memory_backend="local") | {
        "QT_QPA_PLATFORM": "xcb",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    out = subprocess.run(
        [xvfb(), "-a", sys.executable, "-m", "dmdesk", "gui", "--smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stderr
    assert "window shown" in out.stdout
    assert "Could not load the Qt platform plugin" not in out.stderr


def test_closing_and_stopping_on_a_real_x_server() -> None:
    """Issue 11: the close and stop tests of the live window, on the xcb platform under Xvfb
    (a real X server's event delivery, not only offscreen)."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMDESK_")} | {
        "QT_QPA_PLATFORM": "xcb",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
    }
    out = subprocess.run(
        [
            xvfb(),
            "-a",
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/ui/test_live_window.py",
            "-k",
            "closing_twice or keep_running or stop_returns or open_row",
        ],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "4 passed" in out.stdout
