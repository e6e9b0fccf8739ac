"""The per-link capacity estimator (`plait.capacity`), against a model bottleneck.

`Bottleneck` is a FIFO drained at a rate that may change, with a fixed propagation
delay: the estimator sends into it, and every `report_ns` the "peer" reports the
highest datagram that has arrived, how many did, and when (in a clock with an arbitrary
offset). Properties: the estimate converges near the bottleneck's rate from above and
from below, backs off monotonically while the queue grows, never runs away, never
leaves its bounds, and its state does not grow with its input.
"""

from __future__ import annotations

import itertools
import sys
from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from plait.capacity import FLOOR_BPS, RING, START_BPS, Capacity, Phase

MS = 1_000_000
SIZE = 1228  # bytes on the wire per datagram


class Bottleneck:
    """A FIFO link: serialization at `rate_bps`, then `delay_ns`, deep buffer."""

    def __init__(self, rate_bps: int, delay_ns: int, offset_us: int = 123_456_789) -> None:
        self.rate_bps = rate_bps
        self.delay_ns = delay_ns
        self.offset_us = offset_us
        self.busy = 0
        self.arrivals: deque[tuple[int, int]] = deque()  # (arrival ns, link seq)
        self.top = -1
        self.top_at = 0
        self.got = 0

    def send(self, seq: int, size: int, now: int) -> None:
        start = max(self.busy, now)
        self.busy = start + size * 8 * 1_000_000_000 // self.rate_bps
        self.arrivals.append((self.busy + self.delay_ns, seq))

    def report(self, now: int) -> tuple[int, int, int] | None:
        """(top, got, rx_us) of what arrived by `now`, or None before anything did."""
        while self.arrivals and self.arrivals[0][0] <= now:
            at, seq = self.arrivals.popleft()
            self.top, self.top_at, self.got = seq, at, self.got + 1
        if self.top < 0:
            return None
        return self.top, self.got, (self.top_at // 1000 + self.offset_us) & 0xFFFF_FFFF

    def queue_ns(self, now: int) -> int:
        return max(0, self.busy - now)


def drive(
    cap: Capacity,
    link: Bottleneck,
    *,
    start: int,
    until: int,
    demand_bps: int | None = None,
    report_ns: int = 10 * MS,
    seen: list[tuple[int, int]] | None = None,
    hungry: bool = False,
) -> list[tuple[int, int, int]]:
    """Send at the estimate (or `demand_bps`, whichever is lower; None: always the
    estimate), report every `report_ns`; returns (now, rate, bottleneck queue) per
    report, and appends (reported queue, rate) to `seen`. Honours `drain_until` like
    the pacer does. `hungry`: tell the estimator the sender has a backlog."""
    now, next_send, next_report = start, start, start + report_ns
    trace = []
    while now < until:
        if now >= next_send:
            link.send(cap.sent, SIZE, now)
            cap.on_sent(SIZE, now)
            rate = cap.rate_bps if demand_bps is None else min(cap.rate_bps, demand_bps)
            next_send = max(now + SIZE * 8 * 1_000_000_000 // rate, cap.drain_until)
        if now >= next_report:
            got = link.report(now)
            if got is not None:
                cap.on_report(got[0], got[1], got[2], 500, 2 * link.delay_ns, now, hungry=hungry)
            trace.append((now, cap.rate_bps, link.queue_ns(now)))
            if seen is not None:
                seen.append((cap.queue_ns, cap.rate_bps))
            next_report += report_ns
        now = min(next_send, next_report)
    return trace


def test_unknown_link_finds_its_rate() -> None:
    cap, link = Capacity(None, 0), Bottleneck(8_000_000, 20 * MS)
    assert cap.rate_bps == START_BPS
    assert cap.phase is Phase.STARTUP
    trace = drive(cap, link, start=0, until=3_000 * MS)
    late = [rate for now, rate, _ in trace if now > 1_500 * MS]
    assert min(late) >= 0.7 * 8_000_000
    assert max(late) <= 1.3 * 8_000_000
    assert max(q for now, _, q in trace if now > 1_500 * MS) < 60 * MS


def test_overstated_rate_comes_down_within_a_few_round_trips() -> None:
    cap, link = Capacity(10_000_000, 0), Bottleneck(2_000_000, 20 * MS)
    trace = drive(cap, link, start=0, until=2_000 * MS)
    first_low = next(now for now, rate, _ in trace if rate <= 2_200_000)
    assert first_low < 400 * MS
    assert max(q for now, _, q in trace if now > 1_000 * MS) < 60 * MS


def test_step_down_then_up() -> None:
    cap, link = Capacity(None, 0), Bottleneck(5_000_000, 15 * MS)
    drive(cap, link, start=0, until=2_000 * MS)
    link.rate_bps = 1_000_000
    trace = drive(cap, link, start=2_000 * MS, until=4_000 * MS)
    assert all(rate <= 1_300_000 for now, rate, _ in trace if now > 2_300 * MS)
    link.rate_bps = 5_000_000
    trace = drive(cap, link, start=4_000 * MS, until=7_000 * MS)
    assert min(rate for now, rate, _ in trace if now > 6_000 * MS) >= 3_500_000


def test_the_bound_is_never_exceeded() -> None:
    cap, link = Capacity(3_000_000, 0), Bottleneck(10_000_000, 10 * MS)
    trace = drive(cap, link, start=0, until=2_000 * MS)
    assert max(rate for _, rate, _ in trace) == 3_000_000


def test_app_limited_link_keeps_its_estimate() -> None:
    """Sending below the estimate proves nothing about the link: no growth, no cut."""
    cap, link = Capacity(6_000_000, 0), Bottleneck(8_000_000, 10 * MS)
    trace = drive(cap, link, start=0, until=2_000 * MS, demand_bps=1_000_000)
    assert {rate for _, rate, _ in trace} == {6_000_000}


@settings(max_examples=60, deadline=None)
@given(
    rate=st.integers(200_000, 20_000_000),
    delay_ms=st.integers(1, 300),
    bound=st.one_of(st.none(), st.integers(100_000, 30_000_000)),
)
def test_never_runs_away_and_stays_in_bounds(rate: int, delay_ms: int, bound: int | None) -> None:
    cap, link = Capacity(bound, 0), Bottleneck(rate, delay_ms * MS)
    trace = drive(cap, link, start=0, until=4_000 * MS)
    for _, estimate, _ in trace:
        assert estimate >= FLOOR_BPS
        assert bound is None or estimate <= bound
    settled = [estimate for now, estimate, _ in trace if now > 3_000 * MS]
    assert max(settled) <= 2 * rate  # no runaway probing


@settings(max_examples=60, deadline=None)
@given(rate=st.integers(500_000, 10_000_000), delay_ms=st.integers(5, 100))
def test_back_off_is_monotone_while_the_queue_grows(rate: int, delay_ms: int) -> None:
    """While the reports show a queue above the threshold, the estimate never rises; and
    within a few round trips of the collapse it has come down to the new rate."""
    cap, link = Capacity(None, 0), Bottleneck(rate, delay_ms * MS)
    drive(cap, link, start=0, until=2_000 * MS)
    new_rate = max(100_000, rate // 5)
    link.rate_bps = new_rate  # capacity collapses
    seen: list[tuple[int, int]] = []  # (reported queue, estimate) after each report
    drive(cap, link, start=2_000 * MS, until=3_000 * MS, seen=seen)
    for (_, before), (queue, after) in itertools.pairwise(seen):
        if queue > 10 * MS:
            assert after <= before
    assert seen[-1][1] <= 1.3 * new_rate


def test_state_is_bounded() -> None:
    """A long run leaves the estimator the size it started (two fixed rings)."""
    cap, link = Capacity(None, 0), Bottleneck(10_000_000, 10 * MS)
    size = sys.getsizeof(cap._sent_at) + sys.getsizeof(cap._bytes_at)
    drive(cap, link, start=0, until=8_000 * MS)
    assert cap.sent > RING  # the rings wrapped
    assert sys.getsizeof(cap._sent_at) + sys.getsizeof(cap._bytes_at) == size


def test_reports_out_of_order_or_about_unsent_datagrams_are_ignored() -> None:
    cap = Capacity(2_000_000, 0)
    for i in range(10):
        cap.on_sent(SIZE, i * MS)
    assert not cap.on_report(50, 50, 0, 0, 20 * MS, 11 * MS)  # never sent
    cap.on_report(5, 5, 30_000, 0, 20 * MS, 31 * MS)
    assert not cap.on_report(4, 4, 29_000, 0, 20 * MS, 32 * MS)  # older than the last
    assert cap.queue_ns == 0


@settings(max_examples=40, deadline=None)
@given(rate=st.integers(4_000_000, 12_000_000), delay_ms=st.integers(5, 60))
def test_a_collapse_is_cut_as_soon_as_the_queue_shoots_up(rate: int, delay_ms: int) -> None:
    """Capacity falling several-fold fills the queue several ms per ms: the estimator
    cuts once a report shows a queue above 3x the threshold (10 ms here) after one
    above it, where a slow rise needs three in a row; each report waited for lets the
    queue grow by tens of ms more, and a cellular modem's buffer holds seconds."""
    cap, link = Capacity(rate * 9 // 10, 0), Bottleneck(rate, delay_ms * MS)  # told, under it
    drive(cap, link, start=0, until=2_000 * MS)
    before = cap.rate_bps
    link.rate_bps = rate // 6
    seen: list[tuple[int, int]] = []  # (reported queue, estimate) after each report
    drive(cap, link, start=2_000 * MS, until=2_600 * MS, seen=seen)
    # the first new sample above 3x the threshold after one above it: cut by then
    steep = next(
        i for i in range(1, len(seen)) if seen[i][0] > 30 * MS and seen[i - 1][0] > 10 * MS
    )
    assert seen[steep][1] < before
    assert seen[-1][1] <= 1.3 * (rate // 6)


def test_a_backlog_regains_a_risen_capacity_fast() -> None:
    """A link just cut from 4 to 1 Mbit/s whose capacity then rises to 8 (a cellular
    link's moves within seconds): with a backlog at the sender (`hungry`) it grows as in
    STARTUP (2x per RTT) once its last cut is four RTTs old, and is back near 8 Mbit/s
    within a few hundred ms; without one it grows carefully near the rate it was cut to
    (GCC's near-convergence increase)."""
    times = {}
    for hungry in (False, True):
        cap, link = Capacity(None, 0), Bottleneck(4_000_000, 20 * MS)
        drive(cap, link, start=0, until=2_000 * MS)
        link.rate_bps = 1_000_000
        drive(cap, link, start=2_000 * MS, until=2_400 * MS)
        assert cap.rate_bps < 1_300_000
        link.rate_bps = 8_000_000
        trace = drive(cap, link, start=2_400 * MS, until=6_000 * MS, hungry=hungry)
        times[hungry] = next(now for now, rate, _ in trace if rate >= 6_000_000) - 2_400 * MS
        assert max(q for now, _, q in trace) < 80 * MS  # measured: 31 (careful), 67 (hungry)
    assert times[True] < 500 * MS  # measured: 320 ms (hungry), 740 ms (careful)
    assert times[True] * 2 < times[False]


def test_a_link_found_under_load_ramps_up_faster() -> None:
    """A link whose rate nobody told, found while the sender has a backlog (`hungry`):
    STARTUP grows 3x per RTT instead of 2x, so it reaches most of an 8 Mbit/s path
    sooner, without a standing queue."""
    times = {}
    for hungry in (False, True):
        cap, link = Capacity(None, 0), Bottleneck(8_000_000, 20 * MS)
        trace = drive(cap, link, start=0, until=3_000 * MS, hungry=hungry)
        times[hungry] = next(now for now, rate, _ in trace if rate >= 6_000_000)
        assert max(q for now, _, q in trace if now > 1_500 * MS) < 60 * MS
    assert times[True] < times[False]
