"""The sender's protection policy in practice: which code the next FEC blocks use,
where their packets go, and which messages also go on a second link.

* Spread: a link may carry at most ``max(m, ceil((k + m) / links))`` packets of one
  block, so that losing one link costs a block no more than m packets wherever the
  number of links allows it (with fewer links the cap is the even share). The cap is a
  preference for the link choice, never a reason to hold a packet back.
* Sizing: twice a second (every 20 ms until an RTT is known) k, m and the flush
  deadline are re-chosen: the flush from the latency budget (what is left after the
  fastest link's one-way delay), k from what the traffic
  brings in that time (or less, where m parity cannot bring so large a block to the
  target), m by `plait.protection.choose_block`: the least parity that, with the
  re-sends that fit the budget, brings the residual loss under `Config.target_loss`
  (0: none at all, when re-sends alone do), within `Config.max_protection` and the
  configured maximum, for the loss of the last ~2 000 datagrams of each link
  (`protection_loss`). A block flushed with fewer records gets the parity its own
  size needs (`FecSender.parity_for`).
* Copies: a new fragment also goes on a second link only when neither the re-sends that
  fit its deadline nor the current FEC bring its loss under the target
  (`FecSender.wants_copy`, `plait.protection.needs_copy`).
"""

from __future__ import annotations

from typing import Final

from plait._types import NS_PER_S
from plait.config import Config, FecConfig
from plait.fec import BlockDecoder, BlockEncoder
from plait.links import LinkHealth
from plait.linkset import LinkSet
from plait.outbox import Item, Outbox
from plait.protection import (
    NEVER,
    LinkView,
    choose_block,
    choose_protection,
    copy_below,
    plan_residual,
    repair_loss,
)
from plait.rs import ErasureCodec, default_codec

__all__ = ["FecSender", "codec", "new_decoder", "new_encoder"]

_TUNE_EVERY: Final = 500_000_000
_EARLY_TUNE: Final = 20_000_000  # while no link has an RTT sample
_BLOCKS_TRACKED: Final = 8
_JUDGED: Final = 100  # datagrams a link's loss estimate must span to be trusted
_INSURED_K: Final = 4  # outage insurance (one parity per block) up to 25 % of the data
_UNJUDGED: Final = 0.03  # the loss assumed of a link not judged yet (FEC sizing)
_UNREPORTED: Final = 0.10  # ... while no link has a report yet: the session's first RTT
_PRIOR_WEIGHT: Final = 20.0
"""Where no re-send on a link fits the budget, its 10 % prior counts as this many
datagrams beside its reports until it is judged: reported on for 5 datagrams without a
loss it counts 8 %, for 60 datagrams 2.5 %. (3 % once any link was reported left the
first reports at 300 ms RTT, 4-5 datagrams a link, under-protected: 10 % loss at a
budget of 0.75 RTT missed 17 messages of 228 608 over 64 seeds, now 2; 10 % at 1 RTT of
50 ms, 27 of 237 120, now 14. Where re-sends fit, 3 % stands: the weighted prior there
cost the capacity bench's `moving` links 200 messages over 40 seeds against 35, its
parity shed at the start while their rates were not known.)"""
_LOSS_PRIOR: Final = 0.01  # the loss assumed of a link until then (copy decisions)
_MARGIN: Final = 0.5
"""Plans aim at this share of `Config.target_loss` once every link's loss is judged:
the model takes losses as independent and its estimates as exact, and neither is;
planned at the target itself, cells of the sweep (docs/benchmarks.md) missed it by
1.5-2x (6-10 of 14 820 messages where a process at the target shows at most 4 in 95 %
of runs)."""
_WIRE_EXTRA: Final = 11 + 16 + 6 + 28  # a record's header, tag, fields and IP/UDP
_HEADROOM: Final = 0.25  # of the data rate, left free by a smaller block's parity
_JUMP: Final = 0.01  # a short loss estimate this far above twice the long one: a change
_DATA_OVERHEAD: Final = 14  # a new fragment's item size over its payload
_CODEC: list[ErasureCodec] = []  # one per process: stateless but for its caches


def codec() -> ErasureCodec:
    """The process's erasure codec (pyeclib's ISA-L when it self-tests, else portable)."""
    if not _CODEC:
        _CODEC.append(default_codec())
    return _CODEC[0]


def new_encoder(fec: FecConfig | None, latency_ns: int) -> BlockEncoder | None:
    """An encoder for `fec` (None: FEC off); the flush defaults to a quarter of the budget."""
    if fec is None:
        return None
    flush = fec.flush_ns if fec.flush_ns is not None else latency_ns // 4
    return BlockEncoder(codec(), fec.k, fec.m, flush)


def new_decoder(latency_ns: int) -> BlockDecoder:
    """A decoder that holds records and open blocks for the budget (at least 1 s): a
    block not complete by then can no longer save anything in time."""
    return BlockDecoder(codec(), hold_ns=max(1_000_000_000, latency_ns))


def protection_loss(health: LinkHealth, prior: float, weight: float = 0.0) -> float:
    """The loss protection is sized for on a link: its long estimate (2 000 datagrams:
    the short one, over 200, reads 0 % now and then on a 1 % link, and blocks sized
    by it left 3e-4 where 1e-4 was the target), unless the short one jumped well above
    it (a link that turned lossy is followed at once). While the long one spans fewer
    than `_JUDGED` datagrams, at least `prior`, or with a `weight` the mean of what was
    reported and `prior` counted as that many datagrams."""
    if health.span_long < _JUDGED:
        if weight:
            prior = (health.lost_long + weight * prior) / (health.span_long + weight)
        return max(health.loss, prior)
    short = health.loss if health.loss_span >= _JUDGED else 0.0
    long = health.loss_long
    return short if short > 2 * long + _JUMP else long


class FecSender:
    """Spread and sizing of the blocks an `Outbox` sends."""

    __slots__ = (
        "_began",
        "_block_loss",
        "_budget_ns",
        "_copies",
        "_copy_at",
        "_idle",
        "_insure",
        "_m_by_k",
        "_next_tune",
        "_pulled",
        "_records_at",
        "_repair_loss",
        "_spread",
        "_target",
        "_tuned_at",
        "_tunes",
        "_views",
        "authenticated",
        "config",
        "down_after_ns",
        "feedback_ns",
        "links",
        "max_protection",
        "outbox",
        "planned_loss",
        "target_loss",
    )

    def __init__(self, outbox: Outbox, links: LinkSet, config: Config, now: int) -> None:
        self.outbox, self.links, self.config = outbox, links, config.fec
        self.target_loss = config.target_loss  # what the plans aim at (see `_MARGIN`)
        self._target = config.target_loss
        self.max_protection = config.max_protection
        self.feedback_ns = config.feedback_interval_ns
        self.down_after_ns = config.health.down_after_ns
        self.authenticated = config.psk is not None
        self._records_at, self._tuned_at = 0, now  # records sent at the last tune
        self._views: list[LinkView] = []  # the links as the last tune saw them
        self._budget_ns = config.latency_ns
        self._idle = True  # the last sizing saw nothing sent since the one before
        self._began = -1  # when the first packet after it went (-1: none yet; 0: not idle)
        self._pulled = False  # the next sizing was pulled in (`tune_if_pulled`)
        self._insure = False  # a dying link's records need parity on the others
        self._m_by_k: dict[int, int] = {}  # block size -> parity, for the views above
        self._block_loss = _LOSS_PRIOR  # the traffic-weighted loss of the links (copies)
        self._repair_loss = 0.0  # ... as measured: what a re-send meets
        self._copies = True  # the plan allows copies (within Config.max_protection)
        self._spread: dict[int, list[int]] = {}  # block base -> its datagrams per link
        self._next_tune = now
        self.planned_loss: float | None = None
        """The residual loss the plan for the traffic last sent leaves by the model
        (`plan_residual`); None until adaptive FEC has sized a block for traffic."""
        self._tunes = 0  # tunes so far: a tune moves `_copy_below`'s inputs
        # per link: `_copy_below`'s last answer and the key of its inputs then
        self._copy_at: list[tuple[tuple[int, int, float, int, int, int], int] | None] = [
            None for _ in links.links
        ]

    def block_base(self, item: Item) -> int | None:
        """The block `item` belongs to (None: FEC off, or a repair)."""
        fec = self.outbox.fec
        if fec is None or item.kind == 1 or (not fec.m and fec.block_base is None):
            return None
        if item.is_parity:
            return item.seq
        base = fec.block_base
        return self.outbox.next_seq if base is None else base

    def spread(self, base: int | None) -> list[int] | None:
        """The packets block `base` sent so far per link (None: none yet, or no block);
        a link with `cap()` of them is not preferred for the next (`LinkSet.choose`)."""
        return None if base is None else self._spread.get(base)

    def cap(self) -> int:
        """The packets of one block a link should carry at most (see the module doc)."""
        fec = self.outbox.fec
        if fec is None:
            return 0
        return max(fec.m, -(-(fec.k + fec.m) // max(1, len(self.links.carrying()))))

    def on_sent(self, base: int | None, link: int, now: int) -> None:
        """A packet (of block `base`) went out on `link`."""
        if self._began < 0:  # traffic after a sizing that saw none: size again soon
            self._began = now
            self._next_tune = min(self._next_tune, now + _EARLY_TUNE)
            self._pulled = True
        if base is None:
            return
        spread = self._spread
        counts = spread.get(base)
        if counts is None:
            counts = spread[base] = [0] * len(self.links.links)
            if len(spread) > _BLOCKS_TRACKED:
                del spread[next(iter(spread))]
        counts[link] += 1

    def due(self, now: int) -> bool:
        return now >= self._next_tune

    def tune_if_pulled(self, now: int, latency_ns: int) -> None:
        """`tune` if a sizing that a burst's first packet or a new message size pulled
        in is due: called as datagrams go out, so that it comes on time with no timer
        of its own (as one, its extra `handle_timer` calls, which judge the links each
        time, cost the capacity bench's `moving` links 40 % more lost messages over 150
        seeds; every sizing done here, a clean-links test saw a re-send)."""
        if self._pulled and now >= self._next_tune:
            self.tune(now, latency_ns)

    def resized(self, now: int) -> None:
        """Messages are now cut to another size (the path MTU moved): the records per
        message change, so the rate counted so far says nothing of the next blocks; count
        afresh and size again soon. (Counted over the 500 ms in which the search found
        1500 bytes, a stream of 1316-byte messages cut in two at the start brought blocks
        of 5 for 8 ms flushes: the next half second's blocks closed late, by the flush, at
        a budget of 37 ms over 25 ms links their parity arrived after the deadline.)"""
        self._records_at, self._tuned_at = self.outbox.stats.records, now
        self._next_tune = min(self._next_tune, now + _EARLY_TUNE)
        self._pulled = True

    def tune(self, now: int, latency_ns: int) -> None:
        """Re-size the next blocks from what the links measured."""
        self._next_tune = now + _TUNE_EVERY
        self._tunes += 1
        self._pulled = False
        records = self.outbox.stats.records
        elapsed = max(1, now - self._tuned_at)
        sent = records - self._records_at
        self._records_at, self._tuned_at = records, now
        fec, encoder = self.config, self.outbox.fec
        if fec is None or encoder is None or not fec.adaptive:
            return
        carrying = self.links.carrying()
        # parity must reach the peer before the block's first record's deadline: the
        # block may stay open for three quarters of what is left after the fastest
        # link's one-way delay and a full datagram's serialization on it, and holds what
        # the traffic brings by then (a quarter of the budget at least held the blocks
        # of a 37 ms budget over 25 ms links open for 9 ms of the 12 left: parity too
        # late for 5-10 % loss, 44 of 14 820 missed at 10 %, 26 without; without the
        # serialization, 2.4 ms at 5 Mbit/s, blocks closed by the flush had 2.7 ms left
        # for their parity, and the first of them often missed). Before any RTT is
        # known that is unknown: a quarter of the budget (the first blocks of a session
        # whose budget is near the RTT were held open for 3/4 of it and rebuilt too late)
        wire_bits = (self.outbox.max_payload + _WIRE_EXTRA) * 8 * NS_PER_S
        sampled = [
            ln.rtt.min_rtt // 2 + ln.margin_ns + wire_bits // max(1, ln.capacity.rate_bps)
            for ln in carrying
            if ln.rtt.samples
        ]
        flush = max(1, (latency_ns - min(sampled)) * 3 // 4) if sampled else latency_ns // 4
        judged = all(ln.health.span_long >= _JUDGED for ln in carrying)
        # the margin once the links are judged: before, the priors are the margin (and
        # both together sent so much protection at the start of a short burst over
        # 9 %-loss links that new data waited and expired)
        self.target_loss = self._target * (_MARGIN if judged else 1.0)
        reported = any(ln.health.span_long > 0 for ln in carrying)
        prior = _UNJUDGED if reported else _UNREPORTED
        if not sampled or (not reported and records):
            # no RTT, or no report on what was sent: size again soon, once the flush can
            # be set from the fastest link's delay and the loss from a report. (Not for
            # an end that has sent nothing, which no report ever comes for: it sized its
            # blocks 50 times a second for nothing. Every 20 ms while idle or unjudged too
            # followed a start faster, but shifted the first blocks of short bursts so
            # that the attacker tests' lossy starts expired a message at its deadline's
            # edge)
            self._next_tune = now + _EARLY_TUNE
        # the records a block gathers while it may stay open (the one that opens it,
        # and what follows within the flush), at the interval's rate: after a sizing
        # that saw nothing sent, counted from the first packet, which pulled this sizing
        # in to 20 ms after it (counted over the whole interval, a burst that began near
        # its end got blocks of one record and a parity each for up to half a second);
        # idle, as set
        if not sent:
            k = fec.k
        else:
            if self._idle and self._began >= 0:
                elapsed = max(1, now - self._began)
            k = max(1, min(fec.k, 1 + sent * flush // elapsed))
        self._idle = not sent
        self._began = -1 if self._idle else 0
        # a link whose loss is not judged yet (100 datagrams): before the first report
        # nothing is known of any link, 10 % (blocks sized for 3 % left the first round
        # trip of 5-10 % links under-protected); after it, where no re-send fits, 10 %
        # until its own reports outweigh that (`_PRIOR_WEIGHT`), else 3 %: the re-sends
        # that fit may still do, where forcing parity until every link was judged cost
        # the first seconds of each session (a 2 Mbit/s link among four takes 3 s to
        # carry 100 datagrams of a 4 Mbit/s stream; 10 % until judged cost links whose
        # capacity moves 1 % of their messages)
        measured = self.links.protection_views(self.feedback_ns, self.outbox.burst)
        views = [
            (
                share,
                protection_loss(ln.health, _UNREPORTED, _PRIOR_WEIGHT)
                if first > latency_ns
                else protection_loss(ln.health, prior),
                first,
                rnd,
            )
            for ln, (share, _, first, rnd) in zip(carrying, measured, strict=True)
        ]
        total = sum(share for share, _, _, _ in views)
        self._block_loss = (
            sum(share * max(loss, _LOSS_PRIOR) for share, loss, _, _ in views) / total
            if total > 0
            else _LOSS_PRIOR
        )
        self._repair_loss = repair_loss(views)
        # a link that dies is found out about an RTT after what it held was sent, by the
        # acknowledgements of what went later on the others (`Outbox.on_overdue`); its
        # records can be re-sent in time only where that RTT + the way back fits
        outage_ns = max(
            (self.links.arq_times(ln.id, self.feedback_ns)[0] for ln in carrying), default=0
        )
        self._insure = len(carrying) > 1 and latency_ns < outage_ns
        self._views, self._budget_ns, self._m_by_k = views, latency_ns, {}
        # a smaller block costs more parity per record: only within what the links carry
        # beside the data (records taken at full size, headers counted), or its parity
        # holds new data back until the sender sheds it. From the first tune with
        # traffic on, priors included: blocks of 16 with at most `fec.m` parity left 1e-3
        # of the first RTT's records lost at 10 % (the sweep's 10 %, 1-RTT cell at 100 ms:
        # 12 missed where 4 were allowed, all in the first 125 ms); held back until every
        # link was judged, they once made short bursts over 8-9 % links shed 7-10 %,
        # which the scheduling of parity among free links (`LinkSet.begin_pass`) ended.
        # Idle too, for the first blocks of the next burst (until the sizing its first
        # packet pulls in), within the allowance alone: blocks of 16 with 6 parity at the
        # 10 % prior lost 7 of their 22 packets now and then at the start of a stream
        data_bps = sent * (self.outbox.max_payload + _WIRE_EXTRA) * 8 * NS_PER_S // elapsed
        if data_bps or not sent:
            room = (
                self.links.usable_bps() / data_bps - 1.0 - _HEADROOM
                if data_bps
                else self.max_protection
            )
            k = choose_block(
                views,
                budget_ns=latency_ns,
                k_max=k,
                m_max=fec.m,
                burst=self.outbox.burst,
                target=self.target_loss,
                max_protection=min(self.max_protection, room),
            )[0]
        m, self._copies = self._plan(k)
        if sent:  # idle, the plan for no traffic says nothing: the last one stands
            self.planned_loss = plan_residual(
                views, budget_ns=latency_ns, k=k, m=m, copies=self._copies, target=self.target_loss
            )
        encoder.set_params(k, m, fec.flush_ns if fec.flush_ns is not None else flush)
        encoder.parity_for = self.parity_for

    def _plan(self, k: int) -> tuple[int, bool]:
        """(parity, whether copies may be sent) for blocks of `k` records:
        `choose_protection` for the views of the last tune, plus insurance."""
        m, copies = choose_protection(
            self._views,
            budget_ns=self._budget_ns,
            k=k,
            m_max=self.config.m if self.config is not None else 0,
            burst=self.outbox.burst,
            target=self.target_loss,
            max_protection=self.max_protection,
        )
        if not self.authenticated or (self._insure and k >= _INSURED_K):
            # without a psk anyone on the path can forge the acknowledgements re-sends
            # rely on; or what a dying link held can only be rebuilt from parity on the
            # others (the spread keeps a block's share per link small) - insurance
            # bought only while it is cheap: with blocks of fewer records (a budget
            # near the RTT) one parity would cost a copy
            m = max(m, 1)
        return m, copies

    def parity_for(self, k: int) -> int:
        """The parity of a block flushed with `k` records, fewer than planned: what the
        policy gives `k` (blocks of a bursty or slowing source, or the first blocks of
        a session, were sent with parity sized for full blocks, up to m per record)."""
        m = self._m_by_k.get(k)
        if m is None:
            m = self._m_by_k[k] = self._plan(k)[0]
        return m

    def wants_copy(self, item: Item, link: int, now: int, usable_bps: int) -> bool:
        """Whether a new fragment going out on `link` should also go on a second link:
        what the re-sends that fit its deadline and the current FEC leave of a loss there
        is above the target (`plait.protection.needs_copy`; a link whose loss is not
        judged yet is assumed to lose 1 %). Never with one link, nor behind a backlog
        (more than ~10 ms of queued messages at the `usable_bps`): that is overload, and
        a copy would cost a message behind it its turn."""
        links = self.links
        carrying = links.carrying()
        if len(carrying) < 2 or not self._copies:
            return False
        behind = self.outbox.queued_bytes - (item.size - _DATA_OVERHEAD)  # not counting item
        if behind * 800 > usable_bps:
            return False
        return item.deadline - now < self._copy_below(link)

    def _copy_below(self, link: int) -> int:
        """The time left under which a new fragment on `link` needs a copy: `needs_copy`
        turned into a threshold (more time, more re-sends, less loss), kept per link
        until its inputs move (RTTs and reports, link states, the burst length, the
        code, a tune)."""
        links, burst, fec = self.links, self.outbox.burst, self.outbox.fec
        k, m = (fec.k, fec.m) if fec is not None else (1, 0)
        key = (links.moved, links.epoch.value, burst, k, m, self._tunes)
        cached = self._copy_at[link]
        if cached is not None and cached[0] == key:
            return cached[1]
        below = self._copy_threshold(link, burst, (k, m))
        self._copy_at[link] = (key, below)
        return below

    def _copy_threshold(self, link: int, burst: float, code: tuple[int, int]) -> int:
        first, round_ns = self.links.arq_times(link, self.feedback_ns, burst)
        if not first:
            return NEVER  # no RTT known yet: nothing to weigh
        return copy_below(
            protection_loss(self.links.links[link].health, _LOSS_PRIOR),
            self._repair_loss,
            first,
            round_ns,
            code,
            target=self.target_loss,
            max_protection=self.max_protection,
            block_loss=self._block_loss,
        )
