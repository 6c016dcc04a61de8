"""The demo's first start with the window already open: the store is built by a dmdesk process
of its own (`dmdesk _demo-store`), read line by line while the window shows its progress.

Why a process and not a thread: the build is half a minute of MiniLM on the CPU. In a thread
it holds the GIL in the window's process (the window would stutter) and leaves the embedder's
heap there (hundreds of MB kept all day); and it cannot be cancelled, so a window closed during
the build had to wait for it. A process is killed on close (the store is renamed into place
whole, so a killed build leaves nothing half-built and the next start builds again).
"""

from __future__ import annotations

import sys
import time

from PySide6.QtCore import QObject, QProcess, Signal, Slot

from dmdesk.app import dmdesk_command, log_file


class DemoStoreBuild(QObject):
    """`progressed(done, total, step)` for each step; `ended(error)` once, with "" when the
    store is ready. The terminal that started `dmdesk demo` says the same as the window: each
    new step, then a line at most every 2 s, and the last one (issue 26: a silent first start
    read as a hang)."""

    progressed = Signal(int, int, str)
    ended = Signal(str)

    def __init__(self, command: list[str] | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.command = command or dmdesk_command("_demo-store")
        self.process = QProcess(self)  # (it inherits this process's environment)
        self.process.readyReadStandardOutput.connect(self._on_stdout)
        self.process.readyReadStandardError.connect(self._on_stderr)
        self.process.finished.connect(self._on_finished)
        self.process.errorOccurred.connect(self._on_error)
        self._partial = b""
        self._errors: list[str] = []
        self._said, self._said_at = "", 0.0
        self._ended = False
        self.done, self.total, self.step = 0, 0, ""

    @property
    def running(self) -> bool:
        return not self._ended

    def start(self) -> None:
        self.process.start(self.command[0], self.command[1:])

    def cancel(self) -> None:
        """The window closes during the build: end the process (the next start builds again)."""
        if self._ended:
            return
        self._ended = True
        self.process.kill()
        self.process.waitForFinished(3000)
        print(
            "dmdesk: the demo knowledge base was not finished; the next start builds it",
            file=sys.stderr,
            flush=True,
        )

    @Slot()
    def _on_stdout(self) -> None:
        data = self._partial + bytes(self.process.readAllStandardOutput().data())
        *lines, self._partial = data.split(b"\n")
        for raw in lines:
            parts = raw.decode("utf-8", "replace").strip().split(" ", 3)
            if len(parts) == 4 and parts[0] == "progress":
                try:
                    done, total = int(parts[1]), int(parts[2])
                except ValueError:
                    continue
                self._report(done, total, parts[3])

    def _report(self, done: int, total: int, step: str) -> None:
        self.done, self.total, self.step = done, total, step
        self.progressed.emit(done, total, step)
        now = time.monotonic()
        if step != self._said or done == total or now - self._said_at >= 2.0:
            self._said, self._said_at = step, now
            print(f"dmdesk: {step}… {done}/{total}", file=sys.stderr, flush=True)

    @Slot()
    def _on_stderr(self) -> None:
        text = bytes(self.process.readAllStandardError().data()).decode("utf-8", "replace")
        self._errors = (self._errors + [ln for ln in text.splitlines() if ln.strip()])[-20:]

    @Slot(int, QProcess.ExitStatus)
    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        if self._ended:
            return
        self._ended = True
        if code == 0 and status == QProcess.ExitStatus.NormalExit:
            self.ended.emit("")
            return
        self.ended.emit(self._failure(f"the build process ended with code {code}"))

    @Slot(QProcess.ProcessError)
    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart and not self._ended:
            self._ended = True
            why = self.process.errorString()
            self.ended.emit(f"dmdesk could not start {self.command[0]}: {why}")

    def _failure(self, fallback: str) -> str:
        """The child's own one-line message (dmdesk's main prints `dmdesk: …`), else the code."""
        said = next((ln for ln in reversed(self._errors) if ln.startswith("dmdesk: ")), None)
        if said:
            return said.removeprefix("dmdesk: ")
        where = log_file()
        return fallback + (f"; see {where}" if where else "")
