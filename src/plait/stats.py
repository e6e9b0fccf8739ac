"""Frozen statistics snapshots returned by `Endpoint.stats()`.

A snapshot never changes after it is taken; take another to see progress. Counters
only grow over a session. Drop counters are keyed by reason, so every datagram that was
refused is accounted for.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

__all__ = ["FecStatsSnapshot", "LinkStats", "Stats"]


@attrs.frozen
class LinkStats:
    """One link, both directions."""

    link: int
    state: str
    """UP, DEGRADED, PROBATION or DOWN (see `plait.links.LinkState`)."""
    weight: int
    """Current striping weight (kbps-like units)."""
    srtt_ns: int
    rttvar_ns: int
    min_rtt_ns: int
    loss: float
    """Outbound loss fraction, from the peer's reports."""
    jitter_us: int
    """Inbound RFC 3550 jitter."""
    delivery_rate_bps: int
    datagrams_sent: int
    bytes_sent: int
    datagrams_received: int
    bytes_received: int
    inbound_lost: int
    """Inbound datagrams missing on this link (per-link sequence gaps that aged out)."""
    inbound_reordered: int
    replays: int
    """Inbound datagrams refused as duplicates or replays of a link sequence."""
    transitions: int


@attrs.frozen
class FecStatsSnapshot:
    k: int
    m: int
    blocks_sent: int
    parity_sent: int
    overhead: float
    """Parity bytes sent / data bytes sent."""
    parity_received: int
    recovered: int
    """Packets rebuilt from parity (inbound)."""
    blocks_recovered: int
    blocks_lost: int


@attrs.frozen
class Stats:
    """A whole session."""

    session: int
    established: bool
    closed: bool
    links: tuple[LinkStats, ...]
    messages_sent: int
    """Messages accepted by `send`."""
    messages_delivered: int
    messages_expired_sending: int
    messages_expired_receiving: int
    records_sent: int
    """DATA records sent for the first time (messages and fragments)."""
    repairs: int
    """DATA records re-sent after a loss or a link failure."""
    losses_detected: int
    acked: int
    duplicates_dropped: int
    """Inbound DATA records already received (another link, a re-send, a rebuild)."""
    late_arrivals: int
    """Messages complete only after their deadline (reported expired, not delivered)."""
    fec: FecStatsSnapshot | None
    buffered_bytes: int
    """Bytes queued or in flight, against `Config.send_buffer_bytes`."""
    drops: Mapping[str, int]
    """Inbound datagrams refused, by reason (malformed: ..., authentication, ...)."""
    events_dropped: int
    """Events discarded because the user did not drain `next_event()` (bounded queue)."""
