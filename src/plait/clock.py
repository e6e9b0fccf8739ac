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
"""

from __future__ import annotations

from plait._types import NS_PER_S, NS_PER_US
from plait.seq import SEQ32

__all__ = ["ClockMap"]


class ClockMap:
    """Peer µs timestamps -> our ns clock."""

    __slots__ = ("_min_at", "_min_transit", "_previous", "margin_ns", "min_rtt_ns", "window_ns")

    def __init__(self, window_ns: int = 10 * NS_PER_S) -> None:
        self.window_ns = window_ns
        self._min_transit: int | None = None  # µs: the smallest transit of this window
        self._previous: int | None = None  # ... and of the window before it
        self._min_at = 0
        self.min_rtt_ns = 0
        self.margin_ns = 0

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

    def on_timestamp(self, peer_ts_us: int, now: int, tx_ns: int = 0) -> None:
        """A datagram sent at peer time `peer_ts_us` arrived at our time `now`, after
        `tx_ns` of serialization on its link."""
        arrived_us = (now - tx_ns) // NS_PER_US
        if self._min_transit is None:
            self._min_transit, self._min_at = arrived_us - peer_ts_us, now
            return
        transit = arrived_us - self.unwrap_us(peer_ts_us, now)
        if transit <= self._min_transit:
            self._min_transit, self._min_at = transit, now
        elif now - self._min_at > self.window_ns:
            # a new window: the old minimum still counts until this one has run its course,
            # so one late datagram (held back by a blackout, a buffer or an attacker) cannot
            # move the mapping; a real drift shows in every sample of a whole window
            self._previous, self._min_transit, self._min_at = self._min_transit, transit, now

    def to_local(self, peer_us: int) -> int:
        """Our ns time for the peer's *unwrapped* µs time `peer_us` (see `unwrap_us`),
        with the newest estimate of the offset."""
        return (peer_us + self._offset_us()) * NS_PER_US
