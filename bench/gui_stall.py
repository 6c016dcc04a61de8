"""P3: the GUI thread's longest stall. A 10 ms QTimer on the GUI thread while the window runs a
generation at full speed (zero-latency server, concurrency 32): longest gap between ticks
(target ≤ 50 ms) and the 99th percentile.

    QT_QPA_PLATFORM=offscreen python bench/gui_stall.py [--chunks 3000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from _common import ServerProcess, context, line, store_of
from PySide6.QtCore import QEventLoop
from PySide6.QtWidgets import QApplication

from dmdesk.ui.diagnostics import StallProbe
from dmdesk.ui.main_window import MainWindow
from dmdesk.ui.workers import GuiThreadCollector, apply_responsiveness_policy

DURATIONS: list[float] = []  # each generation's wall time: what the GUI's tuning costs the job


def one(app: QApplication, srv: ServerProcess, chunks: int) -> list[float]:
    ctx = context(store_of(chunks), srv.base_url, generation_concurrency=32)
    w = MainWindow(ctx)
    w.show()
    app.processEvents()
    probe = StallProbe(10)
    loop = QEventLoop()
    w.page.job_finished.connect(loop.quit)
    probe.start()
    started = time.perf_counter()
    w.page.workflow.generate_button.click()
    loop.exec()
    DURATIONS.append(time.perf_counter() - started)
    probe.stop()
    w.close()
    ctx.dispose()
    return probe.gaps


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--chunks", type=int, default=3000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    app = QApplication.instance() or QApplication([])
    collector = GuiThreadCollector()  # as run_gui does for the GUI process
    apply_responsiveness_policy()
    worst: list[float] = []
    p99s: list[float] = []
    with ServerProcess(latency_s=0.0) as srv:
        for _ in range(args.repeats):
            gaps = sorted(one(app, srv, args.chunks))
            worst.append(gaps[-1])
            p99s.append(gaps[int(len(gaps) * 0.99)])
    collector.stop()
    worst.sort()
    med = worst[len(worst) // 2]
    line("P3 longest GUI-thread stall (10 ms probe)", f"{med * 1000:.0f} ms", "≤ 50 ms", 0.05 / med)
    print(
        f"  longest per run: {', '.join(f'{w * 1000:.0f} ms' for w in worst)}; "
        f"p99 {sorted(p99s)[len(p99s) // 2] * 1000:.0f} ms; "
        f"generation {', '.join(f'{d:.1f} s' for d in DURATIONS)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
