"""The wheel's package list is explicit (migrations/ and resources/ are mapped into dmdesk):
a new subpackage of dmdesk/ that is not listed would be missing from every pip install."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_of_dmdesk_is_in_the_wheel_list() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "dmdesk").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert on_disk <= listed, sorted(on_disk - listed)
    assert setuptools["package-dir"] == {
        "dmdesk.migrations": "migrations",
        "dmdesk.resources": "resources",
    }


def test_the_migrations_and_icons_are_found_as_package_data() -> None:
    from dmdesk.db.migrate import migrations_dir
    from dmdesk.ui.resources import resources_dir

    assert (migrations_dir() / "env.py").is_file()
    assert (resources_dir() / "brain.svg").is_file()
