"""`Session`: the part of every adapter that is the same under every runtime.

It wraps one `plait.Endpoint` and runs the endpoint loop's steps for a runtime that owns
the sockets, the clock and the one timer, and knows none of them::

    session.feed(link, datagram, now)        # for each datagram received
    session.transmit(session.service(now), sends)   # handle_timer if due; flush
    session.events()                         # messages and events to the application
    deadline, changed = session.deadline()   # re-arm the runtime's timer if changed

Rules: nothing here blocks, sleeps, reads a clock or touches a socket (`transmit` calls
the send functions it is handed). Messages go to `on_message` if given, else to the
`messages` queue the runtime's iterator reads; every other event goes to `on_event` if
given, else to a bounded queue read by `poll_events()`. The adapters own entropy: the
endpoint gets ``random.Random(os.urandom(32))`` unless the caller passes an rng.

A link with no remote (a responder's, `LinkSpec.remote` None) learns the peer's address.
The runtime reads its datagrams with their source address and, when `feed` returns True
(the endpoint accepted the datagram as the peer's: with a psk, authenticated and not a
replay), stores that source in the link's `Peer`, which is also the link's send
function. Before the first accepted datagram, sends on the link are dropped and counted
(``send: no peer address yet``); plait repairs them like any loss. Connected links take
none of this: `recv_into` and `send` as before.
"""

from __future__ import annotations

import bisect
import errno
import os
import random
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import attrs

import plait
from plait_adapters._links import STALE, LinkSpec, check, clock
from plait_adapters._log import LOGGED, SESSION, DropLog, log_event

__all__ = [
    "NOT_OPEN",
    "NO_PEER",
    "BufferPool",
    "EventCallback",
    "MessageCallback",
    "Peer",
    "Session",
    "SessionStats",
    "check_send",
]

MessageCallback = Callable[[plait.MessageReceived], None]
EventCallback = Callable[[plait.Event], None]
Send = Callable[[bytes], object]
SendTo = Callable[[bytes, Any], object]
RecvInto = Callable[[memoryview], int]
RecvFromInto = Callable[[memoryview], tuple[int, Any]]

NO_PEER: Final = "send: no peer address yet"
"""The `SessionStats.errors` key of sends dropped on a link still learning its peer."""
NOT_OPEN: Final = "send: link not open"
"""The `SessionStats.errors` key of sends dropped on a link whose socket is not open
(yet: the raw adapter's ``retry_links``)."""

_LATE_SAMPLES: Final = 4096
_MAX_EVENTS: Final = 4096


@attrs.frozen
class SessionStats:
    """A snapshot of one adapter session: the endpoint's own `plait.Stats` plus what
    only the adapter sees (socket errors, how late its timer fired)."""

    runtime: str
    endpoint: plait.Stats
    datagrams_in: int
    datagrams_out: int
    errors: Mapping[str, int]
    """Socket errors by direction and errno name, e.g. ``send: ECONNREFUSED``."""
    timers: int
    """`handle_timer` calls made because the deadline was due."""
    timer_late_p50_ns: int
    """How late `handle_timer` ran after the deadline asked for (recent calls)."""
    timer_late_p99_ns: int
    timer_late_max_ns: int
    notes: Mapping[str, str]
    """Runtime facts: socket options that took or not, the event loop, ..."""
    learnt: Mapping[int, str | None] = attrs.field(factory=dict)
    """For each link with no remote (it learns the peer's address): the address it
    sends to now, ``host:port``, or None before the peer was heard on it."""
    not_open: Mapping[int, str] = attrs.field(factory=dict)
    """Links whose socket is not open (the raw adapter's ``retry_links``: an interface
    down or missing, an address not there yet), each with the error of its last
    attempt; they are tried again with back-off."""


class Peer:
    """A learning link's send function: ``sendto(data, addr)``, `addr` being the source
    of the last datagram the endpoint accepted on the link; before there is one, the
    datagram is dropped and counted (`NO_PEER`)."""

    __slots__ = ("_session", "addr", "sendto")

    def __init__(self, session: Session, sendto: SendTo) -> None:
        self._session = session
        self.sendto = sendto
        """The socket's (or transport's) sendto; a runtime may set it after opening."""
        self.addr: Any = None
        """The peer's address (as `recvfrom` gives it), or None: not learnt yet."""

    def __call__(self, data: bytes) -> object:
        addr = self.addr
        if addr is None:
            self._session.count(NO_PEER)
            return None
        return self.sendto(data, addr)


class BufferPool:
    """Preallocated receive buffers: `drain` reads a socket into them with `recv_into`
    (up to one per buffer) and feeds the views, so receiving allocates no buffer per
    datagram. One pool per loop: the views are reused as soon as `drain` returns."""

    def __init__(self, size: int, count: int = 32) -> None:
        self._views = [memoryview(bytearray(size)) for _ in range(count)]
        self._sizes = [0] * count
        self._sources: list[Any] = [None] * count
        self._limit = size - 1
        self._oversize = OSError(errno.EMSGSIZE, "datagram larger than the MTU")

    def drain(self, session: Session, link: int, recv_into: RecvInto) -> int:
        """Read what `link`'s socket holds (at most one batch) and feed it; returns the
        number of datagrams fed."""
        views, sizes, limit = self._views, self._sizes, self._limit
        got = 0
        for _ in range(len(views)):
            try:
                n = recv_into(views[got])
            except BlockingIOError:
                break
            except OSError as exc:  # ECONNREFUSED after an ICMP error, and the like
                session.count_error("recv", exc)
                continue
            if n > limit:
                session.count_error("recv", self._oversize)
                continue
            sizes[got] = n
            got += 1
        if got:
            now = clock()
            for i in range(got):
                session.feed(link, views[i][: sizes[i]], now)
        return got

    def drain_from(
        self, session: Session, link: int, recvfrom_into: RecvFromInto, peer: Peer
    ) -> int:
        """`drain` for a learning link: reads each datagram with its source address, and
        points `peer` at the source of each one the endpoint accepts."""
        views, sizes, sources, limit = self._views, self._sizes, self._sources, self._limit
        got = 0
        for _ in range(len(views)):
            try:
                n, source = recvfrom_into(views[got])
            except BlockingIOError:
                break
            except OSError as exc:
                session.count_error("recv", exc)
                continue
            if n > limit:
                session.count_error("recv", self._oversize)
                continue
            sizes[got] = n
            sources[got] = source
            got += 1
        if got:
            now = clock()
            for i in range(got):
                if session.feed(link, views[i][: sizes[i]], now):
                    peer.addr = sources[i]
        return got


def _closed_send(data: bytes) -> object:
    raise OSError(errno.EBADF, "link closed")


def _closed_sendto(data: bytes, addr: object) -> object:
    raise OSError(errno.EBADF, "link not open")


class Session:
    """One plait endpoint driven by an adapter. See the module docstring for the loop."""

    def __init__(
        self,
        config: plait.Config,
        links: Sequence[LinkSpec],
        *,
        initiator: bool,
        runtime: str,
        on_message: MessageCallback | None = None,
        on_event: EventCallback | None = None,
        rng: random.Random | None = None,
    ) -> None:
        check(config, links, initiator=initiator)
        self.links = tuple(links)
        self.runtime = runtime
        now = clock()
        self.endpoint = plait.Endpoint(
            config,
            initiator=initiator,
            now=now,
            rng=rng if rng is not None else random.Random(os.urandom(32)),
        )
        self.drop_log = DropLog(now)
        """Drops, expiries and socket errors to `logging`, every 10 s at most."""
        self._sid = 0
        SESSION.info(
            "session opening: %s, %d links (%s)",
            "initiator" if initiator else "responder",
            len(self.links),
            runtime,
        )
        self.on_message = on_message
        self.on_event = on_event
        self.streams = config.streams
        self.messages: deque[plait.MessageReceived] = deque()
        self._events: deque[plait.Event] = deque(maxlen=_MAX_EVENTS)
        self.established = False
        self.closed = False
        """True once the session ended (closed here or by the peer, or timed out)."""
        self.ended: plait.SessionClosed | None = None
        """How it ended (the endpoint's `SessionClosed`), once it has."""
        self._shifts: list[tuple[int, int]] = []
        """(first endpoint handle, offset) from each send the adapter numbered but the
        endpoint never took (`skip_handle`): adapter handle = endpoint handle + offset."""
        self._numbered = 0  # adapter handles given out by `number`
        self.error: BaseException | None = None
        """An exception that stopped the runtime (e.g. raised by a callback)."""
        self.datagrams_in = 0
        self.datagrams_out = 0
        self._errors: dict[str, int] = {}
        self.notes: dict[str, str] = {}
        self._deadline: int | None = None
        self._timers = 0
        self._late = array("q", bytes(8 * _LATE_SAMPLES))
        self.peers: list[Peer | None] = [None] * len(self.links)
        """Each learning link's `Peer` (made by `sender` or `learner`); None for a
        connected link."""
        self.not_open: dict[int, str] = {}
        """Links whose socket is not open, and why (kept by the runtime)."""
        self.stale: set[int] = set()
        """Links whose send failed with a `STALE` error since the runtime last looked:
        their socket cannot work any more (the runtime may open a new one)."""

    # --- the loop's steps ----------------------------------------------------------------

    def feed(self, link: int, data: bytes | memoryview, now: int) -> bool:
        """One datagram received on `link`; True if the endpoint accepted it as the
        peer's (then a learning link sends to its source). `data` may be a view of a
        reused buffer: the endpoint copies what it keeps and holds no reference after
        the call."""
        self.datagrams_in += 1
        return self.endpoint.receive_datagram(data, link=link, now=now)

    def service(self, now: int) -> list[tuple[bytes, int]]:
        """Run `handle_timer` if the armed deadline is due, then return what to send."""
        due = self._deadline
        ep = self.endpoint
        if now >= self.drop_log.due_ns:
            self.drop_log.report(now, ep.stats, self._errors)
        if due is not None and due <= now:
            ep.handle_timer(now=now)
            self._late[self._timers % _LATE_SAMPLES] = now - due
            self._timers += 1
            self._deadline = None
        return ep.datagrams_to_send(now=now)

    def transmit(self, out: list[tuple[bytes, int]], sends: Sequence[Send]) -> None:
        """Send each (datagram, link) with ``sends[link]``; errors are counted, never
        raised (UDP may drop; plait repairs)."""
        for datagram, link in out:
            try:
                sends[link](datagram)
            except OSError as exc:  # ENETUNREACH and the like: the link is unusable now
                self.count_error("send", exc)
                if exc.errno in STALE:
                    self.stale.add(link)
        self.datagrams_out += len(out)

    def events(self) -> bool:
        """Hand every pending event to the application; True if any was queued (so
        the runtime wakes its readers)."""
        ep = self.endpoint
        queued = False
        while (event := ep.next_event()) is not None:
            if type(event) is plait.MessageReceived:
                if self.on_message is None:
                    self.messages.append(event)
                    queued = True
                else:
                    self.on_message(event)
                continue
            if type(event) is plait.SessionEstablished:
                self.established = True
                self._sid = event.session
            elif type(event) is plait.SessionClosed:
                self.closed = True
                self.ended = event
            elif self._shifts:
                event = self._renumbered(event)
            if type(event) in LOGGED:
                log_event(event, self._sid, self.runtime)
            if self.on_event is None:
                self._events.append(event)
            else:
                self.on_event(event)
            queued = True
        return queued

    def deadline(self) -> tuple[int | None, bool]:
        """The endpoint's next deadline, and whether it differs from the armed one (then
        the runtime re-arms its timer; this call arms it here)."""
        due = self.endpoint.next_deadline()
        changed = due != self._deadline
        self._deadline = due
        return due, changed

    def sender(self, link: int, send: Send, sendto: SendTo) -> Send:
        """`link`'s send function: `send` (a connected socket's), or for a link with no
        remote a `Peer` around `sendto`, also kept in `peers`."""
        if self.links[link].remote is not None:
            return send
        peer = self.peers[link] = Peer(self, sendto)
        return peer

    def learner(self, link: int) -> Peer | None:
        """`link`'s `Peer` if it has no remote (made now, and kept in `peers`; its
        `sendto` to be set by the runtime), else None."""
        if self.links[link].remote is not None:
            return None
        peer = self.peers[link] = Peer(self, _closed_sendto)
        return peer

    # --- what every runtime's API shares ----------------------------------------------------

    def submit(
        self,
        data: bytes,
        stream: int,
        now: int,
        deadline: int | None = None,
        duplicate: str | None = None,
    ) -> int:
        """`Endpoint.send`; raises what it raises (UsageError, BackpressureError), but a
        deadline already past is reported as `MessageExpired` (returns -1): the adapter
        read the clock, so the caller could not have known."""
        if (
            type(deadline) is int
            and deadline <= now
            and type(stream) is int
            and 0 <= stream < self.streams
        ):
            self.expired_unsent(stream)
            return -1
        return self.endpoint.send(
            data, now=now, stream=stream, deadline=deadline, duplicate=duplicate
        )

    def expired_unsent(self, stream: int, handle: int = -1) -> None:
        """Report a message whose deadline passed while it waited in the adapter."""
        self.emit(plait.MessageExpired(stream=stream, msg=-1, sent=True, handle=handle))

    # --- handles numbered by the adapter (thread-driven: `send` returns before the loop
    # --- hands the message to the endpoint) -------------------------------------------------

    def number(self) -> int:
        """The handle of the next message `send` queues (in the order they are queued)."""
        self._numbered += 1
        return self._numbered

    def skip_handle(self, handle: int) -> None:
        """The queued message `handle` never reached the endpoint (reported here): the
        endpoint's handles now lag the adapter's by one more."""
        offset = self._shifts[-1][1] + 1 if self._shifts else 1
        self._shifts.append((handle - offset + 1, offset))

    def _renumbered(self, event: plait.Event) -> plait.Event:
        """A report with the adapter's handle for the endpoint's."""
        if isinstance(event, plait.MessageExpired | plait.MessageUnconfirmed) and event.handle > 0:
            at = bisect.bisect_right(self._shifts, (event.handle, 1 << 62)) - 1
            if at >= 0:
                return attrs.evolve(event, handle=event.handle + self._shifts[at][1])
        return event

    def end_error(self) -> plait.errors.SessionClosedError:
        """The typed exception for a session that ended (`ended`): `HandshakeFailed`,
        `PeerLost`, or `SessionClosedError` (closed here or by the peer)."""
        end = self.ended
        if end is None:
            return plait.errors.SessionClosedError("the session is closed")
        reason, code = end.reason, end.code
        if reason in _HANDSHAKE:
            what = _HANDSHAKE[reason]
            return plait.errors.HandshakeFailed(what, reason=reason, code=code)
        if reason is plait.CloseReason.IDLE_TIMEOUT:
            text = "the peer was lost: every link was down for the idle timeout"
            return plait.errors.PeerLost(text, reason=reason, code=code)
        who = "the peer" if end.by_peer else "this end"
        text = f"the session was closed by {who} (code {code}, {reason.name})"
        return plait.errors.SessionClosedError(text, reason=reason, code=code)

    def emit(self, event: plait.Event) -> None:
        """An event of the adapter's own, handed on like the endpoint's."""
        if self.on_event is None:
            self._events.append(event)
        else:
            self.on_event(event)

    def poll_events(self) -> list[plait.Event]:
        """Every event (not message) since the last call, oldest first; empty when an
        `on_event` callback takes them."""
        out, events = [], self._events
        while events:  # popleft is atomic: safe against a loop thread appending
            out.append(events.popleft())
        return out

    def count_error(self, where: str, exc: OSError) -> None:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        self.count(where + ": " + name)

    def count(self, key: str) -> None:
        """Count one error under `key` (`SessionStats.errors`)."""
        self._errors[key] = self._errors.get(key, 0) + 1

    @staticmethod
    def closed_send() -> Send:
        """The send function of a link whose socket was closed: counts EBADF."""
        return _closed_send

    def not_open_send(self, data: bytes) -> object:
        """The send function of a link whose socket is not open yet: drops and counts
        (`NOT_OPEN`); plait repairs the loss like any other."""
        self.count(NOT_OPEN)
        return None

    def close(self, now: int, abort: bool = False) -> list[tuple[bytes, int]]:
        """Close the endpoint: it lingers until what was sent is settled, then sends
        CLOSE (with `abort`, at once); returns the datagrams to send now. The session
        has ended when `closed` (after `events()`)."""
        self.endpoint.close(now=now, abort=abort)
        return self.endpoint.datagrams_to_send(now=now)

    def stats(self) -> SessionStats:
        n = min(self._timers, _LATE_SAMPLES)
        late = sorted(self._late[:n]) if n else [0]
        return SessionStats(
            runtime=self.runtime,
            endpoint=self.endpoint.stats(),
            datagrams_in=self.datagrams_in,
            datagrams_out=self.datagrams_out,
            errors=dict(self._errors),
            timers=self._timers,
            timer_late_p50_ns=late[len(late) // 2],
            timer_late_p99_ns=late[min(len(late) - 1, len(late) * 99 // 100)],
            timer_late_max_ns=late[-1],
            notes=dict(self.notes),
            learnt={
                link: None if peer.addr is None else _host_port(peer.addr)
                for link, peer in enumerate(self.peers)
                if peer is not None
            },
            not_open=dict(self.not_open),
        )


_HANDSHAKE: Final = {
    plait.CloseReason.HANDSHAKE_TIMEOUT: "no session within the handshake timeout: no peer "
    "answered (none there, not reachable, a responder too, or it holds another psk)",
    plait.CloseReason.WRONG_PSK: "no session: the peer's HELLOs fail authentication "
    "(it holds another psk)",
    plait.CloseReason.ROLE_CONFLICT: "no session: the peer is an initiator too "
    "(initiator=True on both ends)",
}


def check_send(
    config: plait.Config, data: object, stream: object, deadline: object, duplicate: object
) -> bytes:
    """`send`'s arguments checked where the caller can be told (before a thread-driven
    adapter queues them): data bytes-like, `stream` an int in range, `deadline` int ns
    or None, `duplicate` None, "best2" or "all". Returns the data as bytes.

    Raises:
        plait.errors.UsageError: naming what is wrong, and its unit.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise plait.errors.UsageError(
            f"data must be bytes-like (bytes, bytearray, memoryview), got {type(data).__name__}"
        )
    if type(stream) is not int or not 0 <= stream < config.streams:
        raise plait.errors.UsageError(f"stream must be an int in 0..{config.streams - 1}")
    if deadline is not None and type(deadline) is not int:
        raise plait.errors.UsageError(
            f"deadline must be an int of ns (time.monotonic_ns()) or None, got {deadline!r}"
        )
    if duplicate not in (None, "best2", "all"):
        raise plait.errors.UsageError('duplicate must be None, "best2" or "all"')
    out = bytes(data)
    if len(out) > config.max_message:
        raise plait.errors.UsageError(f"a message is at most {config.max_message} bytes")
    return out


def _host_port(addr: Any) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
