"""Issue 26: the window's resident memory once the demo's generation is over (target ≤ 800 MB).

Each measurement runs in a fresh child process on its own temporary data dir (never the user's
config). The demo store is built first by `dmdesk _demo-store`, a process of its own, as the
window's first start builds it (dmdesk.ui.demo_build). Then: the offscreen main window on it
(`dmdesk demo`'s settings: 40 chunks, the local SmolLM2 writer, local MiniLM embeddings), one
demo generation through the service (the code the window's worker thread runs), and the
process's VmRSS read from /proc once the job is over and the loop has idled for a second.
Twice: as shipped (the generator releases its model when the job ends), and with the release
switched off (the behaviour before issue 26).

    python bench/idle_rss.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, sys, time
from pathlib import Path

def rss_mb(field="VmRSS"):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0

keep_model = sys.argv[1] == "keep"
from PySide6.QtWidgets import QApplication
app = QApplication([])
from dmdesk.config import load_config
from dmdesk.demo import ensure_demo
from dmdesk.services.context import build_context
from dmdesk.services.runs import TrainingRunService
from dmdesk.ui.main_window import MainWindow
from dmdesk.jobs.runner import run_job
if keep_model:
    from dmdesk.llm.local_generator import LocalGenerator
    async def keep(self):
        return None
    LocalGenerator.aclose = keep
config = ensure_demo(load_config())
ctx = build_context(config)
window = MainWindow(ctx)
window.ask_before_stopping = False
window.show()
for _ in range(20):
    app.processEvents(); time.sleep(0.05)
opened = rss_mb()
t0 = time.perf_counter()
runs = TrainingRunService(ctx)
run = run_job(runs.ctx, runs.start_generation().id)
seconds = time.perf_counter() - t0
for _ in range(20):
    app.processEvents(); time.sleep(0.05)
print(json.dumps({"opened": opened, "after": rss_mb(), "anon": rss_mb("RssAnon"),
                  "file": rss_mb("RssFile"), "status": run.status.value,
                  "pairs": run.pair_count, "seconds": seconds}))
window.close()
ctx.dispose()
"""


def measure(mode: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="dmdesk-rss-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMDESK_")}
        env |= {
            "DMDESK_DATA_DIR": str(Path(tmp) / "data"),
            "DMDESK_CONFIG_FILE": str(Path(tmp) / "config.toml"),
            "QT_QPA_PLATFORM": "offscreen",
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "OPENAI_API_KEY": "",
        }
        subprocess.run(  # as the window's first start does: the store's build is not its heap
            [sys.executable, "-m", "dmdesk", "_demo-store"],
            env=env,
            capture_output=True,
            check=True,
            timeout=1800,
        )
        out = subprocess.run(
            [sys.executable, "-c", CHILD, mode],
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if out.returncode != 0:
            sys.exit(f"the {mode} run failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    t0 = time.perf_counter()
    shipped = measure("release")
    kept = measure("keep")
    target = 800.0
    for label, m in (("as shipped (model released)", shipped), ("model kept (before)", kept)):
        print(
            f"{label:<30} window opened {m['opened']:6.0f} MB, after the generation "
            f"{m['after']:6.0f} MB ({m['anon']:.0f} MB anonymous, {m['file']:.0f} MB of mapped "
            f"files; {m['status']}, {m['pairs']} pairs, {m['seconds']:.0f} s)"
        )
    print(f"idle RSS after the demo's generation ÷ target: {shipped['after'] / target:.2f}")
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0 if shipped["after"] <= target else 1


if __name__ == "__main__":
    sys.exit(main())
