"""Issue 23: dmdesk as `pip install` gives it — a wheel built from the checkout's files, installed
into a fresh virtual environment, used from a folder outside the checkout.

The environment reuses the dependencies this one has (a symlink to each entry of this
environment's site-packages except dmdesk's own editable install), so the test is offline and
takes seconds, not the minutes of installing torch again; dmdesk itself comes from the wheel
alone. From there: the offline flow (demo store, a generation against the test LLM server,
review, train, runs), a settings value with a line break (refused; every command still reads
the file), and the tester's README example in a pytest session of that environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from dmdesk.testing.llm_server import FakeLLMServer
from tests.testing.test_plugin import readme_example

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def checkout_files(dest: Path) -> None:
    """The files a clean clone has (tracked or new, not ignored): no build/ or egg-info."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = ROOT / name
        if src.is_file() and not name.startswith("docs/"):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    checkout_files(src)
    dist = tmp_path_factory.mktemp("dist")
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (found,) = dist.glob("dmdesk-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh environment with this one's dependencies and dmdesk from the wheel only."""
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=False)
    python = home / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        name = entry.name.lower()
        if name.startswith(("dmdesk", "__editable__")) or (site / entry.name).exists():
            continue
        (site / entry.name).symlink_to(entry)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return home


def test_the_wheel_holds_the_product_and_its_data_and_nothing_else(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert not [n for n in names if n.split("/")[0] in ("tests", "bench", "tools", "docs")]
    assert "dmdesk/migrations/env.py" in names and "dmdesk/migrations/script.py.mako" in names
    versions = [n for n in names if n.startswith("dmdesk/migrations/versions/")]
    assert len(versions) == len(list((ROOT / "migrations" / "versions").glob("*.py")))
    assert {"dmdesk/resources/brain.svg", "dmdesk/resources/refresh.svg"} <= set(names)
    assert not [n for n in names if "screenshots" in n]


def test_the_offline_flow_runs_from_the_wheel_outside_the_checkout(
    installed: Path, tmp_path: Path
) -> None:
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DMDESK_", "PYTHON"))}
    env |= {
        "DMDESK_DATA_DIR": str(tmp_path / "data"),
        "DMDESK_CONFIG_FILE": str(tmp_path / "config.toml"),
        "DMDESK_QUALITY_FILTERS": "false",
        "DMDESK_CHUNK_LIMIT": "10",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "QT_QPA_PLATFORM": "offscreen",
    }
    dmdesk = str(installed / "bin" / "dmdesk")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [dmdesk, *args], env=env, cwd=work, capture_output=True, text=True, timeout=600
        )

    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c",
         "import dmdesk, sys; print(dmdesk.__file__); print('pytest' in sys.modules)"],
        env=env, cwd=work, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(str(installed)), where  # the wheel's dmdesk, not the checkout's
    assert where[1] == "False"  # import dmdesk does not import pytest

    built = run("demo", "--no-gui")
    assert built.returncode == 0, built.stderr
    with FakeLLMServer() as server:
        env["DMDESK_LLM_BASE_URL"] = server.base_url
        gen = run("generate", "--wait", "--json")
        assert gen.returncode == 0, gen.stderr
        run_id = json.loads(gen.stdout)["id"]
        assert run("review", str(run_id), "--approve-all").returncode == 0
        trained = run("train", str(run_id), "--wait", "--json")
        assert trained.returncode == 0, trained.stderr
    runs = json.loads(run("runs", "--json").stdout)
    assert [(r["id"], r["status"]) for r in runs] == [(run_id, "completed")]

    refused = run("settings", "--set", "llm_model=gpt-4o-mini\nx")
    assert refused.returncode == 2 and "one line" in refused.stderr
    for args in (("runs",), ("settings",)):
        assert run(*args).returncode == 0


def test_the_readme_tester_example_passes_with_the_installed_plugin(
    installed: Path, tmp_path: Path
) -> None:
    (tmp_path / "test_example.py").write_text(readme_example(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DMDESK_", "PYTHON"))}
    env["QT_QPA_PLATFORM"] = "offscreen"
    result = subprocess.run(
        [str(installed / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "test_example.py"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
