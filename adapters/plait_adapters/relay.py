"""``plait relay``: carry UDP datagrams between two hosts over several plait links.

::

    app --UDP--> [listen] relay A ==== plait, N links ====> relay B --UDP--> [forward] server
    app <--UDP-- (last source)   <=====================       <--UDP-- (its replies)

Each datagram that arrives on the local socket becomes one plait message (stream 0,
deadline now + ``latency_ms``); each message from the peer leaves the local socket as
one datagram, to ``forward`` if set, else to the last source address seen. So the same
program serves both ends, and replies travel back the way they came.

Two threads: the raw adapter's loop thread owns the session and writes what the peer
sends straight out of the local socket (`on_message`); the main thread reads the local
socket, hands datagrams to the session (never blocking: a full send buffer drops the
datagram and counts it), prints the stats and waits for SIGINT/SIGTERM, which close
the session (CLOSE to the peer) and end the program with status 0. When the peer
closes the session, or every link stays down for ``reopen_after`` seconds (the peer
restarted, or the network is out), the relay opens a new session and waits for the
peer again; with ``once`` it exits instead.

The defaults do not spin a core: the loop sleeps between datagrams (``busy_poll_us``
0) and spins only the last 50 us before a pacing deadline (``spin_us``).
"""

from __future__ import annotations

import contextlib
import json
import select
import shutil
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final, TextIO

import attrs

import plait
from plait_adapters import raw
from plait_adapters._links import SOCKET_BUFFER, Address
from plait_adapters._relay_config import RelayConfig, RelayConfigError, parse
from plait_adapters._session import SessionStats

__all__ = ["Relay", "RelayStats", "final_report", "main", "status_line"]

_BATCH: Final = 64
"""Local datagrams read per wake-up before the main thread looks at anything else."""
_NOTICES: Final = 256
_CLEAR: Final = "\r\x1b[K"
"""Back to the start of the line, erase it: the status line is rewritten in place."""


@attrs.frozen
class RelayStats:
    """A snapshot of one relay: its local socket's counters and the plait session."""

    elapsed_s: float
    cpu_s: float
    """CPU time of the whole process (both threads)."""
    carried: int
    """Datagrams read from the local socket and handed to plait."""
    emitted: int
    """Messages from the peer written to the local destination."""
    dropped_full: int
    """Local datagrams dropped because plait's send buffer was full."""
    dropped_no_destination: int
    """Messages from the peer dropped because no local source had been seen yet."""
    local_errors: int
    """Local socket errors (a full socket buffer, an unreachable destination)."""
    closed_by_peer: bool
    """The last session to end was closed by the peer."""
    sessions: int
    """Sessions opened: 1, plus one for each time the peer closed or was lost."""
    session: SessionStats
    """The current session if it was established, else the last one that was."""


class Relay:
    """One end of a relay: the local socket, the plait session, the counters.

    ``Relay(cfg)`` opens both (raising `OSError` or `RelayConfigError`); `serve` runs
    in one thread until `stop` (thread- and signal-safe); `close` sends CLOSE and
    releases everything. When the session ends (the peer closed it) or is lost (every
    link down for `RelayConfig.reopen_after_s`: the peer restarted, or the network is
    out), `serve` opens a new one and waits for the peer, or returns if `once`."""

    def __init__(self, cfg: RelayConfig) -> None:
        self.cfg = cfg
        self._dest: Address | None = cfg.forward
        self._source: Address | None = None
        self._local = _local_socket(cfg)
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
        self._t0, self._cpu0 = time.monotonic(), time.process_time()
        try:
            self._open()
        except BaseException:
            self._close_sockets()
            raise

    def _open(self) -> None:
        self.established = self._ended = False
        self._down: set[int] = set()
        self._learnt: dict[int, str | None] = {}
        self._all_down_at: float | None = None
        self.session = raw.open_session(
            self.cfg.plait_config(),
            self.cfg.links,
            initiator=self.cfg.initiator,
            on_message=self._emit,
            on_event=self._event,
            cpu=self.cfg.cpu,
            busy_poll_ns=self.cfg.busy_poll_us * 1000,
            spin_ns=self.cfg.spin_us * 1000,
        )
        self.sessions += 1

    @property
    def local_address(self) -> Address:
        host, port = self._local.getsockname()[:2]
        return (host, port)

    # --- the loop thread -------------------------------------------------------------------

    def _emit(self, msg: plait.MessageReceived) -> None:
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
        match event:
            case plait.SessionEstablished(session=sid):
                self.established = True
                self.notice(f"session {sid:#010x} established")
            case plait.SessionClosed(by_peer=by_peer, code=code):
                if by_peer or code:
                    self.closed_by_peer = by_peer
                    who = "the peer" if by_peer else "a protocol error"
                    self.notice(f"session closed by {who} (code {code})")
                self._ended = True
                self._poke()  # again: `serve` may have looked at `_ended` since the notice
            case plait.LinkDown(link=link):
                self._down.add(link)
                if len(self._down) == len(self.cfg.links):
                    self._all_down_at = time.monotonic()
                self.notice(f"link {link} down")
            case plait.LinkDegraded(link=link):
                self.notice(f"link {link} degraded")
            case plait.LinkUp(link=link):
                self._down.discard(link)
                self._all_down_at = None
                self.notice(f"link {link} up")
            case _:
                pass  # expiries and FEC rebuilds are counted in the stats

    def notice(self, text: str) -> None:
        """Queue a line for the main thread to print (thread-safe)."""
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
        local, wake = self._local, self._wake_r
        buf = memoryview(bytearray(65536))
        next_tick = time.monotonic() + interval_s
        while not self._stopping:
            if self._ended or self._lost():
                if self.cfg.once:
                    self.lost = not self._ended
                    return
                self._reopen()
            ready = select.select([local, wake], [], [], self._timeout(next_tick, tick))[0]
            if local in ready:
                self._carry(buf)
            if wake in ready:
                with contextlib.suppress(BlockingIOError):
                    wake.recv(4096)
                if tick is not None and self.notices:
                    tick(False)
            if tick is not None and time.monotonic() >= next_tick:
                self._watch_learnt()
                tick(True)
                next_tick = max(next_tick + interval_s, time.monotonic())

    def _watch_learnt(self) -> None:
        """A notice for each link whose learnt peer address is new or moved (NAT)."""
        learnt = self.session.stats().learnt
        for link, addr in learnt.items():
            if addr is not None and addr != self._learnt.get(link):
                self.notice(f"link {link}: the peer is at {addr}")
        self._learnt = dict(learnt)

    def _lost(self) -> bool:
        down, after = self._all_down_at, self.cfg.reopen_after_s
        return down is not None and after > 0 and time.monotonic() - down >= after

    def _timeout(self, next_tick: float, tick: object) -> float | None:
        """How long `serve` may wait: until the next tick or the session counts as lost."""
        due = [next_tick] if tick is not None else []
        if self._all_down_at is not None and self.cfg.reopen_after_s > 0:
            due.append(self._all_down_at + self.cfg.reopen_after_s)
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _reopen(self) -> None:
        why = "the session ended" if self._ended else "every link is down"
        self.notice(f"{why}: a new session waits for the peer")
        self.session.close()
        if self.established:
            self._last = self.session.stats()
        self._open()

    def _carry(self, buf: memoryview) -> None:
        session, recv = self.session, self._local.recvfrom_into
        for _ in range(_BATCH):
            try:
                n, source = recv(buf)
            except BlockingIOError:
                return
            except OSError:
                self._errors += 1
                continue
            if self._dest is None:
                self._source = source[:2]
            try:
                session.send(bytes(buf[:n]), timeout=0)
            except plait.errors.BackpressureError:
                self._full += 1
            except plait.errors.SessionClosedError:
                self._ended = True
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
        )

    def close(self) -> None:
        """Close the session (CLOSE to the peer on every link) and the local socket;
        re-raises what stopped the session's thread, if anything did."""
        try:
            self.session.close()
        finally:
            self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in (self._local, self._wake_r, self._wake_w):
            sock.close()


def _local_socket(cfg: RelayConfig) -> socket.socket:
    """The relay's local UDP socket: bound to `listen`, or to an ephemeral port."""
    addr = cfg.listen
    if addr is None:  # an ephemeral port of the forward address's family
        v6 = cfg.forward is not None and ":" in cfg.forward[0]
        addr = ("::" if v6 else "0.0.0.0", 0)  # noqa: S104  (replies may come from anywhere)
    sock = socket.socket(socket.AF_INET6 if ":" in addr[0] else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot bind the local address {addr}: {exc.strerror}"
            ) from exc
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


# --- reports ---------------------------------------------------------------------------------


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f}ms" if ns else "-"


def status_line(r: RelayStats) -> str:
    """One line: counters, then each link's state, smoothed RTT and outbound loss."""
    ep = r.session.endpoint
    expired = ep.messages_expired_sending + ep.messages_expired_receiving
    rebuilt = ep.fec.recovered if ep.fec is not None else 0
    links = "  ".join(f"{ln.link}:{ln.state} {_ms(ln.srtt_ns)} {ln.loss:.1%}" for ln in ep.links)
    return (
        f"{int(r.elapsed_s):5d}s  in {r.carried}  out {r.emitted}  delivered "
        f"{ep.messages_delivered}  expired {expired}  fec {rebuilt}  resent {ep.repairs}  "
        f"| {links}"
    )


def final_report(r: RelayStats) -> str:
    """The multi-line summary printed when the relay stops."""
    ep = r.session.endpoint
    how = "closed by the peer" if r.closed_by_peer else "closed"
    lines = [
        f"plait relay: final stats after {r.elapsed_s:.1f} s (session {ep.session:#010x}, {how};"
        f" {r.sessions} opened)",
        f"  local      carried {r.carried} datagrams to the peer, emitted {r.emitted} from it",
        f"  dropped    {r.dropped_full} (send buffer full), {r.dropped_no_destination} (no "
        f"destination yet), {r.local_errors} (local socket errors)",
        f"  messages   sent {ep.messages_sent}, delivered {ep.messages_delivered}, expired "
        f"{ep.messages_expired_sending} sending + {ep.messages_expired_receiving} receiving",
    ]
    if ep.fec is not None:
        f = ep.fec
        lines.append(
            f"  repair     {f.recovered} packets rebuilt by FEC (k={f.k} m={f.m}, "
            f"{f.overhead:.0%} parity), {ep.repairs} re-sent"
        )
    else:
        lines.append(f"  repair     {ep.repairs} re-sent (FEC off)")
    learnt = r.session.learnt
    lines += [
        f"  link {ln.link:<5} {ln.state:<9} rtt {_ms(ln.srtt_ns):>8}  loss {ln.loss:5.1%}  "
        f"sent {ln.datagrams_sent}  received {ln.datagrams_received}"
        + (f"  peer {learnt[ln.link] or 'not heard yet'}" if ln.link in learnt else "")
        for ln in ep.links
    ]
    share = r.cpu_s / r.elapsed_s if r.elapsed_s > 0 else 0.0
    lines.append(f"  cpu        {r.cpu_s:.2f} s ({share:.1%} of one core)")
    return "\n".join(lines)


def to_json(r: RelayStats) -> str:
    return json.dumps(attrs.asdict(r), indent=2)


class _Printer:
    """Stats on stderr: one line rewritten in place on a terminal (every second), else a
    line every `interval_s` seconds (none if 0); notices get lines of their own."""

    def __init__(self, relay: Relay, out: TextIO, interval_s: float) -> None:
        self.relay, self.out = relay, out
        self.tty = out.isatty()
        self.interval_s = 1.0 if self.tty else interval_s
        self._shown = False

    def tick(self, status: bool) -> None:
        """Print waiting notices, then the status line if `status` (on a terminal,
        also when notices pushed it up)."""
        shown = self._shown
        self._notices(clear=False)
        if self.tty and (status or shown):
            width = shutil.get_terminal_size().columns - 1
            self.out.write(_CLEAR + status_line(self.relay.stats())[:width])
            self._shown = True
        elif status and self.interval_s > 0:
            self.out.write(status_line(self.relay.stats()) + "\n")
        self.out.flush()

    def _notices(self, *, clear: bool) -> None:
        """Each waiting notice on a line of its own (the status line cleared first)."""
        notices, out = self.relay.notices, self.out
        if self._shown and (notices or clear):
            out.write(_CLEAR)
            self._shown = False
        while notices:
            out.write("plait relay " + notices.popleft() + "\n")

    def final(self, stats: RelayStats) -> None:
        self._notices(clear=True)
        self.out.write(final_report(stats) + "\n")
        self.out.flush()


class _Stopper:
    """SIGINT/SIGTERM stop the relay, also one that is still starting."""

    def __init__(self) -> None:
        self.relay: Relay | None = None
        self.signalled = False

    def __call__(self, signum: int, frame: object) -> None:
        self.signalled = True
        if self.relay is not None:
            self.relay.stop()


def main(argv: Sequence[str]) -> int:
    """``plait relay ARGS``; returns the exit status: 0, 1 if the session failed while
    running (or, with ``--once``, was lost), 2 for a bad configuration or an address
    that cannot be used."""
    try:
        cfg = parse(argv)
    except RelayConfigError as exc:
        print(f"plait relay: error: {exc}", file=sys.stderr)
        return 2
    stopper = _Stopper()
    handlers = {sig: signal.signal(sig, stopper) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(cfg, stopper)
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def _run(cfg: RelayConfig, stopper: _Stopper) -> int:
    try:
        relay = Relay(cfg)
    except (OSError, RelayConfigError) as exc:
        print(f"plait relay: error: {exc}", file=sys.stderr)
        return 2
    stopper.relay = relay
    if stopper.signalled:
        relay.stop()
    if cfg.psk is None:
        relay.notice("no psk: datagrams are neither authenticated nor encrypted")
        if any(link.remote is None for link in cfg.links):
            relay.notice("no psk: anyone can redirect a link whose remote is '*'")
    printer = _Printer(relay, sys.stderr, cfg.stats_interval_s)
    error: Exception | None = None
    try:
        relay.serve(printer.tick, printer.interval_s or 1.0)
    except Exception as exc:  # what stopped the session's thread: reported below
        error = exc
    try:
        relay.close()
    except Exception as exc:
        error = error or exc
    stats = relay.stats()
    printer.final(stats)
    if cfg.stats_json is not None:
        cfg.stats_json.write_text(to_json(stats) + "\n", encoding="utf-8")
    if error is not None:
        print(f"plait relay: error: the session failed: {error!r}", file=sys.stderr)
        return 1
    if relay.lost:
        print("plait relay: the session was lost (every link down)", file=sys.stderr)
        return 1
    return 0
