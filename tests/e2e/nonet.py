"""Run the dmdesk CLI with every non-loopback network use turned into a hard failure.

An audit hook (PEP 578) sees each socket connect and name lookup; anything that is not
127.0.0.1/localhost/a Unix socket raises, so a test that passes through this proves the command
made no outside call. Usage: python -m tests.e2e.nonet ARGS...
"""

from __future__ import annotations

import sys

LOCAL = ("127.0.0.1", "localhost", "::1", None)


def _hook(event: str, args: tuple) -> None:
    if event == "socket.getaddrinfo" and args[0] not in LOCAL:
        raise ConnectionRefusedError(f"no network in this test: lookup of {args[0]!r}")
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address[0] not in LOCAL:
            raise ConnectionRefusedError(f"no network in this test: connect to {address!r}")


def main() -> int:
    sys.addaudithook(_hook)
    from dmdesk.cli import main as dmdesk_main

    return dmdesk_main(sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
