"""The PySide6 GUI. The only package that imports Qt.

Importing it first works around a measured PySide6 6.12.0 defect on CPython 3.11: every
`SignalInstance.emit()` drops one reference to the bool it returns, and every Python override
of a void Qt virtual (`paintEvent`, `timerEvent` — qasync runs each asyncio step from one) drops
one reference to the None it returns. CPython 3.12+ makes these objects immortal, so the
defect is invisible there; on 3.11 `True` (about 26,000 references once dmdesk has loaded its
libraries) is freed after that many emits and the process aborts ("Fatal Python error:
bool_dealloc: deallocating True or False", or `none_dealloc`) — a window emitting ten progress
signals a second would die after about 45 minutes of generation. `_pin_singletons` measures the
leak on a private signal at import and, only when it is there, raises the reference counts of
True, False and None by 2**40 — what 3.12 does by design (tests/ui/test_pyside_emit.py).
"""

from __future__ import annotations

import sys


def _pin_singletons() -> bool:
    """Make True, False and None effectively immortal when `emit()` leaks references (the
    void-virtual leak of None comes with it). Returns whether it did."""
    if sys.version_info >= (3, 12):
        return False  # immortal already
    import ctypes

    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(8):
        probe.ping.emit()
    if sys.getrefcount(True) >= before:
        return False  # a PySide6 without the defect
    for value in (True, False, None):
        ctypes.c_ssize_t.from_address(id(value)).value += 1 << 40  # ob_refcnt, first field
    return True


SINGLETONS_PINNED = _pin_singletons()
