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
from typing import Final, Literal, Self, TypedDict, TypeVar, cast

import plait
from plait._types import IntArg
from plait_adapters import _gc
from plait_adapters._links import clock
from plait_adapters._poller import Poller, Ready, setup_thread
from plait_adapters._session import (
    EventCallback,
    MessageCallback,
    Send,
    Session,
    SessionStats,
    check_send,
)

__all__ = ["GcMode", "PolledOptions", "PolledSession", "ThreadedSession"]

GcMode = Literal["idle", "freeze", "off"]
T = TypeVar("T")
_JOIN_S: Final = 10.0
"""How long `close` waits for the loop thread to end once told to stop."""


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
        self._sendq: deque[tuple[bytes, int, int, str | None, int]] = deque()
        self._cmds: deque[Callable[[], None]] = deque()
        self._appended = self._seen = 0  # sends queued by other threads / taken by the loop
        self._bytes_in = self._bytes_out = 0
        self._send_lock = threading.Lock()
        self._cond = threading.Condition()
        self._waiters = 0
        self._stop = self._done = self._closing = False
        self._last_active = 0
        """When the loop last received or sent (busy-poll after activity)."""
        self._loop_ident: int | None = None
        self._loop_thread: threading.Thread | None = None

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
        self._loop_thread = threading.Thread(
            target=self._run, args=(False,), name="plait-" + self._session.runtime, daemon=True
        )
        self._loop_thread.start()
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
        data: bytes | bytearray | memoryview,
        stream: IntArg = 0,
        *,
        deadline: IntArg | None = None,
        duplicate: str | None = None,
        timeout: float | None = None,
    ) -> int:
        """Queue a message; thread-safe; returns its handle (`plait.MessageExpired.handle`,
        `MessageUnconfirmed.handle`). From another thread it is handed to the loop
        (blocking up to `timeout` s while `send_buffer_bytes` are already queued there);
        from a callback it goes straight into the endpoint.

        Args:
            deadline: absolute, in ns of `time.monotonic_ns()`; None: now + latency.
            duplicate: None, "best2" or "all" (`plait.Endpoint.send`).
            timeout: seconds to wait for room (None: as long as it takes).
        Raises:
            plait.errors.UsageError: a bad argument (data bytes-like, times int ns).
            plait.errors.SessionClosedError: the session is closing or ended (its
                subclasses `HandshakeFailed`, `PeerLost` say why).
            plait.errors.BackpressureError: still no room after `timeout`.
        """
        s, cfg = self._session, self._config
        if s.error is not None:
            raise s.error
        if s.closed:
            raise s.end_error()
        if self._stop or self._closing:
            raise plait.errors.SessionClosedError("the session is closing")
        data = check_send(cfg, data, stream, deadline, duplicate)
        # checked ints now (the annotations are `IntArg`, so that a compiled build raises
        # check_send's UsageError, not mypyc's TypeError, for a float or a str)
        return self._send(data, cast(int, stream), cast("int | None", deadline), duplicate, timeout)

    def _send(
        self,
        data: bytes,
        stream: int,
        deadline: int | None,
        duplicate: str | None,
        timeout: float | None,
    ) -> int:
        s, cfg = self._session, self._config
        now = clock()
        due = now + s.endpoint.latency_ns if deadline is None else deadline
        if due <= now:  # as in every adapter: -1, and MessageExpired (on the loop)
            self._command(lambda: s.expired_unsent(stream))
            return -1
        if threading.get_ident() == self._loop_ident:
            if not self._sendq:
                handle = s.submit(data, stream, now, due, duplicate)
                return s.number() if handle > 0 else handle
            with self._send_lock:
                handle = s.number()
                self._sendq.append((data, stream, due, duplicate, handle))
            self._commands(now)
            return handle
        with self._send_lock:
            if self._bytes_in - self._bytes_out >= cfg.send_buffer_bytes and not self._wait_for(
                lambda: self._bytes_in - self._bytes_out < cfg.send_buffer_bytes, timeout
            ):
                raise plait.errors.BackpressureError("the send queue is full")
            handle = s.number()
            self._sendq.append((data, stream, due, duplicate, handle))
            self._bytes_in += len(data)
            self._appended += 1
        if self._sleeping():
            self._wake()
        return handle

    def receive(self, timeout: float | None = None) -> plait.MessageReceived:
        """The next message (blocking up to `timeout` s; None: until one comes).

        Raises:
            TimeoutError: none within `timeout` s.
            plait.errors.SessionClosedError: the session ended and every message was read
                (`HandshakeFailed`, `PeerLost`: it ended by a timeout).
        """
        messages = self._session.messages
        if not self._wait_for(lambda: bool(messages) or self._finished(), timeout):
            raise TimeoutError("no message")
        if messages:
            return messages.popleft()
        raise self._session.end_error()

    def __iter__(self) -> Iterator[plait.MessageReceived]:
        """The messages until the session ends (then the iteration stops; `ended`)."""
        while True:
            try:
                yield self.receive()
            except plait.errors.SessionClosedError:
                return

    def wait_established(self, timeout: float | None = None) -> bool:
        """Wait for the HELLO exchange: True once established, False after `timeout` s.

        Raises:
            plait.errors.HandshakeFailed: the handshake timed out (no peer, another psk,
                both initiators: `reason`); or SessionClosedError if closed meanwhile.
        """
        s = self._session
        if self._wait_for(lambda: s.established, timeout):
            return True
        if s.closed:
            raise s.end_error()
        return False

    @property
    def ended(self) -> plait.SessionClosed | None:
        """How the session ended (`plait.SessionClosed`: `reason`, `by_peer`), or None."""
        return self._session.ended

    def poll_events(self) -> list[plait.Event]:
        """Events (not messages) since the last call, unless `on_event` takes them."""
        return self._session.poll_events()

    def close_link(self, link: int) -> None:
        """Close one link's socket (what a dead modem looks like); thread-safe."""
        self._command(lambda: self._close_link(link))

    def stats(self) -> SessionStats:
        """A snapshot, taken on the loop thread while it runs (thread-safe)."""
        return self._call(self._session.stats, fallback=True)

    # --- live changes (`plait.live`), run on the loop thread -------------------------------

    def set_link_rate(self, link: IntArg, rate_bps: IntArg | None) -> None:
        """`plait.Endpoint.set_link_rate`: a link's ceiling in int bit/s (None: none)."""
        self._call(lambda: self._session.endpoint.set_link_rate(link, rate_bps))

    def set_latency(self, latency_ns: IntArg) -> None:
        """`plait.Endpoint.set_latency`: the default budget, int ns (>= 1 ms)."""
        self._call(lambda: self._session.endpoint.set_latency(latency_ns))

    def set_fec(self, fec: plait.FecConfig | None) -> None:
        """`plait.Endpoint.set_fec`: FEC for blocks started from now on (None: off)."""
        self._call(lambda: self._session.endpoint.set_fec(fec, now=clock()))

    def set_scheduling(self, scheduling: plait.Scheduling) -> None:
        """`plait.Endpoint.set_scheduling`."""
        self._call(lambda: self._session.endpoint.set_scheduling(scheduling))

    def close(self, timeout: float | None = None, *, abort: bool = False) -> None:
        """End the session and stop: by default it lingers until every message sent is
        acknowledged or reported (bounded by their deadlines; `timeout` s bounds it
        more, then it aborts), then CLOSE goes out; with `abort`, at once. Stops the
        loop and closes the sockets. Idempotent; re-raises an exception that stopped
        the loop. From a callback it starts the close and returns; the loop ends when
        the session has."""
        self._closing = True
        on_loop = threading.get_ident() == self._loop_ident
        if on_loop or (self._loop_thread is not None and not self._done):
            self._command(lambda: self._begin_close(abort))
        if self._loop_thread is not None and not on_loop:
            if not self._wait_for(lambda: self._session.closed, timeout):
                self._command(lambda: self._begin_close(True))
            self._stop = True
            self._wake()
            self._loop_thread.join(_JOIN_S)
        elif self._loop_thread is None and self._loop_ident is None:
            self._teardown()
        error = self._session.error
        if error is not None and not isinstance(error, KeyboardInterrupt):
            raise error

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Lingers (`close`), unless leaving on an exception: then aborts."""
        self.close(abort=t is not None)

    # --- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        s, idle_gc = self._session, self._gc_mode == "idle"
        while not self._stop and not (self._closing and s.closed):
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
        """Queued sends into the endpoint (in order, as far as there is room), then the
        commands: a close sees every message sent before it."""
        self._seen = self._appended
        s, q = self._session, self._sendq
        while q:
            data, stream, due, duplicate, handle = q[0]
            try:
                if due <= now:
                    raise plait.errors.UsageError("expired while queued")
                s.submit(data, stream, now, due, duplicate)
            except plait.errors.BackpressureError:
                break  # retried on the next pass, in order
            except plait.errors.UsageError:  # expired here, or the session has closed
                s.skip_handle(handle)
                s.expired_unsent(stream, handle)
            q.popleft()
            self._bytes_out += len(data)
            self._last_active = now
        while self._cmds:
            self._cmds.popleft()()
        self._notify()

    def _command(self, fn: Callable[[], None]) -> None:
        self._cmds.append(fn)
        if self._sleeping():
            self._wake()

    def _call(self, fn: Callable[[], T], fallback: bool = False) -> T:
        """`fn()` on the loop thread (here if this is it, or no loop runs); its result,
        or what it raised. With `fallback`, if the loop has stopped meanwhile, here."""
        if self._done or threading.get_ident() == self._loop_ident or self._loop_thread is None:
            return fn()
        done: list[tuple[T | None, BaseException | None]] = []

        def run() -> None:
            try:
                done.append((fn(), None))
            except Exception as exc:  # raised in the caller's thread
                done.append((None, exc))

        self._command(run)
        if not self._wait_for(lambda: bool(done), _JOIN_S):
            if fallback:
                return fn()
            raise plait.errors.SessionClosedError("the session's loop has stopped")
        result, error = done[0]
        if error is not None:
            raise error
        return cast(T, result)

    def _begin_close(self, abort: bool) -> None:
        """On the loop: close the endpoint (linger, or abort) and send what it says."""
        s = self._session
        if not s.endpoint.closed:
            self._transmit(s.close(clock(), abort))
        if s.events():
            self._notify()

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
            if not s.endpoint.closed:
                self._transmit(s.close(clock(), abort=True))
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
