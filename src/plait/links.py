"""Link health: is a link alive, and is it good? Integer nanoseconds throughout.

"Alive" and "good" are kept apart:

* **Alive** is decided by round trips only. Each side probes every link at least every
  `probe_interval_ns`, and a PROBE is answered at once. Any echo of our own timestamp
  proves a round trip. If no round trip has been confirmed for
  ``probe_interval_ns * down_after_probes`` (default 300 ms), the link is **DOWN**. When
  one is confirmed again, the link goes on **PROBATION**: probed four times as often,
  it carries data again after three round trips in a row whose RTT is back near its
  minimum (about 0.1-0.2 s), or after a probation period of good service.
* **Good** is decided by loss, delay and its variation. Loss is measured from the peer's
  link reports (exact per-link sequence counts). Delay is the smoothed RTT (RFC 6298)
  against the link's own windowed minimum. An UP link whose loss or RTT crosses the
  *degrade* thresholds becomes **DEGRADED**, and its share of traffic is cut. It earns the
  share back only after staying under the lower *recover* thresholds for a probation
  period (250 ms). That is hysteresis in both value and time. Delay is judged on the
  link's minimum RTT plus the queue the peer's latest report shows (`plait.capacity`),
  fresh every ~10 ms, where there is one; on the smoothed RTT otherwise, which lags by
  several probe intervals.

Flap damping (after BGP route-flap damping, RFC 2439): every demotion in a row
quadruples the probation period (0.5, 2, 8 s, up to `probation_max_ns`), and only the
first outage in a while ends with the quick round-trip test; 16 probation periods of
good service forgive one demotion. So a link that swings between fast and slow stays out
instead of flapping in and out on every swing.

Also measured: RFC 3550 interarrival jitter of what the peer sends us, the inbound loss
and reordering on each link (via `plait.seq.ReceiveWindow`), and when the highest link
sequence arrived (reported back for the peer's capacity estimate, `plait.capacity`).
"""

from __future__ import annotations

import enum
import warnings
from collections import deque
from typing import Final

from plait._types import NS_PER_US
from plait.config import HealthConfig
from plait.seq import SEQ16, SEQ32, ReceiveWindow

__all__ = ["Epoch", "Jitter", "LinkHealth", "LinkState", "RttEstimator", "rtt_from_echo"]

_LOSS_SPAN: Final = 200  # datagrams a loss estimate spans at least (once that many were sent)
_LONG_SPAN: Final = 2000  # ... and the long one, for protection (1 % loss: 20 losses, not 2)
_REPORTS_KEPT: Final = 512
_RTT_GRANULARITY_NS: Final = 1_000_000  # RFC 6298's G, for the RTO
_PROBATION_ECHOES: Final = 3  # good round trips in a row that end probation (no flaps)
_DECAY: Final = 16  # probation periods of good service that forgive one demotion
_QUEUE_FRESH_NS: Final = 250_000_000  # a queue sample this old no longer judges delay


class LinkState(enum.IntEnum):
    """A link's health state. Only UP and DEGRADED links carry data."""

    DOWN = 0
    """No round trip confirmed within the failover bound: carries only probes."""
    PROBATION = 1
    """Alive again after being down, still proving itself: carries only probes."""
    DEGRADED = 2
    """Alive but lossy or slow: carries a reduced share."""
    UP = 3
    """Alive and good: carries its full share."""

    def __str__(self) -> str:
        return self.name  # as `LinkStats.state` printed when it was a str

    def __format__(self, spec: str) -> str:
        return format(self.name, spec)

    def __eq__(self, other: object) -> bool:
        """Equal to its name too (deprecated: `LinkStats.state` was a str before 0.2)."""
        if isinstance(other, str):
            warnings.warn(
                "LinkStats.state is a plait.LinkState: compare with LinkState.UP, not 'UP'",
                DeprecationWarning,
                stacklevel=2,
            )
            return self.name == other
        return int(self) == other

    def __hash__(self) -> int:
        return hash(self.name)  # as its name's, so that ``state in {"UP", ...}`` works too


class RttEstimator:
    """Smoothed RTT and variation after RFC 6298, plus a windowed minimum."""

    __slots__ = ("_min_at", "latest", "min_rtt", "rttvar", "samples", "srtt", "window_ns")

    def __init__(self, window_ns: int) -> None:
        self.window_ns = window_ns
        self.srtt = 0
        self.rttvar = 0
        self.latest = 0
        self.min_rtt = 0
        self._min_at = 0
        self.samples = 0

    def on_sample(self, rtt_ns: int, now: int) -> None:
        """Fold in one RTT sample measured at `now`."""
        self.latest = rtt_ns
        if self.samples == 0:
            self.srtt, self.rttvar = rtt_ns, rtt_ns // 2
        else:
            self.rttvar = (3 * self.rttvar + abs(self.srtt - rtt_ns)) // 4
            self.srtt = (7 * self.srtt + rtt_ns) // 8
        self.samples += 1
        if self.samples == 1 or rtt_ns <= self.min_rtt or now - self._min_at > self.window_ns:
            self.min_rtt, self._min_at = rtt_ns, now

    @property
    def rto_ns(self) -> int:
        """The retransmission timeout of RFC 6298 (without its 1 s floor)."""
        return self.srtt + max(_RTT_GRANULARITY_NS, 4 * self.rttvar)


class Jitter:
    """RFC 3550 interarrival jitter of a peer's timestamps (µs, integer, §A.8)."""

    __slots__ = ("_jitter16", "_transit")

    def __init__(self) -> None:
        self._transit: int | None = None
        self._jitter16 = 0  # jitter * 16

    def on_arrival(self, sender_ts_us: int, arrival_us: int) -> None:
        transit = SEQ32.diff(arrival_us & SEQ32.mask, sender_ts_us)
        if self._transit is not None:
            d = abs(transit - self._transit)
            self._jitter16 += d - ((self._jitter16 + 8) >> 4)
        self._transit = transit

    @property
    def us(self) -> int:
        return self._jitter16 >> 4


def rtt_from_echo(echo_ts_us: int, echo_delay_us: int, now: int) -> int | None:
    """RTT in ns from an echo of our own µs timestamp, or None if it is unusable
    (held 65.535 ms or more by the peer, or not a plausible past time)."""
    if echo_delay_us == 0xFFFF:
        return None
    elapsed_us = SEQ32.diff((now // NS_PER_US) & SEQ32.mask, echo_ts_us)
    rtt_us = elapsed_us - echo_delay_us
    return rtt_us * NS_PER_US if rtt_us >= 0 else None


class Epoch:
    """Counters shared by a set of links: `value`, bumped on any state change of any of
    them (a cache of "which links carry data" is valid while it has not moved), and
    `timers`, bumped whenever a link's own `LinkHealth.due` moved (a cache of the
    earliest of them is valid while it has not)."""

    __slots__ = ("timers", "value")

    def __init__(self) -> None:
        self.value = 0
        self.timers = 0


class LinkHealth:
    """Everything plait knows about one link's health, fed by the endpoint.

    Outbound (our datagrams to the peer): `on_sent` for each datagram, `on_echo` for
    each echo of our timestamp, `on_report` for each of the peer's link reports.
    Inbound (the peer's datagrams to us): `on_received`. Time passing: `update(now)`,
    which applies state transitions; `deadline()` says when `update` is next needed.
    `due` holds the earlier of that and `probe_at`, kept up to date by every method that
    moves either, so that a timer query costs one attribute read per link.
    """

    __slots__ = (
        "_echoes",
        "_flaps",
        "_fresh_from",
        "_good_since",
        "_last_probe_sent",
        "_probation",
        "_queue",
        "_queue_at",
        "_reports",
        "bytes_received",
        "bytes_sent",
        "carries",
        "config",
        "due",
        "epoch",
        "highest_rx_us",
        "inbound",
        "jitter",
        "last_proof",
        "link",
        "loss",
        "loss_span",
        "lost_long",
        "rtt",
        "sent",
        "span_long",
        "state",
        "state_since",
        "transitions",
    )

    def __init__(
        self, link: int, config: HealthConfig, now: int, epoch: Epoch | None = None
    ) -> None:
        self.link = link
        self.config = config
        self.epoch = epoch if epoch is not None else Epoch()
        self.state = LinkState.UP  # optimistic: a session's first packets must not wait
        self.carries = True  # state >= DEGRADED: it carries data
        self.state_since = now
        self.transitions = 0
        self.last_proof = now
        self._good_since: int | None = None
        self._echoes = 0  # good round trips in a row while on probation
        self._queue = 0  # the last queue sample (ns) from the capacity estimate
        self._queue_at = -_QUEUE_FRESH_NS
        self._flaps = 0
        self._fresh_from = 0  # reports about datagrams before this one are stale
        self._probation = config.probation_ns
        self.rtt = RttEstimator(config.min_rtt_window_ns)
        self.jitter = Jitter()
        self.inbound = ReceiveWindow(size=1024)
        self.sent = 0
        self.bytes_sent = 0
        self._reports: deque[tuple[int, int, int]] = deque(maxlen=_REPORTS_KEPT)
        self.loss = 0.0
        self.loss_span = 0  # datagrams the loss estimate covers
        self.lost_long = self.span_long = 0.0  # the long estimate (`loss_long`)
        self.bytes_received = 0
        self.highest_rx_us = 0  # our µs clock when the highest inbound link seq arrived
        self._last_probe_sent = now
        self.due = 0
        """min(`deadline()` (None: never), `probe_at`): when this link next needs a timer."""
        self._refresh()

    def _refresh(self) -> None:
        """Recompute `due` after its inputs may have moved (state, proofs, probes, RTT)."""
        due = self.probe_at
        deadline = self.deadline()
        if deadline is not None and deadline < due:
            due = deadline
        if due != self.due:
            self.due = due
            self.epoch.timers += 1

    # --- outbound --------------------------------------------------------------------

    def on_sent(self, size: int, now: int) -> int:
        """Count one datagram of `size` bytes sent; returns its unwrapped link sequence."""
        seq = self.sent
        self.sent += 1
        self.bytes_sent += size
        return seq

    @property
    def probe_at(self) -> int:
        """When this link's next probe is due: an interval after the last probe, or,
        on a link whose RTT is shorter than the interval, after the last round trip
        confirmed by any traffic if that is later (data and feedback that keep proving
        the link make the keepalive unneeded, and a probe sent an interval after the
        last proof is answered well before the link would count as DOWN). Where the
        RTT is longer, the probes in flight are what keep proofs arriving every
        interval: skipping them took a 600 ms RTT link DOWN between proofs and cost 6 %
        of the messages. Four per interval on probation, to end it sooner."""
        interval = self.config.probe_interval_ns
        if self.state is LinkState.PROBATION:
            return self._last_probe_sent + interval // 4
        if self.rtt.samples and self.rtt.srtt < interval:
            return max(self._last_probe_sent, self.last_proof) + interval
        return self._last_probe_sent + interval

    def on_probe_sent(self, now: int) -> None:
        self._last_probe_sent = now
        self._refresh()

    @property
    def last_probe_sent(self) -> int:
        """When the last keepalive PROBE went out on this link."""
        return self._last_probe_sent

    def on_echo(self, rtt_ns: int | None, now: int) -> None:
        """A round trip was confirmed at `now`; `rtt_ns` is its sample, if usable."""
        self.last_proof = now
        if rtt_ns is not None and rtt_ns >= 0:
            self.rtt.on_sample(rtt_ns, now)
        if self.state is LinkState.DOWN:
            self._enter(LinkState.PROBATION, now)
            self._good_since = now
            self._echoes = 0
            # the outage is the DOWN state's business: judge loss on fresh evidence only,
            # from reports about datagrams sent from now on
            self._reports.clear()
            self.loss, self.loss_span = 0.0, 0
            self._fresh_from = self.sent
        elif self.state is LinkState.PROBATION:
            good = rtt_ns is not None and rtt_ns <= self._recover_rtt()
            self._echoes = self._echoes + 1 if good else 0
            # the first outage in a while: back after a few good round trips; after more,
            # only the (damped) probation period of good service brings it back
            if self._flaps <= 1 and self._echoes >= _PROBATION_ECHOES and not self._quality(now)[0]:
                self._enter(LinkState.UP, now)
                self._good_since = now
        self.update(now)

    def on_queue(self, queue_ns: int, now: int) -> None:
        """The capacity estimate's latest queue sample for this link (one way, ns)."""
        self._queue, self._queue_at = queue_ns, now

    def reset(self, now: int) -> None:
        """A session was (re)established: nothing was expected before, so every link
        starts UP and unblemished, as at creation."""
        self.last_proof = now
        self._good_since = None
        self._set_flaps(0)
        self._enter(LinkState.UP, now)
        self._refresh()

    def on_report(self, link_seq: int, received: int, now: int) -> tuple[int, int] | None:
        """The peer's report for this link: highest link sequence it received and how
        many datagrams it has received on the link, mod 2^16. Returns both unwrapped
        (received counted from the first report kept), or None for a report to ignore."""
        if self.sent == 0:
            return None
        top = SEQ16.unwrap(link_seq, self.sent - 1)
        if not self._fresh_from <= top < self.sent:
            return None  # about datagrams we never sent, or from before a recovery
        if self._reports:
            _, last_top, last_received = self._reports[-1]
            if top < last_top:
                return None  # an old report overtaken by a newer one
            received = last_received + ((received - last_received) & SEQ16.mask)
            long_span = self.span_long + (top - last_top)
            long_lost = self.lost_long + (top - last_top - (received - last_received))
            if long_span > _LONG_SPAN:  # older datagrams fade: the last ~_LONG_SPAN count
                long_lost, long_span = long_lost * _LONG_SPAN / long_span, float(_LONG_SPAN)
            self.lost_long, self.span_long = long_lost, long_span
        reports = self._reports
        reports.append((now, top, received))
        while len(reports) > 2 and top - reports[1][1] >= _LOSS_SPAN:
            reports.popleft()  # the estimate still spans _LOSS_SPAN datagrams without it
        _, first_top, first_received = reports[0]
        span = top - first_top
        if span > 0:
            got = received - first_received
            self.loss = min(1.0, max(0.0, 1.0 - got / span))
            self.loss_span = span
            self.update(now)
        return top, received

    @property
    def loss_long(self) -> float:
        """The loss over the last ~`_LONG_SPAN` datagrams reported (an outage's are not:
        reports start afresh after one): steadier than `loss`, which must follow a
        change within a few hundred datagrams; what protection is sized by."""
        if self.span_long <= 0:
            return 0.0
        return min(1.0, max(0.0, self.lost_long / self.span_long))

    # --- inbound ---------------------------------------------------------------------

    def on_received(self, seq: int, size: int, sender_ts_us: int, now: int) -> None:
        """One datagram from the peer arrived on this link. `seq` is its link sequence,
        already unwrapped (``inbound.unwrap``) and checked new (``inbound.check``)."""
        inbound = self.inbound
        inbound.receive(seq)
        if inbound.highest == seq:
            self.highest_rx_us = now // NS_PER_US
        self.jitter.on_arrival(sender_ts_us, now // NS_PER_US)
        self.bytes_received += size

    # --- state -----------------------------------------------------------------------

    def _enter(self, state: LinkState, now: int) -> None:
        if state is self.state:
            return
        if state < self.state and self.state >= LinkState.DEGRADED:  # out of service
            self._set_flaps(self._flaps + 1)
        self.state, self.state_since = state, now
        self.carries = state >= LinkState.DEGRADED
        self.transitions += 1
        self.epoch.value += 1

    def _set_flaps(self, flaps: int) -> None:
        cfg = self.config
        self._flaps = flaps
        shift = min(max(2 * flaps - 1, 0), 20)
        self._probation = min(cfg.probation_ns << shift, cfg.probation_max_ns)

    def probation_ns(self) -> int:
        """The current probation period: doubled per demotion in a row (flap damping)."""
        return self._probation

    def _recover_rtt(self) -> int:
        """The RTT a link must be back under to recover."""
        cfg, low = self.config, self.rtt.min_rtt
        return max(low + cfg.rtt_slack_ns, int(low * cfg.rtt_recover_factor))

    def _quality(self, now: int) -> tuple[bool, bool]:
        """(bad, good): over the degrade thresholds / under the recover thresholds."""
        cfg, rtt = self.config, self.rtt
        loss = self.loss if self.loss_span >= _LOSS_SPAN // 2 else 0.0  # too few to judge
        bad = loss > cfg.loss_degrade
        good = loss <= cfg.loss_recover
        if rtt.samples:
            delay = rtt.srtt
            if now - self._queue_at < _QUEUE_FRESH_NS:
                delay = rtt.min_rtt + self._queue
            bad = bad or delay > rtt.min_rtt * cfg.rtt_degrade_factor + cfg.rtt_slack_ns
            good = good and delay <= self._recover_rtt()
        return bad, good

    def update(self, now: int) -> LinkState:
        """Apply whatever transitions are due at `now`; return the state."""
        state = self._update(now)
        self._refresh()
        return state

    def _update(self, now: int) -> LinkState:
        cfg = self.config
        if now - self.last_proof > cfg.down_after_ns:
            self._enter(LinkState.DOWN, now)
            self._good_since = None
            return self.state
        if self.state is LinkState.DOWN:
            return self.state
        bad, good = self._quality(now)
        if bad:
            self._good_since = None
            if self.state is LinkState.UP:
                self._enter(LinkState.DEGRADED, now)
            return self.state
        if not good:
            self._good_since = None
            return self.state
        if self._good_since is None:
            self._good_since = now
        if self.state is LinkState.UP:
            if self._flaps and now - self._good_since >= _DECAY * self.probation_ns():
                self._set_flaps(self._flaps - 1)  # long enough in good service
                self._good_since = now
        elif now - self._good_since >= self.probation_ns():
            self._enter(LinkState.UP, now)
            self._good_since = now
        return self.state

    def deadline(self) -> int | None:
        """The next time `update` can change something without new input; None when
        nothing can (a DOWN link changes only when a round trip is confirmed)."""
        if self.state is LinkState.DOWN:
            return None
        down_at = self.last_proof + self.config.down_after_ns + 1
        good_since = self._good_since
        if good_since is None:
            return down_at
        if self.state is not LinkState.UP:
            return min(down_at, good_since + self.probation_ns())
        if self._flaps:
            return min(down_at, good_since + _DECAY * self.probation_ns())
        return down_at

    @property
    def carries_data(self) -> bool:
        """True for UP and DEGRADED links (the same as the `carries` attribute)."""
        return self.carries

    def weight_factor(self) -> float:
        """Multiplier on this link's weight for its state."""
        if self.state is LinkState.UP:
            return 1.0
        if self.state is LinkState.DEGRADED:
            return self.config.degraded_share
        return 0.0

    def one_way_ns(self) -> int:
        """Estimated one-way delay to the peer: half the smoothed RTT (0 before samples)."""
        return self.rtt.srtt // 2
