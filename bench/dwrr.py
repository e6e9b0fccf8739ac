"""Benchmark plait.dwrr: ns per scheduling decision, against plain round robin.

Cases, each a batch of 1000 decisions over sizes of 200-1200 bytes:

* ``striper``: `Striper.choose` over 6 links weighted 2/5/8/10/5/8 Mbps (as kbps), all
  eligible; ``striper+eligible``: the same with an eligibility predicate (one link down).
* ``rr``: the floor, ``next(itertools.cycle(links))``; ``rr+eligible``: plain round robin
  skipping links the same predicate rejects.
* ``drr``: `DeficitRoundRobin` with 8 backlogged streams (weights 1,1,2,2,4,4,8,8), one
  ``pop`` plus one ``push`` per decision; ``rr-queues``: the same over 8 deques in plain
  round robin.
* ``loop``: the bare loop over the sizes, for reference (included in every case).
* ``decision``: the endpoint's whole decision, the next fragment of 8 streams (``drr``)
  and its link among the 6 (`LinkSet.choose`: deadline feasibility, pacing, striping)
  with the pacer's booking; ``choice``: the link choice and booking alone.

Batches of the cases are interleaved, with the garbage collector off and the process
pinned to one CPU where the OS allows. Prints the median and p99 per decision and the
ratio of medians to the plain peer; writes ``bench/results/dwrr.json``. Run from the
repository root: ``python bench/dwrr.py``.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import platform
import random
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from plait.config import Config, LinkConfig
from plait.dwrr import DeficitRoundRobin, Striper
from plait.linkset import LinkSet

BATCH = 1000
WARMUP = 50
BATCHES = 1000
LINK_KBPS = [2000, 5000, 8000, 10000, 5000, 8000]
STREAM_WEIGHTS = [1, 1, 2, 2, 4, 4, 8, 8]
BACKLOG = 32  # items per stream
OUT = Path("bench/results/dwrr.json")


def _cases() -> dict[str, Callable[[], None]]:
    rng = random.Random(1995)
    sizes = [rng.randint(200, 1200) for _ in range(BATCH)]
    links = list(range(len(LINK_KBPS)))
    down = [False, False, True, False, False, False]  # link 2 is down

    def eligible(link: int) -> bool:
        return not down[link]

    striper: Striper[int] = Striper()
    for link, kbps in zip(links, LINK_KBPS, strict=True):
        striper.add_link(link, kbps)
    choose = striper.choose

    def striper_all() -> None:
        for size in sizes:
            choose(size)

    def striper_eligible() -> None:
        for size in sizes:
            choose(size, eligible)

    cycle = itertools.cycle(links)
    step = cycle.__next__

    def rr() -> None:
        for _size in sizes:
            step()

    def rr_eligible() -> None:
        for _size in sizes:
            link = step()
            while not eligible(link):
                link = step()

    drr: DeficitRoundRobin[int, int] = DeficitRoundRobin()
    for stream, weight in enumerate(STREAM_WEIGHTS):
        drr.add_queue(stream, weight)
        for n in range(BACKLOG):
            drr.push(stream, n, sizes[(stream * BACKLOG + n) % BATCH])
    pop, push = drr.pop, drr.push

    def drr_batch() -> None:
        for size in sizes:
            got = pop()
            assert got is not None  # the streams stay backlogged
            push(got[0], got[1], size)

    queues = [deque((n, sizes[n]) for n in range(BACKLOG)) for _ in STREAM_WEIGHTS]
    qcycle = itertools.cycle(queues).__next__

    def rr_queues() -> None:
        for size in sizes:
            q = qcycle()
            item, _ = q.popleft()
            q.append((item, size))

    def loop() -> None:
        for _size in sizes:
            pass

    # The endpoint's whole decision: the next fragment from 8 streams (DRR), then its link
    # among 6 (deadline feasibility, pacing, striping) in plait.linkset.LinkSet.choose.
    config = Config(links=[LinkConfig(rate_bps=kbps * 1000) for kbps in LINK_KBPS])
    linkset = LinkSet(config, now=0)
    clock = [0]

    def endpoint_decision() -> None:
        now = clock[0]
        for size in sizes:
            got = pop()
            assert got is not None
            push(got[0], got[1], size)
            now += 1_000_000  # 1 ms apart: light load, every link usually free
            link = linkset.choose(size, now + 150_000_000, now)
            if link is not None:
                linkset.links[link].pacer.reserve(size, now)
        clock[0] = now

    return {
        "striper": striper_all,
        "striper+eligible": striper_eligible,
        "rr": rr,
        "rr+eligible": rr_eligible,
        "drr": drr_batch,
        "rr-queues": rr_queues,
        "loop": loop,
        "decision": endpoint_decision,
        "choice": _link_choice(config, sizes),
    }


def _link_choice(config: Config, sizes: list[int]) -> Callable[[], None]:
    """The link choice alone: `LinkSet.choose` over the 6 links, and the pacer's booking."""
    linkset = LinkSet(config, now=0)
    clock = [0]

    def link_choice() -> None:
        now = clock[0]
        for size in sizes:
            now += 1_000_000
            link = linkset.choose(size, now + 150_000_000, now)
            if link is not None:
                linkset.links[link].pacer.reserve(size, now)
        clock[0] = now

    return link_choice


PEERS = {
    "striper": "rr",
    "striper+eligible": "rr+eligible",
    "drr": "rr-queues",
    "decision": "rr-queues",
    "choice": "rr+eligible",
}


def _pin() -> int | None:
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def main() -> None:
    cpu = _pin()
    cases = _cases()
    timings: dict[str, list[float]] = {name: [] for name in cases}
    clock = time.perf_counter_ns
    gc.collect()
    gc.disable()
    try:
        for rep in range(WARMUP + BATCHES):
            for name, run in cases.items():
                start = clock()
                run()
                elapsed = clock() - start
                if rep >= WARMUP:
                    timings[name].append(elapsed / BATCH)
    finally:
        gc.enable()
    results: dict[str, dict[str, float | str]] = {}
    for name, per in timings.items():
        per.sort()
        results[name] = {
            "median_ns": round(statistics.median(per), 1),
            "p99_ns": round(per[int(0.99 * (len(per) - 1))], 1),
        }
    for name, peer in PEERS.items():
        results[name]["peer"] = peer
        results[name]["ratio_vs_peer"] = round(
            float(results[name]["median_ns"]) / float(results[peer]["median_ns"]), 2
        )
    print(f"ns per decision: {BATCHES} batches of {BATCH}, pinned to CPU {cpu}")
    print(f"{'case':18} {'median':>8} {'p99':>8}  vs peer")
    for name, r in results.items():
        ratio = f"{r['ratio_vs_peer']}x {r['peer']}" if "peer" in r else ""
        print(f"{name:18} {r['median_ns']:>8} {r['p99_ns']:>8}  {ratio}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpu_pinned": cpu,
        "batch": BATCH,
        "batches": BATCHES,
        "link_kbps": LINK_KBPS,
        "stream_weights": STREAM_WEIGHTS,
        "sizes": "uniform 200-1200 B, seed 1995",
    }
    OUT.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
