"""The invariants plait promises, checked from the outside.

The checker sees what the traffic generators sent and what each endpoint reported
(`MessageReceived`, `MessageExpired`, `MessageUnconfirmed`), and decodes every delivered
payload (`plait.sim.payload`), which carries its own stream, index, send time and
deadline. A message is identified by ``(sending side, stream, index)``, where the index
counts the messages `send` accepted on that stream (a refused one gets none).

The sending side's reports name a message by the handle `send` returned. The receiving
side's name it by its message number, which the endpoint assigns when the message's
first fragment goes out, in order on each stream; a message that expires before any of
it was sent gets none (``msg == -1``). So the number of a message is its index minus
the number of earlier messages of its stream that expired unsent, and the checker maps
numbers to indices that way. An endpoint that numbers messages at `send` (never -1)
fits the same rule.

Violations are recorded, never raised, so a run always finishes and reports all of them:

======================  ==============================================================
duplicate               a message was delivered twice
reordered               delivered after a later message of the same stream
corrupted               the payload fails its tag, or arrived on the wrong stream
late                    delivered after its deadline (both ends share the clock)
unresolved              neither delivered nor reported expired, by the end of the
                        drain period (deadline + grace <= end)
phantom                 an intact payload that was never sent that way
msg_number              ``MessageReceived.msg`` is not the number the rule above gives
expired_then_delivered  delivered after the receiver reported it expired, or after
                        the sender reported it expired before sending any of it
unknown_expiry          ``MessageExpired`` or ``MessageUnconfirmed`` for a message that
                        was never sent
receive_raised          ``receive_datagram`` raised (it must drop bad input silently)
session_closed          an endpoint reported ``SessionClosed``
bad_link                ``datagrams_to_send`` named a link that does not exist
busy_timer              ``next_deadline`` stayed in the past after ``handle_timer``
======================  ==============================================================

A sender-side `MessageExpired` (with a message number) or `MessageUnconfirmed` for a
message that was delivered is allowed: the sender gives up on what it cannot confirm.
"""

from __future__ import annotations

import bisect
import enum

import attrs

from plait.sim._protocol import Side
from plait.sim.payload import decode

__all__ = ["Checker", "Invariant", "Violation"]

Key = tuple[int, int, int]  # (sending side, stream, index)


class Invariant(enum.Enum):
    """The invariants the checker enforces (see the module docstring)."""

    DUPLICATE = "duplicate"
    REORDERED = "reordered"
    CORRUPTED = "corrupted"
    LATE = "late"
    UNRESOLVED = "unresolved"
    PHANTOM = "phantom"
    MSG_NUMBER = "msg_number"
    EXPIRED_THEN_DELIVERED = "expired_then_delivered"
    UNKNOWN_EXPIRY = "unknown_expiry"
    RECEIVE_RAISED = "receive_raised"
    SESSION_CLOSED = "session_closed"
    BAD_LINK = "bad_link"
    BUSY_TIMER = "busy_timer"


@attrs.frozen
class Violation:
    """One broken invariant: what, when (ns), where, and a detail."""

    invariant: Invariant
    time: int
    side: Side
    """The side that reported it (the receiver for deliveries)."""
    stream: int = -1
    index: int = -1
    detail: str = ""


_SENDER_EXPIRED = 1
_RECEIVER_EXPIRED = 2
_UNSENT = 4


class Checker:
    """Tracks every message of one run and records each violation."""

    __slots__ = (
        "_delivered",
        "_expired",
        "_handles",
        "_last",
        "_pending",
        "_sent",
        "_skipped",
        "counts",
        "deliveries",
        "in_flight",
        "keep",
        "latencies",
        "violations",
    )

    def __init__(self, *, keep: int = 20) -> None:
        self.keep = keep
        """How many violations of each kind are kept in full (all are counted)."""
        self._sent: dict[Key, int] = {}  # deadline of every message sent
        self._pending: dict[Key, int] = {}  # deadline of every unresolved message
        self._delivered: set[Key] = set()
        self._expired: dict[Key, int] = {}  # who reported it expired (bit mask)
        self._last: dict[tuple[int, int], int] = {}
        self._handles: dict[tuple[int, int], Key] = {}  # (sender, handle) -> message
        self._skipped: dict[tuple[int, int], list[int]] = {}  # indices expired unsent
        self.latencies: list[int] = []
        self.deliveries: list[tuple[int, int]] = []  # (send time, latency), as delivered
        self.violations: list[Violation] = []
        self.counts: dict[str, int] = {}
        self.in_flight = 0

    @property
    def sent(self) -> int:
        """Messages accepted by a sending endpoint."""
        return len(self._sent)

    @property
    def delivered(self) -> int:
        """Distinct messages delivered."""
        return len(self._delivered)

    @property
    def expired(self) -> int:
        """Distinct messages reported expired and never delivered."""
        return sum(1 for key in self._expired if key not in self._delivered)

    def flag(
        self,
        invariant: Invariant,
        time: int,
        side: Side,
        stream: int = -1,
        index: int = -1,
        detail: str = "",
    ) -> None:
        """Record a violation."""
        count = self.counts.get(invariant.value, 0)
        self.counts[invariant.value] = count + 1
        if count < self.keep:
            self.violations.append(Violation(invariant, time, side, stream, index, detail))

    def on_sent(
        self, sender: Side, stream: int, index: int, deadline: int, handle: int = -1
    ) -> None:
        """A sending endpoint accepted message `index` of `stream` (`send` returned
        `handle`, or -1 for none)."""
        key = (sender, stream, index)
        self._sent[key] = deadline
        self._pending[key] = deadline
        if handle >= 0:
            self._handles[sender, handle] = key

    def _number(self, sender: int, stream: int, index: int) -> int:
        """The message number the endpoint gives message `index`."""
        skipped = self._skipped.get((sender, stream))
        return index - bisect.bisect_left(skipped, index) if skipped else index

    def _index(self, sender: int, stream: int, msg: int) -> int:
        """The index of the message the endpoint numbered `msg`."""
        index = msg
        for unsent in self._skipped.get((sender, stream), ()):
            if unsent > index:
                break
            index += 1
        return index

    def on_received(self, receiver: Side, data: bytes, stream: int, msg: int, now: int) -> None:
        """`receiver` reported ``MessageReceived(data, stream, msg)`` at `now`."""
        decoded = decode(data)
        if decoded is None:
            self.flag(Invariant.CORRUPTED, now, receiver, stream, msg, f"{len(data)} bytes")
            sender = receiver.peer  # resolve the message the event names, if any
            key = (sender, stream, self._index(sender, stream, msg))
            if key in self._sent and key not in self._delivered:
                self._delivered.add(key)
                self._pending.pop(key, None)
            return
        key = (receiver.peer, decoded.stream, decoded.number)
        if decoded.stream != stream:
            self.flag(Invariant.CORRUPTED, now, receiver, stream, msg, "delivered on stream")
        if key not in self._sent:
            self.flag(Invariant.PHANTOM, now, receiver, decoded.stream, decoded.number)
            return
        number = self._number(receiver.peer, decoded.stream, decoded.number)
        if msg != number:
            self.flag(
                Invariant.MSG_NUMBER,
                now,
                receiver,
                stream,
                decoded.number,
                f"msg {msg} != {number}",
            )
        if key in self._delivered:
            self.flag(Invariant.DUPLICATE, now, receiver, decoded.stream, decoded.number)
            return
        self._delivered.add(key)
        self._pending.pop(key, None)
        if self._expired.get(key, 0) & (_RECEIVER_EXPIRED | _UNSENT):
            self.flag(Invariant.EXPIRED_THEN_DELIVERED, now, receiver, stream, decoded.number)
        order_key = (receiver.peer, decoded.stream)
        last = self._last.get(order_key, -1)
        if decoded.number < last:
            self.flag(Invariant.REORDERED, now, receiver, stream, decoded.number, f"after {last}")
        else:
            self._last[order_key] = decoded.number
        if now > decoded.deadline:
            self.flag(
                Invariant.LATE,
                now,
                receiver,
                stream,
                decoded.number,
                f"deadline {decoded.deadline}",
            )
        self.latencies.append(now - decoded.sent)
        self.deliveries.append((decoded.sent, now - decoded.sent))

    def on_expired(
        self, side: Side, stream: int, msg: int, sent: bool, now: int, handle: int = -1
    ) -> None:
        """`side` reported ``MessageExpired(stream, msg, sent, handle)`` at `now`."""
        if sent:
            key = self._handles.get((side, handle))
            if key is None and msg >= 0:  # an endpoint without handles
                key = (side, stream, self._index(side, stream, msg))
            bit = _SENDER_EXPIRED
            if msg < 0 and key is not None:
                bisect.insort(self._skipped.setdefault((side, stream), []), key[2])
                bit |= _UNSENT
        else:
            key = (side.peer, stream, self._index(side.peer, stream, msg))
            bit = _RECEIVER_EXPIRED
        if key is None or key not in self._sent or key[1] != stream:
            self.flag(
                Invariant.UNKNOWN_EXPIRY, now, side, stream, msg, f"sent={sent} handle={handle}"
            )
            return
        self._expired[key] = self._expired.get(key, 0) | bit
        self._pending.pop(key, None)

    def on_unconfirmed(self, side: Side, stream: int, msg: int, handle: int, now: int) -> None:
        """`side` reported ``MessageUnconfirmed(stream, msg, handle)`` at `now`."""
        key = self._handles.get((side, handle))
        if key is None:
            key = (side, stream, self._index(side, stream, msg))
        if key not in self._sent or key[1] != stream:
            self.flag(Invariant.UNKNOWN_EXPIRY, now, side, stream, msg, f"unconfirmed {handle}")
            return
        self._expired[key] = self._expired.get(key, 0) | _SENDER_EXPIRED
        self._pending.pop(key, None)

    def finish(self, end: int, grace: int) -> None:
        """Flag every message still unresolved `grace` ns after its deadline, at `end`."""
        for (sender, stream, index), deadline in self._pending.items():
            if deadline + grace <= end:
                self.flag(Invariant.UNRESOLVED, end, Side(sender).peer, stream, index)
            else:
                self.in_flight += 1
