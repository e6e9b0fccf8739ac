"""``plait plot TRACE``: draw what happened in a trace (`plait.tracelog`).

One PNG, time on a shared x-axis in seconds from the trace's start (so the ``wrap``
scenario's clock, which starts near 2^32 s, reads from 0 like the others):

* latency over time: each delivered message at its send time, the deadline budget as
  a dashed line, each expired message as a red cross on the deadline (it never
  arrived), link DOWN marks as vertical lines;
* the latency CDF over every message sent, expired ones included (as never arriving):
  a run that lost 9 % stops at 0.91, not at 1.0;
* one strip per link, A->B throughput in bins sized to the run (about 300 per run:
  10 ms for 3 s, 2 s for ten minutes), with the link's DOWN and DEGRADED spans shaded
  as the sender saw them and scripted outages hatched, so 6 or 16 links stay readable.

Needs matplotlib (``pip install 'plait[plot]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from plait.tracelog import read

__all__ = ["bin_ns", "draw", "plot_file"]

_S: Final = 1e-9
_MS: Final = 1e-6
_NICE: Final = (1, 2, 5)
_STATE_COLOURS: Final = {"DOWN": "#d62728", "DEGRADED": "#ff7f0e"}


def bin_ns(duration_ns: int, bins: int = 300, at_least: int = 0) -> int:
    """A round bin width (1, 2 or 5 x 10^k ns, at least 10 ms and `at_least`) giving
    about `bins` bins over `duration_ns`."""
    want = max(duration_ns // bins, 10_000_000, at_least)
    scale = 1
    while True:
        for step in _NICE:
            if step * scale >= want:
                return step * scale
        scale *= 10


def _spans(
    records: Sequence[dict[str, Any]], t0: int, end: int
) -> dict[int, list[tuple[float, float, str]]]:
    """Per link, (start s, end s, state) of each span the sender (side 0) saw it DOWN
    or DEGRADED."""
    out: dict[int, list[tuple[float, float, str]]] = {}
    open_: dict[int, tuple[int, str]] = {}
    for r in records:
        if r.get("ev") != "link" or r.get("side", 0) != 0:
            continue
        link, state, t = int(r["link"]), str(r["state"]), int(r["t"])
        if link in open_:
            start, was = open_.pop(link)
            out.setdefault(link, []).append(((start - t0) * _S, (t - t0) * _S, was))
        if state in _STATE_COLOURS:
            open_[link] = (t, state)
    for link, (start, was) in open_.items():
        out.setdefault(link, []).append(((start - t0) * _S, (end - t0) * _S, was))
    return out


def _outages(
    records: Sequence[dict[str, Any]], t0: int, end: int
) -> list[tuple[int, float, float]]:
    out, open_ = [], {}
    for r in records:
        if r.get("ev") != "outage":
            continue
        link, t = int(r["link"]), int(r["t"])
        if r.get("start"):
            open_[link] = t
        elif link in open_:
            out.append((link, (open_.pop(link) - t0) * _S, (t - t0) * _S))
    out += [(link, (start - t0) * _S, (end - t0) * _S) for link, start in open_.items()]
    return out


class _Run:
    """What the panels share: the trace's records and its time frame."""

    def __init__(self, head: dict[str, Any], records: Sequence[dict[str, Any]]) -> None:
        self.head, self.records = head, records
        self.t0 = int(head.get("t0", records[0]["t"] if records else 0))
        self.end = max((int(r["t"]) for r in records), default=self.t0 + 1)
        self.links = max(int(head.get("links", 1)), 1)
        self.budget_ns = int(head.get("budget_ns", 0))
        self.way = str(head.get("direction", "A->B"))
        self.delivered = [r for r in records if r.get("ev") == "delivered" and r.get("dir", 0) == 0]
        self.expired = [r for r in records if r.get("ev") == "expired" and r.get("dir") == 0]
        self.latencies_ms = [int(r["latency"]) * _MS for r in self.delivered]

    def s(self, t: int) -> float:
        """Seconds since the start of the trace."""
        return (t - self.t0) * _S

    def sent_at(self, r: dict[str, Any]) -> float:
        """An expired message's send time (s): known, or its deadline less the budget."""
        sent = r.get("sent")
        return self.s(int(sent) if sent is not None else int(r["t"]) - self.budget_ns)


def _latency(ax: Any, run: _Run) -> None:
    budget_ms = run.budget_ns * _MS
    xs = [run.s(int(r["t"]) - int(r["latency"])) for r in run.delivered]
    ax.scatter(
        xs,
        run.latencies_ms,
        s=2,
        color="#1f77b4",
        rasterized=True,
        label=f"delivered ({len(xs)})",
    )
    if run.expired:
        ax.scatter(
            [run.sent_at(r) for r in run.expired],
            [budget_ms] * len(run.expired),
            marker="x",
            s=18,
            color="#d62728",
            label=f"expired ({len(run.expired)})",
        )
    if budget_ms:
        ax.axhline(
            budget_ms,
            linestyle="--",
            color="black",
            linewidth=1,
            label=f"deadline ({budget_ms:.0f} ms)",
        )
    for r in run.records:
        if r.get("ev") == "link" and r.get("side") == 0 and r.get("state") == "DOWN":
            ax.axvline(run.s(int(r["t"])), color="#d62728", alpha=0.4, linewidth=0.8)
    ax.set_ylabel("latency (ms)")
    ax.set_ylim(0, max([budget_ms * 1.1, *run.latencies_ms, 1.0]))
    ax.set_title(
        f"{run.head.get('title', 'plait trace')}: {run.way} messages by send time "
        "(red lines: a link went DOWN)",
        fontsize=10,
    )
    ax.legend(loc="upper right", fontsize=8)


def _cdf(ax: Any, run: _Run) -> None:
    total = len(run.delivered) + len(run.expired)
    lat = sorted(run.latencies_ms)
    if total:
        ax.step(lat, [(i + 1) / total for i in range(len(lat))], where="post")
        reached = len(lat) / total
        ax.axhline(reached, color="grey", linewidth=0.8, linestyle=":")
        ax.text(
            0.01,
            reached,
            f" {100 * reached:.2f} % of all sent arrived in time",
            va="top" if reached > 0.9 else "bottom",
            fontsize=8,
            transform=ax.get_yaxis_transform(),
        )
    if run.budget_ns:
        ax.axvline(run.budget_ns * _MS, linestyle="--", color="black", linewidth=1)
    ax.set_xlabel("latency (ms) of every message sent (expired ones never arrive)")
    ax.set_ylabel("fraction of all sent")
    ax.set_ylim(0, 1.02)


def _strips(strips: Sequence[Any], run: _Run) -> None:
    spans_ns = (int(r.get("span", 0)) for r in run.records if r.get("ev") == "bytes")
    width = bin_ns(run.end - run.t0, at_least=max(spans_ns, default=0))
    per_s = 1 / (width * _S)
    series = [[0] * ((run.end - run.t0) // width + 1) for _ in range(run.links)]
    for r in run.records:
        if r.get("ev") == "bytes" and r.get("dir") == 0 and 0 <= int(r["link"]) < run.links:
            mid = int(r["t"]) - int(r.get("span", 0)) // 2  # a period's bytes: its middle
            series[int(r["link"])][max(mid - run.t0, 0) // width] += int(r["bytes"])
    centres = [(i + 0.5) * width * _S for i in range(len(series[0]))]
    spans = _spans(run.records, run.t0, run.end)
    outages = _outages(run.records, run.t0, run.end)
    top = max((max(s) for s in series), default=0) * 8 * per_s / 1e6 * 1.15 or 1.0
    for link, ax in enumerate(strips):
        mbps = [b * 8 * per_s / 1e6 for b in series[link]]
        ax.plot(centres, mbps, linewidth=0.9, color="#2ca02c")
        for start, stop, state in spans.get(link, []):
            ax.axvspan(start, stop, color=_STATE_COLOURS[state], alpha=0.25, linewidth=0)
        for which, start, stop in outages:
            if which in (link, -1):
                ax.axvspan(start, stop, fill=False, hatch="///", edgecolor="grey", linewidth=0)
        ax.set_ylim(0, top)
        ax.set_ylabel(f"link {link}", rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7, labelbottom=link == len(strips) - 1)
    strips[0].set_title(
        f"{run.way} Mbit/s per link, {width * _MS:g} ms bins; shaded as seen from the trace: "
        "DOWN red, DEGRADED orange" + ("; hatched: a scripted outage" if outages else ""),
        fontsize=9,
    )
    strips[-1].set_xlabel("time since the start of the trace (s)")


def draw(head: dict[str, Any], records: Sequence[dict[str, Any]], out: str | Path) -> None:
    """Write the PNG for a trace (`plait.tracelog.read`) to `out`."""
    import matplotlib  # noqa: PLC0415  (optional: only plotting needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    run = _Run(head, records)
    heights = [3.0, 2.2, 0.25] + [0.9] * run.links  # a spacer row before the strips
    fig = plt.figure(figsize=(11, sum(heights) + 1.2))
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.45)
    ax_lat = fig.add_subplot(grid[0])
    strips = [fig.add_subplot(grid[3 + i], sharex=ax_lat) for i in range(run.links)]
    _latency(ax_lat, run)
    _cdf(fig.add_subplot(grid[1]), run)
    _strips(strips, run)
    ax_lat.tick_params(labelbottom=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_file(trace: Path, out: Path) -> None:
    """Read `trace`, draw it into `out`. Raises `plait.tracelog.TraceError`, OSError."""
    head, records = read(trace)
    draw(head, records, out)
