"""Hostile input against a live session: forged, replayed (on other links, later, from
another session), truncated, bit-flipped and random datagrams never raise, never change
what is delivered, and are all counted.

Without a psk nothing is authenticated (docs/wire-format.md section 8): a truncated or
bit-flipped DATA datagram is then a valid, different datagram, and only UDP's checksum
stands between it and the application. Those two attacks are thrown with a psk only."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plait
from tests.harness import MS, Net
from tests.test_endpoint import _config, check_delivery


def _attack(net: Net, rng: random.Random, recorded: list[tuple[bytes, int]], psk: bool) -> int:
    """Throw junk at b right now; returns how many datagrams were thrown."""
    thrown = 0
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(6)
        link = rng.randrange(len(net.b.links))
        if kind == 0 or not recorded:
            junk = rng.randbytes(rng.randint(0, 1400))
        else:
            real, real_link = rng.choice(recorded)
            if kind == 1:  # replayed on another link, later
                junk, link = (
                    real,
                    (real_link + 1 + rng.randrange(len(net.b.links) - 1)) % len(net.b.links),
                )
            elif kind == 2:  # replayed on its own link, later
                junk, link = real, real_link
            elif kind == 3 and psk:  # truncated (without a psk it is a valid, shorter DATA)
                junk = real[: rng.randrange(len(real))]
            elif kind == 4 and psk:  # a bit flipped (without a psk nothing detects this)
                flipped = bytearray(real)
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                junk = bytes(flipped)
            else:  # another session's datagram: session id changed
                junk = real[:1] + rng.randbytes(4) + real[5:]
        net.b.receive_datagram(junk, link=link, now=net.now)
        thrown += 1
    return thrown


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**16), psk=st.booleans())
def test_junk_beside_a_real_session_changes_nothing(seed: int, psk: bool) -> None:
    cfg = _config(4, psk=bytes(range(32)) if psk else None)
    net = Net.build(cfg, seed=seed, loss=[0.02] * 4)
    rng = random.Random(seed)
    recorded: list[tuple[bytes, int]] = []

    def capture(datagram: bytes, link: int) -> bytes:
        if len(recorded) < 500:
            recorded.append((datagram, link))
        return datagram

    net.tamper = capture
    thrown = 0

    def tick(n: Net) -> None:
        nonlocal thrown
        if rng.random() < 0.2:
            thrown += _attack(n, rng, recorded, psk)
            n._flush("b")

    sent: dict[int, list[int]] = {}
    deadlines: dict[tuple[int, int], int] = {}
    from tests.test_endpoint import payload  # noqa: PLC0415  (shared helper)

    for index in range(300):
        sent.setdefault(0, []).append(index)
        deadlines[(0, index)] = net.now + net.a.latency_ns
        net.send("a", payload(0, index, rng.randint(6, 1100)))
        net.run_until(net.now + 2 * MS, tick=tick)
    net.run_until(net.now + 1_000 * MS)
    delivered = check_delivery(net, sent, deadlines)  # exactly once, in order, intact
    assert delivered >= 0.97 * 300
    drops = net.b.stats().drops
    assert thrown > 0
    assert sum(drops.values()) > 0
    if psk:  # nothing unauthenticated got past the tag
        assert set(drops) <= {
            "authentication",
            "replay",
            "other session",
            "unexpected HELLO",
        } | {k for k in drops if k.startswith("malformed")}


@pytest.mark.parametrize("psk", [False, True])
def test_random_datagrams_before_and_after_the_session_never_raise(psk: bool) -> None:
    cfg = _config(3, psk=bytes(32) if psk else None)
    rng = random.Random(99)
    b = plait.Endpoint(cfg, initiator=False, now=0)
    for i in range(2_000):
        b.receive_datagram(rng.randbytes(rng.randint(0, 200)), link=rng.randrange(3), now=i * 1000)
        b.handle_timer(now=i * 1000)
        b.datagrams_to_send(now=i * 1000)
    assert b.next_event() is None  # nothing was established or delivered
    assert sum(b.stats().drops.values()) == 2_000
