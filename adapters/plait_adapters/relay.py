"""``plait relay``: carry UDP datagrams between two hosts over several plait links.

::

    app --UDP--> [listen] relay A ==== plait, N links ====> relay B --UDP--> [forward] server
    app <--UDP-- (last source)   <=====================       <--UDP-- (its replies)

Each datagram that arrives on the local socket becomes one plait message (stream 0,
deadline now + ``latency_ms``); each message from the peer leaves the local socket as
one datagram, to ``forward`` if set, else to the last source address seen. So the same
program serves both ends, and replies travel back the way they came. With ``forward``
and no ``listen``, the local socket serves the forward destination alone: it is bound
to the address the kernel sends to that destination from (127.0.0.1 for a local one),
and every datagram from anyone else is dropped and counted.

Two threads: the raw adapter's loop thread owns the session and the local socket. It
reads the local socket (`RawSession._add_reader`) and hands each datagram to the session
(never blocking: a full send buffer drops the datagram and counts it), and writes what
the peer sends straight out of the local socket (`on_message`), so a datagram crosses
no thread either way. The main thread prints the stats and waits for SIGINT, SIGTERM
or SIGHUP, which close the session (CLOSE to the peer) and end the program with status 0 (during
start-up too: a signal then ends it before anything opens). When the peer closes the
session, or every link of an established session stays down, with nothing heard from
the peer, for ``reopen_after`` seconds (the peer restarted, or the network is out), the
relay opens a new session and waits for the peer again; with ``once`` it exits instead.

A dead modem is not fatal: the session runs with ``retry_links`` (`raw`), so a link
whose interface is down or missing, or whose address is not there yet, stays closed
while the others carry the traffic, and is tried again with back-off; a notice says
so, and another when it opens. Only what can never work without the operator (a
malformed address, a port another program owns: link ports are exclusive) stops the
relay at start, with one line and status 2.

Every notice is also a record of the ``plait.relay`` logger, and the local socket's
drops are logged there every 10 s at most; with ``--log-file`` the relay writes those
and the adapter's (``plait.link``, ``plait.session``, ``plait.drops``:
`plait_adapters._log`) to a file, timestamped.

The defaults do not spin a core: the loop sleeps between datagrams (``busy_poll_us``
0) and spins only the last 50 us before a pacing deadline (``spin_us``).
"""

from __future__ import annotations

import contextlib
import logging
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

import plait
from plait_adapters import raw
from plait_adapters._links import Address
from plait_adapters._log import DROP_LOG_INTERVAL_NS, CountLog
from plait_adapters._relay_config import RelayConfig, RelayConfigError, parse
from plait_adapters._relay_local import local_socket
from plait_adapters._relay_report import (
    Printer,
    RelayStats,
    StatsLog,
    final_report,
    status_line,
    to_json,
)
from plait_adapters._relay_trace import RelayTrace
from plait_adapters._session import SessionStats

if TYPE_CHECKING:
    from plait_adapters._relay_metrics import MetricsServer

__all__ = ["Relay", "RelayStats", "final_report", "main", "status_line"]

_BATCH: Final = 64
"""Local datagrams read per wake-up before the loop looks at anything else."""
_NOTICES: Final = 256
_WATCH_S: Final = 1.0
"""How often `serve` looks at the links, for the notices of `_watch`."""
_CLOSE_WAIT_S: Final = 10.0
"""How long closing a session waits for its thread (and so its sockets) to end before
the next session binds the same ports."""
_LOG: Final = logging.getLogger("plait.relay")
_LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DROPS_EVERY_S: Final = DROP_LOG_INTERVAL_NS / 1e9
_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""The signals that stop the relay cleanly (CLOSE to the peer, final stats, status 0).
SIGHUP too: a closed terminal or a ``kill -HUP`` would otherwise end it with no CLOSE."""


class Relay:
    """One end of a relay: the local socket, the plait session, the counters.

    ``Relay(cfg)`` opens both (raising `OSError` or `RelayConfigError`); `serve` runs
    in one thread until `stop` (thread- and signal-safe); `close` sends CLOSE and
    releases everything. When the session ends (the peer closed it) or is lost (an
    established session whose links have all been down, with nothing heard from the
    peer, for `RelayConfig.reopen_after_s`: the peer restarted, or the network is out),
    `serve` opens a new one and waits for the peer, or returns if `once`. A session
    that was never established is never replaced: it is as ready for the peer as a new
    one would be."""

    def __init__(self, cfg: RelayConfig) -> None:
        self.cfg = cfg
        local = local_socket(cfg)
        self._local = local.sock
        self._dest: Address | None = local.dest
        self._only_from = local.only_from
        self._source: Address | None = None
        self._buf = memoryview(bytearray(65536))
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_w.setblocking(False)
        self._stopping = False
        self.closed_by_peer = False
        self.lost = False
        """True when `serve` returned because the session was lost (with `once`)."""
        self.sessions = 0
        self._last: SessionStats | None = None
        """The last session that was established, once a new one has replaced it."""
        self.notices: deque[str] = deque(maxlen=_NOTICES)
        self._carried = self._emitted = self._full = self._no_dest = self._errors = 0
        self._strangers = 0
        self._short = False  # the protection plan is above the target (told once)
        self._carried_seen = 0  # `_carried` at the last `_watch`
        self._drop_log = CountLog(_LOG, logging.WARNING, "local datagrams dropped:")
        self._drops_due = time.monotonic() + _DROPS_EVERY_S
        self._t0, self._cpu0 = time.monotonic(), time.process_time()
        self._learnt: dict[int, str | None] = {}
        self._not_open: dict[int, str] = {}
        """Why each link that is not open waits (from `on_link`; the last session's
        while a new one opens, so a link that stays down is not announced again)."""
        if local.note is not None:
            self.notice(local.note)
        self.trace: RelayTrace | None = None
        self._traced = 0  # the session whose byte counters the trace follows
        try:
            if cfg.trace is not None:
                self.trace = RelayTrace(cfg.trace, len(cfg.links), int(cfg.latency_ms * 1e6))
            self._open()
        except BaseException:
            self._close_sockets()
            raise

    def _open(self) -> None:
        self.established = self._ended = self._told_psk = False
        self._down: set[int] = set()
        self._all_down_at: float | None = None
        self._heard_then = 0
        """Datagrams heard from the peer when every link was last reported down."""
        before, self._not_open = self._not_open, {}
        self.session = raw.open_session(
            self.cfg.plait_config(),
            self.cfg.links,
            initiator=self.cfg.initiator,
            on_message=self._emit,
            on_event=self._event,
            cpu=self.cfg.cpu,
            busy_poll_ns=self.cfg.busy_poll_us * 1000,
            spin_ns=self.cfg.spin_us * 1000,
            retry_links=True,
            on_link=lambda link, why: self._link_changed(link, why, before),
        )
        # the local socket is read on the loop thread: a datagram crosses no thread
        self.session._add_reader(self._local.fileno(), self._carry)
        for link in sorted(before.keys() - self._not_open.keys()):
            self.notice(f"link {link}: open")  # it waited in the last session
        self.sessions += 1

    @property
    def local_address(self) -> Address:
        host, port = self._local.getsockname()[:2]
        return (host, port)

    # --- the loop thread -------------------------------------------------------------------

    def _emit(self, msg: plait.MessageReceived) -> None:
        if self.trace is not None:
            self.trace.message(msg)
        dest = self._dest or self._source
        if dest is None:
            self._no_dest += 1
            return
        try:
            self._local.sendto(msg.data, dest)
        except OSError:  # a full socket buffer (BlockingIOError) or no route: UDP drops
            self._errors += 1
        else:
            self._emitted += 1

    def _event(self, event: plait.Event) -> None:
        if self.trace is not None:
            self.trace.event(event)
        match event:
            case plait.SessionEstablished(session=sid):
                self.established = True
                self.notice(f"session {sid:#010x} established", None)
            case plait.SessionClosed(by_peer=by_peer, code=code):
                if by_peer or code:
                    self.closed_by_peer = by_peer
                    who = "the peer" if by_peer else "a protocol error"
                    self.notice(f"session closed by {who} (code {code})", None)
                self._ended = True
                self._poke()  # again: `serve` may have looked at `_ended` since the notice
            case plait.LinkDown(link=link):
                self._down.add(link)
                if len(self._down) == len(self.cfg.links):
                    self._heard_then = self._heard()
                    self._all_down_at = time.monotonic()
                self.notice(f"link {link} down", None)
            case plait.LinkDegraded(link=link):
                self.notice(f"link {link} degraded", None)
            case plait.LinkUp(link=link):
                self._down.discard(link)
                self._all_down_at = None
                self.notice(f"link {link} up", None)
            case _:
                pass  # expiries and FEC rebuilds are counted in the stats

    def notice(self, text: str, level: int | None = logging.INFO) -> None:
        """Queue a line for the main thread to print, and log it at `level` (None: the
        adapter logged it already) (thread-safe)."""
        if level is not None:
            _LOG.log(level, "%s", text)
        self.notices.append(f"[{time.monotonic() - self._t0:8.1f} s] {text}")
        self._poke()

    # --- the main thread ---------------------------------------------------------------------

    def serve(self, tick: Callable[[bool], None] | None = None, interval_s: float = 1.0) -> None:
        """Carry local datagrams to the peer until `stop()` (or, with `once`, the end of
        the session); call ``tick(True)`` every `interval_s` seconds, ``tick(False)``
        when notices wait.

        Raises:
            BaseException: what stopped the session's thread, if anything did.
        """
        wake = self._wake_r
        next_tick = next_watch = time.monotonic() + min(interval_s, _WATCH_S)
        while not self._stopping:
            if self._ended or self._lost():
                if self.cfg.once:
                    self.lost = not self._ended
                    return
                self._reopen()
            due = min(next_tick, next_watch) if tick is not None else next_watch
            if select.select([wake], [], [], self._timeout(due))[0]:
                with contextlib.suppress(BlockingIOError):
                    wake.recv(4096)
                if tick is not None and self.notices:
                    tick(False)
            now = time.monotonic()
            if now >= next_watch:
                self._watch()
                next_watch = max(next_watch + _WATCH_S, now)
            if tick is not None and now >= next_tick:
                tick(True)
                next_tick = max(next_tick + interval_s, now)

    def _watch(self) -> None:
        """A notice for each learning link whose peer address is new or moved (NAT), and
        once per session if HELLOs fail authentication before it is established (a
        peer with another psk: the session itself waits on, see `Relay`)."""
        stats = self.session.stats()
        if self.trace is not None:
            self.trace.links(stats.endpoint, new_session=self._traced != self.sessions)
            self._traced = self.sessions
        learnt = stats.learnt
        for link, addr in learnt.items():
            if addr is not None and addr != self._learnt.get(link):
                self.notice(f"link {link}: the peer is at {addr}")
        self._learnt = dict(learnt)
        failed = stats.endpoint.hellos_unauthenticated
        if failed and not self.established and not self._told_psk:
            self._told_psk = True
            self.notice(
                f"{failed} HELLOs failed authentication: the peer holds another psk",
                logging.WARNING,
            )
        self._check_plan(stats.endpoint.planned_loss)
        if time.monotonic() >= self._drops_due:
            self._drops_due = time.monotonic() + _DROPS_EVERY_S
            self._drop_log.update(
                {
                    "send buffer full": self._full,
                    "no destination yet": self._no_dest,
                    "not from the forward address": self._strangers,
                    "local socket errors": self._errors,
                }
            )

    def _check_plan(self, planned: float | None) -> None:
        """A warning when, while this end carries traffic, protection cannot reach the
        target loss within `max_protection` at the loss and latency the links show
        (`plait.Stats.planned_loss`), and a notice when it can again."""
        sending, self._carried_seen = self._carried > self._carried_seen, self._carried
        if planned is None or not sending:
            return
        cfg = self.cfg
        short = planned > cfg.target_loss
        if short and not self._short:
            self.notice(
                f"protection leaves {planned:.1e} of messages lost, above the target "
                f"{cfg.target_loss:g}: no mix of re-sends, FEC and copies within "
                f"--max-protection {cfg.max_protection:g} reaches it at this loss and "
                "latency (raise --max-protection or --latency-ms)",
                logging.WARNING,
            )
        elif self._short and not short:
            self.notice(f"protection reaches the target {cfg.target_loss:g} again")
        self._short = short

    def _link_changed(self, link: int, why: str | None, before: dict[int, str]) -> None:
        """`on_link`: a notice when `link` waits (once per reason, also across
        sessions: `before` is what waited in the last one) and when it opens."""
        if why is None:
            self._not_open.pop(link, None)
            before.pop(link, None)
            self.notice(f"link {link}: open")
            return
        if why not in (self._not_open.get(link), before.get(link)):
            self.notice(f"{why}; link {link} waits and is tried again", logging.WARNING)
        self._not_open[link] = why

    def _heard(self) -> int:
        """Datagrams accepted from the peer in this session, over every link."""
        return sum(ln.datagrams_received for ln in self.session.stats().endpoint.links)

    def _reopen_due(self) -> float | None:
        down, after = self._all_down_at, self.cfg.reopen_after_s
        if down is None or after <= 0 or not self.established:
            return None
        return down + after

    def _lost(self) -> bool:
        """True once every link has been down for `reopen_after_s` and the peer was not
        heard meanwhile. A link that comes back goes on PROBATION first, which has no
        event, so the count of datagrams heard is what tells."""
        due = self._reopen_due()
        if due is None or time.monotonic() < due:
            return False
        heard = self._heard()
        if heard != self._heard_then:  # heard since: not lost; look again later
            self._heard_then = heard
            self._all_down_at = time.monotonic()
            return False
        return True

    def _timeout(self, due: float) -> float:
        """How long `serve` may wait: until `due` (a tick, a look at the links) or the
        session counts as lost."""
        if (reopen := self._reopen_due()) is not None:
            due = min(due, reopen)
        return max(0.0, due - time.monotonic())

    def _reopen(self) -> None:
        why = "the session ended" if self._ended else "every link is down"
        self.notice(f"{why}: a new session waits for the peer")
        self.session.close(_CLOSE_WAIT_S)
        if self.established:
            self._last = self.session.stats()
        self._open()

    def _carry(self) -> None:
        """On the loop thread (`RawSession._add_reader`): what the local socket holds, up to a
        batch, into the session."""
        session, recv, only, buf = (
            self.session,
            self._local.recvfrom_into,
            self._only_from,
            self._buf,
        )
        for _ in range(_BATCH):
            try:
                n, source = recv(buf)
            except BlockingIOError:
                return
            except OSError:
                self._errors += 1
                continue
            if only is not None and source[:2] != only:
                self._strangers += 1  # not the forward destination: nobody's to carry
                continue
            if self._dest is None:
                self._source = source[:2]
            try:
                session.send(bytes(buf[:n]), timeout=0)
            except plait.errors.BackpressureError:
                self._full += 1
            except plait.errors.SessionClosedError:
                self._ended = True
                self._poke()
                return
            else:
                self._carried += 1

    def stop(self) -> None:
        """End `serve` (from any thread, or a signal handler)."""
        self._stopping = True
        self._poke()

    def _poke(self) -> None:
        with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
            self._wake_w.send(b"\0")

    def stats(self) -> RelayStats:
        return RelayStats(
            elapsed_s=time.monotonic() - self._t0,
            cpu_s=time.process_time() - self._cpu0,
            carried=self._carried,
            emitted=self._emitted,
            dropped_full=self._full,
            dropped_no_destination=self._no_dest,
            local_errors=self._errors,
            closed_by_peer=self.closed_by_peer,
            sessions=self.sessions,
            session=self.session.stats() if self.established or self._last is None else self._last,
            dropped_strangers=self._strangers,
        )

    def close(self) -> None:
        """Close the session (CLOSE to the peer on every link) and the local socket;
        re-raises what stopped the session's thread, if anything did."""
        try:
            self.session.close(_CLOSE_WAIT_S)
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self._local, self._wake_r, self._wake_w):
            sock.close()
        if self.trace is not None:
            self.trace.close()


# --- the command -----------------------------------------------------------------------------


class _Interrupted(BaseException):
    """A stop signal while the configuration is read (a key file may block: a FIFO)."""


class _Stopper:
    """SIGINT/SIGTERM/SIGHUP stop the relay. While the configuration is read
    (`raising`) the handler raises `_Interrupted`, since the read may block; then it
    only sets `signalled`, which stops a relay that is still starting, and stops the
    running relay."""

    def __init__(self) -> None:
        self.relay: Relay | None = None
        self.signalled = False
        self.raising = True

    def requested(self) -> bool:
        """True once a stop signal came (a call: the handler may set it any time)."""
        return self.signalled

    def __call__(self, signum: int, frame: object) -> None:
        self.signalled = True
        if self.relay is not None:
            self.relay.stop()
        elif self.raising:
            raise _Interrupted


def main(argv: Sequence[str]) -> int:
    """``plait relay ARGS``; returns the exit status: 0 (stopped by a signal, or with
    ``--once`` closed by the peer), 1 if the session failed while running (or, with
    ``--once``, was lost), 2 for a bad configuration or an address that cannot be
    used."""
    stopper = _Stopper()
    handlers = {sig: signal.signal(sig, stopper) for sig in _SIGNALS}
    try:
        try:
            cfg = parse(argv)
        finally:
            stopper.raising = False
        return _run(cfg, stopper)
    except RelayConfigError as exc:
        print(f"plait relay: error: {exc}", file=sys.stderr)
        return 2
    except _Interrupted:
        return 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _log_to(cfg: RelayConfig) -> logging.Handler | None:
    """`cfg.log_file`'s handler on the ``plait`` logger (None: no file). Raises
    OSError if the file cannot be opened."""
    if cfg.log_file is None:
        return None
    handler = logging.FileHandler(cfg.log_file, encoding="utf-8")
    handler.setFormatter(logging.Formatter(_LOG_FORMAT))
    top = logging.getLogger("plait")
    top.setLevel(cfg.log_level.upper())
    top.addHandler(handler)
    return handler


def _metrics(cfg: RelayConfig, relay: Relay) -> MetricsServer | None:
    """The metrics server, if asked for (and a notice of its URL); raises OSError."""
    if cfg.metrics_listen is None:
        return None
    from plait_adapters._relay_metrics import MetricsServer  # noqa: PLC0415  (an extra)

    server = MetricsServer(cfg.metrics_listen, relay.stats)
    relay.notice(f"metrics at {server.url}")
    return server


def _warn_open(cfg: RelayConfig, relay: Relay) -> None:
    """Notices of what the configuration leaves open."""
    if cfg.psk is None:
        relay.notice("no psk: datagrams are neither authenticated nor encrypted", logging.WARNING)
        if any(link.remote is None for link in cfg.links):
            relay.notice("no psk: anyone can redirect a link whose remote is '*'", logging.WARNING)


def _run(cfg: RelayConfig, stopper: _Stopper) -> int:
    if stopper.requested():
        return 0
    try:
        log = None if cfg.stats_log is None else StatsLog(cfg.stats_log)
    except OSError as exc:
        print(f"plait relay: error: cannot write --stats-log: {exc}", file=sys.stderr)
        return 2
    try:
        handler = _log_to(cfg)
    except OSError as exc:
        print(f"plait relay: error: cannot write --log-file: {exc}", file=sys.stderr)
        if log is not None:
            log.close()
        return 2
    try:
        return _serve(cfg, stopper, log)
    finally:
        if log is not None:
            log.close()
        if handler is not None:
            logging.getLogger("plait").removeHandler(handler)
            handler.close()


def _serve(cfg: RelayConfig, stopper: _Stopper, log: StatsLog | None) -> int:
    try:
        relay = Relay(cfg)
    except (OSError, RelayConfigError) as exc:  # a port in use, an address that is wrong
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        print(f"plait relay: error: {why}", file=sys.stderr)
        return 2
    try:
        metrics = _metrics(cfg, relay)
    except OSError as exc:
        relay.close()
        print(f"plait relay: error: --metrics-listen: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stopper.relay = relay
    if stopper.requested():  # a signal came while it was opening
        relay.stop()
    _warn_open(cfg, relay)
    printer = Printer(relay.notices, relay.stats, sys.stderr, cfg.stats_interval_s)

    def tick(status: bool) -> None:
        printer.tick(status)
        if status and log is not None:
            log.write(relay.stats)

    error: Exception | None = None
    try:
        relay.serve(tick, printer.interval_s or 1.0)
    except Exception as exc:  # what stopped the session's thread: reported below
        error = exc
    try:
        relay.close()
    except Exception as exc:
        error = error or exc
    if metrics is not None:
        metrics.close()
    stats = relay.stats()
    printer.final(stats)
    if log is not None:
        log.write(lambda: stats)
    status = 0
    if cfg.stats_json is not None:
        try:
            cfg.stats_json.write_text(to_json(stats) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"plait relay: error: cannot write --stats-json: {exc}", file=sys.stderr)
            status = 1
    if error is not None:
        print(f"plait relay: error: the session failed: {error!r}", file=sys.stderr)
        return 1
    if relay.lost:
        print("plait relay: the session was lost (every link down)", file=sys.stderr)
        return 1
    return status
