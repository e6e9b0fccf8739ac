"""The atheris fuzz targets, run under hypothesis: random bytes, and valid packets with
random bytes spliced in, must never make a target raise."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fuzz.seeds import EXAMPLES
from fuzz.targets import decode_target
from plait import wire
from tests.strategies import packets


@given(st.binary(max_size=200))
def test_decode_target_random_bytes(data: bytes) -> None:
    decode_target(data)


@given(st.sampled_from(sorted(EXAMPLES)), st.binary(max_size=8), st.integers(0, 64))
def test_decode_target_spliced_examples(name: str, junk: bytes, at: int) -> None:
    raw = wire.encode(EXAMPLES[name])
    decode_target(raw[:at] + junk + raw[at + len(junk) :])


@given(packets())
def test_decode_target_accepts_every_valid_packet(packet: wire.Packet) -> None:
    decode_target(wire.encode(packet))
