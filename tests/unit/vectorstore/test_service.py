"""VectorStoreService over real DeepLake datasets on local paths."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from dmdesk.domain.errors import VectorStoreError
from dmdesk.vectorstore._deeplake import import_deeplake
from dmdesk.vectorstore.service import VectorStoreService
from tests.conftest import chunk_ids, chunk_texts


@pytest.mark.parametrize(
    ("path", "cloud"),
    [
        ("hub://org/kb", True),
        ("HUB://org/kb", True),
        ("/data/kb", False),
        ("./hub://x", False),
        ("s3://bucket/kb", False),
        (None, False),
        ("", False),
    ],
)
def test_fr6_1_is_cloud_only_for_hub_paths(path: str | None, cloud: bool) -> None:
    assert VectorStoreService._is_cloud(path) is cloud


def test_reads_ids_and_texts_in_row_order(store_factory: Callable[[int], Path]) -> None:
    vs = VectorStoreService(str(store_factory(200)))
    assert vs.row_count() == 200
    assert vs.read_ids(3) == chunk_ids(3)
    assert vs.read_texts([5, 9, 150]) == [chunk_texts(200)[i] for i in (5, 9, 150)]


def test_iter_chunks_skips_done_ids_and_bounds_batches(
    store_factory: Callable[[int], Path],
) -> None:
    vs = VectorStoreService(str(store_factory(200)))
    done = set(chunk_ids(200)[:50]) | {"chunk-00100"}
    batches = [b for b, _ in vs.iter_chunks(200, skip_ids=done, batch_size=64)]
    assert max(len(b) for b in batches) == 64
    got = [c for b in batches for c in b]
    assert [c.id for c in got] == [i for i in chunk_ids(200) if i not in done]
    assert all(c.text == chunk_texts(200)[c.row] for c in got)


def test_iter_chunks_stops_at_the_run_selection(store_factory: Callable[[int], Path]) -> None:
    vs = VectorStoreService(str(store_factory(200)))
    assert sum(len(b) for b, _ in vs.iter_chunks(30)) == 30


def test_missing_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VectorStoreError, match="does not exist"):
        VectorStoreService(str(tmp_path / "nope")).open()


def test_a_folder_that_is_not_a_dataset_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(VectorStoreError, match="not a DeepLake dataset"):
        VectorStoreService(str(tmp_path)).open()


def test_a_dataset_without_text_tensor_is_a_clear_error(tmp_path: Path) -> None:
    deeplake = import_deeplake()
    ds = deeplake.empty(str(tmp_path / "ds"), verbose=False)
    ds.create_tensor("labels", htype="class_label")
    with pytest.raises(VectorStoreError, match="no 'text' tensor"):
        VectorStoreService(str(tmp_path / "ds")).open()


def test_no_store_configured_says_where_to_set_it() -> None:
    with pytest.raises(VectorStoreError, match="DMDESK_VECTOR_STORE_PATH"):
        VectorStoreService(None).open()


def test_cloud_store_without_token_says_where_to_set_it() -> None:
    with pytest.raises(VectorStoreError, match="ACTIVELOOP_TOKEN"):
        VectorStoreService("hub://org/kb", lambda: None).open()


def test_opening_a_local_store_makes_no_network_call(
    store_factory: Callable[[int], Path], tmp_path: Path
) -> None:
    """In a fresh interpreter (so `import deeplake` is included), an audit hook records every
    socket connect and DNS lookup while the store is imported, opened and read."""
    script = textwrap.dedent(
        f"""
        import json, sys
        calls = []
        def hook(event, args):
            if event in ("socket.connect", "socket.getaddrinfo", "socket.gethostbyname"):
                calls.append([event, repr(args)[:200]])
        sys.addaudithook(hook)
        from dmdesk.vectorstore.service import VectorStoreService
        vs = VectorStoreService({str(store_factory(200))!r})
        n = vs.row_count()
        texts = [c.text for b, _ in vs.iter_chunks(n) for c in b]
        print(json.dumps({{"n": n, "texts": len(texts), "calls": calls}}))
        """
    )
    env = {"HOME": str(tmp_path), "PATH": "/usr/bin:/bin", "BUGGER_OFF": "true"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["n"] == 200 and result["texts"] == 200
    assert result["calls"] == []


def test_iter_chunks_says_the_lowest_row_not_handed_out_with_each_batch(
    store_factory: Callable[[int], Path],
) -> None:
    """`next_row` is the resume point: every row below it was yielded or skipped as done."""
    vs = VectorStoreService(str(store_factory(200)))
    done = set(chunk_ids(200)[:50]) | set(chunk_ids(200)[150:])
    got = list(vs.iter_chunks(200, skip_ids=done, batch_size=64, id_block=100))
    assert [(b[0].row, b[-1].row, nxt) for b, nxt in got] == [(50, 113, 114), (114, 149, 200)]
    got = list(vs.iter_chunks(200, skip_ids=done, batch_size=30, start_row=60))
    assert [nxt for _, nxt in got] == [90, 120, 200]
