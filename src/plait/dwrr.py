"""Deficit round robin: fair queueing across streams, proportional striping across links.

`DeficitRoundRobin` multiplexes FIFO queues (application streams, priority classes) so
that a burst on one queue never blocks another. `Striper` runs the same rounds over links
that are all fed by one packet stream, so each link carries bytes in proportion to its
weight. Both follow Shreedhar and Varghese, "Efficient fair queueing using deficit round
robin" (SIGCOMM 1995); the striper is the load-sharing use of DRR of Adiseshu, Parulkar
and Varghese, "A reliable and scalable striping protocol" (SIGCOMM 1996). Rules:

* Sizes are integer bytes >= 0, weights integers >= 1. When its turn comes a queue (link)
  adds its quantum to its deficit counter and is served while the next item fits; what is
  left carries to its next turn, so an item larger than the quantum waits a few rounds and
  is then served.
* Only backlogged queues are on the active list, so idle ones cost nothing; a queue that
  empties leaves it with its deficit reset to 0 (idleness saves no credit). The striper
  treats a link that is not eligible when its turn comes the same way.
* A round in which nobody can be served is skipped arithmetically, exactly as if it had
  run, so the work per decision does not grow with item size / quantum.
* Fairness, proved and checked in ``tests/test_dwrr.py``: over any interval in which i
  and j stay backlogged (links: eligible), ``|sent_i/w_i - sent_j/w_j| < u + Max/w_i +
  Max/w_j``, with u the quantum per unit of weight and Max the largest item.
* Deterministic: no clock, no randomness; order is insertion order. Misuse raises a
  `plait.errors.UsageError` (or `ConfigError`) before anything changes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Final, Generic, TypeVar

from plait.errors import ConfigError, UsageError

__all__ = ["DEFAULT_QUANTUM", "DeficitRoundRobin", "Striper"]

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")

#: Bytes per round per unit of weight: one Ethernet MTU.
DEFAULT_QUANTUM: Final = 1500
_UNBOUNDED: Final = 1 << 62


def _check_weight(weight: int) -> None:
    if weight < 1:
        raise ConfigError("a weight must be an integer >= 1")


def _check_limit(limit: int | None, what: str) -> int:
    if limit is None:
        return _UNBOUNDED
    if limit < 1:
        raise ConfigError(what + " must be None or an integer >= 1")
    return limit


class _Queue(Generic[K, T]):
    """One FIFO of (item, size) with its DRR state."""

    __slots__ = (
        "active",
        "deficit",
        "items",
        "key",
        "max_bytes",
        "max_items",
        "nbytes",
        "quantum",
        "weight",
    )

    def __init__(self, key: K, weight: int, quantum: int, max_items: int, max_bytes: int) -> None:
        self.key: Final = key
        self.weight = weight
        self.quantum = quantum
        self.deficit = 0
        self.items: deque[tuple[T, int]] = deque()
        self.nbytes = 0
        self.active = False
        self.max_items = max_items
        self.max_bytes = max_bytes


class DeficitRoundRobin(Generic[K, T]):
    """Weighted fair multiplexing of FIFO queues keyed by `K`, holding items `T`.

    Queue ``k`` gets ``weight(k) * quantum`` bytes per round. `pop` is O(1) amortized
    when `quantum` >= the largest item (O(backlogged queues) otherwise); `push` is O(1).

    Bounds: each queue holds at most `max_items` items and `max_bytes` bytes (None: no
    limit; `add_queue` may override both). A full queue is ordinary back-pressure, not
    misuse: `push` then returns False and changes nothing.
    """

    __slots__ = (
        "_active",
        "_count",
        "_fruitless",
        "_max_bytes",
        "_max_items",
        "_nbytes",
        "_open",
        "_queues",
        "quantum",
    )

    def __init__(
        self,
        quantum: int = DEFAULT_QUANTUM,
        *,
        max_items: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        if quantum < 1:
            raise ConfigError("the quantum must be an integer >= 1")
        self._max_items = _check_limit(max_items, "max_items")
        self._max_bytes = _check_limit(max_bytes, "max_bytes")
        self.quantum: Final = quantum
        self._queues: dict[K, _Queue[K, T]] = {}
        self._active: deque[_Queue[K, T]] = deque()  # backlogged queues, head's turn first
        self._open = False  # the head of _active has had its quantum for this turn
        self._fruitless = 0  # turns in a row that served nothing
        self._count = 0
        self._nbytes = 0

    def __repr__(self) -> str:
        return f"DeficitRoundRobin(queues={len(self._queues)}, items={self._count})"

    # --- queues ----------------------------------------------------------------------

    def add_queue(
        self,
        key: K,
        weight: int = 1,
        *,
        max_items: int | None = None,
        max_bytes: int | None = None,
    ) -> None:
        """Add an empty queue; `max_items`/`max_bytes` default to the scheduler's.

        Raises:
            UsageError: `key` already exists.
            ConfigError: `weight` < 1 or a limit < 1.
        """
        if key in self._queues:
            raise UsageError("a queue with this key already exists")
        _check_weight(weight)
        items = self._max_items if max_items is None else _check_limit(max_items, "max_items")
        nbytes = self._max_bytes if max_bytes is None else _check_limit(max_bytes, "max_bytes")
        self._queues[key] = _Queue(key, weight, weight * self.quantum, items, nbytes)

    def remove_queue(self, key: K) -> list[tuple[T, int]]:
        """Remove a queue and return its (item, size) pairs, oldest first."""
        q = self._get(key)
        dropped = list(q.items)
        if q.active:
            self._deactivate(q)
        self._count -= len(dropped)
        self._nbytes -= q.nbytes
        del self._queues[key]
        return dropped

    def set_weight(self, key: K, weight: int) -> None:
        """Change a queue's weight. A turn already under way keeps its quantum; the new
        one applies from the queue's next turn."""
        q = self._get(key)
        _check_weight(weight)
        q.weight = weight
        q.quantum = weight * self.quantum

    def weight(self, key: K) -> int:
        return self._get(key).weight

    def deficit(self, key: K) -> int:
        """The queue's deficit counter in bytes (0 whenever it is empty)."""
        return self._get(key).deficit

    def queued(self, key: K) -> int:
        """Items waiting in one queue."""
        return len(self._get(key).items)

    def queued_bytes(self, key: K) -> int:
        """Bytes waiting in one queue."""
        return self._get(key).nbytes

    @property
    def keys(self) -> tuple[K, ...]:
        """Every queue's key, in the order they were added."""
        return tuple(self._queues)

    @property
    def bytes_queued(self) -> int:
        """Bytes waiting in all queues."""
        return self._nbytes

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: object) -> bool:
        return key in self._queues

    # --- the hot path ----------------------------------------------------------------

    def push(self, key: K, item: T, size: int) -> bool:
        """Append `item` of `size` bytes to queue `key`.

        Returns:
            True if queued; False if that would exceed the queue's bounds (nothing changed).

        Raises:
            UsageError: unknown `key`, `size` < 0, or `size` above the queue's `max_bytes`
                (it could never be queued).
        """
        q = self._queues.get(key)
        if q is None:
            raise UsageError("no queue with this key")
        if size < 0 or size > q.max_bytes:
            raise UsageError("an item size must be >= 0 and within the queue's max_bytes")
        if len(q.items) >= q.max_items or q.nbytes + size > q.max_bytes:
            return False
        q.items.append((item, size))
        q.nbytes += size
        self._count += 1
        self._nbytes += size
        if not q.active:
            q.active = True
            self._active.append(q)
        return True

    def pop(self) -> tuple[K, T, int] | None:
        """The next item in DRR order as (key, item, size), or None when all are empty."""
        active = self._active
        while active:
            q = active[0]
            if not self._open:
                q.deficit += q.quantum
                self._open = True
            items = q.items
            item, size = items[0]
            deficit = q.deficit - size
            if deficit >= 0:
                items.popleft()
                q.nbytes -= size
                self._count -= 1
                self._nbytes -= size
                self._fruitless = 0
                if not items:  # empty: leave the active list with no credit
                    q.deficit = 0
                    q.active = False
                    active.popleft()
                    self._open = False
                else:
                    q.deficit = deficit
                    if items[0][1] > deficit:  # the next one does not fit: turn over
                        active.rotate(-1)
                        self._open = False
                return q.key, item, size
            active.rotate(-1)  # a turn that served nothing
            self._open = False
            self._fruitless += 1
            if self._fruitless >= len(active):
                self._skip_rounds()
        return None

    # --- dropping --------------------------------------------------------------------

    def drop_where(self, key: K, pred: Callable[[T], bool]) -> list[tuple[T, int]]:
        """Remove every item of queue `key` for which `pred(item)` is true; O(queue length).

        Returns the removed (item, size) pairs, oldest first. If `pred` raises, nothing
        is removed.
        """
        q = self._get(key)
        kept: deque[tuple[T, int]] = deque()
        dropped: list[tuple[T, int]] = []
        for entry in q.items:
            (dropped if pred(entry[0]) else kept).append(entry)
        if dropped:
            q.items = kept
            self._account_drop(q, dropped)
        return dropped

    def drop_head_while(self, key: K, pred: Callable[[T], bool]) -> list[tuple[T, int]]:
        """Remove items from the front of queue `key` while `pred(item)` is true; O(removed).

        The cheap way to expire messages whose deadlines grow along the queue. Returns the
        removed (item, size) pairs, oldest first.
        """
        q = self._get(key)
        items = q.items
        dropped: list[tuple[T, int]] = []
        try:
            while items and pred(items[0][0]):
                dropped.append(items.popleft())
        finally:
            if dropped:
                self._account_drop(q, dropped)
        return dropped

    # --- internals -------------------------------------------------------------------

    def _get(self, key: K) -> _Queue[K, T]:
        q = self._queues.get(key)
        if q is None:
            raise UsageError("no queue with this key")
        return q

    def _deactivate(self, q: _Queue[K, T]) -> None:
        q.active = False
        q.deficit = 0
        if self._active[0] is q:
            self._active.popleft()
            self._open = False
        else:
            self._active.remove(q)

    def _account_drop(self, q: _Queue[K, T], dropped: list[tuple[T, int]]) -> None:
        nbytes = sum(size for _, size in dropped)
        q.nbytes -= nbytes
        self._nbytes -= nbytes
        self._count -= len(dropped)
        if not q.items and q.active:
            self._deactivate(q)

    def _skip_rounds(self) -> None:
        """After a whole round served nothing, run the rounds in which still nothing could
        be served in one step: ``r - 1`` quanta for everyone, where ``r`` is the fewest
        turns any head item still needs. The next round then serves someone."""
        self._fruitless = 0
        active = self._active
        rounds = min(-((q.deficit - q.items[0][1]) // q.quantum) for q in active)
        if rounds > 1:
            for q in active:
                q.deficit += (rounds - 1) * q.quantum


class Striper(Generic[K]):
    """Stripes one packet stream over links keyed by `K` in proportion to their weights.

    Every link is always backlogged (by the shared stream), so the rounds are DRR's over
    a fixed cyclic order of links. Weights are relative and may be in any unit (kbps,
    bytes/s): the lightest link gets `quantum` bytes per round and link ``i`` gets
    ``quantum * w_i / min(w)``. Deficits are kept exactly, in units of 1/min(w) byte.

    A link that is not eligible when its turn comes (or while it lasts) is skipped and
    its deficit reset to 0, so it cannot save up credit and burst later.
    """

    __slots__ = (
        "_cur",
        "_deficits",
        "_index",
        "_keys",
        "_min_weight",
        "_ok",
        "_open",
        "_quanta",
        "_weights",
        "quantum",
    )

    def __init__(self, quantum: int = DEFAULT_QUANTUM) -> None:
        if quantum < 1:
            raise ConfigError("the quantum must be an integer >= 1")
        self.quantum: Final = quantum
        self._keys: list[K] = []
        self._index: dict[K, int] = {}
        self._weights: list[int] = []
        self._quanta: list[int] = []  # quantum * weight, in 1/min(w) byte units
        self._deficits: list[int] = []  # in 1/min(w) byte units
        self._ok: list[bool] = []  # eligibility seen in the current choose's round
        self._min_weight = 1
        self._cur = 0  # whose turn it is (or is next)
        self._open = False  # the link at _cur has had its quantum for this turn

    def __repr__(self) -> str:
        return f"Striper(links={len(self._keys)})"

    # --- links -----------------------------------------------------------------------

    def add_link(self, key: K, weight: int = 1) -> None:
        """Add a link at the end of the round with no credit."""
        if key in self._index:
            raise UsageError("a link with this key already exists")
        _check_weight(weight)
        self._index[key] = len(self._keys)
        self._keys.append(key)
        self._weights.append(weight)
        self._quanta.append(weight * self.quantum)
        self._deficits.append(0)
        self._ok.append(False)
        self._rescale()

    def remove_link(self, key: K) -> None:
        i = self._get(key)
        for seq in (self._keys, self._weights, self._quanta, self._deficits, self._ok):
            del seq[i]
        self._index = {k: n for n, k in enumerate(self._keys)}
        if i == self._cur:
            self._open = False
        elif i < self._cur:
            self._cur -= 1
        if self._cur >= len(self._keys):
            self._cur = 0
        self._rescale()

    def set_weight(self, key: K, weight: int) -> None:
        """Change a link's weight; a turn under way keeps its quantum."""
        i = self._get(key)
        _check_weight(weight)
        self._weights[i] = weight
        self._quanta[i] = weight * self.quantum
        self._rescale()

    def weight(self, key: K) -> int:
        return self._weights[self._get(key)]

    def deficit(self, key: K) -> int:
        """The link's deficit counter in whole bytes (rounded down)."""
        return self._deficits[self._get(key)] // self._min_weight

    @property
    def links(self) -> tuple[K, ...]:
        """The links in round order."""
        return tuple(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    # --- the hot path ----------------------------------------------------------------

    def choose(self, size: int, eligible: Callable[[K], bool] | None = None) -> K | None:
        """The link for the next packet of `size` bytes, charged for it.

        Args:
            size: the packet's size in bytes (>= 0).
            eligible: which links may take it now (up, not paced out); None means all.
                It is asked about each link it visits (at most twice per link per call),
                must give the same answer within one call, and must not change the
                striper. If it raises, deficits of the links already visited may have
                changed.

        Returns:
            The chosen link, or None if no link is eligible (or there are none).
        """
        if size < 0:
            raise UsageError("a packet size must be >= 0")
        cost = size * self._min_weight
        i = self._cur
        if self._open:
            key = self._keys[i]
            if eligible is None or eligible(key):
                deficit = self._deficits[i] - cost
                if deficit >= 0:
                    self._deficits[i] = deficit
                    return key
            else:
                self._deficits[i] = 0
            self._open = False
            i += 1
            if i == len(self._keys):
                i = 0
        elif not self._keys:
            return None
        return self._next_turns(i, cost, eligible)

    # --- internals -------------------------------------------------------------------

    def _get(self, key: K) -> int:
        i = self._index.get(key)
        if i is None:
            raise UsageError("no link with this key")
        return i

    def _rescale(self) -> None:
        """Keep deficits in units of 1/min(w) byte after the smallest weight changed."""
        new = min(self._weights, default=1)
        old = self._min_weight
        if new != old:
            self._deficits = [d * new // old for d in self._deficits]
            self._min_weight = new

    def _next_turns(self, i: int, cost: int, eligible: Callable[[K], bool] | None) -> K | None:
        """Start fresh turns from link `i` on until one can pay `cost`."""
        keys, deficits, quanta, ok = self._keys, self._deficits, self._quanta, self._ok
        n = len(keys)
        for _ in range(n):
            key = keys[i]
            if eligible is None or eligible(key):
                deficit = deficits[i] + quanta[i] - cost
                if deficit >= 0:
                    deficits[i] = deficit
                    self._cur = i
                    self._open = True
                    return key
                deficits[i] = deficit + cost
                ok[i] = True
            else:
                deficits[i] = 0
                ok[i] = False
            i += 1
            if i == n:
                i = 0
        return self._skip_rounds(i, cost)

    def _skip_rounds(self, start: int, cost: int) -> K | None:
        """A whole round from `start` could not pay `cost`: run the rounds up to the one in
        which the first eligible link can pay, in one step."""
        keys, deficits, quanta, ok = self._keys, self._deficits, self._quanta, self._ok
        n = len(keys)
        winner, rounds = -1, 0
        for step in range(n):
            j = (start + step) % n
            if ok[j]:
                need = -((deficits[j] - cost) // quanta[j])  # turns until it can pay, >= 1
                if winner < 0 or need < rounds:
                    winner, rounds = j, need
        if winner < 0:
            self._cur = start
            self._open = False
            return None
        for step in range(n):
            j = (start + step) % n
            if ok[j]:  # rounds - 1 whole rounds, then the last one up to the winner
                deficits[j] += (rounds - 1 + (step < (winner - start) % n)) * quanta[j]
        deficits[winner] += quanta[winner] - cost
        self._cur = winner
        self._open = True
        return keys[winner]
