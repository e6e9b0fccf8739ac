"""plait: deterministic low-latency UDP transport over several bonded links.

The core is sans-I/O: it is fed datagrams and clock ticks (integer nanoseconds) and hands
back datagrams, deadlines and events. It never reads a clock, opens a socket or sleeps.
"""

from __future__ import annotations

from plait import errors, seq, wire

__all__ = ["__version__", "errors", "seq", "wire"]

__version__ = "0.1.0"
