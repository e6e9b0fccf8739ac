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
from plait_adapters._session import Session, SessionStats, check_send

__all__ = ["AsyncFacade"]


class AsyncFacade:
    """A plait session on an async runtime; subclasses supply the waiting."""

    _session: Session
    _sends: list[Callable[[bytes], object]]

    # --- the runtime's hooks -----------------------------------------------------------------

    async def _wait_progress(self, timeout: float | None = None) -> bool:
        """Wait until `_wake_readers` (a message, an event, or the session's end), at
        most `timeout` s (None: no bound); False if the time ran out."""
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

    def _close_io(self) -> None:
        """Stop the timer and the readers, close the sockets (after the end)."""
        raise NotImplementedError

    async def _settle(self) -> None:
        """A checkpoint after closing, so the transports finish (shielded in trio)."""

    # --- the API -------------------------------------------------------------------------

    async def send(
        self,
        data: bytes | bytearray | memoryview,
        stream: int = 0,
        *,
        deadline: int | None = None,
        duplicate: str | None = None,
        timeout: float | None = None,
    ) -> int:
        """Queue a message and flush; waits (up to `timeout` s) while the send buffer is
        full. Returns its handle, or -1 if its deadline passed while waiting (then
        `MessageExpired`).

        Args:
            deadline: absolute, in ns of `time.monotonic_ns()`; None: now + latency.
            duplicate: None, "best2" or "all" (`plait.Endpoint.send`).
        Raises:
            plait.errors.UsageError: a bad argument (data bytes-like, times int ns).
            plait.errors.SessionClosedError: the session is closing or ended (its
                subclasses `HandshakeFailed`, `PeerLost` say why).
            plait.errors.BackpressureError: still no room after `timeout`.
        """
        s = self._session
        data = check_send(s.endpoint.config, data, stream, deadline, duplicate)
        now = clock()
        due = now + s.endpoint.latency_ns if deadline is None else deadline
        give_up = None if timeout is None else now + int(timeout * 1e9)
        while True:
            self._check_open()
            try:
                handle = s.submit(data, stream, now, due, duplicate)
            except plait.errors.BackpressureError:
                if give_up is not None and now >= give_up:
                    raise
                await self._wait_room()
                now = clock()
                if due <= now:
                    s.expired_unsent(stream)
                    return -1
                continue
            self._step(now)
            await self._after_send()
            return handle

    def send_nowait(
        self,
        data: bytes | bytearray | memoryview,
        stream: int = 0,
        *,
        deadline: int | None = None,
        duplicate: str | None = None,
    ) -> int:
        """`send` without waiting: raises `plait.errors.BackpressureError` when full."""
        s = self._session
        self._check_open()
        data = check_send(s.endpoint.config, data, stream, deadline, duplicate)
        now = clock()
        handle = s.submit(data, stream, now, deadline, duplicate)
        self._step(now)
        return handle

    async def receive(self, timeout: float | None = None) -> plait.MessageReceived:
        """The next message (waiting up to `timeout` s; None: until one comes).

        Raises:
            TimeoutError: none within `timeout` s.
            plait.errors.SessionClosedError: the session ended and every message was
                read (`HandshakeFailed`, `PeerLost`: it ended by a timeout).
        """
        messages = self._session.messages
        give_up = None if timeout is None else clock() + int(timeout * 1e9)
        while not messages:
            self._check_open()
            if not await self._wait_progress(_left(give_up)):
                raise TimeoutError("no message")
        return messages.popleft()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> plait.MessageReceived:
        """The messages until the session ends (then the iteration stops; `ended`)."""
        try:
            return await self.receive()
        except plait.errors.SessionClosedError:
            raise StopAsyncIteration from None

    async def wait_established(self, timeout: float | None = None) -> bool:
        """Wait for the HELLO exchange: True once established, False after `timeout` s.

        Raises:
            plait.errors.HandshakeFailed: the handshake timed out (no peer, another psk,
                both initiators: `reason`); or SessionClosedError if closed meanwhile.
        """
        give_up = None if timeout is None else clock() + int(timeout * 1e9)
        while not self._session.established:
            self._check_open()
            if not await self._wait_progress(_left(give_up)):
                return False
        return True

    @property
    def ended(self) -> plait.SessionClosed | None:
        """How the session ended (`plait.SessionClosed`: `reason`, `by_peer`), or None."""
        return self._session.ended

    def poll_events(self) -> list[plait.Event]:
        """Events (not messages) since the last call, unless `on_event` takes them."""
        return self._session.poll_events()

    def stats(self) -> SessionStats:
        return self._session.stats()

    # --- live changes (`plait.live`) ----------------------------------------------------------

    def set_link_rate(self, link: int, rate_bps: int | None) -> None:
        """`plait.Endpoint.set_link_rate`: a link's ceiling in int bit/s (None: none)."""
        self._session.endpoint.set_link_rate(link, rate_bps)
        self._step(clock())

    def set_latency(self, latency_ns: int) -> None:
        """`plait.Endpoint.set_latency`: the default budget, int ns (>= 1 ms)."""
        self._session.endpoint.set_latency(latency_ns)

    def set_fec(self, fec: plait.FecConfig | None) -> None:
        """`plait.Endpoint.set_fec`: FEC for blocks started from now on (None: off)."""
        self._session.endpoint.set_fec(fec, now=clock())
        self._step(clock())

    def set_scheduling(self, scheduling: plait.Scheduling) -> None:
        """`plait.Endpoint.set_scheduling`."""
        self._session.endpoint.set_scheduling(scheduling)

    # --- the end ---------------------------------------------------------------------------------

    async def aclose(self, timeout: float | None = None, *, abort: bool = False) -> None:
        """End the session and close the sockets: by default it lingers until every
        message sent is acknowledged or reported (bounded by their deadlines; `timeout`
        s bounds it more, then it aborts), then CLOSE goes out; with `abort`, at once.
        Idempotent."""
        s = self._session
        if not s.endpoint.closed and self._opened():
            s.transmit(s.close(clock(), abort), self._sends)
            self._step(clock())
            give_up = None if timeout is None else clock() + int(timeout * 1e9)
            while not s.closed and s.error is None:
                if not await self._wait_progress(_left(give_up)):
                    break
        if not s.endpoint.closed:
            out = s.close(clock(), abort=True)
            if self._opened():
                s.transmit(out, self._sends)
        s.events()
        s.closed = True
        self._wake_all()
        self._close_io()
        await self._settle()

    def _opened(self) -> bool:
        """True when every link's socket was opened (opening may fail half-way)."""
        return True

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
            raise self._session.end_error()


def _left(give_up: int | None) -> float | None:
    """Seconds left until `give_up` (ns of `clock()`; None: no bound), at least 0."""
    return None if give_up is None else max(0.0, (give_up - clock()) / 1e9)
