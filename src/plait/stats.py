"""Frozen statistics snapshots returned by `Endpoint.stats()`.

A snapshot never changes after it is taken; take another to see progress. Counters
only grow over a session. Drop counters are keyed by reason, so every datagram that was
refused is accounted for.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import attrs

from plait.lifecycle import SessionState
from plait.links import LinkState

if TYPE_CHECKING:  # only for annotations: these modules build on this one's records
    from plait.fec import BlockDecoder
    from plait.inbox import Inbox
    from plait.lifecycle import Lifecycle
    from plait.linkset import LinkSet
    from plait.outbox import Outbox
    from plait.pmtu import PathMtu

__all__ = ["FecStatsSnapshot", "LinkStats", "Stats", "snapshot"]


@attrs.frozen
class LinkStats:
    """One link, both directions."""

    link: int
    state: LinkState
    """UP, DEGRADED, PROBATION or DOWN: a `plait.LinkState` (an IntEnum; before 0.2 the
    name, a str: ``state.name`` gives it, and str() and format() print it)."""
    weight: int
    """Current striping weight (kbps-like units)."""
    srtt_ns: int
    rttvar_ns: int
    min_rtt_ns: int
    loss: float
    """Outbound loss fraction, from the peer's reports."""
    jitter_ns: int
    """Inbound RFC 3550 jitter (kept in whole µs: a multiple of 1000)."""
    jitter_us: int
    """Deprecated: `jitter_ns` // 1000 (every other time here is in ns)."""
    delivery_rate_bps: int
    """The last delivery-rate sample from the peer's reports (bit/s, IP headers in)."""
    capacity_bps: int
    """What the link is estimated to carry now (`plait.capacity`): its pacing rate."""
    queue_delay_ns: int
    """The last one-way delay sample above the link's minimum: the queue it holds."""
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
    pmtu: int
    """The path MTU in use on this link (IP bytes, headers included): the largest
    datagram its path was shown to carry by the search (`plait.pmtu`), between 1280
    and `Config.mtu`."""
    pmtu_state: str
    """BASE, SEARCHING, SEARCH_COMPLETE or ERROR (`plait.pmtu.PmtuState`)."""
    pmtu_probes: int
    """Padded size probes sent on this link so far."""


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
    """True once the session ended (`state` CLOSED)."""
    links: tuple[LinkStats, ...]
    messages_sent: int
    """Messages accepted by `send`."""
    messages_delivered: int
    bytes_delivered: int
    """Payload bytes of the messages delivered."""
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
    records_ignored: int
    """Inbound DATA records that changed nothing: for a message already delivered or
    expired, fragment fields contradicting earlier ones, or a stream the config lacks."""
    late_arrivals: int
    """Messages complete only after their deadline (reported expired, not delivered)."""
    fec: FecStatsSnapshot | None
    buffered_bytes: int
    """Bytes queued or in flight, against `Config.send_buffer_bytes`."""
    usable_rate_bps: int
    """Message bytes per second (x 8) the links carry now, after loss, headers and FEC
    parity: the rate a video encoder should target (see `UsableRateChanged`)."""
    drops: Mapping[str, int]
    """Inbound datagrams refused, by reason (malformed: ..., authentication, ...)."""
    events_dropped: int
    """Events discarded because the user did not drain `next_event()` (bounded queue)."""
    payload_size: int
    """The longest message that goes out whole, in one DATA datagram, now (bytes); a
    longer one is cut into fragments of 2 bytes less. It fits the smallest path MTU
    among the links that carry data (`LinkStats.pmtu`), FEC parity included."""
    state: SessionState
    """CONNECTING, ESTABLISHED, CLOSING or CLOSED (`plait.lifecycle`)."""
    messages_acked: int
    """Sent messages the peer acknowledged in full (delivered). Once a session is
    closed, ``messages_sent == messages_acked + messages_expired_sending +
    messages_unconfirmed`` exactly."""
    messages_unconfirmed: int
    """Sent messages reported `MessageUnconfirmed`."""
    hellos_unauthenticated: int
    """HELLOs that failed authentication: a peer with another psk (or forgeries). With
    `drops` ``authentication``, what tells "wrong psk" from "no peer"."""
    role_conflicts: int
    """HELLO requests that reached this initiator while connecting: both ends are
    initiators."""
    planned_loss: float | None = None
    """The share of messages the current protection plan expects to lose, by its model
    (`plait.protection.plan_residual`, at the links' measured loss and RTT): at most
    `Config.target_loss` where re-sends, FEC and copies within `Config.max_protection`
    can reach it, above it where they cannot (raise the cap or the latency budget).
    While this end sends nothing the plan for the traffic it last sent stands; None
    before adaptive FEC has sized a block for traffic sent, or with FEC off or fixed."""


def snapshot(
    *,
    session: int,
    established: bool,
    closed: bool,
    links: LinkSet,
    outbox: Outbox,
    inbox: Inbox,
    decoder: BlockDecoder | None,
    drops: Mapping[str, int],
    events_dropped: int,
    usable_rate_bps: int,
    pmtu: PathMtu,
    life: Lifecycle,
    planned_loss: float | None = None,
) -> Stats:
    """Build a `Stats` from an endpoint's parts (copies everything: it never changes)."""
    link_stats = tuple(
        LinkStats(
            link=ln.id,
            state=ln.health.state,
            weight=links.striper.weight(ln.id),
            srtt_ns=ln.health.rtt.srtt,
            rttvar_ns=ln.health.rtt.rttvar,
            min_rtt_ns=ln.health.rtt.min_rtt,
            loss=ln.health.loss,
            jitter_ns=ln.health.jitter.us * 1000,
            jitter_us=ln.health.jitter.us,
            delivery_rate_bps=ln.capacity.delivery_bps,
            capacity_bps=ln.capacity.rate_bps,
            queue_delay_ns=ln.capacity.queue_ns,
            datagrams_sent=ln.datagrams_out,
            bytes_sent=ln.health.bytes_sent,
            datagrams_received=ln.datagrams_in,
            bytes_received=ln.health.bytes_received,
            inbound_lost=ln.health.inbound.lost,
            inbound_reordered=ln.health.inbound.reordered,
            replays=ln.replays,
            transitions=ln.health.transitions,
            pmtu=pmtu.searches[ln.id].plpmtu,
            pmtu_state=pmtu.searches[ln.id].state.name,
            pmtu_probes=pmtu.searches[ln.id].probes,
        )
        for ln in links.links
    )
    enc = outbox.fec
    fec = None
    if enc is not None or decoder is not None:
        es = enc.stats if enc is not None else None
        ds = decoder.stats if decoder is not None else None
        fec = FecStatsSnapshot(
            k=enc.k if enc else 0,
            m=enc.m if enc else 0,
            blocks_sent=es.blocks_sent if es else 0,
            parity_sent=es.parity_sent if es else 0,
            overhead=es.overhead if es else 0.0,
            parity_received=ds.parity_received if ds else 0,
            recovered=ds.recovered if ds else 0,
            blocks_recovered=ds.blocks_recovered if ds else 0,
            blocks_lost=ds.blocks_lost if ds else 0,
        )
    o, i = outbox.stats, inbox.stats
    return Stats(
        session=session,
        established=established,
        closed=closed,
        links=link_stats,
        messages_sent=o.messages,
        messages_delivered=i.delivered,
        bytes_delivered=i.delivered_bytes,
        messages_expired_sending=o.expired,
        messages_expired_receiving=i.expired,
        records_sent=o.records,
        repairs=o.repairs,
        losses_detected=o.lost,
        acked=o.acked,
        duplicates_dropped=i.duplicates,
        records_ignored=i.stale + i.bad_stream,
        late_arrivals=i.late,
        fec=fec,
        buffered_bytes=outbox.buffered_bytes,
        usable_rate_bps=usable_rate_bps,
        drops=dict(drops),
        events_dropped=events_dropped,
        payload_size=outbox.max_payload + 2,
        state=life.state,
        messages_acked=o.delivered,
        messages_unconfirmed=o.unconfirmed,
        hellos_unauthenticated=life.hellos_unauthenticated,
        role_conflicts=life.role_conflicts,
        planned_loss=planned_loss,
    )
