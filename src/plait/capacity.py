"""Per-link capacity: what each link really carries now, measured, not configured.

Cellular, radio and satellite links have no rate one can configure: an LTE modem's
capacity swings several-fold within seconds behind a buffer of hundreds of milliseconds.
So each link's sending rate follows an estimate made from the peer's link reports
(docs/wire-format.md §3.3), which tell, per link, the highest link sequence received,
how many datagrams arrived, and when (`rx_ts`, in the receiver's clock).

The signals, as in WebRTC's GCC, SCReAM (RFC 8298) and BBR:

* **Queuing delay.** ``rx_ts`` minus our own send time of that datagram is the one-way
  delay plus a constant clock offset. Its windowed minimum (of the running median of
  five samples) is the empty-queue delay, so the excess is the queue at the
  bottleneck, sampled on every report (every ~10 ms), on every link, in the forward
  direction only.
* **Delivery rate.** Bytes that arrived between two reports over the receiver's time
  between them: the bottleneck's drain rate whenever a queue stood in between.
* **Demand.** A rate can only be tested where the sender uses it: the estimate grows
  only while the link was sent at (nearly) its pacing rate (BBR's app-limited rule).

The law, once per report:

* queue above ``high`` (twice the link's jitter, 10-40 ms) in each of the last three
  reports (one late datagram, reordered or held by a radio, is not a queue), or above
  3 x ``high`` after a report above ``high`` (a capacity that fell several-fold fills
  the queue that fast), and at least an RTT since the last cut: **cut** to 0.9 x the
  delivery rate (GCC's 0.85 x receive rate, a little gentler because we also drain),
  and say how long the bottleneck needs to drain down to ``low``: the link's pacer
  holds new data until then, so the queue goes at once instead of over seconds, and
  data already queued that would now arrive after its deadline can be re-sent
  elsewhere (`Capacity.arrival`);
* queue under ``low`` and the link used at its rate: **grow** (never past twice the
  largest delivery rate of the last second or two), by up to 2x per RTT while
  no queue was ever seen (STARTUP; 3x while the sender also has a backlog: a session
  that starts under load sheds what waits for the links to ramp up), or while the
  sender has a backlog and the last cut
  is four RTTs old (demand the links do not meet: the other links' capacity may have
  risen while they were app-limited, as a cellular link's does within seconds), by up
  to 1.25x per RTT far above the last cut, and by 8 % per RTT within a quarter of it
  for a second after it (GCC's near-convergence increase), capped by the configured
  bound;
* otherwise hold. A link left app-limited keeps its estimate: it is tested again when
  demand returns (no padding probes: they would cost the wire what FEC and re-sends
  are there to save; measured, probing by moving traffic onto app-limited links
  raised p99 by ~20 ms and cost the moving-capacity case, see docs/design.md).

Everything is integer ns and bits per second; the state is a fixed set of numbers and
two rings of `RING` entries: no input grows it.
"""

from __future__ import annotations

import enum
from typing import Final

from plait._types import NS_PER_MS, NS_PER_S, NS_PER_US

__all__ = ["RING", "START_BPS", "Capacity", "Phase"]

RING: Final = 4096
"""Datagrams per link whose send time and byte count are remembered (a report about an
older one is ignored)."""
START_BPS: Final = 1_000_000
"""Where a link whose rate nobody knows starts (then it grows to what it carries)."""
FLOOR_BPS: Final = 64_000
"""No link is paced slower: probes and feedback must still pass."""
_M32: Final = 0xFFFF_FFFF
_BASE_WINDOW_NS: Final = 10 * NS_PER_S
_MAX_JUMP_US: Final = 2_000_000
_MIN_SAMPLE_NS: Final = 20 * NS_PER_MS
_MIN_SAMPLE_DATAGRAMS: Final = 4
_HIGH_MIN_NS: Final = 10 * NS_PER_MS
_HIGH_MAX_NS: Final = 40 * NS_PER_MS
_CONVERGED_FOR_NS: Final = NS_PER_S
_HUNGRY_AFTER_RTTS: Final = 4
_NO_BASE: Final = 1 << 62  # no transit minimum (yet)


class Phase(enum.IntEnum):
    """Where a link's estimate stands."""

    STARTUP = 0
    """No queue seen yet: grow fast (2x per RTT) while there is demand."""
    STEADY = 1
    """Found once: grow carefully, cut on a queue."""


class Capacity:
    """One link's capacity estimate and the bookkeeping it needs (sender side)."""

    __slots__ = (
        "_base",
        "_base_at",
        "_base_prev",
        "_bytes_at",
        "_cut_at",
        "_cut_rate",
        "_dmax",
        "_dmax_at",
        "_dmax_prev",
        "_recent",
        "_sent_at",
        "_sent_bytes",
        "_start_got",
        "_start_rx",
        "_start_seq",
        "_top",
        "_transit",
        "_transits",
        "bound_bps",
        "delivery_bps",
        "drain_until",
        "phase",
        "queue_ns",
        "rate_bps",
        "sent",
    )

    def __init__(self, bound_bps: int | None, now: int) -> None:
        self.bound_bps = bound_bps
        """The configured ceiling (None: none)."""
        self.rate_bps = bound_bps if bound_bps is not None else START_BPS
        """The estimate: what the link carries now (the pacer's rate)."""
        self.phase = Phase.STEADY if bound_bps is not None else Phase.STARTUP
        self.delivery_bps = 0
        """The last delivery-rate sample (0 before one)."""
        self.queue_ns = 0
        """The queuing delay of the last report: one-way delay above its minimum."""
        self.drain_until = 0
        """Until when the link should take no new data (its queue drains)."""
        self.sent = 0
        self._sent_bytes = 0
        self._bytes_at = [0] * RING
        self._sent_at = [now] * RING
        self._top = -1
        self._transit: int | None = None  # µs, unwrapped around the previous sample
        self._transits = [0] * 5  # the last five, for the median the minimum is taken of
        self._base = 0  # the smallest transit of this window, µs
        self._base_prev = 0  # ... and of the window before it
        self._base_at = now
        self._start_seq = -1  # the open delivery-rate interval: first report in it
        self._start_rx = 0
        self._start_got = 0
        self._cut_at = now - NS_PER_S
        self._cut_rate = 0
        self._dmax = self._dmax_prev = 0  # the largest delivery sample of this second
        self._dmax_at = now  # ... and of the one before
        self._recent = [0, 0, 0]  # the last three queue samples, ns

    # --- sending ---------------------------------------------------------------------

    def on_sent(self, size: int, now: int) -> None:
        """Datagram number `sent` (the link sequence) of `size` bytes left now."""
        i = self.sent % RING
        self._sent_bytes += size
        self._bytes_at[i] = self._sent_bytes
        self._sent_at[i] = now
        self.sent += 1

    def set_bound(self, bound_bps: int | None) -> None:
        """A new ceiling (`Endpoint.set_link_rate`): the estimate stays under it."""
        self.bound_bps = bound_bps
        if bound_bps is not None and self.rate_bps > bound_bps:
            self.rate_bps = bound_bps

    def restart(self, now: int) -> None:
        """The link came back from an outage: find its rate again, from half the old."""
        self.rate_bps = max(FLOOR_BPS, self.rate_bps // 2)
        self.phase = Phase.STARTUP
        self._start_seq = -1
        self._transit = None
        self._base_at = now
        self.queue_ns = 0
        self._recent = [0, 0, 0]
        self.drain_until = 0

    # --- the peer's reports ----------------------------------------------------------

    def on_report(
        self,
        top: int,
        got: int,
        rx_us: int,
        jitter_us: int,
        rtt_ns: int,
        now: int,
        *,
        hungry: bool = False,
    ) -> bool:
        """Fold in one link report: `top` the highest link sequence received (unwrapped),
        `got` the datagrams received so far (unwrapped), `rx_us` when `top` arrived
        (the peer's µs clock, mod 2^32), `jitter_us` its jitter, `rtt_ns` the link's
        smoothed RTT; `hungry`: the sender has a backlog (more to send than the links
        take), so a link that shows no queue is worth trying faster. Returns True when
        the link is congested now (the rate was cut and `drain_until` moved)."""
        if top <= self._top or top >= self.sent or self.sent - top > RING:
            return False  # old, about datagrams never sent, or out of the ring
        self._top = top
        sent_at = self._sent_at[top % RING]
        qd = self._queue(rx_us, sent_at, now)
        high = self._high(jitter_us)
        # a queue three times the threshold, in two reports in a row, is a capacity that
        # fell: waiting for the third report would let it grow by another report's worth
        steep = qd > 3 * high and self.queue_ns > high
        self.queue_ns = qd
        recent = self._recent
        recent[top % 3] = qd
        send_bps = self._sample(top, got, rx_us, sent_at, now)
        if min(recent) > high or steep:
            if now - self._cut_at < max(rtt_ns, 2 * NS_PER_MS) or not self.delivery_bps:
                return False  # one cut per round trip: the last one has not shown yet
            self._cut(qd, jitter_us, top, now)
            return True
        if send_bps * 8 >= self.rate_bps * 7 and max(recent) < high // 2:  # used at its rate
            self._grow(rtt_ns, now, hungry)
        return False

    def _sample(self, top: int, got: int, rx_us: int, sent_at: int, now: int) -> int:
        """Close the delivery-rate interval at report `top` if it is long enough: sets
        `delivery_bps` and returns the rate the link was sent at over the same datagrams
        (0 when the interval stays open)."""
        start = self._start_seq
        if start < 0 or start >= top or top - start >= RING:
            self._start_seq, self._start_rx, self._start_got = top, rx_us, got
            return 0
        span_ns = ((rx_us - self._start_rx) & _M32) * NS_PER_US
        datagrams = top - start
        if span_ns < _MIN_SAMPLE_NS or datagrams < _MIN_SAMPLE_DATAGRAMS:
            return 0
        j = start % RING
        sent_bytes = self._bytes_at[top % RING] - self._bytes_at[j]
        arrived = max(0, min(datagrams, got - self._start_got))
        delivered = sent_bytes * arrived * 8 * NS_PER_S // (datagrams * span_ns)
        self.delivery_bps = delivered
        if now - self._dmax_at > NS_PER_S:
            self._dmax_prev, self._dmax, self._dmax_at = self._dmax, delivered, now
        elif delivered > self._dmax:
            self._dmax = delivered
        self._start_seq, self._start_rx, self._start_got = top, rx_us, got
        send_ns = sent_at - self._sent_at[j]
        return sent_bytes * 8 * NS_PER_S // send_ns if send_ns > 0 else 0

    def _queue(self, rx_us: int, sent_at: int, now: int) -> int:
        """The queuing delay (ns) of a datagram sent at `sent_at` that arrived at peer
        time `rx_us`: its transit above the windowed minimum. The minimum is taken over
        the median of each five consecutive samples, so datagrams that came early (an
        on-path attacker racing copies of them ahead of the originals: authentic, so
        accepted; junk that took a link sequence's place in the peer's report) move it
        only if they are most of the traffic, from the first sample on: there is no
        minimum before three samples are in."""
        raw = (rx_us - sent_at // NS_PER_US) & _M32
        prev = self._transit
        recent = self._transits
        if prev is None:
            transit = raw
            recent[:] = [_NO_BASE] * len(recent)
            self._base = self._base_prev = _NO_BASE
            self._base_at = now
        else:
            transit = prev + (((raw - prev) + (1 << 31)) & _M32) - (1 << 31)
            if abs(transit - prev) > _MAX_JUMP_US:
                return self.queue_ns  # no path moves seconds at once: a forged report
        self._transit = transit
        recent[self._top % len(recent)] = transit
        typical = sorted(recent)[len(recent) // 2]
        if typical <= self._base:
            self._base, self._base_at = typical, now
        elif now - self._base_at > _BASE_WINDOW_NS:
            # a new window: the old minimum counts until this one has run its course
            self._base_prev, self._base, self._base_at = self._base, typical, now
        return max(0, transit - min(self._base, self._base_prev)) * NS_PER_US

    @staticmethod
    def _high(jitter_us: int) -> int:
        """The queue above which a link counts as congested."""
        return min(_HIGH_MAX_NS, max(_HIGH_MIN_NS, 2 * jitter_us * NS_PER_US))

    def _cut(self, qd: int, jitter_us: int, top: int, now: int) -> None:
        rate = max(FLOOR_BPS, min(self.rate_bps, self.delivery_bps * 9 // 10))
        if self.bound_bps is not None:
            rate = min(rate, self.bound_bps)
        self.rate_bps = rate
        self.phase = Phase.STEADY
        self._cut_at, self._cut_rate = now, rate
        # what is queued behind `top`, plus what stands before it, drains at the new
        # rate; hold new data until only `low` of it is left
        behind = self._sent_bytes - self._bytes_at[top % RING]
        low = self._high(jitter_us) // 2
        drained = self._sent_at[top % RING] + qd + behind * 8 * NS_PER_S // rate - low
        self.drain_until = max(self.drain_until, drained)

    def _grow(self, rtt_ns: int, now: int, hungry: bool) -> None:
        rate = self.rate_bps
        since_cut = now - self._cut_at
        if self.phase is Phase.STARTUP and hungry:
            gain_per_rtt = 2.0
        elif self.phase is Phase.STARTUP or (hungry and since_cut > _HUNGRY_AFTER_RTTS * rtt_ns):
            gain_per_rtt = 1.0
        elif rate > self._cut_rate * 5 // 4 or since_cut > _CONVERGED_FOR_NS:
            gain_per_rtt = 0.25
        else:
            gain_per_rtt = 0.08
        # what the link has shown it delivers bounds how far the estimate runs ahead of
        # it: a link used in short bursts passes them through a token bucket without a
        # queue, and would otherwise seem to carry any rate it is tried at
        shown = max(self._dmax, self._dmax_prev)
        if shown and rate >= 2 * shown:
            return
        step = int(rate * gain_per_rtt * min(1.0, _MIN_SAMPLE_NS / max(rtt_ns, NS_PER_MS)))
        rate += max(step, 8_000)
        if self.bound_bps is not None:
            rate = min(rate, self.bound_bps)
        self.rate_bps = rate

    # --- predictions -----------------------------------------------------------------

    def arrival(self, link_seq: int, one_way_ns: int) -> int | None:
        """When datagram `link_seq` (sent, not yet reported) should reach the peer, in
        our clock, if the bottleneck serves what was sent before it at the current
        rate from the last report on; None if unknown."""
        top = self._top
        if top < 0 or not top < link_seq < self.sent or self.sent - top > RING:
            return None
        i = top % RING
        behind = self._bytes_at[link_seq % RING] - self._bytes_at[i]
        exit_top = self._sent_at[i] + self.queue_ns
        return exit_top + behind * 8 * NS_PER_S // self.rate_bps + one_way_ns
