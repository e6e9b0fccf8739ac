"""A small, honest fake endpoint for driving `plait.sim` without `plait.Endpoint`.

Each message goes out as one or more fragments (to fit the MTU), spread round robin
over the links, with no pacing, FEC or retransmission. The receiver checks a CRC-32
(junk, truncation and corruption are dropped and counted), deduplicates, reassembles,
delivers in order per stream, and skips a gap once the message after it reaches its
deadline (reporting the gap as expired). It acknowledges every message it resolves;
the sender reports a message unconfirmed (`MessageUnconfirmed`) when no acknowledgement
came within its deadline plus one latency budget. Messages are numbered when `send`
accepts them; `send` returns a handle, as `plait.Endpoint` does. That is just enough to
keep every promise the simulator checks, so the `Flaw` switches can break each one.
"""

from __future__ import annotations

import enum
import heapq
import random
import struct
import zlib
from collections import deque
from collections.abc import Iterable
from typing import Final

from plait.config import Config
from plait.errors import BackpressureError, MalformedPacket, UsageError
from plait.events import MessageExpired, MessageReceived, MessageUnconfirmed
from plait.pmtu import BASE_PLPMTU
from plait.sim import EndpointFactory, EndpointLike

__all__ = ["FakeEndpoint", "Flaw", "fake_factory"]

_MAGIC: Final = 0xFA
_DATA: Final = struct.Struct("!BBIqHH")  # kind, stream, msg, deadline, fragment, count
_ACK: Final = struct.Struct("!BBI")  # kind, stream, msg
_KIND_DATA: Final = 0
_KIND_ACK: Final = 1
_PREFIX: Final = 5  # magic + CRC-32 of the rest


class Flaw(enum.Enum):
    """Ways to break the fake on purpose, each against one invariant."""

    DUPLICATE = "duplicate"
    """Deliver every message twice."""
    REORDER = "reorder"
    """Deliver each message as soon as it is complete, in arrival order."""
    CORRUPT = "corrupt"
    """Flip the last byte of every tenth message delivered."""
    LATE = "late"
    """Deliver every message 1 ns after its deadline."""
    SILENT_LOSS = "silent_loss"
    """Swallow every 50th message: neither deliver it nor report it expired."""
    RAISE_ON_JUNK = "raise_on_junk"
    """Raise `MalformedPacket` from `receive_datagram` on a bad datagram."""


def _seal(body: bytes) -> bytes:
    return bytes([_MAGIC]) + zlib.crc32(body).to_bytes(4, "big") + body


class FakeEndpoint:
    """Implements `plait.sim.EndpointLike`."""

    def __init__(
        self,
        config: Config,
        initiator: bool,
        now: int,
        rng: random.Random,
        *,
        flaws: Iterable[Flaw] = (),
        send_buffer: int | None = None,
    ) -> None:
        self.config = config
        self.initiator = initiator
        self.flaws = frozenset(flaws)
        self._links = len(config.links)
        # no path MTU search here: the size every path is taken to carry (plait.pmtu)
        self._chunk = min(config.mtu, BASE_PLPMTU) - 28 - _PREFIX - _DATA.size
        self._send_buffer = config.send_buffer_bytes if send_buffer is None else send_buffer
        self._out: list[tuple[bytes, int]] = []
        self._out_bytes = 0  # bytes queued at `_out_time`
        self._out_time = now
        self._events: deque[object] = deque()
        self._rr = 0
        self._next_msg: dict[int, int] = {}
        self._unacked: dict[tuple[int, int], int] = {}  # (stream, msg) -> handle
        self._handles = 0
        self._expiry: list[tuple[int, int, int]] = []  # (give-up time, stream, msg)
        self._frags: dict[tuple[int, int], dict[int, bytes]] = {}
        self._next: dict[int, int] = {}  # next message expected, per stream
        self._held: dict[int, dict[int, tuple[bytes | None, int]]] = {}  # None: expired
        self._delivered: set[tuple[int, int]] = set()  # only with Flaw.REORDER
        self._late: list[tuple[int, int, MessageReceived]] = []
        self._late_seq = 0
        self._recv_deadline: int | None = None
        self.counters = {"sent": 0, "bad": 0, "duplicates": 0, "acks": 0, "delivered": 0}

    # -- sending -----------------------------------------------------------------------

    def send(self, data: bytes, *, now: int, stream: int = 0, deadline: int | None = None) -> int:
        if len(data) > self.config.max_message or not 0 <= stream < self.config.streams:
            raise UsageError("message too large or stream out of range")
        if now != self._out_time:  # everything queued earlier has left: the buffer is empty
            self._out_time, self._out_bytes = now, 0
        if self._out_bytes + len(data) > self._send_buffer:
            raise BackpressureError("send buffer full")
        deadline = now + self.config.latency_ns if deadline is None else deadline
        msg = self._next_msg.get(stream, 0)
        self._next_msg[stream] = msg + 1
        chunks = [data[i : i + self._chunk] for i in range(0, len(data), self._chunk)] or [b""]
        for index, chunk in enumerate(chunks):
            body = _DATA.pack(_KIND_DATA, stream, msg, deadline, index, len(chunks)) + chunk
            self._out.append((_seal(body), self._rr % self._links))
            self._rr += 1
        self._out_bytes += len(data)
        self._handles += 1
        self._unacked[stream, msg] = self._handles
        heapq.heappush(self._expiry, (deadline + self.config.latency_ns, stream, msg))
        self.counters["sent"] += 1
        return self._handles

    def datagrams_to_send(self, *, now: int) -> list[tuple[bytes, int]]:
        out, self._out = self._out, []
        return out

    # -- receiving ---------------------------------------------------------------------

    def receive_datagram(self, data: bytes, *, link: int, now: int) -> None:
        body = data[_PREFIX:]
        if (
            len(data) < _PREFIX + _ACK.size
            or data[0] != _MAGIC
            or zlib.crc32(body) != int.from_bytes(data[1:_PREFIX], "big")
        ):
            self.counters["bad"] += 1
            if Flaw.RAISE_ON_JUNK in self.flaws:
                raise MalformedPacket("bad datagram")
            return
        if body[0] == _KIND_ACK:
            _, stream, msg = _ACK.unpack_from(body)
            self._unacked.pop((stream, msg), None)
            self.counters["acks"] += 1
            return
        _, stream, msg, deadline, index, count = _DATA.unpack_from(body)
        if self._seen(stream, msg):
            self.counters["duplicates"] += 1
            self._ack(stream, msg)
            return
        parts = self._frags.setdefault((stream, msg), {})
        parts[index] = body[_DATA.size :]
        if len(parts) == count:
            del self._frags[stream, msg]
            payload = b"".join(parts[i] for i in range(count))
            self._complete(stream, msg, payload if now <= deadline else None, deadline, now)
        self._update_deadline()

    def _seen(self, stream: int, msg: int) -> bool:
        if Flaw.REORDER in self.flaws:
            return (stream, msg) in self._delivered
        return msg < self._next.get(stream, 0) or msg in self._held.get(stream, {})

    def _ack(self, stream: int, msg: int) -> None:
        self._out.append((_seal(_ACK.pack(_KIND_ACK, stream, msg)), msg % self._links))

    def _complete(
        self, stream: int, msg: int, payload: bytes | None, deadline: int, now: int
    ) -> None:
        self._ack(stream, msg)
        if Flaw.REORDER in self.flaws:
            self._delivered.add((stream, msg))
            if payload is not None:
                self._deliver(stream, msg, payload, deadline, now)
            return
        self._held.setdefault(stream, {})[msg] = (payload, deadline)
        self._flush(stream, now)

    def _flush(self, stream: int, now: int) -> None:
        held = self._held[stream]
        expected = self._next.get(stream, 0)
        while expected in held:
            payload, deadline = held.pop(expected)
            if payload is None or now > deadline:
                self._events.append(MessageExpired(stream=stream, msg=expected, sent=False))
            else:
                self._deliver(stream, expected, payload, deadline, now)
            expected += 1
        self._next[stream] = expected

    def _deliver(self, stream: int, msg: int, payload: bytes, deadline: int, now: int) -> None:
        flaws = self.flaws
        if Flaw.SILENT_LOSS in flaws and msg % 50 == 49:
            return
        if Flaw.CORRUPT in flaws and msg % 10 == 9:
            payload = payload[:-1] + bytes([payload[-1] ^ 0x01])
        event = MessageReceived(data=payload, stream=stream, msg=msg, deadline=deadline)
        if Flaw.LATE in flaws:
            heapq.heappush(self._late, (deadline + 1, self._late_seq, event))
            self._late_seq += 1
            return
        self._events.append(event)
        self.counters["delivered"] += 1
        if Flaw.DUPLICATE in flaws:
            self._events.append(event)

    # -- timers and queries ------------------------------------------------------------

    def handle_timer(self, *, now: int) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, stream, msg = heapq.heappop(self._expiry)
            handle = self._unacked.pop((stream, msg), None)
            if handle is not None:
                self._events.append(MessageUnconfirmed(stream=stream, msg=msg, handle=handle))
        while self._late and self._late[0][0] <= now:
            self._events.append(heapq.heappop(self._late)[2])
        for stream, held in self._held.items():
            while held and now >= held[head := min(held)][1]:
                for gap in range(self._next.get(stream, 0), head):
                    self._frags.pop((stream, gap), None)
                    self._events.append(MessageExpired(stream=stream, msg=gap, sent=False))
                self._next[stream] = head
                self._flush(stream, now)
        self._update_deadline()

    def _update_deadline(self) -> None:
        heads = [held[min(held)][1] for held in self._held.values() if held]
        self._recv_deadline = min(heads) if heads else None

    def next_deadline(self) -> int | None:
        times = [t for t in (self._recv_deadline,) if t is not None]
        if self._expiry:
            times.append(self._expiry[0][0])
        if self._late:
            times.append(self._late[0][0])
        return min(times) if times else None

    def next_event(self) -> object | None:
        return self._events.popleft() if self._events else None

    def stats(self) -> dict[str, int]:
        return dict(self.counters)


def fake_factory(flaws: Iterable[Flaw] = (), send_buffer: int | None = None) -> EndpointFactory:
    """An endpoint factory for `plait.sim.run` that builds `FakeEndpoint`s."""
    chosen = frozenset(flaws)

    def factory(config: Config, initiator: bool, now: int, rng: random.Random) -> EndpointLike:
        return FakeEndpoint(config, initiator, now, rng, flaws=chosen, send_buffer=send_buffer)

    return factory
