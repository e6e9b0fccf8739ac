"""Replayed HELLOs against a responder waiting for its initiator (issue 14, item 3).

An attacker recorded the HELLOs of two older sessions (same psk) and replays them,
alternately, at 10,000 per second from its own address. The responder must still
establish the real initiator's session, must not answer the replays at line rate,
and once the real initiator's HELLO came, must never report a replay as the newest
datagram of its link (which would move a `*` link to the attacker's address,
docs/relay.md). Before that nothing can tell a recorded HELLO from a fresh one: each
newer one is adopted until the real initiator's, newer still, arrives.
"""

from __future__ import annotations

import heapq
import random
from typing import Final

import pytest

import plait
from plait import wire

MS: Final = 1_000_000
S: Final = 1_000_000_000
PSK: Final = bytes(range(3, 35))
DELAY: Final = 10 * MS


def _config() -> plait.Config:
    return plait.Config(links=[plait.LinkConfig(rate_bps=5_000_000)] * 2, psk=PSK)


def _recorded_hello(now: int, seed: int) -> list[tuple[bytes, int]]:
    """The first HELLOs (one per link) of an initiator made at `now`: what was recorded."""
    old = plait.Endpoint(_config(), initiator=True, now=now, rng=random.Random(seed))
    return old.datagrams_to_send(now=now)


@pytest.mark.parametrize("attack_first", [True, False])
def test_replayed_old_hellos_neither_lock_out_nor_move_a_link(attack_first: bool) -> None:
    start = 100 * S
    replays = _recorded_hello(10 * S, 1) + _recorded_hello(20 * S, 2)
    b = plait.Endpoint(_config(), initiator=False, now=start, rng=random.Random(3))
    a_made = start + (0 if not attack_first else 50 * MS)
    a: plait.Endpoint | None = None
    heap: list[tuple[int, int, str, int, bytes]] = []  # at, order, to, link, datagram
    order = moved = answers = 0
    now = start
    established_at = None
    while now < start + 2 * S:
        if a is None and now >= a_made:
            a = plait.Endpoint(_config(), initiator=True, now=now, rng=random.Random(4))
        # the attacker: one replay every 100 µs, from its own address
        datagram, link = replays[(now // (100 * 1000)) % len(replays)]
        took = b.receive_datagram(datagram, link=link, now=now)
        moved += took and a is not None and b.session == a.session  # after A's HELLO came
        while heap and heap[0][0] <= now:
            _, _, to, link, data = heapq.heappop(heap)
            if to == "b":
                b.receive_datagram(data, link=link, now=now)
            elif a is not None:
                a.receive_datagram(data, link=link, now=now)
        for ep, to in ((a, "b"), (b, "a")):
            if ep is None:
                continue
            ep.handle_timer(now=now)
            for data, link in ep.datagrams_to_send(now=now):
                if ep is b and wire.parse_header(data)[0] is wire.PacketType.HELLO:
                    answers += 1
                order += 1
                heapq.heappush(heap, (now + DELAY, order, to, link, data))
            while ep.next_event() is not None:
                pass
        if established_at is None and a is not None and b._hs.locked and b.session == a.session:
            established_at = now
        now += 100_000
    assert established_at is not None, "the replays kept the real initiator out"
    assert established_at - a_made <= 200 * MS, established_at - a_made
    assert moved == 0, "a replay moved a link"
    assert answers <= 20, answers  # 20,000 replays: a few answers, not one each
    assert b.stats().drops.get("unexpected HELLO", 0) + b.stats().drops.get("replay", 0) > 19_000
