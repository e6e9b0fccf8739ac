"""The links of a session: per-link pacing, health, echo state, and the link choice.

Choosing a link for a datagram of `size` bytes due by `deadline`:

* only links that carry data (UP or DEGRADED; if there is none, those on PROBATION, as
  a last resort: after an outage of every link, waiting out probation would only add
  to the outage) are candidates, and only those where the
  datagram can still arrive in time: pacing backlog + serialization + one-way delay
  (half the smoothed RTT) must land by the deadline;
* **DWRR** (the default): among the candidates free now, the `Striper` picks in
  proportion to the links' weights: each link's measured capacity (`plait.capacity`;
  times 1 - loss when adaptive), a degraded link's cut to `degraded_share`;
* **earliest arrival**: the candidate where the datagram would arrive first, even if
  that means waiting for its pacer;
* FEC spread: a caller can forbid links that already carry their share of a block.

If a candidate exists but none is free now, the caller waits until `wake_at`.
"""

from __future__ import annotations

from typing import Final

from plait.capacity import Capacity, Phase
from plait.config import Config, Scheduling
from plait.dwrr import Striper
from plait.links import Epoch, LinkHealth, LinkState, rtt_from_echo
from plait.pacing import Pacer
from plait.protection import LinkView
from plait.seq import SEQ16, ReceiveWindow, Verdict
from plait.wire import HEADER_SIZE, PacketType, pack_header

__all__ = ["Link", "LinkSet"]

_M32: Final = 0xFFFF_FFFF
#: `LinkSet.choose`'s question: (size, deadline, now, link to avoid, the block's packets
#: per link, and how many of them a link should carry at most).
Ask = tuple[int, int, int, int, list[int] | None, int]
_NO_ASK: Final[Ask] = (0, 0, 0, -1, None, 0)


class Link:
    """One link's runtime state."""

    __slots__ = (
        "capacity",
        "datagrams_in",
        "datagrams_out",
        "echo_at",
        "echo_fresh",
        "echo_ts",
        "health",
        "id",
        "margin_ns",
        "pacer",
        "replays",
        "room",
        "rtt",
    )

    def __init__(
        self,
        link: int,
        bound_bps: int | None,
        overhead: int,
        config: Config,
        now: int,
        epoch: Epoch,
    ) -> None:
        self.id = link
        self.capacity = Capacity(bound_bps, now)
        self.health = LinkHealth(link, config.health, now, epoch)
        self.rtt = self.health.rtt
        self.pacer = Pacer(self.capacity.rate_bps, overhead=overhead, now=now)
        self.margin_ns = 1_000_000  # arrival + this must be by the deadline: see LinkSet
        self.echo_ts = 0
        self.echo_at = -1  # when echo_ts arrived; -1: nothing received yet to echo
        self.echo_fresh = False
        self.datagrams_out = 0
        self.datagrams_in = 0
        self.replays = 0
        self.room = 1 << 30
        """Largest header + body (echo and tag excluded) this link's path is known to
        carry (`plait.pmtu`): `choose` puts nothing bigger on it."""

    def arrival(self, size: int, now: int) -> int:
        """When a datagram of `size` bytes handed over now would reach the peer."""
        pacer = self.pacer
        return (
            pacer.next_release(now) + pacer.tx_ns(size) + self.health.one_way_ns() + self.margin_ns
        )

    def min_tx_ns(self, size: int) -> int:
        """The least time a datagram of `size` bytes can have taken to arrive over this
        link: its serialization at the configured ceiling, 0 when there is none. (Our
        own pacing rate is no bound on what arrives: it measures the other direction,
        and on a link this end hardly sends on it can sink to the floor.)"""
        bound = self.capacity.bound_bps
        if bound is None:
            return 0
        return (size + self.pacer.overhead) * 8_000_000_000 // bound

    @property
    def rate_bps(self) -> int:
        """What the link carries now, as estimated (the pacer's rate)."""
        return self.pacer.rate_bps

    def overdue_window(self) -> int:
        """How much later than expected a record on this link may reach the peer before
        it counts as lost (`Outbox.on_overdue`): 2 ms, a quarter of the min RTT, or
        four times the jitter, whichever is most."""
        return max(2_000_000, self.rtt.min_rtt // 4, 4_000 * self.health.jitter.us)


class LinkSet:
    """All links of a session, and the choice between them."""

    __slots__ = (
        "_arq",
        "_ask",
        "_carrying",
        "_carrying_ids",
        "_carrying_key",
        "_moved",
        "_waits",
        "adaptive",
        "epoch",
        "links",
        "scheduling",
        "striper",
        "wake_at",
    )

    def __init__(self, config: Config, now: int) -> None:
        self.epoch = Epoch()
        self.links = [
            Link(i, lc.rate_bps, lc.overhead, config, now, self.epoch)
            for i, lc in enumerate(config.links)
        ]
        self.scheduling = config.scheduling
        self.adaptive = config.adaptive_weights
        self.striper: Striper[int] = Striper()
        for link in self.links:
            self.striper.add_link(link.id, self._weight(link))
        self.wake_at: int | None = None
        self._carrying: list[Link] = []
        self._carrying_ids: frozenset[int] = frozenset()
        self._carrying_key = -1  # the links' transitions when _carrying was computed
        self._ask: Ask = _NO_ASK
        self._waits: dict[int, int] = {}  # link -> tx time of what waits for it this pass
        self._moved = 0  # bumped by whatever moves `arq_times`' inputs but a state change
        # per link: arq_times' last answer, and (_moved, epoch, feedback_ns, burst) then
        self._arq: list[tuple[tuple[int, int, int, float], tuple[int, int]]] = [
            ((-1, -1, -1, 0.0), (0, 0)) for _ in self.links
        ]

    def __len__(self) -> int:
        return len(self.links)

    # --- weights ---------------------------------------------------------------------------

    def _weight(self, link: Link) -> int:
        base = link.capacity.rate_bps
        if self.adaptive:
            base = int(base * (1.0 - link.health.loss))
        return max(1, int(base * link.health.weight_factor()) // 1000)

    def update_weights(self) -> None:
        """Re-derive every link's striping weight from its capacity estimate and its
        health state."""
        for link in self.links:
            self._update(link)

    def _update(self, link: Link) -> None:
        """The pacer and the striping weight follow `link`'s capacity estimate."""
        rate = link.capacity.rate_bps
        if link.pacer.rate_bps != rate:
            link.pacer.set_rate(rate)
        weight = self._weight(link)
        if self.striper.weight(link.id) != weight:
            self.striper.set_weight(link.id, weight)

    def set_rate(self, link: int, rate_bps: int | None) -> None:
        """A new ceiling for a link's rate mid-session (None: none). A number is also
        taken as the link's rate until measurement says otherwise."""
        capacity = self.links[link].capacity
        capacity.set_bound(rate_bps)
        if rate_bps is not None:
            capacity.rate_bps = rate_bps
        self._update(self.links[link])

    def on_report(
        self, link: int, top: int, got: int, rx_us: int, jitter_us: int, now: int, hungry: bool
    ) -> bool:
        """The peer's report on `link` (its highest link sequence and count, unwrapped,
        and when it arrived; `hungry`: see `Capacity.on_report`): the capacity estimate,
        pacer and weight follow. Returns True when the link is congested now (its pacer
        then holds until it drains)."""
        ln = self.links[link]
        capacity = ln.capacity
        self._moved += 1
        congested = capacity.on_report(top, got, rx_us, jitter_us, ln.rtt.srtt, now, hungry=hungry)
        ln.health.on_queue(capacity.queue_ns, now)
        if congested:
            ln.pacer.hold_until(capacity.drain_until)
        if ln.pacer.rate_bps != capacity.rate_bps:
            self._update(ln)
        return congested

    def late(self, link: int, link_seq: int, deadline: int) -> bool:
        """Whether datagram `link_seq`, in flight on `link`, is now expected to reach the
        peer after `deadline` (our clock), by `Capacity.arrival`."""
        ln = self.links[link]
        arrival = ln.capacity.arrival(link_seq, ln.rtt.min_rtt // 2)
        return arrival is not None and arrival > deadline

    def starting(self) -> bool:
        """True while some link that carries data is still finding its rate
        (`Phase.STARTUP`, which doubles it every round trip while it is used)."""
        return any(ln.capacity.phase is Phase.STARTUP for ln in self.carrying())

    def usable_bps(self) -> int:
        """What the links that carry data deliver now, after loss (bit/s on the wire)."""
        return sum(int(ln.capacity.rate_bps * (1.0 - ln.health.loss)) for ln in self.carrying())

    # --- choosing ---------------------------------------------------------------------------

    def carrying(self) -> list[Link]:
        """Links that carry data now: UP or DEGRADED, else (last resort) PROBATION.
        Cached until some link changes state."""
        key = self.epoch.value
        if key != self._carrying_key:
            links = [link for link in self.links if link.health.carries]
            if not links:
                links = [ln for ln in self.links if ln.health.state is LinkState.PROBATION]
            self._carrying, self._carrying_key = links, key
            self._carrying_ids = frozenset(link.id for link in links)
        return self._carrying

    def can_arrive(self, body: int, deadline: int, now: int) -> bool:
        """True when some data-carrying link could deliver a datagram of a `body` of this
        many bytes by `deadline` (and its path carries that size)."""
        size = body + HEADER_SIZE
        for link in self.carrying():
            if size <= link.room and link.arrival(size, now) <= deadline:
                return True
        return False

    def choose(
        self,
        size: int,
        deadline: int,
        now: int,
        *,
        spread: list[int] | None = None,
        cap: int = 0,
        earliest: bool = False,
        avoid: int = -1,
    ) -> int | None:
        """The link for a datagram now, or None (then `wake_at` says when to retry, or is
        None if no link can take it in time). `spread` (per link, packets of the
        datagram's FEC block sent so far: links with `cap` of them are not preferred) and
        `avoid` are preferences: they are dropped rather than let them hold a datagram
        back. A link whose path is not known to carry `size` (`Link.room`) is never
        chosen."""
        self.wake_at = None
        if earliest or self.scheduling is Scheduling.EARLIEST_ARRIVAL:
            return self._choose_earliest(size, deadline, now, spread, cap, avoid)
        carrying = self.carrying()
        # the question `_can_take` answers for the striper, set once per choice (no
        # closure is built per datagram)
        self._ask = (size, deadline, now, avoid, spread, cap)
        chosen = self.striper.choose(size, self._can_take)
        if chosen is None and (spread is not None or avoid >= 0):
            self._ask = (size, deadline, now, -1, None, 0)
            chosen = self.striper.choose(size, self._can_take)
        self._ask = _NO_ASK
        if chosen is not None:
            return chosen
        waits = [
            max(link.pacer.free_at, now)
            for link in carrying
            if size <= link.room and link.arrival(size, now) <= deadline
        ]
        self.wake_at = min(waits) if waits else None
        return None

    def _can_take(self, i: int) -> bool:
        """Whether link `i` takes the datagram `choose` asks about now: it carries data,
        its path carries the size, its pacer is free, the preferences allow it, and the
        datagram arrives in time. Asked lazily by the striper, only for the links whose
        turn it is."""
        if i not in self._carrying_ids:
            return False
        size, deadline, now, avoid, spread, cap = self._ask
        link = self.links[i]
        if size > link.room:
            return False
        pacer = link.pacer
        if pacer._next > now:  # not free now
            return False
        if i == avoid or (spread is not None and spread[i] >= cap):
            return False
        rate = pacer.rate_bps
        tx = ((size + pacer.overhead) * 8_000_000_000 + rate - 1) // rate
        return now + tx + (link.rtt.srtt >> 1) + link.margin_ns <= deadline

    def _choose_earliest(
        self,
        size: int,
        deadline: int,
        now: int,
        spread: list[int] | None,
        cap: int,
        avoid: int,
    ) -> int | None:
        """The feasible link where the datagram arrives first, other than `avoid` if it can.
        The FEC spread narrows the choice only to a link free now: where the link it
        prefers is busy, the datagram goes where it arrives first (waiting for a
        preferred 2 Mbit/s link, parity held everything queued behind it while faster
        links idled)."""
        waits = self._waits
        feasible = [
            (arrival, link.id, link)
            for link in self.carrying()
            if size <= link.room
            and (arrival := link.arrival(size, now) + waits.get(link.id, 0)) <= deadline
        ]
        if not feasible:
            return None
        if len(feasible) > 1 and avoid >= 0:
            # a repair avoids the link that lost it even where that link is free (it may
            # be dead but not yet judged so: back on it, repairs after an outage were
            # lost again)
            feasible = [f for f in feasible if f[1] != avoid] or feasible
        preferred = feasible
        if spread is not None:
            preferred = [f for f in feasible if spread[f[1]] < cap] or feasible
        _, best, link = min(preferred)
        if link.pacer.ready(now) and best not in waits:
            return best
        _, best, link = min(feasible)
        if link.pacer.ready(now) and best not in waits:
            return best
        # it waits for that link: what is chosen after it this pass sees the link later
        waits[best] = waits.get(best, 0) + link.pacer.tx_ns(size)
        self.wake_at = link.pacer.next_release(now)
        return None

    def begin_pass(self) -> None:
        """A new pass of `datagrams_to_send`: nothing waits for a link yet."""
        if self._waits:
            self._waits = {}

    def next_free(self) -> int | None:
        """The earliest time a data-carrying link is free again (None: no such link)."""
        times = [link.pacer.free_at for link in self.carrying()]
        return min(times) if times else None

    # --- sending ------------------------------------------------------------------------------

    def stamp(
        self,
        link: int,
        ptype: PacketType,
        session: int,
        now: int,
        *,
        force_echo: bool | tuple[int, int] = False,
    ) -> tuple[bytes, int]:
        """The header for the next datagram on `link`, and its link sequence (unwrapped).
        Carries an echo when a peer timestamp is waiting to be echoed (or `force_echo`).
        `force_echo` may name the timestamp to echo and when it arrived, ``(ts, at)``:
        a PROBE_ACK echoes its own probe's (wire-format §3.4), even if later datagrams
        arrived on the link before it left."""
        ln = self.links[link]
        seq = ln.health.sent
        ts = (now // 1000) & _M32
        if force_echo and isinstance(force_echo, tuple):
            echo_ts, at = force_echo
            delay = min(0xFFFF, (now - at) // 1000)
            return pack_header(ptype, session, seq & 0xFFFF, ts, echo_ts, delay), seq
        if (ln.echo_fresh or force_echo) and ln.echo_at >= 0:
            delay = min(0xFFFF, (now - ln.echo_at) // 1000)
            ln.echo_fresh = False
            return pack_header(ptype, session, seq & 0xFFFF, ts, ln.echo_ts, delay), seq
        return pack_header(ptype, session, seq & 0xFFFF, ts, None, 0), seq

    def sent(self, link: int, size: int, now: int) -> None:
        """A datagram of `size` bytes went out on `link` now."""
        ln = self.links[link]
        ln.health.on_sent(size, now)
        ln.capacity.on_sent(size + ln.pacer.overhead, now)
        ln.pacer.reserve(size, now)
        ln.datagrams_out += 1

    # --- receiving ----------------------------------------------------------------------------

    def on_established(self, now: int) -> None:
        """A session began: every link starts UP, its silence so far forgiven."""
        for ln in self.links:
            ln.health.reset(now)
        self.update_weights()

    def reset_inbound(self) -> None:
        """Forget what arrived on every link (a half-open session was replaced)."""
        for ln in self.links:
            ln.health.inbound = ReceiveWindow(size=ln.health.inbound.size)
            ln.echo_at = -1
            ln.echo_fresh = False

    def check_seq(self, link: int, link_seq: int) -> int | None:
        """The unwrapped link sequence of a datagram just received on `link`, or None if it
        is a replay or too old (counted)."""
        window = self.links[link].health.inbound
        seq = window.unwrap(link_seq, SEQ16)
        if window.check(seq) is not Verdict.NEW:
            self.links[link].replays += 1
            return None
        return seq

    def received(
        self,
        link: int,
        seq: int,
        size: int,
        ts: int,
        echo_ts: int | None,
        echo_delay: int,
        now: int,
    ) -> LinkState:
        """Record an authenticated datagram: its sequence, timestamp (to echo back) and
        echo (an RTT sample and proof the link works both ways). Returns the state."""
        ln = self.links[link]
        ln.datagrams_in += 1
        self._moved += 1  # its jitter, maybe its RTT
        ln.health.on_received(seq, size, ts, now)
        ln.echo_ts, ln.echo_at, ln.echo_fresh = ts, now, True
        if echo_ts is not None:
            was_down = ln.health.state is LinkState.DOWN
            ln.health.on_echo(rtt_from_echo(echo_ts, echo_delay, now), now)
            if was_down and ln.health.state is not LinkState.DOWN:
                ln.capacity.restart(now)  # back from an outage: find its rate again
                self._update(ln)
        return ln.health.state

    def min_rtt(self) -> int:
        """The smallest RTT seen on any link (0 before any sample)."""
        rtts = [ln.health.rtt.min_rtt for ln in self.links if ln.health.rtt.samples]
        return min(rtts) if rtts else 0

    @property
    def moved(self) -> int:
        """Bumped by whatever moves `arq_times`' inputs but a state change (`epoch`):
        a datagram from the peer (its report, RTT, jitter), a margin."""
        return self._moved

    def arq_times(self, link: int, feedback_ns: int, burst: float = 1.0) -> tuple[int, int]:
        """(first, round) for `plait.protection`: how long after sending on `link` a
        re-send of a lost datagram lands (the link's RTT, its minimum plus the queue it
        holds now, + the peer's feedback delay + a reordering window, + the rest of a
        loss burst of mean length `burst`, which hides the loss until a later datagram
        arrives, + the gap to the next datagram on any link; then the fastest link's
        one-way delay and arrival margin), and how long each further round takes (the
        fastest link's RTT + the feedback delay).
        (0, 0) before any RTT sample. Kept per link until its inputs move (RTTs, jitter,
        the peer's reports, margins, which links carry data)."""
        key = (self._moved, self.epoch.value, feedback_ns, burst)
        cached = self._arq[link]
        if cached[0] == key:
            return cached[1]
        times = self._arq_times(link, feedback_ns, burst)
        self._arq[link] = (key, times)
        return times

    def _arq_times(self, link: int, feedback_ns: int, burst: float) -> tuple[int, int]:
        ln = self.links[link]
        rtt = ln.rtt
        sampled = [x for x in self.carrying() if x.rtt.samples] or [ln]
        if not rtt.samples:
            return 0, 0
        fast = min(sampled, key=lambda x: (x.rtt.min_rtt, x.id))
        low = fast.rtt.min_rtt
        detect = rtt.min_rtt + ln.capacity.queue_ns + feedback_ns + ln.overdue_window()
        used = ln.capacity.delivery_bps
        if burst > 1.0 and used > 0:  # datagrams on this link are this far apart
            detect += int((burst - 1.0) * 1228 * 8_000_000_000 / used)
        # a loss shows once a later datagram, on any link, is acknowledged
        # (`Outbox.on_overdue`): the next one leaves this long after it
        total = sum(x.capacity.delivery_bps for x in sampled)
        if total > 0:
            detect += 1228 * 8_000_000_000 // total
        return detect + low // 2 + fast.margin_ns, low + feedback_ns

    def protection_views(self, feedback_ns: int, burst: float) -> list[LinkView]:
        """Each data-carrying link as `plait.protection` sees it: (its share of the
        traffic, its loss, and its re-send times, `arq_times`)."""
        views: list[LinkView] = []
        for ln in self.carrying():
            first, round_ns = self.arq_times(ln.id, feedback_ns, burst)
            views.append((float(ln.capacity.rate_bps), ln.health.loss, first, round_ns))
        return views

    def clock_margin(self, latency_ns: int) -> int:
        """The early bias of the peer-clock mapping (`plait.clock`): twice the jitter of
        the link with the smallest RTT (its transit sets the minimum), at least 1 ms and
        at most an eighth of the latency budget."""
        sampled = [ln for ln in self.links if ln.health.rtt.samples]
        if not sampled:
            return 1_000_000
        fastest = min(sampled, key=lambda ln: (ln.health.rtt.min_rtt, ln.id))
        return min(max(1_000_000, 2_000 * fastest.health.jitter.us), latency_ns // 8)

    def set_margin(self, margin_ns: int) -> None:
        """How early a datagram must be expected to arrive to count as in time: the
        peer judges deadlines early by its clock margin (`plait.clock`), so by that.
        (Twice it plus twice the link's jitter made real-socket runs expire 5-12 %.)"""
        for ln in self.links:
            if ln.margin_ns != margin_ns:
                ln.margin_ns = margin_ns
                self._moved += 1

    def best_link(self, now: int) -> int:
        """The data-carrying link with the lowest arrival time for a small datagram
        (any link if none carries data): where feedback goes."""
        pool = self.carrying() or self.links
        return min(pool, key=lambda ln: (ln.arrival(64, now), ln.id)).id
