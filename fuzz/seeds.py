"""Named example packets (the wire doc's test vectors), and the fuzzers' seed inputs.

`EXAMPLES` seeds fuzz/corpus-decode/; the functions below build the seed inputs of the
other harnesses from them and from real datagrams captured from the simulator
(`fuzz.corpus`). All deterministic.
"""

from __future__ import annotations

import random

from fuzz import corpus
from fuzz.targets import Attack
from plait import wire

_H = wire.Header(session=0x0A0B0C0D, link_seq=0xFFFE, ts=123_456_789)
_H_ECHO = wire.Header(
    session=0x0A0B0C0D, link_seq=7, ts=123_460_000, echo=wire.Echo(ts=987_654_321, delay=250)
)

EXAMPLES: dict[str, wire.Packet] = {
    "data": wire.Packet(
        _H, wire.Data(seq=41, deadline=123_606_789, stream=0, msg=9, payload=b"hello")
    ),
    "data-fragment": wire.Packet(
        _H_ECHO,
        wire.Data(
            seq=0xFFFF_FFFF,
            deadline=0x0000_1000,
            stream=3,
            msg=0xFFFF,
            payload=b"frag",
            frag_index=1,
            frag_count=5,
        ),
    ),
    "parity": wire.Packet(
        _H, wire.Parity(base=40, count=8, parity_count=2, index=1, shard=b"\x00\x05hello\x00")
    ),
    "feedback": wire.Packet(
        _H_ECHO,
        wire.Feedback(
            largest=1000,
            first_run=10,
            ranges=((2, 5), (1, 1)),
            links=(
                wire.LinkReport(link=0, link_seq=500, received=498, jitter=120, rx_ts=0x0102_0304),
                wire.LinkReport(link=2, link_seq=70, received=70, jitter=0xFFFF, rx_ts=0xFFFF_FFFF),
            ),
        ),
    ),
    "feedback-empty": wire.Packet(_H, wire.Feedback(largest=0, first_run=0)),
    "probe": wire.Packet(_H, wire.Probe(padding=4)),
    "probe-ack": wire.Packet(_H_ECHO, wire.ProbeAck()),
    "hello": wire.Packet(_H, wire.Hello(nonce=bytes(range(16)))),
    "hello-response": wire.Packet(_H_ECHO, wire.Hello(nonce=bytes(range(16, 32)), response=True)),
    "close": wire.Packet(_H, wire.Close(code=1)),
}


def body_seeds() -> list[bytes]:
    """`body_target` inputs: a type byte, then a real body (examples and captured)."""
    packets = [wire.encode(p) for p in EXAMPLES.values()] + corpus.datagrams(False)
    seeds = []
    for data in packets:
        offset = wire.parse_header(data)[6]
        seeds.append(bytes(((data[0] & 0x0F) - 1,)) + data[offset:])
    return seeds


def fec_seeds() -> list[bytes]:
    """`fec_target` inputs: each mode, with a genuine block and garbage after it."""
    rng = random.Random(2024)
    return [bytes((mode,)) + rng.randbytes(size) for mode in range(4) for size in (16, 64, 400)]


def crypto_seeds() -> list[bytes]:
    """`crypto_target` inputs: captured sealed datagrams as garbage, and each mode."""
    rng = random.Random(2025)
    seeds = [bytes((0, link, 0, 1, 0)) + data for link, data in corpus.capture(True).b_to_a[:40]]
    seeds += [bytes((mode,)) + rng.randbytes(80) for mode in range(4) for _ in range(4)]
    return seeds


def endpoint_seeds(psk: bool) -> list[bytes]:
    """Seed inputs: every captured datagram delivered as is, and a few programs that
    mix real traffic with each attack."""
    sent = corpus.session(psk).sent
    seeds = [bytes((Attack.REAL,)) + i.to_bytes(2, "big") for i in range(len(sent))]
    for i in range(0, len(sent), 5):
        program = bytearray()
        for attack in Attack:
            program += bytes((Attack.REAL,)) + i.to_bytes(2, "big")
            program += bytes((attack,)) + ((i * 7 + attack) % len(sent)).to_bytes(2, "big")
            program += bytes((i + attack) & 0xFF for _ in range(6))
        seeds.append(bytes(program))
    return seeds
