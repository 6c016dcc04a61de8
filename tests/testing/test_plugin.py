"""The tester's kit (issue 14): the README's example runs as a separate pytest session against
the installed plugin and passes; broken, it fails with a readable message; and every object
name of the contract exists in the window."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dmdesk.testing.names import OBJECT_NAMES

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Testing dmdesk with pytest-qt", 1)[1]
    (code,) = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    return code


def test_the_readme_example_is_short() -> None:
    assert len(readme_example().strip().splitlines()) < 30


def test_the_readme_example_passes_in_its_own_pytest_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=readme_example())
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)


def test_a_broken_expectation_fails_with_a_readable_message(pytester: pytest.Pytester) -> None:
    broken = readme_example().replace("== done.total_chunks == 30", "== done.total_chunks == 31")
    assert broken != readme_example()
    pytester.makepyfile(test_example=broken)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert 30 == 31*"])
    result.stdout.no_fnmatch_line("*INTERNALERROR*")


def test_the_readme_lists_every_contract_name() -> None:
    text = README.read_text(encoding="utf-8")
    missing = [name for name in OBJECT_NAMES if f"| `{name}` |" not in text]
    assert not missing
