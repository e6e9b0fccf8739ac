"""Path MTU discovery (`plait.pmtu`, RFC 8899): the search alone against a model path
(hypothesis over the path's MTU and probe losses), then two endpoints over the harness
and the simulator: a 1400-byte path among 1500-byte ones loses nothing to size, a
1316-byte message travels whole, and a path that shrinks mid-run is found out."""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Callable, Iterable
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import plait
from plait.pmtu import (
    BASE_PLPMTU,
    MAX_PROBES,
    PROBE_TABLE,
    LinkSearch,
    PmtuState,
    probes_for_loss,
)
from plait.sim import SCENARIOS, run
from plait.sim.links import LinkSpec
from plait.sim.network import Drop
from plait.wire import PacketType
from tests.harness import MS, Net
from tests.test_endpoint import payload

S = 1_000 * MS
UPPER = 1500
RTT = 40 * MS
TIMEOUT = 60 * MS
RAISE = 600 * S
#: base + upper + a bisection over what lies between, each size tried at most 3 times
MOST_PROBES = MAX_PROBES * (2 + math.ceil(math.log2(UPPER - BASE_PLPMTU)))


def _no_long_runs(losses: Iterable[bool]) -> list[bool]:
    """`losses` with every run of MAX_PROBES losses in a row cut short: no size that
    fits the path can fail."""
    out: list[bool] = []
    for lost in losses:
        out.append(lost and out[-(MAX_PROBES - 1) :].count(True) < MAX_PROBES - 1)
    return out


def drive(
    search: LinkSearch,
    mtu_at: Callable[[int], int],
    losses: Iterable[bool],
    *,
    start: int = 0,
    until: int = 60 * S,
    quiet: bool = False,
    suspect_at: int | None = None,
) -> int:
    """Run `search` over a path whose MTU at time t is ``mtu_at(t)``: a probe gets an
    answer one RTT later if it fits and the next of `losses` (then none) is False.
    Smaller packets always get through (unless `quiet`: the link answers nothing).
    `suspect_at`: from then on, data is being lost (`suspect` at every step, as
    `PathMtu` calls it while loss is high). Returns when it stopped: `until`, or when
    the search has nothing left to do before it."""
    lost = itertools.chain(losses, itertools.repeat(False))
    answers: list[tuple[int, int]] = []  # (arrival, echoed ts)
    now = start
    while now < until:
        while answers and answers[0][0] <= now:
            _, ts = heapq.heappop(answers)
            size = search.match(ts)
            if size:
                search.on_ack(size, now)
        if suspect_at is not None and now >= suspect_at:
            search.suspect(now)
        search.on_timer(now, start if quiet else now)
        size = search.wants(now)
        if size:
            ts = (now // 1000) & 0xFFFF_FFFF
            search.on_sent(ts, now, TIMEOUT)
            if size <= mtu_at(now) and not next(lost):
                heapq.heappush(answers, (now + RTT, ts))
        assert len(search._table) <= PROBE_TABLE  # bounded state
        assert search.base <= search.plpmtu <= search.upper
        upcoming = min(search.due, answers[0][0] if answers else search.due)
        if suspect_at is not None:  # PathMtu looks at the loss at every timer
            upcoming = min(upcoming, max(now + 100 * MS, suspect_at))
        if upcoming >= until:
            return until
        now = max(now + 1_000, upcoming)
    return now


def _search() -> LinkSearch:
    return LinkSearch(BASE_PLPMTU, UPPER, RAISE, 0)


# --- the search alone --------------------------------------------------------------------


@given(true_mtu=st.integers(BASE_PLPMTU, UPPER), losses=st.lists(st.booleans(), max_size=80))
def test_the_search_finds_the_largest_size_the_path_carries(
    true_mtu: int, losses: list[bool]
) -> None:
    search = _search()
    ended = drive(search, lambda t: true_mtu, _no_long_runs(losses), until=RAISE)
    assert search.state is PmtuState.SEARCH_COMPLETE
    assert search.plpmtu == true_mtu
    assert search.probes <= MOST_PROBES
    assert ended == RAISE  # then idle until the raise timer (or for good, at the bound)
    assert search.due == (1 << 62 if true_mtu == UPPER else search.due)
    assert search.due > RAISE


def test_a_path_that_carries_the_bound_costs_two_probes() -> None:
    search = _search()
    drive(search, lambda t: UPPER, ())
    assert (search.plpmtu, search.probes) == (UPPER, 2)  # the base, then the bound
    search = _search()
    drive(search, lambda t: 1400, ())
    assert search.plpmtu == 1400
    assert search.probes <= MOST_PROBES


@given(true_mtu=st.integers(BASE_PLPMTU - 100, UPPER), losses=st.lists(st.booleans(), max_size=80))
def test_whatever_is_lost_the_search_ends_between_the_base_and_the_path(
    true_mtu: int, losses: list[bool]
) -> None:
    search = _search()
    drive(search, lambda t: true_mtu, losses, until=20 * S)  # before ERROR tries again
    assert search.probes <= MOST_PROBES
    assert search.state in (PmtuState.SEARCH_COMPLETE, PmtuState.ERROR)
    assert search.plpmtu >= BASE_PLPMTU
    if true_mtu >= BASE_PLPMTU:
        assert search.plpmtu <= true_mtu  # never more than got through
    if search.state is PmtuState.ERROR:
        assert search.plpmtu == BASE_PLPMTU
    if true_mtu < BASE_PLPMTU:
        assert search.state is PmtuState.ERROR


@given(
    before=st.integers(BASE_PLPMTU + 1, UPPER),
    data=st.data(),
    losses=st.lists(st.booleans(), max_size=120),
)
def test_a_black_hole_is_found_and_the_new_size_with_it(
    before: int, data: st.DataObject, losses: list[bool]
) -> None:
    after = data.draw(st.integers(BASE_PLPMTU, before - 1), label="after")
    search = _search()
    shrink = 10 * S

    def mtu_at(t: int) -> int:
        return before if t < shrink else after

    drive(search, mtu_at, _no_long_runs(losses), until=shrink)
    assert search.plpmtu == before
    drive(search, mtu_at, (), start=shrink, until=shrink + 30 * S, suspect_at=shrink)
    assert search.blackholes == 1
    assert search.state is PmtuState.SEARCH_COMPLETE
    assert search.plpmtu == after


def test_a_path_below_the_base_is_an_error_and_probed_again() -> None:
    search = _search()
    drive(search, lambda t: 1400, (), until=10 * S)
    drive(search, lambda t: 1200, (), start=10 * S, until=20 * S, suspect_at=10 * S)
    assert (search.state, search.plpmtu, search.blackholes) == (PmtuState.ERROR, BASE_PLPMTU, 1)
    probes = search.probes
    drive(search, lambda t: 1400, (), start=20 * S, until=200 * S)  # the path is back
    assert search.probes > probes
    assert (search.state, search.plpmtu) == (PmtuState.SEARCH_COMPLETE, 1400)


def test_a_confirmation_that_gets_through_waits_longer_for_the_next() -> None:
    search = _search()
    drive(search, lambda t: 1400, (), until=10 * S)
    probes = search.probes
    drive(search, lambda t: 1400, (), start=10 * S, until=20 * S, suspect_at=10 * S)
    assert search.blackholes == 0
    assert search.plpmtu == 1400
    # 10 s of suspicion: confirmations 1, 2, 4 s apart (and so on), not one per step
    assert 3 <= search.probes - probes <= 4


def test_the_raise_timer_finds_a_path_that_grew() -> None:
    search = _search()
    drive(search, lambda t: 1400 if t < RAISE else UPPER, (), until=RAISE - 1)
    assert search.plpmtu == 1400
    drive(search, lambda t: UPPER, (), start=RAISE - 1, until=RAISE + 60 * S)
    assert search.plpmtu == UPPER


def test_a_quiet_link_makes_no_size_fail() -> None:
    """No answer to anything (an outage) says nothing about size: the unanswered probe
    is not counted lost, so nothing is probed again until the link answers."""
    search = _search()
    drive(search, lambda t: 0, (), until=30 * S, quiet=True)
    assert (search.state, search.probes, search.plpmtu) == (PmtuState.BASE, 1, BASE_PLPMTU)


def test_a_link_back_from_down_tries_its_old_size_first() -> None:
    search = _search()
    drive(search, lambda t: 1400, (), until=10 * S)
    probes = search.probes
    assert search.revalidate(10 * S)  # back to the base until it answers
    assert search.plpmtu == BASE_PLPMTU
    drive(search, lambda t: 1400, (), start=10 * S, until=20 * S)
    assert (search.plpmtu, search.probes - probes) == (1400, 2)  # the base, then 1400
    assert search.state is PmtuState.SEARCH_COMPLETE
    assert search.revalidate(20 * S)  # and if the new path is smaller: below it
    drive(search, lambda t: 1350, (), start=20 * S, until=30 * S)
    assert search.plpmtu == 1350


@given(echoes=st.lists(st.integers(0, 2**32 - 1), max_size=50))
def test_stray_echoes_change_nothing(echoes: list[int]) -> None:
    search = _search()
    search.on_sent(123, 0, TIMEOUT)  # the base probe, stamped 123 µs
    for ts in echoes:
        if ts != 123:
            assert search.match(ts) == 0
    assert search.match(123) == BASE_PLPMTU
    assert search.match(123) == 0  # once


def test_nothing_to_search_when_the_bound_is_the_base() -> None:
    for upper in (1280, 1200, 576):
        search = LinkSearch(min(BASE_PLPMTU, upper), upper, RAISE, 0)
        assert search.state is PmtuState.SEARCH_COMPLETE
        assert search.wants(10**12) == 0
        assert search.due == 1 << 62
        search.suspect(0)
        assert search.wants(0) == 0


# --- two endpoints -----------------------------------------------------------------------


def _cfg(**kw: object) -> plait.Config:
    links = [plait.LinkConfig(rate_bps=r) for r in (5_000_000, 8_000_000, 10_000_000)]
    return plait.Config(links=links, **kw)  # type: ignore[arg-type]  # test passthrough


@pytest.mark.parametrize("psk", [None, bytes(range(32))])
def test_a_1316_byte_message_travels_whole_on_1500_byte_paths(psk: bytes | None) -> None:
    net = Net.build(_cfg(psk=psk), seed=31)
    tag = 16 if psk else 0
    base = BASE_PLPMTU - 28 - 11 - 6 - 24 - tag + 2  # header, echo, DATA + PARITY fields
    assert net.a.stats().payload_size == base  # before any search: the base
    net.run_until(1 * S)  # no application traffic: the probes go by the timer alone
    stats = net.a.stats()
    assert [ln.pmtu for ln in stats.links] == [UPPER] * 3
    assert [ln.pmtu_state for ln in stats.links] == ["SEARCH_COMPLETE"] * 3
    assert [ln.pmtu_probes for ln in stats.links] == [2] * 3
    assert stats.payload_size == UPPER - 28 - 11 - 6 - 24 - tag + 2 >= 1316
    before = len(net.sent_types["a"])
    net.send("a", payload(0, 0, 1316))
    net.run_until(net.now + 200 * MS)
    data = [t for _, _, t in net.sent_types["a"][before:] if t == PacketType.DATA]
    assert len(data) == 1
    assert net.a.stats().records_sent == 1
    assert [e.data for _, e in net.delivered["b"]] == [payload(0, 0, 1316)]


def test_an_mtu_at_the_base_probes_nothing() -> None:
    net = Net.build(_cfg(mtu=1280), seed=32)
    net.run_until(1 * S)
    stats = net.a.stats()
    assert [(ln.pmtu, ln.pmtu_probes) for ln in stats.links] == [(1280, 0)] * 3
    assert stats.payload_size == 1280 - 28 - 11 - 6 - 24 + 2


# a trace record: (kind name, time, sender, link, fate, arrival, datagram in hex) for NET
def _mtu_drops(trace: Iterable[tuple[Any, ...]]) -> dict[int, list[int]]:
    """Datagrams the paths dropped for size: packet type -> times (ns)."""
    drops: dict[int, list[int]] = {}
    for kind, time, _side, _link, fate, _arrival, blob in trace:
        if kind == "NET" and fate == Drop.MTU:
            drops.setdefault(bytes.fromhex(blob[:2])[0] & 0x0F, []).append(time)
    return drops


def _probe_sizes(
    trace: Iterable[tuple[Any, ...]], side: int, *, times: bool = False
) -> list[tuple[int, ...]]:
    """(link, IP size, fate) of every padded PROBE `side` sent (and when, with `times`)."""
    out: list[tuple[int, ...]] = []
    for kind, time, sender, link, fate, _arrival, blob in trace:
        padded = len(blob) > 400 and bytes.fromhex(blob[:2])[0] & 0x0F == PacketType.PROBE
        if kind == "NET" and sender == side and padded:
            out.append((link, len(blob) // 2 + 28, fate, *((time,) if times else ())))
    return out


def test_a_1400_byte_path_among_1500_byte_ones_loses_nothing_to_size() -> None:
    result = run(SCENARIOS["pmtu"], seed=1, trace_limit=10**7)
    assert result.ok, result.summary()
    assert result.delivered == result.sent
    # whole 1316-byte datagrams, so at most 1.25 wire bytes (both ways, IP/UDP counted)
    # per payload byte (issue 13; 1.17 measured)
    wire = sum(p.offered_bytes + 28 * p.offered for p in result.links)
    assert wire <= 1.25 * 1316 * result.sent
    drops = _mtu_drops(result.trace)
    assert set(drops) <= {PacketType.PROBE}  # only probes die of size
    stats = result.endpoint_stats[0]
    assert isinstance(stats, plait.Stats)
    assert [ln.pmtu for ln in stats.links] == [1500, 1400, 1500, 1500]
    assert stats.payload_size >= 1316  # a video datagram goes whole on every link
    assert stats.links[1].pmtu_probes <= MOST_PROBES
    probes = _probe_sizes(result.trace, 0)
    assert {size for link, size, fate in probes if link == 1 and fate == 0} >= {1280, 1400}
    assert all(fate == Drop.MTU for link, size, fate in probes if link == 1 and size > 1400)
    assert all(BASE_PLPMTU <= size <= 1500 for _, size, _ in probes)  # the size probed, exactly


def test_a_path_that_shrinks_mid_run_is_found_out() -> None:
    base = SCENARIOS["pmtu"]
    shrink = 4 * S
    links = list(base.links)
    links[2] = LinkSpec(attrs.evolve(links[2].forward, mtu_schedule=((shrink, 1300),)))
    scenario = base.evolve(name="pmtu-blackhole", links=tuple(links), duration_ns=8 * S)
    result = run(scenario, seed=2, trace_limit=10**7)
    assert result.ok, result.summary()
    stats = result.endpoint_stats[0]
    assert isinstance(stats, plait.Stats)
    assert stats.links[2].pmtu == 1300
    assert stats.links[2].pmtu_state == "SEARCH_COMPLETE"
    drops = _mtu_drops(result.trace)
    lost = drops.get(PacketType.DATA, []) + drops.get(PacketType.PARITY, [])
    assert lost  # the black hole was real ...
    assert all(shrink <= t < shrink + S for t in lost)  # ... and found within a second
    assert result.delivered >= 0.99 * result.sent
    # the confirmations at the old size: as many as the link's loss before asks for, not
    # what the black hole's own losses would (6 of them once cost 0.4 s more)
    confirmations = [
        size
        for link, size, _fate, time in _probe_sizes(result.trace, 0, times=True)
        if link == 2 and time >= shrink and size == 1500
    ]
    assert 1 <= len(confirmations) <= probes_for_loss(0.10)


def test_same_seed_same_run() -> None:
    scenario = SCENARIOS["pmtu"].evolve(duration_ns=2 * S)
    assert run(scenario, seed=5).digest == run(scenario, seed=5).digest


def test_probes_are_rare() -> None:
    """Over a long quiet session the searches cost a few probes per link, then none
    until the raise timer (none at all where the path carries the bound)."""
    net = Net.build(_cfg(), seed=33)
    net.run_until(30 * S)
    assert [ln.pmtu_probes for ln in net.a.stats().links] == [2] * 3


def test_hostile_probe_answers_are_ignored() -> None:
    """PROBE_ACKs echoing timestamps we never probed with move nothing."""
    net = Net.build(_cfg(), seed=34)
    net.run_until(1 * S)
    rng = random.Random(34)
    before = [(ln.pmtu, ln.pmtu_probes) for ln in net.a.stats().links]
    for _ in range(200):
        net.a._pmtu.on_ack(rng.randrange(3), rng.randrange(2**32), net.now, net.a.links)
    assert [(ln.pmtu, ln.pmtu_probes) for ln in net.a.stats().links] == before


@given(low=st.floats(0.0, 0.6), extra=st.floats(0.0, 0.4))
def test_a_lossy_link_needs_more_lost_probes_before_a_size_fails(low: float, extra: float) -> None:
    """At least RFC 8899's 3; enough that loss alone, of the probe or of its answer,
    fails a size that fits less than once in 10^4 (at most 12); never fewer on a
    lossier link."""
    count = probes_for_loss(low)
    assert MAX_PROBES <= count <= 12
    assert probes_for_loss(min(1.0, low + extra)) >= count
    if count < 12:
        assert (1 - (1 - low) ** 2) ** count <= 1e-4 * (1 + 1e-9)
    assert probes_for_loss(0.10) == 6
