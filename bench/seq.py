"""Microbenchmark of plait.seq.ReceiveWindow: ns per received number.

    python3 dev.py bench seq

Peer in the same run: the plain alternative, a Python `set` of recent numbers pruned to
the same window (what a dedup filter written without a ring would do).
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import measure, write_json

from plait.seq import SEQ16, ReceiveWindow

BATCH = 1000


class SetWindow:
    """The peer: a set of numbers, pruned when it grows past twice the window."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.top = -1
        self.seen: set[int] = set()

    def receive(self, n: int) -> bool:
        if n <= self.top - self.size or n in self.seen:
            return False
        self.seen.add(n)
        if n > self.top:
            self.top = n
            if len(self.seen) > 2 * self.size:
                floor = n - self.size
                self.seen = {x for x in self.seen if x > floor}
        return True


def _stream(kind: str) -> list[int]:
    rng = random.Random(1)
    numbers = list(range(200_000))
    if kind == "reordered ±8, 2% lost":
        numbers = sorted(
            (n for n in numbers if rng.random() > 0.02), key=lambda n: n + rng.random() * 8
        )
    return numbers


def main() -> None:
    rows: list[dict[str, object]] = []
    print(f"{'case':44} {'median ns':>10} {'p99 ns':>8} {'set ns':>8} {'ratio':>6}")
    for size in (1024, 32768):
        for kind in ("in order", "reordered ±8, 2% lost"):
            numbers = _stream(kind)

            # steady state: one long-lived window fed a long stream, BATCH numbers per call
            window = ReceiveWindow(size=size)
            peer_window = SetWindow(size)
            it = iter(numbers * 50)
            it_peer = iter(numbers * 50)

            def plait_batch(w: ReceiveWindow = window, it: object = it) -> None:
                nxt = it.__next__  # type: ignore[attr-defined]  # a list iterator
                for _ in range(BATCH):
                    w.receive(nxt())

            def set_batch(w: SetWindow = peer_window, it: object = it_peer) -> None:
                nxt = it.__next__  # type: ignore[attr-defined]  # a list iterator
                for _ in range(BATCH):
                    w.receive(nxt())

            a = measure(plait_batch, batch=1, repeats=3000)
            b = measure(set_batch, batch=1, repeats=3000)
            a = {k: v / BATCH for k, v in a.items()}
            b = {k: v / BATCH for k, v in b.items()}
            ratio = a["median_ns"] / b["median_ns"]
            name = f"receive, window {size}, {kind}"
            cols = f"{a['median_ns']:10.0f} {a['p99_ns']:8.0f} {b['median_ns']:8.0f} {ratio:6.2f}"
            print(f"{name:44} {cols}")
            rows.append({"case": name, "plait": a, "set": b, "ratio": round(ratio, 2)})

    unwrap = measure(lambda: SEQ16.unwrap(5, 65_530))
    print(f"{'SEQ16.unwrap':44} {unwrap['median_ns']:10.0f} {unwrap['p99_ns']:8.0f}")
    rows.append({"case": "SEQ16.unwrap", "plait": unwrap})
    print(f"wrote {write_json('seq', {'unit': 'ns per number', 'rows': rows})}")


if __name__ == "__main__":
    main()
