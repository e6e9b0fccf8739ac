"""The trace digest: one SHA-256 over everything that happened in a run.

Every record is a fixed 45-byte header ``!BqqqqqI`` (kind, time, four integers whose
meaning depends on the kind, and the length of what follows), followed for network
records by the datagram bytes. Two
runs have the same digest exactly when they saw the same datagrams with the same fates
at the same nanoseconds, and the endpoints reported the same events at the same times.
Given the same scenario, seed and endpoint code, it is always the same, on any machine.

When two digests differ, run both with ``trace_limit=N`` and compare
`SimResult.trace`: the first differing record is where the runs diverged.
"""

from __future__ import annotations

import enum
import hashlib
import struct
from typing import Final

__all__ = ["Record", "Trace"]

_HEAD: Final = struct.Struct("!BqqqqqI")


class Record(enum.IntEnum):
    """Kinds of trace record, and what their four integers are."""

    SEND = 1
    """sender, stream, index, deadline (a message accepted by `send`)."""
    BACKPRESSURE = 2
    """sender, stream, size, 0 (a message refused by `send`)."""
    NET = 3
    """sender, link, fate, arrival (-1 if dropped); + the datagram (and, if corrupted,
    the corrupted copy)."""
    ARRIVE = 4
    """receiver, link, length, 0 (a datagram handed to `receive_datagram`)."""
    INJECT = 5
    """receiver, link, junk kind, length; + the bytes."""
    TIMER = 6
    """side, 0, 0, 0 (`handle_timer` called)."""
    RECEIVED = 7
    """side, stream, msg, length (`MessageReceived`)."""
    EXPIRED = 8
    """side, stream, msg, sent (`MessageExpired`; the handle is not hashed: it is the
    endpoint's own bookkeeping)."""
    EVENT = 9
    """side, 0, first int field or 0, 0; + the event's class name (any other event)."""
    OUTAGE = 10
    """link (-1 for all), direction (-1 for both), 1 when it starts / 0 when it ends, 0."""
    UNCONFIRMED = 11
    """side, stream, msg, handle (`MessageUnconfirmed`)."""


class Trace:
    """Accumulates the digest; keeps the first `limit` records readable for debugging."""

    __slots__ = ("_hash", "limit", "records")

    def __init__(self, limit: int = 0) -> None:
        self._hash = hashlib.sha256()
        self.limit = limit
        self.records: list[tuple[object, ...]] = []

    def add(
        self,
        kind: Record,
        time: int,
        a: int = 0,
        b: int = 0,
        c: int = 0,
        d: int = 0,
        blob: bytes = b"",
    ) -> None:
        """Hash one record (and keep it, while fewer than `limit` are kept)."""
        update = self._hash.update
        update(_HEAD.pack(kind, time, a, b, c, d, len(blob)))
        if blob:
            update(blob)
        if len(self.records) < self.limit:
            self.records.append((kind.name, time, a, b, c, d, blob.hex()))

    def hexdigest(self) -> str:
        """The digest so far, as 64 hex digits."""
        return self._hash.hexdigest()
