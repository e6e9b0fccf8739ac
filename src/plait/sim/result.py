"""What a run reports: `SimResult`, with the counters, the violations and the digest."""

from __future__ import annotations

import math
from typing import Any

import attrs

from plait._types import NS_PER_MS
from plait.sim.checker import Violation
from plait.sim.network import Drop, PathStats

__all__ = ["SimResult"]


def _percentile(ordered: tuple[int, ...], q: float) -> int | None:
    if not ordered:
        return None
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


@attrs.frozen
class SimResult:
    """What one run did, and whether every invariant held (`ok`)."""

    scenario: str
    seed: int
    start_ns: int
    end_ns: int
    digest: str
    """SHA-256 of the trace (see `plait.sim.trace`): same scenario + seed + code, same hex."""
    sent: int
    """Messages the senders accepted."""
    delivered: int
    expired: int
    """Messages never delivered that either side reported expired (or unconfirmed)."""
    in_flight: int
    """Messages still within their deadline + grace at the end (not a violation)."""
    backpressured: int
    """Messages `send` refused with `BackpressureError` (not counted in `sent`)."""
    latencies: tuple[int, ...]
    """Delivery latency (delivery time - send time, ns) of every delivered message, sorted."""
    deliveries: tuple[tuple[int, int], ...]
    """(send time from the start of the run, latency), ns, of every delivered message,
    by send time: latency over time, or after a transient."""
    links: tuple[PathStats, ...]
    """Per link and direction: A→B paths first, then B→A."""
    injected: dict[str, int]
    events: tuple[dict[str, int], dict[str, int]]
    """How many events of each class each side reported (A, B)."""
    violations: tuple[Violation, ...]
    """The first few violations of each kind, in order (all are in `violation_counts`)."""
    violation_counts: dict[str, int]
    endpoint_stats: tuple[object, object]
    """Whatever ``stats()`` returned at the end, for A and B."""
    steps: int
    """Events the loop processed (for throughput measurements)."""
    trace: tuple[tuple[object, ...], ...] = ()
    """The first `trace_limit` trace records, readable, when asked for."""

    @property
    def ok(self) -> bool:
        """True when no invariant was violated."""
        return not self.violation_counts

    @property
    def drops(self) -> dict[str, int]:
        """Datagrams dropped by the links, by cause, over all links and directions."""
        return {
            cause.name.lower(): sum(p.drops[cause.name.lower()] for p in self.links)
            for cause in Drop
        }

    @property
    def latency_p50(self) -> int | None:
        return _percentile(self.latencies, 0.50)

    @property
    def latency_p99(self) -> int | None:
        return _percentile(self.latencies, 0.99)

    @property
    def latency_max(self) -> int | None:
        return self.latencies[-1] if self.latencies else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (latencies as percentiles, endpoint stats as repr)."""
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "ok": self.ok,
            "digest": self.digest,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "sent": self.sent,
            "delivered": self.delivered,
            "expired": self.expired,
            "in_flight": self.in_flight,
            "backpressured": self.backpressured,
            "latency_ns": {
                "p50": self.latency_p50,
                "p99": self.latency_p99,
                "max": self.latency_max,
            },
            "drops": self.drops,
            "injected": self.injected,
            "links": [
                {**attrs.asdict(p, recurse=False), "direction": p.direction.name}
                for p in self.links
            ],
            "events": {"A": self.events[0], "B": self.events[1]},
            "violation_counts": self.violation_counts,
            "violations": [
                {**attrs.asdict(v), "invariant": v.invariant.value, "side": v.side.name}
                for v in self.violations
            ],
            "endpoint_stats": [repr(s) for s in self.endpoint_stats],
            "steps": self.steps,
        }

    def summary(self) -> str:
        """A few human-readable lines."""

        def ms(ns: int | None) -> str:
            return "-" if ns is None else f"{ns / NS_PER_MS:.1f} ms"

        lines = [
            f"scenario {self.scenario}, seed {self.seed}: {'OK' if self.ok else 'FAILED'}",
            f"  messages: {self.sent} sent, {self.delivered} delivered, {self.expired} "
            f"expired, {self.in_flight} in flight, {self.backpressured} backpressured",
            f"  latency: p50 {ms(self.latency_p50)}, p99 {ms(self.latency_p99)}, "
            f"max {ms(self.latency_max)}",
            "  link drops: "
            + (", ".join(f"{k} {v}" for k, v in self.drops.items() if v) or "none"),
            f"  link faults: {sum(p.corrupted for p in self.links)} corrupted, "
            f"{sum(p.duplicated for p in self.links)} duplicated, "
            f"{sum(p.reordered for p in self.links)} reordered",
        ]
        if self.injected:
            lines.append("  injected: " + ", ".join(f"{k} {v}" for k, v in self.injected.items()))
        lines.extend(
            f"  VIOLATION {v.invariant.value} at {v.time} ns by {v.side.name} "
            f"stream {v.stream} index {v.index} {v.detail}".rstrip()
            for v in self.violations
        )
        lines.append(f"  digest {self.digest}")
        return "\n".join(lines)
