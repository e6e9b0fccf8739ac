"""An attacker in the model: a hypothesis state machine over two endpoints and a small
network, where real traffic (messages both ways, time, loss, reordering) interleaves
with an attacker who forges random and valid-looking datagrams, replays what it saw
(same link, another link, later), replays datagrams of an older session with the same
psk, and, against a psk, truncates, pads to 65,507 bytes and flips bits.

Invariants, after every step: what each side delivers is exactly what the other sent
(intact, in order per stream, once, before its deadline); nothing escapes
`receive_datagram`; and every datagram fed to an endpoint is counted once, accepted
(`LinkStats.datagrams_received`) or dropped (`Stats.drops`, by reason). At the end,
every message is resolved: delivered, or reported expired by one side.

Without a psk, wire-format.md section 8 promises less: random, replayed and
other-session datagrams never change data, but truncation, padding and bit flips are
not detected (they are then valid, different datagrams). The no-psk machine therefore
throws only the former.
"""

from __future__ import annotations

import functools
import heapq
import random
import struct
import sys
from collections import deque
from collections.abc import Callable
from typing import Final

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

import plait
from fuzz import corpus
from plait import crypto, wire
from tests.test_endpoint import payload

MS = 1_000_000
S = 1_000_000_000
PSK = bytes(range(7, 39))
RATES = (2_000_000, 5_000_000, 8_000_000)
DELAYS = (30 * MS, 20 * MS, 10 * MS)
SIDES = ("a", "b")
MAX_UDP = 65_507


def _config(psk: bytes | None) -> plait.Config:
    return plait.Config(links=[plait.LinkConfig(rate_bps=r) for r in RATES], psk=psk)


def _exchange(a: plait.Endpoint, b: plait.Endpoint, now: int, rounds: int) -> int:
    """Let a and b talk over a 10 ms, lossless network for `rounds` round trips."""
    for _ in range(rounds):
        for src, dst in ((a, b), (b, a)):
            out = src.datagrams_to_send(now=now)
            now += 10 * MS
            for data, link in out:
                dst.receive_datagram(data, link=link, now=now)
            src.handle_timer(now=now)
            dst.handle_timer(now=now)
    return now


@functools.cache
def old_session(psk: bytes | None) -> tuple[tuple[bytes, int], ...]:
    """Datagrams (both ways, with their links) of an earlier session with the same config:
    its HELLOs and answers, PROBEs, DATA, FEEDBACK."""
    cfg = _config(psk)
    a = plait.Endpoint(cfg, initiator=True, now=S, rng=random.Random(901))
    b = plait.Endpoint(cfg, initiator=False, now=S, rng=random.Random(902))
    seen: list[tuple[bytes, int]] = []
    now = S
    for i in range(12):
        a.send(payload(0, i, 40 + 300 * i), now=now)
        for src, dst in ((a, b), (b, a)):
            out = src.datagrams_to_send(now=now)
            now += 10 * MS
            for data, link in out:
                seen.append((data, link))
                dst.receive_datagram(data, link=link, now=now)
            src.handle_timer(now=now)
    return tuple(seen)


class Attacked(RuleBasedStateMachine):
    """Two endpoints, a network, and an attacker; `PSK` None or 32 bytes."""

    PSK: bytes | None = None

    def __init__(self) -> None:
        super().__init__()
        self.now = S
        self.rng = random.Random(0)
        cfg = _config(self.PSK)
        self.ep = {
            "a": plait.Endpoint(cfg, initiator=True, now=self.now, rng=random.Random(11)),
            "b": plait.Endpoint(cfg, initiator=False, now=self.now, rng=random.Random(12)),
        }
        self.fed = {"a": 0, "b": 0}
        self.genuine = {"a": 0, "b": 0}  # fed by the network, not by the attacker
        # arrival, order, to, link, data, sent
        self.heap: list[tuple[int, int, str, int, bytes, int]] = []
        self.order = 0
        # to, link, data, sent
        self.seen: deque[tuple[str, int, bytes, int]] = deque(maxlen=400)
        self.sent: dict[str, dict[int, list[int]]] = {"a": {}, "b": {}}  # by sender, stream
        self.deadline: dict[tuple[str, int, int], int] = {}
        self.last: dict[str, dict[int, int]] = {"a": {}, "b": {}}  # by receiver, stream
        self.delivered = {"a": 0, "b": 0}
        self.expired = 0

    # --- the network -----------------------------------------------------------------

    def _feed(self, side: str, data: bytes, link: int, *, genuine: bool = False) -> None:
        ep = self.ep[side]
        before = sum(ln.datagrams_received for ln in ep.stats().links)
        highest = ep.links.links[link].health.inbound.highest
        took = ep.receive_datagram(data, link=link, now=self.now)
        accepted = sum(ln.datagrams_received for ln in ep.stats().links) > before
        # True only for an accepted datagram newer than any on its link (moves a `*` link)
        assert took == (accepted and ep.links.links[link].health.inbound.highest != highest)
        self.fed[side] += 1
        self.genuine[side] += genuine
        self._flush(side)

    def _flush(self, side: str) -> None:
        ep, peer = self.ep[side], "b" if side == "a" else "a"
        for data, link in ep.datagrams_to_send(now=self.now):
            self.seen.append((peer, link, data, self.now))
            self.order += 1
            arrival = self.now + DELAYS[link] + self.rng.randrange(3 * MS)
            heapq.heappush(self.heap, (arrival, self.order, peer, link, data, self.now))
        while (event := ep.next_event()) is not None:
            if isinstance(event, plait.MessageReceived):
                self._check_delivery(side, peer, event)
            elif isinstance(event, plait.MessageExpired):
                self.expired += event.count
            elif isinstance(event, plait.MessageUnconfirmed):
                self.expired += 1

    def _check_delivery(self, side: str, sender: str, event: plait.MessageReceived) -> None:
        stream, index = struct.unpack_from("!HI", event.data)
        assert event.data == payload(stream, index, len(event.data)), "corrupted"
        assert stream == event.stream, "delivered on another stream"
        assert index in self.sent[sender].get(stream, ()), "never sent"
        assert index > self.last[side].get(stream, -1), "duplicate or out of order"
        assert self.now <= self.deadline[(sender, stream, index)], "delivered late"
        self.last[side][stream] = index
        self.delivered[side] += 1

    def _run_until(self, until: int) -> None:
        while True:
            timers = [(t, s) for s in SIDES if (t := self.ep[s].next_deadline()) is not None]
            arrival = self.heap[0][0] if self.heap else None
            timer = min(timers) if timers else None
            nxt = (
                min(t for t in (arrival, timer[0] if timer else None) if t is not None)
                if (arrival is not None or timer is not None)
                else None
            )
            if nxt is None or nxt > until:
                self.now = until
                return
            self.now = max(self.now, nxt)
            if arrival is not None and arrival <= self.now:
                _, _, side, link, data, _ = heapq.heappop(self.heap)
                self._feed(side, data, link, genuine=True)
            elif timer is not None:
                self.ep[timer[1]].handle_timer(now=self.now)
                self._flush(timer[1])

    @initialize()
    def handshake(self) -> None:
        self._flush("a")
        self._run_until(self.now + 200 * MS)
        assert self.ep["a"].established
        assert self.ep["b"].established

    # --- real traffic ------------------------------------------------------------------

    @rule(
        side=st.sampled_from(SIDES),
        stream=st.integers(0, 2),
        size=st.integers(6, 3_000) | st.integers(6, 200),
    )
    def send(self, side: str, stream: int, size: int) -> None:
        indices = self.sent[side].setdefault(stream, [])
        index = len(indices)
        try:
            self.ep[side].send(payload(stream, index, size), now=self.now, stream=stream)
        except plait.errors.BackpressureError:
            return
        indices.append(index)
        self.deadline[(side, stream, index)] = self.now + self.ep[side].latency_ns
        self._flush(side)

    @rule(ms=st.integers(1, 300))
    def wait(self, ms: int) -> None:
        self._run_until(self.now + ms * MS)

    @rule(pick=st.integers(0, 10**6))
    def lose(self, pick: int) -> None:
        if self.heap:
            del self.heap[pick % len(self.heap)]
            heapq.heapify(self.heap)

    @rule(pick=st.integers(0, 10**6))
    def reorder(self, pick: int) -> None:
        """An in-flight datagram overtakes the others: it arrives now, or, if its link
        could not have carried it here yet, as soon as it could (its delay without
        jitter). Sooner than that no network delivers, and a round trip measured
        shorter than the path's made the peer-clock map judge deadlines late."""
        if self.heap:
            _, _, side, link, data, sent = self.heap.pop(pick % len(self.heap))
            heapq.heapify(self.heap)
            earliest = sent + DELAYS[link]
            if earliest <= self.now:
                self._feed(side, data, link, genuine=True)
            else:
                self.order += 1
                heapq.heappush(self.heap, (earliest, self.order, side, link, data, sent))

    # --- the attacker ------------------------------------------------------------------

    @rule(side=st.sampled_from(SIDES), link=st.integers(0, 2), data=st.binary(max_size=1_400))
    def forge_random(self, side: str, link: int, data: bytes) -> None:
        self._feed(side, data, link)

    @rule(
        side=st.sampled_from(SIDES),
        link=st.integers(0, 2),
        first=st.sampled_from([0x20 | t for t in range(1, 8)] + [0x30 | t for t in range(1, 8)]),
        session=st.integers(0, 2**32 - 1),
        rest=st.binary(min_size=6, max_size=300),
    )
    def forge_other_session(
        self, side: str, link: int, first: int, session: int, rest: bytes
    ) -> None:
        """A valid-looking datagram (version 1, a real type) of another session."""
        if session == self.ep[side].session:
            session ^= 1
        self._feed(side, bytes((first,)) + session.to_bytes(4, "big") + rest, link)

    def _pick(self, pick: int) -> tuple[str, int, bytes, int] | None:
        return self.seen[pick % len(self.seen)] if self.seen else None

    @rule(pick=st.integers(0, 10**6), shift=st.integers(0, 2))
    def replay(self, pick: int, shift: int) -> None:
        """A datagram seen on the wire, again, now: on its link (shift 0) or another. On
        its own link it may arrive before the original, but (as in `reorder`) not sooner
        than the link's delay after it was sent: an attacker with a faster path than the
        link's makes round trips look shorter than the path's, and the peer-clock map
        then judges deadlines late by half the difference (docs/robustness.md)."""
        seen = self._pick(pick)
        if seen is None:
            return
        side, link, data, sent = seen
        if shift == 0 and sent + DELAYS[link] > self.now:
            self.order += 1
            heapq.heappush(self.heap, (sent + DELAYS[link], self.order, side, link, data, sent))
            return
        self._feed(side, data, (link + shift) % len(RATES), genuine=shift == 0)

    @rule(side=st.sampled_from(SIDES), pick=st.integers(0, 10**6), link=st.integers(0, 3))
    def replay_old_session(self, side: str, pick: int, link: int) -> None:
        """A datagram of an earlier session with the same psk: on its link, or another."""
        old = old_session(self.PSK)
        data, its_link = old[pick % len(old)]
        self._feed(side, data, its_link if link == 3 else link)

    # --- invariants --------------------------------------------------------------------

    @invariant()
    def every_datagram_is_counted_once(self) -> None:
        for side in SIDES:
            stats = self.ep[side].stats()
            accepted = sum(ln.datagrams_received for ln in stats.links)
            assert accepted + sum(stats.drops.values()) == self.fed[side], stats.drops
            if self.PSK is not None:  # the attacker's datagrams are all refused
                assert accepted <= self.genuine[side]

    @invariant()
    def the_session_holds(self) -> None:
        for side in SIDES:
            assert not self.ep[side].closed
            assert self.ep[side].session == self.ep["a"].session

    def teardown(self) -> None:
        """Quiet for 3 s: every message sent is then delivered or reported expired."""
        self._run_until(self.now + 3 * S)
        total = sum(len(v) for sender in SIDES for v in self.sent[sender].values())
        assert sum(self.delivered.values()) + self.expired >= total, "a message vanished"


class WithPsk(Attacked):
    """With a psk the attacker also truncates, pads and flips bits: all refused."""

    PSK = PSK

    @rule(pick=st.integers(0, 10**6), cut=st.integers(0, 10**6))
    def truncate(self, pick: int, cut: int) -> None:
        seen = self._pick(pick)
        if seen is not None:
            side, link, data, _ = seen
            self._feed(side, data[: cut % len(data)], link)

    @rule(pick=st.integers(0, 10**6), size=st.integers(0, MAX_UDP), fill=st.binary(max_size=4))
    def oversize(self, pick: int, size: int, fill: bytes) -> None:
        seen = self._pick(pick)
        if seen is not None:
            side, link, data, _ = seen
            fill = fill or b"\x00"
            size = max(size, len(data) + 1)
            self._feed(side, (data + fill * (size // len(fill) + 1))[:size], link)

    @rule(pick=st.integers(0, 10**6), bits=st.lists(st.integers(0, 10**6), min_size=1, max_size=8))
    def flip(self, pick: int, bits: list[int]) -> None:
        seen = self._pick(pick)
        if seen is not None:
            side, link, data, _ = seen
            out = bytearray(data)
            for bit in {b % (len(out) * 8) for b in bits}:
                out[bit >> 3] ^= 1 << (bit & 7)
            self._feed(side, bytes(out), link)


_EXAMPLES = settings().max_examples  # the profile's: 100 in dev and ci, 5,000 in long
TestAttackedWithPsk = WithPsk.TestCase
TestAttackedWithPsk.settings = settings(max_examples=_EXAMPLES * 4 // 5, deadline=None)
TestAttackedWithoutPsk = Attacked.TestCase
TestAttackedWithoutPsk.settings = settings(max_examples=_EXAMPLES // 2, deadline=None)


# --- regressions ----------------------------------------------------------------------


def test_old_session_datagrams_are_dropped_by_reason() -> None:
    """Against a locked session, an older session's datagrams (HELLOs included) change
    nothing and are counted: "other session" or "unexpected HELLO"."""
    for psk in (None, PSK):
        cfg = _config(psk)
        a = plait.Endpoint(cfg, initiator=True, now=S, rng=random.Random(5))
        b = plait.Endpoint(cfg, initiator=False, now=S, rng=random.Random(6))
        now = _exchange(a, b, S, 3)
        for data, link in old_session(psk):
            a.receive_datagram(data, link=link, now=now)
            b.receive_datagram(data, link=link, now=now)
        for ep in (a, b):
            drops = ep.stats().drops
            assert set(drops) <= {"other session", "unexpected HELLO", "replay"}, drops
            assert sum(drops.values()) == len(old_session(psk))


def test_a_replayed_old_hello_cannot_lock_the_initiator_out() -> None:
    cfg = _config(PSK)
    # An older initiator that was never answered re-sends its HELLO (Link Seq 1) ...
    old = plait.Endpoint(cfg, initiator=True, now=S, rng=random.Random(7))
    old.datagrams_to_send(now=S)
    old.handle_timer(now=S + cfg.health.probe_interval_ns)
    (old_hello, old_link), *_ = old.datagrams_to_send(now=S + cfg.health.probe_interval_ns)
    assert wire.parse_header(old_hello)[2] == 1
    # ... and the attacker replays it to B after B answered A, before A's PROBEs arrive.
    now = 60 * S
    a = plait.Endpoint(cfg, initiator=True, now=now, rng=random.Random(1))
    b = plait.Endpoint(cfg, initiator=False, now=now, rng=random.Random(2))
    for src, dst in ((a, b), (b, a)):
        out = src.datagrams_to_send(now=now)
        now += 10 * MS
        for data, link in out:
            dst.receive_datagram(data, link=link, now=now)
    probes = a.datagrams_to_send(now=now)
    b.receive_datagram(old_hello, link=old_link, now=now + 5 * MS)  # the replay
    now += 10 * MS
    for data, link in probes:
        b.receive_datagram(data, link=link, now=now)
    for i in range(20):
        a.send(payload(0, i, 100), now=now)
    now = _exchange(a, b, now, 50)
    received = [e for e in iter(b.next_event, None) if isinstance(e, plait.MessageReceived)]
    assert b.session == a.session, f"B serves the replayed session; drops {b.stats().drops}"
    assert received


# --- every class of bad input, one at a time ---------------------------------------------

Maker = Callable[[random.Random, "Survey"], tuple[bytes, int]]


@attrs.define
class Survey:
    """One class of bad input against a fresh copy of the captured session's B
    (fuzz/corpus.py), at a time when all its messages are past their deadline."""

    psk: bool
    session: corpus.Session = attrs.field(init=False)
    ep: plait.Endpoint = attrs.field(init=False)
    now: int = attrs.field(init=False)
    pn: list[int] = attrs.field(init=False)
    sealer: crypto.Sealer | None = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.session = corpus.session(self.psk)
        self.ep = self.session.endpoint()
        self.now = self.session.start + 3 * S
        self.pn = [0] * len(RATES)
        keys = self.session.keys
        self.sealer = crypto.Sealer(keys) if keys is not None else None

    def real(self, rng: random.Random) -> corpus.Sent:
        return rng.choice(self.session.sent)

    def fed_first(self, sent: corpus.Sent) -> None:
        """Deliver the original before replaying it (not counted in the class)."""
        self.ep.receive_datagram(sent.datagram, link=sent.link, now=self.now)

    def as_peer(self, ptype: wire.PacketType, body: bytes, link: int) -> bytes:
        """`body` under the session's header with a fresh Link Seq, sealed with the
        sender's key if there is a psk: what only the real peer can send."""
        highest = self.ep.links.links[link].health.inbound.highest or 0
        pn = self.pn[link] = max(self.pn[link], highest) + 1
        header = wire.pack_header(ptype, self.session.session, pn & 0xFFFF, 0, None, 0)
        return header + body if self.sealer is None else self.sealer.seal(header, body, link, pn)


def _replay(rng: random.Random, s: Survey, other: bool) -> tuple[bytes, int]:
    sent = s.real(rng)
    s.fed_first(sent)
    link = (sent.link + rng.randint(1, 2)) % 3 if other else sent.link
    return sent.datagram, link


def _flip(rng: random.Random, s: Survey) -> tuple[bytes, int]:
    sent = s.real(rng)
    out = bytearray(sent.datagram)
    for bit in rng.sample(range(len(out) * 8), rng.randint(1, 8)):
        out[bit >> 3] ^= 1 << (bit & 7)
    return bytes(out), sent.link


def _pad(rng: random.Random, s: Survey) -> tuple[bytes, int]:
    sent = s.real(rng)
    size = rng.randint(len(sent.datagram) + 1, MAX_UDP)
    return sent.datagram + bytes((rng.randrange(256),)) * (size - len(sent.datagram)), sent.link


def _header(rng: random.Random, s: Survey) -> tuple[bytes, int]:
    sent = s.real(rng)
    out, field = bytearray(sent.datagram), rng.randrange(4)
    at, width = ((0, 1), (1, 4), (5, 2), (7, 4))[field]
    while out == sent.datagram:  # a rewrite to the same value is no rewrite
        out[at : at + width] = rng.randbytes(width)
    return bytes(out), sent.link


_BAD_BODIES: Final = (
    (wire.PacketType.DATA, b"\x01" + bytes(11) + b"\x00\x01x"),  # FRAG with count 1
    (wire.PacketType.DATA, b"\x01" + bytes(11) + b"\x05\x05x"),  # index >= count
    (wire.PacketType.DATA, b"\x01" + bytes(11) + b"\x00\x02"),  # empty fragment
    (wire.PacketType.DATA, b"\x02" + bytes(11) + b"x"),  # reserved flag
    (wire.PacketType.DATA, bytes(5)),  # truncated
    (wire.PacketType.PARITY, b"\x00" + bytes(4) + b"\xc8\x40\x00xx"),  # k + m > 256
    (wire.PacketType.PARITY, b"\x00" + bytes(4) + b"\x04\x02\x02xx"),  # index >= m
    (wire.PacketType.PARITY, b"\x00" + bytes(4) + b"\x04\x02\x00"),  # empty shard
    (wire.PacketType.FEEDBACK, b"\x00\x00\x00\x00\x05" + bytes(4)),  # largest, no run
    (wire.PacketType.FEEDBACK, b"\x00" + bytes(8) + b"\x01"),  # length
    (wire.PacketType.PROBE, b"\x00\x00\x07"),  # padding not zero
    (wire.PacketType.CLOSE, b"\x00\x00\x00\x00"),  # length
)


def _bad_body(rng: random.Random, s: Survey) -> tuple[bytes, int]:
    ptype, body = rng.choice(_BAD_BODIES)
    link = rng.randrange(3)
    return s.as_peer(ptype, body, link), link


def _inconsistent(rng: random.Random, s: Survey) -> tuple[bytes, int]:
    """Wire-valid but contradictory: a fragment whose count disagrees with the
    message's, or PARITY of a block that overlaps an open one."""
    link, seq = rng.randrange(3), rng.randrange(1_000, 1_100)
    if rng.random() < 0.5:
        count = rng.randint(2, 9)
        body = struct.pack("!BIIBH", 1, seq, 0, 0, 500) + bytes((0, count)) + b"frag"
        return s.as_peer(wire.PacketType.DATA, body, link), link
    body = struct.pack("!BIBBB", 0, seq, 8, 2, rng.randrange(2)) + rng.randbytes(40)
    return s.as_peer(wire.PacketType.PARITY, body, link), link


def _old(rng: random.Random, s: Survey) -> tuple[bytes, int]:
    old = rng.choice(s.session.old)
    return old.datagram, old.link


def _ours(rng: random.Random, s: Survey) -> tuple[bytes, int]:
    from tests.test_flood import junk  # noqa: PLC0415  (one generator for both files)

    return junk(rng, "ours", s.session.session, s.psk), rng.randrange(3)


#: name -> (make one input, whether it can pass for real data without a psk: section 8)
CLASSES: Final[dict[str, tuple[Maker, bool]]] = {
    "random bytes, 0-1,400 B": (lambda r, s: (r.randbytes(r.randrange(1401)), 0), False),
    "shorter than a header, 0-16 B": (
        lambda r, s: (bytes((0x21 | r.randrange(2) << 4,)) + r.randbytes(r.randrange(16)), 0),
        False,
    ),
    "unknown version or type": (
        lambda r, s: (bytes((r.choice([0x00, 0x28, 0x2F, 0x40, 0xE1]),)) + r.randbytes(40), 1),
        False,
    ),
    "another session (real datagram, session id changed)": (
        lambda r, s: ((d := s.real(r)).datagram[:1] + r.randbytes(4) + d.datagram[5:], d.link),
        False,
    ),
    "an older session with the same psk": (_old, False),
    "replayed on its own link": (lambda r, s: _replay(r, s, other=False), False),
    "replayed on another link": (lambda r, s: _replay(r, s, other=True), False),
    "real datagram truncated": (
        lambda r, s: ((d := s.real(r)).datagram[: r.randrange(len(d.datagram))], d.link),
        True,
    ),
    "real datagram, 1-8 bits flipped": (_flip, True),
    "real datagram padded, up to 65,507 B": (_pad, True),
    "real datagram, a header field rewritten": (_header, True),
    "session id right, random valid-looking fields": (_ours, True),
    "from the peer: bodies that break section 3 rules": (_bad_body, False),
    "from the peer: contradictory fragments, overlapping FEC blocks": (_inconsistent, False),
}


def survey(name: str, psk: bool, count: int, seed: int = 1) -> tuple[int, dict[str, int], int]:
    """Feed `count` inputs of class `name`; returns (accepted, drops by reason, messages
    delivered) for those inputs only."""
    s, rng = Survey(psk), random.Random(seed)
    make = CLASSES[name][0]
    accepted = delivered = 0
    drops: dict[str, int] = {}
    for _ in range(count):
        data, link = make(rng, s)
        while s.ep.next_event() is not None:
            pass
        before = s.ep.stats()
        s.ep.receive_datagram(data, link=link, now=s.now)
        after = s.ep.stats()
        accepted += sum(ln.datagrams_received for ln in after.links) - sum(
            ln.datagrams_received for ln in before.links
        )
        for reason, n in after.drops.items():
            if n != before.drops.get(reason, 0):
                drops[reason] = drops.get(reason, 0) + n - before.drops.get(reason, 0)
        delivered += sum(isinstance(e, plait.MessageReceived) for e in iter(s.ep.next_event, None))
    return accepted, drops, delivered


@pytest.mark.parametrize("psk", [True, False])
@pytest.mark.parametrize("name", list(CLASSES))
def test_each_bad_input_class(name: str, psk: bool) -> None:
    """300 inputs of each class: each counted once; with a psk only the peer's own
    (sealed) datagrams are ever accepted; without one, what section 8 promises: random,
    replayed and other-session datagrams are dropped or change nothing."""
    undetectable, wire_valid = CLASSES[name][1], name.endswith("overlapping FEC blocks")
    accepted, drops, delivered = survey(name, psk, 300)
    assert accepted + sum(drops.values()) >= 300  # a rebuilt record may add a drop
    if psk and not wire_valid:
        assert accepted == 0, drops
    if not psk and not undetectable and not wire_valid and "another link" not in name:
        assert accepted == 0, drops
    if name.startswith(("replayed", "an older")):
        assert delivered == 0


def main(count: int) -> None:
    """python3 -m tests.test_attacker [N]: the table of docs/robustness.md."""
    print("| input | psk | inputs | accepted | dropped, by reason |")
    print("| --- | --- | --- | --- | --- |")
    for name in CLASSES:
        for psk in (True, False):
            accepted, drops, _ = survey(name, psk, count)
            reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(drops.items(), key=lambda x: -x[1]))
            print(f"| {name} | {'yes' if psk else 'no'} | {count:,} | {accepted:,} | {reasons} |")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
