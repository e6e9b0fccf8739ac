"""Events an endpoint hands to its user through `Endpoint.next_event()`.

Small frozen records, one per thing that happened, in the order it happened. Use
``match`` over `Event`; new kinds are only ever added, never changed.
"""

from __future__ import annotations

import enum

import attrs

__all__ = [
    "CloseReason",
    "Event",
    "FecRecovered",
    "LinkDegraded",
    "LinkDown",
    "LinkUp",
    "MessageExpired",
    "MessageReceived",
    "MessageUnconfirmed",
    "SessionClosed",
    "SessionEstablished",
    "UsableRateChanged",
]


@attrs.frozen
class MessageReceived:
    """A whole message arrived in order on its stream, before its deadline."""

    data: bytes
    stream: int
    msg: int
    """The message's number on its stream (counts from 0; unwrapped, never repeats)."""
    deadline: int
    """Its deadline in this endpoint's clock (ns); it was delivered before it."""


@attrs.frozen
class MessageExpired:
    """A message passed its deadline without being delivered; it never will be. On the
    receiving side one event may stand for a run of them (`count`), so that a gap of
    thousands of messages costs one event, not thousands."""

    stream: int
    msg: int
    """The message's number on its stream (the run's first); -1 if it expired before any
    of it was sent."""
    sent: bool
    """True on the sending side (it could not be sent in full in time), False on the
    receiving side (it did not arrive complete in time)."""
    handle: int = -1
    """On the sending side, the handle `Endpoint.send` returned for it; else -1."""
    count: int = 1
    """Receiving side: messages ``msg .. msg + count - 1`` all expired (always 1 on the
    sending side)."""


@attrs.frozen
class MessageUnconfirmed:
    """Sending side: a message was sent, but its deadline passed before the peer
    acknowledged all of it. It was most likely lost (if the peer knew of it, the peer
    reports `MessageExpired`); in rare cases only the acknowledgement was lost."""

    stream: int
    msg: int
    handle: int


@attrs.frozen
class LinkUp:
    """A link carries data again (after being down or degraded)."""

    link: int


@attrs.frozen
class LinkDegraded:
    """A link is alive but lossy or slow; its share of traffic is reduced."""

    link: int


@attrs.frozen
class LinkDown:
    """No round trip was confirmed on a link within the failover bound."""

    link: int


@attrs.frozen
class FecRecovered:
    """FEC rebuilt `count` lost packets of one block without a round trip."""

    count: int


@attrs.frozen
class SessionEstablished:
    """Both ends agree on the session (the HELLO exchange completed)."""

    session: int


class CloseReason(enum.IntEnum):
    """Why a session ended (`SessionClosed.reason`); docs/adapters.md has the lifecycle."""

    APPLICATION = 0
    """`Endpoint.close` here, or the peer's (`SessionClosed.by_peer`)."""
    ABORTED = 1
    """``close(abort=True)`` here: what was queued or in flight was reported, not sent."""
    HANDSHAKE_TIMEOUT = 2
    """Not established within `Config.handshake_timeout_ns`, nothing acceptable heard:
    no peer, a responder whose answers do not arrive, both ends responders, or (seen from
    the initiator) a peer with another psk, which stays silent."""
    WRONG_PSK = 3
    """Handshake timeout, and HELLOs arrived that failed authentication: the peer holds
    another psk (`Stats.hellos_unauthenticated` counts them)."""
    ROLE_CONFLICT = 4
    """Handshake timeout, and HELLO requests arrived at this initiator: both ends are
    initiators (`Stats.role_conflicts` counts them)."""
    IDLE_TIMEOUT = 5
    """Every link was DOWN for `Config.idle_timeout_ns`: the peer vanished, or the
    network is out."""


@attrs.frozen
class SessionClosed:
    """The session ended, once and for good: by us, by the peer (`by_peer`), or by a
    timeout; `reason` says which. Every message handed to `send` before it has been
    reported (`MessageExpired`, `MessageUnconfirmed`) unless it was delivered."""

    code: int
    by_peer: bool
    reason: CloseReason = CloseReason.APPLICATION


@attrs.frozen
class UsableRateChanged:
    """What the links can carry for the application changed by a tenth or more: the
    rate (message bytes x 8 per second, after loss, headers and FEC parity) a sender
    such as a video encoder should target. Offered above it, messages wait and the
    hopeless ones expire at the sender."""

    rate_bps: int


Event = (
    MessageReceived
    | MessageExpired
    | MessageUnconfirmed
    | LinkUp
    | LinkDegraded
    | LinkDown
    | FecRecovered
    | SessionEstablished
    | SessionClosed
    | UsableRateChanged
)
