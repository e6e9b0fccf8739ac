"""plait: deterministic low-latency UDP transport over several bonded links.

The core is sans-I/O: it is fed datagrams and clock ticks (integer nanoseconds) and hands
back datagrams, deadlines and events. It never reads a clock, opens a socket or sleeps.

    cfg = plait.Config(links=[plait.LinkConfig(rate_bps=5_000_000)] * 4)
    a = plait.Endpoint(cfg, initiator=True, now=0)

See README.md and docs/ for the loop that drives an endpoint.

`plait.COMPILED` tells whether the core's modules were compiled with mypyc (the default
where a C compiler was there at install) or are the pure-Python ones
(`PLAIT_PURE_PYTHON=1` forces those); both behave the same.
"""

from __future__ import annotations

import sys
from typing import Final

# _build comes first (it sorts first): importing it chooses the compiled or the
# pure-Python modules before any of them is loaded
from plait import _build, errors, seq, wire
from plait.config import Config, FecConfig, HealthConfig, LinkConfig, Scheduling
from plait.endpoint import Endpoint
from plait.events import (
    CloseReason,
    Event,
    FecRecovered,
    LinkDegraded,
    LinkDown,
    LinkUp,
    MessageExpired,
    MessageReceived,
    MessageUnconfirmed,
    SessionClosed,
    SessionEstablished,
    UsableRateChanged,
)
from plait.lifecycle import SessionState
from plait.links import LinkState
from plait.stats import FecStatsSnapshot, LinkStats, Stats

__all__ = [
    "COMPILED",
    "CloseReason",
    "Config",
    "Endpoint",
    "Event",
    "FecConfig",
    "FecRecovered",
    "FecStatsSnapshot",
    "HealthConfig",
    "LinkConfig",
    "LinkDegraded",
    "LinkDown",
    "LinkState",
    "LinkStats",
    "LinkUp",
    "MessageExpired",
    "MessageReceived",
    "MessageUnconfirmed",
    "Scheduling",
    "SessionClosed",
    "SessionEstablished",
    "SessionState",
    "Stats",
    "UsableRateChanged",
    "__version__",
    "errors",
    "seq",
    "wire",
]

__version__ = "0.1.0"

#: Whether the core runs as mypyc-compiled C extensions (else as pure Python).
COMPILED: Final = _build.is_compiled(sys.modules["plait.endpoint"])
