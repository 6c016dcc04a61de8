"""Run the dmdesk CLI with every non-loopback network use turned into a hard failure.

An audit hook (PEP 578) sees each socket connect and name lookup; anything that is not
127.0.0.1/localhost/a Unix socket raises, so a test that passes through this proves the command
made no outside call. The processes dmdesk starts itself (the demo's store build, a run's
detached worker) get the hook too, from `nonet_site/sitecustomize.py` on their PYTHONPATH.
Usage: python -m tests.e2e.nonet ARGS...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LOCAL = ("127.0.0.1", "localhost", "::1", None)


def _hook(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo" and args[0] not in LOCAL:
        raise ConnectionRefusedError(f"no network in this test: lookup of {args[0]!r}")
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address[0] not in LOCAL:
            raise ConnectionRefusedError(f"no network in this test: connect to {address!r}")


def install() -> None:
    sys.addaudithook(_hook)


def main() -> int:
    install()
    paths = [str(Path(__file__).with_name("nonet_site")), str(ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([*paths, os.environ.get("PYTHONPATH", "")])
    from dmdesk.cli import main as dmdesk_main

    return dmdesk_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
