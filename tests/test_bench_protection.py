"""bench/protection.py's judgement of the sweep: how many misses the target allows, which
cells nothing can reach, and the least residual any code within the allowance leaves
where no re-send can arrive (`fec_bound`)."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

sys.path.append(str(Path(__file__).resolve().parent.parent / "bench"))

import protection as bench  # bench/protection.py (bench/ is a folder of scripts)


def _cell(loss: float, rtt_ms: int, factor: float) -> dict[str, Any]:
    return {"loss": loss, "rtt_ms": rtt_ms, "budget_ms": max(1, int(rtt_ms * factor))}


def test_allowed_is_the_poisson_quantile() -> None:
    assert bench.allowed(14_820) == 4  # mean 1.48: P(<= 4) = 0.98, P(<= 3) = 0.94
    assert bench.allowed(13_376) == 3
    assert bench.allowed(0) == 0


def test_fec_bound_by_hand() -> None:
    # 10 ms RTT, 10 ms budget: 1.8 ms after the one-way delay, serialization and 1 ms of
    # jitter holds one record: the best within 1.0 is a copy of each, lost when both are
    p = 0.03
    assert math.isclose(bench.fec_bound(_cell(p, 10, 1.0)) or 0.0, p * p)
    assert (bench.fec_bound(_cell(0.05, 10, 1.0)) or 0.0) > 1e-4  # beyond the default cap
    assert bench.fec_bound(_cell(0.0, 10, 1.0)) == 0.0
    # 50 ms RTT, 37 ms budget: 12 ms after the one-way delay and the jitter; four records
    # with four parity would need two rounds of serialization (three links are free as
    # the block closes): 3 gaps of 2.63 + 2 x 2.43 > 12; within 1.0 the best is three
    # records + three parity, lost when at least three of the other five are
    five = sum(math.comb(5, j) * p**j * (1 - p) ** (5 - j) for j in range(3, 6))
    assert math.isclose(bench.fec_bound(_cell(p, 50, 0.75)) or 0.0, p * five)
    # 2 RTT of 10 ms at 10 %: four records + four parity (two rounds) fit in 20 ms, five
    # records do not: lost when at least four of the other seven are
    p = 0.10
    seven = sum(math.comb(7, j) * p**j * (1 - p) ** (7 - j) for j in range(4, 8))
    assert math.isclose(bench.fec_bound(_cell(p, 10, 2.0)) or 0.0, p * seven)
    assert bench.beyond(_cell(p, 10, 2.0))  # 2.7e-4: no code within the default cap
    assert not bench.beyond(_cell(0.05, 50, 0.75))  # 5.8e-5
    assert not bench.beyond(_cell(p, 10, 3.0))  # a re-send may fit


def test_fec_bound_only_where_no_resend_fits() -> None:
    assert bench.fec_bound(_cell(0.1, 10, 3.0)) is None  # 30 ms >= 1.5 RTT + 2 datagrams
    assert bench.fec_bound(_cell(0.1, 10, 2.0)) is not None  # 20 ms: + 1 ms jitter, not
    assert bench.fec_bound(_cell(0.1, 100, 5.0)) is None
    assert bench.fec_bound(_cell(0.1, 50, 0.75)) is not None
    assert bench.fec_bound(_cell(0.1, 10, 0.75)) is None  # nothing arrives: n/a
    assert bench.infeasible(_cell(0.1, 10, 0.75))


@given(
    loss=st.floats(0.0, 0.3),
    rtt_ms=st.sampled_from((10, 50, 100, 300, 600)),
    factor=st.floats(0.5, 1.4),
    cap=st.floats(0.0, 3.0),
)
def test_fec_bound_more_allowance_or_time_never_worse(
    loss: float, rtt_ms: int, factor: float, cap: float
) -> None:
    cell = _cell(loss, rtt_ms, factor)
    bound = bench.fec_bound(cell, cap)
    if bound is None:
        return
    assert 0.0 <= bound <= loss + 1e-12  # never worse than sending each record once
    assert (bench.fec_bound(cell, cap + 0.5) or 0.0) <= bound + 1e-12
    later = {**cell, "budget_ms": cell["budget_ms"] + 3}
    more_time = bench.fec_bound(later, cap)
    assert more_time is None or more_time <= bound + 1e-12
