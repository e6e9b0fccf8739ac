"""Clocks that misbehave (issue 14, item 5).

* The sender's clock pauses (a suspend: its monotonic clock stops while the receiver's
  goes on): the receiver's peer-clock mapping re-seeks within a few round trips instead
  of judging every message expired for 25-30 s.
* A `now` earlier than one already passed is taken as the latest (`CallerTime`): the
  PROBE_ACK that a receive queued still goes out, with a valid echo, and nothing raises.
  A negative `now` is refused where time starts, at construction.
* A latency budget the wire's u32 µs deadline cannot carry is refused at once.
"""

from __future__ import annotations

import heapq
import random
from typing import Final

import pytest

import plait
from plait import wire
from plait.config import MAX_LATENCY_NS
from plait.errors import ConfigError, UsageError

MS: Final = 1_000_000
S: Final = 1_000_000_000
DELAYS: Final = (10 * MS, 15 * MS, 20 * MS)


def _config(**kw: object) -> plait.Config:
    return plait.Config(links=[plait.LinkConfig(rate_bps=5_000_000)] * 3, **kw)  # type: ignore[arg-type]  # test kwargs


class Pair:
    """A and B over three lossless links; A's clock reads the true time minus `lag`."""

    def __init__(self, start: int = 10 * S, **kw: object) -> None:
        self.now = start
        self.lag = 0
        self.a = plait.Endpoint(_config(**kw), initiator=True, now=start, rng=random.Random(1))
        self.b = plait.Endpoint(_config(**kw), initiator=False, now=start, rng=random.Random(2))
        self.heap: list[tuple[int, int, bool, int, bytes]] = []
        self.order = 0
        self.received: list[tuple[int, int]] = []  # (true time, msg) delivered at B
        self.expired = 0

    def _flush(self, to_b: bool) -> None:
        ep = self.a if to_b else self.b
        now = self.now - self.lag if to_b else self.now
        for data, link in ep.datagrams_to_send(now=now):
            self.order += 1
            heapq.heappush(self.heap, (self.now + DELAYS[link], self.order, to_b, link, data))
        while (event := ep.next_event()) is not None:
            if isinstance(event, plait.MessageReceived):
                self.received.append((self.now, event.msg))
            elif isinstance(event, plait.MessageExpired) and not event.sent:
                self.expired += event.count

    def run(self, span: int, *, every: int = 0, asleep: bool = False) -> None:
        """`span` of true time in 1 ms steps; A sends a message every `every` steps
        (0: none); `asleep`: A does nothing and hears nothing."""
        for step in range(span // MS):
            self.now += MS
            while self.heap and self.heap[0][0] <= self.now:
                _, _, to_b, link, data = heapq.heappop(self.heap)
                if to_b:
                    self.b.receive_datagram(data, link=link, now=self.now)
                elif not asleep:
                    self.a.receive_datagram(data, link=link, now=self.now - self.lag)
            self.b.handle_timer(now=self.now)
            self._flush(False)
            if asleep:
                continue
            if every and step % every == 0:
                self.a.send(b"m" * 100, now=self.now - self.lag)
            self.a.handle_timer(now=self.now - self.lag)
            self._flush(True)


def test_after_the_senders_clock_pauses_delivery_resumes_within_a_few_rtts() -> None:
    pair = Pair()
    pair.run(2 * S, every=5)
    assert pair.expired == 0
    pair.run(4 * S, asleep=True)  # A suspended for 4 s (under the idle timeout): its
    pair.lag = 4 * S  # clock stood still
    resumed = pair.now
    pair.run(3 * S, every=5)
    late = [msg for at, msg in pair.received if at > resumed + 300 * MS]
    assert len(late) >= 0.95 * (2700 // 5), (len(late), pair.expired)  # was: all expired
    assert pair.b._clock.steps == 1


def test_a_datagram_held_back_does_not_move_the_mapping() -> None:
    """One late datagram (or a burst without fresh RTT evidence) is not a clock step."""
    pair = Pair()
    pair.run(1 * S, every=5)
    before = pair.b._clock._offset_us()
    stale = pair.a.datagrams_to_send(now=pair.now)  # whatever was due: nothing, usually
    pair.a.send(b"held", now=pair.now)
    held = pair.a.datagrams_to_send(now=pair.now) + stale
    pair.run(1 * S, every=5)
    for data, link in held:  # delivered 1 s late, all at once
        pair.b.receive_datagram(data, link=link, now=pair.now)
    pair.run(100 * MS, every=5)
    assert pair.b._clock.steps == 0
    assert abs(pair.b._clock._offset_us() - before) < 5_000


def test_a_now_earlier_than_the_last_is_taken_as_the_last() -> None:
    """B receives a PROBE at t, then is asked for its datagrams at t - 1 ns: its
    PROBE_ACK goes out (it raised EncodeError and was lost) and A accepts it."""
    pair = Pair()
    pair.run(1 * S, every=5)
    b, a = pair.b, pair.a
    t = pair.now
    for data, link in a.datagrams_to_send(now=t):
        b.receive_datagram(data, link=link, now=t)
    a.handle_timer(now=t + 200 * MS)
    probes = a.datagrams_to_send(now=t + 200 * MS)
    assert any(wire.parse_header(d)[0] is wire.PacketType.PROBE for d, _ in probes)
    for data, link in probes:
        b.receive_datagram(data, link=link, now=t + 200 * MS)
    answers = b.datagrams_to_send(now=t + 200 * MS - 1)
    acks = [(d, k) for d, k in answers if wire.parse_header(d)[0] is wire.PacketType.PROBE_ACK]
    assert acks
    for data, link in acks:
        assert a.receive_datagram(data, link=link, now=t + 210 * MS), a.stats().drops
    b.handle_timer(now=0)  # far in the past: as if now were the latest seen
    b.send(b"x", now=0)
    assert not b.stats().drops


def test_a_negative_now_is_refused_where_time_starts() -> None:
    with pytest.raises(UsageError):
        plait.Endpoint(_config(), initiator=True, now=-1)
    with pytest.raises(UsageError):
        plait.Endpoint(_config(), initiator=True, now=1.5)  # type: ignore[arg-type]  # the misuse tested
    ep = plait.Endpoint(_config(), initiator=True, now=0)
    ep.handle_timer(now=-(10**9))  # later calls: taken as the latest seen (0)
    assert all(len(d) > 0 for d, _ in ep.datagrams_to_send(now=-5))


def test_budgets_the_wire_cannot_carry_are_refused() -> None:
    with pytest.raises(ConfigError):
        _config(latency_ns=MAX_LATENCY_NS + 1)
    with pytest.raises(ConfigError):
        _config(latency_ns=40 * 60 * S)  # 36-71 minutes were accepted, then all expired
    pair = Pair(latency_ns=MAX_LATENCY_NS)
    pair.run(1 * S)
    a = pair.a
    with pytest.raises(UsageError):
        a.set_latency(MAX_LATENCY_NS + 1)
    before = a.stats()
    with pytest.raises(UsageError):
        a.send(b"x", now=pair.now, deadline=pair.now + MAX_LATENCY_NS + 1)
    assert a.stats() == before
    a.send(b"far", now=pair.now)  # the longest budget there is: delivered, not expired
    a.send(b"far too", now=pair.now, deadline=pair.now + MAX_LATENCY_NS)
    pair._flush(True)
    pair.run(200 * MS)
    assert [msg for _, msg in pair.received] == [0, 1]
    assert pair.expired == 0
