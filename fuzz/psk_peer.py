"""A peer that holds the psk and breaks the rules: the model behind the ``psk_peer``
fuzz target and `tests/test_psk_peer_machine.py`'s state machine (issue 14, item 4).

`PskPeer` speaks for the initiator A of the captured session (fuzz/corpus.py) with A's
own keys, against a fresh copy of the responder B: every datagram authenticates, is
fresh, and is well formed, but its records break the rules: message numbers far ahead,
deadlines past and far future, fragments of messages that never complete, records up to
65 kB, parity for blocks that never existed, FEEDBACK with 255 ranges claiming anything.

Checked after every step (`check`): nothing escapes; the datagram is counted once; every
table of B is within its bounds in entries and bytes; the events it caused are bounded
(an expired run is one event: at most one per message delivered, plus one per stream
and a few others); each stream's messages are resolved once, in order; and the call's
CPU time is within `CPU_FACTOR` ordinary datagrams' plus a small allowance per message
delivered (the work of delivering what earlier datagrams brought).
At the end (`finish`), 36 minutes pass (past any deadline the wire can carry) and every
table is empty again: state above the window floor expires by time.
"""

from __future__ import annotations

import gc
import struct
import sys
import time
from typing import Final

from fuzz import corpus
from plait import crypto, wire
from plait.events import MessageExpired, MessageReceived

__all__ = ["PskPeer", "psk_peer_seeds", "psk_peer_target", "step_bytes"]

_M32: Final = 0xFFFF_FFFF
_MS: Final = 1_000_000
_MINUTE: Final = 60_000_000_000
_DATA: Final = struct.Struct("!BIIBH")
_FRAG: Final = struct.Struct("!BIIBHBB")
_MAX_STEPS: Final = 200
#: CPU allowed per call: this many ordinary datagrams' (measured as the peer starts; the
#: bugs this caught cost 500-3,500), at least `CPU_FLOOR_NS`, plus 3 ordinary datagrams'
#: per message the call delivers (work paid for by earlier calls). atheris's coverage
#: instrumentation slows Python up to 60 times but C (AEAD, copies) not at all, which
#: skews the ratios: under it the floor is `CPU_FLOOR_FUZZ_NS` (the bugs took 100s of ms).
CPU_FACTOR: Final = 200
CPU_FLOOR_NS: Final = 2 * _MS
CPU_FLOOR_FUZZ_NS: Final = 50 * _MS
_DEADLINES: Final = (-2_000 * _MS, -1, 5 * _MS, 150 * _MS, 35 * _MINUTE)


class PskPeer:
    """A psk-holding peer against a fresh copy of the captured responder B."""

    def __init__(self, session: corpus.Session) -> None:
        if session.keys is None:
            raise RuntimeError("the psk peer needs the psk session")
        self.session = session
        self.ep = session.endpoint()
        self.sealer = crypto.Sealer(session.keys)
        self.links = len(session.config.links)
        self.now = session.start
        self.pn = [(ln.health.inbound.highest or 0) for ln in self.ep.links.links]
        self.last_ns = 0  # the last call's CPU
        self.seq = self.ep.inbox.window.expected()  # the next data sequence to forge
        self.resolved: dict[int, int] = {}  # stream -> last message resolved
        self.worst = (0, 0)  # the slowest call so far: (CPU ns, events)
        self.ordinary_ns = 1 << 62
        self.cpu_limit_ns = 1 << 62
        for _ in range(5):  # an ordinary datagram's CPU: one in-order record
            self.data(7, 0, self.deadline(3), 100)
            self.ordinary_ns = min(self.ordinary_ns, self.last_ns)
        floor = CPU_FLOOR_FUZZ_NS if "atheris" in sys.modules else CPU_FLOOR_NS
        self.cpu_limit_ns = max(floor, CPU_FACTOR * self.ordinary_ns)

    # --- what the peer sends ---------------------------------------------------------------

    def deadline(self, kind: int) -> int:
        """A deadline field: past, just past, near, the budget, or 35 minutes ahead."""
        return ((self.now + _DEADLINES[kind % len(_DEADLINES)]) // 1000) & _M32

    def data(self, stream: int, ahead: int, deadline: int, size: int, skip: int = 0) -> None:
        """A one-record message `ahead` numbers past the stream's next, `skip` data
        sequences past the last one forged."""
        self.seq += 1 + skip
        msg = self._next(stream) + ahead
        body = _DATA.pack(0, self.seq & _M32, deadline, stream, msg & 0xFFFF)
        self.send(wire.PacketType.DATA, body + bytes(size))

    def fragment(
        self, stream: int, ahead: int, index: int, count: int, deadline: int, size: int
    ) -> None:
        """One fragment of a message that may never complete."""
        self.seq += 1
        msg = self._next(stream) + ahead
        head = _FRAG.pack(1, self.seq & _M32, deadline, stream, msg & 0xFFFF, index, count)
        self.send(wire.PacketType.DATA, head + bytes(size))

    def parity(self, ahead: int, k: int, m: int, index: int, width: int) -> None:
        """A parity shard of a block `ahead` sequences past the last forged record: a
        block that may never exist."""
        base = (self.seq - k + 1 + ahead) & _M32
        shard = wire.Parity(base=base, count=k, parity_count=m, index=index % m, shard=bytes(width))
        self.send(wire.PacketType.PARITY, wire.encode_body(shard))

    def feedback(self, largest: int, first_run: int, ranges: tuple[tuple[int, int], ...]) -> None:
        fb = wire.Feedback(largest=largest & _M32, first_run=first_run, ranges=ranges)
        self.send(wire.PacketType.FEEDBACK, wire.encode_body(fb))

    def wait(self, span: int) -> None:
        """Time passes; B's timer fires."""
        self.now += span
        gc.disable()  # a collection is not this call's work
        started = time.thread_time_ns()
        self.ep.handle_timer(now=self.now)
        self._after(started, accepted=None)

    def send(self, ptype: wire.PacketType, body: bytes) -> None:
        """Seal `body` as A would, on the link after the last, and hand it to B."""
        link = self.pn.index(min(self.pn))  # the link least used: spread like a sender
        self.pn[link] += 1
        header = wire.pack_header(
            ptype, self.session.session, self.pn[link] & 0xFFFF, (self.now // 1000) & _M32, None, 0
        )
        datagram = self.sealer.seal(header, body, link, self.pn[link])
        before = self._counted()
        gc.disable()  # a collection is not this call's work
        started = time.thread_time_ns()
        self.ep.receive_datagram(datagram, link=link, now=self.now)
        self._after(started, accepted=before)

    def _next(self, stream: int) -> int:
        return self.resolved.get(stream, -1) + 1

    def _counted(self) -> int:
        return sum(ln.datagrams_in for ln in self.ep.links.links) + sum(self.ep._drops.values())

    # --- checks ----------------------------------------------------------------------------

    def _after(self, started: int, accepted: int | None) -> None:
        spent = self.last_ns = time.thread_time_ns() - started
        gc.enable()
        for _ in self.ep.datagrams_to_send(now=self.now):
            pass
        events = delivered = 0
        while (event := self.ep.next_event()) is not None:
            events += 1
            if isinstance(event, MessageReceived):
                delivered += 1
                self._resolve(event.stream, event.msg, event.msg)
            elif isinstance(event, MessageExpired) and not event.sent:
                self._resolve(event.stream, event.msg, event.msg + event.count - 1)
        if events - delivered > delivered + self.ep.config.streams + 4:
            raise AssertionError(f"{events} events, {delivered} of them deliveries, in one call")
        self.worst = max(self.worst, (spent, events))
        if spent > self.cpu_limit_ns + 3 * self.ordinary_ns * delivered:
            raise AssertionError(f"{spent} ns of CPU for one call ({delivered} deliveries)")
        if accepted is not None and self._counted() != accepted + 1:
            raise AssertionError("a datagram was not counted exactly once")
        self.check()

    def _resolve(self, stream: int, first: int, last: int) -> None:
        if first != self.resolved.get(stream, -1) + 1 or last < first:
            raise AssertionError(f"stream {stream}: {first}..{last} resolved out of order")
        self.resolved[stream] = last

    def check(self) -> None:
        """Every table of B within its bounds, in entries and in bytes."""
        ep, inbox, decoder = self.ep, self.ep.inbox, self.ep._decoder
        bounds = [
            (inbox.partials, inbox.max_partials),
            (inbox.partial_bytes, inbox.max_partial_bytes),
            (inbox.waiting_bytes, inbox.max_waiting_bytes),
            (max((len(s.waiting) for s in inbox._streams.values()), default=0), inbox.max_waiting),
            (len(inbox._heap), 2 * inbox.max_partials + 64),
            (len(inbox._streams), inbox.streams),
            (len(ep._events), 0),  # drained after every call
            (len(ep._drops), 64),
        ]
        if decoder is not None:
            bounds += [
                (decoder.open_blocks, decoder.max_blocks),
                (decoder.parity_bytes, decoder.max_parity_bytes),
                (decoder.stored_records, decoder.max_records),
                (len(decoder._arrivals), decoder.max_records),
                (decoder.record_bytes, decoder.max_record_bytes),
                (len(decoder._bases), decoder.max_blocks),
            ]
        for i, (size, bound) in enumerate(bounds):
            if size > bound:
                raise AssertionError(f"table {i}: {size} > {bound}")

    def finish(self) -> None:
        """36 minutes later every deadline the wire can carry has passed: B holds
        nothing of what was forged."""
        self.wait(36 * _MINUTE)
        self.wait(_MS)
        inbox, decoder = self.ep.inbox, self.ep._decoder
        left = (inbox.partials, inbox.waiting, inbox.partial_bytes, inbox.waiting_bytes)
        if left != (0, 0, 0, 0):
            raise AssertionError(f"the inbox still holds {left}")
        if decoder is not None and (decoder.open_blocks, decoder.stored_records) != (0, 0):
            raise AssertionError("the FEC decoder still holds records or blocks")


def psk_peer_target(data: bytes) -> None:
    """A program of up to 200 steps by a psk-holding peer (see `PskPeer`). Each step is
    8 bytes: op, stream, then op-specific fields (`step_bytes` writes them)."""
    from fuzz.targets import Reader  # noqa: PLC0415  (targets imports this module)

    r = Reader(data)
    peer = PskPeer(corpus.session(True))
    for _ in range(_MAX_STEPS):
        if not r.left():
            break
        op, stream, a, b, c, d = r.byte() % 6, r.byte() % 10, r.u16(), r.u16(), r.byte(), r.byte()
        if op == 0:  # a record `a` messages ahead, `b` bytes, deadline `c`, seq skip `d`**2
            peer.data(stream, a, peer.deadline(c), b, d * d)
        elif op == 1:  # fragment c of 1 + d % 255 of a message `a` % 2048 ahead, `b` % 20,000 bytes
            count = 1 + d % 255
            peer.fragment(stream, a % 2048, c % count, count, peer.deadline(c >> 4), b % 20_000)
        elif op == 2:  # parity of a block `a` sequences ahead, width `b`, k, m from c, d
            peer.parity(a, 1 + c % 80, 1 + d % 20, c >> 3, 2 + b % 30_000)
        elif op == 3:  # FEEDBACK: c ranges of run/gap about b, largest anywhere
            pairs = tuple((1 + (b + i) % 0xFFFF, 1 + (a + i) % 0xFFFF) for i in range(min(c, 254)))
            peer.feedback(a << 16 | b, 1 + b % 0xFFFF, pairs)
        elif op == 4:  # time passes: up to 3.3 s
            peer.wait(a * 50_000)
        else:  # an ordinary message
            peer.data(stream, 0, peer.deadline(3), c)
    peer.finish()


def step_bytes(op: int, stream: int = 0, a: int = 0, b: int = 0, c: int = 0, d: int = 0) -> bytes:
    """One step of `psk_peer_target`'s program."""
    return struct.pack("!BBHHBB", op, stream, a & 0xFFFF, b & 0xFFFF, c & 0xFF, d & 0xFF)


def psk_peer_seeds() -> list[bytes]:
    """Programs that try each rule-breaking record, alone and mixed with time passing."""
    steps = [
        step_bytes(0, 2, 32_767, 1, 0),  # far ahead, past deadline
        step_bytes(0, 3, 1, 1, 4),  # one ahead, 35 minutes
        step_bytes(0, 1, 3, 60_000, 3, 255),  # a 60 kB record, data sequences skipped
        step_bytes(1, 2, 7, 1400, 0x40, 2),  # a fragment of 3 that never completes
        step_bytes(2, 0, 5000, 1400, 63, 15),  # parity of a block that never existed
        step_bytes(2, 0, 0, 30_000, 63, 15),  # wide parity
        step_bytes(3, 0, 0xFFFF, 0xFFFF, 254),  # FEEDBACK of 255 ranges
        step_bytes(4, 0, 2000),  # 100 ms pass
        step_bytes(5, 0, 0, 0, 100),  # an ordinary message
    ]
    seeds = list(steps)
    seeds += [
        b"".join(steps[(i + j) % len(steps)] for j in range(2 * len(steps)))
        for i in range(len(steps))
    ]
    seeds.append(b"".join(step_bytes(1, 2, msg, 100, 0x20, 1) for msg in range(1, 150)))
    return seeds
