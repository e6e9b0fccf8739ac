"""FEEDBACK both ways: when and what this end reports, and what the peer's reports mean.

* Out: soon after new data arrives, and at most once per `Config.feedback_interval_ns`
  (`FeedbackTimer`), this end reports the data sequences it has received, as ranges
  walking down from the largest, and for each link that has received anything its
  highest link sequence, its datagram count and its jitter (`write_feedback`,
  docs/wire-format.md §3.3). The endpoint sends it on the link with the earliest arrival.
* In: the peer's report acknowledges records, and its link reports reveal losses per
  link: a record sent on a link is lost once three later datagrams on it have arrived,
  or once one has and the record was sent more than SRTT + max(1 ms, min RTT/8,
  2 jitter) ago (RACK, RFC 8985; `handle_feedback`, `Outbox.on_link_report`). Tail
  losses, which no later datagram reveals, are found by `loss_timeout`.

docs/design.md §6 ("Loss detection and repair") gives the reasons and the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from plait.config import Config
from plait.inbox import Inbox
from plait.links import RttEstimator
from plait.linkset import LinkSet
from plait.outbox import Outbox
from plait.seq import SEQ16, SEQ32
from plait.wire import Feedback, LinkReport, encode_body

__all__ = ["MAX_RANGES", "FeedbackTimer", "handle_feedback", "loss_timeout", "write_feedback"]

#: Most received ranges one FEEDBACK describes (its first run included).
MAX_RANGES: Final = 32


class FeedbackTimer:
    """When this end reports next: soon after new data, at most once per interval."""

    __slots__ = ("due", "interval_ns", "last")

    def __init__(self, interval_ns: int, now: int) -> None:
        self.interval_ns = interval_ns
        self.due: int | None = None
        """When the next report is due (None: nothing new to report)."""
        self.last = now
        """When the last report went (the start counts as one)."""

    def soon(self, now: int) -> bool:
        """New data arrived: report one interval after the last report, or now if that
        has passed already. True when the report is due within a quarter interval: the
        caller sends it with this arrival rather than waking again for it."""
        due = self.due
        if due is None:
            due = self.due = max(now, self.last + self.interval_ns)
        return due - now <= self.interval_ns >> 2

    def sent(self, now: int) -> None:
        """A report was queued at `now`."""
        self.due = None
        self.last = now


def write_feedback(inbox: Inbox, links: LinkSet) -> bytes:
    """The body of a FEEDBACK reporting everything this end has received so far."""
    largest, first_run, pairs = inbox.feedback_ranges(MAX_RANGES)
    reports = tuple(
        LinkReport(
            ln.id,
            (ln.health.inbound.highest or 0) & 0xFFFF,
            ln.health.inbound.received & 0xFFFF,
            min(0xFFFF, ln.health.jitter.us),
            ln.health.highest_rx_us & 0xFFFF_FFFF,
        )
        for ln in links.links
        if ln.health.inbound.highest is not None
    )
    body = Feedback(largest=largest & 0xFFFF_FFFF, first_run=first_run, ranges=pairs, links=reports)
    return encode_body(body)


def handle_feedback(
    fb: Feedback, outbox: Outbox, links: LinkSet, timeouts: Sequence[int], now: int
) -> None:
    """Apply the peer's report: acknowledge its ranges, then, per link report, update the
    link's capacity estimate and find the losses it reveals. A link found congested has
    what it holds re-sent elsewhere where it would now arrive too late. `timeouts`
    holds each link's `loss_timeout`."""
    owd, queue = outbox.owd, outbox.queue
    for ln in links.links:
        owd[ln.id], queue[ln.id] = ln.rtt.min_rtt // 2, ln.capacity.queue_ns
    if fb.first_run:
        hi = SEQ32.unwrap(fb.largest, outbox.next_seq)
        lo = hi - fb.first_run + 1
        ranges = [(lo, hi)]
        for gap, run in fb.ranges:  # each below the last: disjoint
            hi = lo - gap - 1
            lo = hi - run + 1
            ranges.append((lo, hi))
        outbox.on_acked_ranges(ranges)
    # a backlog of more than ~10 ms at what the links carry now: demand exceeds them
    hungry = bool(fb.links) and outbox.queued_bytes * 800 > links.usable_bps()
    for report in fb.links:
        if report.link >= len(links):
            continue
        ln = links.links[report.link]
        fresh = ln.health.on_report(report.link_seq, report.received, now)
        if fresh is not None:
            top, got = fresh
            if links.on_report(report.link, top, got, report.rx_ts, report.jitter, now, hungry):
                outbox.repair_late(report.link, top, links.late)
        if ln.health.sent:
            highest = SEQ16.unwrap(report.link_seq, ln.health.sent - 1)
            rtt = ln.health.rtt
            window = max(1_000_000, rtt.min_rtt // 8, 2_000 * report.jitter)
            rack = rtt.srtt + window if rtt.samples else timeouts[ln.id]
            outbox.on_link_report(report.link, highest, now, timeouts[ln.id], rack)
    for ln in links.links:  # what a link that fell silent holds, against the others' acks
        if ln.health.rtt.samples:
            outbox.on_overdue(ln.id, ln.overdue_window())


def loss_timeout(config: Config, rtt: RttEstimator | None) -> int:
    """How long a record may stay unacknowledged on a link before it counts as lost.

    Losses are mostly found from the peer's link reports; this timeout is for tails,
    so it is generous: RTO + a quarter RTT + two feedback intervals (the peer's delay
    before it reports, and its report queueing behind data); before any RTT sample
    (`rtt` None), the probe interval + two feedback intervals. The endpoint recomputes
    it with each RTT sample.
    """
    if rtt is None:
        return config.health.probe_interval_ns + 2 * config.feedback_interval_ns
    return rtt.rto_ns + rtt.srtt // 4 + 2 * config.feedback_interval_ns
