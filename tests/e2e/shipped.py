"""The window users launch, driven from outside: `dmdesk gui` itself (the real entry point,
`dmdesk.cli.main`) in a child process, with only an observer and a hand added to it.

- The observer is a Qt timer that prints, every 100 ms, one JSON line of what the window shows:
  the History's runs, Generate's state, every line of the Workflow card, whether the live view
  is paused, a job is running, the close dialog or an error box is open.
- The hand reads JSON commands on stdin (a thread queues them; a GUI-thread timer acts on them):
  `{"click": NAME}` clicks a visible, enabled widget by its contract name, `{"close": true}`
  closes the window as the window manager would, `{"cancel_close": true}` answers the close
  dialog with Cancel. Each command is acknowledged with `{"ack": N, "ok": …}`.

Nothing of the window is replaced: its loop is `run_gui`'s own, its watcher the shipped one."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
import time
from typing import Any

import pytest

OBSERVED_GUI = """
import json, queue, sys, threading, time
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QAbstractButton, QApplication, QMessageBox, QWidget
from dmdesk.ui.main_window import MainWindow
import dmdesk.cli

app = QApplication(sys.argv[:1])
commands = queue.Queue()

def read_commands():
    for line in sys.stdin:
        if line.strip():
            commands.put(json.loads(line))

threading.Thread(target=read_commands, daemon=True).start()

def main_window():
    for w in QApplication.topLevelWidgets():
        if isinstance(w, MainWindow) and w.isVisible():
            return w
    return None

def visible(name):
    for top in QApplication.topLevelWidgets():
        found = top if top.objectName() == name else top.findChild(QWidget, name)
        if found is not None and found.isVisible():
            return found
    return None

def text_of(widget):
    return widget.text() if widget is not None and widget.isVisible() else ""

def report():
    w = main_window()
    if w is None:
        return
    card = w.page.workflow
    runs = [[r.id, r.status.value] for r in w.page.history_model.runs()]
    error = visible("errorBox")
    print(json.dumps({
        "t": time.monotonic(),
        "runs": runs,
        "generate": card.generate_button.isEnabled(),
        "review": card.review_button.isEnabled(),
        "train": card.train_button.isEnabled(),
        "card": {
            "progress": text_of(card.progress_label) if card.progress_box.isVisible() else "",
            "blocked": text_of(card.blocked_label),
            "next": card.review_label.text(),
        },
        "job": w.page.job_running,
        "paused": visible("liveStateLabel") is not None,
        "close_box": visible("closeRunningBox") is not None,
        "error": error.text() if error is not None else "",
    }), flush=True)

def act():
    while not commands.empty():
        command = commands.get()
        ok, why = True, ""
        if "click" in command:
            widget = visible(command["click"])
            ok = isinstance(widget, QAbstractButton) and widget.isEnabled()
            if ok:
                widget.click()
            else:
                why = "not visible" if widget is None else "disabled"
        elif "close" in command:
            w = main_window()
            ok = w is not None
            if ok:
                w.close()
        elif "cancel_close" in command:
            box = visible("closeRunningBox")
            ok = isinstance(box, QMessageBox)
            if ok:
                box.button(QMessageBox.StandardButton.Cancel).click()
        print(json.dumps({"ack": command.get("n"), "ok": ok, "why": why}), flush=True)

timer = QTimer()
timer.timeout.connect(report)
timer.start(100)
hand = QTimer()
hand.timeout.connect(act)
hand.start(50)
sys.exit(dmdesk.cli.main(["gui"]))
"""


class Observed:
    """The child's reports, read in a thread; `wait_for(pred)` returns the first report that
    satisfies `pred`, with the time it came; `send` gives the hand a command and waits for its
    acknowledgement."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.reports: list[dict[str, Any]] = []
        self.acks: dict[int, dict[str, Any]] = {}
        self._sent = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def close(self) -> None:
        """After the child has exited: the reader has met the end of its output; the pipes are
        closed here, not left to the garbage collector (pytest turns that into an error)."""
        self._reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stdin):
            if pipe is not None:
                with contextlib.suppress(BrokenPipeError):
                    pipe.close()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            message = json.loads(line)
            with self._lock:
                if "ack" in message:
                    self.acks[message["ack"]] = message
                else:
                    self.reports.append(message)

    @property
    def last(self) -> dict[str, Any] | None:
        with self._lock:
            return self.reports[-1] if self.reports else None

    def since(self, start: int) -> list[dict[str, Any]]:
        with self._lock:
            return self.reports[start:]

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.reports)

    def send(self, timeout: float = 5, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None, "the child was started without a stdin pipe"
        self._sent += 1
        n = self._sent
        self.proc.stdin.write(json.dumps(command | {"n": n}) + "\n")
        self.proc.stdin.flush()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._lock:
                if n in self.acks:
                    return self.acks.pop(n)
            time.sleep(0.02)
        pytest.fail(f"the window did not act on {command} within {timeout} s")

    def wait_for(self, pred: Any, timeout: float, what: str) -> dict[str, Any]:
        """The first report from the latest one on (never an older one) that satisfies
        `pred`; fails if none comes within `timeout` seconds or the window exits."""
        end = time.monotonic() + timeout
        with self._lock:
            seen = max(0, len(self.reports) - 1)
        while time.monotonic() < end:
            with self._lock:
                fresh = self.reports[seen:]
                seen = len(self.reports)
            for report in fresh:
                if pred(report):
                    return report
            if self.proc.poll() is not None:
                pytest.fail(f"the window exited ({self.proc.returncode}) waiting for {what}")
            time.sleep(0.05)
        pytest.fail(f"the window did not show {what} within {timeout} s; it shows {self.last}")


def job_pid(run_id: int) -> int:
    out = subprocess.run(
        ["pgrep", "-f", f"dmdesk _job {run_id} "], capture_output=True, text=True
    ).stdout.split()
    assert out, "no job process"
    return int(out[0])
