"""Type checks at the API boundary: what the caller hands over, refused before use.

Times are int ns and rates int bit/s: a float would be accepted by the arithmetic and
wedge the endpoint later (sequence numbers, heaps of deadlines), and a bool is an int
by accident. Data is bytes-like. Each refusal is a `UsageError` naming the unit, raised
before anything changes. These run on every call, so they are one ``type() is`` test
each (about 30 ns), not ``isinstance`` chains.
"""

from __future__ import annotations

from plait.errors import UsageError

__all__ = ["data", "ns", "optional_ns"]


def ns(name: str, value: object) -> int:
    """`value` as a time in int ns, or UsageError."""
    if type(value) is not int:
        raise UsageError(f"{name} must be an int of nanoseconds, got {value!r}")
    return value


def optional_ns(name: str, value: object) -> int | None:
    """`value` as a time in int ns or None, or UsageError."""
    return None if value is None else ns(name, value)


def data(value: object, limit: int) -> bytes:
    """`value` (bytes, bytearray or memoryview of at most `limit` bytes) as bytes."""
    if not isinstance(value, bytes | bytearray | memoryview):
        raise UsageError(
            f"data must be bytes-like (bytes, bytearray, memoryview), got {type(value).__name__}"
        )
    out = bytes(value)
    if len(out) > limit:
        raise UsageError(f"a message is at most {limit} bytes, got {len(out)}")
    return out
