"""Import deeplake 3.9 without touching the network.

`import deeplake` asks PyPI for a newer version unless `~/.activeloop/pypi_version.json` is less
than a day old (deeplake/util/check_latest_version.py): offline that costs a DNS failure or a 2 s
timeout on every start. We refresh that cache with the installed version first, which makes the
check a file read. `BUGGER_OFF=true` turns its usage reporting off.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import time
from pathlib import Path
from types import ModuleType

_module: ModuleType | None = None


def _silence_version_check() -> None:
    path = Path(os.path.expanduser("~/.activeloop/pypi_version.json"))
    try:
        if path.is_file():
            _, saved = json.loads(path.read_text())
            if time.time() - float(saved) < 12 * 3600:
                return
        path.parent.mkdir(parents=True, exist_ok=True)
        version = importlib.metadata.version("deeplake")
        path.write_text(json.dumps([version, time.time()]))
    except (OSError, ValueError, TypeError, importlib.metadata.PackageNotFoundError):
        pass  # worst case deeplake does its own (bounded, 2 s) check


def import_deeplake() -> ModuleType:
    global _module
    if _module is None:
        os.environ.setdefault("BUGGER_OFF", "true")
        _silence_version_check()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import deeplake

        _module = deeplake
    return _module


# -- DeepLake Cloud: where its API is, and a transport whose retries end --------------------------

ENDPOINT_ENV = "DMDESK_ACTIVELOOP_URL"
REQUEST_TIMEOUT_S = 30.0
CONNECT_TRIES = 3


class CloudUnreachable(Exception):
    """DeepLake Cloud gave no HTTP answer (refused, reset, DNS, timeout) after a few tries."""


class _BoundedRequests:
    """Stands in for the `requests` module inside `deeplake.client.client`.

    deeplake 3.9's `DeepLakeBackendClient.request` retries a request that got no status code
    without end (measured: ~2 million retries in 5 s on a DNS failure), so nothing above it ever
    sees an outage (DESIGN.md "Known facts"). This shim answers its `requests.request` with at
    most CONNECT_TRIES attempts, each within REQUEST_TIMEOUT_S, then raises CloudUnreachable —
    which is not a `requests.exceptions.ConnectionError`, so deeplake's loop lets it through.
    """

    def __init__(self, real: ModuleType) -> None:
        self._real = real
        self.exceptions = real.exceptions

    def __getattr__(self, name: str) -> object:
        return getattr(self._real, name)

    def request(self, method: str, url: str, **kwargs: object) -> object:
        timeout = kwargs.get("timeout")
        cap = REQUEST_TIMEOUT_S
        kwargs["timeout"] = min(float(timeout), cap) if isinstance(timeout, int | float) else cap
        last: Exception | None = None
        for attempt in range(CONNECT_TRIES):
            try:
                return self._real.request(method, url, **kwargs)
            except (self._real.exceptions.ConnectionError, self._real.exceptions.Timeout) as exc:
                last = exc
                if attempt + 1 < CONNECT_TRIES:
                    time.sleep(0.2 * (attempt + 1))
        host = url.split("/")[2] if "//" in url else url
        raise CloudUnreachable(
            f"no answer from {host} ({type(last).__name__}) after {CONNECT_TRIES} tries"
        ) from last


def prepare_cloud() -> ModuleType:
    """Import deeplake for a `hub://` store: bound its HTTP retries, and point its client at
    `DMDESK_ACTIVELOOP_URL` when set (a self-hosted or test endpoint; default Activeloop's)."""
    deeplake = import_deeplake()
    import deeplake.client.client as client_module
    import deeplake.client.config as client_config

    if not isinstance(client_module.requests, _BoundedRequests):
        client_module.requests = _BoundedRequests(client_module.requests)
    endpoint = os.environ.get(ENDPOINT_ENV, "").strip().rstrip("/")
    client_config.USE_LOCAL_HOST = bool(endpoint)
    if endpoint:
        client_module.HUB_REST_ENDPOINT_LOCAL = endpoint
    return deeplake
