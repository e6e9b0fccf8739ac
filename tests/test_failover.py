"""Issue "Links", done-when: failover within the documented bound, and a link whose RTT
swings is left out while slow without flapping. Driven end to end through two endpoints."""

from __future__ import annotations

import random

import plait
from plait.wire import PacketType
from tests.harness import MS, Net
from tests.test_endpoint import check_delivery, payload

S = 1_000 * MS
RATES = [5_000_000, 8_000_000, 10_000_000, 6_000_000]
BOUND = plait.HealthConfig().down_after_ns  # 300 ms: 3 probe intervals of 100 ms


def _cfg(latency_ns: int) -> plait.Config:
    links = [plait.LinkConfig(rate_bps=r) for r in RATES]
    return plait.Config(links=links, latency_ns=latency_ns)


def _traffic(
    net: Net, until: int, gap: int = 2 * MS
) -> tuple[dict[int, list[int]], dict[tuple[int, int], int]]:
    sent: dict[int, list[int]] = {0: []}
    deadlines: dict[tuple[int, int], int] = {}
    rng = random.Random(1)
    while net.now < until:
        index = len(sent[0])
        sent[0].append(index)
        deadlines[(0, index)] = net.now + net.a.latency_ns
        net.send("a", payload(0, index, rng.randint(100, 1100)))
        net.run_until(net.now + gap)
    return sent, deadlines


def test_a_link_that_goes_silent_is_dropped_within_the_bound_and_nothing_is_lost() -> None:
    net = Net.build(_cfg(latency_ns=500 * MS), seed=21, delays_ms=[15, 20, 25, 30])
    t_dead = 1 * S
    for direction in ("ab", "ba"):
        net.paths[(direction, 2)].dead_from = t_dead
    sent, deadlines = _traffic(net, until=3 * S)
    net.run_until(net.now + 2 * S)
    data_on_dead = [
        t
        for t, link, ptype in net.sent_types["a"]
        if link == 2 and ptype == PacketType.DATA and t >= t_dead
    ]
    assert data_on_dead  # it was in use right up to the failure ...
    assert max(data_on_dead) <= t_dead + BOUND  # ... and dropped within the bound
    downs = [e for e in net.events["a"] if isinstance(e, plait.LinkDown)]
    assert [e.link for e in downs] == [2]
    assert check_delivery(net, sent, deadlines) == len(sent[0])  # every message arrived
    assert net.a.stats().repairs >= len(data_on_dead) // 2  # what was in flight was re-sent


def test_failover_with_a_tight_budget_loses_only_what_could_not_be_repaired() -> None:
    net = Net.build(_cfg(latency_ns=150 * MS), seed=22, delays_ms=[15, 20, 25, 30])
    for direction in ("ab", "ba"):
        net.paths[(direction, 1)].dead_from = 1 * S
    sent, deadlines = _traffic(net, until=3 * S)
    net.run_until(net.now + 1 * S)
    delivered = check_delivery(net, sent, deadlines)  # never late, never twice
    assert delivered >= 0.99 * len(sent[0])


def test_a_link_that_comes_back_carries_data_again() -> None:
    net = Net.build(_cfg(latency_ns=300 * MS), seed=23, delays_ms=[15, 20, 25, 30])
    path_ab, path_ba = net.paths[("ab", 3)], net.paths[("ba", 3)]
    path_ab.dead_from = path_ba.dead_from = 1 * S

    def revive(n: Net) -> None:
        if n.now >= 2 * S:
            path_ab.dead_from = path_ba.dead_from = None

    sent: dict[int, list[int]] = {0: []}
    for index in range(3_000):
        sent[0].append(index)
        net.send("a", payload(0, index, 600))
        net.run_until(net.now + 2 * MS, tick=revive)
    kinds = [(type(e).__name__, getattr(e, "link", -1)) for e in net.events["a"]]
    assert ("LinkDown", 3) in kinds
    assert ("LinkUp", 3) in kinds
    back = [t for t, link, ptype in net.sent_types["a"] if link == 3 and ptype == PacketType.DATA]
    assert max(back) > 3 * S  # in use again after its probation


def test_a_swinging_link_is_not_used_while_slow_and_does_not_flap() -> None:
    """Link 0's one-way delay swings between 50 ms and 600 ms (RTT 100 <-> 1200 ms) every
    2 s; the budget is 150 ms, so it is useless while slow."""
    net = Net.build(_cfg(latency_ns=150 * MS), seed=24, delays_ms=[50, 20, 25, 30])

    def swing(t: int) -> int:
        return 600 * MS if (t // (2 * S)) % 2 == 1 else 50 * MS

    for direction in ("ab", "ba"):
        net.paths[(direction, 0)].delay_fn = swing
    sent, deadlines = _traffic(net, until=20 * S, gap=4 * MS)
    net.run_until(net.now + 2 * S)
    slow_data = [
        t
        for t, link, ptype in net.sent_types["a"]
        if link == 0
        and ptype == PacketType.DATA
        and swing(t) == 600 * MS
        and t % (2 * S) > BOUND + 100 * MS  # once the slowness has shown
    ]
    assert not slow_data
    ups = [e for e in net.events["a"] if isinstance(e, plait.LinkUp) and e.link == 0]
    assert len(ups) <= 2  # back in service at most twice in 20 s of swinging
    assert check_delivery(net, sent, deadlines) >= 0.99 * len(sent[0])


def test_messages_sent_while_every_link_is_down_wait_for_a_link_within_their_deadline() -> None:
    """A full outage (every link DOWN) does not expire new messages at once: they wait in
    the queue and go when a link comes back, if their deadline still allows; those whose
    deadline passes during the outage are reported expired, never delivered late."""
    net = Net.build(_cfg(latency_ns=2 * S), seed=24, delays_ms=[15, 20, 25, 30])
    paths = [net.paths[(d, i)] for d in ("ab", "ba") for i in range(len(RATES))]
    for path in paths:
        path.dead_from = 1 * S
    net.run_until(1 * S + BOUND + 200 * MS)  # every link is DOWN by now
    assert all(ln.state is plait.LinkState.DOWN for ln in net.a.stats().links)
    net.send("a", payload(0, 0, 500))  # 2 s budget: outlives the outage
    late = net.send("a", payload(0, 1, 500), deadline=net.now + 300 * MS)  # does not
    net.run_until(net.now + 500 * MS)
    for path in paths:
        path.dead_from = None
    net.run_until(net.now + 1 * S)
    delivered = [m.data for _, m in net.delivered["b"]]
    assert delivered == [payload(0, 0, 500)]
    expired = [e for e in net.events["a"] if isinstance(e, plait.MessageExpired)]
    assert [(e.handle, e.msg) for e in expired] == [(late, -1)]  # never sent: no number


def test_a_queue_waiting_for_a_link_does_not_keep_the_timer_due() -> None:
    """Every link goes DOWN while the pacers are busy with a long queue: the queue waits
    for a link, and `next_deadline` is not left at a pacing release in the past (the
    harness fails a timer that stays due; an adapter would spin)."""
    net = Net.build(_cfg(latency_ns=3 * S), seed=24, delays_ms=[15, 20, 25, 30])
    net.run_until(900 * MS)
    for index in range(2500):  # 2.75 MB: about 0.75 s of all four links
        net.ep("a").send(payload(0, index, 1100), now=net.now)
    for direction in ("ab", "ba"):
        for link in range(len(RATES)):
            net.paths[(direction, link)].dead_from = 1 * S
    net.run_until(1500 * MS)
    assert all(ln.state is plait.LinkState.DOWN for ln in net.a.stats().links)
    assert net.a.outbox.pending()
    due = net.a.next_deadline()
    assert due is not None
    assert due > net.now
