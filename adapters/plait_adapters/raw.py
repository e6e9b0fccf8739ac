"""Raw sockets: one thread, one non-blocking UDP socket per link, busy-poll.

The loop thread owns the endpoint; other threads reach it through deques (`send`,
`close_link`, `stats`) and an eventfd that wakes it only while it sleeps. Each pass:
messages and events to the application, queued sends into the endpoint, `handle_timer`
if due, flush, then wait (`_poller.Poller`: busy-poll after activity, a hybrid
sleep-then-spin wait before deadlines, the thread's timer slack at 1 ns). SO_BUSY_POLL
is asked for on every socket; a refusal is recorded in the notes, not raised.

Received datagrams go into a pool of preallocated buffers (`recv_into`, up to `batch`
per socket per pass) and reach the endpoint as memoryviews, so receiving allocates no
buffer per datagram. A link with no remote (a responder learning the peer's address)
reads with `recvfrom_into` instead and sends with `sendto` (`_session.Peer`). With
``gc_mode="idle"`` the cyclic GC is frozen after setup and collects only when the loop
is about to sleep (process-wide while a session runs).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable
from typing import Final, Unpack

import plait
from plait_adapters._links import LinkLike, clock, open_sockets, specs
from plait_adapters._poller import Poller
from plait_adapters._session import (
    BufferPool,
    EventCallback,
    MessageCallback,
    Session,
)
from plait_adapters._threaded import GcMode, PolledOptions, PolledSession

__all__ = ["RawOptions", "RawSession", "open_session"]

_SO_BUSY_POLL: Final = getattr(socket, "SO_BUSY_POLL", 46)


class RawSession(PolledSession):
    """A plait session on raw sockets, driven by one thread. Use `open_session`."""

    def __init__(
        self,
        config: plait.Config,
        links: Iterable[LinkLike],
        *,
        initiator: bool,
        on_message: MessageCallback | None = None,
        on_event: EventCallback | None = None,
        cpu: int | None = None,
        busy_poll_ns: int = 50_000,
        spin_ns: int = 100_000,
        so_busy_poll_us: int = 50,
        timer_slack_ns: int | None = 1,
        gc_mode: GcMode = "idle",
        batch: int = 32,
    ) -> None:
        link_specs = specs(links)
        s = Session(
            config,
            link_specs,
            initiator=initiator,
            runtime="raw",
            on_message=on_message,
            on_event=on_event,
        )
        super().__init__(s, config, cpu=cpu, timer_slack_ns=timer_slack_ns, gc_mode=gc_mode)
        self._socks = open_sockets(link_specs)
        try:
            self._poller = Poller(
                [sk.fileno() for sk in self._socks], busy_poll_ns=busy_poll_ns, spin_ns=spin_ns
            )
        except BaseException:
            for sk in self._socks:
                sk.close()
            raise
        self._sends: list[Callable[[bytes], object]] = [
            s.sender(i, sk.send, sk.sendto) for i, sk in enumerate(self._socks)
        ]
        self._recv_into = [sk.recv_into for sk in self._socks]
        self._recvfrom_into = [sk.recvfrom_into for sk in self._socks]
        self._fd_link = {sk.fileno(): i for i, sk in enumerate(self._socks)}
        self._pool = BufferPool(max(2048, config.mtu + 1), batch)
        for sk in self._socks:
            try:
                sk.setsockopt(socket.SOL_SOCKET, _SO_BUSY_POLL, so_busy_poll_us)
                s.notes["SO_BUSY_POLL"] = f"{so_busy_poll_us} us"
            except OSError as exc:
                s.notes["SO_BUSY_POLL"] = f"refused ({exc.strerror})"

    # --- the I/O -------------------------------------------------------------------------------

    def _wait(self, due: int | None) -> None:
        """Return on input (fed to the endpoint), a command, or the deadline."""
        ready = self._poll(due)
        s, pool, fd_link, recv_into = self._session, self._pool, self._fd_link, self._recv_into
        peers = s.peers
        for fd, _ in ready:
            link = fd_link.get(fd)
            if link is None:
                continue
            peer = peers[link]
            if peer is None:
                got = pool.drain(s, link, recv_into[link])
            else:
                got = pool.drain_from(s, link, self._recvfrom_into[link], peer)
            if got:
                self._last_active = clock()

    def _close_link(self, link: int) -> None:
        sock = self._socks[link]
        if sock.fileno() >= 0:
            self._poller.remove(sock.fileno())
            sock.close()
            self._sends[link] = Session.closed_send()

    def _close_io(self) -> None:
        for sk in self._socks:
            sk.close()
        self._poller.close()


class RawOptions(PolledOptions, total=False):
    """`RawSession`'s keywords, for `open_session`."""

    so_busy_poll_us: int
    batch: int


def open_session(
    config: plait.Config,
    links: Iterable[LinkLike],
    *,
    initiator: bool,
    **options: Unpack[RawOptions],
) -> RawSession:
    """Open the sockets and start the loop thread; use as ``with open_session(...) as s``.

    Args:
        config: the session's `plait.Config` (one `LinkConfig` per link, equal on both ends).
        links: one (local, remote[, interface]) or `LinkSpec` per link.
        initiator: True on the end that starts the session.
        options: `RawSession` keywords: on_message, on_event, cpu, busy_poll_ns, spin_ns,
            so_busy_poll_us, timer_slack_ns, gc_mode, batch.
    """
    return RawSession(config, links, initiator=initiator, **options).start()
