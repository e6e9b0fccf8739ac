"""``plait demo``: a simulated session over several links, summarised for a person.

Runs a `plait.sim` scenario (``lossy`` by default: four links of 2/5/8/10 Mbps with 1-5 %
loss) between two real endpoints, then prints what happened: messages delivered,
rebuilt by FEC, re-sent and expired; latency against the floor the links allow; each
link's share of the traffic against its weight; the overhead; and the trace digest
(the same seed gives the same digest). ``--json`` prints the same as data; ``--plot``
draws the latency distribution and each link's throughput over time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from plait.sim import SCENARIOS, Scenario, SimResult, run
from plait.sim.trace import Record
from plait.stats import Stats
from plait.wire import HEADER_SIZE, UDP_IPV4_OVERHEAD

__all__ = ["DemoReport", "demo", "render", "to_json"]

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


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def plot(report: DemoReport, path: str) -> None:
    """Write a PNG: latency CDF, and each link's A->B throughput over time (outages
    shaded). Needs matplotlib (``pip install 'plait[plot]'``) and a run with its trace."""
    import matplotlib  # noqa: PLC0415  (optional: only --plot needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    r = report.result
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 8))
    lat = sorted(r.latencies)
    if lat:
        ax1.plot([x / _MS for x in lat], [(i + 1) / len(lat) for i in range(len(lat))])
    ax1.axvline(report.floor_ns / _MS, linestyle="--", color="grey", label="floor")
    ax1.set_xlabel("latency (ms)")
    ax1.set_ylabel("fraction of messages")
    ax1.set_title(f"latency CDF: {report.scenario.name}, seed {r.seed}")
    ax1.legend()
    bins: dict[int, dict[int, int]] = {}
    outages: list[tuple[int, int, int]] = []  # (link, start, end)
    open_outages: dict[int, int] = {}
    for record in r.trace:  # (kind name, time, a, b, c, d, blob as hex): see sim.trace
        kind, time, a, b, c = record[0], *(_int(x) for x in record[1:5])
        if kind == Record.NET.name and a == 0 and _int(record[5]) >= 0:  # A->B, delivered
            size = len(record[6]) // 2 if isinstance(record[6], str) else 0
            bins.setdefault(b, {}).setdefault(time // (100 * _MS), 0)
            bins[b][time // (100 * _MS)] += size
        elif kind == Record.OUTAGE.name:
            link, starts = a, c
            if starts:
                open_outages[link] = time
            elif link in open_outages:
                outages.append((link, open_outages.pop(link), time))
    last = max((max(series) for series in bins.values()), default=0)
    for link, counted in sorted(bins.items()):
        xs = list(range(last + 1))  # empty bins are zero, not a line across an outage
        series = {x: counted.get(x, 0) for x in xs}
        ax2.plot([x / 10 for x in xs], [series[x] * 8 * 10 / 1e6 for x in xs], label=f"link {link}")
    for _, start, end in outages:
        ax2.axvspan(start / 1e9, end / 1e9, color="red", alpha=0.15)
    ax2.set_xlabel("time (s)")
    ax2.set_ylabel("A->B throughput (Mbps, 100 ms bins)")
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path)
