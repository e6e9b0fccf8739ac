"""The named scenarios: links, impairments, traffic and config, as plain data.

A `Scenario` is frozen; derive variants with `Scenario.evolve` (``attrs.evolve``). Times
in a scenario (outages, delay schedules) count from the start of the run, whatever
`clock_start_ns` is. `SCENARIOS` maps each name to its scenario; ``lossy`` is the
demo's default.

The base is four links of 2, 5, 8 and 10 Mbps with one-way delays of 40, 25, 15 and
10 ms (slow cellular to fast wired), and the traffic of a telemetry/control session:
2 Mbps of 1200-byte messages on stream 0 plus a 100-byte control message every 20 ms on
stream 1, each with the default 150 ms deadline.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from plait._types import NS_PER_MS, NS_PER_S
from plait.config import Config, FecConfig, LinkConfig
from plait.errors import ConfigError
from plait.sim.hostile import HostileSpec
from plait.sim.links import (
    DelaySchedule,
    GilbertElliott,
    LinkSpec,
    Outage,
    PathSpec,
    RateSchedule,
)
from plait.sim.payload import MAX_TIME_NS
from plait.sim.traffic import Cbr, Traffic, Video

__all__ = ["SCENARIOS", "Scenario", "default_config", "link", "told"]

MBPS = 1_000_000
_FEC = FecConfig(k=8, m=2)


def default_config(scenario: Scenario) -> Config:
    """The plait config for a scenario: one `LinkConfig` per link at its A→B rate, the
    scenario's FEC and latency budget, and the default MTU bound (1500): plait finds
    each path's own MTU (`plait.pmtu`)."""
    return Config(
        links=tuple(LinkConfig(rate_bps=s.forward.rate_bps) for s in scenario.links),
        fec=scenario.fec,
        psk=scenario.psk,
        latency_ns=scenario.latency_ns,
    )


def _tuple(value: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(value)


@attrs.frozen
class Scenario:
    """Everything one simulated run needs except the seed and the endpoint code."""

    name: str
    description: str
    links: tuple[LinkSpec, ...] = attrs.field(converter=_tuple)
    traffic: tuple[Traffic, ...] = attrs.field(converter=_tuple)
    outages: tuple[Outage, ...] = attrs.field(default=(), converter=_tuple)
    hostile: HostileSpec | None = None
    latency_ns: int = 150 * NS_PER_MS
    """The default deadline budget (`Config.latency_ns`, and traffic without a budget)."""
    fec: FecConfig | None = _FEC
    psk: bytes | None = None
    """A pre-shared key (32 bytes): plait then authenticates every datagram. Without
    one, like UDP itself, plait has no integrity check of its own, so a corrupted
    datagram that a link delivers can become a corrupted message."""
    duration_ns: int = 10 * NS_PER_S
    """How long traffic is generated (from the start of the run)."""
    warmup_ns: int = 250 * NS_PER_MS
    """Traffic starts this long after the clock starts, once the session is up."""
    drain_ns: int = 2 * NS_PER_S
    """After traffic stops the run goes on this long, so every message gets resolved."""
    grace_ns: int = NS_PER_S
    """A message is `unresolved` if it is neither delivered nor expired this long after
    its deadline, at the end of the run."""
    clock_start_ns: int = 0
    """The clock's value when the run starts (both endpoints see it)."""
    config_factory: Callable[[Scenario], Config] = default_config

    def __attrs_post_init__(self) -> None:
        if not self.links or not self.traffic:
            raise ConfigError("a scenario needs links and traffic")
        if self.duration_ns <= 0 or self.drain_ns < 0 or self.warmup_ns < 0:
            raise ConfigError("duration_ns must be > 0, drain_ns and warmup_ns >= 0")
        if not 0 <= self.clock_start_ns <= MAX_TIME_NS - self.duration_ns - self.drain_ns:
            raise ConfigError("clock_start_ns must leave the run within 2**48 ns")
        for outage in self.outages:
            if outage.link is not None and not 0 <= outage.link < len(self.links):
                raise ConfigError(f"outage on link {outage.link}, which does not exist")

    def config(self) -> Config:
        """The plait `Config` both endpoints are built with."""
        return self.config_factory(self)

    def evolve(self, **changes: Any) -> Scenario:
        """A copy with some fields changed."""
        return attrs.evolve(self, **changes)


def link(rate_bps: int, delay_ns: int, **settings: Any) -> LinkSpec:
    """A symmetric link: the same `PathSpec` both ways."""
    return LinkSpec(PathSpec(rate_bps=rate_bps, delay_ns=delay_ns, **settings))


_RATES = (2 * MBPS, 5 * MBPS, 8 * MBPS, 10 * MBPS)
_DELAYS = (40 * NS_PER_MS, 25 * NS_PER_MS, 15 * NS_PER_MS, 10 * NS_PER_MS)
_LOSSES = (0.05, 0.03, 0.02, 0.01)
_TELEMETRY = (
    Cbr.at_rate(2 * MBPS, 1200, stream=0),
    Cbr(stream=1, size=100, interval_ns=20 * NS_PER_MS),
)


def _four(**settings: Any) -> tuple[LinkSpec, ...]:
    return tuple(
        link(rate, delay, jitter_ns=2 * NS_PER_MS, **settings)
        for rate, delay in zip(_RATES, _DELAYS, strict=True)
    )


def _lossy(**settings: Any) -> tuple[LinkSpec, ...]:
    return tuple(
        link(rate, delay, jitter_ns=3 * NS_PER_MS, loss=loss, **settings)
        for rate, delay, loss in zip(_RATES, _DELAYS, _LOSSES, strict=True)
    )


_LOSSY_LINKS = _lossy()
_PEER_DELAYS = (30 * NS_PER_MS, 20 * NS_PER_MS, 15 * NS_PER_MS, 10 * NS_PER_MS)

_DEEP = 400_000
"""Bytes of bottleneck buffer in the capacity scenarios: a modem's, hundreds of ms deep."""
_LOAD = (
    Cbr.at_rate(8 * MBPS, 1200, stream=0),
    Cbr(stream=1, size=100, interval_ns=20 * NS_PER_MS),
)
"""8 Mbps of 1200-byte messages plus control: a third of the base links' capacity, so a
link that loses capacity unnoticed is overloaded by its share."""


def _deep(rates: Iterable[int] = _RATES, **settings: Any) -> tuple[LinkSpec, ...]:
    return tuple(
        link(rate, delay, jitter_ns=2 * NS_PER_MS, buffer_bytes=_DEEP, **settings)
        for rate, delay in zip(rates, _DELAYS, strict=True)
    )


def told(*rates: int | None) -> Callable[[Scenario], Config]:
    """A config factory: the scenario's default config, but plait is told `rates` (a
    ceiling per link, None: unknown) instead of the links' real rates."""

    def factory(scenario: Scenario) -> Config:
        config = default_config(scenario)
        return attrs.evolve(config, links=tuple(LinkConfig(rate_bps=r) for r in rates))

    return factory


def _step(link_spec: LinkSpec, steps: tuple[tuple[int, int], ...]) -> LinkSpec:
    return LinkSpec(attrs.evolve(link_spec.forward, rate_schedule=RateSchedule(steps)))


_ALL = (
    Scenario(
        "clean",
        "4 links (2/5/8/10 Mbps, 40/25/15/10 ms one way, 2 ms jitter), no loss",
        _four(),
        _TELEMETRY,
    ),
    Scenario(
        "lossy",
        "the clean links with 5/3/2/1 % independent loss and 3 ms jitter",
        _LOSSY_LINKS,
        _TELEMETRY,
    ),
    Scenario(
        "bursty",
        "Gilbert-Elliott burst loss: 2-5 % in bursts of 3-8 datagrams on every link",
        tuple(
            link(rate, delay, jitter_ns=3 * NS_PER_MS, burst=GilbertElliott.bursts(loss, burst))
            for rate, delay, loss, burst in zip(
                _RATES, _DELAYS, (0.05, 0.03, 0.03, 0.02), (8, 5, 4, 3), strict=True
            )
        ),
        _TELEMETRY,
    ),
    Scenario(
        "flap",
        "lossy links; the fastest (link 3, 10 Mbps) goes down from 4 s to 6 s",
        _LOSSY_LINKS,
        _TELEMETRY,
        outages=(Outage(4 * NS_PER_S, 6 * NS_PER_S, link=3),),
    ),
    Scenario(
        "blackout",
        "lossy links; every link goes down from 5 s to 6 s",
        _LOSSY_LINKS,
        _TELEMETRY,
        outages=(Outage(5 * NS_PER_S, 6 * NS_PER_S),),
    ),
    Scenario(
        "degraded",
        "lossy links; link 1's RTT swings between 100 and 1200 ms every 4 s",
        (
            *_LOSSY_LINKS[:1],
            link(
                _RATES[1],
                _DELAYS[1],
                jitter_ns=3 * NS_PER_MS,
                loss=_LOSSES[1],
                delay_schedule=DelaySchedule.swing(50 * NS_PER_MS, 600 * NS_PER_MS, 4 * NS_PER_S),
            ),
            *_LOSSY_LINKS[2:],
        ),
        _TELEMETRY,
    ),
    Scenario(
        "asymmetric",
        "a 600 ms RTT satellite link (10 Mbps A->B, 1 Mbps B->A) among cellular links "
        "whose B->A direction is 4-5x slower, and a fast wired one",
        (
            LinkSpec(
                PathSpec(rate_bps=8 * MBPS, delay_ns=20 * NS_PER_MS, jitter_ns=3 * NS_PER_MS),
                PathSpec(rate_bps=2 * MBPS, delay_ns=30 * NS_PER_MS, jitter_ns=5 * NS_PER_MS),
            ),
            LinkSpec(
                PathSpec(rate_bps=5 * MBPS, delay_ns=30 * NS_PER_MS, jitter_ns=3 * NS_PER_MS),
                PathSpec(rate_bps=1 * MBPS, delay_ns=45 * NS_PER_MS, jitter_ns=5 * NS_PER_MS),
            ),
            LinkSpec(
                PathSpec(rate_bps=10 * MBPS, delay_ns=300 * NS_PER_MS, loss=0.005),
                PathSpec(rate_bps=1 * MBPS, delay_ns=300 * NS_PER_MS, loss=0.005),
            ),
            link(10 * MBPS, 10 * NS_PER_MS, jitter_ns=NS_PER_MS, loss=0.01),
        ),
        _TELEMETRY,
    ),
    Scenario(
        "hostile",
        "lossy links that also corrupt (0.5 %), duplicate (1 %) and reorder (2 %), plus "
        "200 junk datagrams/s: random, truncated, bit-flipped and cross-link replays",
        _lossy(corrupt=0.005, duplicate=0.01, reorder=0.02),
        _TELEMETRY,
        hostile=HostileSpec(rate_per_s=200.0),
        psk=hashlib.sha256(b"plait.sim hostile").digest(),
    ),
    Scenario(
        "video",
        "clean links; a 20-60 KB video frame every 33 ms (about 10 Mbps) plus 2 small "
        "messages per frame on stream 1",
        _four(),
        (Video(),),
        latency_ns=250 * NS_PER_MS,
    ),
    Scenario(
        "pmtu",
        "2/5/8/10 Mbps links, 30/20/15/10 ms one way, 2 % loss; link 1's path carries "
        "at most 1400-byte packets, the others 1500; 4 Mbps of 1316-byte video "
        "datagrams, with a psk",
        tuple(
            link(rate, delay, jitter_ns=2 * NS_PER_MS, loss=0.02, mtu=1400 if i == 1 else 1500)
            for i, (rate, delay) in enumerate(zip(_RATES, _PEER_DELAYS, strict=True))
        ),
        (Cbr.at_rate(4 * MBPS, 1316, stream=0),),
        psk=hashlib.sha256(b"plait.sim pmtu").digest(),
    ),
    Scenario(
        "wrap",
        "lossy, with the clock starting 5 s before 2**32 µs, where 32-bit µs stamps wrap",
        _LOSSY_LINKS,
        _TELEMETRY,
        clock_start_ns=2**32 * 1_000 - 5 * NS_PER_S,
    ),
)

_CAPACITY = (
    Scenario(
        "step",
        "deep-buffered 2/5/8/10 Mbps links under 8 Mbps; link 1 drops to 1 Mbps at 3 s "
        "and comes back at 6 s",
        (
            _deep()[0],
            _step(_deep()[1], ((3 * NS_PER_S, 1 * MBPS), (6 * NS_PER_S, 5 * MBPS))),
            *_deep()[2:],
        ),
        _LOAD,
    ),
    Scenario(
        "misconfigured",
        "deep-buffered 2/5/8/10 Mbps links under 8 Mbps, told 10/5/8/2: link 0 5x too "
        "high, link 3 5x too low",
        _deep(),
        _LOAD,
        config_factory=told(10 * MBPS, 5 * MBPS, 8 * MBPS, 2 * MBPS),
    ),
    Scenario(
        "unknown",
        "deep-buffered 2/5/8/10 Mbps links under 8 Mbps; plait is told no rate at all",
        _deep(),
        _LOAD,
        config_factory=told(None, None, None, None),
    ),
    Scenario(
        "moving",
        "4 deep-buffered links whose rate jumps anywhere in 1-8 Mbps every 500 ms (18 "
        "Mbps on average), 6 Mbps offered, no rate told",
        tuple(
            link(
                8 * MBPS,
                delay,
                jitter_ns=2 * NS_PER_MS,
                buffer_bytes=_DEEP,
                rate_schedule=RateSchedule.moving(1 * MBPS, 8 * MBPS, 500 * NS_PER_MS),
            )
            for delay in _DELAYS
        ),
        (Cbr.at_rate(6 * MBPS, 1200, stream=0),),
        config_factory=told(None, None, None, None),
    ),
    Scenario(
        "overload",
        "4 deep-buffered 2 Mbps links, 12 Mbps offered (1.5x their capacity), no rate told",
        _deep((2 * MBPS,) * 4),
        (Cbr.at_rate(12 * MBPS, 1200, stream=0),),
        config_factory=told(None, None, None, None),
    ),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (*_ALL, *_CAPACITY)}
"""Every named scenario, by name."""
