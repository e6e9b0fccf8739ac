"""How long the path MTU search takes, what it costs, and what a black hole loses.

Three cases in the simulator, on the `pmtu` scenario's network (2/5/8/10 Mbit/s,
30/20/15/10 ms one way, 2 % loss, 4 Mbit/s of 1316-byte datagrams from the start,
a psk, `Config.mtu` 1500), several seeds each:

* **1500**: every path carries 1500 bytes: when the messages are first cut to the
  full size (every link's search done), and the probes each link sent.
* **1400**: link 1's path carries 1400 (the scenario itself): when messages are cut
  to what that link carries (its search done) and the probes it took.
* **black hole**: link 2's path shrinks from 1500 to 1300 bytes 4 s in: how long
  after that DATA and PARITY still die of size, how many, when messages are cut to
  fit 1300, and whether every message arrived all the same.

Times are from the start of the run (the endpoints start together; the first RTT
sample comes with the handshake). Sizes are watched on the sending endpoint.

    python3 dev.py bench pmtu [--seeds N]   # writes results/pmtu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import tapped_sender, write_json

from plait.sim import SCENARIOS, Scenario, run
from plait.sim.links import LinkSpec
from plait.sim.network import Drop
from plait.wire import PacketType

MS = 1_000_000
S = 1_000 * MS
SHRINK_NS = 4 * S


def _run(scenario: Scenario, seed: int) -> tuple[Any, list[tuple[int, int]]]:
    sizes: list[tuple[int, int]] = []  # (when, the size messages are cut to from then)

    def note(endpoint: Any, now: int) -> None:
        size = endpoint.outbox.max_payload
        if not sizes or sizes[-1][1] != size:
            sizes.append((now, size))

    result = run(scenario, seed=seed, endpoint_factory=tapped_sender(note), trace_limit=10**7)
    assert result.ok, result.summary()
    return result, sizes


def _with_mtu(scenario: Scenario, link: int, spec: Any) -> Scenario:
    links = list(scenario.links)
    links[link] = LinkSpec(spec(links[link].forward))
    return scenario.evolve(links=tuple(links))


def _size_drops(trace: Any, since: int) -> list[int]:
    """Times of the DATA and PARITY datagrams the paths dropped for size after `since`."""
    kinds = (PacketType.DATA, PacketType.PARITY)
    return [
        time
        for kind, time, _side, _link, fate, _arrival, blob in trace
        if kind == "NET"
        and fate == Drop.MTU
        and time >= since
        and bytes.fromhex(blob[:2])[0] & 0x0F in kinds
    ]


def _summary(values: Sequence[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10, help="seeds per case (default 10)")
    args = parser.parse_args()
    seeds = range(1, args.seeds + 1)
    base = SCENARIOS["pmtu"].evolve(duration_ns=4 * S)
    wide = _with_mtu(base, 1, lambda path: attrs.evolve(path, mtu=1500))
    shrinking = _with_mtu(
        base.evolve(duration_ns=8 * S),
        2,
        lambda path: attrs.evolve(path, mtu_schedule=((SHRINK_NS, 1300),)),
    )
    out: dict[str, Any] = {"seeds": args.seeds}

    full, probes = [], []
    for seed in seeds:
        result, sizes = _run(wide, seed)
        full.append(sizes[-1][0] / MS)
        probes += [ln.pmtu_probes for ln in result.endpoint_stats[0].links]
    out["1500"] = {"full_size_ms": _summary(full), "probes_per_link": _summary(probes)}

    done, probes = [], []
    for seed in seeds:
        result, sizes = _run(base, seed)
        done.append(sizes[-1][0] / MS)
        probes.append(result.endpoint_stats[0].links[1].pmtu_probes)
    out["1400"] = {"fitted_ms": _summary(done), "probes_on_link_1": _summary(probes)}

    last, lost, fitted, delivered = [], [], [], []
    for seed in seeds:
        result, sizes = _run(shrinking, seed)
        drops = _size_drops(result.trace, SHRINK_NS)
        last.append((max(drops) - SHRINK_NS) / MS if drops else 0.0)
        lost.append(len(drops))
        fitted.append((sizes[-1][0] - SHRINK_NS) / MS)
        delivered.append(result.delivered / result.sent)
    out["black hole"] = {
        "size_losses_end_ms": _summary(last),
        "datagrams_lost_to_size": _summary(lost),
        "fitted_ms": _summary(fitted),
        "delivered_worst": min(delivered),
    }

    def show(part: dict[str, float], unit: str = "") -> str:
        return f"{part['min']:.0f}-{part['max']:.0f}{unit} (median {part['median']:.0f})"

    print(f"path MTU search, {args.seeds} seeds each (pmtu scenario's network)")
    print(
        f"  all 1500: messages at full size after {show(out['1500']['full_size_ms'], ' ms')}, "
        f"{show(out['1500']['probes_per_link'])} probes per link"
    )
    print(
        f"  one 1400: cut to fit it after {show(out['1400']['fitted_ms'], ' ms')}, "
        f"{show(out['1400']['probes_on_link_1'])} probes on that link"
    )
    hole = out["black hole"]
    print(
        "  1500 -> 1300 at 4 s: DATA/PARITY die of size for "
        f"{show(hole['size_losses_end_ms'], ' ms')}"
        f" ({show(hole['datagrams_lost_to_size'])} datagrams), cut to fit after "
        f"{show(hole['fitted_ms'], ' ms')}; worst delivered {100 * hole['delivered_worst']:.3f} %"
    )
    print(f"wrote {write_json('pmtu', out)}")


if __name__ == "__main__":
    main()
