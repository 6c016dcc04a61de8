"""Handing freed memory back to the operating system.

CPython and torch free a released model's tensors into glibc's heap, which keeps the pages: the
process's resident size stays at its peak. The window lives all day, so after a job drops its
models (dmdesk.llm.local_generator.release, dmdesk.embeddings.release_local_model) it trims.
"""

from __future__ import annotations

import contextlib
import gc
import sys


def trim() -> None:
    """Collect garbage, then glibc's `malloc_trim(0)`; only the collection elsewhere."""
    gc.collect()
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with contextlib.suppress(OSError, AttributeError):  # musl or no glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)
