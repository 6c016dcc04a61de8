"""The commands that open the window (`gui`, the default, and `demo`), the demo without a window
(`demo --no-gui`), and the demo store's build for the window's first start (`_demo-store`)."""

from __future__ import annotations

import argparse

from dmdesk.cli.render import ImportProgress
from dmdesk.config import DmdeskConfig
from dmdesk.domain.errors import EXIT_OK


def gui(args: argparse.Namespace, config: DmdeskConfig) -> int:
    """`dmdesk`, `dmdesk gui`, and `dmdesk demo` without --no-gui. `args.settings_problem`: a
    settings file that cannot be read, which the window shows (dmdesk.cli.main)."""
    from dmdesk.ui.main_window import run_gui  # late: Qt

    smoke = getattr(args, "smoke", False) or args.top_smoke
    return run_gui(
        config,
        smoke=smoke,
        demo=args.command == "demo",
        settings_problem=getattr(args, "settings_problem", None),
    )


def demo(args: argparse.Namespace, config: DmdeskConfig) -> int:
    if not args.no_gui:
        return gui(args, config)
    from dmdesk.demo import demo_store_path, ensure_demo  # late: the embedder, deeplake

    # The store's build is an import (its chunks embedded), not a generation: said as
    # `dmdesk import` says it ("generation: 533/533 chunks, 0 pairs" read as a run).
    building = ImportProgress()
    config = ensure_demo(config, lambda done, total, _msg: building("embedding", done, total))
    print(f"The demo knowledge base is ready: {demo_store_path(config)}")
    print("Next: dmdesk generate --wait; dmdesk review RUN --approve-all; dmdesk train RUN --wait")
    return EXIT_OK


def demo_store(args: argparse.Namespace, config: DmdeskConfig) -> int:
    """Build the demo store (`dmdesk _demo-store`, the window's first start): one line
    `progress DONE TOTAL MESSAGE` on stdout per step, for the window that reads them. The
    settings are left to the window (dmdesk.demo.finish_demo)."""
    from dmdesk.demo import build_demo_store, demo_store_path, store_ready  # late: deeplake

    def report(done: int, total: int, message: str) -> None:
        print(f"progress {done} {total} {message}", flush=True)

    if not store_ready(config):
        build_demo_store(demo_store_path(config), report)
    return EXIT_OK
