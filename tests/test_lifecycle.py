"""The session's lifecycle in the sans-I/O core (issue 15): close lingers and accounts
for every message, abort reports at once, and every session ends with a reason within
its configured timeouts; wrong types at the boundary are refused and change nothing."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import plait
from plait import CloseReason, SessionState
from plait.errors import SessionClosedError, UsageError
from tests.harness import MS, Net

S = 1_000_000_000
PSK = bytes(range(32))
OTHER_PSK = bytes(range(1, 33))


def _config(**kw: object) -> plait.Config:
    rates = [2_000_000, 5_000_000, 8_000_000]
    return plait.Config(links=[plait.LinkConfig(rate_bps=r) for r in rates], **kw)  # type: ignore[arg-type]  # test passthrough


def _closed(events: list[plait.Event]) -> list[plait.SessionClosed]:
    return [e for e in events if isinstance(e, plait.SessionClosed)]


def _outcomes(net: Net) -> tuple[dict[int, str], set[int]]:
    """Each handle's one report at the sender ("expired", "unconfirmed"; a handle
    reported twice fails), and the handles delivered at the receiver."""
    reported: dict[int, str] = {}
    for e in net.events["a"]:
        if isinstance(e, plait.MessageExpired | plait.MessageUnconfirmed):
            assert e.handle not in reported, f"handle {e.handle} reported twice"
            reported[e.handle] = "expired" if isinstance(e, plait.MessageExpired) else "unconfirmed"
    delivered = {struct.unpack_from("!I", m.data)[0] for _, m in net.delivered["b"]}
    return reported, delivered


def _send_burst(net: Net, count: int, rng: random.Random) -> list[int]:
    handles: list[int] = []
    for _ in range(count):
        data = struct.pack("!I", len(handles) + 1) + bytes(rng.randrange(0, 600))
        handles.append(net.send("a", data, stream=rng.randrange(3)))
    assert handles == list(range(1, count + 1))  # handles count from 1: payload = handle
    return handles


def _established(seed: int = 1, **kw: object) -> Net:
    net = Net.build(_config(**kw), seed=seed)
    net.run_until(200 * MS)
    assert net.a.state is net.b.state is SessionState.ESTABLISHED
    return net


def test_close_right_after_200_sends_lingers_until_every_message_is_settled() -> None:
    """The issue's case: close() at once after 200 send()s. Nothing is lost silently:
    each message is delivered or reported at the sender, and the peer sees
    SessionClosed by the peer once the last one is settled."""
    net = _established()
    _send_burst(net, 200, random.Random(5))
    start = net.now
    net.a.close(now=net.now)
    assert net.a.state is SessionState.CLOSING
    assert not net.a.closed
    with pytest.raises(SessionClosedError):
        net.a.send(b"late", now=net.now)
    net.run_until(start + 2 * S)
    reported, delivered = _outcomes(net)
    stats = net.a.stats()
    assert stats.messages_sent == 200
    assert stats.messages_acked + stats.messages_expired_sending + stats.messages_unconfirmed == 200
    assert len(delivered) >= stats.messages_acked > 150  # most fit the 150 ms budget
    assert delivered | set(reported) == set(range(1, 201))  # nothing vanished
    assert delivered & set(reported) <= {h for h, r in reported.items() if r == "unconfirmed"}
    [closed_a] = _closed(net.events["a"])
    [closed_b] = _closed(net.events["b"])
    assert closed_a == plait.SessionClosed(code=0, by_peer=False, reason=CloseReason.APPLICATION)
    assert closed_b == plait.SessionClosed(code=0, by_peer=True, reason=CloseReason.APPLICATION)
    linger = max(t for t, _, ptype in net.sent_types["a"] if ptype == 7) - start  # CLOSE
    assert 0 < linger <= 150 * MS + 1  # bounded by the messages' deadline
    assert net.a.state is net.b.state is SessionState.CLOSED


def test_close_with_nothing_queued_ends_at_once_and_abort_reports_everything() -> None:
    net = _established()
    net.a.close(now=net.now)
    assert net.a.closed
    assert _closed(net.events["a"]) == []
    net = _established(seed=2)
    _send_burst(net, 50, random.Random(6))
    net.a.close(now=net.now, abort=True, code=7)
    assert net.a.closed
    stats = net.a.stats()
    assert stats.messages_acked + stats.messages_expired_sending + stats.messages_unconfirmed == 50
    net.run_until(net.now + S)
    [closed_a] = _closed(net.events["a"])
    assert closed_a.reason is CloseReason.ABORTED
    assert closed_a.code == 7
    assert _closed(net.events["b"])[0].by_peer


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    start_ms=st.sampled_from([0, 100]),
    count=st.integers(0, 120),
    close_after_ms=st.integers(0, 300),
    abort=st.booleans(),
    loss=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_every_message_is_delivered_or_reported_exactly_once(
    seed: int, start_ms: int, count: int, close_after_ms: int, abort: bool, loss: float
) -> None:
    """Across random close and abort points and losses: at the sender each message has
    exactly one outcome (acknowledged, MessageExpired or MessageUnconfirmed) and the
    stats add up to what was sent; at the receiver every acknowledged message was
    delivered, and a message both delivered and reported is one reported unconfirmed
    (the one honest doubt: its acknowledgement was lost). Without loss and linger:
    delivered + reported = sent, exactly."""
    net = Net.build(_config(), seed=seed, loss=[loss] * 3)
    net.run_until(start_ms * MS)  # 0: messages queued before the session is established
    rng = random.Random(seed)
    _send_burst(net, count, rng)
    net.run_until(net.now + close_after_ms * MS)
    net.a.close(now=net.now, abort=abort)
    net._flush("a")
    net.run_until(net.now + 2 * S)
    assert net.a.closed
    reported, delivered = _outcomes(net)
    stats = net.a.stats()
    acked = stats.messages_acked
    assert acked + len(reported) == count
    assert stats.messages_expired_sending + stats.messages_unconfirmed == len(reported)
    assert len(delivered) >= acked  # acknowledged means delivered ...
    assert delivered - set(reported) == set(range(1, count + 1)) - set(reported)  # ... all
    assert all(reported[h] == "unconfirmed" for h in delivered & set(reported))
    if loss == 0.0 and not abort:
        assert len(delivered) + len(reported) == count
    [closed] = _closed(net.events["a"])  # exactly one end
    assert closed.reason is (CloseReason.ABORTED if abort else CloseReason.APPLICATION)
    if loss == 0.0 and net.b.established:
        assert _closed(net.events["b"]) == [plait.SessionClosed(0, True)]  # the peer saw CLOSE


def test_an_initiator_alone_ends_at_the_handshake_timeout() -> None:
    cfg = _config(handshake_timeout_ns=2 * S)
    a = plait.Endpoint(cfg, initiator=True, now=0)
    assert a.next_deadline() is not None
    now = 0
    while not a.closed:
        now = a.next_deadline() or 0
        a.handle_timer(now=now)
        a.datagrams_to_send(now=now)
    assert now == 2 * S
    events = []
    while (e := a.next_event()) is not None:
        events.append(e)
    assert _closed(events) == [plait.SessionClosed(0, False, CloseReason.HANDSHAKE_TIMEOUT)]
    assert a.next_deadline() is None
    assert a.datagrams_to_send(now=now) == []  # no CLOSE: there is nobody


def _run_to_ends(net: Net, until: int) -> dict[str, tuple[int, plait.SessionClosed]]:
    """Run `net` to `until`; each side's SessionClosed with when it was emitted."""
    ends: dict[str, tuple[int, plait.SessionClosed]] = {}

    def tick(n: Net) -> None:
        for side in ("a", "b"):
            closed = _closed(n.events[side])
            if closed and side not in ends:
                ends[side] = (n.now, closed[0])

    net.run_until(until, tick=tick)
    return ends


def _pair_outcome(
    cfg_a: plait.Config, cfg_b: plait.Config, *, a_init: bool, b_init: bool
) -> tuple[dict[str, tuple[int, plait.SessionClosed]], plait.Stats, plait.Stats]:
    """Two endpoints over the harness' wire with their own configs and roles."""
    net = Net.build(cfg_a, seed=3)
    net._heap.clear()  # the harness' own initiator's HELLOs
    net.a = plait.Endpoint(cfg_a, initiator=a_init, now=0, rng=random.Random(1))
    net.b = plait.Endpoint(cfg_b, initiator=b_init, now=0, rng=random.Random(2))
    net._flush("a")
    net._flush("b")
    ends = _run_to_ends(net, 20 * S)
    return ends, net.a.stats(), net.b.stats()


def test_a_psk_mismatch_is_named_on_the_responder() -> None:
    a_cfg, b_cfg = _config(psk=PSK), _config(psk=OTHER_PSK)
    ends, sa, sb = _pair_outcome(a_cfg, b_cfg, a_init=True, b_init=False)
    assert ends["a"] == (5 * S, plait.SessionClosed(0, False, CloseReason.HANDSHAKE_TIMEOUT))
    assert ends["b"] == (5 * S, plait.SessionClosed(0, False, CloseReason.WRONG_PSK))
    assert sa.hellos_unauthenticated == 0
    assert sb.hellos_unauthenticated >= 10
    assert not sa.established
    assert not sb.established


@pytest.mark.parametrize("psk", [None, PSK], ids=["clear", "psk"])
def test_two_initiators_are_told_apart_from_silence(psk: bytes | None) -> None:
    cfg = _config(psk=psk)
    ends, sa, sb = _pair_outcome(cfg, cfg, a_init=True, b_init=True)
    assert [ends[side][1].reason for side in "ab"] == [CloseReason.ROLE_CONFLICT] * 2
    assert ends["a"][0] == ends["b"][0] == 5 * S
    assert sa.role_conflicts > 0
    assert sb.role_conflicts > 0


def test_two_responders_time_out() -> None:
    cfg = _config(psk=PSK)
    ends, _, _ = _pair_outcome(cfg, cfg, a_init=False, b_init=False)
    assert [ends[side] for side in "ab"] == [
        (5 * S, plait.SessionClosed(0, False, CloseReason.HANDSHAKE_TIMEOUT))
    ] * 2


def test_timeouts_can_be_off() -> None:
    cfg = _config(handshake_timeout_ns=None)
    ends, _, _ = _pair_outcome(cfg, cfg, a_init=True, b_init=True)
    assert ends == {}


def test_a_vanished_peer_ends_the_session_after_the_idle_timeout() -> None:
    """kill -9 of the peer at 1 s: every link goes DOWN after 300 ms of silence (the
    failover bound), and 3 s (idle_timeout_ns) later the session ends, on both sides
    here, since the wire is cut both ways."""
    net = _established(idle_timeout_ns=3 * S)
    net.send("a", b"before")
    net.run_until(S)
    for path in net.paths.values():
        path.dead_from = S
    ends = _run_to_ends(net, 10 * S)
    for side in "ab":
        at, closed = ends[side]
        assert closed == plait.SessionClosed(0, False, CloseReason.IDLE_TIMEOUT)
        assert S + 3 * S + 300 * MS <= at <= S + 3 * S + 300 * MS + 200 * MS


def test_wrong_types_are_refused_and_change_nothing() -> None:
    net = _established()
    a = net.a
    before = a.stats()
    cases: list[Callable[[], object]] = [
        lambda: a.send("text", now=net.now),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.send(b"x", now=float(net.now)),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.send(b"x", now=True),  # misuse on purpose: a bool is not a time
        lambda: a.send(b"x", now=net.now, deadline=net.now + 0.5e9),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.send(b"x", now=net.now, stream=1.0),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.handle_timer(now=float(net.now)),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.datagrams_to_send(now=float(net.now)),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.receive_datagram(b"", link=0, now=float(net.now)),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.receive_datagram(b"", link=True, now=net.now),
        lambda: a.set_link_rate(0, 1e6),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.set_link_rate(0, True),
        lambda: a.set_latency(150.0),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.set_latency(150),  # 150 ns: below 1 ms
        lambda: a.close(now=float(net.now)),  # type: ignore[arg-type]  # misuse on purpose
        lambda: a.close(now=net.now, code=70_000),
        lambda: a.set_fec(None, now=1.5),  # type: ignore[arg-type]  # misuse on purpose
    ]
    for case in cases:
        with pytest.raises(UsageError) as info:
            case()
        assert "int" in str(info.value) or "bytes" in str(info.value) or "1 ms" in str(info.value)
    assert a.stats() == before
    assert a.state is SessionState.ESTABLISHED
    for i in range(20):
        net.send("a", struct.pack("!I", i + 1))
    net.run_until(net.now + S)
    assert len(net.delivered["b"]) == 20  # the endpoint kept working


@pytest.mark.parametrize(
    "field", ["latency_ns", "handshake_timeout_ns", "idle_timeout_ns", "feedback_interval_ns"]
)
def test_config_times_are_ints(field: str) -> None:
    with pytest.raises(plait.errors.ConfigError):
        _config(**{field: 1.5e9})
    with pytest.raises(plait.errors.ConfigError):
        _config(**{field: True})


def test_config_ints_are_ints() -> None:
    """Counts and times in every config record refuse floats and bools alike."""
    for make in (
        lambda: plait.HealthConfig(rtt_slack_ns=2.5e7),  # type: ignore[arg-type]  # misuse on purpose
        lambda: plait.HealthConfig(down_after_probes=True),
        lambda: plait.FecConfig(flush_ns=1e6),  # type: ignore[arg-type]  # misuse on purpose
        lambda: plait.FecConfig(k=8.0),  # type: ignore[arg-type]  # misuse on purpose
        lambda: _config(mtu=1500.0),
        lambda: _config(streams=True),
    ):
        with pytest.raises(plait.errors.ConfigError, match="must be an int"):
            make()
    assert plait.HealthConfig(loss_degrade=1).loss_degrade == 1  # a fraction may be an int


def test_latency_budgets_below_1_ms_are_refused() -> None:
    with pytest.raises(plait.errors.ConfigError, match="1 ms"):
        _config(latency_ns=150)
    assert _config(latency_ns=1_000_000).latency_ns == 1_000_000


def test_link_stats_speak_link_state_and_ns() -> None:
    net = _established()
    links = net.a.stats().links
    assert all(ln.state is plait.LinkState.UP for ln in links)
    assert f"{links[0].state:<4}|" == "UP  |"
    assert str(links[0].state) == "UP"
    assert all(ln.jitter_ns == ln.jitter_us * 1000 for ln in links)
    with pytest.warns(DeprecationWarning, match="LinkState"):
        assert links[0].state == "UP"  # the old str comparison still works, deprecated
