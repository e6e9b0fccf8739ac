"""The endpoint's timers: `next_deadline` is kept from cached parts, and must equal what a
recomputation from scratch gives after any sequence of operations (so must the other
values kept between calls, `LinkSet.arq_times`); `handle_timer` called only because a
pacer releases does no timer work.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import plait
from plait.outbox import Outbox
from tests.harness import MS, Net

_NEVER = 1 << 62


def _earliest(times: list[int | None]) -> int | None:
    best = min((t for t in times if t is not None), default=_NEVER)
    return None if best >= _NEVER else best


def _outbox_due(out: Outbox) -> int | None:
    """`Outbox.deadline` from scratch."""
    times: list[int | None] = [d + 1 for d, _, m in out._expiry if not m.done]
    times += [d + 1 for d, seq in out._inflight_expiry if seq in out._inflight]
    if out.fec is not None:
        times.append(out.fec.deadline())
    return _earliest(times)


def _links_due(ep: plait.Endpoint) -> int | None:
    """`Endpoint._links_due` from scratch."""
    out, times = ep.outbox, list[int | None]()
    for ln in ep.links.links:
        times += [ln.health.deadline(), ln.health.probe_at]
        log = [entry for entry in out._links[ln.id] if entry[1] in out._inflight]
        if log:
            times.append(log[0][2] + ep._timeouts[ln.id])
    return _earliest(times)


def _recomputed(ep: plait.Endpoint) -> int | None:
    """`next_deadline` from scratch, touching nothing: every part read off the state."""
    if ep.closed:
        return None
    out, links = ep.outbox, ep.links
    times = [ep._life.due, ep._feedback.due, ep.inbox.deadline(), _outbox_due(out)]
    if ep._hs.can_seal:
        times += [_links_due(ep), ep._pmtu.due]
        if out.pending() and links.carrying():
            times.append(links.wake_at or links.next_free())
    if ep.initiator and not ep._hs.locked:
        times.append(ep._hello_at + ep.config.health.probe_interval_ns)
    return _earliest(times)


def _check(net: Net) -> None:
    for ep in (net.a, net.b):
        assert ep.next_deadline() == _recomputed(ep)
        assert ep.outbox.deadline() == _outbox_due(ep.outbox)  # each cached part, too
        links_due = ep._links_due()
        assert (None if links_due >= _NEVER else links_due) == _links_due(ep)
        links, feedback_ns, burst = ep.links, ep.config.feedback_interval_ns, ep.outbox.burst
        for ln in links.links:  # the re-send times, kept per link (`LinkSet.arq_times`)
            assert links.arq_times(ln.id, feedback_ns, burst) == links._arq_times(
                ln.id, feedback_ns, burst
            )


_OPS = st.lists(
    st.tuples(
        st.sampled_from(["send", "burst", "run", "cut", "heal", "timer", "close"]),
        st.integers(0, 3),
        st.integers(1, 400),
    ),
    max_size=30,
)


@settings(deadline=None, max_examples=40)
@given(
    ops=_OPS,
    seed=st.integers(0, 1000),
    fec=st.booleans(),
    psk=st.booleans(),
    loss=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_next_deadline_equals_a_recomputation(
    ops: list[tuple[str, int, int]], seed: int, fec: bool, psk: bool, loss: float
) -> None:
    config = plait.Config(
        links=[plait.LinkConfig(rate_bps=r) for r in (2_000_000, 5_000_000, None, 8_000_000)],
        fec=plait.FecConfig(k=4, m=2) if fec else None,
        psk=bytes(32) if psk else None,
        latency_ns=150 * MS,
    )
    net = Net.build(config, seed=seed, loss=[loss, 0.0, loss / 2, 0.0])
    _check(net)
    for op, link, arg in ops:
        side = "a" if link % 2 == 0 else "b"
        ep = net.ep(side)
        if op == "send" and ep.state is plait.SessionState.ESTABLISHED:
            net.send(side, bytes(arg * 10), deadline=net.now + arg * MS)
        elif op == "burst" and ep.state is plait.SessionState.ESTABLISHED:
            for i in range(arg // 20 + 1):
                net.send(side, bytes(1200), stream=i % config.streams)
        elif op == "run":
            net.run_until(net.now + arg * MS // 4, tick=_check)
        elif op == "cut":
            for direction in ("ab", "ba"):
                net.paths[(direction, link)].dead_from = net.now
        elif op == "heal":
            for direction in ("ab", "ba"):
                net.paths[(direction, link)].dead_from = None
        elif op == "timer":  # early, late or twice: safe
            ep.handle_timer(now=net.now + arg * 1000)
            net.now += arg * 1000
        elif op == "close" and arg > 350:
            ep.close(now=net.now, abort=arg > 390)
        _check(net)


def test_a_pacing_release_alone_is_no_timer_work() -> None:
    """A link slow enough that a burst waits for its pacer: the endpoint asks to be woken
    at each release, and `handle_timer` then finds no timer due (the pacer's turn is
    `datagrams_to_send`'s); a due timer is still served."""
    config = plait.Config(links=[plait.LinkConfig(rate_bps=1_000_000)], fec=None)
    net = Net.build(config, delays_ms=[5])
    net.run_until(300 * MS)
    a = net.a
    assert a.state is plait.SessionState.ESTABLISHED
    for _ in range(20):
        net.send("a", bytes(1200))
    assert a.outbox.pending()  # 20 datagrams of 1228 bytes: about 200 ms at 1 Mbit/s
    releases = 0
    while a.outbox.pending():
        due = a.next_deadline()
        assert due is not None
        work_due = a._work_due()
        tune = a._fec.due(due)  # FEC sizing: no timer of its own, done at any call
        before = a._timer_work
        net.now = due
        a.handle_timer(now=due)
        if due < work_due and not tune:  # a release and nothing else
            releases += 1
            assert a._timer_work == before
        else:
            assert a._timer_work == before + 1
        net._flush("a")
    assert releases >= 10
    # and due timers are still served: the probe interval passes with nothing sent
    due = a.next_deadline()
    assert due is not None
    before = a._timer_work
    net.now = due
    a.handle_timer(now=due)
    assert a._timer_work == before + 1
