"""Path MTU per link: datagram PLPMTU discovery (DPLPMTUD, RFC 8899) with padded PROBEs.

Each link's path has its own largest IP packet: 1500 bytes on Ethernet, 1492 behind
PPPoE, 1400-1450 through tunnels and many cellular cores. A datagram larger than that is
lost without a word (no ICMP message reaches a UDP socket reliably, RFC 8899 §1.1), so
plait finds each link's size itself, with packets of its own, as RFC 8899 describes for
a datagram transport. Sizes here are IP packet sizes (datagram + the link's IP/UDP
header, `LinkConfig.overhead`), as `Config.mtu` is.

* **Probes** (§4.1). A probe is a PROBE padded with zeros to the size under test
  (wire-format §3.4). It carries no data, so a probe that is too big loses nothing but
  itself. The peer answers each PROBE with a PROBE_ACK whose echo is that probe's
  timestamp; the sender keeps its last `PROBE_TABLE` probes per link (µs timestamp ->
  size), so an echo names the size that got through. A probe is never sent in the µs
  of a keepalive PROBE on the same link, whose answer would carry the same echo.
* **States** (§5.2). BASE: confirm `BASE_PLPMTU` (the size used until a search confirms
  more). SEARCHING: the bound `Config.mtu` first (most paths carry it: one probe), then
  bisection, to the byte, between the largest size confirmed and the smallest that
  failed. SEARCH_COMPLETE: the largest size that got through is the link's PLPMTU.
  ERROR: not even the base got through although the link answers; the base stays in
  use (nothing smaller is known to work), and it is probed again every 30 s.
* **Loss** (§5.1.1). A probe is lost when no answer came within its timer, the link's
  RTO + 10 ms (RFC 6298: SRTT + 4 RTTVAR), *and* something the link carried after it was
  answered meanwhile: a silent link is an outage (`plait.links`), not a size. A size
  fails after `MAX_PROBES` (3) losses in a row (more on a lossy link:
  `probes_for_loss`). RFC 8899 sets PROBE_TIMER to 15 s (at least 1 s) for a
  transport that knows no RTT; every plait link has one, measured every 100 ms, so the
  timer is a few RTTs and a search ends in about a second.
* **Black holes** (§4.3). A link whose outbound loss reaches `SUSPECT_LOSS` (10 %)
  while it still answers (small packets get through) gets a confirmation probe at its
  PLPMTU. If that fails `MAX_PROBES` times, the path shrank: back to BASE, and search
  again below the failed size. A confirmation that gets through doubles the time
  before the next one (1 s up to 64 s), so a link that is merely lossy is not probed
  for ever. A link that goes DOWN is checked the same way when it answers again:
  BASE, then its old size (and below it if that fails; more is the raise timer's).
* **Raise** (§5.2, PMTU_RAISE_TIMER). A search that ended below `Config.mtu` starts
  again after `Config.pmtu_raise_ns` (600 s), from the bound down.

What the search costs: one probe per link at the start of a session (plus one of the
base) on a path that carries `Config.mtu`; on a 1400-byte path under a 1500 bound, about
20 probes (bisection over 220 bytes, 3 per size that fails), once, then none until the
raise timer. Probes are sent only when the link's pacer is free, like any datagram.

`LinkSearch` is the pure state machine of one link (sizes, times, answers in, probes
out); `PathMtu` drives one per link from an endpoint's links and says which sizes the
endpoint may use: each link's room (`Link.room`, what `LinkSet.choose` fits a datagram
in) and the payload a message is cut to, which fits the smallest PLPMTU among the links
that carry data, so that any fragment may go on any link.
"""

from __future__ import annotations

import enum
import math
from typing import Final

from plait.config import Config
from plait.links import LinkState, RttEstimator
from plait.linkset import Link, LinkSet
from plait.wire import ECHO_SIZE, HEADER_SIZE, TAG_SIZE

__all__ = [
    "BASE_PLPMTU",
    "MAX_PROBES",
    "PROBE_TABLE",
    "SUSPECT_LOSS",
    "LinkSearch",
    "PathMtu",
    "PmtuState",
    "probe_timeout",
    "probes_for_loss",
]

BASE_PLPMTU: Final = 1280
"""The size every path is taken to carry before a search confirms more (IP bytes): the
IPv6 minimum link MTU (RFC 8200 §5), and what plait sent on every path before it had
a search. RFC 8899 §5.1.2 recommends 1200 bytes of UDP payload (1228 IP) for IPv4;
1280 keeps every IPv4 path that carried plait before, and a lower `Config.mtu` lowers
the base with it."""
MAX_PROBES: Final = 3
"""Probes lost in a row at one size before that size fails (RFC 8899's MAX_PROBES), on
a link that loses less than ~2 %; more on lossier ones (`probes_for_loss`)."""
_WRONG_FAIL: Final = 1e-4  # the chance that a size that fits fails for loss alone
_MAX_PROBES_LOSSY: Final = 12
_UNJUDGED_LOSS: Final = 0.10  # the loss a link is taken to have until it is judged


def probes_for_loss(loss: float) -> int:
    """Probes lost in a row before a size fails on a link that loses `loss` of its
    datagrams anyway, each way: enough that chance alone (the probe or its answer lost)
    fails a size that fits less than once in 10^4 (3 up to 2.3 %, 4 at 5 %, 6 at 10 %,
    12 from 26 %). With 3 at 10 % loss, one run in four of the protection sweep settled a
    link below the 1316-byte datagrams and cut every message in two for the rest of the
    run (the raise timer looks again only after 600 s); counting the probe's loss alone
    (4 at 10 %), a link now and then failed even the base, and stayed in ERROR at it."""
    lost = 1.0 - (1.0 - min(loss, 1.0)) ** 2
    if lost <= 0.0:
        return MAX_PROBES
    if lost >= 0.5:
        return _MAX_PROBES_LOSSY
    need = math.ceil(math.log(_WRONG_FAIL) / math.log(lost))
    return max(MAX_PROBES, min(_MAX_PROBES_LOSSY, need))


PROBE_TABLE: Final = 4
"""Probes per link remembered (timestamp -> size) for matching late answers."""
SUSPECT_LOSS: Final = 0.10
"""Outbound loss at which a link's PLPMTU is confirmed again (black-hole check)."""
_SUSPECT_SPAN: Final = 100  # datagrams a loss estimate must cover before it is believed
_NEVER: Final = 1 << 62
_SLACK_NS: Final = 10_000_000
_WAIT_RTT_NS: Final = 10_000_000
_NO_RTT_TIMEOUT_NS: Final = 1_000_000_000
_ERROR_RETRY_NS: Final = 30_000_000_000
_HOLDOFF_MIN_NS: Final = 1_000_000_000
_HOLDOFF_MAX_NS: Final = 64_000_000_000
_M32: Final = 0xFFFF_FFFF
_FRAGMENT: Final = 14
"""DATA body bytes besides the payload, fragment fields included (wire-format §3.1)."""
_PARITY_EXTRA: Final = 10
"""A PARITY body is its 8 fixed bytes plus a shard of 2 + the block's largest DATA
record (wire-format §9): 10 bytes more than that record's DATA body."""


class PmtuState(enum.IntEnum):
    """Where a link's search stands (RFC 8899 §5.2)."""

    BASE = 0
    """Confirming the base size; the base is in use."""
    SEARCHING = 1
    """Probing larger sizes; the largest confirmed one is in use."""
    SEARCH_COMPLETE = 2
    """Done: the PLPMTU is in use until a black hole or the raise timer."""
    ERROR = 3
    """Even the base got no answer while the link answered smaller packets."""


def probe_timeout(rtt: RttEstimator) -> int:
    """How long an answer to a probe sent now may take on a link with `rtt` (ns)."""
    if not rtt.samples:
        return _NO_RTT_TIMEOUT_NS
    return rtt.rto_ns + _SLACK_NS


class LinkSearch:
    """The PLPMTU search of one link: a pure state machine over sizes and times.

    The caller sends a probe of `wants(now)` bytes when that is non-zero and reports it
    (`on_sent`), feeds answers (`match`, then `on_ack`), calls `on_timer` whenever
    `now >= due` with the time of the link's latest answer to anything, and calls
    `suspect` when data is being lost, `revalidate` when the link went down.
    `plpmtu` is the size in use: it never falls below `base` nor rises above `upper`.
    """

    __slots__ = (
        "_first",
        "_hi",
        "_holdoff",
        "_holdoff_until",
        "_raise_at",
        "_table",
        "base",
        "blackholes",
        "confirming",
        "count",
        "due",
        "max_probes",
        "outstanding",
        "plpmtu",
        "probes",
        "raise_ns",
        "sent_at",
        "size",
        "state",
        "timeout",
        "upper",
    )

    def __init__(self, base: int, upper: int, raise_ns: int, now: int) -> None:
        self.base = base
        self.upper = max(base, upper)
        self.raise_ns = raise_ns
        self.plpmtu = base
        """The size in use (IP bytes)."""
        self.size = 0
        """The size being probed (0: none)."""
        self.count = 0
        """Probes sent at `size` so far."""
        self.max_probes = MAX_PROBES
        """Probes lost in a row before `size` fails: more on a lossy link
        (`probes_for_loss`)."""
        self.outstanding = False
        self.sent_at = now
        self.timeout = _NO_RTT_TIMEOUT_NS
        self.due = _NEVER
        """When the search next needs `on_timer` or wants to send (may have passed)."""
        self.confirming = False
        self.probes = 0
        """Probes sent over the session."""
        self.blackholes = 0
        """Times a confirmed size stopped getting through."""
        self._hi = self.upper + 1  # the smallest size that failed (upper + 1: none)
        self._first = self.upper  # the size to try first when searching (0: bisect)
        self._raise_at = _NEVER
        self._holdoff = _HOLDOFF_MIN_NS
        self._holdoff_until = now
        self._table: list[tuple[int, int]] = []  # (ts µs, size) of recent probes
        if self.upper > base:
            self.state = PmtuState.BASE
            self._probe(base, now)
        else:  # nothing to search: the bound is the base
            self.state = PmtuState.SEARCH_COMPLETE

    # --- probes out and answers in ---------------------------------------------------

    def wants(self, now: int) -> int:
        """The size of the probe to send now, or 0."""
        if self.size and not self.outstanding and now >= self.due:
            return self.size
        return 0

    def on_sent(self, ts_us: int, now: int, timeout: int) -> None:
        """A probe of `size` went out now, stamped `ts_us`; answer within `timeout`."""
        self.count += 1
        self.probes += 1
        self.outstanding = True
        self.sent_at = now
        self.timeout = timeout
        self.due = now + timeout
        table = self._table
        table.append((ts_us, self.size))
        if len(table) > PROBE_TABLE:
            del table[0]

    def match(self, ts_us: int) -> int:
        """The size of the probe stamped `ts_us` (forgotten once matched), or 0."""
        table = self._table
        for i, (ts, size) in enumerate(table):
            if ts == ts_us:
                del table[i]
                return size
        return 0

    def on_ack(self, size: int, now: int) -> bool:
        """A probe of `size` bytes got through. Returns True when `plpmtu` changed."""
        before = self.plpmtu
        if self.outstanding and size == self.size:
            self.outstanding = False
        state = self.state
        if state is PmtuState.BASE or state is PmtuState.ERROR:
            if size >= self.base:
                self.state = PmtuState.SEARCHING
                self.plpmtu = size
                self._next(now)
        elif state is PmtuState.SEARCHING:
            if size > self.plpmtu:
                self.plpmtu = size
                if size >= self._hi:  # a size that "failed" got through: chance losses
                    self._hi = self.upper + 1
            if self.size <= self.plpmtu:
                self._next(now)
        else:
            self.plpmtu = max(self.plpmtu, size)  # a late answer is evidence all the same
            if self.confirming and size >= self.size:
                self._confirmed(now)
        return self.plpmtu != before

    # --- time --------------------------------------------------------------------------

    def on_timer(self, now: int, proof: int) -> bool:
        """Act on whatever is due by `now`; `proof` is when the link last answered
        anything. Returns True when `plpmtu` changed."""
        if now < self.due:
            return False
        if self.outstanding:
            if proof < self.sent_at + self.timeout // 2:
                # nothing sent since the probe was answered: the link is quiet or down,
                # which says nothing about the size; look again later
                self.due = now + max(1, self.timeout // 2)
                return False
            self.outstanding = False
            if self.count < self.max_probes:
                self.due = now
                return False
            return self._failed(now)
        state = self.state
        if state is PmtuState.SEARCH_COMPLETE and not self.size and self.plpmtu < self.upper:
            self.state = PmtuState.SEARCHING  # the raise timer: look for more again
            self._hi, self._first = self.upper + 1, self.upper
            self._next(now)
        elif state is PmtuState.ERROR:
            self._restart(now)  # try again, from the base up: the path may have changed
        return False

    def suspect(self, now: int) -> None:
        """Data is being lost: confirm the size in use (black-hole detection), unless a
        search is under way or a confirmation got through only recently."""
        if (
            self.state is PmtuState.SEARCH_COMPLETE
            and not self.size
            and now >= self._holdoff_until
            and self.upper > self.base
        ):
            self.confirming = True
            self._probe(self.plpmtu, now)

    def revalidate(self, now: int) -> bool:
        """The link went down: its path may have changed. Back to the base, and when it
        answers again, its old size (nothing above it: the raise timer looks for more),
        or below if that fails. Returns True when `plpmtu` changed."""
        if self.upper <= self.base:
            return False
        before = self.plpmtu
        self._restart(now)
        if before > self.base:
            self._first, self._hi = before, before + 1
        return self.plpmtu != before

    # --- transitions -----------------------------------------------------------------

    def _probe(self, size: int, now: int) -> None:
        self.size = size
        self.count = 0
        self.outstanding = False
        self.due = now

    def _restart(self, now: int) -> None:
        """Back to BASE with the base in use, nothing in flight counted."""
        self.state = PmtuState.BASE
        self.plpmtu = self.base
        self.confirming = False
        self._hi, self._first = self.upper + 1, self.upper
        self._table.clear()
        self._probe(self.base, now)

    def _next(self, now: int) -> None:
        """The next size to probe in a search, or the end of the search."""
        first, self._first = self._first, 0
        lo, hi = self.plpmtu, self._hi
        if lo < first < hi:
            self._probe(first, now)
        elif hi - lo > 1:
            self._probe((lo + hi) // 2, now)
        else:
            self.state = PmtuState.SEARCH_COMPLETE
            self._raise_at = now + self.raise_ns if self.plpmtu < self.upper else _NEVER
            self._idle()

    def _idle(self) -> None:
        self.size = 0
        self.count = 0
        self.outstanding = False
        self.confirming = False
        self.due = self._raise_at

    def _confirmed(self, now: int) -> None:
        """A confirmation probe got through: no black hole; the next check waits."""
        self._holdoff_until = now + self._holdoff
        self._holdoff = min(2 * self._holdoff, _HOLDOFF_MAX_NS)
        self._idle()

    def _failed(self, now: int) -> bool:
        """`size` was lost `max_probes` times while the link answered."""
        state = self.state
        if state is PmtuState.BASE or state is PmtuState.ERROR:
            self.state = PmtuState.ERROR
            self.size = 0
            self.due = now + _ERROR_RETRY_NS
            return False
        if state is PmtuState.SEARCHING:
            self._hi = self.size
            self._next(now)
            return False
        # a confirmation failed: a black hole. Search again, below the failed size
        failed = self.size
        self.blackholes += 1
        self._holdoff = _HOLDOFF_MIN_NS
        self._restart(now)
        self._hi, self._first = failed, 0
        return True


class PathMtu:
    """One `LinkSearch` per link of an endpoint, and the sizes they allow.

    The endpoint calls `on_timer` from `handle_timer`, sends what `wanted` returns (then
    `sent`) from `datagrams_to_send`, feeds `on_ack` every PROBE_ACK's echo, and asks
    `payload` for the size messages are cut to whenever `on_timer`/`on_ack` return True
    or the links that carry data change. `due` is the earliest time it needs a call.
    """

    __slots__ = ("_down", "_recheck", "due", "overheads", "searches", "tag")

    def __init__(self, config: Config, links: LinkSet, now: int) -> None:
        upper = config.mtu
        base = min(BASE_PLPMTU, upper)
        self.searches = [LinkSearch(base, upper, config.pmtu_raise_ns, now) for _ in config.links]
        self.overheads = [lc.overhead for lc in config.links]
        self.tag = TAG_SIZE if config.psk else 0
        self._down = [False] * len(config.links)
        self._recheck = config.health.probe_interval_ns
        self.due = _NEVER
        self._apply(links)
        self._refresh()

    def room(self, link: int) -> int:
        """Largest header + body (echo and AEAD tag excluded) that fits `link`'s PLPMTU."""
        return self.searches[link].plpmtu - self.overheads[link] - ECHO_SIZE - self.tag

    def payload(self, carrying: list[Link]) -> tuple[int, int]:
        """(the fragment payload messages are cut to, the PLPMTU it fits): the smallest
        room among `carrying` (the links that carry data, at least one), less the DATA
        fields and what a PARITY over a block of full fragments adds."""
        link = min(carrying, key=lambda ln: (ln.room, ln.id))
        payload = link.room - HEADER_SIZE - _FRAGMENT - _PARITY_EXTRA
        return payload, self.searches[link.id].plpmtu

    def on_timer(self, now: int, links: LinkSet) -> bool:
        """Timeouts, the raise timer, black-hole suspicion, links that went down.
        Returns True when some link's PLPMTU changed (then `payload` may have)."""
        changed = False
        searches, down = self.searches, self._down
        for ln in links.links:
            search = searches[ln.id]
            health = ln.health
            if health.state is LinkState.DOWN:
                if not down[ln.id]:
                    down[ln.id] = True
                    changed |= search.revalidate(now)
                search.due = max(search.due, now + self._recheck)
                continue
            down[ln.id] = False
            if health.span_long >= _SUSPECT_SPAN and not search.confirming:
                # the steady estimate, once it means much; not while a black hole is
                # suspected: its own losses would ask for more probes (6 instead of 3 on
                # a 4.5 % link shrunk to 1300 bytes, data lost for 0.4 s longer)
                search.max_probes = probes_for_loss(health.loss_long)
            elif health.span_long < _SUSPECT_SPAN:  # not judged: as lossy as the start
                search.max_probes = probes_for_loss(max(health.loss, _UNJUDGED_LOSS))
            if health.loss >= SUSPECT_LOSS and health.loss_span >= _SUSPECT_SPAN:
                search.suspect(now)
            if now >= search.due:
                changed |= search.on_timer(now, health.last_proof)
        if changed:
            self._apply(links)
        self._refresh()
        return changed

    def wanted(self, now: int, links: LinkSet) -> list[tuple[int, int]]:
        """The probes to send now, as (link, padding): on links that answer (an RTT,
        something to echo) and whose pacer is free, not in the µs of a keepalive."""
        out: list[tuple[int, int]] = []
        for i, search in enumerate(self.searches):
            size = search.wants(now)
            if not size:
                continue
            ln = links.links[i]
            if ln.health.state is LinkState.DOWN:
                search.due = now + self._recheck
            elif ln.echo_at < 0 or not ln.rtt.samples:  # soon, as the session starts
                search.due = now + _WAIT_RTT_NS
            elif not ln.pacer.ready(now):
                search.due = ln.pacer.free_at
            elif ln.health.last_probe_sent // 1000 == now // 1000:
                search.due = now + 1000 - now % 1000  # its answer would echo the same µs
            else:
                padding = size - self.overheads[i] - HEADER_SIZE - ECHO_SIZE - 1 - self.tag
                out.append((i, padding))
        self._refresh()
        return out

    def sent(self, link: int, now: int, links: LinkSet) -> None:
        """The probe `wanted` asked for on `link` went out now (with an echo)."""
        self.searches[link].on_sent((now // 1000) & _M32, now, probe_timeout(links.links[link].rtt))
        self._refresh()

    def on_ack(self, link: int, echo_ts: int, now: int, links: LinkSet) -> bool:
        """A PROBE_ACK on `link` echoed `echo_ts`. Returns True when the link's PLPMTU
        changed."""
        search = self.searches[link]
        size = search.match(echo_ts)
        if not size:
            return False
        changed = search.on_ack(size, now)
        if changed:
            self._apply(links)
        self._refresh()
        return changed

    def _apply(self, links: LinkSet) -> None:
        for ln in links.links:
            ln.room = self.room(ln.id)

    def _refresh(self) -> None:
        self.due = min(s.due for s in self.searches)
