"""``plait demo``: a simulated session over several links, summarised for a person.

Runs a `plait.sim` scenario (``lossy`` by default: four links of 2/5/8/10 Mbps with 1-5 %
loss) between two real endpoints, then prints what happened: messages delivered,
rebuilt by FEC, re-sent and expired; latency against the floor the links allow; each
link's share of the traffic against its weight; the overhead; and the trace digest
(the same seed gives the same digest). ``--json`` prints the same as data; ``--trace``
writes every message, datagram and link event as JSON lines (`plait.tracelog`), and
``--plot`` draws them (`plait.plot`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from plait.plot import draw
from plait.sim import SCENARIOS, Scenario, SimResult, run
from plait.stats import Stats
from plait.tracelog import from_sim
from plait.wire import HEADER_SIZE, UDP_IPV4_OVERHEAD

__all__ = ["DemoReport", "demo", "plot", "render", "to_json", "trace"]

_MS = 1_000_000
_DATA_HEADER = HEADER_SIZE + 12


class DemoReport:
    """A finished demo run: the simulation result plus the figures the summary shows."""

    __slots__ = ("floor_ns", "result", "scenario")

    def __init__(self, scenario: Scenario, result: SimResult) -> None:
        self.scenario = scenario
        self.result = result
        self.floor_ns = _floor_ns(scenario)

    @property
    def sender(self) -> Stats | None:
        stats = self.result.endpoint_stats[0]
        return stats if isinstance(stats, Stats) else None

    @property
    def receiver(self) -> Stats | None:
        stats = self.result.endpoint_stats[1]
        return stats if isinstance(stats, Stats) else None

    def shares(self) -> list[tuple[int, float, float]]:
        """Per link: (link, share of A->B bytes carried, share of the configured rate)."""
        paths = [p for p in self.result.links if p.direction.name == "A"]
        carried = sum(p.offered_bytes for p in paths) or 1
        rates = [spec.path_rate for spec in _rates(self.scenario)]
        total_rate = sum(rates) or 1
        return [(p.link, p.offered_bytes / carried, rates[p.link] / total_rate) for p in paths]

    def overhead(self) -> float | None:
        """Bytes on the wire A->B (IP/UDP headers included) per payload byte delivered, - 1."""
        receiver = self.receiver
        if receiver is None or not receiver.bytes_delivered:
            return None
        paths = [p for p in self.result.links if p.direction.name == "A"]
        wire = sum(p.offered_bytes + UDP_IPV4_OVERHEAD * p.offered for p in paths)
        return wire / receiver.bytes_delivered - 1.0


class _Rate:
    __slots__ = ("delay_ns", "path_rate")

    def __init__(self, rate: int, delay: int) -> None:
        self.path_rate, self.delay_ns = rate, delay


def _rates(scenario: Scenario) -> list[_Rate]:
    return [_Rate(link.forward.rate_bps, link.forward.delay_ns) for link in scenario.links]


def _floor_ns(scenario: Scenario, size: int = 1200) -> int:
    """The fastest a `size`-byte message can cross: propagation + serialization, best link."""
    wire_bits = (size + _DATA_HEADER + UDP_IPV4_OVERHEAD) * 8
    return min(r.delay_ns + wire_bits * 1_000_000_000 // r.path_rate for r in _rates(scenario))


def demo(
    scenario: str = "lossy",
    *,
    seed: int = 1,
    duration_s: float | None = None,
    progress: Callable[[float], None] | None = None,
    keep_trace: bool = False,
) -> DemoReport:
    """Run one demo. Raises KeyError for an unknown scenario name."""
    spec = SCENARIOS[scenario]
    duration = None if duration_s is None else int(duration_s * 1_000_000_000)
    result = run(
        spec,
        seed=seed,
        duration_ns=duration,
        progress=progress,
        trace_limit=50_000_000 if keep_trace else 0,
    )
    return DemoReport(spec, result)


def _ms(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / _MS:6.1f} ms"


def render(report: DemoReport) -> str:
    """The summary a person reads in five seconds."""
    r, sc = report.result, report.scenario
    sender, receiver = report.sender, report.receiver
    rebuilt = receiver.fec.recovered if receiver and receiver.fec else 0
    resent = sender.repairs if sender else 0
    pct = 100.0 * r.delivered / r.sent if r.sent else 0.0
    lines = [
        f"plait demo: scenario '{sc.name}', seed {r.seed}",
        f"  {sc.description}",
        "",
        f"  messages   {r.sent} sent, {r.delivered} delivered in time ({pct:.2f} %), "
        f"{r.expired} expired, {r.in_flight} unresolved",
        f"  repair     {rebuilt} packets rebuilt by FEC (no round trip), {resent} re-sent",
        f"  latency    p50 {_ms(r.latency_p50)}   p99 {_ms(r.latency_p99)}   "
        f"max {_ms(r.latency_max)}",
        f"             floor {_ms(report.floor_ns)} (fastest link: propagation + "
        "serialization of 1200 bytes)",
        "",
        "  link  rate        share of bytes   weight   state",
    ]
    states = {ls.link: ls.state for ls in sender.links} if sender else {}
    rates = _rates(sc)
    for link, share, weight in report.shares():
        lines.append(
            f"  {link:>4}  {rates[link].path_rate / 1e6:5.1f} Mbps   {100 * share:13.1f} %"
            f" {100 * weight:7.1f} %   {states.get(link, '?')}"
        )
    overhead = report.overhead()
    fec = sender.fec if sender else None
    if fec and fec.k:
        cap = max(fec.m, -(-(fec.k + fec.m) // len(rates)))
        lines.append(
            f"  (FEC spreads each block: at most {cap} of its {fec.k + fec.m} packets per link,"
            " so one lost link costs no more than m; shares follow weights under load)"
        )
    lines += [
        "",
        "  overhead   "
        + ("-" if overhead is None else f"{100 * overhead:.1f} % on the wire")
        + (f" (FEC parity {100 * fec.overhead:.1f} %, k={fec.k} m={fec.m})" if fec else ""),
        "  checks     exactly once, in order, intact, never late: "
        + ("all hold" if r.ok else "VIOLATED: " + ", ".join(r.violation_counts)),
        f"  digest     {r.digest}",
    ]
    return "\n".join(lines)


def to_json(report: DemoReport) -> str:
    r = report.result
    data: dict[str, Any] = r.to_dict()
    data["floor_ns"] = report.floor_ns
    data["link_shares"] = [
        {"link": link, "share": share, "weight": weight} for link, share, weight in report.shares()
    ]
    data["overhead"] = report.overhead()
    sender, receiver = report.sender, report.receiver
    data["fec_rebuilt"] = receiver.fec.recovered if receiver and receiver.fec else 0
    data["resent"] = sender.repairs if sender else 0
    return json.dumps(data, indent=2, default=str)


def progress_bar(out: TextIO, width: int = 40) -> Callable[[float], None]:
    """A callback that draws ``[#####.....]  42 %`` on `out` (a terminal's stderr)."""
    shown = [-1]

    def draw(fraction: float) -> None:
        percent = int(100 * min(max(fraction, 0.0), 1.0))
        if percent == shown[0]:
            return
        shown[0] = percent
        filled = width * percent // 100
        out.write(f"\r  simulating [{'#' * filled}{'.' * (width - filled)}] {percent:3d} %")
        if percent == 100:
            out.write("\n")
        out.flush()

    return draw


def trace(report: DemoReport) -> Iterator[dict[str, Any]]:
    """The run as a `plait.tracelog` trace (a run with ``keep_trace``)."""
    r, sc = report.result, report.scenario
    return from_sim(
        r.trace,
        r.deliveries,
        title=f"demo {sc.name}, seed {r.seed}",
        links=len(sc.links),
        budget_ns=sc.latency_ns,
        t0=sc.clock_start_ns,
    )


def plot(report: DemoReport, path: str) -> None:
    """Write a PNG of the run (`plait.plot`: latency over time against the deadline,
    the CDF over every message, each link's throughput and states). Needs matplotlib
    (``pip install 'plait[plot]'``) and a run with its trace."""
    records = list(trace(report))
    draw(records[0], records[1:], path)
