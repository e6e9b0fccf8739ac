"""`ThreadedSession`: the blocking API of a session whose loop owns one thread.

Shared by the thread-driven adapters (`raw`, `uring`), which add only their I/O: how to
wait and feed what arrives (`_wait`), how to send (`_sends`, or `_transmit` for a
batch), how to wake a sleeping loop (`_wake`, `_sleeping`), and how to close a link or
everything (`_close_link`, `_close_io`). `PolledSession` does the waking and the wait
for both, with a `_poller.Poller` (epoll over the sockets or the ring's fd, and an
eventfd).

Other threads talk to the loop through deques (queued sends, commands) and never touch
the endpoint: `send` queues (blocking while `send_buffer_bytes` are already queued),
`stats` runs on the loop, messages come back through a condition variable that is
notified only when someone waits. From the loop thread itself (inside `on_message` or
`on_event`) `send` goes straight into the endpoint. An exception that stops the loop
(one raised by a callback) is kept and raised by `receive`, `send` and `close`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Literal, Self, TypedDict

import plait
from plait_adapters import _gc
from plait_adapters._links import clock
from plait_adapters._poller import Poller, Ready, setup_thread
from plait_adapters._session import EventCallback, MessageCallback, Send, Session, SessionStats

__all__ = ["GcMode", "PolledOptions", "PolledSession", "ThreadedSession"]

GcMode = Literal["idle", "freeze", "off"]


class ThreadedSession:
    """The runtime shell; subclasses set `_sends` and implement the I/O methods."""

    _sends: list[Send]

    def __init__(
        self,
        session: Session,
        config: plait.Config,
        *,
        cpu: int | None,
        timer_slack_ns: int | None,
        gc_mode: GcMode,
    ) -> None:
        self._session, self._config = session, config
        self._cpu, self._timer_slack_ns, self._gc_mode = cpu, timer_slack_ns, gc_mode
        self._gc_acquired = False
        self._sendq: deque[tuple[bytes, int, int]] = deque()
        self._cmds: deque[Callable[[], None]] = deque()
        self._appended = self._seen = 0  # sends queued by other threads / taken by the loop
        self._bytes_in = self._bytes_out = 0
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiters = 0
        self._stop = self._done = False
        self._last_active = 0
        """When the loop last received or sent (busy-poll after activity)."""
        self._loop_ident: int | None = None
        self._thread: threading.Thread | None = None

    # --- the I/O, in subclasses --------------------------------------------------------------

    def _wait(self, due: int | None) -> None:
        """Feed what arrives; return on input, `_pending()`, or the deadline."""
        raise NotImplementedError

    def _transmit(self, out: list[tuple[bytes, int]]) -> None:
        """Send (datagram, link) pairs: one `_sends[link]` call each, unless a subclass
        batches them (io_uring: one submission)."""
        self._session.transmit(out, self._sends)

    def _sleeping(self) -> bool:
        raise NotImplementedError

    def _wake(self) -> None:
        """Wake `_wait`; thread-safe, and harmless after `_close_io`."""
        raise NotImplementedError

    def _close_link(self, link: int) -> None:
        raise NotImplementedError

    def _close_io(self) -> None:
        raise NotImplementedError

    # --- the API ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Run the loop in a new daemon thread."""
        self._thread = threading.Thread(
            target=self._run, args=(False,), name="plait-" + self._session.runtime, daemon=True
        )
        self._thread.start()
        return self

    def run(self) -> None:
        """Run the loop in this thread until `close()` (from a callback or another
        thread); raises what stopped it."""
        self._run(True)

    def _run(self, reraise: bool) -> None:
        self._loop_ident = threading.get_ident()
        try:
            self._setup_thread()
            self._loop()
        except BaseException as exc:  # kept for close() and the readers to raise
            self._session.error = exc
            if reraise:
                raise
        finally:
            self._teardown()

    def send(
        self,
        data: bytes,
        stream: int = 0,
        *,
        deadline: int | None = None,
        timeout: float | None = None,
    ) -> None:
        """Queue a message; thread-safe. From another thread it is handed to the loop
        (blocking up to `timeout` s while `send_buffer_bytes` are already queued there);
        from a callback it goes straight into the endpoint.

        Raises:
            plait.errors.UsageError: a bad stream or size, or the session is closed.
            plait.errors.BackpressureError: still no room after `timeout`.
        """
        s, cfg = self._session, self._config
        if s.error is not None:
            raise s.error
        if self._stop or s.closed:
            raise plait.errors.SessionClosedError("the session is closed")
        if not 0 <= stream < cfg.streams or len(data) > cfg.max_message:
            raise plait.errors.UsageError("bad stream or message size")
        now = clock()
        due = now + s.endpoint.latency_ns if deadline is None else deadline
        if threading.get_ident() == self._loop_ident:
            s.submit(data, stream, now, due)
            return
        with self._send_lock:
            if self._bytes_in - self._bytes_out >= cfg.send_buffer_bytes and not self._wait_for(
                lambda: self._bytes_in - self._bytes_out < cfg.send_buffer_bytes, timeout
            ):
                raise plait.errors.BackpressureError("the send queue is full")
            self._sendq.append((bytes(data), stream, due))
            self._bytes_in += len(data)
            self._appended += 1
        if self._sleeping():
            self._wake()

    def receive(self, timeout: float | None = None) -> plait.MessageReceived:
        """The next message (blocking).

        Raises:
            TimeoutError: none within `timeout` s.
            plait.errors.SessionClosedError: the session ended and every message was read.
        """
        messages = self._session.messages
        if not self._wait_for(lambda: bool(messages) or self._finished(), timeout):
            raise TimeoutError("no message")
        if messages:
            return messages.popleft()
        raise plait.errors.SessionClosedError("the session is closed")

    def __iter__(self) -> Iterator[plait.MessageReceived]:
        while True:
            try:
                yield self.receive()
            except plait.errors.SessionClosedError:
                return

    def wait_established(self, timeout: float | None = None) -> bool:
        return self._wait_for(lambda: self._session.established or self._finished(), timeout)

    def poll_events(self) -> list[plait.Event]:
        """Events (not messages) since the last call, unless `on_event` takes them."""
        return self._session.poll_events()

    def close_link(self, link: int) -> None:
        """Close one link's socket (what a dead modem looks like); thread-safe."""
        self._command(lambda: self._close_link(link))

    def stats(self) -> SessionStats:
        """A snapshot, taken on the loop thread while it runs (thread-safe)."""
        if self._done or threading.get_ident() == self._loop_ident or self._thread is None:
            return self._session.stats()
        taken: list[SessionStats] = []
        self._command(lambda: taken.append(self._session.stats()))
        if not self._wait_for(lambda: bool(taken), 5.0):
            return self._session.stats()  # the loop has stopped meanwhile
        return taken[0]

    def close(self, timeout: float = 2.0) -> None:
        """Send CLOSE on every link, stop the loop, close the sockets. Idempotent;
        re-raises an exception that stopped the loop."""
        self._stop = True
        self._wake()
        if self._thread is not None and threading.get_ident() != self._loop_ident:
            self._thread.join(timeout)
        elif self._thread is None and self._loop_ident is None:
            self._teardown()
        error = self._session.error
        if error is not None and not isinstance(error, KeyboardInterrupt):
            raise error

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        s, idle_gc = self._session, self._gc_mode == "idle"
        while not self._stop:
            if idle_gc:
                _gc.collect_if_due(idle=False)
            if s.events():
                self._notify()
            if self._sendq or self._cmds:  # new, or held back by backpressure
                self._commands(clock())
            now = clock()
            out = s.service(now)
            if out:
                self._transmit(out)
                self._last_active = now
            if s.events():
                self._notify()
            due, _ = s.deadline()
            self._wait(due)

    def _pending(self) -> bool:
        """Work from other threads: stop, commands, queued sends."""
        return self._stop or bool(self._cmds) or self._appended != self._seen

    def _commands(self, now: int) -> None:
        while self._cmds:
            self._cmds.popleft()()
        self._seen = self._appended
        s, q = self._session, self._sendq
        while q:
            data, stream, due = q[0]
            try:
                if due <= now:
                    raise plait.errors.UsageError("expired while queued")
                s.submit(data, stream, now, due)
            except plait.errors.BackpressureError:
                break  # retried on the next pass, in order
            except plait.errors.UsageError:  # expired here, or the session has closed
                s.expired_unsent(stream)
            q.popleft()
            self._bytes_out += len(data)
            self._last_active = now
        self._notify()

    def _command(self, fn: Callable[[], None]) -> None:
        self._cmds.append(fn)
        if self._sleeping():
            self._wake()

    # --- threads ---------------------------------------------------------------------------------

    def _wait_for(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until `ready()` or the session ends; returns `ready()`."""
        with self._cond:
            self._waiters += 1
            try:
                self._cond.wait_for(lambda: ready() or self._finished(), timeout)
                return ready()
            finally:
                self._waiters -= 1

    def _finished(self) -> bool:
        s = self._session
        if s.error is not None:
            raise s.error
        return self._done or (s.closed and not s.messages)

    def _notify(self) -> None:
        if self._waiters:
            with self._cond:
                self._cond.notify_all()

    def _setup_thread(self) -> None:
        setup_thread(self._cpu, self._timer_slack_ns, self._session.notes)
        if self._gc_mode != "off":
            _gc.acquire(disable=self._gc_mode == "idle")
            self._gc_acquired = True

    def _teardown(self) -> None:
        if self._done:
            return
        s = self._session
        try:
            if not s.closed:
                self._transmit(s.close(clock()))
            s.events()
        finally:
            self._done = self._stop = True
            self._close_io()
            if self._gc_acquired:
                self._gc_acquired = False
                _gc.release()
            with self._cond:
                self._cond.notify_all()


class PolledOptions(TypedDict, total=False):
    """The keywords every `PolledSession` takes (`raw.RawOptions` and
    `uring.UringOptions` add their own)."""

    on_message: MessageCallback | None
    on_event: EventCallback | None
    cpu: int | None
    busy_poll_ns: int
    spin_ns: int
    timer_slack_ns: int | None
    gc_mode: GcMode


class PolledSession(ThreadedSession):
    """A `ThreadedSession` that waits in a `Poller`; subclasses set `_poller`, with
    the fds whose readiness means input, and feed what `_poll` reports."""

    _poller: Poller

    def _poll(self, due: int | None) -> Ready:
        """Wait for input, a command or the deadline (`Poller.wait`: busy-poll after
        activity, sleep then spin before the deadline); the ready fds, the wake-up
        eventfd already reset. With ``gc_mode="idle"`` the GC collects before a sleep."""
        idle = _gc.collect_if_due if self._gc_mode == "idle" else _never
        ready = self._poller.wait(due, self._last_active, self._pending, idle)
        efd = self._poller.efd
        for fd, _ in ready:
            if fd == efd:
                self._poller.woken()
        return ready

    def _sleeping(self) -> bool:
        return self._poller.sleeping

    def _wake(self) -> None:
        self._poller.wake()


def _never() -> bool:
    return False
