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

With ``retry_links=True`` (what ``plait relay`` uses) the session outlives a dead
modem: a link that cannot be opened because its interface is down or missing or its
address is not there yet (`_links.LinkError.transient`) is left closed while the
others run, and the loop tries it again with back-off (`_links.LinkSockets`: 0.5 s,
doubling to 10 s); a link whose socket went stale (its interface was removed) is
closed and retried the same way. Its sends meanwhile are dropped and counted
(``send: link not open``), plait marks it DOWN from its silence, and takes it back
once a round trip on it is confirmed. `SessionStats.not_open` lists such links. Without
it (the default) opening is all or none: the first link that cannot be opened raises
`LinkError`.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable, Iterable
from typing import Final, Unpack

import plait
from plait_adapters._links import LinkLike, LinkSockets, clock, specs
from plait_adapters._poller import Poller
from plait_adapters._session import (
    BufferPool,
    EventCallback,
    MessageCallback,
    RecvFromInto,
    RecvInto,
    Session,
)
from plait_adapters._threaded import GcMode, PolledOptions, PolledSession

__all__ = ["LinkCallback", "RawOptions", "RawSession", "open_session"]

LinkCallback = Callable[[int, str | None], None]
"""``on_link(link, why)``: `link` waits to be opened because of `why` (an error), or,
with None, has just opened (``retry_links``)."""

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
        retry_links: bool = False,
        on_link: LinkCallback | None = None,
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
        self._links = sockets = LinkSockets(link_specs, retry=retry_links)
        sockets.open(clock())
        self._on_link = on_link
        n = len(link_specs)
        self._sends: list[Callable[[bytes], object]] = [s.not_open_send] * n
        self._recv_into: list[RecvInto] = [_not_open_recv] * n
        self._recvfrom_into: list[RecvFromInto] = [_not_open_recvfrom] * n
        self._fd_link: dict[int, int] = {}
        self._readers: dict[int, Callable[[], object]] = {}
        """fds the loop also watches (`_add_reader`), with what it calls when one is readable."""
        self._so_busy_poll_us = so_busy_poll_us
        self._pool = BufferPool(max(2048, config.mtu + 1), batch)
        try:
            self._poller = Poller([], busy_poll_ns=busy_poll_ns, spin_ns=spin_ns)
            for link, sock in enumerate(sockets.socks):
                s.learner(link)
                if sock is not None:
                    self._attach(link, sock)
        except BaseException:
            sockets.close()
            raise
        self._not_open({})

    def _attach(self, link: int, sock: socket.socket) -> None:
        """Start using `link`'s (newly) open socket: poll it, send and read through it."""
        s = self._session
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_BUSY_POLL, self._so_busy_poll_us)
            s.notes["SO_BUSY_POLL"] = f"{self._so_busy_poll_us} us"
        except OSError as exc:
            s.notes["SO_BUSY_POLL"] = f"refused ({exc.strerror})"
        peer = s.peers[link]
        if peer is None:
            self._sends[link] = sock.send
            self._recv_into[link] = sock.recv_into
        else:  # a learning link: the peer's address survives a new socket
            peer.sendto = sock.sendto
            self._sends[link] = peer
            self._recvfrom_into[link] = sock.recvfrom_into
        self._fd_link[sock.fileno()] = link
        self._poller.add(sock.fileno())

    def _detach(self, link: int) -> None:
        """Stop using `link`'s socket (before it is closed): sends are dropped and
        counted, reads stop."""
        sock = self._links.socks[link]
        if sock is not None and sock.fileno() >= 0:
            self._poller.remove(sock.fileno())
            del self._fd_link[sock.fileno()]
        self._sends[link] = self._session.not_open_send
        self._recv_into[link] = _not_open_recv
        self._recvfrom_into[link] = _not_open_recvfrom

    def _add_reader(self, fd: int, on_readable: Callable[[], object]) -> None:
        """Also wait for `fd` (an application's socket, say), and call ``on_readable()``
        on the loop thread whenever it is readable, level-triggered: what it leaves
        unread calls it again. From there `send` goes straight into the endpoint, with
        no thread hop and no wake-up (what ``plait relay`` does with its local socket).
        Thread-safe; an exception it raises stops the session, as a callback's does.
        `_remove_reader` stops it; the session's end does too (the fd is the caller's to
        close). Not part of the API every adapter shares: for this package's own
        programs (the relay)."""
        self._call(lambda: self._reader_added(fd, on_readable))

    def _remove_reader(self, fd: int) -> None:
        """Stop waiting for `fd` (`_add_reader`); thread-safe, a no-op if not watched."""
        self._call(lambda: self._reader_removed(fd))

    def _reader_added(self, fd: int, on_readable: Callable[[], object]) -> None:
        if self._done:  # the session has ended: nothing waits any more
            return
        if fd in self._fd_link or fd in self._readers or fd == self._poller.efd:
            raise plait.errors.UsageError(f"fd {fd} is watched already")
        self._poller.add(fd)
        self._readers[fd] = on_readable

    def _reader_removed(self, fd: int) -> None:
        if self._readers.pop(fd, None) is not None and not self._done:
            self._poller.remove(fd)

    # --- the I/O -------------------------------------------------------------------------------

    def _wait(self, due: int | None) -> None:
        """Return on input (fed to the endpoint), a command, or the deadline (or the
        next attempt to open a link that is not open)."""
        s, links = self._session, self._links
        if s.stale:
            self._renew()
        if links.waiting:
            self._reopen()
            retry = links.due()
            if retry is not None and (due is None or retry < due):
                due = retry
        ready = self._poll(due)
        pool, fd_link = self._pool, self._fd_link
        peers = s.peers
        for fd, _ in ready:
            link = fd_link.get(fd)
            if link is None:
                reader = self._readers.get(fd)
                if reader is not None:
                    reader()
                continue
            peer = peers[link]
            if peer is None:
                got = pool.drain(s, link, self._recv_into[link])
            else:
                got = pool.drain_from(s, link, self._recvfrom_into[link], peer)
            if got:
                self._last_active = clock()

    def _reopen(self) -> None:
        """Try the links that are not open, if their time has come."""
        links, now = self._links, clock()
        due = links.due()
        if due is None or due > now:
            return
        before = links.not_open()
        for link, sock in links.attempt(now):
            self._attach(link, sock)
        self._not_open(before)

    def _renew(self) -> None:
        """Close each link whose socket went stale (its interface was removed) and
        try a new one later."""
        s, links, now = self._session, self._links, clock()
        before = links.not_open()
        for link in sorted(s.stale):
            if links.retry and links.socks[link] is not None:
                self._detach(link)
                links.fail(link, OSError(errno.ENODEV, "No such device: its interface went"), now)
        s.stale.clear()
        self._not_open(before)

    def _not_open(self, before: dict[int, str]) -> None:
        """Publish the links that are not open (`SessionStats.not_open`) and tell
        `on_link` what changed since `before`: a link that waits (or fails again for
        another reason), and a link that opened."""
        after = self._session.not_open = self._links.not_open()
        if self._on_link is None:
            return
        for link, why in after.items():
            if before.get(link) != why:
                self._on_link(link, why)
        for link in before.keys() - after.keys():
            if self._links.socks[link] is not None:
                self._on_link(link, None)

    def _close_link(self, link: int) -> None:
        self._detach(link)
        self._links.close_link(link)
        self._sends[link] = Session.closed_send()
        self._session.not_open = self._links.not_open()  # closed for good: not waiting

    def _close_io(self) -> None:
        self._links.close()
        self._poller.close()


def _not_open_recv(buf: memoryview) -> int:
    raise BlockingIOError  # a link that is not open has nothing to read


def _not_open_recvfrom(buf: memoryview) -> tuple[int, object]:
    raise BlockingIOError


class RawOptions(PolledOptions, total=False):
    """`RawSession`'s keywords, for `open_session`."""

    so_busy_poll_us: int
    batch: int
    retry_links: bool
    on_link: LinkCallback | None


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
            so_busy_poll_us, timer_slack_ns, gc_mode, batch, retry_links (open the
            links that can open and retry the others: see the module docstring),
            on_link (``on_link(link, why)`` when a link is left waiting, `why` the
            error, or ``on_link(link, None)`` when it opens; on the loop thread, or
            in `open_session` for the links that wait from the start).

    Raises:
        plait_adapters.LinkError: a link cannot be opened (with ``retry_links``: only
            for an error that cannot go away by itself, such as a port in use).
    """
    return RawSession(config, links, initiator=initiator, **options).start()
