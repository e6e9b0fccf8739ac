"""What protection costs and buys: delivered share and wire bytes per payload byte.

Two parts, both in the simulator with the default config (plus a psk and `mtu=1500`):

* **peer**: the network plait was compared with RIST and SRT on (links 2/5/8/10
  Mbit/s, 30/10/20/15 ms one way, 2 % loss, 4 Mbit/s of 1316-byte datagrams) at a
  150 ms budget, and the short-deadline case (50 ms, 3 % loss).
* **sweep**: four equal links (5 Mbit/s, one RTT for all), loss 0-10 %, RTT 10-600 ms,
  budgets 0.75-10 RTT (half an RTT is the propagation delay itself: nothing can arrive
  in it); each cell's delivered share against the 1e-4 target and its
  overhead.

Wire bytes count every datagram both ways with its 28 bytes of IPv4 + UDP header;
payload bytes are the messages sent.

    python3 dev.py bench protection [--seeds N] [--quick]   # writes results/protection.json
    python3 dev.py bench protection --plot docs/protection.png   # ... and draws the sweep
    python3 dev.py bench protection --replot docs/protection.png # from the last JSON
    python3 dev.py bench protection --table     # the last JSON as a markdown table
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import RESULTS, write_json

import plait
from plait.sim import Cbr, Scenario, link, run
from plait.sim.scenarios import default_config

MS = 1_000_000
PSK = hashlib.sha256(b"plait bench protection").digest()


def _config(scenario: Scenario) -> plait.Config:
    return attrs.evolve(default_config(scenario), mtu=1500, fec=plait.FecConfig())


def measure(
    links: tuple[Any, ...], budget_ms: int, *, seed: int, seconds: int = 10
) -> dict[str, float]:
    """One run: delivered share and wire bytes per payload byte."""
    scenario = Scenario(
        "protection",
        "bench",
        links,
        (Cbr.at_rate(4_000_000, 1316, stream=0),),
        latency_ns=budget_ms * MS,
        psk=PSK,
        duration_ns=seconds * 1_000_000_000,
        config_factory=_config,
    )
    result = run(scenario, seed=seed)
    wire = sum(p.offered_bytes + 28 * p.offered for p in result.links)
    return {
        "ok": float(result.ok),
        "delivered": result.delivered / result.sent if result.sent else 1.0,
        "overhead": wire / (result.sent * 1316) if result.sent else 0.0,
    }


def _peer(loss: float) -> tuple[Any, ...]:
    return tuple(
        link(rate * 1_000_000, delay * MS, jitter_ns=2 * MS, loss=loss)
        for rate, delay in zip((2, 5, 8, 10), (30, 10, 20, 15), strict=True)
    )


def _even(loss: float, rtt_ms: int) -> tuple[Any, ...]:
    return tuple(link(5_000_000, rtt_ms * MS // 2, jitter_ns=MS, loss=loss) for _ in range(4))


TARGET = 1e-4  # Config.target_loss's default


def _where(row: dict[str, Any]) -> dict[str, Any]:
    """A sweep row with its loss, RTT and budget factor (read from its name if a JSON
    written before they were fields)."""
    if "loss" in row:
        return row
    found = re.match(r"loss\s+(\d+)% rtt\s+(\d+) ms x([\d.]+)", row["case"])
    assert found, row["case"]
    loss, rtt, factor = found.groups()
    return {**row, "loss": int(loss) / 100, "rtt_ms": int(rtt), "factor": float(factor)}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """The sweep, one panel per loss rate: wire bytes per payload byte against the
    budget in RTTs, a line per RTT; a filled marker where the target (99.99 %) held,
    an open one where it did not, with the delivered share written next to it."""
    import matplotlib  # noqa: PLC0415  (only --plot needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sweep = [_where(r) for r in rows if r["case"].startswith("loss")]
    losses = sorted({r["loss"] for r in sweep})
    rtts = sorted({r["rtt_ms"] for r in sweep})
    fig, axes = plt.subplots(1, len(losses), figsize=(3.2 * len(losses), 3.6), sharey=True)
    for ax, loss in zip(axes, losses, strict=True):
        for rtt in rtts:
            cells = sorted(
                (r for r in sweep if r["loss"] == loss and r["rtt_ms"] == rtt),
                key=lambda r: r["factor"],
            )
            xs = [r["factor"] for r in cells]
            ys = [r["overhead_worst"] for r in cells]
            (line,) = ax.plot(xs, ys, label=f"RTT {rtt} ms")
            for r in cells:
                held = r["delivered_worst"] >= 1 - TARGET
                ax.plot(
                    r["factor"],
                    r["overhead_worst"],
                    "o",
                    color=line.get_color(),
                    fillstyle="full" if held else "none",
                )
                if not held:
                    ax.annotate(
                        f"{100 * r['delivered_worst']:.2f}%",
                        (r["factor"], r["overhead_worst"]),
                        fontsize=6,
                        xytext=(3, 3),
                        textcoords="offset points",
                    )
        ax.set_xscale("log")
        ax.set_title(f"{loss:.0%} loss")
        ax.set_xlabel("budget (RTTs)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("wire bytes per payload byte")
    axes[0].legend(fontsize=7)
    fig.suptitle("protection by cost: open markers missed 99.99 % (value shown)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plotted {path}")


def table(rows: list[dict[str, Any]]) -> str:
    """The sweep as a markdown table: a row per loss and RTT, a column per budget (in
    RTTs); each cell "delivered % / wire bytes per payload byte", bold where the
    delivered share is under the target."""
    sweep = [_where(r) for r in rows if r["case"].startswith("loss")]
    factors = sorted({r["factor"] for r in sweep})
    head = "| loss | RTT | " + " | ".join(f"{f:g} RTT" for f in factors) + " |"
    lines = [head, "|" + " --- |" * (2 + len(factors))]
    for loss in sorted({r["loss"] for r in sweep}):
        for rtt in sorted({r["rtt_ms"] for r in sweep}):
            cells = []
            for f in factors:
                r = next(
                    x for x in sweep if (x["loss"], x["rtt_ms"], x["factor"]) == (loss, rtt, f)
                )
                text = f"{100 * r['delivered_worst']:.2f} % / {r['overhead_worst']:.2f}"
                cells.append(text if r["delivered_worst"] >= 1 - TARGET else f"**{text}**")
            lines.append(f"| {loss:.0%} | {rtt} ms | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per case (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smaller sweep, 5 s runs")
    parser.add_argument("--plot", type=Path, help="also draw the sweep into this PNG")
    parser.add_argument("--replot", type=Path, help="only draw results/protection.json")
    parser.add_argument("--table", action="store_true", help="only print its markdown table")
    args = parser.parse_args()
    if args.replot or args.table:
        saved = json.loads((RESULTS / "protection.json").read_text())
        if args.table:
            print(table(saved["rows"]))
        if args.replot:
            plot(saved["rows"], args.replot)
        return
    seconds = 5 if args.quick else 10
    rows: list[dict[str, Any]] = []

    def case(name: str, links: tuple[Any, ...], budget_ms: int, **where: float) -> dict[str, Any]:
        runs = [
            measure(links, budget_ms, seed=s, seconds=seconds) for s in range(1, args.seeds + 1)
        ]
        row: dict[str, Any] = {
            "case": name,
            **where,
            "budget_ms": budget_ms,
            "delivered_worst": min(r["delivered"] for r in runs),
            "overhead_worst": max(r["overhead"] for r in runs),
            "invariants": all(r["ok"] for r in runs),
        }
        rows.append(row)
        print(
            f"{name:34} {budget_ms:6d} ms  delivered {100 * row['delivered_worst']:8.3f} %  "
            f"overhead {row['overhead_worst']:5.3f}{'' if row['invariants'] else '  VIOLATION'}",
            flush=True,
        )
        return row

    print("peer-comparison network (worst of the seeds)")
    case("2 % loss", _peer(0.02), 150)
    case("3 % loss, deadline inside an RTT", _peer(0.03), 50)
    print("\nsweep: 4 x 5 Mbit/s, 4 Mbit/s of 1316-byte datagrams")
    losses = (0.0, 0.02, 0.10) if args.quick else (0.0, 0.01, 0.03, 0.05, 0.10)
    rtts = (10, 100, 600) if args.quick else (10, 50, 100, 300, 600)
    budgets = (0.75, 2.0, 10.0) if args.quick else (0.75, 1.0, 2.0, 5.0, 10.0)
    for loss in losses:
        for rtt in rtts:
            for factor in budgets:
                budget = max(1, int(rtt * factor))
                case(
                    f"loss {loss:4.0%} rtt {rtt:3d} ms x{factor:g}",
                    _even(loss, rtt),
                    budget,
                    loss=loss,
                    rtt_ms=rtt,
                    factor=factor,
                )
    print(f"wrote {write_json('protection', {'seeds': args.seeds, 'rows': rows})}")
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
