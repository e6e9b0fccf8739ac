"""Timing helpers shared by the benchmark scripts: batches of calls timed with
perf_counter_ns, GC off while timing, median and p99 of the per-call time, JSON out."""

from __future__ import annotations

import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def measure(fn: Callable[[], object], *, batch: int = 1000, repeats: int = 300) -> dict[str, float]:
    """ns per call of `fn`: `repeats` batches of `batch` calls; median, p99, min over batches."""
    for _ in range(batch):  # warm up
        fn()
    per_call: list[float] = []
    enabled = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter_ns()
            for _ in range(batch):
                fn()
            per_call.append((time.perf_counter_ns() - t0) / batch)
    finally:
        if enabled:
            gc.enable()
    per_call.sort()
    return {
        "median_ns": statistics.median(per_call),
        "p99_ns": per_call[min(len(per_call) - 1, int(len(per_call) * 0.99))],
        "min_ns": per_call[0],
    }


def environment() -> dict[str, str]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "processor": platform.processor() or "unknown",
    }


def write_json(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"environment": environment(), **payload}, indent=2) + "\n")
    return path


def child_runs(script: str, args: list[str], runs: int, compiled: bool) -> dict[str, list[Any]]:
    """`runs` runs of `script --child ARGS` per build, alternating, each in a fresh
    interpreter (`PLAIT_PURE_PYTHON=1` for the pure one; the compiled one only if it is
    built): each build's list of the children's JSON "rows"."""
    builds = ["compiled", "pure"] if compiled else ["pure"]
    results: dict[str, list[Any]] = {build: [] for build in builds}
    for run in range(runs):
        for build in builds:
            env = {k: v for k, v in os.environ.items() if k != "PLAIT_PURE_PYTHON"}
            if build == "pure":
                env["PLAIT_PURE_PYTHON"] = "1"
            cmd = [sys.executable, script, "--child", *args]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)  # noqa: S603  (our own script)
            got = json.loads(out.stdout)
            if got["compiled"] != (build == "compiled"):
                raise RuntimeError(f"asked for the {build} build, got compiled={got['compiled']}")
            results[build].append(got["rows"])
            print(f"  run {run + 1}/{runs} {build}: done", file=sys.stderr, flush=True)
    return results


class _Tapped:
    """A real endpoint that calls `after(endpoint, now)` once each timer or arrival is
    handled: a benchmark's view of state the simulator's result does not keep."""

    def __init__(self, endpoint: Any, after: Callable[[Any, int], None]) -> None:
        self._ep, self._after = endpoint, after

    def handle_timer(self, *, now: int) -> None:
        self._ep.handle_timer(now=now)
        self._after(self._ep, now)

    def receive_datagram(self, data: bytes, *, link: int, now: int) -> None:
        self._ep.receive_datagram(data, link=link, now=now)
        self._after(self._ep, now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ep, name)


def tapped_sender(after: Callable[[Any, int], None]) -> Callable[..., Any]:
    """An endpoint factory for `plait.sim.run`: real endpoints, the initiator (the
    sender in the benchmarks' scenarios) tapped by `after` (`_Tapped`)."""
    from plait.sim.runner import default_endpoint  # noqa: PLC0415  (timing-only benches skip it)

    def factory(config: Any, initiator: bool, now: int, rng: Any) -> Any:
        endpoint = default_endpoint(config, initiator, now, rng)
        return _Tapped(endpoint, after) if initiator else endpoint

    return factory
