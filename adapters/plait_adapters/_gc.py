"""Keeping the cyclic GC off the hot path, for the loops that want it (raw sockets).

`acquire()` collects once and freezes everything that exists (the endpoint, its
tables, the sockets: `gc.freeze`), so later collections never walk them. With
``disable=True`` automatic collection is also switched off, and the loop calls
`collect_if_due()` when it is about to sleep; it collects the young generation once
the allocation counter passes the interpreter's own threshold (older generations every
10th and 100th time, like the default scheme). A loop that never sleeps still collects
once the counter reaches 50 thresholds, so cycles cannot pile up without bound.

The GC is process-wide: sessions count their `acquire`/`release`, and the last
release switches automatic collection back on if it was on before.
"""

from __future__ import annotations

import gc
import threading
from typing import Final

__all__ = ["acquire", "collect_if_due", "release"]

_FORCE: Final = 50
_lock = threading.Lock()
_state = {"users": 0, "disabled": 0, "was_enabled": 1, "young": 0}


def acquire(*, disable: bool) -> None:
    with _lock:
        if _state["users"] == 0:
            _state["was_enabled"] = int(gc.isenabled())
        _state["users"] += 1
        gc.collect()
        gc.freeze()
        if disable:
            _state["disabled"] += 1
            gc.disable()


def release() -> None:
    with _lock:
        _state["users"] -= 1
        if _state["disabled"] > 0:
            _state["disabled"] -= 1
        if _state["disabled"] == 0 and _state["was_enabled"]:
            gc.enable()
        if _state["users"] == 0:
            gc.unfreeze()


def collect_if_due(*, idle: bool = True) -> bool:
    """Collect if enough was allocated since the last collection (always when `idle`
    is False only past the forced bound). Returns True if it collected."""
    threshold = gc.get_threshold()[0] or 700
    count = gc.get_count()[0]
    if count < threshold or (not idle and count < _FORCE * threshold):
        return False
    young = _state["young"] = _state["young"] + 1
    gc.collect(2 if young % 100 == 0 else 1 if young % 10 == 0 else 0)
    return True
