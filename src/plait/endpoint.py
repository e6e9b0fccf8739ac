"""`Endpoint`: one sans-I/O plait session over many links.

It composes the parts and holds no algorithm of its own: `Outbox` (stream queues,
numbering, repair), `Inbox` (dedup, reassembly, ordered delivery), `LinkSet` (pacing,
health, link choice), `plait.fec` (parity out, rebuilds in), `plait.feedback` (reports
out, acks and losses in), `plait.crypto` (AEAD), and `ClockMap` (the peer's deadlines in
our clock).

Every caller follows one loop::

    ep.receive_datagram(data, link=i, now=now)   # or ep.handle_timer(now=now), ep.send(...)
    for datagram, link in ep.datagrams_to_send(now=now):
        transmit(link, datagram)
    while (event := ep.next_event()) is not None:
        dispatch(event)
    rearm_timer(ep.next_deadline())

Network input never raises: a datagram that is malformed, unauthenticated, replayed or
from another session is dropped and counted in `stats().drops` by reason. API misuse
raises a `plait.errors.UsageError` before anything changes.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from typing import Final

from plait import checks
from plait._types import IntArg
from plait.clock import CallerTime, ClockMap
from plait.config import Config, check_budget
from plait.errors import AuthenticationFailed, MalformedPacket, SessionClosedError, UsageError
from plait.events import (
    CloseReason,
    Event,
    FecRecovered,
    LinkDegraded,
    LinkDown,
    LinkUp,
    SessionEstablished,
    UsableRateChanged,
)
from plait.fecpolicy import FecSender, new_decoder, new_encoder
from plait.feedback import FeedbackTimer, handle_feedback, loss_timeout, write_feedback
from plait.handshake import Handshake, HelloOutcome
from plait.inbox import Inbox
from plait.lifecycle import Lifecycle, SessionState
from plait.links import LinkState
from plait.linkset import LinkSet
from plait.outbox import Item, Outbox
from plait.pmtu import PathMtu
from plait.sendstate import PARITY
from plait.seq import SEQ32
from plait.stats import Stats, snapshot
from plait.timers import Control, Timers
from plait.wire import (
    HEADER_SIZE,
    Buffer,
    Close,
    Feedback,
    PacketType,
    Probe,
    decode_body,
    encode_body,
    parse_data,
    parse_header,
    parse_parity,
)

__all__ = ["Endpoint"]

_DATA_OVERHEAD: Final = 14  # DATA fixed fields + fragment fields
_MAX_EVENTS: Final = 65_536
_NEVER: Final = 1 << 62
_STARTUP_NS: Final = 500_000_000
_COPIES: Final = {None: 0, "best2": 1, "all": 15}
_MAX_DEFERRED: Final = 8  # repairs per call that may wait for a busy link while data goes on
Meta = tuple[int, int, int, int | None, int]  # link seq (unwrapped), size, ts, echo ts, delay


class Endpoint(Timers):
    """One end of a plait session. Time: int ns of the caller's monotonic clock, from 0, never
    back (`plait.clock.CallerTime`). Its timers (`next_deadline`, `handle_timer`) come from
    `plait.timers.Timers`, live changes from `plait.live.LiveChanges`."""

    def __init__(
        self, config: Config, *, initiator: bool, now: IntArg, rng: random.Random | None = None
    ) -> None:
        """
        Args:
            config: the session's configuration (equal on both ends).
            initiator: True on the end that starts the session.
            now: the caller's clock (an int >= 0, else UsageError).
            rng: entropy for the session id and nonces. Default: seeded from `now`, which
                is reproducible; with a psk, pass ``random.Random(os.urandom(32))`` so two
                sessions never share keys (adapters do).
        """
        if not isinstance(config, Config):
            raise UsageError("config must be a plait.Config")
        now = checks.ns("now", now)
        self._time = CallerTime(now)  # an int >= 0, or UsageError
        self.config = config
        self.initiator = initiator
        self._rng = rng if rng is not None else random.Random(f"plait:{now}:{initiator}")
        self._events: deque[Event] = deque()
        self._events_dropped = 0
        self._drops: dict[str, int] = {}
        self.links = LinkSet(config, now)
        self._timeouts = [loss_timeout(config, None)] * len(config.links)  # per link id
        self._timeouts_moved = 0  # bumped when one of _timeouts changes
        # _links_due's cache: the counters it was computed at, and its value
        self._due_timers = self._due_logs = self._due_timeouts = -1
        self._due_links = _NEVER
        self._states = [ln.health.state for ln in self.links.links]  # as last reported
        self._states_epoch = self.links.epoch.value  # the links' state changes then
        self._clock = ClockMap()
        self.latency_ns = config.latency_ns
        self._pmtu = PathMtu(config, self.links, now)  # each link's path MTU (RFC 8899)
        # a full datagram's payload, and its size: what messages are cut to
        self._payload_share = self._pmtu.payload(self.links.links)
        self._usable_reported = 0  # the rate the last UsableRateChanged said
        self._first_send = -1  # when the application first sent (-1: not yet)
        encoder = new_encoder(config.fec, self.latency_ns)
        self._decoder = new_decoder(self.latency_ns) if config.fec is not None else None
        self.outbox = Outbox(
            self._emit,
            links=len(config.links),
            max_payload=self._payload_share[0],
            send_buffer_bytes=config.send_buffer_bytes,
            fec=encoder,
        )
        self.inbox = Inbox(self._emit, self._clock.to_local, streams=config.streams)
        self._usable_now = self.usable_rate_bps()  # ... and the rate now
        self._control: deque[Control] = deque()
        self._feedback = FeedbackTimer(config.feedback_interval_ns, now)
        self._fec = FecSender(self.outbox, self.links, config, now)
        self._timer_work = 0  # handle_timer calls that found a timer due (for the tests)
        self.closed = False
        """True once the session ended (`SessionClosed`); see `state`."""
        self._life = Lifecycle(config, now, self.outbox, self.inbox, self._emit, self._on_end)
        self._hello_at = now
        self._hs = Handshake(config.psk, initiator, self._rng, now)
        if initiator:
            self._queue_hellos()

    @property
    def session(self) -> int:
        """The session id (-1 on a responder before the first HELLO)."""
        return self._hs.session

    @property
    def established(self) -> bool:
        return self._hs.established

    @property
    def state(self) -> SessionState:
        """CONNECTING, ESTABLISHED, CLOSING (lingering) or CLOSED (`plait.lifecycle`)."""
        return self._life.state

    # --- the public API --------------------------------------------------------------------

    def send(
        self,
        data: Buffer,
        *,
        now: IntArg,
        stream: IntArg = 0,
        deadline: IntArg | None = None,
        duplicate: str | None = None,
    ) -> int:
        """Queue a message; returns its handle (see `MessageExpired.handle`).

        Args:
            data: up to `Config.max_message` bytes.
            stream: 0 .. `Config.streams` - 1; ordering is per stream.
            deadline: absolute ns; None means ``now + latency_ns``.
            duplicate: None, "best2" (also on the next best link) or "all" (every link):
                for small critical messages.
        Raises:
            UsageError: a bad argument (times are int ns, data bytes-like), or the
                session is closed or closing. Nothing changes.
            BackpressureError: the send buffer is full. Nothing changes.
        """
        if self._life.state >= SessionState.CLOSING:
            raise SessionClosedError("the session is closed")
        if type(stream) is not int or not 0 <= stream < self.config.streams:
            raise UsageError(f"stream must be an int in 0..{self.config.streams - 1}")
        if type(data) is not bytes or len(data) > self.config.max_message:
            data = checks.data(data, self.config.max_message)  # bytes, or UsageError
        if type(now) is not int or (deadline is not None and type(deadline) is not int):
            now = checks.ns("now", now)
            deadline = checks.optional_ns("deadline", deadline)
        if duplicate not in _COPIES:
            raise UsageError('duplicate must be None, "best2" or "all"')
        now = max(now, self._time.now)  # the clock moves only once nothing can be refused
        due = now + self.latency_ns if deadline is None else deadline
        check_budget(due - now, "the deadline, from now,")
        handle = self.outbox.send(data, stream, due, _COPIES[duplicate], self._time.at(now))
        # overload: nothing waits more than half its budget; but not in the first 500 ms
        # of traffic while links are still finding their rates (startup doubles them
        # every round trip: the wait is brief, and what waits still fits the fast links)
        if self._first_send < 0:
            self._first_send = now
        starting = now - self._first_send < _STARTUP_NS and self.links.starting()
        if self.links.carrying() and not starting:
            self.outbox.shed(now)
        return handle

    def datagrams_to_send(self, *, now: IntArg) -> list[tuple[bytes, int]]:
        """Every datagram due by `now`, as (datagram, link id), pacing respected."""
        if type(now) is not int:  # inline: this runs per datagram (a call costs ~50 ns)
            now = checks.ns("now", now)
        now, out = self._time.at(now), []
        while self._control:
            link, ptype, body, force_echo = self._control.popleft()
            out.append((self._transmit(link, ptype, body, now, force_echo), link))
        if not self._can_seal():
            return out
        if now >= self._pmtu.due:
            self._send_size_probes(now, out)
        links, outbox = self.links, self.outbox
        if not outbox.pending() or not links.carrying():
            return out  # no link carries data now: what is queued waits, to its deadline
        can_arrive, fec = links.can_arrive, self._fec
        fec.tune_if_pulled(now, self.latency_ns)
        links.begin_pass()
        deferred: list[Item] = []  # repairs waiting for a busy link: new data goes on
        while True:
            item = outbox.take(now, can_arrive)
            if item is None:
                break
            base = fec.block_base(item)
            spread = fec.spread(base)
            chosen = links.choose(
                item.size + HEADER_SIZE,
                item.deadline,
                now,
                spread=spread,
                cap=fec.cap() if spread is not None else 0,
                earliest=item.kind != 0,
                avoid=item.avoid,
            )
            if chosen is not None:
                if (
                    item.kind == 0
                    and not item.copies
                    and self.config.auto_duplicate
                    and fec.wants_copy(item, chosen, now, self._usable_now)
                ):
                    item.copies = 1  # nothing else saves it in time: send two now
                self._send_item(item, chosen, now, out, base)
            elif links.wake_at is None:
                self.outbox.abandon(item)  # it cannot arrive in time on any link
            elif item.kind != 0 and len(deferred) < _MAX_DEFERRED:
                deferred.append(item)
            else:
                outbox.hold(item)
                break
        outbox.defer(deferred)
        return out

    def receive_datagram(self, data: Buffer, *, link: IntArg, now: IntArg) -> bool:
        """Feed one datagram that arrived on `link`. Never raises on its contents.
        Returns True when it was accepted as the peer's (with a psk: authenticated and
        fresh) and the newest on its link, False if dropped (counted in `Stats.drops`) or
        late: an adapter may follow the peer's address on a link by it (NAT rebinding).

        `data` may be a view of a buffer the caller reuses: plait copies what it keeps
        and holds no reference to `data` after the call."""
        if type(link) is not int or not 0 <= link < len(self.links):
            raise UsageError(f"no link {link!r}: a link id is an int in 0..{len(self.links) - 1}")
        if type(now) is not int:  # inline, as in datagrams_to_send
            now = checks.ns("now", now)
        ln, now = self.links.links[link], self._time.at(now)
        before, highest = ln.datagrams_in, ln.health.inbound.highest
        try:
            self._receive(data, link, now)
        except MalformedPacket as exc:
            self._drop("malformed: " + str(exc))
        except AuthenticationFailed:
            self._drop("authentication")
        if self.links.epoch.value != self._states_epoch:  # a link changed state
            self._sync_states(now)
        return ln.datagrams_in != before and ln.health.inbound.highest != highest

    def next_event(self) -> Event | None:
        """The oldest undelivered event, or None."""
        return self._events.popleft() if self._events else None

    def close(self, *, now: IntArg, code: IntArg = 0, abort: bool = False) -> None:
        """End the session. By default it lingers (`state` CLOSING): `send` refuses, and
        what was handed over keeps going until each message is acknowledged or reaches
        its deadline (then `MessageExpired`/`MessageUnconfirmed`); then CLOSE (with
        `code`, 0..65535) goes out and `SessionClosed` follows. With `abort`, at once:
        every message not yet acknowledged is reported. Idempotent (abort may follow)."""
        now = checks.ns("now", now)
        self._life.close(code, abort, self._time.at(now))

    # --- sending internals ------------------------------------------------------------------

    def _can_seal(self) -> bool:
        """True when more than HELLO may go out: a session, and with a psk, its keys."""
        return self._hs.can_seal and not self.closed

    def _send_item(
        self, item: Item, link: int, now: int, out: list[tuple[bytes, int]], base: int | None
    ) -> None:
        body = self.outbox.commit(item, now)
        ptype = PacketType.DATA if item.kind != PARITY else PacketType.PARITY
        datagram = self._transmit(link, ptype, body, now, False)
        self.outbox.on_transmitted(item, link, self.links.links[link].health.sent - 1, now)
        out.append((datagram, link))
        self._fec.on_sent(base, link, now)
        if item.copies:
            size = len(body) + HEADER_SIZE
            others = [ln for ln in self.links.carrying() if ln.id != link and size <= ln.room]
            others.sort(key=lambda ln: (ln.arrival(len(body), now), ln.id))
            out.extend(
                (self._transmit(ln.id, ptype, body, now, False), ln.id)
                for ln in others[: item.copies]
            )

    def _transmit(
        self,
        link: int,
        ptype: PacketType,
        body: bytes,
        now: int,
        force_echo: bool | tuple[int, int],
    ) -> bytes:
        session = self._hs.session
        header, seq = self.links.stamp(
            link, ptype, session if session > 0 else 0, now, force_echo=force_echo
        )
        sealer = self._hs.sealer
        if ptype is PacketType.HELLO:
            datagram = self._hs.seal_hello(header, body, link, seq)
        elif sealer is not None:
            datagram = sealer.seal(header, body, link, seq)
        else:  # no psk (with a psk, nothing but HELLO is queued before the keys exist)
            datagram = header + body
        self.links.sent(link, len(datagram), now)
        return datagram

    def _send_size_probes(self, now: int, out: list[tuple[bytes, int]]) -> None:
        """The padded PROBEs the path MTU searches want now (`plait.pmtu`)."""
        pmtu = self._pmtu
        for link, padding in pmtu.wanted(now, self.links):
            body = encode_body(Probe(padding=padding))
            out.append((self._transmit(link, PacketType.PROBE, body, now, True), link))
            pmtu.sent(link, now, self.links)

    def _fit_payload(self, now: int) -> None:
        """Messages are cut to fit the smallest path MTU among the links that carry data,
        so any fragment may take any link; with none carrying, the size stays."""
        carrying = self.links.carrying()
        if carrying:
            self._payload_share = self._pmtu.payload(carrying)
            if self.outbox.max_payload != self._payload_share[0]:
                self.outbox.max_payload = self._payload_share[0]
                self._fec.resized(now)

    def _queue_hellos(self) -> None:
        body = self._hs.hello_body()
        for ln in self.links.links:
            self._control.append((ln.id, PacketType.HELLO, body, not self.initiator))

    def _on_end(self, code: int, by_peer: bool) -> None:
        """The session ends: CLOSE to the peer (unless it closed), nothing more after."""
        if not by_peer and self._can_seal():
            body = encode_body(Close(code=code))
            self._control.extend((ln.id, PacketType.CLOSE, body, False) for ln in self.links.links)
        self.closed = True
        if self._decoder is not None:  # no block can complete now: let go of them
            self._decoder.expire(_NEVER, _NEVER)

    def _queue_feedback(self, now: int) -> None:
        body = write_feedback(self.inbox, self.links)
        link = self.links.best_link(now)
        self._control.append((link, PacketType.FEEDBACK, body, False))
        self._feedback.sent(now)

    # --- receiving internals -----------------------------------------------------------------

    def _drop(self, reason: str) -> None:
        self._drops[reason] = self._drops.get(reason, 0) + 1

    def _emit(self, event: Event) -> None:
        if len(self._events) >= _MAX_EVENTS:
            self._events.popleft()
            self._events_dropped += 1
        self._events.append(event)

    def _receive(self, data: Buffer, link: int, now: int) -> None:
        if self.closed:
            self._drop("closed")
            return
        ptype, session, link_seq, ts, echo_ts, echo_delay, offset = parse_header(data)
        if ptype is not PacketType.HELLO and session != self._hs.session:
            self._drop("other session" if self._hs.session >= 0 else "no session yet")
            return
        seq = self.links.check_seq(link, link_seq)
        if seq is None:
            self._drop("replay")
            return
        meta = (seq, len(data), ts, echo_ts, echo_delay)
        if ptype is PacketType.HELLO:
            self._receive_hello(data, offset, link, now, session, meta)
            return
        opener = self._hs.opener
        if self.config.psk:
            if opener is None:
                self._drop("no keys yet")
                return
            body: Buffer = opener.open(data, offset, link, seq)
            offset = 0
        else:
            body = data
        _HANDLERS[ptype](self, body, offset, link, now, meta)
        self._hs.locked = True

    def _accept(self, link: int, now: int, meta: Meta) -> None:
        """The datagram checked out: record its link sequence, timestamp and echo."""
        seq, size, ts, echo_ts, echo_delay = meta
        self.links.received(link, seq, size, ts, echo_ts, echo_delay, now)
        ln = self.links.links[link]
        excess = None if echo_ts is None else ln.health.rtt.latest - ln.health.rtt.min_rtt
        self._clock.on_timestamp(ts, now, ln.min_tx_ns(size), excess)
        if echo_ts is not None:  # a new RTT sample: what depends on RTTs moves
            self._clock.min_rtt_ns = self.links.min_rtt()
            self._clock.margin_ns = self.links.clock_margin(self.latency_ns)
            self.links.set_margin(self._clock.margin_ns)
            timeout = loss_timeout(self.config, ln.health.rtt)
            if timeout != self._timeouts[link]:
                self._timeouts[link] = timeout
                self._timeouts_moved += 1

    def _receive_hello(
        self, data: Buffer, offset: int, link: int, now: int, session: int, meta: Meta
    ) -> None:
        hello = self._life.open_hello(self._hs, data, offset, link, meta[0])
        outcome = self._hs.on_hello(hello, session, now, link)
        if outcome is HelloOutcome.REJECT:
            self._drop("unexpected HELLO")
            return
        if outcome is HelloOutcome.REPLACED:
            self.links.reset_inbound()
        if outcome is HelloOutcome.ANSWER_AGAIN:
            self._control.append((link, PacketType.HELLO, self._hs.hello_body(), True))
        elif outcome is not HelloOutcome.REPEAT:
            self._life.established()
            self.links.on_established(now)
            self._emit(SessionEstablished(session=self.session))
            if self.initiator:
                probe = encode_body(Probe())
                for ln in self.links.links:  # echo the answer: the responder's first RTTs
                    self._control.append((ln.id, PacketType.PROBE, probe, True))
            else:
                self._queue_hellos()
        self._accept(link, now, meta)

    def _on_data(self, body: Buffer, offset: int, link: int, now: int, meta: Meta) -> None:
        fields = parse_data(body, offset)
        self._accept(link, now, meta)
        seq, new = self._record(fields, now)
        if new and self._decoder is not None:
            self._rebuilt(self._decoder.on_data(seq, bytes(body[offset:]), now), now)

    def _record(
        self, fields: tuple[int, int, int, int, bytes, int, int], now: int
    ) -> tuple[int, bool]:
        """Hand one DATA record to the inbox; returns its unwrapped sequence and whether
        it was new."""
        seq_wire, deadline_us, stream, msg, payload, index, count = fields
        seq = self.inbox.window.unwrap(seq_wire, SEQ32)
        deadline = self._clock.unwrap_us(deadline_us, now)
        new = self.inbox.on_record(seq, deadline, stream, msg, payload, index, count, now)
        if new and self._feedback.soon(now):
            self._queue_feedback(now)
        return seq, new

    def _rebuilt(self, rebuilt: list[tuple[int, bytes]], now: int) -> None:
        if not rebuilt:
            return
        count = 0
        for _, record in rebuilt:
            try:
                fields = parse_data(record, 0)
            except MalformedPacket:  # a record, not a datagram: counted with FEC's drops
                if self._decoder is not None:
                    self._decoder.stats.drop("rebuilt record does not parse")
                continue
            count += self._record(fields, now)[1]
        if count:
            self._emit(FecRecovered(count=count))

    def _on_parity(self, body: Buffer, offset: int, link: int, now: int, meta: Meta) -> None:
        base, k, m, index, shard = parse_parity(body, offset)
        self._accept(link, now, meta)
        if self._decoder is None:
            return
        base = self.inbox.window.unwrap(base, SEQ32)
        self._rebuilt(self._decoder.on_shard(base, k, m, index, shard, now), now)

    def _on_feedback(self, body: Buffer, offset: int, link: int, now: int, meta: Meta) -> None:
        fb = decode_body(PacketType.FEEDBACK, body, offset)
        self._accept(link, now, meta)
        if isinstance(fb, Feedback):
            handle_feedback(fb, self.outbox, self.links, self._timeouts, now)
            self._check_usable()
            self._life.linger(now)

    def _on_probe(self, body: Buffer, offset: int, link: int, now: int, meta: Meta) -> None:
        decode_body(PacketType.PROBE, body, offset)
        self._accept(link, now, meta)
        self._control.append((link, PacketType.PROBE_ACK, b"\x00", (meta[2], now)))

    def _on_probe_ack(self, body: Buffer, offset: int, link: int, now: int, meta: Meta) -> None:
        decode_body(PacketType.PROBE_ACK, body, offset)
        self._accept(link, now, meta)
        echo_ts = meta[3]
        if echo_ts is not None and self._pmtu.on_ack(link, echo_ts, now, self.links):
            self._fit_payload(now)

    def _on_close(self, body: Buffer, offset: int, link: int, now: int, meta: Meta) -> None:
        close = decode_body(PacketType.CLOSE, body, offset)
        self._accept(link, now, meta)
        if isinstance(close, Close) and not self.closed:
            self._life.end(CloseReason.APPLICATION, close.code, now, by_peer=True)

    # --- timers internals ------------------------------------------------------------------

    def _sync_states(self, now: int) -> None:
        """Report every link whose health state changed since it was last reported."""
        epoch = self.links.epoch.value
        if epoch == self._states_epoch:
            return  # no link changed state since
        self._states_epoch = epoch
        for ln in self.links.links:
            before, after = self._states[ln.id], ln.health.state
            if after is not before:
                self._states[ln.id] = after
                self._link_changed(ln.id, before, after, now)
                self._life.on_links(self.links.links, now)

    def usable_rate_bps(self) -> int:
        """What the links carry now for messages: their capacity after loss, less
        headers and FEC parity (bit/s of message bytes)."""
        payload, size = self._payload_share
        rate = self.links.usable_bps() * payload // size
        fec = self.outbox.fec
        return rate * fec.k // (fec.k + fec.m) if fec is not None else rate

    def _check_usable(self) -> None:
        """Emit `UsableRateChanged` when the usable rate moved by a tenth or more."""
        rate, last = self.usable_rate_bps(), self._usable_reported
        self._usable_now = rate
        if abs(rate - last) * 10 >= last and rate != last:
            self._usable_reported = rate
            self._emit(UsableRateChanged(rate_bps=rate))

    def _link_changed(self, link: int, before: LinkState, after: LinkState, now: int) -> None:
        carried = before >= LinkState.DEGRADED
        if after is LinkState.DOWN:
            self.outbox.on_link_down(link)
        if carried and after < LinkState.DEGRADED:
            self._emit(LinkDown(link=link))
        elif after is LinkState.UP and before is not LinkState.UP:
            self._emit(LinkUp(link=link))
        elif after is LinkState.DEGRADED:
            self._emit(LinkDegraded(link=link))
        self.links.update_weights()
        self._fit_payload(now)
        self._check_usable()

    # --- statistics --------------------------------------------------------------------------

    def stats(self) -> Stats:
        """A frozen snapshot of the session's counters."""
        return snapshot(
            session=max(self.session, 0),
            established=self.established,
            closed=self.closed,
            links=self.links,
            outbox=self.outbox,
            inbox=self.inbox,
            decoder=self._decoder,
            drops=self._drops,
            events_dropped=self._events_dropped,
            usable_rate_bps=self.usable_rate_bps(),
            pmtu=self._pmtu,
            life=self._life,
            planned_loss=self._fec.planned_loss,
        )


Handler = Callable[[Endpoint, Buffer, int, int, int, Meta], None]
#: Packet type -> handler (HELLO is handled before the session check).
_HANDLERS: Final[dict[PacketType, Handler]] = {
    PacketType.DATA: Endpoint._on_data,
    PacketType.PARITY: Endpoint._on_parity,
    PacketType.FEEDBACK: Endpoint._on_feedback,
    PacketType.PROBE: Endpoint._on_probe,
    PacketType.PROBE_ACK: Endpoint._on_probe_ack,
    PacketType.CLOSE: Endpoint._on_close,
}
