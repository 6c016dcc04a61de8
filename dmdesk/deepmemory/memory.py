"""Will it fit? The memory a job over the whole store needs, checked before it reads the store.

The local engine and the quality filters hold the store's chunk embeddings in memory as one
float32 matrix (chunks × d × 4 bytes: 1.5 GB for 1M chunks of 384-d) and score questions against
it tile by tile (dmdesk.deepmemory.blockwise), so what they need is that matrix, the chunk ids,
the questions' vectors and their candidate pools, and a few score tiles — never questions ×
chunks. The estimate is compared with the memory this process may still take: the least of the
system's `MemAvailable`, the cgroup's headroom (a container's limit) and `DMDESK_MEMORY_LIMIT_MB`
(a cap the admin, or a test, sets for dmdesk's jobs) minus what the process already holds. A job
that cannot fit stops with what it needs, what is free and the ways out, instead of being killed
by the kernel half-way.
"""

from __future__ import annotations

import os
from pathlib import Path

from dmdesk.deepmemory import blockwise
from dmdesk.domain.errors import NotEnoughMemory

MB = 2**20
LIMIT_ENV = "DMDESK_MEMORY_LIMIT_MB"
ID_BYTES = 160  # a chunk id as a Python str in a list and in a {id: row} dict (measured ~150)
# torch's and BLAS's work buffers, the store reader's batch and deeplake's chunk cache
# (dmdesk.vectorstore.service.MEMORY_CACHE_MB), allocator slack
SLACK = 384 * MB


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def rss_bytes() -> int:
    """This process's resident memory now."""
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def free_bytes() -> tuple[int, str]:
    """How much more this process may take, and what limits it (for the message)."""
    limits: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                limits.append((int(line.split()[1]) * 1024, "available on this machine"))
    except (OSError, ValueError):
        pass
    cg = Path("/sys/fs/cgroup")
    high, used = _read_int(cg / "memory.max"), _read_int(cg / "memory.current")
    if high is not None and used is not None:
        limits.append((max(0, high - used), "left under this container's memory limit"))
    cap = os.environ.get(LIMIT_ENV, "").strip()
    if cap:
        try:
            limit = int(float(cap) * MB)
        except ValueError:
            limit = None
        if limit is not None:
            limits.append((max(0, limit - rss_bytes()), f"left under {LIMIT_ENV}={cap}"))
    if not limits:
        return 1 << 62, "unknown"
    return min(limits)


def needed_bytes(n_chunks: int, dim: int, n_questions: int, pool: int = 0) -> int:
    """What a scan of `n_questions` against the store needs on top of what is loaded now."""
    corpus = n_chunks * dim * 4
    ids = n_chunks * ID_BYTES
    questions = 3 * n_questions * dim * 4  # vectors, their transformed and normalised copies
    pools = n_questions * pool * (8 + 4) * 2  # candidate rows and scores, and a merge copy
    tiles = 4 * blockwise.BUDGET  # scores, their negation, a comparison, a merge
    return corpus + ids + questions + pools + tiles + SLACK


def _size(n: int) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / MB:.0f} MB"


def check_fits(what: str, n_chunks: int, dim: int, n_questions: int, pool: int = 0) -> int:
    """Raise NotEnoughMemory, saying what is needed, what is free and the ways out, when the job
    cannot fit; else return the estimate in bytes."""
    need = needed_bytes(n_chunks, dim, n_questions, pool)
    free, why = free_bytes()
    if need > free:
        raise NotEnoughMemory(
            f"Not enough memory for {what}: it needs about {_size(need)} for {n_chunks:,} chunks "
            f"of {dim} dimensions and {n_questions:,} questions, and {_size(free)} is {why}. "
            "Close other programs and Proceed, run dmdesk on a machine with more memory, or use "
            "DeepLake Cloud (a hub:// store), whose managed Deep Memory trains on Activeloop's "
            "side and never loads the store here."
        )
    return need
