"""A flood of junk into one endpoint while a real session runs beside it.

Junk, in equal parts: random bytes; valid-looking datagrams (version 1, a real type,
random session id, link sequence, timestamps and bodies: DATA with random sequence
numbers and fragment fields, PARITY with random block ids and shapes, FEEDBACK, ...);
and, with a psk, the same with the session's *own* id. Meanwhile A keeps sending B
small messages (every 2 ms) and fragmented ones (3 kB every 20 ms) over three links.

Checked: nothing raises; every junk datagram is dropped and counted; the real session
goes on delivering everything intact and in order; every internal table stays within
its bound; and the memory peak (tracemalloc) is set by the configuration, not by the
number of junk datagrams: ten times the junk, beside the same session, has the same peak.

The suite floods 20,000 datagrams (seconds). For the full million (a few minutes):

    PLAIT_FLOOD=1000000 python3 dev.py test tests/test_flood.py
    python3 -m tests.test_flood 100000 1000000     # prints the peaks and tables

Without a psk, datagrams carrying the session's own id are forgeries the endpoint cannot
tell from real ones (wire-format.md section 8); the last tests here bound what they can
do to memory (two bugs they found, fixed).
"""

from __future__ import annotations

import heapq
import os
import random
import struct
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Final

import attrs
import pytest

import plait
from plait import wire
from tests.test_endpoint import payload

MS: Final = 1_000_000
S: Final = 1_000_000_000
FLOOD: Final = int(os.environ.get("PLAIT_FLOOD", "20000"))
PSK: Final = bytes(range(50, 82))
RATES: Final = (2_000_000, 5_000_000, 8_000_000)
JUNK_PER_MS: Final = 50
KINDS: Final = ("random", "lookalike", "ours")


def _body(rng: random.Random, ptype: int) -> bytes:
    """A body of `ptype` with random fields, shaped like the real thing."""
    if ptype == wire.PacketType.DATA:
        frag = rng.random() < 0.5
        head = struct.pack(
            "!BIIBH",
            int(frag),
            rng.getrandbits(32),
            rng.getrandbits(32),
            rng.getrandbits(8),
            rng.getrandbits(16),
        )
        if frag:
            count = rng.randint(2, 255)
            head += bytes((rng.randrange(count), count))
        return head + rng.randbytes(rng.randint(1, 1200))
    if ptype == wire.PacketType.PARITY:
        k = rng.randint(1, 64)
        m = rng.randint(1, min(16, 256 - k))
        head = struct.pack("!BIBBB", 0, rng.getrandbits(32), k, m, rng.randrange(m))
        return head + rng.randbytes(rng.randint(2, 1200))
    if ptype == wire.PacketType.FEEDBACK:
        ranges, links = rng.randint(0, 8), rng.randint(0, 3)
        head = struct.pack("!BIHBB", 0, rng.getrandbits(32), rng.getrandbits(16), ranges, links)
        return head + rng.randbytes(4 * ranges + 7 * links)
    if ptype == wire.PacketType.HELLO:
        return bytes((rng.getrandbits(1),)) + rng.randbytes(16)
    if ptype == wire.PacketType.CLOSE:
        return b"\x00" + rng.randbytes(2)
    return bytes(1 + rng.randrange(4) * (ptype == wire.PacketType.PROBE))


def junk(rng: random.Random, kind: str, session: int, psk: bool) -> bytes:
    """One junk datagram of `kind` (random, lookalike: another session, ours: ours)."""
    if kind == "random":
        return rng.randbytes(rng.randrange(1401))
    ptype = rng.randint(1, 7)
    if kind == "ours":
        sess = session
    else:
        sess = rng.getrandbits(32)
        sess ^= sess == session
    echo = rng.getrandbits(32) if rng.random() < 0.3 or ptype == wire.PacketType.PROBE_ACK else None
    header = wire.pack_header(
        wire.PacketType(ptype),
        sess,
        rng.getrandbits(16),
        rng.getrandbits(32),
        echo,
        rng.getrandbits(16) if echo is not None else 0,
    )
    return header + _body(rng, ptype) + (rng.randbytes(wire.TAG_SIZE) if psk else b"")


@attrs.define
class Tables:
    """The largest size each internal table of the flooded endpoint reached."""

    partials: int = 0
    partial_bytes: int = 0
    waiting: int = 0
    streams: int = 0
    fec_blocks: int = 0
    fec_records: int = 0
    fec_members: int = 0
    events: int = 0
    control: int = 0
    drop_reasons: int = 0

    def sample(self, ep: plait.Endpoint) -> None:
        inbox, decoder = ep.inbox, ep._decoder
        self.partials = max(self.partials, inbox.partials)
        self.partial_bytes = max(self.partial_bytes, inbox.partial_bytes)
        self.waiting = max(self.waiting, inbox.waiting)
        self.streams = max(self.streams, len(inbox._streams))
        if decoder is not None:
            self.fec_blocks = max(self.fec_blocks, decoder.open_blocks)
            self.fec_records = max(self.fec_records, decoder.stored_records)
            self.fec_members = max(self.fec_members, len(decoder._bases))
        self.events = max(self.events, len(ep._events))
        self.control = max(self.control, len(ep._control))
        self.drop_reasons = max(self.drop_reasons, len(ep._drops))


@attrs.define
class Flood:
    """What one flood did."""

    junk: int
    peak: int
    """tracemalloc peak during the flood, bytes above what was traced when it started."""
    tables: Tables
    drops: dict[str, int]
    sent: int
    delivered: int
    recovered: int
    """Records B rebuilt from parity (the real traffic reorders across links)."""
    seconds: float


class _Session:
    """A and B over three 10-30 ms lossless links, driven on a virtual clock."""

    def __init__(self, psk: bytes | None) -> None:
        self.now = S
        cfg = plait.Config(links=[plait.LinkConfig(rate_bps=r) for r in RATES], psk=psk)
        self.a = plait.Endpoint(cfg, initiator=True, now=self.now, rng=random.Random(1))
        self.b = plait.Endpoint(cfg, initiator=False, now=self.now, rng=random.Random(2))
        self.heap: list[tuple[int, int, bool, int, bytes]] = []  # at, order, to b, link, data
        self.order = 0
        self.sent = 0
        self.delivered: dict[int, int] = {}  # stream -> last index delivered
        self.count = 0
        self.fed_b = 0  # real datagrams B received
        self._flush(self.a)
        self.run(200 * MS)
        assert self.b.established

    def _flush(self, ep: plait.Endpoint) -> None:
        to_b = ep is self.a
        for data, link in ep.datagrams_to_send(now=self.now):
            self.order += 1
            delay = (30, 20, 10)[link] * MS
            heapq.heappush(self.heap, (self.now + delay, self.order, to_b, link, data))
        while (event := ep.next_event()) is not None:
            if isinstance(event, plait.MessageReceived):
                stream, index = struct.unpack_from("!HI", event.data)
                assert event.data == payload(stream, index, len(event.data)), "corrupted"
                assert index > self.delivered.get(stream, -1), "duplicate or out of order"
                self.delivered[stream] = index
                self.count += 1

    def run(self, span: int) -> None:
        """Advance the clock by `span`, delivering and firing timers in order."""
        until = self.now + span
        while True:
            times = [t for t in (self.a.next_deadline(), self.b.next_deadline()) if t is not None]
            if self.heap:
                times.append(self.heap[0][0])
            if not times or min(times) > until:
                self.now = until
                return
            self.now = max(self.now, min(times))
            while self.heap and self.heap[0][0] <= self.now:
                _, _, to_b, link, data = heapq.heappop(self.heap)
                (self.b if to_b else self.a).receive_datagram(data, link=link, now=self.now)
                self.fed_b += to_b
            for ep in (self.a, self.b):
                ep.handle_timer(now=self.now)
                self._flush(ep)

    def send(self, index: int) -> None:
        """The real traffic: 200 B every 2 ms on stream 0, 3 kB every 20 ms on stream 1."""
        if index % 2 == 0:
            self.a.send(payload(0, index // 2, 200), now=self.now, stream=0)
            self.sent += 1
        if index % 20 == 0:
            self.a.send(payload(1, index // 20, 3000), now=self.now, stream=1)
            self.sent += 1
        self._flush(self.a)


def flood(
    n: int,
    *,
    psk: bool,
    kinds: tuple[str, ...] = KINDS,
    duration_ms: int | None = None,
    seed: int = 1,
) -> Flood:
    """Throw `n` junk datagrams of `kinds` (in turn) at B, spread evenly over
    `duration_ms` of real traffic (default: `JUNK_PER_MS` per ms, at least 400 ms), and
    measure the memory peak and the tables. Two floods of the same duration run the
    same real session, so their peaks differ only by what the junk costs."""
    duration = duration_ms or max(400, n // JUNK_PER_MS)
    session = _Session(PSK if psk else None)
    b, rng, tables = session.b, random.Random(seed), Tables()
    links = len(RATES)
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    start = time.perf_counter()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    i = 0
    for step in range(duration):
        for _ in range(n * (step + 1) // duration - n * step // duration):
            data = junk(rng, kinds[i % len(kinds)], b.session, psk)
            b.receive_datagram(data, link=i % links, now=session.now)
            i += 1
        tables.sample(b)
        session.send(step)
        session.run(MS)
    session.run(S)  # the real traffic drains
    tables.sample(b)
    peak = tracemalloc.get_traced_memory()[1] - base
    if not tracing:
        tracemalloc.stop()
    fec = b.stats().fec
    return Flood(
        junk=n,
        peak=peak,
        tables=tables,
        drops=dict(b.stats().drops),
        sent=session.sent,
        delivered=session.count,
        recovered=fec.recovered if fec is not None else 0,
        seconds=time.perf_counter() - start,
    )


def _check(result: Flood) -> None:
    assert sum(result.drops.values()) == result.junk, "every junk datagram is dropped, once"
    assert result.delivered >= 0.99 * result.sent, "the real session kept delivering"
    t = result.tables
    assert t.partials <= 1024
    assert t.partial_bytes <= 8 * 1024 * 1024
    assert t.fec_blocks <= 256
    assert t.fec_records <= 4096  # (before a fix, records rebuilt from parity went past it)
    assert t.events <= 65_536
    assert t.drop_reasons <= 32
    assert t.streams <= 2  # only the real streams: no junk record got through


@pytest.mark.parametrize("psk", [True, False])
def test_flood_beside_a_live_session(psk: bool) -> None:
    kinds = KINDS if psk else KINDS[:2]  # without a psk, "ours" would be forgery
    result = flood(FLOOD, psk=psk, kinds=kinds)
    _check(result)
    reasons = set(result.drops)
    if psk:
        assert "authentication" in reasons
        assert "other session" in reasons
    assert any(r.startswith("malformed") for r in reasons)


def test_the_peak_is_set_by_the_config_not_by_the_flood() -> None:
    """The same real session, with a tenth of the junk and with all of it: the peak is
    the same (the junk costs nothing that stays)."""
    duration = max(400, FLOOD // JUNK_PER_MS)
    small = flood(FLOOD // 10, psk=True, duration_ms=duration)
    full = flood(FLOOD, psk=True, duration_ms=duration)
    _check(full)
    assert full.peak <= 1.1 * small.peak + 32 * 1024, (small.peak, full.peak)


# --- without a psk, the session's own id: forgeries ------------------------------------


def _forger(psk: bool = False) -> tuple[_Session, Callable[[bytes, int], None], int]:
    """A session, a function that feeds B a DATA body under the session's header with a
    fresh link sequence (as the peer would), and the message deadline (µs) to use."""
    session = _Session(PSK if psk else None)
    b = session.b

    def feed(body: bytes, link: int) -> None:
        seq = (b.links.links[link].health.inbound.highest or 0) + 1
        header = wire.pack_header(wire.PacketType.DATA, b.session, seq & 0xFFFF, 0, None, 0)
        before = b.stats().links[link].datagrams_received
        b.receive_datagram(header + body, link=link, now=session.now)
        assert b.stats().links[link].datagrams_received == before + 1, b.stats().drops

    return session, feed, (session.now + 1800 * S) // 1000 & 0xFFFF_FFFF


def test_forged_datagrams_without_a_psk_are_counted_and_change_no_real_data() -> None:
    """Random fields under the session's own id: accepted (nothing can tell), yet nothing
    raises and every datagram is counted. The real session may lose messages to them."""
    session = _Session(None)
    b, rng = session.b, random.Random(3)
    for i in range(300):
        b.receive_datagram(junk(rng, "ours", b.session, False), link=i % 3, now=session.now)
        if i % 10 == 9:
            session.run(MS)
            while b.next_event() is not None:
                pass
    stats = b.stats()
    accepted = sum(ln.datagrams_received for ln in stats.links)
    assert accepted + sum(stats.drops.values()) == 300 + session.fed_b


def test_forged_records_cannot_grow_the_waiting_table_without_bound() -> None:
    """Complete messages behind a gap are capped per stream (Inbox.max_waiting): past it,
    the oldest gap is given up (reported expired), so twice the flood is not twice the
    table. (Found by this test: the table had no bound.)"""
    sizes = []
    for factor in (2, 4):
        session, feed, deadline = _forger()
        cap = session.b.inbox.max_waiting
        for msg in range(1, factor * cap + 1):  # message 0 never comes: they wait behind it
            feed(struct.pack("!BIIBH", 0, msg, deadline, 0, msg & 0xFFFF) + bytes(100), msg % 3)
        sizes.append(session.b.inbox.waiting)
        assert session.b.inbox.waiting <= cap
    assert sizes[1] <= 1.25 * sizes[0], sizes


def test_forged_records_cannot_grow_the_waiting_bytes_past_their_cap() -> None:
    """Large complete messages behind gaps, on several streams, are capped in bytes
    (Inbox.max_waiting_bytes, all streams together): the count cap alone would let
    4,096 x 60 kB wait on each stream."""
    session, feed, deadline = _forger()
    inbox = session.b.inbox
    peak = 0
    for msg in range(1, 400, 2):  # every even message is missing: a gap behind each
        for stream in range(3):
            feed(
                struct.pack("!BIIBH", 0, 3 * msg + stream, deadline, stream, msg) + bytes(60_000),
                msg % 3,
            )
            peak = max(peak, inbox.waiting_bytes)
    assert peak <= inbox.max_waiting_bytes, peak
    assert 4 * inbox.max_waiting_bytes < 200 * 3 * 60_000  # the flood was far past the cap


def test_fragments_cannot_outgrow_max_partial_bytes() -> None:
    session, feed, deadline = _forger()
    for index in range(254):  # fragment 254 never comes
        head = struct.pack("!BIIBH", 1, index, deadline, 0, 0) + bytes((index, 255))
        feed(head + bytes(60_000), index % 3)
    inbox = session.b.inbox
    assert inbox.partial_bytes <= inbox.max_partial_bytes, inbox.partial_bytes


def main(sizes: list[int]) -> None:
    """python3 -m tests.test_flood N [N ...]: the flood at each size, with and without a
    psk, one line each; every flood runs as long as the largest (same real session)."""
    duration = max(400, max(sizes) // JUNK_PER_MS)
    for n in sizes:
        for psk in (True, False):
            r = flood(n, psk=psk, kinds=KINDS if psk else KINDS[:2], duration_ms=duration)
            _check(r)
            print(
                f"junk={n:>9,} psk={psk!s:5} peak={r.peak / 1e6:6.2f} MB "
                f"delivered={r.delivered}/{r.sent} {r.seconds:6.1f} s "
                f"tables={attrs.asdict(r.tables)} drops={r.drops}",
                flush=True,
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [FLOOD])
