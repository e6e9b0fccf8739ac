"""plait: deterministic low-latency UDP transport over several bonded links.

The core is sans-I/O: it is fed datagrams and clock ticks (integer nanoseconds) and hands
back datagrams, deadlines and events. It never reads a clock, opens a socket or sleeps.

    cfg = plait.Config(links=[plait.LinkConfig(rate_bps=5_000_000)] * 4)
    a = plait.Endpoint(cfg, initiator=True, now=0)

See README.md and docs/ for the loop that drives an endpoint.
"""

from __future__ import annotations

from plait import errors, seq, wire
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
