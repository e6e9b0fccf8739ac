"""Mapping the peer's clock to ours, for deadlines and one-way delay.

Each datagram carries the sender's µs clock (mod 2^32). Its *transit* here is
``arrival - sent``: the clocks' offset plus the one-way delay. The smallest transit seen
recently is the offset plus the smallest one-way delay; assuming symmetric paths, that
delay is half the smallest RTT. So

    offset = min transit - min RTT / 2 - margin,   local time = peer time + offset.

Transit is measured net of the datagram's own serialization time on its link, so that
large datagrams on slow links count towards the minimum too. Both minimums carry noise
(jitter, queueing) that could make the estimate late; `margin_ns` (set by the endpoint
from the links' jitter) biases it early instead, because a deadline judged a little
early costs a message only at the very edge of its budget, while a late one breaks the
promise that nothing is delivered after its deadline. Until an RTT sample exists, the
smallest one-way delay is taken as 0, so deadlines may be overshot by at most the
fastest link's one-way delay during the first round trip. Asymmetric paths shift every
deadline by half the asymmetry. The minimum is windowed, so clock drift between the two
ends is followed.

A *step* (the peer's clock paused by a suspend, or set back) raises every transit at
once, and the window would take 10-20 s to forget the old minimum, every message
judged expired meanwhile. So when every sample for a few RTTs (at least `_STEP_SAMPLES`
over `_STEP_RTTS` of the smallest RTT, and 20 ms) sits more than a step (the smallest
RTT, at least 20 ms) above the minimum, and at least two RTT samples among them show
the round trip longer by less than half the step, and none longer, the minimum
re-seeks to the smallest of them. Queueing (or an attacker holding datagrams back)
lengthens the round trip as well, so it does not re-seek; one late datagram never
does. (With only "two RTT samples" and not "none longer", a run of the `overload`
scenario re-sought while its links' queues grew, and delivered 11 messages late.)
"""

from __future__ import annotations

from typing import Final

from plait._types import NS_PER_MS, NS_PER_S, NS_PER_US
from plait.errors import UsageError
from plait.seq import SEQ32

__all__ = ["CallerTime", "ClockMap"]

_STEP_SAMPLES: Final = 8
_STEP_RTTS: Final = 3
_STEP_MIN_NS: Final = 20 * NS_PER_MS


class ClockMap:
    """Peer µs timestamps -> our ns clock."""

    __slots__ = (
        "_min_at",
        "_min_transit",
        "_previous",
        "_step",
        "margin_ns",
        "min_rtt_ns",
        "steps",
        "window_ns",
    )

    def __init__(self, window_ns: int = 10 * NS_PER_S) -> None:
        self.window_ns = window_ns
        self._min_transit: int | None = None  # µs: the smallest transit of this window
        self._previous: int | None = None  # ... and of the window before it
        self._min_at = 0
        self.min_rtt_ns = 0
        self.margin_ns = 0
        # a step in progress: [smallest transit µs, since, samples, RTT samples unchanged]
        self._step: list[int] = []
        self.steps = 0  # how often the minimum re-sought after a step

    @property
    def known(self) -> bool:
        return self._min_transit is not None

    def _offset_us(self) -> int:
        transit = self._min_transit or 0
        if self._previous is not None and self._previous < transit:
            transit = self._previous
        return transit - (self.min_rtt_ns // 2 + self.margin_ns) // NS_PER_US

    def unwrap_us(self, peer_us: int, now: int) -> int:
        """The peer's wrapped µs value as an unbounded µs count in the peer's clock."""
        offset = self._offset_us() if self._min_transit is not None else 0
        return SEQ32.unwrap(peer_us, now // NS_PER_US - offset)

    def on_timestamp(
        self, peer_ts_us: int, now: int, tx_ns: int = 0, rtt_excess_ns: int | None = None
    ) -> None:
        """A datagram sent at peer time `peer_ts_us` arrived at our time `now`, after
        `tx_ns` of serialization on its link; `rtt_excess_ns`: by how much the RTT sample
        it carried exceeds its link's smallest (None: it carried none)."""
        arrived_us = (now - tx_ns) // NS_PER_US
        if self._min_transit is None:
            self._min_transit, self._min_at = arrived_us - peer_ts_us, now
            return
        transit = arrived_us - self.unwrap_us(peer_ts_us, now)
        if self._stepped(transit, now, rtt_excess_ns):
            return
        if transit <= self._min_transit:
            self._min_transit, self._min_at = transit, now
        elif now - self._min_at > self.window_ns:
            # a new window: the old minimum still counts until this one has run its course,
            # so one late datagram (held back by a blackout, a buffer or an attacker) cannot
            # move the mapping; a real drift shows in every sample of a whole window
            self._previous, self._min_transit, self._min_at = self._min_transit, transit, now

    def _stepped(self, transit: int, now: int, rtt_excess_ns: int | None) -> bool:
        """Follow a step of the peer's clock (see the module's notes); True if the
        minimum re-sought to this sample's run."""
        step_us = max(_STEP_MIN_NS, self.min_rtt_ns) // NS_PER_US
        floor = self._min_transit or 0
        if self._previous is not None and self._previous < floor:
            floor = self._previous
        run = self._step
        if transit <= floor + step_us:
            if run:
                run.clear()  # the old minimum still holds
            return False
        if rtt_excess_ns is not None and rtt_excess_ns * 2 >= (transit - floor) * NS_PER_US:
            run.clear()  # the round trip grew with the transit: a queue, not a step
            return False
        if not run:
            run += [transit, now, 0, 0]
        run[0] = min(run[0], transit)
        run[2] += 1
        if rtt_excess_ns is not None:
            run[3] += 1
        span = max(_STEP_RTTS * self.min_rtt_ns, _STEP_MIN_NS)
        if run[2] < _STEP_SAMPLES or run[3] < 2 or now - run[1] < span:
            return False
        self._min_transit, self._previous, self._min_at = run[0], None, now
        run.clear()
        self.steps += 1
        return True

    def to_local(self, peer_us: int) -> int:
        """Our ns time for the peer's *unwrapped* µs time `peer_us` (see `unwrap_us`),
        with the newest estimate of the offset."""
        return (peer_us + self._offset_us()) * NS_PER_US


class CallerTime:
    """The caller's clock, made non-decreasing: a `now` earlier than one already seen
    (two threads' readings, a clock source swapped) is taken as the latest seen, so no
    interval computed from it is ever negative. Time starts at 0 or later."""

    __slots__ = ("now",)

    def __init__(self, now: int) -> None:
        """Raises: UsageError: `now` is not an int >= 0 (nothing is created)."""
        if type(now) is not int or now < 0:
            raise UsageError("now must be an int >= 0 (ns of a monotonic clock)")
        self.now = now

    def at(self, now: int) -> int:
        """`now`, or the latest time seen if that is later."""
        if now >= self.now:  # (not max(): this runs several times per datagram)
            self.now = now
            return now
        return self.now
