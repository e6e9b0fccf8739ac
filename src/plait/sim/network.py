"""The live link model: one FIFO bottleneck per link and direction, with everything that
goes wrong on real ones.

A datagram handed to a `Path` meets, in this order:

1. **MTU**: if ``len + 28`` (IPv4 + UDP) exceeds the path MTU (at the time it is
   offered, under an `mtu_schedule`), it is dropped.
2. **Outage**: if the path is down at the moment it is offered, it is dropped.
3. **Bottleneck queue**: a FIFO of `buffer_bytes` drained at `rate_bps` (or at the
   rate a `RateSchedule` sets when the datagram's serialization starts). A datagram
   occupies ``ceil((len + 28) * 8e9 / rate_bps)`` ns of the line; it is accepted only if
   the bytes still queued (those whose serialization has not finished, the one on the
   line included) plus its own fit the buffer, else it is tail-dropped.
4. **Loss on the line** (after serialization, so lost datagrams still cost capacity):
   Gilbert-Elliott burst loss (one state step per datagram), then Bernoulli loss.
5. **Delay**: propagation delay (fixed, or from a `DelaySchedule`), plus uniform jitter.
   Unless `jitter_reorders` is set, arrival times are clamped so the path stays FIFO.
   With probability `reorder` a datagram is held back an extra (0, reorder_delay_ns]
   outside the FIFO clamp, so later ones overtake it.
6. **Outage in flight**: a datagram whose flight overlaps an outage window is dropped.
7. **Corruption** (1-4 distinct bits flipped; still delivered) and **duplication** (a
   second copy up to `duplicate_delay_ns` later).

Each path draws from its own seeded `random.Random`, and draws nothing for a feature
whose probability is 0, so one path's settings never shift another path's randomness.
Times are integer nanoseconds of the simulation clock.
"""

from __future__ import annotations

import bisect
import enum
import random
from collections import deque
from collections.abc import Iterable
from typing import Final

import attrs

from plait._types import NS_PER_S
from plait.sim._protocol import Side
from plait.sim.links import OVERHEAD, Outage, PathSpec, RateSchedule

__all__ = [
    "CORRUPTED",
    "DUPLICATED",
    "REORDERED",
    "Drop",
    "Path",
    "PathStats",
    "fate_cause",
    "outage_windows",
]


class Drop(enum.IntEnum):
    """Why a path dropped a datagram. 0 means it was delivered."""

    MTU = 1
    OUTAGE = 2
    QUEUE = 3
    BURST = 4
    """Lost by the Gilbert-Elliott model."""
    LOSS = 5
    """Lost by independent (Bernoulli) loss."""


#: Fate flags, or-ed above the drop cause: what happened to a delivered datagram.
CORRUPTED: Final = 0x10
DUPLICATED: Final = 0x20
REORDERED: Final = 0x40
_CAUSE_MASK: Final = 0x0F


@attrs.frozen
class PathStats:
    """What one path did over a run (datagram counts; bytes without IP/UDP headers)."""

    link: int
    direction: Side
    offered: int
    offered_bytes: int
    carried: int
    """Datagrams that arrived at the receiver (duplicates included)."""
    carried_bytes: int
    drops: dict[str, int]
    corrupted: int
    duplicated: int
    reordered: int


def outage_windows(
    outages: Iterable[Outage], link: int, direction: Side, epoch: int
) -> list[tuple[int, int]]:
    """The merged, sorted absolute ``[start, end)`` windows in which a path is down."""
    spans = sorted(
        (epoch + o.start_ns, epoch + o.end_ns)
        for o in outages
        if (o.link is None or o.link == link) and (o.direction is None or o.direction == direction)
    )
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


class Path:
    """The live state of one direction of one link."""

    __slots__ = (
        "_bad",
        "_busy",
        "_dup_delay",
        "_ends",
        "_epoch",
        "_last_arrival",
        "_queue",
        "_queued",
        "_rate",
        "_rate_rng",
        "_rates",
        "_reorder_delay",
        "_rng",
        "_starts",
        "buffer",
        "carried",
        "carried_bytes",
        "corrupted",
        "direction",
        "drops",
        "duplicated",
        "link",
        "offered",
        "offered_bytes",
        "reordered",
        "spec",
    )

    def __init__(
        self,
        spec: PathSpec,
        rng: random.Random,
        *,
        link: int = 0,
        direction: Side = Side.A,
        epoch: int = 0,
        outages: Iterable[tuple[int, int]] = (),
    ) -> None:
        self.spec = spec
        self.link = link
        self.direction = direction
        self.buffer = spec.buffer
        self._rng = rng
        self._rate = spec.rate_bps
        schedule = spec.rate_schedule
        self._rates: list[int] = []  # a moving schedule's rates, drawn as time goes
        self._rate_rng = rng  # a moving schedule draws from a generator of its own:
        if schedule is not None and schedule.every_ns is not None:
            self._rate_rng = random.Random(rng.getrandbits(64))
        self._epoch = epoch
        self._reorder_delay = spec.reorder_delay_ns
        self._dup_delay = spec.duplicate_delay_ns
        windows = list(outages)
        self._starts = [s for s, _ in windows]
        self._ends = [e for _, e in windows]
        self._queue: deque[tuple[int, int]] = deque()  # (serialization end, wire bytes)
        self._queued = 0
        self._busy = -(2**62)
        self._last_arrival = -(2**62)
        self._bad = False
        self.offered = self.offered_bytes = 0
        self.carried = self.carried_bytes = 0
        self.drops = [0] * (max(Drop) + 1)
        self.corrupted = self.duplicated = self.reordered = 0

    def down(self, start: int, end: int) -> bool:
        """True if the path is down at any moment of ``[start, end]``."""
        i = bisect.bisect_right(self._ends, start)
        return i < len(self._starts) and self._starts[i] <= end

    def transmit(  # noqa: PLR0911, PLR0912  (the hot path: one flat function, stage by stage)
        self, data: bytes, now: int
    ) -> tuple[int, int, bytes, int]:
        """Offer one datagram at `now`.

        Returns:
            ``(fate, arrival, delivered_bytes, duplicate_arrival)``: `fate` is 0 or a
            `Drop` cause, or-ed with `CORRUPTED`/`DUPLICATED`/`REORDERED`; `arrival` is
            -1 when dropped; `duplicate_arrival` is -1 unless a second copy arrives.
        """
        spec = self.spec
        size = len(data) + OVERHEAD
        self.offered += 1
        self.offered_bytes += len(data)
        mtu = spec.mtu_at(now - self._epoch) if spec.mtu_schedule else spec.mtu
        if size > mtu:
            return self._drop(Drop.MTU, data)
        if self._starts and self.down(now, now):
            return self._drop(Drop.OUTAGE, data)
        queue = self._queue
        while queue and queue[0][0] <= now:
            self._queued -= queue.popleft()[1]
        if self._queued + size > self.buffer:
            return self._drop(Drop.QUEUE, data)
        start = self._busy if self._busy > now else now
        rates = spec.rate_schedule
        rate = self._rate if rates is None else self._rate_at(rates, start)
        finish = start + (size * 8 * NS_PER_S + rate - 1) // rate
        self._busy = finish
        queue.append((finish, size))
        self._queued += size

        rng = self._rng
        burst = spec.burst
        if burst is not None:
            lost = rng.random() < (burst.loss_bad if self._bad else burst.loss_good)
            if rng.random() < (burst.p_bad_good if self._bad else burst.p_good_bad):
                self._bad = not self._bad
            if lost:
                return self._drop(Drop.BURST, data)
        if spec.loss and rng.random() < spec.loss:
            return self._drop(Drop.LOSS, data)

        schedule = spec.delay_schedule
        arrival = finish + (
            spec.delay_ns if schedule is None else schedule.at(finish - self._epoch)
        )
        if spec.jitter_ns:
            arrival += int(rng.random() * (spec.jitter_ns + 1))
        fate = 0
        if spec.reorder and rng.random() < spec.reorder:
            arrival += 1 + int(rng.random() * self._reorder_delay)
            fate |= REORDERED
            self.reordered += 1
        elif not spec.jitter_reorders:
            arrival = max(arrival, self._last_arrival)
            self._last_arrival = arrival
        if self._starts and self.down(now, arrival):
            return self._drop(Drop.OUTAGE, data)
        if spec.corrupt and data and rng.random() < spec.corrupt:
            data = _flip_bits(data, rng)
            fate |= CORRUPTED
            self.corrupted += 1
        dup_arrival = -1
        if spec.duplicate and rng.random() < spec.duplicate:
            dup_arrival = arrival + 1 + int(rng.random() * self._dup_delay)
            fate |= DUPLICATED
            self.duplicated += 1
        return fate, arrival, data, dup_arrival

    def _rate_at(self, schedule: RateSchedule, t: int) -> int:
        """The bottleneck rate at absolute time `t` under `schedule`."""
        offset = t - self._epoch
        if schedule.every_ns is None:
            i = bisect.bisect_right(schedule.steps, (offset, 2**63))
            return self._rate if i == 0 else schedule.steps[i - 1][1]
        index = max(0, offset // schedule.every_ns)
        while len(self._rates) <= index:
            self._rates.append(self._rate_rng.randint(schedule.low_bps, schedule.high_bps))
        return self._rates[index]

    def _drop(self, cause: Drop, data: bytes) -> tuple[int, int, bytes, int]:
        self.drops[cause] += 1
        return int(cause), -1, data, -1

    def stats(self) -> PathStats:
        """A snapshot of this path's counters."""
        return PathStats(
            link=self.link,
            direction=self.direction,
            offered=self.offered,
            offered_bytes=self.offered_bytes,
            carried=self.carried,
            carried_bytes=self.carried_bytes,
            drops={cause.name.lower(): self.drops[cause] for cause in Drop},
            corrupted=self.corrupted,
            duplicated=self.duplicated,
            reordered=self.reordered,
        )


def _flip_bits(data: bytes, rng: random.Random) -> bytes:
    """`data` with 1-4 distinct bits flipped."""
    bits = len(data) * 8
    out = bytearray(data)
    for bit in rng.sample(range(bits), min(bits, 1 + int(rng.random() * 4))):
        out[bit >> 3] ^= 1 << (bit & 7)
    return bytes(out)


def fate_cause(fate: int) -> int:
    """The drop cause in a fate (0 when delivered)."""
    return fate & _CAUSE_MASK
