"""The io_uring transport (plait_adapters.uring) over loopback UDP sockets.

The session on it (`uring.open_session`) runs the adapters' conformance suite
(tests/test_adapters.py, as "io_uring"); these are the transport's own guarantees, which
that suite cannot see: one submission per batch, order per link, re-arming, the thread
that owns the receives, closing a link or the ring. Skipped, with the reason shown, where
io_uring or the uring-api binding is unavailable (not Linux, kernel < 6.0, io_uring
disabled by sysctl or seccomp, binding not installed).
"""

from __future__ import annotations

import errno
import importlib
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import plait
from plait.errors import PlaitError, UsageError
from plait_adapters import _ring, uring
from plait_adapters.uring import UringTransport, UringUnavailable
from tests.adapter_pairs import ADAPTERS, loopback_links

REASON = uring.availability()
needs_uring = pytest.mark.skipif(REASON is not None, reason=f"io_uring unavailable: {REASON}")


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    return s


@pytest.fixture
def pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """Four connected pairs (a_i <-> b_i), one per link."""
    made = []
    for _ in range(4):
        a, b = _udp(), _udp()
        a.connect(b.getsockname())
        b.connect(a.getsockname())
        made.append((a, b))
    yield made
    for a, b in made:
        a.close()
        b.close()


def _drain(sock: socket.socket, want: int, timeout: float = 2.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            time.sleep(0.0005)
    return got


def _receive_all(t: UringTransport, want: int, timeout: float = 2.0) -> list[tuple[int, bytes]]:
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        got += t.receive(10_000_000)
    return got


def test_unavailable_is_a_clear_typed_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever this machine has, a missing binding or kernel support raises UringUnavailable."""
    monkeypatch.setattr(_ring, "_IMPORT_ERROR", "the uring-api package is not installed")
    s = _udp()
    s.connect(("127.0.0.1", 9))
    try:
        assert uring.availability() == "the uring-api package is not installed"
        with pytest.raises(UringUnavailable, match="uring-api package is not installed") as info:
            UringTransport([s])
        assert isinstance(info.value, RuntimeError)
        assert isinstance(info.value, PlaitError)
        assert info.value.reason == "the uring-api package is not installed"
        # the session raises it too, before starting anything and with no socket left open
        fds = set(os.listdir("/proc/self/fd"))
        cfg = plait.Config(links=[plait.LinkConfig(rate_bps=1_000_000)] * 3)
        with pytest.raises(UringUnavailable, match="uring-api package is not installed"):
            uring.open_session(cfg, loopback_links(3)[0], initiator=True)
        assert set(os.listdir("/proc/self/fd")) == fds
        # and the conformance suite skips io_uring, saying why
        assert ADAPTERS["io_uring"]() == (
            "io_uring unavailable: the uring-api package is not installed"
        )
    finally:
        s.close()


@pytest.mark.skipif(_ring._IMPORT_ERROR is not None, reason=f"{_ring._IMPORT_ERROR}")
def test_a_kernel_without_io_uring_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """uring-api's probe() is empty when io_uring_setup fails (old kernel, seccomp, sysctl)."""
    binding = importlib.import_module("uring_api")
    monkeypatch.setattr(binding, "probe", lambda *args, **kwargs: {})
    s = _udp()
    s.connect(("127.0.0.1", 9))
    try:
        reason = uring.availability()
        assert reason is not None
        assert "io_uring" in reason
        with pytest.raises(UringUnavailable, match="io_uring"):
            UringTransport([s])
        monkeypatch.setattr(binding, "probe", lambda *args, **kwargs: {"available": True})
        assert "Linux >= 6.0" in (uring.availability() or "")
    finally:
        s.close()


@needs_uring
def test_batched_send_is_one_submission_and_lands_on_the_right_sockets(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    with UringTransport([a for a, _ in pairs]) as t:
        items = [(f"link {i % 4} seq {i // 4}".encode() * 50, i % 4) for i in range(16)]
        before = t.stats()["submits"]
        t.send_batch(items)
        assert t.stats()["submits"] - before == 1  # all 16 datagrams, all 4 links, one enter
        for link, (_, b) in enumerate(pairs):
            got = _drain(b, 4)
            assert got == [f"link {link} seq {j}".encode() * 50 for j in range(4)]
        t.send_batch([])  # nothing to send: no submission
        assert t.stats()["submits"] - before == 1
        # the completions of the first batch are reaped, none reported as errors
        t.send_batch([(b"x", 0)])
        assert _drain(pairs[0][1], 1) == [b"x"]
        assert t.receive(0) == []
        assert t.stats()["sends_in_flight"] == 0
        assert t.send_errors == 0


@needs_uring
def test_multishot_receive_gets_every_datagram_in_order(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    with UringTransport([b for _, b in pairs]) as t:
        for round_ in range(3):
            for j in range(10):
                for link, (a, _) in enumerate(pairs):
                    a.send(f"{round_}:{link}:{j}".encode())
            got = _receive_all(t, 40)
            assert len(got) == 40
            for link in range(4):
                assert [d for lk, d in got if lk == link] == [
                    f"{round_}:{link}:{j}".encode() for j in range(10)
                ]
        assert t.receive(0) == []
        assert t.rearms == 0  # one multishot per socket carried all of it


@needs_uring
def test_receive_rearms_after_the_buffer_ring_runs_dry(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """Four buffers, 60 datagrams queued at once: the kernel ends the multishot (ENOBUFS)
    again and again; each time the transport arms it anew and nothing is lost."""
    a, b = pairs[0]
    with UringTransport([b], buffer_count=4, buffer_size=256) as t:
        for j in range(60):
            a.send(b"%d" % j)
        got = _receive_all(t, 60)
        assert [d for _, d in got] == [b"%d" % j for j in range(60)]
        assert {lk for lk, _ in got} == {0}
        assert t.rearms >= 1
        assert t.receive_errors == 0
        a.send(b"after")  # and the re-armed receive still works
        assert _receive_all(t, 1) == [(0, b"after")]


@needs_uring
def test_zero_length_datagrams_come_out_empty(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """A zero-length datagram ends the kernel's multishot; it is delivered as b"" and the
    receive armed again for what follows."""
    a, b = pairs[0]
    with UringTransport([b]) as t:
        for data in (b"", b"next", b"", b""):
            a.send(data)
        assert _receive_all(t, 4) == [(0, b""), (0, b"next"), (0, b""), (0, b"")]
        assert t.receive_errors == 0


@needs_uring
def test_receive_rearms_after_a_socket_error() -> None:
    """An ICMP port unreachable ends the multishot with ECONNREFUSED (counted, and told to
    `on_error`); the next datagram still arrives, through the re-armed receive."""
    a, b = _udp(), _udp()
    port = a.getsockname()[1]
    b.connect(a.getsockname())
    a.close()  # nobody listens on b's peer port any more
    errors: list[tuple[str, int]] = []
    try:
        with UringTransport([b], on_error=lambda where, err: errors.append((where, err))) as t:
            b.send(b"into the void")  # answered by ICMP port unreachable
            deadline = time.monotonic() + 2
            while t.receive_errors == 0 and time.monotonic() < deadline:
                t.receive(1_000_000)
            assert t.receive_errors == 1
            assert t.rearms == 1
            assert errors == [("recv", errno.ECONNREFUSED)]
            a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            a.bind(("127.0.0.1", port))
            a.connect(b.getsockname())
            a.send(b"back again")
            assert _receive_all(t, 1) == [(0, b"back again")]
    finally:
        a.close()
        b.close()


@needs_uring
def test_datagrams_from_another_thread_show_up_without_a_system_call(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """The ring has no DEFER_TASKRUN: the kernel finishes a receive as soon as the datagram
    lands, so a loop spinning on receive(0) (which enters the kernel only when the queue
    has something) sees datagrams sent by other threads and processes."""
    a, b = pairs[0]

    def sender() -> None:
        for j in range(50):
            a.send(b"%d" % j)
            time.sleep(0.0002)

    with UringTransport([b]) as t:
        thread = threading.Thread(target=sender)
        thread.start()
        got: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 5
        while len(got) < 50 and time.monotonic() < deadline:
            got += t.receive(0)
        thread.join()
        assert [d for _, d in got] == [b"%d" % j for j in range(50)]


@needs_uring
def test_the_receives_belong_to_the_thread_that_drives_the_transport(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    """The kernel cancels a thread's requests when it exits, so the thread that builds the
    transport must not arm the receives: built in a thread that has ended, the transport
    still receives, with no receive ended and re-armed on the way."""
    a, b = pairs[0]
    built: list[UringTransport] = []
    maker = threading.Thread(target=lambda: built.append(UringTransport([b])))
    maker.start()
    maker.join()
    gone = Path(f"/proc/self/task/{maker.native_id}")
    deadline = time.monotonic() + 2
    while gone.exists() and time.monotonic() < deadline:  # the kernel task, not only Python's
        time.sleep(0.001)
    with built[0] as t:
        a.send(b"after the builder left")
        assert _receive_all(t, 1) == [(0, b"after the builder left")]
        time.sleep(0.01)
        assert t.receive(0) == []
        assert (t.rearms, t.receive_errors) == (0, 0)


@needs_uring
def test_close_link(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    """A closed link's receive is cancelled and sends to it fail with EBADF, counted and
    told to `on_error`, never submitted; the other links carry on."""
    errors: list[tuple[str, int]] = []
    with UringTransport(
        [b for _, b in pairs], on_error=lambda where, err: errors.append((where, err))
    ) as t:
        assert t.receive(0) == []  # armed
        t.close_link(1)
        t.close_link(1)  # idempotent
        pairs[1][0].send(b"to the closed link")
        pairs[2][0].send(b"to an open one")
        assert _receive_all(t, 1) == [(2, b"to an open one")]
        time.sleep(0.01)
        assert t.receive(0) == []
        before = t.stats()["submits"]
        t.send_batch([(b"x", 1), (b"y", 1)])
        assert t.stats()["submits"] == before  # nothing left to submit
        t.send_batch([(b"z", 0), (b"x", 1)])
        assert _drain(pairs[0][0], 1) == [b"z"]
        assert (t.send_errors, t.last_send_error) == (3, errno.EBADF)
        assert errors == [("send", errno.EBADF)] * 3
        assert t.rearms == 0
        with pytest.raises(UsageError, match="no link 4"):
            t.close_link(4)
    assert pairs[1][1].recv(100) == b"to the closed link"  # left in the socket, still open


@needs_uring
def test_timeouts_and_fileno(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    a, b = pairs[0]
    with UringTransport([b]) as t:
        t0 = time.monotonic()
        assert t.receive(2_000_000) == []
        assert time.monotonic() - t0 >= 0.0015
        assert t.receive(0) == []
        assert select.select([t.fileno()], [], [], 0)[0] == []
        a.send(b"wake")
        assert select.select([t.fileno()], [], [], 1.0)[0] == [t.fileno()]
        assert t.receive(None) == [(0, b"wake")]


@needs_uring
def test_unconnected_sockets_send_to_their_peers() -> None:
    a, b = _udp(), _udp()
    try:
        with pytest.raises(UsageError, match="not connected"):
            UringTransport([a])
        with UringTransport([a], peers=[b.getsockname()]) as t:
            t.send_batch([(b"one", 0), (b"two", 0)])
            assert _drain(b, 2) == [b"one", b"two"]
    finally:
        a.close()
        b.close()


@needs_uring
def test_bad_arguments_are_usage_errors(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    socks = [a for a, _ in pairs]
    with pytest.raises(UsageError, match="at least one"):
        UringTransport([])
    with pytest.raises(UsageError, match="power of two"):
        UringTransport(socks, buffer_count=3)
    with pytest.raises(UsageError, match="peers"):
        UringTransport(socks, peers=[None])
    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(UsageError, match="not a datagram socket"):
            UringTransport([tcp])
    finally:
        tcp.close()
    with UringTransport(socks) as t, pytest.raises(UsageError, match="no link 4"):
        t.send_batch([(b"x", 4)])


@needs_uring
def test_close_is_clean_and_leaves_the_sockets_open(
    pairs: list[tuple[socket.socket, socket.socket]],
) -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    t = UringTransport([b for _, b in pairs])
    t.send_batch([(b"x", 0)])  # a send in flight at close
    pairs[1][0].send(b"unread")  # and a datagram nobody collected
    t.close()
    t.close()  # idempotent
    assert t.closed
    with pytest.raises(UsageError, match="closed"):
        t.send_batch([(b"x", 0)])
    with pytest.raises(UsageError, match="closed"):
        t.receive(0)
    assert set(os.listdir("/proc/self/fd")) == fds_before  # the ring's fd is gone
    a, b = pairs[2]  # the caller's sockets still work
    a.send(b"plain again")
    assert _drain(b, 1) == [b"plain again"]


@needs_uring
def test_sqpoll(pairs: list[tuple[socket.socket, socket.socket]]) -> None:
    try:
        t = UringTransport([a for a, _ in pairs], sqpoll=True, sqpoll_cpu=0)
    except UringUnavailable as exc:
        pytest.skip(f"SQPOLL refused here: {exc.reason}")
    with t:
        t.send_batch([(b"polled %d" % i, i % 4) for i in range(8)])
        for link, (_, b) in enumerate(pairs):
            assert _drain(b, 2) == [b"polled %d" % link, b"polled %d" % (link + 4)]
