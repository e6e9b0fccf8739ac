"""Microbenchmark of plait.wire: ns per encode and decode, against the floor.

    python3 dev.py bench wire

The peer in the same run is the floor for the same work in Python: one precompiled
struct pack/unpack of the same fields plus the payload copy, with no validation and no
objects. `ratio` = plait median / floor median: what validation and records cost on top.
Two plait paths are timed: the record API (`encode`/`decode`, frozen attrs records) and
the tuple fast path the endpoint uses (`pack_*`/`parse_*`, the same checks).
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import measure, write_json

from plait import wire

FLOOR = struct.Struct("!BIHIBIIBH")  # the same fields as header + DATA, no checks
Case = tuple[str, Callable[[], object], Callable[[], object] | None]


def _data_cases(size: int) -> list[Case]:
    header = wire.Header(session=0x01020304, link_seq=65000, ts=123_456)
    body = wire.Data(seq=7, deadline=999, stream=1, msg=3, payload=bytes(size))
    packet = wire.Packet(header, body)
    raw = wire.encode(packet)
    payload = body.payload
    dtype = wire.PacketType.DATA

    def floor_encode() -> bytes:
        return FLOOR.pack(0x21, 0x01020304, 65000, 123_456, 0, 7, 999, 1, 3) + payload

    def floor_decode() -> tuple[object, ...]:
        return (*FLOOR.unpack_from(raw), raw[23:])

    def fast_encode() -> bytes:
        return wire.pack_header(dtype, 0x01020304, 65000, 123_456, None, 0) + wire.pack_data(
            7, 999, 1, 3, payload
        )

    def fast_decode() -> wire.DataFields:
        return wire.parse_data(raw, wire.parse_header(raw)[6])

    return [
        (f"encode DATA {size} B, records", lambda: wire.encode(packet), floor_encode),
        (f"encode DATA {size} B, fast path", fast_encode, floor_encode),
        (f"decode DATA {size} B, records", lambda: wire.decode(raw), floor_decode),
        (f"decode DATA {size} B, fast path", fast_decode, floor_decode),
    ]


def _feedback_cases() -> list[Case]:
    header = wire.Header(session=0x01020304, link_seq=65000, ts=123_456)
    body = wire.Feedback(
        largest=10_000,
        first_run=40,
        ranges=((1, 20), (3, 100), (1, 7)),
        links=tuple(wire.LinkReport(i, 100 * i, 99 * i, 50) for i in range(4)),
    )
    packet = wire.Packet(header, body)
    raw = wire.encode(packet)
    return [
        ("encode FEEDBACK (3 ranges, 4 links)", lambda: wire.encode(packet), None),
        ("decode FEEDBACK (3 ranges, 4 links)", lambda: wire.decode(raw), None),
    ]


def main() -> None:
    rows: list[dict[str, object]] = []
    print(f"{'case':38} {'median ns':>10} {'p99 ns':>8} {'floor ns':>9} {'ratio':>6}")
    for name, ours, floor in [*_data_cases(200), *_data_cases(1200), *_feedback_cases()]:
        a = measure(ours)
        line = f"{name:38} {a['median_ns']:10.0f} {a['p99_ns']:8.0f}"
        row: dict[str, object] = {"case": name, "plait": a}
        if floor is not None:
            b = measure(floor)
            ratio = a["median_ns"] / b["median_ns"]
            row |= {"floor": b, "ratio": round(ratio, 2)}
            line += f" {b['median_ns']:9.0f} {ratio:6.2f}"
        print(line, flush=True)
        rows.append(row)
    print(f"wrote {write_json('wire', {'unit': 'ns per call', 'rows': rows})}")


if __name__ == "__main__":
    main()
