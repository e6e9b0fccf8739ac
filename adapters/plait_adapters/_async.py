"""`AsyncFacade`: the API and loop step the async adapters (`aio`, `trio_`) share.

The two differ only in how a task waits and is woken (asyncio futures, trio events)
and how the one timer is re-armed; those are the five small hooks a runtime fills in.
Everything a user calls (`send`, `receive`, `async for`, `wait_established`, ...) and
the endpoint loop's step are written once, here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Self

import plait
from plait_adapters._links import clock
from plait_adapters._session import Session, SessionStats

__all__ = ["AsyncFacade"]


class AsyncFacade:
    """A plait session on an async runtime; subclasses supply the waiting."""

    _session: Session
    _sends: list[Callable[[bytes], object]]

    # --- the runtime's hooks -----------------------------------------------------------------

    async def _wait_progress(self) -> None:
        """Wait until `_wake_readers` (a message, an event, or the session's end)."""
        raise NotImplementedError

    async def _wait_room(self) -> None:
        """Wait until `_wake_room` (the endpoint may have room for a message)."""
        raise NotImplementedError

    def _wake_readers(self) -> None:
        raise NotImplementedError

    def _wake_room(self) -> None:
        """Wake `send` calls waiting for room; cheap when none waits."""
        raise NotImplementedError

    def _rearm(self, due: int | None) -> None:
        """Move the one timer to `due` (None: disarm); called only when it changed."""
        raise NotImplementedError

    async def _after_send(self) -> None:
        """A runtime's checkpoint at the end of `send` (trio wants one; asyncio not)."""

    # --- the API -------------------------------------------------------------------------

    async def send(self, data: bytes, stream: int = 0, *, deadline: int | None = None) -> int:
        """Queue a message and flush; waits while the send buffer is full. Returns its
        handle, or -1 if its deadline passed while waiting (then `MessageExpired`).

        Raises:
            plait.errors.UsageError: a bad stream or size, or the session is closed.
        """
        s = self._session
        now = clock()
        due = now + s.endpoint.latency_ns if deadline is None else deadline
        while True:
            self._raise_error()
            try:
                handle = s.submit(data, stream, now, due)
            except plait.errors.BackpressureError:
                await self._wait_room()
                now = clock()
                if due <= now:
                    s.expired_unsent(stream)
                    return -1
                continue
            self._step(now)
            await self._after_send()
            return handle

    def send_nowait(self, data: bytes, stream: int = 0, *, deadline: int | None = None) -> int:
        """`send` without waiting: raises `plait.errors.BackpressureError` when full."""
        now = clock()
        handle = self._session.submit(data, stream, now, deadline)
        self._step(now)
        return handle

    async def receive(self) -> plait.MessageReceived:
        """The next message.

        Raises:
            plait.errors.SessionClosedError: the session ended and every message was read.
        """
        messages = self._session.messages
        while not messages:
            self._check_open()
            await self._wait_progress()
        return messages.popleft()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> plait.MessageReceived:
        try:
            return await self.receive()
        except plait.errors.SessionClosedError:
            raise StopAsyncIteration from None

    async def wait_established(self) -> None:
        """Wait for the HELLO exchange (bound it with the runtime's timeout)."""
        while not self._session.established:
            self._check_open()
            await self._wait_progress()

    def poll_events(self) -> list[plait.Event]:
        """Events (not messages) since the last call, unless `on_event` takes them."""
        return self._session.poll_events()

    def stats(self) -> SessionStats:
        return self._session.stats()

    # --- the loop ------------------------------------------------------------------------------

    def _step(self, now: int) -> None:
        """One pass of the endpoint loop: events out, timer if due, flush, re-arm."""
        s = self._session
        try:
            if s.events():
                self._wake_readers()
            out = s.service(now)
            if out:
                s.transmit(out, self._sends)
            if s.events():
                self._wake_readers()
        except Exception as exc:  # from a callback: stop, and raise it in the application
            s.error = exc
            self._wake_all()
            return
        self._wake_room()
        due, changed = s.deadline()
        if changed:
            self._rearm(due)

    def _wake_all(self) -> None:
        self._wake_readers()
        self._wake_room()

    def _raise_error(self) -> None:
        if self._session.error is not None:
            raise self._session.error

    def _check_open(self) -> None:
        self._raise_error()
        if self._session.closed:
            raise plait.errors.SessionClosedError("the session is closed")
