"""plait's exception hierarchy: short, typed, and split by whose fault it is.

* `UsageError` and its subclasses: the caller misused the API. Raised before any state
  changes, so the object is exactly as it was.
* `ProtocolError` and its subclasses: bytes from the network broke the rules. Parsers
  (`plait.wire.decode`) raise `MalformedPacket`; the endpoint catches it, drops the
  datagram, counts the reason and carries on. Network input never raises out of an
  endpoint.
"""

from __future__ import annotations

from plait.events import CloseReason

__all__ = [
    "AuthenticationFailed",
    "BackpressureError",
    "ConfigError",
    "EncodeError",
    "HandshakeFailed",
    "MalformedPacket",
    "PeerLost",
    "PlaitError",
    "ProtocolError",
    "SessionClosedError",
    "UsageError",
]


class PlaitError(Exception):
    """Base class of every exception plait raises on purpose."""


class UsageError(PlaitError, ValueError):
    """The caller passed something plait cannot accept; nothing was changed."""


class ConfigError(UsageError):
    """A configuration value is out of range or inconsistent."""


class EncodeError(UsageError):
    """A packet handed to `plait.wire.encode` has a field outside its wire range."""


class ProtocolError(PlaitError):
    """Bytes from the network break the wire protocol."""


class MalformedPacket(ProtocolError):  # noqa: N818  (the name users catch, fixed by the API)
    """A datagram could not be parsed: truncated, bad length, unknown version or type,
    reserved bits set, inconsistent fields, or trailing bytes."""


class AuthenticationFailed(ProtocolError):  # noqa: N818  (names the event, like MalformedPacket)
    """A sealed datagram did not authenticate (wrong key, forged, or altered)."""


class BackpressureError(PlaitError):
    """`send` was refused because the send buffer is full; nothing was queued. Retry
    after datagrams have gone out (the buffer drains at the links' rates)."""


class SessionClosedError(UsageError):
    """The session is closed; it takes no more messages. Adapters raise it (or one of
    its subclasses below) from `send`, `receive` and `wait_established` once the session
    ended; `reason` is its `plait.CloseReason` when known, else None."""

    def __init__(self, message: str, *, reason: CloseReason | None = None, code: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        """The CLOSE code (the application's, 0 by default)."""


class HandshakeFailed(SessionClosedError):  # noqa: N818  (names the event, like MalformedPacket)
    """The session was never established: handshake timeout, a peer with another psk, or
    both ends initiators (`reason`: HANDSHAKE_TIMEOUT, WRONG_PSK, ROLE_CONFLICT)."""


class PeerLost(SessionClosedError):  # noqa: N818  (names the event)
    """Every link was down for `Config.idle_timeout_ns`: the peer vanished or the
    network is out (`reason` IDLE_TIMEOUT)."""
