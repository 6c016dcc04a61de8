"""API tokens: the environment first, then the OS keyring. Never the database, logs or messages.

On a machine without a Secret Service (headless Linux, CI) keyring raises NoKeyringError or
picks a failing backend: we catch every keyring error, treat the secret as absent and say where
else it can come from.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable

SERVICE = "dmdesk"
OPENAI_API_KEY = "OPENAI_API_KEY"
ACTIVELOOP_TOKEN = "ACTIVELOOP_TOKEN"
KNOWN = (OPENAI_API_KEY, ACTIVELOOP_TOKEN)

log = logging.getLogger(__name__)
_said_unavailable: set[str] = set()  # "keyring unavailable" is logged once per secret


class SecretStoreUnavailable(Exception):
    pass


def get_secret(name: str) -> str | None:
    value = os.environ.get(name)
    if value:
        return value
    try:
        import keyring

        return keyring.get_password(SERVICE, name) or None
    except Exception as exc:  # keyring backends raise anything from NoKeyringError to DBus errors
        if name not in _said_unavailable:
            _said_unavailable.add(name)
            log.info("keyring unavailable for %s: %s", name, type(exc).__name__)
        return None


def set_secret(name: str, value: str | None) -> None:
    """Store (or, with None/empty, delete) a secret in the OS keyring."""
    if name not in KNOWN:
        raise ValueError(f"unknown secret {name}")
    try:
        import keyring

        if value:
            keyring.set_password(SERVICE, name, value)
        else:
            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                keyring.delete_password(SERVICE, name)
    except Exception as exc:
        raise SecretStoreUnavailable(
            f"The OS keyring is not available ({type(exc).__name__}). Set the {name} environment "
            "variable instead."
        ) from None


class RedactingFormatter(logging.Formatter):
    """A log formatter that masks the secrets of the environment in every line, tracebacks
    included (a last line of defence: dmdesk never logs a secret on purpose). It reads only the
    environment, never the keyring, so logging cannot recurse into keyring errors."""

    def format(self, record: logging.LogRecord) -> str:
        return _mask(super().format(record), os.environ.get)


def _mask(text: str, lookup: Callable[[str], str | None]) -> str:
    """Replace every known secret value (as `lookup` finds it) that occurs in `text`."""
    for name in KNOWN:
        value = lookup(name)
        if value and len(value) >= 4 and value in text:
            text = text.replace(value, "***")
    return text


def redact(text: str) -> str:
    """Replace every known secret value that occurs in `text` (defence in depth for messages)."""
    return _mask(text, get_secret)
