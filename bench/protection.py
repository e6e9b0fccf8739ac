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
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import write_json

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds per case (default 2)")
    parser.add_argument("--quick", action="store_true", help="a smaller sweep, 5 s runs")
    args = parser.parse_args()
    seconds = 5 if args.quick else 10
    rows: list[dict[str, Any]] = []

    def case(name: str, links: tuple[Any, ...], budget_ms: int) -> dict[str, Any]:
        runs = [
            measure(links, budget_ms, seed=s, seconds=seconds) for s in range(1, args.seeds + 1)
        ]
        row: dict[str, Any] = {
            "case": name,
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
                case(f"loss {loss:4.0%} rtt {rtt:3d} ms x{factor:g}", _even(loss, rtt), budget)
    print(f"wrote {write_json('protection', {'seeds': args.seeds, 'rows': rows})}")


if __name__ == "__main__":
    main()
