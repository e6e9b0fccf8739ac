"""Seeded traffic generators: when each message is sent, on which stream, how big.

A generator is a frozen spec; `schedule()` turns it into a lazy, time-ordered iterator
of ``(time_ns, stream, size, budget_ns)`` for one run, drawing from the
`random.Random` it is given. The runner builds each message's payload
(`plait.sim.payload`) and calls ``send`` at that time on the generator's `sender` side.
Times in a spec (`start_ns`, `stop_ns`) count from the start of the traffic; a budget of
None means the scenario's ``latency_ns``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import attrs

from plait._types import NS_PER_MS, NS_PER_S
from plait.errors import ConfigError
from plait.sim._protocol import Side
from plait.sim.payload import MAX_BUDGET_NS, MIN_SIZE

__all__ = ["Bursts", "Cbr", "Mixed", "Traffic", "TrafficItem", "Video"]

TrafficItem = tuple[int, int, int, int]
"""``(time_ns, stream, size, budget_ns)``: one message to send."""


def _size(inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    if not MIN_SIZE <= value <= 65_536:
        raise ConfigError(f"{attr.name} must be in [{MIN_SIZE}, 65536], got {value}")


def _sizes(inst: object, attr: attrs.Attribute[Any], value: tuple[int, int]) -> None:
    lo, hi = value
    if not MIN_SIZE <= lo <= hi <= 65_536:
        raise ConfigError(f"{attr.name} must be a range within [{MIN_SIZE}, 65536]")


def _positive(inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{attr.name} must be > 0, got {value}")


def _stream(inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    if not 0 <= value <= 0xFF:
        raise ConfigError(f"{attr.name} must be in [0, 255], got {value}")


def _budget(inst: object, attr: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and not 1_000 <= value <= MAX_BUDGET_NS:
        raise ConfigError(f"{attr.name} must be in [1 µs, {MAX_BUDGET_NS} ns], got {value}")


def _window(start: int, stop: int, start_ns: int, stop_ns: int | None) -> tuple[int, int]:
    return start + start_ns, stop if stop_ns is None else min(stop, start + stop_ns)


@attrs.frozen
class Cbr:
    """Constant bit rate: one message of `size` bytes every `interval_ns`."""

    stream: int = attrs.field(default=0, validator=_stream)
    size: int = attrs.field(default=1200, validator=_size)
    interval_ns: int = attrs.field(default=10 * NS_PER_MS, validator=_positive)
    budget_ns: int | None = attrs.field(default=None, validator=_budget)
    sender: Side = Side.A
    start_ns: int = 0
    stop_ns: int | None = None

    @classmethod
    def at_rate(cls, rate_bps: int, size: int, **kwargs: Any) -> Cbr:
        """`size`-byte messages spaced to make `rate_bps` of payload."""
        return cls(size=size, interval_ns=size * 8 * NS_PER_S // rate_bps, **kwargs)

    def schedule(
        self, rng: random.Random, start: int, stop: int, budget: int
    ) -> Iterator[TrafficItem]:
        """The messages between `start` and `stop` (absolute ns)."""
        t, end = _window(start, stop, self.start_ns, self.stop_ns)
        budget = budget if self.budget_ns is None else self.budget_ns
        while t < end:
            yield t, self.stream, self.size, budget
            t += self.interval_ns


@attrs.frozen
class Bursts:
    """`count` messages at once (or `spacing_ns` apart) every `period_ns`."""

    stream: int = attrs.field(default=0, validator=_stream)
    size: int = attrs.field(default=1200, validator=_size)
    count: int = attrs.field(default=10, validator=_positive)
    period_ns: int = attrs.field(default=100 * NS_PER_MS, validator=_positive)
    spacing_ns: int = 0
    budget_ns: int | None = attrs.field(default=None, validator=_budget)
    sender: Side = Side.A
    start_ns: int = 0
    stop_ns: int | None = None

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.spacing_ns * (self.count - 1) < self.period_ns:
            raise ConfigError("a burst must end before the next one starts")

    def schedule(
        self, rng: random.Random, start: int, stop: int, budget: int
    ) -> Iterator[TrafficItem]:
        """The messages between `start` and `stop` (absolute ns)."""
        t, end = _window(start, stop, self.start_ns, self.stop_ns)
        budget = budget if self.budget_ns is None else self.budget_ns
        while t < end:
            for i in range(self.count):
                if t + i * self.spacing_ns < end:
                    yield t + i * self.spacing_ns, self.stream, self.size, budget
            t += self.period_ns


@attrs.frozen
class Mixed:
    """Poisson arrivals (mean gap `mean_interval_ns`) of sizes drawn from `sizes`."""

    stream: int = attrs.field(default=0, validator=_stream)
    sizes: tuple[int, ...] = (64, 200, 600, 1200, 3000)
    mean_interval_ns: int = attrs.field(default=5 * NS_PER_MS, validator=_positive)
    budget_ns: int | None = attrs.field(default=None, validator=_budget)
    sender: Side = Side.A
    start_ns: int = 0
    stop_ns: int | None = None

    def __attrs_post_init__(self) -> None:
        if not self.sizes or not all(MIN_SIZE <= s <= 65_536 for s in self.sizes):
            raise ConfigError(f"sizes must be non-empty, each in [{MIN_SIZE}, 65536]")

    def schedule(
        self, rng: random.Random, start: int, stop: int, budget: int
    ) -> Iterator[TrafficItem]:
        """The messages between `start` and `stop` (absolute ns)."""
        t, end = _window(start, stop, self.start_ns, self.stop_ns)
        budget = budget if self.budget_ns is None else self.budget_ns
        rate = 1.0 / self.mean_interval_ns
        while True:
            t += 1 + int(rng.expovariate(rate))
            if t >= end:
                return
            yield t, self.stream, self.sizes[int(rng.random() * len(self.sizes))], budget


@attrs.frozen
class Video:
    """Video-like: a large frame (`frame_bytes` range, fragmented by the endpoint) every
    `frame_interval_ns` on `stream`, and `side_per_frame` small messages (audio,
    metadata) evenly spaced between frames on `side_stream`."""

    stream: int = attrs.field(default=0, validator=_stream)
    frame_interval_ns: int = attrs.field(default=33_333_333, validator=_positive)
    frame_bytes: tuple[int, int] = attrs.field(default=(20_000, 60_000), validator=_sizes)
    side_stream: int = attrs.field(default=1, validator=_stream)
    side_bytes: tuple[int, int] = attrs.field(default=(100, 400), validator=_sizes)
    side_per_frame: int = 2
    budget_ns: int | None = attrs.field(default=None, validator=_budget)
    sender: Side = Side.A
    start_ns: int = 0
    stop_ns: int | None = None

    def schedule(
        self, rng: random.Random, start: int, stop: int, budget: int
    ) -> Iterator[TrafficItem]:
        """The messages between `start` and `stop` (absolute ns)."""
        t, end = _window(start, stop, self.start_ns, self.stop_ns)
        budget = budget if self.budget_ns is None else self.budget_ns
        gap = self.frame_interval_ns // (self.side_per_frame + 1)
        lo, hi = self.frame_bytes
        side_lo, side_hi = self.side_bytes
        while t < end:
            yield t, self.stream, lo + int(rng.random() * (hi - lo + 1)), budget
            for i in range(1, self.side_per_frame + 1):
                if t + i * gap < end:
                    size = side_lo + int(rng.random() * (side_hi - side_lo + 1))
                    yield t + i * gap, self.side_stream, size, budget
            t += self.frame_interval_ns


Traffic = Cbr | Bursts | Mixed | Video
"""Any traffic generator spec."""
