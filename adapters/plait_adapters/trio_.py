"""trio: a reader task per link, one timer task, spinning near deadlines.

(The module is `trio_` so that it does not shadow `trio`.) The sockets are
`trio.socket` sockets; each reader task waits until its socket is readable
(`trio.lowlevel.wait_readable`), then drains it into a preallocated buffer pool with
plain non-blocking `recv_into` calls (one trip through the scheduler per batch, not per
datagram) and runs the endpoint loop. Sends go straight out with the socket's
non-blocking `send` (UDP never blocks for long; a full buffer drops, plait repairs).
A link with no remote (a responder learning the peer's address) reads with
`recvfrom_into` and sends with `sendto` to the learnt address (`_session.Peer`).

The timer task sleeps in a cancel scope whose deadline is moved, not replaced, when the
endpoint's deadline changes (the one timer, re-armed only when it changed). trio's
sleeps wake about 1 ms late, so the scope's deadline is `spin_ns` (1 ms) early and the
task then spins with `trio.lowlevel.checkpoint()` (other tasks and I/O still run) until
the deadline; ``spin_ns=0`` for millisecond-grade timing at no CPU cost. Deadlines are
in plait's clock (`time.monotonic_ns`), converted to trio's clock when the scope is set.

Usage::

    async with plait_adapters.trio_.open_session(cfg, links, initiator=True) as s:
        await s.send(b"hello", stream=0)
        async for msg in s:
            ...
"""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TypedDict, Unpack

import trio

import plait
from plait_adapters._async import AsyncFacade
from plait_adapters._links import LinkLike, clock, open_sockets, specs
from plait_adapters._session import (
    BufferPool,
    EventCallback,
    MessageCallback,
    Session,
)

__all__ = ["TrioOptions", "TrioSession", "open_session"]


class TrioSession(AsyncFacade):
    """A plait session in a trio nursery. Use `open_session`."""

    def __init__(
        self,
        config: plait.Config,
        links: Iterable[LinkLike],
        *,
        initiator: bool,
        on_message: MessageCallback | None = None,
        on_event: EventCallback | None = None,
        spin_ns: int = 1_000_000,
        batch: int = 32,
    ) -> None:
        link_specs = specs(links)
        self._session = Session(
            config,
            link_specs,
            initiator=initiator,
            runtime="trio",
            on_message=on_message,
            on_event=on_event,
        )
        self._spin_ns = spin_ns
        self._socks: list[socket.socket] = open_sockets(link_specs)
        self._tsocks = [trio.socket.from_stdlib_socket(sk) for sk in self._socks]
        self._sends: list[Callable[[bytes], object]] = [
            self._session.sender(i, sk.send, sk.sendto) for i, sk in enumerate(self._socks)
        ]
        self._pool = BufferPool(max(2048, config.mtu + 1), batch)
        self._due: int | None = None
        self._timer_scope: trio.CancelScope | None = None
        self._tasks_scope = trio.CancelScope()
        self._readable = trio.Event()
        self._room: trio.Event | None = None

    # --- the API beyond the shared one (`AsyncFacade`) -------------------------------------

    def close_link(self, link: int) -> None:
        """Close one link's socket (what a dead modem looks like)."""
        self._tsocks[link].close()  # wakes its reader task, which then ends
        self._sends[link] = Session.closed_send()

    def _close_io(self) -> None:
        self._tasks_scope.cancel()  # `_run` closes the sockets once its tasks have ended

    async def _settle(self) -> None:
        with trio.CancelScope(shield=True):  # a checkpoint, even when exiting on a cancel
            await trio.lowlevel.checkpoint()

    # --- the tasks -----------------------------------------------------------------------------

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            with self._tasks_scope:
                async with trio.open_nursery() as nursery:
                    for link in range(len(self._socks)):
                        nursery.start_soon(self._reader, link)
                    nursery.start_soon(self._timer)
                    self._session.notes["trio"] = trio.__version__
                    self._step(clock())
                    task_status.started()
        finally:  # no reader waits on a socket any more: close them
            for tsock in self._tsocks:
                tsock.close()

    async def _reader(self, link: int) -> None:
        sock, s, pool = self._socks[link], self._session, self._pool
        recv_into, recvfrom_into, peer = sock.recv_into, sock.recvfrom_into, s.peers[link]
        while True:
            try:
                await trio.lowlevel.wait_readable(sock)
            except (trio.ClosedResourceError, OSError, ValueError):
                return  # closed by close_link() or aclose() (ValueError: fd already -1)
            if peer is None:
                got = pool.drain(s, link, recv_into)
            else:
                got = pool.drain_from(s, link, recvfrom_into, peer)
            if got:
                self._step(clock())

    async def _timer(self) -> None:
        spin_ns = self._spin_ns
        while True:
            due = self._due
            with trio.CancelScope(deadline=self._trio_time(due, spin_ns)) as scope:
                self._timer_scope = scope
                await trio.sleep_forever()
            self._timer_scope = None
            if due is None or due != self._due:
                continue  # re-armed meanwhile
            now = clock()
            while now < due and due == self._due:
                await trio.lowlevel.checkpoint()  # spin; readers still run
                now = clock()
            if due == self._due:
                self._step(now)

    def _trio_time(self, due: int | None, early_ns: int) -> float:
        if due is None:
            return math.inf
        return trio.current_time() + (due - early_ns - clock()) / 1e9

    def _rearm(self, due: int | None) -> None:
        self._due = due
        if self._timer_scope is not None:
            self._timer_scope.deadline = self._trio_time(due, self._spin_ns)

    async def _wait_progress(self, timeout: float | None = None) -> bool:
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await self._readable.wait()
            return True
        return False

    async def _wait_room(self) -> None:
        if self._room is None:
            self._room = trio.Event()
        await self._room.wait()

    async def _after_send(self) -> None:
        await trio.lowlevel.checkpoint()

    def _wake_readers(self) -> None:
        self._readable.set()
        self._readable = trio.Event()

    def _wake_room(self) -> None:
        if self._room is not None:
            self._room.set()
            self._room = None


class TrioOptions(TypedDict, total=False):
    """`TrioSession`'s keywords, for `open_session`."""

    on_message: MessageCallback | None
    on_event: EventCallback | None
    spin_ns: int
    batch: int


@asynccontextmanager
async def open_session(
    config: plait.Config,
    links: Iterable[LinkLike],
    *,
    initiator: bool,
    **options: Unpack[TrioOptions],
) -> AsyncIterator[TrioSession]:
    """Open the sockets and start the tasks; closes them on exit.

    Args:
        config: the session's `plait.Config` (one `LinkConfig` per link, equal on both ends).
        links: one (local, remote[, interface]) or `LinkSpec` per link.
        initiator: True on the end that starts the session.
        options: on_message, on_event, spin_ns, batch (see the module docstring).
    """
    session = TrioSession(config, links, initiator=initiator, **options)
    raised: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            await nursery.start(session._run)
            try:
                yield session
            except BaseException as exc:  # the user's: raised below, outside the nursery
                raised = exc
        finally:
            if raised is None:
                await session.aclose()
            else:  # leaving on an error (or a cancel): no lingering
                with trio.CancelScope(shield=True):
                    await session.aclose(abort=True)
    if raised is not None:
        raise raised  # unwrapped: not in an ExceptionGroup with the adapter's tasks
