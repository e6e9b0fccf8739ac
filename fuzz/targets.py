"""Fuzz targets: plain functions of one ``bytes`` argument.

atheris runs them (``python3 dev.py fuzz NAME``) and the test suite runs the same
functions under hypothesis (tests/test_fuzz_targets.py). A target raises only when it
finds a bug; expected rejections of bad input are swallowed here.
"""

from __future__ import annotations

from plait import wire
from plait.errors import MalformedPacket


def decode_target(data: bytes) -> None:
    """`wire.decode` raises only MalformedPacket; what it accepts is canonical."""
    try:
        packet = wire.decode(data)
    except MalformedPacket:
        return
    again = wire.encode(packet)
    if again != data:
        raise AssertionError(f"accepted a non-canonical encoding: {data.hex()} -> {again.hex()}")
    if wire.decode(memoryview(data)) != packet:
        raise AssertionError("decoding a memoryview differs from decoding bytes")


TARGETS = {"decode": decode_target}
