"""Sequence numbers: serial arithmetic, unwrapping, and a sliding receive window.

The wire carries truncated counters (16-bit per-link sequence, 32-bit data sequence,
16-bit message numbers) that wrap. Rules, after RFC 1982 and RFC 9000 §A.3:

* Never compare wire values with a raw ``<``; use `SerialSpace.diff`/`lt`, which are
  correct across the wrap while two values are less than half the space apart.
* Inside plait, counters are *unwrapped* to unbounded integers as soon as they are
  received (`SerialSpace.unwrap`, relative to the next expected value), and everything
  after that (windows, maps, ordering) works on plain integers.

`ReceiveWindow` tracks which unwrapped numbers have arrived over the last `size` of them:
duplicate detection, reordering, and loss (a number that slides out unreceived).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from plait.errors import ConfigError

__all__ = ["SEQ16", "SEQ32", "ReceiveWindow", "SerialSpace", "Verdict"]


class SerialSpace:
    """Arithmetic on `bits`-wide wrapping counters (RFC 1982)."""

    __slots__ = ("bits", "half", "mask", "modulus")

    def __init__(self, bits: int) -> None:
        if bits < 2:
            raise ConfigError("a serial space needs at least 2 bits")
        self.bits: Final = bits
        self.modulus: Final = 1 << bits
        self.mask: Final = self.modulus - 1
        self.half: Final = self.modulus >> 1

    def __repr__(self) -> str:
        return f"SerialSpace({self.bits})"

    def add(self, a: int, n: int) -> int:
        """``a + n`` in the space (n may be negative)."""
        return (a + n) & self.mask

    def diff(self, a: int, b: int) -> int:
        """Signed distance ``a - b``, in ``[-half, half)``.

        At exactly half the space apart RFC 1982 leaves the order undefined: `diff`
        returns ``-half`` either way round and `lt` is False either way round.
        """
        d = (a - b) & self.mask
        return d - self.modulus if d >= self.half else d

    def lt(self, a: int, b: int) -> bool:
        """True when `a` comes before `b` (RFC 1982 ``a < b``)."""
        return 0 < ((b - a) & self.mask) < self.half

    def unwrap(self, wire: int, expected: int) -> int:
        """The integer congruent to `wire` nearest to `expected`.

        `expected` is usually the next number due (highest seen + 1). The result lies in
        ``(expected - half, expected + half]``; it may be negative near the start, which
        callers treat as too old.
        """
        candidate = (expected & ~self.mask) | (wire & self.mask)
        if candidate <= expected - self.half:
            return candidate + self.modulus
        if candidate > expected + self.half:
            return candidate - self.modulus
        return candidate


#: Per-link sequence numbers and per-stream message numbers.
SEQ16: Final = SerialSpace(16)
#: Session-wide data sequence numbers and µs timestamps.
SEQ32: Final = SerialSpace(32)


class Verdict(IntEnum):
    """What a receive window says about one number."""

    NEW = 0
    """Not seen before and inside (or ahead of) the window: accept."""
    DUPLICATE = 1
    """Already received: drop."""
    TOO_OLD = 2
    """Below the window (or before `start`): cannot tell, so drop."""


_NEW: Final = Verdict.NEW
_DUPLICATE: Final = Verdict.DUPLICATE


class ReceiveWindow:
    """Which of the last `size` unwrapped sequence numbers have arrived.

    Numbers from `start` on are expected; the window covers
    ``highest - size + 1 .. highest``. Memory is `size` bytes whatever arrives.
    `check` is a pure query (use it before authenticating a datagram); `receive`
    records the number and updates the counters.

    Counters: ``received`` (accepted), ``duplicates``, ``too_old``, ``reordered``
    (accepted below the highest), ``max_reorder`` (largest such distance), ``lost``
    (numbers that slid out of the window unreceived; a gap still inside the window is
    not lost yet, see `missing_ranges`).
    """

    __slots__ = (
        "_ring",
        "_top",
        "_zeros",
        "duplicates",
        "lost",
        "max_reorder",
        "received",
        "reordered",
        "size",
        "start",
        "too_old",
    )

    def __init__(self, size: int = 1024, start: int = 0) -> None:
        if size < 1:
            raise ConfigError("a receive window needs size >= 1")
        self.size: Final = size
        self.start: Final = start
        self._ring = bytearray(size)
        self._zeros: Final = memoryview(bytes(size))
        self._top = start - 1
        self.received = 0
        self.duplicates = 0
        self.too_old = 0
        self.reordered = 0
        self.max_reorder = 0
        self.lost = 0

    @property
    def highest(self) -> int | None:
        """The highest number received, or None before the first."""
        return self._top if self._top >= self.start else None

    @property
    def floor(self) -> int:
        """The lowest number the window can still accept."""
        return max(self.start, self._top - self.size + 1)

    def expected(self) -> int:
        """The next number due: the reference for unwrapping wire values."""
        return self._top + 1

    def unwrap(self, wire: int, space: SerialSpace) -> int:
        """Unwrap a `space`-wide wire value relative to this window."""
        return space.unwrap(wire, self._top + 1)

    def check(self, n: int) -> Verdict:
        """What `receive(n)` would say, without changing anything."""
        top = self._top
        if n > top:
            return Verdict.NEW
        if n < self.start or n <= top - self.size:
            return Verdict.TOO_OLD
        return Verdict.DUPLICATE if self._ring[n % self.size] else Verdict.NEW

    def __contains__(self, n: int) -> bool:
        return self.check(n) is Verdict.DUPLICATE

    def receive(self, n: int) -> Verdict:
        """Record number `n` and return its verdict."""
        top = self._top
        if n == top + 1:  # the common case, inlined: one slot leaves, one enters
            size, ring = self.size, self._ring
            slot = n % size
            if not ring[slot] and n - size >= self.start:
                self.lost += 1
            ring[slot] = 1
            self._top = n
            self.received += 1
            return _NEW
        verdict = self.check(n)
        if verdict is _NEW:
            self.received += 1
            if n > top:
                self._advance(n)
            else:
                self.reordered += 1
                self.max_reorder = max(self.max_reorder, top - n)
                self._ring[n % self.size] = 1
        elif verdict is _DUPLICATE:
            self.duplicates += 1
        else:
            self.too_old += 1
        return verdict

    # --- internals ---------------------------------------------------------------------

    def _advance(self, n: int) -> None:
        top, size, ring = self._top, self.size, self._ring
        if n - top >= size:  # everything in the window leaves
            lo = max(top - size + 1, self.start)
            if lo <= top:
                self.lost += top - lo + 1 - self._count_received(lo, top)
            never_entered = n - size - max(top + 1, self.start) + 1
            self.lost += max(0, never_entered)
            ring[:] = self._zeros
        else:  # numbers top-size+1 .. n-size leave; their slots are those of top+1 .. n
            lo = max(top - size + 1, self.start)
            hi = n - size
            if hi >= lo:
                self.lost += hi - lo + 1 - self._count_received(lo, hi)
            self._clear(top + 1, n)
        ring[n % size] = 1
        self._top = n

    def _segments(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """Ring slices holding numbers lo..hi (at most `size` of them): (first number, i, j)."""
        size = self.size
        i, j = lo % size, hi % size + 1
        if i < j:
            return [(lo, i, j)]
        return [(lo, i, size), (lo + size - i, 0, j)]

    def _count_received(self, lo: int, hi: int) -> int:
        return sum(self._ring.count(1, i, j) for _, i, j in self._segments(lo, hi))

    def _clear(self, lo: int, hi: int) -> None:
        for _, i, j in self._segments(lo, hi):
            self._ring[i:j] = self._zeros[: j - i]

    def _runs(self, value: int) -> list[tuple[int, int]]:
        """Ascending inclusive ranges of window numbers whose slot holds `value` (0 or 1)."""
        lo, hi = self.floor, self._top
        if hi < lo:
            return []
        ring = self._ring
        want, other = (b"\x01", b"\x00") if value else (b"\x00", b"\x01")
        runs: list[tuple[int, int]] = []
        for first, i, j in self._segments(lo, hi):
            pos = ring.find(want, i, j)
            while pos != -1:
                end = ring.find(other, pos, j)
                end = j if end == -1 else end
                a, b = first + pos - i, first + end - i - 1
                if runs and runs[-1][1] == a - 1:  # joins the run cut by the ring's end
                    a = runs.pop()[0]
                runs.append((a, b))
                pos = ring.find(want, end, j)
        return runs

    def received_ranges(self) -> list[tuple[int, int]]:
        """Received numbers inside the window, as ascending inclusive ranges."""
        return self._runs(1)

    def missing_ranges(self) -> list[tuple[int, int]]:
        """Numbers inside the window not (yet) received, as ascending inclusive ranges."""
        return self._runs(0)
