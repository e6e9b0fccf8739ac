"""bench/capacity.py's metrics: the transient windows each capacity scenario leaves out,
the filter that leaves them out, the percentile, goodput, the verdicts against issue 12's
thresholds, and one short real run reduced to its numbers."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))

import capacity as bench  # bench/capacity.py (bench/ is a folder of scripts, not a package)

from plait.sim import SCENARIOS, run

S = 1_000_000_000
MS = 1_000_000


def test_transients_follow_each_scenarios_changes() -> None:
    assert bench.transients(SCENARIOS["step"]) == ((3 * S, 4 * S), (6 * S, 7 * S))
    told_wrong = ((S // 4, S // 4 + S),)  # from the start of traffic, after the warm-up
    assert bench.transients(SCENARIOS["misconfigured"]) == told_wrong
    assert bench.transients(SCENARIOS["unknown"]) == told_wrong
    assert bench.transients(SCENARIOS["overload"]) == told_wrong
    assert bench.transients(SCENARIOS["moving"]) is None  # always changing
    reference = bench.steady(SCENARIOS["step"])
    assert bench.transients(reference) == ()
    assert reference.links == SCENARIOS["unknown"].links  # the same deep links, no step
    assert reference.traffic == SCENARIOS["step"].traffic


def test_settled_leaves_out_what_was_sent_in_a_window() -> None:
    windows = bench.transients(SCENARIOS["step"])
    assert windows is not None
    deliveries = [
        (S // 2, 10 * MS),
        (3 * S - 1, 11 * MS),  # just before the step: kept
        (3 * S, 500 * MS),  # windows include their start...
        (4 * S - 1, 400 * MS),
        (4 * S, 20 * MS),  # ...and exclude their end
        (6 * S + S // 2, 300 * MS),
        (8 * S, 30 * MS),
    ]
    assert bench.settled(deliveries, windows) == [10 * MS, 11 * MS, 20 * MS, 30 * MS]
    assert bench.settled(deliveries, ()) == [d for _, d in deliveries]


def test_percentile_is_nearest_rank() -> None:
    assert bench.percentile(list(range(100, 0, -1)), 99) == 99
    assert bench.percentile(list(range(1, 1001)), 99) == 990
    assert bench.percentile(list(range(1, 1002)), 99) == 991  # ceil(1001 * 0.99) = 991
    assert bench.percentile([7], 99) == 7
    assert bench.percentile([3, 1, 2], 50) == 2
    assert bench.percentile([], 99) is None


def test_goodput_counts_payload_over_the_traffic_time() -> None:
    overload = SCENARIOS["overload"]
    assert bench.raw_capacity_bps(overload) == 8_000_000
    assert bench.raw_capacity_bps(SCENARIOS["moving"]) is None
    assert bench.traffic_ns(overload) == 10 * S - S // 4
    assert bench.traffic_ns(overload, 2 * S) == 2 * S - S // 4


def test_one_short_run_reduced_to_its_numbers() -> None:
    scenario = SCENARIOS["overload"]
    windows = bench.transients(scenario)
    assert windows is not None
    result = run(scenario, seed=1, duration_ns=2 * S)
    got = bench.numbers(result, scenario, {"overload": windows}, 2 * S)
    assert got.ok
    assert (got.sent, got.delivered, got.expired) == (result.sent, result.delivered, result.expired)
    assert got.delivered_fraction == result.delivered / result.sent
    assert got.bytes_delivered == result.delivered * 1200  # every message is 1200 bytes
    assert got.goodput_bps == got.bytes_delivered * 8 * S // (2 * S - S // 4)
    assert got.goodput_fraction == got.goodput_bps / 8_000_000
    kept = [lat for sent, lat in result.deliveries if not S // 4 <= sent < S // 4 + S]
    assert 0 < len(kept) < result.delivered
    assert got.settled["overload"] == bench.Settled(bench.percentile(kept, 99), len(kept))
    assert got.p99_ns == result.latency_p99


def _numbers(
    seed: int, delivered: int, p99_ms: int, *, ok: bool = True, goodput: float | None = None
) -> bench.Numbers:
    return bench.Numbers(
        seed=seed,
        ok=ok,
        violation_counts={},
        violations=[],
        digest="",
        sent=10_000,
        delivered=delivered,
        expired=10_000 - delivered,
        in_flight=0,
        backpressured=0,
        p99_ns=p99_ms * MS,
        settled={"step": bench.Settled(p99_ms * MS, delivered)},
        bytes_delivered=delivered * 1200,
        goodput_bps=0,
        goodput_fraction=goodput,
    )


def test_verdicts_fail_on_the_worst_seed() -> None:
    refs = [_numbers(1, 10_000, 30), _numbers(2, 10_000, 30)]
    good = [_numbers(1, 9_995, 60), _numbers(2, 10_000, 70)]
    assert [v.passed for v in bench.verdicts("step", good, refs)] == [True, True, True]
    exactly = [_numbers(1, 9_990, 30), _numbers(2, 10_000, 30)]  # 99.9 % is enough
    assert [v.passed for v in bench.verdicts("step", exactly, refs)] == [True, True, True]
    one_short = [good[0], _numbers(2, 9_989, 35)]  # 99.89 % < 99.9 %
    assert [v.passed for v in bench.verdicts("step", one_short, refs)] == [True, False, True]
    one_slow = [good[0], _numbers(2, 10_000, 71)]  # 41 ms over the reference
    assert [v.passed for v in bench.verdicts("step", one_slow, refs)] == [True, True, False]
    broken = [good[0], _numbers(2, 10_000, 30, ok=False)]
    assert [v.passed for v in bench.verdicts("step", broken, refs)] == [False, True, True]


def test_goodput_verdict() -> None:
    runs = [_numbers(s, 5_000, 100, goodput=f) for s, f in ((1, 0.72), (2, 0.70))]
    assert [v.passed for v in bench.verdicts("overload", runs, [])] == [True, True]
    runs.append(_numbers(3, 5_000, 100, goodput=0.699))
    assert [v.passed for v in bench.verdicts("overload", runs, [])] == [True, False]
