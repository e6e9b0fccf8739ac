"""io_uring for plait: `open_session` (a session, like `raw`'s) on `UringTransport`.

    with uring.open_session(cfg, links, initiator=True) as s:   # exactly as raw's
        s.send(b"hello")

`UringSession` is the thread-driven session of `raw` (`_threaded.PolledSession`: the
same loop, API and wait, here epoll over the ring's fd) with io_uring doing the I/O
through `_ring.UringTransport` (one submission per flush for all links, a multishot
receive per link on a provided-buffer ring, optional SQPOLL; its module docstring has
the details, docs/io_uring.md the measurements).

Every link needs its remote: a multishot receive (uring-api's `prepare_recv_multishot`,
a plain recv) does not report the source address, so this adapter cannot learn the
peer's address. A link with ``remote=None`` raises `LinkError`; use `raw` for that.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import Unpack

import plait
from plait_adapters._links import LinkError, LinkLike, clock, open_sockets, specs
from plait_adapters._poller import Poller
from plait_adapters._ring import UringTransport, UringUnavailable, availability
from plait_adapters._session import EventCallback, MessageCallback, Session
from plait_adapters._threaded import GcMode, PolledOptions, PolledSession

__all__ = [
    "UringOptions",
    "UringSession",
    "UringTransport",
    "UringUnavailable",
    "availability",
    "open_session",
]


class UringSession(PolledSession):
    """A plait session on io_uring, driven by one thread. Use `open_session`."""

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
        timer_slack_ns: int | None = 1,
        gc_mode: GcMode = "idle",
        buffer_count: int = 256,
        sqpoll: bool = False,
        sqpoll_cpu: int | None = None,
    ) -> None:
        link_specs = specs(links)
        s = Session(
            config,
            link_specs,
            initiator=initiator,
            runtime="io_uring",
            on_message=on_message,
            on_event=on_event,
        )
        for i, spec in enumerate(link_specs):
            if spec.remote is None:
                raise LinkError(
                    errno.EOPNOTSUPP,
                    f"link {i}: the io_uring adapter cannot learn the peer's address "
                    "(remote=None): its multishot receive does not report the source; "
                    "use plait_adapters.raw",
                )
        super().__init__(s, config, cpu=cpu, timer_slack_ns=timer_slack_ns, gc_mode=gc_mode)
        self._socks = socks = open_sockets(link_specs)
        self._size = max(2048, config.mtu + 1)  # a datagram that fills it was truncated
        self._oversize = OSError(errno.EMSGSIZE, "datagram larger than the MTU")
        transport = None
        try:
            transport = UringTransport(
                socks,
                buffer_size=self._size,
                buffer_count=buffer_count,
                sqpoll=sqpoll,
                sqpoll_cpu=sqpoll_cpu,
                on_error=self._count_error,
            )
            self._poller = Poller([transport.fileno()], busy_poll_ns=busy_poll_ns, spin_ns=spin_ns)
        except BaseException:
            if transport is not None:
                transport.close()
            for sk in socks:
                sk.close()
            raise
        self._transport = transport
        s.notes["io_uring"] = f"{buffer_count} buffers of {self._size} B, sqpoll={sqpoll}"

    # --- the I/O -------------------------------------------------------------------------------

    def _setup_thread(self) -> None:
        super()._setup_thread()
        self._transport.arm()  # the receives belong to this thread (see the module doc)

    def _wait(self, due: int | None) -> None:
        """Return on input (fed to the endpoint), a command, or the deadline."""
        t = self._transport
        if not t.waiting and not self._poll(due):
            return
        got = t.receive(0)
        if got:
            s, size, now = self._session, self._size, clock()
            for link, data in got:
                if len(data) < size:
                    s.feed(link, data, now)
                else:
                    s.count_error("recv", self._oversize)
            self._last_active = now

    def _transmit(self, out: list[tuple[bytes, int]]) -> None:
        """All of a flush in one submission."""
        self._transport.send_batch(out)
        self._session.datagrams_out += len(out)

    def _count_error(self, where: str, err: int) -> None:
        self._session.count_error(where, OSError(err, os.strerror(err)))

    def _close_link(self, link: int) -> None:
        sock = self._socks[link]
        if sock.fileno() >= 0:
            self._transport.close_link(link)
            sock.close()

    def _close_io(self) -> None:
        try:
            self._transport.close()  # lets the last sends (CLOSE) complete
        finally:
            for sk in self._socks:
                sk.close()
            self._poller.close()


class UringOptions(PolledOptions, total=False):
    """`UringSession`'s keywords, for `open_session`."""

    buffer_count: int
    sqpoll: bool
    sqpoll_cpu: int | None


def open_session(
    config: plait.Config,
    links: Iterable[LinkLike],
    *,
    initiator: bool,
    **options: Unpack[UringOptions],
) -> UringSession:
    """Open the sockets and the ring, start the loop thread; use as ``with
    open_session(...) as s``, exactly like `raw.open_session`.

    Args:
        config: the session's `plait.Config` (one `LinkConfig` per link, equal on both ends).
        links: one (local, remote[, interface]) or `LinkSpec` per link.
        initiator: True on the end that starts the session.
        options: `UringSession` keywords: on_message, on_event, cpu, busy_poll_ns,
            spin_ns, timer_slack_ns, gc_mode, buffer_count, sqpoll, sqpoll_cpu.

    Raises:
        UringUnavailable: io_uring cannot be used here (`availability()` says why).
        plait_adapters.LinkError: a link's socket cannot be set up, or a link has no
            remote (this adapter cannot learn the peer's address).
    """
    return UringSession(config, links, initiator=initiator, **options).start()
