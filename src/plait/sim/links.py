"""Link settings as data: one `PathSpec` per direction of a link, and what can go wrong.

Everything here is frozen and validated on construction (`plait.errors.ConfigError`);
`plait.sim.network.Path` is the live model that follows these settings. Delays and
times are integer nanoseconds, rates bits per second, MTU and buffers bytes of IP
packet (datagram + 28 bytes of IPv4 + UDP). Probabilities are per datagram.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Any, Final

import attrs

from plait._types import NS_PER_MS, NS_PER_S
from plait.errors import ConfigError
from plait.sim._protocol import Side
from plait.wire import UDP_IPV4_OVERHEAD

__all__ = [
    "OVERHEAD",
    "DelaySchedule",
    "GilbertElliott",
    "LinkSpec",
    "Outage",
    "PathSpec",
    "RateSchedule",
]

OVERHEAD: Final = UDP_IPV4_OVERHEAD
"""Bytes of IPv4 + UDP header each datagram costs on a simulated link."""


def _probability(inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{attr.name} must be in [0, 1], got {value}")


def _non_negative(inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    if value < 0:
        raise ConfigError(f"{attr.name} must be >= 0, got {value}")


def _positive(inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{attr.name} must be > 0, got {value}")


@attrs.frozen
class GilbertElliott:
    """Two-state burst loss (Gilbert 1960, Elliott 1963), stepped once per datagram.

    In the good state a datagram is lost with `loss_good`, in the bad one with
    `loss_bad`; after each datagram the state flips with `p_good_bad` or `p_bad_good`.
    Bad spells last 1/p_bad_good datagrams on average.
    """

    p_good_bad: float = attrs.field(validator=_probability)
    p_bad_good: float = attrs.field(validator=_probability)
    loss_good: float = attrs.field(default=0.0, validator=_probability)
    loss_bad: float = attrs.field(default=1.0, validator=_probability)

    @classmethod
    def bursts(cls, loss: float, mean_burst: float) -> GilbertElliott:
        """Loss rate `loss` in bursts of `mean_burst` datagrams on average (every datagram
        in a bad spell is lost, none in a good one)."""
        if not 0.0 < loss < 1.0 or mean_burst < 1.0:
            raise ConfigError("bursts needs 0 < loss < 1 and mean_burst >= 1")
        p_bg = 1.0 / mean_burst
        return cls(p_good_bad=min(1.0, loss * p_bg / (1.0 - loss)), p_bad_good=p_bg)

    @property
    def mean_loss(self) -> float:
        """The long-run loss rate."""
        total = self.p_good_bad + self.p_bad_good
        if total == 0.0:
            return self.loss_good
        bad = self.p_good_bad / total
        return bad * self.loss_bad + (1.0 - bad) * self.loss_good


def _points(value: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple((int(t), int(d)) for t, d in value)


@attrs.frozen
class DelaySchedule:
    """A one-way propagation delay that changes over time: linear between `points`
    ``(time_ns, delay_ns)``, times counted from the start of the run. Before the first
    point the first delay holds, after the last the last, unless `period_ns` makes the
    schedule repeat (then times are taken modulo the period)."""

    points: tuple[tuple[int, int], ...] = attrs.field(converter=_points)
    period_ns: int | None = None

    def __attrs_post_init__(self) -> None:
        times = [t for t, _ in self.points]
        if not times or times != sorted(times) or min(d for _, d in self.points) < 0:
            raise ConfigError("DelaySchedule needs sorted times and delays >= 0")
        if self.period_ns is not None and self.period_ns <= 0:
            raise ConfigError("period_ns must be > 0")

    @classmethod
    def swing(
        cls, low_ns: int, high_ns: int, period_ns: int, *, square: bool = False
    ) -> DelaySchedule:
        """Delay swinging between `low_ns` and `high_ns` once per `period_ns`: a triangle
        wave (low at 0, high at half period), or a square wave (low for the first half)."""
        half = period_ns // 2
        points: tuple[tuple[int, int], ...]
        if square:
            points = ((0, low_ns), (half - 1, low_ns), (half, high_ns), (period_ns - 1, high_ns))
        else:
            points = ((0, low_ns), (half, high_ns), (period_ns, low_ns))
        return cls(points, period_ns=period_ns)

    def at(self, t: int) -> int:
        """The one-way delay (ns) of a datagram leaving at `t` ns after the start."""
        if self.period_ns is not None:
            t %= self.period_ns
        points = self.points
        i = bisect.bisect_right(points, (t, 2**63))
        if i == 0:
            return points[0][1]
        if i == len(points):
            return points[-1][1]
        (t0, d0), (t1, d1) = points[i - 1], points[i]
        return d0 + (d1 - d0) * (t - t0) // (t1 - t0)


@attrs.frozen
class RateSchedule:
    """A bottleneck rate that changes over time, as a cellular link's does.

    Either fixed `steps` ``(time_ns, rate_bps)``: the rate holds from each time until
    the next (before the first, the path's own `rate_bps`), times from the start of the
    run; or, with `every_ns`, a new rate drawn uniformly from ``[low_bps, high_bps]``
    every `every_ns` from the path's own seeded generator (so each seed moves
    differently). A datagram is serialized at the rate in force when it starts."""

    steps: tuple[tuple[int, int], ...] = attrs.field(default=(), converter=_points)
    every_ns: int | None = None
    low_bps: int = 0
    high_bps: int = 0

    def __attrs_post_init__(self) -> None:
        times = [t for t, _ in self.steps]
        if times != sorted(times) or any(r <= 0 for _, r in self.steps):
            raise ConfigError("RateSchedule steps need sorted times and rates > 0")
        if self.every_ns is not None and (
            self.every_ns <= 0 or not 0 < self.low_bps <= self.high_bps or self.steps
        ):
            raise ConfigError("a moving RateSchedule needs every_ns > 0, 0 < low <= high")

    @classmethod
    def moving(cls, low_bps: int, high_bps: int, every_ns: int) -> RateSchedule:
        """A new rate in ``[low_bps, high_bps]`` every `every_ns`, per seed."""
        return cls(every_ns=every_ns, low_bps=low_bps, high_bps=high_bps)


@attrs.frozen
class Outage:
    """A link (or every link, when `link` is None) is down from `start_ns` to `end_ns`
    (times from the start of the run, end exclusive), in one direction or both."""

    start_ns: int = attrs.field(validator=_non_negative)
    end_ns: int
    link: int | None = None
    direction: Side | None = None
    """The sending side whose datagrams are dropped; None: both directions."""

    def __attrs_post_init__(self) -> None:
        if self.end_ns <= self.start_ns:
            raise ConfigError("an outage must end after it starts")


@attrs.frozen
class PathSpec:
    """One direction of one link. Delays in ns, rates in bits per second, MTU and buffer
    in bytes of IP packet (datagram + 28)."""

    rate_bps: int = attrs.field(validator=_positive)
    delay_ns: int = attrs.field(validator=_non_negative)
    jitter_ns: int = attrs.field(default=0, validator=_non_negative)
    jitter_reorders: bool = False
    """Let jitter reorder datagrams; by default arrivals are clamped to stay FIFO."""
    buffer_bytes: int | None = None
    """Bottleneck buffer; None: 100 ms at the path's rate, at least 32 KB."""
    loss: float = attrs.field(default=0.0, validator=_probability)
    burst: GilbertElliott | None = None
    reorder: float = attrs.field(default=0.0, validator=_probability)
    reorder_delay_ns: int = attrs.field(default=10 * NS_PER_MS, validator=_positive)
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    duplicate_delay_ns: int = attrs.field(default=NS_PER_MS, validator=_positive)
    corrupt: float = attrs.field(default=0.0, validator=_probability)
    mtu: int = attrs.field(default=1500, validator=_positive)
    delay_schedule: DelaySchedule | None = None
    """Overrides `delay_ns` with a delay that changes over time."""
    rate_schedule: RateSchedule | None = None
    """Overrides `rate_bps` with a rate that changes over time (`rate_bps` is then the
    rate before the first step; a moving schedule starts with a drawn rate)."""
    mtu_schedule: tuple[tuple[int, int], ...] = attrs.field(default=(), converter=_points)
    """Steps ``(time_ns, mtu)``: the path MTU holds from each time until the next
    (before the first, `mtu`), times from the start of the run, as `RateSchedule`'s
    steps: a route change that shrinks the path (a black hole for what was bigger)."""

    def __attrs_post_init__(self) -> None:
        if self.buffer_bytes is not None and self.buffer_bytes < self.max_mtu:
            raise ConfigError("buffer_bytes must hold at least one MTU")
        times = [t for t, _ in self.mtu_schedule]
        if times != sorted(times) or any(m <= 0 for _, m in self.mtu_schedule):
            raise ConfigError("mtu_schedule needs sorted times and MTUs > 0")

    @property
    def max_mtu(self) -> int:
        """The largest MTU the path ever has."""
        return max((self.mtu, *(m for _, m in self.mtu_schedule)))

    def mtu_at(self, t: int) -> int:
        """The path MTU at `t` ns after the start of the run."""
        steps = self.mtu_schedule
        i = bisect.bisect_right(steps, (t, 2**63))
        return self.mtu if i == 0 else steps[i - 1][1]

    @property
    def buffer(self) -> int:
        """The bottleneck buffer in bytes (the default resolved)."""
        if self.buffer_bytes is not None:
            return self.buffer_bytes
        return max(32_768, self.max_mtu, self.rate_bps // 80)

    def tx_ns(self, size: int) -> int:
        """Nanoseconds a datagram of `size` bytes occupies the line (rounded up)."""
        return ((size + OVERHEAD) * 8 * NS_PER_S + self.rate_bps - 1) // self.rate_bps


@attrs.frozen
class LinkSpec:
    """One link: its A→B path and its B→A path (the same settings unless given)."""

    forward: PathSpec
    reverse: PathSpec | None = None

    def path(self, direction: Side) -> PathSpec:
        """The settings of the path that carries `direction`'s datagrams."""
        if direction is Side.B and self.reverse is not None:
            return self.reverse
        return self.forward
