"""The atheris fuzz targets, run under hypothesis: random bytes, and real inputs with
random bytes spliced in, must never make a target raise. Also: the captured session the
endpoint targets use really is the simulator's, and regression tests for the bugs the
fuzzers found (each was a strict xfail until it was fixed)."""

from __future__ import annotations

import functools
import random
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plait
from fuzz import corpus, seeds
from fuzz.psk_peer import psk_peer_seeds
from fuzz.seeds import EXAMPLES
from fuzz.targets import TARGETS, decode_target
from plait import wire
from plait.fec import BlockDecoder, shards_of
from plait.rs import default_codec
from plait.sim import payload
from tests.strategies import packets

S = 1_000_000_000
MS = 1_000_000


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


@pytest.mark.parametrize("name", sorted(TARGETS))
@settings(max_examples=60)
@given(data=st.binary(max_size=600))
def test_target_random_bytes(name: str, data: bytes) -> None:
    TARGETS[name](data)


_SEEDS: dict[str, Callable[[], list[bytes]]] = {
    "body": seeds.body_seeds,
    "fec": seeds.fec_seeds,
    "crypto": seeds.crypto_seeds,
    "endpoint": functools.partial(seeds.endpoint_seeds, psk=False),
    "endpoint_psk": functools.partial(seeds.endpoint_seeds, psk=True),
    "psk_peer": psk_peer_seeds,
}


@pytest.mark.parametrize("name", sorted(_SEEDS))
@settings(max_examples=40)
@given(index=st.integers(0, 10**6), junk=st.binary(max_size=12), at=st.integers(0, 200))
def test_target_spliced_seeds(name: str, index: int, junk: bytes, at: int) -> None:
    inputs = _SEEDS[name]()
    raw = inputs[index % len(inputs)]
    TARGETS[name](raw[:at] + junk + raw[at + len(junk) :])


@pytest.mark.parametrize("name", sorted(_SEEDS))
def test_every_seed_runs_clean(name: str) -> None:
    for data in _SEEDS[name]()[::3]:
        TARGETS[name](data)


@pytest.mark.parametrize("psk", [False, True])
def test_the_rebuilt_session_is_the_captured_one(psk: bool) -> None:
    """Every captured datagram opens at the rebuilt responder: fed in order at their
    arrival times, they deliver intact messages, and only the handshake's own
    datagrams (already received while rebuilding) are refused, as replays."""
    session = corpus.session(psk)
    ep = session.endpoint()
    delivered = 0
    for sent in session.sent:
        if sent.arrival >= 0:
            ep.receive_datagram(sent.datagram, link=sent.link, now=sent.arrival)
        while (event := ep.next_event()) is not None:
            if isinstance(event, plait.MessageReceived):
                assert payload.decode(event.data) is not None
                delivered += 1
    assert delivered >= 0.8 * session.capture.delivered
    assert set(ep.stats().drops) == {"replay"}
    assert session.endpoint().stats() == corpus.session(psk).endpoint().stats()


# --- regressions: bugs the fuzzers found ----------------------------------------------


def _pair(
    psk: bytes | None = None, *, now: int = S, links: int = 1
) -> tuple[plait.Endpoint, plait.Endpoint, int]:
    """An established pair (10 ms one way), and the time after the handshake."""
    cfg = plait.Config(links=[plait.LinkConfig(rate_bps=2_000_000)] * links, psk=psk)
    a = plait.Endpoint(cfg, initiator=True, now=now, rng=random.Random(1))
    b = plait.Endpoint(cfg, initiator=False, now=now, rng=random.Random(2))
    for _ in range(2):
        out = a.datagrams_to_send(now=now)
        now += 10 * MS
        for data, link in out:
            b.receive_datagram(data, link=link, now=now)
        out = b.datagrams_to_send(now=now)
        now += 10 * MS
        for data, link in out:
            a.receive_datagram(data, link=link, now=now)
    assert a.established
    assert b.established
    return a, b, now


def _counted(ep: plait.Endpoint) -> int:
    stats = ep.stats()
    return sum(ln.datagrams_received for ln in stats.links) + sum(stats.drops.values())


def _forged_parity(ep: plait.Endpoint, shard: bytes) -> bytes:
    """PARITY of the session (no psk), a fresh Link Seq: a block of k=1 record (seq 5,
    never received) and m=1, with this shard."""
    body = struct.pack("!BIBBB", 0, 5, 1, 1, 0) + shard
    return wire.pack_header(wire.PacketType.PARITY, ep.session, 9, 0, None, 0) + body


def test_a_one_byte_parity_shard_is_dropped_not_raised() -> None:
    """Found by the fec fuzzer: a 1-byte PARITY shard (the wire allows it) was rebuilt
    into a 1-byte shard, and struct.error escaped receive_datagram."""
    _, b, now = _pair()
    before = _counted(b)
    b.receive_datagram(_forged_parity(b, b"\x07"), link=0, now=now)  # struct.error today
    assert _counted(b) == before + 1


def test_a_rebuilt_record_that_does_not_parse_is_not_a_dropped_datagram() -> None:
    _, b, now = _pair()
    before = _counted(b)
    # the shard rebuilds record 5 as b"\x07" (length prefix 1): not a DATA record
    b.receive_datagram(_forged_parity(b, b"\x00\x01\x07"), link=0, now=now)
    assert _counted(b) == before + 1


def test_rebuilt_records_respect_max_records() -> None:
    codec = default_codec()
    decoder = BlockDecoder(codec, max_records=16)
    for block in range(20):  # blocks of 4 records; each time one comes only after parity
        base = 4 * block
        records = [bytes((block, j)) * 50 for j in range(4)]
        (parity,) = codec.parity(4, 1, shards_of(records))
        for j in range(3):
            decoder.on_data(base + j, records[j])
        shard = wire.Parity(base=base, count=4, parity_count=1, index=0, shard=parity)
        assert decoder.on_parity(base, shard) == [(base + 3, records[3])]
    assert decoder.stored_records <= decoder.max_records, decoder.stored_records


def test_probe_at_time_zero_is_answered_with_an_echo() -> None:
    """Found by the endpoint fuzzer: echo_at == 0 meant 'nothing to echo', so a PROBE
    received at now == 0 was answered without an echo, which the peer dropped."""
    cfg = plait.Config(links=[plait.LinkConfig(rate_bps=2_000_000)])
    a = plait.Endpoint(cfg, initiator=True, now=0, rng=random.Random(1))
    b = plait.Endpoint(cfg, initiator=False, now=0, rng=random.Random(2))
    for _ in range(2):  # HELLO, its answer, then A's PROBE: all at now == 0
        for data, link in a.datagrams_to_send(now=0):
            b.receive_datagram(data, link=link, now=0)
        for data, link in b.datagrams_to_send(now=0):
            if data[0] & 0x0F == wire.PacketType.PROBE_ACK:
                wire.decode(data)  # MalformedPacket: PROBE_ACK without echo
            a.receive_datagram(data, link=link, now=0)
    assert b.stats().links[0].datagrams_received == 2
    assert not a.stats().drops


def test_a_withheld_datagram_is_not_delivered_late() -> None:
    """Found by the endpoint fuzzer: after 10 s without a new minimum transit the first
    sample replaced it, so a datagram held back that long (a blackout, a modem's
    buffer, an on-path attacker; psk or not) moved the peer clock by its delay and
    was delivered long after its deadline."""
    a, b, now = _pair(psk=bytes(range(32)))
    a.send(b"go", now=now)
    for data, link in a.datagrams_to_send(now=now):  # consumes the pending echo
        b.receive_datagram(data, link=link, now=now + 10 * MS)
    now += 10 * MS
    deadline = now + a.latency_ns
    a.send(b"stop the motors", now=now)
    held = a.datagrams_to_send(now=now)  # withheld: the link is silent for 11 s
    assert held
    now += 11 * S
    for data, link in held:
        b.receive_datagram(data, link=link, now=now)
    late = [
        e
        for e in iter(b.next_event, None)
        if isinstance(e, plait.MessageReceived) and e.data == b"stop the motors"
    ]
    assert now > deadline
    assert not late, f"delivered {(now - deadline) / S:.1f} s after its deadline"
