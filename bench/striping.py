"""How plait spreads bytes over links of different capacity, at light and moderate load.

    python3 dev.py bench striping               # 3 seeds: bench/results/striping.json
    python3 dev.py bench striping --seeds 1 --duration 2

The ``clean`` scenario's links (2/5/8/10 Mbit/s, 40/25/15/10 ms one way, no loss) carry
2, 4 or 8 Mbit/s of 1200-byte messages, with plait told the links' rates, and told
nothing (``LinkConfig(rate_bps=None)``). Per case: each link's share of the bytes sent
A->B (data, parity, repairs, probes and feedback), averaged over the seeds, next to its
share of the capacity (8/20/32/40 %). The reference for a ratio is that capacity split:
an ideal DWRR stripe over estimates equal to the real rates. Shares are counted by the
simulator, so nothing here is timed and the same seeds give the same file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Final

import attrs

if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import RESULTS, environment

from plait.sim import SCENARIOS, run
from plait.sim.scenarios import MBPS, told
from plait.sim.traffic import Cbr

NS_PER_S: Final = 1_000_000_000
LOADS_MBPS: Final = (2, 4, 8)
CAPACITY: Final = (2, 5, 8, 10)


def shares(load_mbps: int, told_rates: bool, seeds: int, duration_ns: int) -> list[float]:
    """Each link's mean share of the A->B bytes over `seeds` runs."""
    scenario = attrs.evolve(
        SCENARIOS["clean"], traffic=(Cbr.at_rate(load_mbps * MBPS, 1200, stream=0),)
    )
    if not told_rates:
        scenario = attrs.evolve(scenario, config_factory=told(None, None, None, None))
    total = [0.0] * len(CAPACITY)
    for seed in range(1, seeds + 1):
        result = run(scenario, seed=seed, duration_ns=duration_ns)
        if not result.ok:
            sys.exit(f"an invariant broke: {result.summary()}")
        forward = result.links[: len(CAPACITY)]
        sent = sum(p.offered_bytes for p in forward)
        for i, path in enumerate(forward):
            total[i] += path.offered_bytes / sent / seeds
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="runs per case (default 3)")
    parser.add_argument("--duration", type=float, default=6.0, help="seconds of traffic")
    parser.add_argument("--json", type=Path, default=RESULTS / "striping.json", help="output")
    args = parser.parse_args()
    ideal = [c / sum(CAPACITY) for c in CAPACITY]
    print(f"{'load':>8} {'rates':>8}  share of bytes per link (%)     worst ratio to capacity")
    print(f"{'':>8} {'ideal':>8}  {' '.join(f'{x * 100:6.1f}' for x in ideal)}")
    cases = []
    for load in LOADS_MBPS:
        for told_rates in (True, False):
            got = shares(load, told_rates, args.seeds, int(args.duration * NS_PER_S))
            ratios = [g / i for g, i in zip(got, ideal, strict=True)]
            worst = max(ratios, key=lambda r: abs(r - 1.0))
            label = "told" if told_rates else "unknown"
            print(
                f"{load:>5} Mb {label:>8}  {' '.join(f'{x * 100:6.1f}' for x in got)}"
                f"     {worst:.2f}"
            )
            cases.append(
                {"load_bps": load * MBPS, "told": told_rates, "shares": got, "ratios": ratios}
            )
    payload = {"seeds": args.seeds, "capacity_bps": [c * MBPS for c in CAPACITY], "cases": cases}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"environment": environment(), **payload}, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
