"""The adapters' link layer: exclusive ports, which opening errors may go away by
themselves, and the raw adapter's ``retry_links`` (a session that outlives a dead
modem: it opens the links that can open and retries the others with back-off).

The address that "appears later" is simulated here by replacing `_links.open_socket`
with one that fails with EADDRNOTAVAIL until the test lets it through; the real thing
(an address removed from an interface, an interface down, then back) is in
`tests/test_netns.py`. Every wait is bounded.
"""

from __future__ import annotations

import errno
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import plait
from plait_adapters import LinkError, LinkSpec, raw
from plait_adapters import _links as links_mod
from plait_adapters._links import (
    RETRY_FIRST_NS,
    RETRY_MAX_NS,
    LinkSockets,
    open_socket,
)
from plait_adapters._session import NOT_OPEN
from tests.adapter_pairs import loopback_links

LINKS = 3
ABSENT = "192.0.2.1"
"""TEST-NET-1: an address no interface of this host has (binding it: EADDRNOTAVAIL)."""


def config() -> plait.Config:
    return plait.Config(
        links=[plait.LinkConfig(rate_bps=20_000_000)] * LINKS, latency_ns=2_000_000_000
    )


def wait(ready: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while not ready() and time.monotonic() < end:
        time.sleep(0.01)
    return ready()


# --- exclusive ports, transient errors ---------------------------------------------------------


def test_link_ports_are_exclusive() -> None:
    """A second socket on a link's address fails with EADDRINUSE (no SO_REUSEADDR),
    which is not transient: a second relay with the same configuration cannot start."""
    first = open_socket(LinkSpec(("127.0.0.1", 0), ("127.0.0.1", 9)), 0)
    with first:
        local = first.getsockname()
        with pytest.raises(LinkError, match=r"link 1: cannot bind .* in use by another") as info:
            open_socket(LinkSpec(local, ("127.0.0.1", 9)), 1).close()
        assert info.value.errno == errno.EADDRINUSE
        assert not info.value.transient
        plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # anyone else: the same
        with plain:
            plain.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with pytest.raises(OSError, match="in use"):
                plain.bind(local)
    open_socket(LinkSpec(local, ("127.0.0.1", 9)), 0).close()  # free again once closed


@pytest.mark.skipif(sys.platform != "linux", reason="IP_MTU_DISCOVER is Linux's")
def test_link_sockets_set_dont_fragment_and_leave_the_path_mtu_to_plait() -> None:
    """IP_PMTUDISC_PROBE: DF set, the kernel's path MTU cache ignored, so a probe too big
    for the path is lost (or refused with EMSGSIZE), never fragmented (plait.pmtu)."""
    for host in ("127.0.0.1", "::1"):
        try:
            sock = open_socket(LinkSpec((host, 0), (host, 9)), 0)
        except LinkError:  # no IPv6 here
            continue
        with sock:
            if sock.family == socket.AF_INET6:
                level, opt = socket.IPPROTO_IPV6, 23  # IPV6_MTU_DISCOVER
            else:
                level, opt = socket.IPPROTO_IP, 10  # IP_MTU_DISCOVER
            assert sock.getsockopt(level, opt) == 3  # IP(V6)_PMTUDISC_PROBE


def test_which_errors_may_go_away() -> None:
    """An address not on this host (yet) is transient; a malformed host is not."""
    with pytest.raises(LinkError) as info:
        open_socket(LinkSpec((ABSENT, 0), ("127.0.0.1", 9)), 0)
    assert info.value.errno == errno.EADDRNOTAVAIL
    assert info.value.transient
    with pytest.raises(LinkError) as info:
        open_socket(LinkSpec(("no.such.host.invalid", 0), ("127.0.0.1", 9)), 0)
    assert not info.value.transient
    assert LinkError(errno.ENETUNREACH, "no route").transient
    assert LinkError(errno.ENODEV, "no such interface").transient
    assert not LinkError(errno.EPERM, "SO_BINDTODEVICE needs root").transient


# --- LinkSockets, with a scripted opener --------------------------------------------------------


class Script:
    """An `open_socket` stand-in: fails with EADDRNOTAVAIL on the links in `absent`,
    else opens a real socket."""

    def __init__(self, absent: set[int]) -> None:
        self.absent = absent
        self.calls: list[int] = []
        self.real = open_socket

    def __call__(self, link: LinkSpec, index: int = 0) -> socket.socket:
        self.calls.append(index)
        if index in self.absent:
            raise LinkError(errno.EADDRNOTAVAIL, f"link {index}: cannot bind: not here yet")
        return self.real(link, index)


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Script:
    made = Script(set())
    monkeypatch.setattr(links_mod, "open_socket", made)
    return made


def _specs(n: int = LINKS) -> list[LinkSpec]:
    return [LinkSpec(("127.0.0.1", 0), ("127.0.0.1", 9))] * n


def test_link_sockets_retry_with_back_off(script: Script) -> None:
    """A link that cannot open waits: tried 0.5 s later, then after 1, 2, 4, 8, 10,
    10 s; it opens at the first attempt after its address appears."""
    script.absent = {1}
    socks = LinkSockets(_specs(), retry=True)
    socks.open(now=0)
    try:
        assert [s is not None for s in socks.socks] == [True, False, True]
        assert socks.not_open() == {1: "link 1: cannot bind: not here yet"}
        attempts, now = [], 0
        for _ in range(7):
            due = socks.due()
            assert due is not None
            assert socks.attempt(due - 1) == []  # not yet
            attempts.append(due - now)
            now = due
            assert socks.attempt(now) == []
        assert attempts == [RETRY_FIRST_NS * 2**i for i in range(5)] + [RETRY_MAX_NS] * 2
        script.absent = set()
        opened = socks.attempt(socks.due() or 0)
        assert [link for link, _ in opened] == [1]
        assert socks.socks[1] is opened[0][1]
        assert socks.due() is None
        assert socks.not_open() == {}
    finally:
        socks.close()
    assert socks.socks == [None] * LINKS


def test_link_sockets_all_or_none_without_retry(script: Script) -> None:
    script.absent = {2}
    socks = LinkSockets(_specs(), retry=False)
    with pytest.raises(LinkError, match="link 2"):
        socks.open(now=0)
    assert socks.socks == [None] * LINKS  # the two opened first were closed again


def test_an_error_for_the_operator_still_raises(script: Script) -> None:
    """With retry, a port in use is still an error at once (a second relay); every
    socket opened so far is closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        specs = _specs()
        specs[2] = LinkSpec(taken.getsockname(), ("127.0.0.1", 9))
        socks = LinkSockets(specs, retry=True)
        with pytest.raises(LinkError, match="in use"):
            socks.open(now=0)
    assert socks.socks == [None] * LINKS


def test_a_stale_socket_is_replaced(script: Script) -> None:
    socks = LinkSockets(_specs(), retry=True)
    socks.open(now=0)
    try:
        old = socks.socks[0]
        assert old is not None
        socks.fail(0, OSError(errno.ENODEV, "No such device"), now=10)
        assert old.fileno() == -1  # closed
        assert socks.due() == 10 + RETRY_FIRST_NS
        assert [link for link, _ in socks.attempt(10 + RETRY_FIRST_NS)] == [0]
        socks.close_link(1)  # for good: never tried again
        assert socks.due() is None
    finally:
        socks.close()


# --- the raw adapter with retry_links -----------------------------------------------------------


Changes = list[tuple[int, str | None]]


@pytest.fixture
def changes() -> Changes:
    """What A's `on_link` was told, in order."""
    return []


@pytest.fixture
def pair(script: Script, changes: Changes) -> Iterator[tuple[raw.RawSession, raw.RawSession]]:
    """B (responder, all links open) and A (initiator, retry_links, link 2's address
    absent until the test clears `script.absent`; `on_link` appends to `changes`)."""
    links_a, links_b = loopback_links(LINKS)
    b = raw.open_session(config(), links_b, initiator=False, spin_ns=0, busy_poll_ns=0)
    script.absent = {2}

    def on_link(link: int, why: str | None) -> None:
        changes.append((link, why))

    try:
        a = raw.open_session(
            config(),
            links_a,
            initiator=True,
            retry_links=True,
            on_link=on_link,
            spin_ns=0,
            busy_poll_ns=0,
        )
        try:
            yield a, b
        finally:
            a.close()
    finally:
        b.close()


def _received(session: raw.RawSession, link: int) -> int:
    return session.stats().endpoint.links[link].datagrams_received


def test_raw_opens_the_links_it_can_and_the_others_later(
    pair: tuple[raw.RawSession, raw.RawSession], script: Script, changes: Changes
) -> None:
    """Link 2's address is missing at start: the session runs on links 0 and 1 (its
    sends on link 2 dropped and counted, never raised); once the address is there,
    link 2 opens at the next attempt and carries datagrams again."""
    a, b = pair
    assert a.wait_established(5.0)
    for i in range(20):
        a.send(b"early %d" % i, timeout=5.0)
    assert [b.receive(5.0).data for _ in range(20)] == [b"early %d" % i for i in range(20)]
    stats = a.stats()
    assert set(stats.not_open) == {2}
    assert "not here yet" in stats.not_open[2]
    assert wait(lambda: a.stats().errors.get(NOT_OPEN, 0) > 0)  # probes on link 2
    assert _received(b, 2) == 0
    script.absent = set()
    assert wait(lambda: not a.stats().not_open), a.stats().not_open
    assert wait(lambda: _received(b, 2) > 0 and _received(a, 2) > 0)  # both ways
    for i in range(20):
        a.send(b"later %d" % i, timeout=5.0)
    assert [b.receive(5.0).data for _ in range(20)] == [b"later %d" % i for i in range(20)]
    assert changes == [(2, "link 2: cannot bind: not here yet"), (2, None)]  # told once each


def test_raw_replaces_a_socket_that_went_stale(
    pair: tuple[raw.RawSession, raw.RawSession], script: Script, changes: Changes
) -> None:
    """A send that fails with ENODEV (the interface a SO_BINDTODEVICE socket was bound
    to was removed: that socket never works again) closes the link's socket; a new one
    is opened at the next attempt. The failing send is the loop's own (set on the loop
    thread); nothing is raised."""
    a, b = pair
    script.absent = set()
    assert wait(lambda: not a.stats().not_open)
    sends = a._sends  # the loop's send functions, by link

    def gone(data: bytes) -> object:
        raise OSError(errno.ENODEV, "No such device")

    done = threading.Event()

    def break_link_0() -> None:  # on the loop thread, which owns `sends`
        sends[0] = gone
        done.set()

    a._command(break_link_0)
    assert done.wait(5.0)
    assert wait(lambda: 0 in a.stats().not_open)
    assert "stale socket" in a.stats().not_open[0]
    assert a.stats().errors.get("send: ENODEV", 0) > 0
    before = _received(b, 0)
    assert wait(lambda: not a.stats().not_open)  # a new socket, 0.5 s later
    assert wait(lambda: _received(b, 0) > before)
    stale = "link 0: stale socket: No such device: its interface went"
    assert changes[-2:] == [(0, stale), (0, None)]
