"""Issue 26, first start: `dmdesk demo` opens the window at once and a process of its own builds
the demo's store behind it (dmdesk.ui.demo_build). While it builds, Generate and the search wait
and the Workflow card says why and how far the build is; once the store is there, the demo's
settings are saved and Generate is ready; a build that fails says so and what to do; a window
closed during the build ends the build's process.

The build here is a real child process speaking the `dmdesk _demo-store` protocol, paced by the
test through its stdin, that writes a real (3-chunk) DeepLake store the way the real one does."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QProcess
from PySide6.QtWidgets import QMessageBox

from dmdesk.config import load_config
from dmdesk.demo import demo_config, store_ready
from dmdesk.services.context import build_context
from dmdesk.ui.demo_build import DemoStoreBuild
from dmdesk.ui.workflow_panel import ATTENTION, NEUTRAL
from dmdesk.vectorstore._deeplake import import_deeplake

BUILD = """
import sys
from pathlib import Path
import numpy as np
from dmdesk.vectorstore.service import create_local_store

path = Path(sys.argv[1])
print("progress 0 3 Loading the local embedding model", flush=True)
sys.stdin.readline()
print("progress 2 3 Embedding Python's reference topics", flush=True)
if sys.stdin.readline().strip() == "fail":
    print("dmdesk: No space left on device: the demo store", file=sys.stderr, flush=True)
    sys.exit(6)
tmp = path.with_name(path.name + ".building")
vectors = np.eye(3, 384, dtype=np.float32)
create_local_store(tmp, ["a", "b", "c"], ["one", "two", "three"], vectors, [{}, {}, {}])
tmp.rename(path)
print("progress 3 3 Embedding Python's reference topics", flush=True)
"""


@pytest.fixture
def first_start(dmdesk_config, dmdesk_window):
    """A window opened as `dmdesk demo` opens it on an empty data dir, and its build."""
    original = dmdesk_config()
    assert not store_ready(original)
    # deeplake's import makes an asyncio loop of its own (nest_asyncio) that it never closes;
    # imported first in a window's worker thread it would be this test's leak. The other
    # window tests import it with their store fixture.
    import_deeplake()
    ctx = build_context(demo_config(original))
    build = DemoStoreBuild([sys.executable, "-c", BUILD, str(original.demo_store)])
    build.start()
    window = dmdesk_window(ctx=ctx).window
    window.follow_demo_build(build, original)
    yield window, build, original
    ctx.dispose()


def step(qtbot, build: DemoStoreBuild, answer: str, done: int) -> None:
    build.process.write(f"{answer}\n".encode())
    qtbot.waitUntil(lambda: build.done == done or not build.running, timeout=30_000)


def test_generate_waits_for_the_build_then_is_ready(qtbot, first_start) -> None:
    window, build, original = first_start
    card, page = window.page.workflow, window.page
    qtbot.waitUntil(lambda: build.total == 3, timeout=30_000)
    # The window is usable at once; Generate waits, and says why, in a quiet colour.
    assert not card.generate_button.isEnabled()
    assert "Generate is ready once the demo knowledge base is built" in card.blocked_label.text()
    assert NEUTRAL in card.blocked_label.styleSheet()  # information, not a problem
    assert card.progress_label.text().startswith("Preparing the demo knowledge base")
    assert card.progress_bar.maximum() == 0  # busy while the model loads, not a stuck "0 %"
    assert not card.stop_button.isVisible()
    assert not page.search_card.isEnabled()
    assert page.history.isVisible() and page.settings_card.isEnabled()

    step(qtbot, build, "go", 2)
    assert card.progress_label.text().endswith("Embedding Python's reference topics… 2/3")
    assert card.progress_bar.value() == 2 and card.progress_bar.maximum() == 3
    assert not card.generate_button.isEnabled()

    step(qtbot, build, "go", 3)
    qtbot.waitUntil(card.generate_button.isEnabled, timeout=30_000)
    assert not card.blocked_label.isVisible()
    assert not card.progress_box.isVisible()
    assert page.search_card.isEnabled()
    # The demo's store is now the configured one, as `dmdesk demo` always made it.
    assert load_config().vector_store_path == str(original.demo_store)
    assert page.ctx.config.vector_store_path == str(original.demo_store)
    qtbot.waitUntil(lambda: "3 chunks" in card.estimate_label.text(), timeout=30_000)


def test_a_failed_build_says_what_happened_and_what_to_do(qtbot, first_start) -> None:
    window, build, original = first_start
    card = window.page.workflow
    qtbot.waitUntil(lambda: build.total == 3, timeout=30_000)
    step(qtbot, build, "go", 2)
    build.process.write(b"fail\n")
    qtbot.waitUntil(lambda: not build.running, timeout=30_000)
    box = window.page.findChild(QMessageBox, "errorBox")
    assert box is not None and "No space left on device" in box.text()
    box.close()
    text = card.blocked_label.text()
    assert "could not be built: No space left on device: the demo store" in text
    assert "start `dmdesk demo` again" in text
    assert ATTENTION in card.blocked_label.styleSheet()  # this one is the admin's to act on
    assert not card.generate_button.isEnabled()
    assert not store_ready(original)
    assert load_config().vector_store_path is None  # nothing saved for a store that is not there


def test_closing_the_window_during_the_build_ends_its_process(qtbot, first_start) -> None:
    window, build, original = first_start
    qtbot.waitUntil(lambda: build.total == 3, timeout=30_000)
    window.close()
    assert not build.running
    assert build.process.state() == QProcess.ProcessState.NotRunning
    assert not store_ready(original)
    assert not Path(str(original.demo_store) + ".building").exists()
