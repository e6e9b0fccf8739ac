"""The sending half of a session: stream queues, numbering, in-flight records, repair.

Rules:

* Messages are cut into fragments when `send` accepts them and wait in one FIFO per
  stream; `DeficitRoundRobin` takes turns between streams, so a burst on one stream
  never blocks another.
* A fragment gets its data sequence (and its message, a message number) only when it
  is actually transmitted. Messages dropped before sending leave no gap for the
  receiver to wait on.
* Nothing is queued per link: the endpoint takes the next item only when a link is
  free (`take`), and puts it back (`hold`) if its best link is not free yet.
* Sent records stay tracked until acknowledged, or until their deadline passes.
  Losses are found per link, from the link sequence numbers the peer reports: a record
  sent on a link is lost once three later datagrams on that link have arrived, or once
  one has and the record was sent longer ago than the link's RTT plus a reordering
  window (after RACK, RFC 8985, so that slow links, which send few datagrams, are
  not left waiting for three); tail losses are found by timeout. A lost record is
  re-sent (`repair`) only if it can still arrive in time.
* Memory: queued and in-flight bytes together never exceed `send_buffer_bytes`;
  `send` raises `BackpressureError` beyond it, and changes nothing.
"""

from __future__ import annotations

import bisect
import heapq
from collections import deque
from collections.abc import Callable
from typing import Final

from plait.dwrr import DeficitRoundRobin
from plait.errors import BackpressureError
from plait.events import Event, MessageExpired, MessageUnconfirmed
from plait.fec import BlockEncoder, ParityBlock
from plait.sendstate import NEW, PARITY, REPAIR, Item, Message, OutboxStats, SentRecord
from plait.wire import pack_data, pack_parity

__all__ = ["Item", "Outbox"]

_REORDER: Final = 3  # later datagrams on the same link before a gap counts as loss
_FRAG_FIELDS: Final = 2  # frag_index and frag_count (wire-format §3.1)
_NEVER: Final = 1 << 62
_UNKNOWN: Final = -1  # a cached deadline to recompute


class Outbox:
    """Queues messages, numbers and tracks records, and finds what to repair."""

    __slots__ = (
        "_acked_arrival",
        "_deferred",
        "_due_expiry",
        "_due_inflight",
        "_emit",
        "_expiry",
        "_handles",
        "_held",
        "_inflight",
        "_inflight_bytes",
        "_inflight_expiry",
        "_links",
        "_lowest",
        "_next_msg",
        "_parity",
        "_queued_bytes",
        "_repairs",
        "_runs",
        "_streams",
        "_top",
        "burst",
        "fec",
        "logs_moved",
        "max_payload",
        "next_seq",
        "owd",
        "queue",
        "send_buffer_bytes",
        "stats",
    )

    def __init__(
        self,
        emit: Callable[[Event], None],
        *,
        links: int,
        max_payload: int,
        send_buffer_bytes: int,
        fec: BlockEncoder | None,
    ) -> None:
        self._emit = emit
        self.max_payload = max_payload
        self.send_buffer_bytes = send_buffer_bytes
        self.fec = fec
        self._streams: DeficitRoundRobin[int, tuple[Message, int]] = DeficitRoundRobin()
        self._next_msg: dict[int, int] = {}
        self._handles = 0
        self._expiry: list[tuple[int, int, Message]] = []  # (deadline, handle, message) queued
        self._queued_bytes = 0
        self._held: Item | None = None
        self._deferred: deque[Item] = deque()  # repairs and parity waiting for their link
        self._repairs: deque[int] = deque()
        self._parity: deque[Item] = deque()
        self.next_seq = 0
        self._inflight: dict[int, SentRecord] = {}
        self._inflight_bytes = 0
        self._lowest = 0  # no record below this is in flight (it only rises)
        self._inflight_expiry: list[tuple[int, int]] = []  # (deadline, seq)
        self._links: list[deque[tuple[int, int, int]]] = [deque() for _ in range(links)]
        self._runs = [0] * links  # per link: consecutive records lost so far
        self._top = [-1] * links  # per link: the highest link sequence the peer reported
        self._acked_arrival = -1  # when the last acknowledged record reached the peer
        self.owd = [0] * links
        """Each link's least one-way delay (ns), and the queue it holds now, as
        estimated: set before feedback is applied, for `on_overdue`."""
        self.queue = [0] * links
        self.burst = 1.0  # mean length of loss bursts (EWMA, gain 1/8): sizes FEC
        self.stats = OutboxStats()
        # `deadline`'s parts, kept as the heaps change (_UNKNOWN: recompute; _NEVER: none)
        self._due_expiry = _NEVER  # the earliest queued message's deadline + 1
        self._due_inflight = _NEVER  # the earliest tracked record's deadline + 1
        self.logs_moved = 0
        """Bumped whenever `oldest_unacked` of some link may have changed (a record left
        flight, or a log's head moved): a cache of those is valid while it has not."""

    # --- accepting messages ----------------------------------------------------------------

    @property
    def queued_bytes(self) -> int:
        """Message bytes waiting to be sent for the first time."""
        return self._queued_bytes

    @property
    def buffered_bytes(self) -> int:
        return self._queued_bytes + self._inflight_bytes

    def send(self, data: bytes, stream: int, deadline: int, copies: int, now: int) -> int:
        """Queue a message and return its handle (1, 2, ...: `MessageExpired.handle`);
        raises BackpressureError, changing nothing, when the send buffer is full."""
        if self.buffered_bytes + len(data) > self.send_buffer_bytes:
            raise BackpressureError(
                f"send buffer full ({self.buffered_bytes} of {self.send_buffer_bytes} bytes)"
            )
        p = self.max_payload  # a fragment's payload; a whole message has no fragment
        if len(data) <= p + _FRAG_FIELDS:  # fields, so 2 more bytes fit in its datagram
            frags = [data]
        else:
            frags = [data[i : i + p] for i in range(0, len(data), p)]
        self._handles += 1
        m = Message(stream, frags, deadline, self._handles, copies, now)
        if stream not in self._streams:
            self._streams.add_queue(stream)
            self._next_msg[stream] = 0
        for index, frag in enumerate(frags):
            self._streams.push(stream, (m, index), len(frag))
        self._queued_bytes += len(data)
        heapq.heappush(self._expiry, (deadline, m.handle, m))
        if self._due_expiry >= 0 and deadline + 1 < self._due_expiry:
            self._due_expiry = deadline + 1
        self.stats.messages += 1
        return m.handle

    # --- choosing what goes next -----------------------------------------------------------

    def pending(self) -> bool:
        return bool(
            self._held or self._deferred or self._repairs or self._parity or len(self._streams)
        )

    def take(self, now: int, can_arrive: Callable[[int, int, int], bool]) -> Item | None:
        """The next item to transmit: deferred, held, repairs, parity, then new fragments.
        Items that can no longer arrive in time (`can_arrive(size, deadline, now)`, with
        the size of the body to send) are dropped."""
        deferred = self._deferred
        while deferred:
            item = deferred.popleft()
            if item.kind != REPAIR or item.seq in self._inflight:  # else acked meanwhile
                return item
        if self._held is not None:
            item, self._held = self._held, None
            if item.msg is None or not item.msg.done:
                return item
        while self._repairs:
            seq = self._repairs.popleft()
            sent = self._inflight.get(seq)
            if sent is None:
                continue  # acknowledged or expired meanwhile
            if not can_arrive(len(sent.record), sent.deadline, now):
                continue
            item = Item(REPAIR, len(sent.record), sent.deadline)
            item.seq, item.body = seq, sent.record
            item.avoid = sent.links[-1] if sent.links else -1
            return item
        if self._parity:
            return self._parity.popleft()
        while True:
            got = self._streams.pop()
            if got is None:
                return None
            _, (m, index), size = got
            if not can_arrive(size + 14, m.deadline, now):
                self._queued_bytes -= size
                self._expire(m)
                continue
            item = Item(NEW, size + 14, m.deadline)
            item.msg, item.frag, item.copies = m, index, m.copies
            return item

    def shed(self, now: int) -> None:
        """Overload: expire queued messages, earliest deadline first, that have waited
        half their budget with nothing of them sent. They would leave last-minute, if
        at all, and only on the fastest links; the fresher messages behind them then
        leave with time to spare, on any link. O(1) amortized."""
        expiry = self._expiry
        while expiry:
            m = expiry[0][2]
            if m.done:
                heapq.heappop(expiry)
                continue
            if m.msg >= 0 or (now - m.queued_at) * 2 <= m.deadline - m.queued_at:
                return
            heapq.heappop(expiry)
            self._due_expiry = _UNKNOWN
            self._expire(m)

    def abandon(self, item: Item) -> None:
        """`item` cannot go out in time on any link: a new fragment's message expires."""
        if item.msg is not None:
            self._queued_bytes -= len(item.msg.frags[item.frag])
            self._expire(item.msg)

    def hold(self, item: Item) -> None:
        """Put back the item just taken: its link is not free yet."""
        self._held = item

    def defer(self, items: list[Item]) -> None:
        """Put back repairs and parity taken this round whose best link was busy: they
        go first next time, while what followed them used the links that were free."""
        self._deferred.extendleft(reversed(items))

    def commit(self, item: Item, now: int) -> bytes:
        """`item` is going out now: for a new fragment, number it and build its record.
        Returns the body to send."""
        if item.kind != NEW:
            return item.body
        m = item.msg
        if m is None:
            return item.body
        if m.msg < 0:
            m.msg = self._next_msg[m.stream]
            self._next_msg[m.stream] = m.msg + 1
        frag = m.frags[item.frag]
        count = len(m.frags)
        seq = self.next_seq
        self.next_seq += 1
        record = pack_data(
            seq & 0xFFFF_FFFF,
            m.deadline_us & 0xFFFF_FFFF,
            m.stream,
            m.msg & 0xFFFF,
            frag,
            item.frag if count > 1 else 0,
            count,
        )
        self._queued_bytes -= len(frag)
        if item.frag == count - 1:
            m.done = True  # fully handed over: no longer expires from the queue
            if m.deadline + 1 >= self._due_expiry:  # it may have been the earliest
                self._due_expiry = _UNKNOWN
        sent = SentRecord(record, m)
        m.unacked += 1
        self._inflight[seq] = sent
        self._inflight_bytes += len(record)
        heapq.heappush(self._inflight_expiry, (m.deadline, seq))
        if self._due_inflight >= 0 and m.deadline + 1 < self._due_inflight:
            self._due_inflight = m.deadline + 1
        self.stats.records += 1
        item.seq, item.body = seq, record
        if self.fec is not None:
            block = self.fec.push(seq, record, now)
            if block is not None:
                self._queue_parity(block, m.deadline)
        return record

    def _queue_parity(self, block: ParityBlock, deadline: int) -> None:
        base, count, shards = block.base, block.count, block.shards
        queue, m = self._parity, len(shards)
        for i in range(m):
            body = pack_parity(base, count, m, i, shards[i])
            item = Item(PARITY, len(body), deadline)
            item.body, item.seq = body, base
            queue.append(item)

    def flush_fec(self, now: int, force: bool = False) -> None:
        """Send the open FEC block's parity if its flush deadline passed (or `force`)."""
        if self.fec is None:
            return
        block = self.fec.close_due(now, force=force)
        if block is not None:
            self._queue_parity(block, now + 10**9)

    def on_transmitted(self, item: Item, link: int, link_seq: int, now: int) -> None:
        """`item` went out on `link` as datagram `link_seq` (unwrapped)."""
        if item.kind == PARITY:
            return
        sent = self._inflight.get(item.seq)
        if sent is None:
            return
        sent.links.append(link)
        sent.at = now
        log = self._links[link]
        if not log:
            self.logs_moved += 1
        log.append((link_seq, item.seq, now))
        if item.kind == REPAIR:
            self.stats.repairs += 1

    # --- feedback --------------------------------------------------------------------------

    def on_acked(self, lo: int, hi: int) -> None:
        """The peer has data sequences lo..hi (unwrapped, inclusive)."""
        self.on_acked_ranges([(lo, hi)])

    def on_acked_ranges(self, ranges: list[tuple[int, int]]) -> None:
        """The peer has the data sequences of `ranges` ((lo, hi), unwrapped, inclusive,
        disjoint). Each is first cut to what may be in flight; then either the ranges are
        walked or the in-flight records are (whichever is shorter), so a FEEDBACK costs
        O(ranges + min(their length, records in flight)) however wide its ranges claim."""
        inflight = self._inflight
        low = self._lowest
        while low < self.next_seq and low not in inflight:
            low += 1
        self._lowest = low
        top = self.next_seq - 1
        cut = [(max(lo, low), min(hi, top)) for lo, hi in ranges if hi >= low and lo <= top]
        if sum(hi - lo + 1 for lo, hi in cut) <= len(inflight):
            keys = [s for lo, hi in cut for s in range(lo, hi + 1) if s in inflight]
        else:
            cut.sort()
            starts = [lo for lo, _ in cut]
            keys = []
            for seq in inflight:
                i = bisect.bisect_right(starts, seq) - 1
                if i >= 0 and seq <= cut[i][1]:
                    keys.append(seq)
        arrival, owd = self._acked_arrival, self.owd
        if keys:
            self.logs_moved += 1
        for seq in keys:
            sent = inflight.pop(seq)
            if sent.deadline + 1 <= self._due_inflight:  # it may have been the earliest
                self._due_inflight = _UNKNOWN
            m = sent.msg
            m.unacked -= 1
            self._inflight_bytes -= len(sent.record)
            self.stats.acked += 1
            if not m.unacked and m.done and not m.settled:
                m.settled = True
                self.stats.delivered += 1
            # a record sent more than once is ambiguous: which copy arrived? (RACK)
            if len(sent.links) == 1 and sent.at + owd[sent.links[0]] > arrival:
                arrival = sent.at + owd[sent.links[0]]
        self._acked_arrival = arrival

    def on_link_report(
        self, link: int, highest: int, now: int, timeout_ns: int, rack_ns: int
    ) -> None:
        """The peer has received datagrams up to `highest` (unwrapped) on `link`. Records
        sent on it before that are lost if three later ones arrived, or if they were sent
        more than `rack_ns` ago (RTT + reordering window); records sent more than
        `timeout_ns` ago are lost in any case."""
        log = self._links[link]
        self._top[link] = max(self._top[link], highest)
        while log and (
            log[0][0] <= highest - _REORDER
            or (log[0][0] < highest and now - log[0][2] > rack_ns)
            or now - log[0][2] > timeout_ns
        ):
            self.logs_moved += 1
            _, seq, _ = log.popleft()
            if seq in self._inflight:
                self.stats.lost += 1
                self._repairs.append(seq)
                self._runs[link] += 1
            elif self._runs[link]:  # a burst on this link just ended
                self.burst += (self._runs[link] - self.burst) / 8
                self._runs[link] = 0

    def on_overdue(self, link: int, window_ns: int) -> None:
        """After acknowledgements: records on `link` that should have reached the peer
        (send time + the link's least one-way delay + its queue + `window_ns`) before
        one it has acknowledged did (on any link: its send time + that link's least
        one-way delay, `owd`; records sent twice are left out, which copy arrived is
        not known) are lost, whether or not anything later arrived on `link`
        (RACK, RFC 8985, across links). A link that died is found out this way about a
        one-way delay after its last record, long before it is declared DOWN: what it
        held is re-sent in time."""
        log = self._links[link]
        horizon = self._acked_arrival - self.owd[link] - self.queue[link] - window_ns
        inflight = self._inflight
        top = self._top[link]
        while log and log[0][2] < horizon:
            self.logs_moved += 1
            link_seq, seq, _ = log.popleft()
            if seq in inflight:
                self.stats.lost += 1
                self._repairs.append(seq)
                # a loss run for the mean burst only where the peer has had something
                # later on this link: a queue that grew faster than its estimate makes a
                # whole run look overdue here (at 2 % independent loss, runs of 7 pulled
                # the mean past 1.5 and kept parity on for seconds)
                if link_seq < top:
                    self._runs[link] += 1
            elif self._runs[link]:
                self.burst += (self._runs[link] - self.burst) / 8
                self._runs[link] = 0

    def repair_late(self, link: int, top: int, late: Callable[[int, int, int], bool]) -> None:
        """Queue for repair each record in flight on `link` after its datagram `top` that
        `late(link, link_seq, deadline)` says now reaches the peer after its deadline
        (the link's queue grew: `plait.capacity`). Each record at most once this way;
        the work is bounded by what the link holds, and a link is found congested at
        most once per round trip."""
        for link_seq, seq, _ in self._links[link]:
            if link_seq <= top:
                continue
            sent = self._inflight.get(seq)
            if sent is not None and not sent.rescued and late(link, link_seq, sent.deadline):
                sent.rescued = True
                self._repairs.append(seq)

    def oldest_unacked(self, link: int) -> int | None:
        """When the oldest record still logged on `link` was sent (None: none)."""
        log = self._links[link]
        while log and log[0][1] not in self._inflight:
            log.popleft()
        return log[0][2] if log else None

    def check_timeout(self, link: int, now: int, timeout_ns: int) -> None:
        """Records on `link` unacknowledged for `timeout_ns` are lost (tail losses, which
        no later datagram reveals)."""
        log = self._links[link]
        while log and now - log[0][2] >= timeout_ns:
            self.logs_moved += 1
            _, seq, _ = log.popleft()
            if seq in self._inflight:
                self.stats.lost += 1
                self._repairs.append(seq)

    def on_link_down(self, link: int) -> None:
        """Everything in flight on a link that went down is to be repaired elsewhere."""
        log = self._links[link]
        self.logs_moved += 1
        while log:
            _, seq, _ = log.popleft()
            if seq in self._inflight:
                self._repairs.append(seq)

    # --- time ------------------------------------------------------------------------------

    def _expire(self, m: Message) -> None:
        """Drop what is left of message `m` unsent, and report it."""
        if m.done:
            return
        m.done = m.settled = True
        if m.deadline + 1 >= self._due_expiry:  # it may have been the earliest
            self._due_expiry = _UNKNOWN
        dropped = self._streams.drop_head_while(m.stream, lambda it: it[0] is m)
        if len(dropped) < len(m.frags):  # not all at the head (some sent, or behind others)
            dropped += self._streams.drop_where(m.stream, lambda it: it[0] is m)
        self._queued_bytes -= sum(size for _, size in dropped)
        held = self._held
        if held is not None and held.msg is m:
            self._queued_bytes -= len(m.frags[held.frag])
            self._held = None
        self.stats.expired += 1
        self._emit(MessageExpired(stream=m.stream, msg=m.msg, sent=True, handle=m.handle))

    def deadline(self) -> int | None:
        """When the earliest queued message or tracked record reaches its deadline.
        (A query: it only discards bookkeeping of what is already finished.) Its parts
        are kept as messages and records come and go; only a part whose earliest entry
        left is looked up again."""
        best = self._due_expiry
        if best < 0:
            expiry = self._expiry
            while expiry and expiry[0][2].done:
                heapq.heappop(expiry)
            best = self._due_expiry = expiry[0][0] + 1 if expiry else _NEVER
        first = self._due_inflight
        if first < 0:
            heap, inflight = self._inflight_expiry, self._inflight
            while heap and heap[0][1] not in inflight:  # acknowledged: no deadline to keep
                heapq.heappop(heap)
            first = self._due_inflight = heap[0][0] + 1 if heap else _NEVER
        best = min(best, first)
        if self.fec is not None:
            fec = self.fec.deadline()
            if fec is not None and fec < best:
                best = fec
        return None if best == _NEVER else best

    def on_timer(self, now: int) -> None:
        while self._expiry and (self._expiry[0][2].done or self._expiry[0][0] < now):
            _, _, m = heapq.heappop(self._expiry)
            self._due_expiry = _UNKNOWN
            self._expire(m)
        self.flush_fec(now)
        heap = self._inflight_expiry
        while heap and heap[0][0] < now:
            _, seq = heapq.heappop(heap)
            self._due_inflight = _UNKNOWN
            sent = self._inflight.pop(seq, None)
            if sent is not None:  # past its deadline, never acknowledged
                self.logs_moved += 1
                self._inflight_bytes -= len(sent.record)
                self._unconfirmed(sent.msg)

    def _unconfirmed(self, m: Message) -> None:
        if not m.settled:
            m.settled = True
            self.stats.unconfirmed += 1
            self._emit(MessageUnconfirmed(stream=m.stream, msg=m.msg, handle=m.handle))

    def settle_all(self) -> None:
        """The session ends now: report every message not yet delivered, in the order
        they were sent (what was not sent in full as `MessageExpired`, the rest as
        `MessageUnconfirmed`), and forget what was queued and in flight."""
        waiting = {m.handle: m for _, _, m in self._expiry if not m.settled}
        waiting.update((s.msg.handle, s.msg) for s in self._inflight.values() if not s.msg.settled)
        for handle in sorted(waiting):
            m = waiting[handle]
            if m.done:
                self._unconfirmed(m)
            else:
                m.done = m.settled = True
                self.stats.expired += 1
                self._emit(MessageExpired(stream=m.stream, msg=m.msg, sent=True, handle=handle))
        self._streams = DeficitRoundRobin()
        self._expiry.clear()
        self._inflight.clear()
        self._inflight_expiry.clear()
        self._held = None
        self._deferred.clear()
        self._repairs.clear()
        self._parity.clear()
        for log in self._links:
            log.clear()
        self._queued_bytes = self._inflight_bytes = 0
        self._due_expiry = self._due_inflight = _NEVER
        self.logs_moved += 1
