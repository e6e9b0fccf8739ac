"""Issue 12's "Done when", measured in the simulator: the capacity scenarios over many seeds.

    python3 dev.py bench capacity              # 50 seeds each: bench/results/capacity.json
    python3 dev.py bench capacity --seeds 2 --scenarios step,overload
    python3 dev.py bench capacity --jobs 2     # two simulations at a time
    python3 dev.py bench capacity --seeds 1 --duration 2 --json /tmp/c.json   # a smoke run

Each scenario of `plait.sim.SCENARIOS` named in `SCENARIOS_RUN` below (``step``,
``misconfigured``, ``unknown``, ``moving``, ``overload``: deep-buffered links whose capacity
plait is not told, or told wrong) runs once per seed 1..N through two real endpoints, and
so does the reference, ``steady``: the ``step`` scenario's links (deep buffers, 8 Mbit/s
offered) with no rate change and their rates told. Per run:

* delivered = delivered / sent messages (a message `send` refused is not sent: see the
  ``backpressured`` count), expired messages, and whether every invariant held (exactly
  once, in order, intact, never late, everything resolved). A broken invariant is printed
  at once with the run's summary, and makes the exit status 1.
* p99 latency after the transients: over the messages *sent* outside the transient
  windows, each the `TRANSIENT_NS` after a capacity change (``step``: 3 s and 6 s from the
  start of the run, as its rate schedule says) or after traffic starts when plait is told
  a wrong rate or none (``misconfigured``, ``unknown``, ``overload``: traffic starts at
  the scenario's ``warmup_ns``, 0.25 s: the first second of traffic). ``moving`` changes
  every 500 ms, so every message is in a transient: only its overall p99 is reported. The
  reference's p99 is taken over the same send-time windows of the same seed, and the
  criterion is on the difference.
* goodput in time = payload bits delivered (before their deadlines: a late one would be
  an invariant violation) / the time traffic was offered, as a fraction of the links' raw
  capacity (the sum of their rates, IP headers in; only for links of a fixed rate; the
  table shows it for ``overload`` only, elsewhere it is just the offered load).

The criteria (issue 12) are judged on the worst seed: every run keeps every invariant;
delivered >= 99.9 % (``step``, ``misconfigured``, ``unknown``) or 99 % (``moving``); p99
after the transient within 40 ms of the reference's (``step``, ``misconfigured``,
``unknown``); goodput >= 70 % of raw capacity (``overload``). Across seeds the table
shows the worst, mean or median, and the p99 over seeds (nearest rank: with up to 100
seeds that is the worst). The JSON holds every run's numbers and its trace digest and
nothing timed, so the same seeds and code give the same file whatever ``--jobs`` is.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs

if str(Path(__file__).resolve().parent) not in sys.path:  # imported by a test: it is there
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import RESULTS, environment

import plait
from plait.sim import SCENARIOS, LinkSpec, Scenario, SimResult, default_config, run

NS_PER_S: Final = 1_000_000_000
NS_PER_MS: Final = 1_000_000
TRANSIENT_NS: Final = NS_PER_S
"""How long after a capacity change the issue lets latency settle."""
P99_MARGIN_NS: Final = 40 * NS_PER_MS
"""p99 after the transient may exceed the reference's by this much at most."""
DELIVERED_MIN: Final = {"step": 0.999, "misconfigured": 0.999, "unknown": 0.999, "moving": 0.99}
P99_CHECKED: Final = ("step", "misconfigured", "unknown")
GOODPUT_MIN: Final = {"overload": 0.70}
ISSUE_SEEDS: Final = 50
"""Issue 12 asks for at least this many seeds per scenario."""
SCENARIOS_RUN: Final = ("step", "misconfigured", "unknown", "moving", "overload")
REFERENCE: Final = "steady"

Window = tuple[int, int]
"""``[start, end)`` in ns of send time from the start of the run."""


# --- the metrics: pure functions of a scenario and a run's numbers -----------------------------


def percentile(values: Sequence[int] | Sequence[float], pct: int) -> Any:
    """Nearest-rank `pct`-th percentile (as `SimResult.latency_p99`, but in exact integer
    arithmetic) of `values`, which need not be sorted; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = -(-len(ordered) * pct // 100)  # ceil(n * pct / 100)
    return ordered[max(0, rank - 1)]


def transients(scenario: Scenario) -> tuple[Window, ...] | None:
    """The send-time windows a capacity change leaves unsettled: `TRANSIENT_NS` from each
    step of a link's rate schedule, and from the start of traffic if plait is told a rate
    other than a link's real one (or none). None when a link's rate moves all the time."""
    changes: set[int] = set()
    told = scenario.config().links
    for spec, config in zip(scenario.links, told, strict=True):
        for path in (spec.forward, spec.reverse):
            schedule = None if path is None else path.rate_schedule
            if schedule is None:
                continue
            if schedule.every_ns is not None:
                return None
            changes.update(t for t, _ in schedule.steps)
        if config.rate_bps != spec.forward.rate_bps:
            changes.add(scenario.warmup_ns)
    return tuple((t, t + TRANSIENT_NS) for t in sorted(changes))


def settled(deliveries: Iterable[tuple[int, int]], windows: Sequence[Window]) -> list[int]:
    """The latencies of the `deliveries` ``(send time, latency)`` sent outside `windows`."""
    return [
        latency
        for sent, latency in deliveries
        if not any(start <= sent < end for start, end in windows)
    ]


def raw_capacity_bps(scenario: Scenario) -> int | None:
    """The A->B links' rates summed (bit/s of IP packets), or None if any rate changes."""
    if any(s.forward.rate_schedule is not None for s in scenario.links):
        return None
    return sum(s.forward.rate_bps for s in scenario.links)


def traffic_ns(scenario: Scenario, duration_ns: int | None = None) -> int:
    """How long traffic is offered: from the end of the warm-up to the end of traffic."""
    return (scenario.duration_ns if duration_ns is None else duration_ns) - scenario.warmup_ns


def steady(scenario: Scenario) -> Scenario:
    """`scenario` with every rate schedule removed and the links' real rates told: the
    clean-link reference for it (same links, buffers and traffic)."""

    def still(spec: LinkSpec) -> LinkSpec:
        reverse = None if spec.reverse is None else attrs.evolve(spec.reverse, rate_schedule=None)
        return LinkSpec(attrs.evolve(spec.forward, rate_schedule=None), reverse)

    return scenario.evolve(
        name=REFERENCE,
        description=f"the {scenario.name} scenario's links with no rate change, rates told",
        links=tuple(still(s) for s in scenario.links),
        config_factory=default_config,
    )


@attrs.frozen
class Settled:
    """Latency over the messages sent outside one scenario's transient windows."""

    p99_ns: int | None
    messages: int


@attrs.frozen
class Numbers:
    """One run's numbers: everything the table and the verdicts need, JSON-ready."""

    seed: int
    ok: bool
    violation_counts: dict[str, int]
    violations: list[dict[str, Any]]
    digest: str
    sent: int
    delivered: int
    expired: int
    in_flight: int
    backpressured: int
    p99_ns: int | None
    """Over every delivered message."""
    settled: dict[str, Settled]
    """p99 outside each named scenario's transients (its own; a reference: each target's)."""
    bytes_delivered: int
    goodput_bps: int
    goodput_fraction: float | None
    """`goodput_bps` / raw capacity, when the links' rates are fixed."""

    @property
    def delivered_fraction(self) -> float:
        return self.delivered / self.sent if self.sent else 0.0


def numbers(
    result: SimResult,
    scenario: Scenario,
    windows: dict[str, tuple[Window, ...]],
    duration_ns: int | None = None,
) -> Numbers:
    """The `Numbers` of one run of `scenario`; `windows` names the transients to leave out
    (a scenario's own, or for the reference those of each scenario compared with it)."""
    payload = sum(s.bytes_delivered for s in result.endpoint_stats if isinstance(s, plait.Stats))
    goodput = payload * 8 * NS_PER_S // traffic_ns(scenario, duration_ns)
    raw = raw_capacity_bps(scenario)
    summary = result.to_dict()
    return Numbers(
        seed=result.seed,
        ok=result.ok,
        violation_counts=dict(result.violation_counts),
        violations=summary["violations"],
        digest=result.digest,
        sent=result.sent,
        delivered=result.delivered,
        expired=result.expired,
        in_flight=result.in_flight,
        backpressured=result.backpressured,
        p99_ns=percentile(result.latencies, 99),
        settled={
            name: Settled(percentile(kept, 99), len(kept))
            for name, w in windows.items()
            for kept in (settled(result.deliveries, w),)
        },
        bytes_delivered=payload,
        goodput_bps=goodput,
        goodput_fraction=None if raw is None else goodput / raw,
    )


def p99_excess(run: Numbers, reference: Numbers, name: str) -> int | None:
    """How much `run`'s settled p99 exceeds the reference's over `name`'s windows (ns)."""
    mine, theirs = run.settled.get(name), reference.settled.get(name)
    if mine is None or theirs is None or mine.p99_ns is None or theirs.p99_ns is None:
        return None
    return mine.p99_ns - theirs.p99_ns


@attrs.frozen
class Verdict:
    criterion: str
    measured: str
    needed: str
    passed: bool


def verdicts(name: str, runs: Sequence[Numbers], references: Sequence[Numbers]) -> list[Verdict]:
    """Issue 12's criteria for scenario `name`, judged on its worst seed."""
    broken = [r.seed for r in runs if not r.ok]
    out = [
        Verdict(
            "every invariant held",
            f"{len(runs) - len(broken)}/{len(runs)} runs"
            + (f" (broken: seeds {', '.join(map(str, broken))})" if broken else ""),
            "all",
            not broken,
        )
    ]
    if name in DELIVERED_MIN:
        worst = min(r.delivered_fraction for r in runs)
        need = DELIVERED_MIN[name]
        out.append(
            Verdict("delivered, worst seed", f"{worst:.3%}", f">= {need:.1%}", worst >= need)
        )
    if name in P99_CHECKED:
        by_seed = {r.seed: r for r in references}
        excess = [p99_excess(r, by_seed[r.seed], name) if r.seed in by_seed else None for r in runs]
        known = [e for e in excess if e is not None]
        worst_excess = max(known) if known else None
        measured = "-" if worst_excess is None else f"{worst_excess / NS_PER_MS:+.1f} ms"
        if len(known) < len(excess):
            measured += f" ({len(excess) - len(known)} seeds without a p99)"
        out.append(
            Verdict(
                "p99 after transient - steady p99, worst seed",
                measured,
                f"<= {P99_MARGIN_NS // NS_PER_MS} ms",
                bool(known) and len(known) == len(excess) and max(known) <= P99_MARGIN_NS,
            )
        )
    if name in GOODPUT_MIN:
        fractions = [r.goodput_fraction for r in runs]
        need = GOODPUT_MIN[name]
        if any(f is None for f in fractions):
            out.append(Verdict("goodput / raw capacity, worst seed", "-", f">= {need:.0%}", False))
        else:
            worst_goodput = min(f for f in fractions if f is not None)
            out.append(
                Verdict(
                    "goodput / raw capacity, worst seed",
                    f"{worst_goodput:.1%}",
                    f">= {need:.0%}",
                    worst_goodput >= need,
                )
            )
    return out


# --- running -------------------------------------------------------------------------------------

Job = tuple[str, int, int | None, dict[str, tuple[Window, ...]]]
"""(scenario name, seed, traffic duration or None, transient windows to leave out)."""


def scenario_named(name: str) -> Scenario:
    """A capacity scenario by name, or the reference (``steady``)."""
    return steady(SCENARIOS["step"]) if name == REFERENCE else SCENARIOS[name]


def run_job(job: Job) -> tuple[str, Numbers]:
    """Simulate one (scenario, seed) and reduce it to its `Numbers` (in a worker)."""
    name, seed, duration_ns, windows = job
    scenario = scenario_named(name)
    result = run(scenario, seed=seed, duration_ns=duration_ns)
    if not result.ok:  # loud, at once, whatever else happens
        print(f"!!! INVARIANT VIOLATION\n{result.summary()}", file=sys.stderr, flush=True)
    return name, numbers(result, scenario, windows, duration_ns)


def jobs(names: Sequence[str], seeds: Sequence[int], duration_ns: int | None) -> list[Job]:
    """Every run: for each seed, each scenario, then the reference if a p99 needs it."""
    own = {n: transients(scenario_named(n)) for n in names}
    compared = {n: w for n, w in own.items() if n in P99_CHECKED and w is not None}
    out: list[Job] = []
    for seed in seeds:
        for name in names:
            w = own[name]
            out.append((name, seed, duration_ns, {} if w is None else {name: w}))
        if compared:
            out.append((REFERENCE, seed, duration_ns, compared))
    return out


def execute(todo: Sequence[Job], workers: int) -> Iterator[tuple[str, Numbers]]:
    """Run `todo` in order, in this process or in a pool of `workers` processes."""
    if workers <= 1:
        yield from map(run_job, todo)
        return
    with multiprocessing.Pool(workers) as pool:
        yield from pool.imap(run_job, todo, chunksize=1)


# --- the report ----------------------------------------------------------------------------------


def _ms(ns: float | None) -> str:
    return "-" if ns is None else f"{ns / NS_PER_MS:.1f}"


def _pct(fraction: float | None, digits: int = 3) -> str:
    return "-" if fraction is None else f"{fraction * 100:.{digits}f}"


def _settled_p99(run: Numbers, name: str) -> int | None:
    got = run.settled.get(name)
    return None if got is None else got.p99_ns


def _json(run: Numbers) -> dict[str, Any]:
    return {**attrs.asdict(run), "delivered_fraction": run.delivered_fraction}


def summary(name: str, runs: Sequence[Numbers], refs: Sequence[Numbers]) -> dict[str, Any]:
    """Across seeds: worst, mean, median and p99 of each per-run number."""
    delivered = [r.delivered_fraction for r in runs]
    overall = [r.p99_ns for r in runs if r.p99_ns is not None]
    p99s = [p for r in runs if (p := _settled_p99(r, name)) is not None]
    ref = [p for r in refs if (p := _settled_p99(r, name)) is not None]
    by_seed = {r.seed: r for r in refs}
    excess = [
        e
        for r in runs
        if r.seed in by_seed and (e := p99_excess(r, by_seed[r.seed], name)) is not None
    ]
    goodput = [r.goodput_fraction for r in runs if r.goodput_fraction is not None]

    def spread(values: Sequence[float]) -> dict[str, Any]:
        if not values:
            return {}
        return {
            "min": min(values),
            "median": percentile(values, 50),
            "mean": sum(values) / len(values),
            "p99": percentile(values, 99),
            "max": max(values),
        }

    return {
        "runs": len(runs),
        "broken": sum(not r.ok for r in runs),
        "sent": sum(r.sent for r in runs),
        "delivered": sum(r.delivered for r in runs),
        "expired": sum(r.expired for r in runs),
        "backpressured": sum(r.backpressured for r in runs),
        "delivered_fraction": spread(delivered),
        "p99_ns": spread(overall),
        "p99_settled_ns": spread(p99s),
        "reference_p99_settled_ns": spread(ref),
        "p99_excess_ns": spread(excess),
        "goodput_fraction": spread(goodput),
    }


HEAD: Final = (
    f"{'':14}{'':10}{'delivered %':>18} {'':>8} {'p99 ms':>6} "
    f"{'settled p99 ms':>15} {'steady':>7} {'excess ms':>13} {'goodput %':>13}\n"
    f"{'scenario':14}{'runs':>5}{'bad':>5}{'worst':>9}{'mean':>9} {'expired':>8} {'med':>6} "
    f"{'med':>7}{'p99':>8} {'med':>7} {'med':>6}{'worst':>7} {'worst':>6}{'med':>7}"
)


def row(name: str, s: dict[str, Any]) -> str:
    """One line of the table from a `summary`."""
    d, p, st = s["delivered_fraction"], s["p99_ns"], s["p99_settled_ns"]
    ref, ex = s["reference_p99_settled_ns"], s["p99_excess_ns"]
    g = s["goodput_fraction"] if name in GOODPUT_MIN else {}  # elsewhere: the offered load
    return (
        f"{name:14}{s['runs']:>5}{s['broken']:>5}{_pct(d.get('min')):>9}{_pct(d.get('mean')):>9} "
        f"{s['expired']:>8} {_ms(p.get('median')):>6} {_ms(st.get('median')):>7}"
        f"{_ms(st.get('p99')):>8} {_ms(ref.get('median')):>7} {_ms(ex.get('median')):>6}"
        f"{_ms(ex.get('max')):>7} {_pct(g.get('min'), 1):>6}{_pct(g.get('median'), 1):>7}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=ISSUE_SEEDS, help="seeds 1..N per scenario")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS_RUN), help="comma-separated")
    parser.add_argument("--jobs", type=int, default=1, help="simulations at a time (processes)")
    parser.add_argument("--duration", type=float, help="seconds of traffic, for a smoke run")
    parser.add_argument("--json", type=Path, default=RESULTS / "capacity.json", help="output")
    args = parser.parse_args(argv)
    names = [n for n in args.scenarios.split(",") if n]
    unknown = [n for n in names if n not in SCENARIOS_RUN]
    if unknown or not names or args.seeds < 1 or args.jobs < 1:
        parser.error(f"scenarios must be some of {', '.join(SCENARIOS_RUN)}; seeds, jobs >= 1")
    seeds = list(range(1, args.seeds + 1))
    duration_ns = None if args.duration is None else round(args.duration * NS_PER_S)
    todo = jobs(names, seeds, duration_ns)
    print(
        f"capacity: {len(todo)} runs ({', '.join(names)}"
        f"{', ' + REFERENCE if len(todo) > len(names) * len(seeds) else ''}; seeds 1-{args.seeds})"
        f", {args.jobs} at a time",
        flush=True,
    )
    runs: dict[str, list[Numbers]] = {n: [] for n in [*names, REFERENCE]}
    started = time.monotonic()
    for done, (name, got) in enumerate(execute(todo, args.jobs), 1):
        runs[name].append(got)
        flag = "" if got.ok else "  INVARIANT VIOLATED"
        print(
            f"  [{done}/{len(todo)}] {name} seed {got.seed}: {_pct(got.delivered_fraction)} % "
            f"delivered, p99 {_ms(got.p99_ns)} ms{flag}",
            file=sys.stderr,
            flush=True,
        )
    elapsed = time.monotonic() - started
    refs = runs[REFERENCE]
    report: dict[str, Any] = {}
    print(f"\n{HEAD}")
    for name in names:
        s = summary(name, runs[name], refs)
        print(row(name, s))
        scenario = SCENARIOS[name]
        w = transients(scenario)
        report[name] = {
            "description": scenario.description,
            "transients_ns": None if w is None else [list(x) for x in w],
            "summary": s,
            "verdicts": [attrs.asdict(v) for v in verdicts(name, runs[name], refs)],
            "runs": [_json(r) for r in runs[name]],
        }
    if refs:
        print(row(f"{REFERENCE} (ref)", summary(REFERENCE, refs, [])))
    print(f"\nissue 12, judged on the worst of {args.seeds} seeds:")
    passed = True
    for name in names:
        for v in report[name]["verdicts"]:
            passed &= v["passed"]
            print(
                f"  {'PASS' if v['passed'] else 'FAIL'}  {name:14}{v['criterion']:46}"
                f"{v['measured']:>24}  (needs {v['needed']})"
            )
    if args.seeds < ISSUE_SEEDS:
        print(f"  (only {args.seeds} seeds: issue 12 asks for at least {ISSUE_SEEDS})")
    broken = [(n, r.seed) for n, rs in runs.items() for r in rs if not r.ok]
    if broken:
        print(f"\n!!! INVARIANTS BROKEN in {len(broken)} runs: {broken}", file=sys.stderr)
    payload = {
        "issue": 12,
        "seeds": seeds,
        "duration_ns": duration_ns,
        "transient_ns": TRANSIENT_NS,
        "criteria": {
            "delivered_min": DELIVERED_MIN,
            "p99_margin_ns": P99_MARGIN_NS,
            "p99_checked": list(P99_CHECKED),
            "goodput_min": GOODPUT_MIN,
        },
        "passed": passed and not broken,
        "scenarios": report,
        "reference": {
            "name": REFERENCE,
            "description": scenario_named(REFERENCE).description,
            "runs": [_json(r) for r in refs],
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"environment": environment(), **payload}, indent=2) + "\n")
    print(f"\n{len(todo)} runs in {elapsed:.0f} s; wrote {args.json}")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
