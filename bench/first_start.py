"""Issue 26: the first start, measured. `dmdesk demo` on an empty data dir (the models already
installed, as after `make deps`): seconds until the terminal first says what is happening, until
the window is shown (it opens at once, the store being built behind it by a process of its own),
and until Generate is ready (the store built; `--smoke` reports both, then exits). Then the
second start, on the store the first one built. Each start is a fresh process on its own
temporary data dir (never the user's config), offscreen. Target: a usable window within 30 s.

    python bench/first_start.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TARGET_S = 30.0


def start(env: dict[str, str]) -> dict[str, float]:
    """Seconds from the command to its first line on the terminal and to the window shown."""
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dmdesk", "demo", "--smoke"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    seen: dict[str, float] = {}

    def read(stream: object, name: str) -> None:
        for line in stream:  # type: ignore[attr-defined]
            seen.setdefault("first line", time.monotonic() - t0)
            if "window shown" in line:
                seen["window"] = time.monotonic() - t0
            if "ready (Generate enabled)" in line:
                seen["generate"] = time.monotonic() - t0
            if name == "stderr" and "first start" in line:
                seen["preparing"] = time.monotonic() - t0

    readers = [
        threading.Thread(target=read, args=(proc.stdout, "stdout")),
        threading.Thread(target=read, args=(proc.stderr, "stderr")),
    ]
    for r in readers:
        r.start()
    code = proc.wait(600)
    for r in readers:
        r.join()
    for pipe in (proc.stdout, proc.stderr):
        assert pipe is not None
        pipe.close()
    if code != 0 or "window" not in seen:
        sys.exit(f"`dmdesk demo --smoke` failed ({code}): {seen}")
    return seen


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dmdesk-first-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DMDESK_")}
        env |= {
            "DMDESK_DATA_DIR": str(Path(tmp) / "data"),
            "DMDESK_CONFIG_FILE": str(Path(tmp) / "config.toml"),
            "QT_QPA_PLATFORM": env.get("QT_QPA_PLATFORM", "offscreen"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
            "OPENAI_API_KEY": "",
        }
        first = start(env)
        second = start(env)
    print(
        f"first start:  first words {first['first line']:5.1f} s, window shown "
        f"{first['window']:5.1f} s, Generate ready {first.get('generate', float('nan')):5.1f} s "
        "(the demo store built behind the open window)"
    )
    print(
        f"second start: window shown {second['window']:5.1f} s, Generate ready "
        f"{second.get('generate', float('nan')):5.1f} s"
    )
    print(
        f"first start to a usable window ÷ target ({TARGET_S:.0f} s): "
        f"{first['window'] / TARGET_S:.2f}"
    )
    return 0 if first["window"] <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
