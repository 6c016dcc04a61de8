"""`dmdesk settings`: show the Deep Memory settings, or `--set KEY=VALUE` them (saved typed to
the settings file; an environment variable still wins, and the command says so)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dmdesk.cli.render import print_json
from dmdesk.config import DmdeskConfig, config_file, describe_settings, env_overridden
from dmdesk.domain.errors import EXIT_OK, InvalidSettings

NULLABLE_SETTINGS = {"vector_store_path", "llm_base_url", "chunk_limit", "budget_usd"}


SETTINGS_EPILOG = """settings (KEY: type, range — environment variable):
{rows}
An environment variable wins over a saved value (dmdesk warns when you set such a key).
An empty VALUE removes an optional setting (vector_store_path, llm_base_url, chunk_limit,
budget_usd)."""


def epilog() -> str:

    rows = "\n".join(f"  {d.key:<24} {d.kind}, {d.range} — {d.env}" for d in describe_settings())
    return SETTINGS_EPILOG.format(rows=rows)


def _parse_sets(items: list[str]) -> dict[str, Any]:
    """KEY=VALUE pairs; an empty VALUE unsets an optional setting and is validated (and refused,
    e.g. an empty model name) for the others."""
    changes: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidSettings(f"--set needs KEY=VALUE, got {item!r}")
        key, value = key.strip(), value.strip()
        changes[key] = None if (not value and key in NULLABLE_SETTINGS) else value
    return changes


def show_or_set(args: argparse.Namespace, config: DmdeskConfig) -> int:
    from dmdesk.services import settings as settings_service  # late: the services

    if args.set:
        changes = _parse_sets(args.set)
        config = settings_service.update_settings(
            config, changes, replace_broken=args.replace_broken_file
        )
        if not args.json:
            print(f"Saved {', '.join(changes)} to {config_file()}.")
        for key in env_overridden(changes):
            print(
                f"dmdesk: warning: DMDESK_{key.upper()} is set in the environment and wins over "
                f"the saved {key} (in effect: {getattr(config, key)!r}).",
                file=sys.stderr,
            )
    resp = settings_service.get_settings(config)
    if args.json:
        print_json(resp.model_dump(mode="json"))
        return EXIT_OK
    values = resp.model_dump()
    print(f"{'question writer':<28} {values.pop('generator')}")
    local = values.pop("generator_is_local")
    for k, v in values.items():
        note = ""
        if local and k in ("llm_model", "llm_base_url"):
            note = "   (not used: no API key or URL, so the local model writes the questions)"
        elif k in env_overridden([k]):
            note = f"   (from DMDESK_{k.upper()})"
        print(f"{k:<28} {v}{note}")
    return EXIT_OK
