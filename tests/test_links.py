"""plait.links: RTT and jitter estimators, loss from reports, and the state machine
(down within the bound, probation, degraded with hysteresis, flap damping)."""

from __future__ import annotations

import heapq
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.config import HealthConfig
from plait.errors import ConfigError
from plait.links import Jitter, LinkHealth, LinkState, RttEstimator, rtt_from_echo

MS = 1_000_000
S = 1_000_000_000
CFG = HealthConfig()


def test_rtt_estimator_follows_rfc_6298() -> None:
    rtt = RttEstimator(window_ns=10 * S)
    rtt.on_sample(100 * MS, now=0)
    assert (rtt.srtt, rtt.rttvar, rtt.min_rtt) == (100 * MS, 50 * MS, 100 * MS)
    rtt.on_sample(180 * MS, now=1)
    assert rtt.rttvar == (3 * 50 * MS + 80 * MS) // 4
    assert rtt.srtt == (7 * 100 * MS + 180 * MS) // 8
    assert rtt.rto_ns == rtt.srtt + 4 * rtt.rttvar
    assert rtt.min_rtt == 100 * MS


def test_min_rtt_is_windowed() -> None:
    rtt = RttEstimator(window_ns=10 * S)
    rtt.on_sample(50 * MS, now=0)
    rtt.on_sample(80 * MS, now=5 * S)
    assert rtt.min_rtt == 50 * MS
    rtt.on_sample(80 * MS, now=11 * S)  # the 50 ms sample has aged out
    assert rtt.min_rtt == 80 * MS


def test_jitter_is_zero_for_constant_transit_and_tracks_variation() -> None:
    j = Jitter()
    for i in range(50):
        j.on_arrival(sender_ts_us=1000 * i, arrival_us=1000 * i + 30_000)
    assert j.us == 0
    for i in range(50, 400):
        j.on_arrival(sender_ts_us=1000 * i, arrival_us=1000 * i + 30_000 + (i % 2) * 2000)
    assert 1800 <= j.us <= 2000  # |D| = 2 ms every packet converges to 2 ms


def test_jitter_across_the_32_bit_wrap() -> None:
    j = Jitter()
    for i in range(100):
        ts = (2**32 - 50_000 + 1000 * i) % 2**32
        j.on_arrival(ts, (ts + 7000) % 2**32)
    assert j.us == 0


def test_rtt_from_echo() -> None:
    now = 5_000_000 * 1000  # 5 s in ns; our µs clock reads 5_000_000
    assert rtt_from_echo(4_900_000, 250, now) == (100_000 - 250) * 1000
    assert rtt_from_echo(4_900_000, 0xFFFF, now) is None  # held too long
    assert rtt_from_echo(5_000_100, 0, now) is None  # a time in our future
    wrapped_now = (2**32 + 20) * 1000
    assert rtt_from_echo(2**32 - 80, 0, wrapped_now) == 100 * 1000


def _drive(
    health: LinkHealth,
    rtt_at: Callable[[int], int | None],
    until: int,
    probe_every: int | None = None,
    seen: list[tuple[int, LinkState]] | None = None,
) -> list[tuple[int, LinkState]]:
    """Probes every `probe_every` (None: when the link asks, `probe_at`); each is
    answered after `rtt_at(sent)` (None: lost).
    Calls update() at every deadline and on_echo() at every answer, as an endpoint
    would; appends (time, state) after each to `seen` and returns the state changes."""
    events: list[tuple[int, int, int]] = []  # (arrival, order, rtt)
    observed = [] if seen is None else seen
    order = 0

    def step_to(limit: int) -> None:
        while (d := health.deadline()) is not None and d < limit:
            observed.append((d, health.update(d)))

    t = 0
    while t <= until:
        rtt = rtt_at(t)
        if rtt is not None:
            heapq.heappush(events, (t + rtt, order, rtt))
            order += 1
        health.on_probe_sent(t)
        next_probe = t + probe_every if probe_every is not None else health.probe_at
        while events and events[0][0] < next_probe:
            at, _, rtt = heapq.heappop(events)
            step_to(at)
            health.on_echo(rtt, at)
            observed.append((at, health.state))
        step_to(next_probe)
        t = next_probe
    changes = []
    state = LinkState.UP
    for at, now_state in observed:
        if now_state is not state:
            changes.append((at, now_state))
            state = now_state
    return changes


def test_a_silent_link_is_down_within_three_probe_intervals() -> None:
    health = LinkHealth(0, CFG, now=0)
    silent_from = 2 * S
    changes = _drive(health, lambda t: 40 * MS if t < silent_from else None, until=4 * S)
    assert changes[0][1] is LinkState.DOWN
    last_answer = 1_900 * MS + 40 * MS  # the last probe before silence, answered
    assert changes[0][0] == last_answer + CFG.down_after_ns + 1
    assert changes[0][0] - silent_from <= CFG.down_after_ns
    assert not health.carries_data


def test_traffic_that_proves_a_short_rtt_link_makes_its_probe_wait() -> None:
    health = LinkHealth(0, CFG, now=0)
    health.on_probe_sent(0)
    health.on_echo(40 * MS, 40 * MS)  # the probe's answer: an interval after it
    assert health.probe_at == 40 * MS + CFG.probe_interval_ns
    health.on_echo(40 * MS, 90 * MS)  # an echo on data proves the link again
    assert health.probe_at == 90 * MS + CFG.probe_interval_ns
    slow = LinkHealth(1, CFG, now=0)
    slow.on_probe_sent(0)
    slow.on_echo(600 * MS, 600 * MS)
    slow.on_echo(600 * MS, 650 * MS)
    assert slow.probe_at == CFG.probe_interval_ns  # RTT above the interval: no waiting


def test_a_link_that_comes_back_serves_probation_first() -> None:
    health = LinkHealth(0, CFG, now=0)
    changes = _drive(health, lambda t: None if 1 * S <= t < 2 * S else 40 * MS, until=6 * S)
    states = [state for _, state in changes]
    assert states == [LinkState.DOWN, LinkState.PROBATION, LinkState.UP]
    back_at, up_at = changes[1][0], changes[2][0]
    # probed every 25 ms on probation, three good round trips in a row end it (the
    # driver probes on its own schedule, so the first probe may be one interval away)
    assert up_at - back_at <= CFG.probe_interval_ns + 2 * CFG.probe_interval_ns // 4
    assert up_at - 2 * S < 500 * MS  # carrying data within half a second of its return


def test_a_link_that_keeps_dropping_out_stays_out() -> None:
    """Flap damping: the first return is quick; a link that drops out again every
    second needs 2 s of good service the next time, and so never gets it."""
    health = LinkHealth(0, CFG, now=0)

    def rtt(t: int) -> int | None:  # silent 0.5 s of every 1.5 s
        return None if t % (1500 * MS) >= 1000 * MS else 40 * MS

    changes = _drive(health, rtt, until=9 * S)
    ups = [t for t, state in changes if state is LinkState.UP]
    probations = [t for t, state in changes if state is LinkState.PROBATION]
    assert len(ups) == 1
    assert ups[0] - probations[0] < 500 * MS  # the first return: quick
    assert len(probations) >= 4  # it kept answering, and kept being kept out


@pytest.mark.parametrize("half_period", [2 * S, 6 * S])
def test_a_swinging_link_is_not_used_while_slow_and_does_not_flap(half_period: int) -> None:
    """RTT 100 ms for a half period, then 1200 ms for a half period, for 60 s; then
    steady at 100 ms."""

    def slow(t: int) -> bool:
        return t < 60 * S and (t // half_period) % 2 == 1

    health = LinkHealth(0, CFG, now=0)
    seen: list[tuple[int, LinkState]] = []
    changes = _drive(health, lambda t: 1200 * MS if slow(t) else 100 * MS, 120 * S, seen=seen)
    entries_to_up = [t for t, state in changes if state is LinkState.UP and t < 60 * S]
    # in service again at most twice while it swings: the first return is quick (a few
    # round trips), the second needs 2 s of good service, the third 8 s, which a
    # 2 s or 6 s good phase never gives
    assert len(entries_to_up) <= 2
    assert changes[-1][1] is LinkState.UP  # and back for good once steady
    assert changes[-1][0] < 75 * S
    # once the slow answers show (after 300 ms of silence), the link carries no data
    in_slow_phases = [
        state for t, state in seen if slow(t) and t % half_period >= 1_300 * MS and t > 4 * S
    ]
    assert in_slow_phases
    assert all(state < LinkState.DEGRADED for state in in_slow_phases)


def test_loss_from_reports_degrades_and_recovers_with_hysteresis() -> None:
    health = LinkHealth(0, CFG, now=0)
    now = 0
    received = 0
    for step in range(1, 400):
        now = step * 10 * MS
        for _ in range(10):
            health.on_sent(1000, now)
        lossy = step < 100
        received += 8 if lossy else 10
        health.on_echo(40 * MS, now)
        health.on_report(link_seq=(health.sent - 1) & 0xFFFF, received=received & 0xFFFF, now=now)
        if step == 99:
            assert health.loss == pytest.approx(0.2)
            assert health.state is LinkState.DEGRADED
            assert health.weight_factor() == CFG.degraded_share
    assert health.loss == 0.0
    assert health.state is LinkState.UP


def test_reports_for_unsent_datagrams_or_out_of_date_are_ignored() -> None:
    health = LinkHealth(0, CFG, now=0)
    health.on_report(link_seq=5, received=5, now=1)  # nothing sent yet
    for _ in range(10):
        health.on_sent(100, 0)
    health.on_report(link_seq=500, received=3, now=2)  # beyond what we sent
    health.on_report(link_seq=9, received=10, now=3)
    health.on_report(link_seq=4, received=5, now=4)  # older than the last one
    assert health.loss == 0.0


@given(st.lists(st.tuples(st.integers(1, 50 * MS), st.booleans()), max_size=200))
def test_state_and_deadline_are_consistent(steps: list[tuple[int, bool]]) -> None:
    """Whatever arrives, update() at deadline() is where changes happen: calling update
    earlier than the deadline changes nothing that depends on time alone."""
    health = LinkHealth(0, CFG, now=0)
    now = 0
    for gap, answered in steps:
        now += gap
        if answered:
            health.on_echo(30 * MS, now)
        deadline = health.deadline()
        if deadline is None:
            assert health.state is LinkState.DOWN
            continue
        before = health.state
        assert deadline > now - CFG.down_after_ns
        assert health.update(deadline - 1) is before
        assert health.carries_data == (health.state >= LinkState.DEGRADED)


def test_health_config_validation() -> None:
    with pytest.raises(ConfigError):
        HealthConfig(loss_recover=0.2, loss_degrade=0.1)
    with pytest.raises(ConfigError):
        HealthConfig(probe_interval_ns=0)
    with pytest.raises(ConfigError):
        HealthConfig(rtt_recover_factor=4.0)
    assert HealthConfig().down_after_ns == 300 * MS
