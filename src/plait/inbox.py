"""The receiving half of a session: dedup, reassembly, per-stream order, deadlines.

Rules:

* **Exactly once.** Every DATA record carries a session-wide data sequence; a record
  whose sequence was seen before (on any link, or rebuilt by FEC) is dropped. Memory
  is a fixed `ReceiveWindow` over sequence numbers.
* **Reassembly.** Fragments are keyed by (stream, message); partial messages are bounded
  in number and bytes, the oldest evicted (and counted).
* **Bounded waiting.** Complete messages held behind a gap are capped per stream in
  number and across streams in bytes; past a cap the oldest gap is given up early
  (its messages reported expired) rather than memory growing.
* **Order with deadlines.** A stream delivers message n as soon as n is complete and
  every earlier message was delivered or expired; in-order messages are never held.
  A gap is waited for no longer than the deadline of the first complete message after
  it (per-stream deadlines are assumed non-decreasing, so that bounds the missing one's).
  Then the missing messages are reported expired and delivery goes on.
* **Bounded work.** A run of messages expired at once is one `MessageExpired` with a
  `count`, so a record 32,767 messages ahead costs one event, not 32,767. Each stream
  keeps its waiting numbers in a heap and partial deadlines sit in one heap, so
  `deadline`, `on_timer` and the caps cost O(log n) per message, not O(n) per call.
* **Never late.** Deadlines arrive in the sender's µs clock and stay in it; they are
  mapped to ours (`plait.clock`) each time a decision is made, so the mapping used is
  the newest. A message is delivered only while ``now <= deadline``, otherwise it is
  reported expired.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Final

from plait.events import Event, MessageExpired, MessageReceived
from plait.seq import SEQ16, ReceiveWindow, Verdict

__all__ = ["Inbox"]

_NEVER: Final = 1 << 62


_EXPIRED: Final = None  # in place of a message's data: it expired, skip it in order


class _Partial:
    __slots__ = ("count", "deadline", "got", "nbytes", "parts", "serial")

    def __init__(self, count: int, deadline: int, serial: int) -> None:
        self.count = count
        self.deadline = deadline
        self.serial = serial  # tells its entry in the deadline heap from a stale one
        self.parts: list[bytes | None] = [None] * count
        self.got = 0
        self.nbytes = 0


class _Stream:
    """Per-stream order: the next message due and the complete ones waiting behind a gap.
    `order` is a heap of `waiting`'s keys; every key is >= `next_msg`, and a key leaves
    only as `next_msg`, so it is always the heap's smallest."""

    __slots__ = ("next_msg", "order", "partials", "waiting")

    def __init__(self) -> None:
        self.next_msg = 0
        self.waiting: dict[int, tuple[bytes | None, int]] = {}  # msg -> (data, peer deadline)
        self.order: list[int] = []
        self.partials = 0  # partial messages of this stream

    def put(self, msg: int, item: tuple[bytes | None, int]) -> None:
        self.waiting[msg] = item
        heapq.heappush(self.order, msg)

    def take(self, msg: int) -> tuple[bytes | None, int] | None:
        """Remove and return the entry for `msg` (== `next_msg`), if it waits."""
        item = self.waiting.pop(msg, None)
        if item is not None:
            heapq.heappop(self.order)
        return item


class InboxStats:
    __slots__ = (
        "bad_stream",
        "delivered",
        "delivered_bytes",
        "duplicates",
        "expired",
        "late",
        "partials_evicted",
        "records",
        "stale",
        "too_old",
    )

    def __init__(self) -> None:
        self.records = self.duplicates = self.too_old = self.stale = 0
        self.delivered = self.delivered_bytes = self.expired = self.late = 0
        self.partials_evicted = self.bad_stream = 0


class Inbox:
    """Turns DATA records into `MessageReceived` / `MessageExpired` events."""

    __slots__ = (
        "_emit",
        "_heap",
        "_local",
        "_partial_bytes",
        "_partials",
        "_run",
        "_serial",
        "_streams",
        "_waiting_bytes",
        "max_partial_bytes",
        "max_partials",
        "max_waiting",
        "max_waiting_bytes",
        "stats",
        "streams",
        "window",
    )

    def __init__(
        self,
        emit: Callable[[Event], None],
        to_local: Callable[[int], int],
        *,
        window: int = 32_768,
        max_partials: int = 1024,
        max_partial_bytes: int = 8 * 1024 * 1024,
        max_waiting: int = 4096,
        max_waiting_bytes: int = 8 * 1024 * 1024,
        streams: int = 256,
    ) -> None:
        self._emit = emit
        self._local = to_local
        self.window = ReceiveWindow(size=window)
        self._partials: dict[tuple[int, int], _Partial] = {}
        self._partial_bytes = 0
        # partial deadlines: (peer deadline, serial, stream, msg), stale entries skipped
        self._heap: list[tuple[int, int, int, int]] = []
        self._serial = 0
        self._run: list[int] = []  # an expired run not yet reported: [stream, first, count]
        self.max_partials = max_partials
        self.max_partial_bytes = max_partial_bytes
        self.max_waiting = max_waiting  # complete messages held behind gaps, per stream
        self.max_waiting_bytes = max_waiting_bytes  # their bytes, all streams together
        self._waiting_bytes = 0
        self.streams = streams  # records on streams >= this are ignored (`send` refuses them)
        self._streams: dict[int, _Stream] = {}
        self.stats = InboxStats()

    # --- records -------------------------------------------------------------------------

    def check(self, seq: int) -> bool:
        """True when data sequence `seq` (unwrapped) would be new."""
        return self.window.check(seq) is Verdict.NEW

    def on_record(
        self,
        seq: int,
        deadline: int,
        stream: int,
        msg_wire: int,
        payload: bytes,
        frag_index: int,
        frag_count: int,
        now: int,
    ) -> bool:
        """One DATA record (received or rebuilt); `deadline` is in the peer's µs clock,
        unwrapped. Returns False when it was a duplicate or too old (and was dropped)."""
        verdict = self.window.receive(seq)
        if verdict is not Verdict.NEW:
            if verdict is Verdict.DUPLICATE:
                self.stats.duplicates += 1
            else:
                self.stats.too_old += 1
            return False
        self.stats.records += 1
        st = self._streams.get(stream)
        if st is None:
            if stream >= self.streams:
                self.stats.bad_stream += 1  # no sender of this config sends it: ignore
                return True
            st = self._streams[stream] = _Stream()
        msg = SEQ16.unwrap(msg_wire, st.next_msg)
        if msg < st.next_msg or msg in st.waiting:
            self.stats.stale += 1  # its message was delivered or expired already
        elif frag_count == 1:
            self._complete(st, stream, msg, payload, deadline, now)
        else:
            self._on_fragment(st, stream, msg, payload, frag_index, frag_count, deadline, now)
        self._flush_run()
        return True

    def _on_fragment(
        self,
        st: _Stream,
        stream: int,
        msg: int,
        payload: bytes,
        frag_index: int,
        frag_count: int,
        deadline: int,
        now: int,
    ) -> None:
        key = (stream, msg)
        part = self._partials.get(key)
        if part is None:
            part = self._new_partial(key, frag_count, deadline)
        elif part.count != frag_count or frag_index >= part.count:
            self.stats.stale += 1  # inconsistent fragment fields: ignore this one
            return
        if part.parts[frag_index] is None:
            part.parts[frag_index] = payload
            part.got += 1
            part.nbytes += len(payload)
            self._partial_bytes += len(payload)
            if self._partial_bytes > self.max_partial_bytes:
                self._evict_partials(keep=key)
                if key not in self._partials:
                    return  # it alone outgrew the bound: dropped (counted)
        if part.got == part.count:
            self._drop_partial(key)
            data = b"".join(p for p in part.parts if p is not None)
            self._complete(st, stream, msg, data, part.deadline, now)

    def _evict_partials(self, keep: tuple[int, int]) -> None:
        """Drop the oldest partial messages until their bytes fit the bound again (the
        one being added to goes last)."""
        for key in [k for k in self._partials if k != keep] + [keep]:
            if self._partial_bytes <= self.max_partial_bytes:
                return
            self._drop_partial(key)
            self.stats.partials_evicted += 1

    def _new_partial(self, key: tuple[int, int], count: int, deadline: int) -> _Partial:
        while self._partials and (
            len(self._partials) >= self.max_partials or self._partial_bytes > self.max_partial_bytes
        ):
            self._drop_partial(next(iter(self._partials)))
            self.stats.partials_evicted += 1
        self._serial += 1
        part = self._partials[key] = _Partial(count, deadline, self._serial)
        self._streams[key[0]].partials += 1
        heap = self._heap
        heapq.heappush(heap, (deadline, self._serial, key[0], key[1]))
        if len(heap) > 2 * self.max_partials + 64:  # mostly stale: rebuild from the live ones
            heap[:] = [(p.deadline, p.serial, k[0], k[1]) for k, p in self._partials.items()]
            heapq.heapify(heap)
        return part

    def _drop_partial(self, key: tuple[int, int]) -> _Partial | None:
        """Forget a partial message (its heap entry goes stale)."""
        part = self._partials.pop(key, None)
        if part is not None:
            self._partial_bytes -= part.nbytes
            self._streams[key[0]].partials -= 1
        return part

    def _complete(
        self, st: _Stream, stream: int, msg: int, data: bytes, deadline: int, now: int
    ) -> None:
        due = self._local(deadline)
        if msg == st.next_msg and not st.waiting and now <= due:
            self._deliver(st, stream, msg, data, due)  # in order and in time: at once
            return
        if now > due:  # complete but too late: a placeholder keeps order
            self.stats.late += 1
            st.put(msg, (_EXPIRED, deadline))
        else:
            st.put(msg, (data, deadline))
            self._waiting_bytes += len(data)
        if len(st.waiting) > self.max_waiting:  # bounded: stop waiting for the oldest gap
            self._expire_through(st, stream, st.order[0] - 1)
        self._drain(st, stream, now)
        if self._waiting_bytes > self.max_waiting_bytes:
            self._shed_waiting(st, stream, now)

    def _shed_waiting(self, st: _Stream, stream: int, now: int) -> None:
        """Give up gaps, oldest first, until the waiting bytes fit: this stream's
        first (it just grew), then the others in the order they began."""
        for stream_id, other in [(stream, st), *self._streams.items()]:
            while other.waiting and self._waiting_bytes > self.max_waiting_bytes:
                self._expire_through(other, stream_id, other.order[0] - 1)
                self._drain(other, stream_id, now)
            if self._waiting_bytes <= self.max_waiting_bytes:
                return

    def _deliver(self, st: _Stream, stream: int, msg: int, data: bytes, deadline: int) -> None:
        self._flush_run()
        st.next_msg = msg + 1
        self.stats.delivered += 1
        self.stats.delivered_bytes += len(data)
        self._emit(MessageReceived(data=data, stream=stream, msg=msg, deadline=deadline))

    def _expire_through(self, st: _Stream, stream: int, last: int) -> None:
        """Expire messages next_msg .. last and move past them. The work is bounded by
        the partial messages, not by the length of the run: one run, one event."""
        first = st.next_msg
        if last < first:
            return
        if st.partials:  # forget this stream's partial messages inside the run
            if last - first < len(self._partials):
                keys = [(stream, m) for m in range(first, last + 1)]
            else:
                keys = [k for k in self._partials if k[0] == stream and first <= k[1] <= last]
            for key in keys:
                self._drop_partial(key)
        st.next_msg = last + 1
        count = last - first + 1
        self.stats.expired += count
        run = self._run
        if run and run[0] == stream and run[1] + run[2] == first:
            run[2] += count  # continues the run not yet reported
            return
        self._flush_run()
        self._run = [stream, first, count]

    def _flush_run(self) -> None:
        """Report the pending run of expired messages, if any."""
        run = self._run
        if run:
            self._run = []
            self._emit(MessageExpired(stream=run[0], msg=run[1], sent=False, count=run[2]))

    def _drain(self, st: _Stream, stream: int, now: int) -> None:
        """Deliver what waits in order; skip past gaps whose wait is over."""
        waiting, local = st.waiting, self._local
        while waiting:
            item = st.take(st.next_msg)
            if item is not None:
                data, deadline = item
                if data is not None:
                    self._waiting_bytes -= len(data)
                due = local(deadline)
                if data is None or now > due:  # an expired placeholder, or too late now
                    self._expire_through(st, stream, st.next_msg)
                else:
                    self._deliver(st, stream, st.next_msg, data, due)
                continue
            first = st.order[0]
            data, deadline = waiting[first]
            if data is not None and now < local(deadline):
                return  # still worth waiting for the gap
            self._expire_through(st, stream, first - 1)

    # --- time ----------------------------------------------------------------------------

    def deadline(self) -> int | None:
        """When a gap's wait or a partial message's deadline next runs out."""
        best = _NEVER
        local = self._local
        for st in self._streams.values():
            if st.waiting:
                data, deadline = st.waiting[st.order[0]]
                best = min(best, local(deadline) if data is not None else 0)
        head = self._live_head()
        if head is not None:
            best = min(best, local(head) + 1)
        return None if best == _NEVER else best

    def _live_head(self) -> int | None:
        """The earliest partial deadline (peer µs), dropping stale heap entries above it."""
        heap, partials = self._heap, self._partials
        while heap:
            deadline, serial, stream, msg = heap[0]
            part = partials.get((stream, msg))
            if part is not None and part.serial == serial:
                return deadline
            heapq.heappop(heap)
        return None

    def on_timer(self, now: int) -> None:
        """Release gaps whose wait is over; drop partial messages past their deadline."""
        local, heap = self._local, self._heap
        while (head := self._live_head()) is not None and now > local(head):
            _, _, stream, msg = heapq.heappop(heap)
            self._drop_partial((stream, msg))
            st = self._streams[stream]
            if msg >= st.next_msg and msg not in st.waiting:
                st.put(msg, (_EXPIRED, head))  # a placeholder keeps order, within the cap
                if len(st.waiting) > self.max_waiting:
                    self._expire_through(st, stream, st.order[0] - 1)
                    self._drain(st, stream, now)
        for stream, st in self._streams.items():
            if st.waiting:
                self._drain(st, stream, now)
        self._flush_run()

    def flush(self, now: int) -> None:
        """The session ended: nothing more will arrive. Deliver each complete message
        still within its deadline, in order per stream, giving up the gaps before it;
        report the incomplete ones expired."""
        for key in list(self._partials):
            part = self._drop_partial(key)
            st = self._streams[key[0]]
            if part is not None and key[1] >= st.next_msg and key[1] not in st.waiting:
                st.put(key[1], (_EXPIRED, part.deadline))
        for stream, st in self._streams.items():
            while st.waiting:
                self._expire_through(st, stream, st.order[0] - 1)
                self._drain(st, stream, now)
        self._flush_run()

    # --- feedback --------------------------------------------------------------------------

    def received_ranges(self) -> list[tuple[int, int]]:
        """Received data sequences inside the window, ascending inclusive ranges."""
        return self.window.received_ranges()

    def feedback_ranges(self, max_ranges: int) -> tuple[int, int, tuple[tuple[int, int], ...]]:
        """(largest, first_run, (gap, run) pairs) describing the received sequences for a
        FEEDBACK, highest first; stops where a value would not fit 16 bits."""
        ranges = self.window.received_ranges()
        if not ranges:
            return 0, 0, ()
        lo, hi = ranges[-1]
        if hi - lo + 1 > 0xFFFF:
            return hi, 0xFFFF, ()
        pairs: list[tuple[int, int]] = []
        below = lo
        for r_lo, r_hi in reversed(ranges[-max_ranges:-1]):
            gap, run = below - r_hi - 1, r_hi - r_lo + 1
            if gap > 0xFFFF or run > 0xFFFF:
                break
            pairs.append((gap, run))
            below = r_lo
        return hi, hi - lo + 1, tuple(pairs)

    @property
    def partials(self) -> int:
        return len(self._partials)

    @property
    def partial_bytes(self) -> int:
        return self._partial_bytes

    @property
    def waiting(self) -> int:
        return sum(len(st.waiting) for st in self._streams.values())

    @property
    def waiting_bytes(self) -> int:
        return self._waiting_bytes
