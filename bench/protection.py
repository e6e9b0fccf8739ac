"""What protection costs and buys: delivered share and wire bytes per payload byte.

Two parts, both in the simulator with the default config (plus a psk and `mtu=1500`):

* **peer**: the network plait was compared with RIST and SRT on (links 2/5/8/10
  Mbit/s, 30/10/20/15 ms one way, 2 % loss, 4 Mbit/s of 1316-byte datagrams) at a
  150 ms budget, and the short-deadline case (50 ms, 3 % loss).
* **sweep**: four equal links (5 Mbit/s, one RTT for all), loss 0-10 %, RTT 10-600 ms,
  budgets 0.75-10 RTT (half an RTT is the propagation delay itself: nothing can arrive
  in it); each cell's delivered share against the 1e-4 target and its overhead. The
  stream starts two RTTs after the endpoints (at least 250 ms), once the session is
  established, as an application that waits for it does: what is sent before cannot
  meet a budget shorter than the handshake (one RTT) plus the one-way delay. Cells
  whose budget is shorter than the one-way delay plus one datagram's serialization
  are "n/a". A cell holds the target when the misses of all its seeds together are
  no more than a process losing exactly 1e-4 shows in 95 % of runs (`allowed`: at
  4 x 3 705 messages, 4). The cells that miss the target are run again with
  ``max_protection=2`` (twice the default allowance) to show what the cap held back,
  with the residual the sender's own plan expected there (`Stats.planned_loss`: above
  the target where plait knew it could not reach it, and said so) and, where no
  re-send can arrive in time, the least residual loss any code within either
  allowance could leave at perfect timing (`fec_bound`).

Wire bytes count every datagram both ways with its 28 bytes of IPv4 + UDP header;
payload bytes are the messages sent.

    python3 dev.py bench protection [--seeds N] [--quick] [--jobs N]  # results/protection.json
    python3 dev.py bench protection --plot docs/protection.png   # ... and draws the sweep
    python3 dev.py bench protection --replot docs/protection.png # from the last JSON
    python3 dev.py bench protection --table     # the last JSON as a markdown table
    python3 dev.py bench protection --cell 0.10,300,0.75 --seeds 64 --jobs 2  # one cell
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import multiprocessing
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import RESULTS, tapped_sender, write_json

import plait
from plait.sim import Cbr, Scenario, link, run
from plait.sim.scenarios import default_config

MS = 1_000_000
PSK = hashlib.sha256(b"plait bench protection").digest()


def _config(scenario: Scenario) -> plait.Config:
    return attrs.evolve(default_config(scenario), mtu=1500, fec=plait.FecConfig())


def _capped(cap: float) -> Any:
    def factory(scenario: Scenario) -> plait.Config:
        return attrs.evolve(_config(scenario), max_protection=cap)

    return factory


def measure(
    links: tuple[Any, ...],
    budget_ms: int,
    *,
    seed: int,
    seconds: int = 10,
    warmup_ms: int = 250,
    max_protection: float | None = None,
) -> dict[str, float]:
    """One run: delivered share and wire bytes per payload byte. The stream starts
    `warmup_ms` after the endpoints do."""
    scenario = Scenario(
        "protection",
        "bench",
        links,
        (Cbr.at_rate(4_000_000, 1316, stream=0),),
        latency_ns=budget_ms * MS,
        psk=PSK,
        duration_ns=seconds * 1_000_000_000,
        warmup_ns=warmup_ms * MS,
        drain_ns=max(2_000, budget_ms + 1_000) * MS,  # every message settles in the run
        config_factory=_config if max_protection is None else _capped(max_protection),
    )
    # the sender's plan (`Stats.planned_loss`) every 500 ms while the stream runs, once
    # the links are judged (at the end of a run it is the plan for its last packets)
    plans: list[float] = []
    due = [scenario.clock_start_ns + (warmup_ms + 1_000) * MS]
    stop = scenario.clock_start_ns + warmup_ms * MS + scenario.duration_ns

    def read_plan(endpoint: Any, now: int) -> None:
        if due[0] <= now < stop:
            due[0] = now + 500 * MS
            planned = endpoint.stats().planned_loss
            if planned is not None:
                plans.append(planned)

    result = run(scenario, seed=seed, endpoint_factory=tapped_sender(read_plan))
    assert not result.in_flight, result.summary()  # the drain settles every message
    wire = sum(p.offered_bytes + 28 * p.offered for p in result.links)
    return {
        "planned": statistics.median(plans) if plans else -1.0,
        "ok": float(result.ok),
        "sent": float(result.sent),
        "missed": float(result.sent - result.delivered),
        "delivered": result.delivered / result.sent if result.sent else 1.0,
        "overhead": wire / (result.sent * 1316) if result.sent else 0.0,
    }


def _peer(loss: float) -> tuple[Any, ...]:
    return tuple(
        link(rate * 1_000_000, delay * MS, jitter_ns=2 * MS, loss=loss)
        for rate, delay in zip((2, 5, 8, 10), (30, 10, 20, 15), strict=True)
    )


def _even(loss: float, rtt_ms: int) -> tuple[Any, ...]:
    jitter = int(_JITTER_MS * MS)
    one_way = rtt_ms * MS // 2
    return tuple(link(5_000_000, one_way, jitter_ns=jitter, loss=loss) for _ in range(_LINKS))


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


def allowed(sent: int, target: float = TARGET, confidence: float = 0.95) -> int:
    """The most misses a process that loses exactly `target` of `sent` messages shows
    in `confidence` of runs (the Poisson quantile): at 1e-4, one message in 3 705
    (99.97 %) is within it, so a single run's share cannot judge the target."""
    mean = target * sent
    term = total = math.exp(-mean)
    count = 0
    while total < confidence:
        count += 1
        term *= mean / count
        total += term
    return count


def held(row: dict[str, Any]) -> bool:
    """The misses of all seeds together are within what the target allows."""
    if "sent" not in row:  # a JSON written before the counts were kept
        return bool(row["delivered_worst"] >= 1 - TARGET)
    return bool(row["missed"] <= allowed(row["sent"]))


def delivered(row: dict[str, Any]) -> float:
    """The delivered share of all seeds together."""
    if "sent" not in row:
        return float(row["delivered_worst"])
    return 1.0 - row["missed"] / row["sent"] if row["sent"] else 1.0


_SERIALIZE_MS = (1316 + 16 + 11 + 6 + 28) * 8 / 5_000  # one datagram at 5 Mbit/s


def infeasible(row: dict[str, Any]) -> bool:
    """A budget shorter than the one-way delay plus one datagram's serialization:
    nothing can arrive in it, whatever the protection."""
    return bool(row["budget_ms"] < row["rtt_ms"] / 2 + _SERIALIZE_MS)


_GAP_MS = 1316 * 8 / 4_000  # the stream's datagrams at 4 Mbit/s: 2.63 ms apart
_JITTER_MS = 1.0  # the sweep links' jitter (`_even`)
_M_MAX = plait.FecConfig().m  # the most parity per block the default config allows
_LINKS = 4  # the sweep's links (`_even`)


def _tail(n: int, m: int, p: float) -> float:
    """The chance that at least `m` of `n` datagrams are lost, each with chance `p`."""
    return sum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(m, n + 1))


def fec_bound(row: dict[str, Any], cap: float = 1.0) -> float | None:
    """The least residual loss any code within `cap` (`Config.max_protection`) can
    leave in a cell where no re-send can arrive (one arrives 1.5 RTT, two
    serializations and the jitter after its original left at the earliest): a block
    of k records closes as its last is handed over, (k - 1) stream gaps after its
    first; its last record then takes one of the four links and its m parity the
    other three, a serialization each round (four or more parity take two rounds:
    five links' worth cannot leave at once), and the last of them must arrive, after
    the one-way delay and the links' jitter, by the first record's deadline. At most
    `_M_MAX` parity (the default's), copies of what the parity leaves within `cap`, no
    time lost otherwise, independent losses. (Counting one serialization whatever m
    was, the bound at 10 % loss and 2 RTT of 10 ms came out 8.9e-5, where four parity
    to 4 records is the most that fits: 2.7e-4.) None where a re-send may fit."""
    rtt, budget, p = float(row["rtt_ms"]), float(row["budget_ms"]), float(row["loss"])
    if budget >= 1.5 * rtt + 2 * _SERIALIZE_MS + _JITTER_MS:
        return None
    if budget - rtt / 2 - _SERIALIZE_MS - _JITTER_MS < 0:
        return None  # nothing arrives in time (`infeasible`)
    best = p
    for k in range(1, 17):
        for m in range(min(_M_MAX, int(cap * k + 1e-9)) + 1):
            rounds = max(1, -(-m // (_LINKS - 1)))
            last = (k - 1) * _GAP_MS + rounds * _SERIALIZE_MS + rtt / 2 + _JITTER_MS
            if last > budget:
                continue
            lost = p * _tail(k + m - 1, m, p)  # lost, and the rest of its block cannot rebuild it
            copied = min(1.0, cap - m / k)
            best = min(best, lost * (1 - copied + copied * p))
    return best


def beyond(row: dict[str, Any], cap: float = 1.0) -> bool:
    """No code within `cap` can leave the target in this cell (`fec_bound`)."""
    bound = fec_bound(row, cap)
    return bound is not None and bound > TARGET


def verdict(rows: list[dict[str, Any]]) -> str:
    """Where the target held, and whether every cell that missed it is one that no code
    within the default allowance could have held."""
    sweep = [r for r in _sweep(rows) if not infeasible(r)]
    missed = [r for r in sweep if not held(r)]
    reachable = [r for r in missed if not beyond(r)]
    text = (
        f"the target held in {len(sweep) - len(missed)} of {len(sweep)} cells; "
        f"{len(missed) - len(reachable)} missed where no code within the default "
        f"allowance reaches it"
    )
    if reachable:
        return text + "; missed within reach: " + ", ".join(r["case"] for r in reachable)
    return text + "; every cell within reach held"


def _settled(row: dict[str, Any]) -> bool:
    """The target held, or nothing could have held it."""
    return held(row) or infeasible(row)


def _sweep(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep's rows at the default cap."""
    return [_where(r) for r in rows if r["case"].startswith("loss") and "max_protection" not in r]


def plot(rows: list[dict[str, Any]], path: Path, seeds: int) -> None:
    """The sweep, one panel per loss rate: wire bytes per payload byte against the
    budget in RTTs, a line per RTT; a filled marker where the target (99.99 %) held,
    an open one where it did not, with the delivered share written next to it."""
    import matplotlib  # noqa: PLC0415  (only --plot needs it)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    sweep = [r for r in _sweep(rows) if not infeasible(r)]
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
                ok = held(r)
                ax.plot(
                    r["factor"],
                    r["overhead_worst"],
                    "o",
                    color=line.get_color(),
                    fillstyle="full" if ok else "none",
                )
                if not ok:
                    ax.annotate(
                        f"{100 * delivered(r):.2f}%",
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
    fig.suptitle(
        f"protection by cost: open markers missed the 1e-4 target ({seeds} seeds pooled;"
        " delivered shown)",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    print(f"plotted {path}")


def table(rows: list[dict[str, Any]]) -> str:
    """The sweep as a markdown table: a row per loss and RTT, a column per budget (in
    RTTs); each cell "delivered % / wire bytes per payload byte", bold where the
    delivered share is under the target, with a dagger where no code within the default
    allowance could have held it (`beyond`)."""
    sweep = _sweep(rows)
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
                text = f"{100 * delivered(r):.2f} % / {r['overhead_worst']:.2f}"
                if infeasible(r):
                    text = "n/a"
                if not _settled(r):
                    text = f"**{text}**" + (" †" if beyond(r) else "")
                cells.append(text)
            lines.append(f"| {loss:.0%} | {rtt} ms | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def capped_table(rows: list[dict[str, Any]]) -> str:
    """The cells that missed the target at the default cap, and what twice the
    protection allowance buys there."""
    again = {r["case"]: r for r in rows if "max_protection" in r}
    lines = [
        "| loss | RTT | budget | max_protection 1 (default) | its plan's residual "
        "| max_protection 2 | least residual any code within 1 / 2 can leave |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in _sweep(rows):
        if _settled(r) or r["case"] not in again:
            continue
        two = again[r["case"]]
        lines.append(
            f"| {r['loss']:.0%} | {r['rtt_ms']} ms | {r['factor']:g} RTT "
            f"| {100 * delivered(r):.2f} % / {r['overhead_worst']:.2f} "
            f"| {_plan_text(r)} "
            f"| {100 * delivered(two):.2f} % / {two['overhead_worst']:.2f} "
            f"| {_bound_text(r)} |"
        )
    return "\n".join(lines)


def _plan_text(row: dict[str, Any]) -> str:
    """What the sender's plan expected while the stream ran (`Stats.planned_loss`, the
    median of its readings and of the seeds): above the target where it knew it could
    not reach it."""
    planned = row.get("planned_loss")
    return "-" if planned is None or planned < 0 else f"{planned:.1e}"


def _bound_text(row: dict[str, Any]) -> str:
    one, two = fec_bound(row), fec_bound(row, cap=2.0)
    if one is None or two is None:
        return "a re-send may fit"
    return f"{one:.1e} / {two:.1e}"


Job = tuple[str, tuple[Any, ...], int, dict[str, float], int, int, float | None]


def _run(job: Job) -> dict[str, float]:
    """One simulation of a job; the stream starts two RTTs in (at least 250 ms)."""
    _, links, budget_ms, where, seed, seconds, cap = job
    warmup = max(250, 2 * int(where.get("rtt_ms", 0)))
    return measure(
        links, budget_ms, seed=seed, seconds=seconds, warmup_ms=warmup, max_protection=cap
    )


def _cell_job(loss: float, rtt: int, factor: float, seed: int, seconds: int) -> Job:
    """One seed of a sweep cell: four equal links, the budget `factor` RTTs."""
    name = f"loss {loss:4.0%} rtt {rtt:3d} ms x{factor:g}"
    where = {"loss": loss, "rtt_ms": rtt, "factor": factor}
    return (name, _even(loss, rtt), max(1, int(rtt * factor)), where, seed, seconds, None)


def _rows(jobs: Sequence[Job], workers: int) -> list[dict[str, Any]]:
    """Run every job (`workers` at a time) and fold the seeds of each case into a row,
    in the order the cases were listed; the same jobs give the same rows whatever
    `workers` is."""
    if workers > 1:
        with multiprocessing.Pool(workers) as pool:
            results = pool.map(_run, jobs, chunksize=1)
    else:
        results = [_run(job) for job in jobs]
    by_case: dict[tuple[str, float | None], list[dict[str, float]]] = {}
    first: dict[tuple[str, float | None], Job] = {}
    for job, result in zip(jobs, results, strict=True):
        by_case.setdefault((job[0], job[6]), []).append(result)
        first.setdefault((job[0], job[6]), job)
    rows = []
    for key, runs in by_case.items():
        name, _, budget_ms, where, _, _, cap = first[key]
        row: dict[str, Any] = {
            "case": name,
            **where,
            "budget_ms": budget_ms,
            "sent": sum(int(r["sent"]) for r in runs),
            "missed": sum(int(r["missed"]) for r in runs),
            "delivered_worst": min(r["delivered"] for r in runs),
            "overhead_worst": max(r["overhead"] for r in runs),
            "invariants": all(r["ok"] for r in runs),
            "planned_loss": statistics.median(r["planned"] for r in runs),
        }
        if cap is not None:
            row["max_protection"] = cap
        rows.append(row)
        print(
            f"{name:34} {budget_ms:6d} ms  delivered {100 * delivered(row):8.3f} % "
            f"({row['missed']} missed of {row['sent']}, {allowed(row['sent'])} allowed)  "
            f"overhead {row['overhead_worst']:5.3f}"
            f"{'' if cap is None else f'  (max_protection {cap:g})'}"
            f"{'' if row['invariants'] else '  VIOLATION'}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=4, help="seeds per case (default 4)")
    parser.add_argument("--quick", action="store_true", help="a smaller sweep, 5 s runs")
    parser.add_argument("--jobs", type=int, default=1, help="simulations at a time (processes)")
    parser.add_argument("--plot", type=Path, help="also draw the sweep into this PNG")
    parser.add_argument("--replot", type=Path, help="only draw results/protection.json")
    parser.add_argument("--table", action="store_true", help="only print its markdown tables")
    parser.add_argument(
        "--cell",
        action="append",
        metavar="LOSS,RTT_MS,FACTOR",
        help="only this sweep cell (e.g. 0.05,50,0.75; repeatable), printed, no JSON written",
    )
    args = parser.parse_args()
    if args.replot or args.table:
        saved = json.loads((RESULTS / "protection.json").read_text())
        if args.table:
            print(verdict(saved["rows"]))
            print()
            print(table(saved["rows"]))
            print()
            print(capped_table(saved["rows"]))
        if args.replot:
            plot(saved["rows"], args.replot, saved["seeds"])
        return
    seconds = 5 if args.quick else 10
    seeds = range(1, args.seeds + 1)
    jobs: list[Job] = []
    for seed in seeds:
        jobs.append(("2 % loss", _peer(0.02), 150, {}, seed, seconds, None))
        jobs.append(("3 % loss, deadline inside an RTT", _peer(0.03), 50, {}, seed, seconds, None))
    losses = (0.0, 0.02, 0.10) if args.quick else (0.0, 0.01, 0.03, 0.05, 0.10)
    rtts = (10, 100, 600) if args.quick else (10, 50, 100, 300, 600)
    budgets = (0.75, 2.0, 10.0) if args.quick else (0.75, 1.0, 2.0, 5.0, 10.0)
    cells = [(loss, rtt, factor) for loss in losses for rtt in rtts for factor in budgets]
    if args.cell:
        cells = [(float(a), int(b), float(c)) for a, b, c in (x.split(",") for x in args.cell)]
    sweep = [_cell_job(*cell, seed, seconds) for cell in cells for seed in seeds]
    if args.cell:
        _rows(sweep, args.jobs)
        return
    print("peer-comparison network and sweep (4 x 5 Mbit/s, 4 Mbit/s of 1316-byte datagrams)")
    rows = _rows(jobs + sweep, args.jobs)
    # where the default cap (Config.max_protection = 1) held the target back: the same
    # cells with twice the protection allowed
    missed = {r["case"] for r in _sweep(rows) if not _settled(r)}
    again: list[Job] = [(*job[:6], 2.0) for job in sweep if job[0] in missed]
    if again:
        print("\nthe cells that missed the target, with max_protection=2")
        rows += _rows(again, args.jobs)
    print(verdict(rows))
    print(f"wrote {write_json('protection', {'seeds': args.seeds, 'rows': rows})}")
    if args.plot:
        plot(rows, args.plot, args.seeds)


if __name__ == "__main__":
    main()
