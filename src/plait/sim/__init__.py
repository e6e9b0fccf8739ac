"""A deterministic network simulator that drives two plait endpoints against each other.

Links with rates, queues, delay, jitter, loss (independent and bursty), reordering,
duplication, corruption, MTU limits, outages and swinging delays; seeded traffic
generators whose messages describe themselves; hostile junk; and a checker for
plait's promises (exactly once, in order, intact, never late, every message resolved).
Everything runs on one virtual clock of integer nanoseconds, so the same scenario and
seed always give the same run and the same trace digest. See docs/simulation.md.

Modules: `links` (link settings), `network` (the live link model), `traffic`,
`hostile`, `payload` (self-describing messages), `scenarios` (the named ones),
`checker` (the invariants), `trace` (the digest), `runner` (the event loop),
`result` (`SimResult`).
"""

from __future__ import annotations

from plait._types import NS_PER_MS, NS_PER_S, NS_PER_US
from plait.sim import payload
from plait.sim._protocol import EndpointFactory, EndpointLike, Side
from plait.sim.checker import Invariant, Violation
from plait.sim.hostile import HostileSpec, Junk
from plait.sim.links import (
    DelaySchedule,
    GilbertElliott,
    LinkSpec,
    Outage,
    PathSpec,
    RateSchedule,
)
from plait.sim.network import Drop, Path, PathStats
from plait.sim.result import SimResult
from plait.sim.runner import default_endpoint, run
from plait.sim.scenarios import SCENARIOS, Scenario, default_config, link
from plait.sim.traffic import Bursts, Cbr, Mixed, Traffic, Video

__all__ = [
    "NS_PER_MS",
    "NS_PER_S",
    "NS_PER_US",
    "SCENARIOS",
    "Bursts",
    "Cbr",
    "DelaySchedule",
    "Drop",
    "EndpointFactory",
    "EndpointLike",
    "GilbertElliott",
    "HostileSpec",
    "Invariant",
    "Junk",
    "LinkSpec",
    "Mixed",
    "Outage",
    "Path",
    "PathSpec",
    "PathStats",
    "RateSchedule",
    "Scenario",
    "Side",
    "SimResult",
    "Traffic",
    "Video",
    "Violation",
    "default_config",
    "default_endpoint",
    "link",
    "payload",
    "run",
]
