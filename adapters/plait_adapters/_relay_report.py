"""What ``plait relay`` prints: its stats snapshot, the status line, the final report.

`RelayStats` is one relay's counters plus its plait session's `SessionStats`;
`status_line` and `final_report` render it (docs/relay.md shows and explains both);
`Printer` writes them to stderr: one status line rewritten in place on a terminal, or a
line every ``interval_s`` seconds otherwise, and each notice (a link down, a session
established, a link that cannot be opened) on a line of its own. `StatsLog` writes the
numbers a program follows (the usable rate an encoder should target, each link's
capacity and queue) as one JSON line per status line, stamped with CLOCK_MONOTONIC.

Both lines show the session's usable rate (`plait.Stats.usable_rate_bps`: message bytes
the links carry now, after loss, headers and FEC parity) and each link's estimated
capacity (`plait.LinkStats.capacity_bps`: what plait paces the link to, headers in).
"""

from __future__ import annotations

import json
import shutil
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TextIO

import attrs

from plait_adapters._session import SessionStats

__all__ = [
    "Printer",
    "RelayStats",
    "StatsLog",
    "final_report",
    "log_record",
    "status_line",
    "to_json",
]

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
    dropped_strangers: int = 0
    """Local datagrams dropped because they did not come from the ``forward`` address
    (only when there is no ``listen`` address: the local socket then serves the
    forward destination alone)."""


def _ms(ns: int) -> str:
    return f"{ns / 1e6:.1f}ms" if ns else "-"


def bps(rate: int) -> str:
    """A rate in bit/s, short: ``4.75M``, ``950k``, ``0``."""
    if rate >= 1_000_000:
        return f"{rate / 1e6:.2f}M"
    return f"{rate / 1e3:.0f}k" if rate >= 1_000 else str(rate)


def status_line(r: RelayStats) -> str:
    """One line: counters and the usable rate, then each link's state, smoothed RTT,
    outbound loss and estimated capacity."""
    ep = r.session.endpoint
    expired = ep.messages_expired_sending + ep.messages_expired_receiving
    rebuilt = ep.fec.recovered if ep.fec is not None else 0
    links = "  ".join(
        f"{ln.link}:{ln.state} {_ms(ln.srtt_ns)} {ln.loss:.1%} {bps(ln.capacity_bps)}"
        for ln in ep.links
    )
    return (
        f"{int(r.elapsed_s):5d}s  in {r.carried}  out {r.emitted}  delivered "
        f"{ep.messages_delivered}  expired {expired}  fec {rebuilt}  resent {ep.repairs}  "
        f"usable {bps(ep.usable_rate_bps)}  | {links}"
    )


def final_report(r: RelayStats) -> str:
    """The multi-line summary printed when the relay stops."""
    ep = r.session.endpoint
    how = "closed by the peer" if r.closed_by_peer else "closed"
    strangers = r.dropped_strangers
    lines = [
        f"plait relay: final stats after {r.elapsed_s:.1f} s (session {ep.session:#010x}, {how};"
        f" {r.sessions} opened)",
        f"  local      carried {r.carried} datagrams to the peer, emitted {r.emitted} from it",
        f"  dropped    {r.dropped_full} (send buffer full), {r.dropped_no_destination} (no "
        f"destination yet), {r.local_errors} (local socket errors)"
        + (f", {strangers} (not from the forward address)" if strangers else ""),
        f"  messages   sent {ep.messages_sent}, delivered {ep.messages_delivered}, expired "
        f"{ep.messages_expired_sending} sending + {ep.messages_expired_receiving} receiving",
        f"  usable     {ep.usable_rate_bps / 1e6:.2f} Mbit/s of messages the links carry now",
    ]
    if ep.fec is not None:
        f = ep.fec
        lines.append(
            f"  repair     {f.recovered} packets rebuilt by FEC (k={f.k} m={f.m}, "
            f"{f.overhead:.0%} parity), {ep.repairs} re-sent"
        )
    else:
        lines.append(f"  repair     {ep.repairs} re-sent (FEC off)")
    if ep.planned_loss is not None:
        lines.append(
            f"  plan       leaves {ep.planned_loss:.1e} of messages lost by its model "
            "(plait.Stats.planned_loss)"
        )
    learnt, not_open = r.session.learnt, r.session.not_open
    lines += [
        f"  link {ln.link:<5} {ln.state:<9} rtt {_ms(ln.srtt_ns):>8}  loss {ln.loss:5.1%}  "
        f"mtu {ln.pmtu}  capacity {bps(ln.capacity_bps):>6}  sent {ln.datagrams_sent}  "
        f"received {ln.datagrams_received}"
        + (f"  peer {learnt[ln.link] or 'not heard yet'}" if ln.link in learnt else "")
        + ("  (not open)" if ln.link in not_open else "")
        for ln in ep.links
    ]
    share = r.cpu_s / r.elapsed_s if r.elapsed_s > 0 else 0.0
    lines.append(f"  cpu        {r.cpu_s:.2f} s ({share:.1%} of one core)")
    return "\n".join(lines)


def to_json(r: RelayStats) -> str:
    return json.dumps(attrs.asdict(r), indent=2)


def log_record(r: RelayStats, monotonic_s: float, wall_s: float) -> dict[str, Any]:
    """One `StatsLog` line: when (CLOCK_MONOTONIC, and the wall clock), the counters,
    the usable rate and, per link, what its capacity estimate stands on."""
    ep = r.session.endpoint
    return {
        "t": round(monotonic_s, 6),
        "time": round(wall_s, 3),
        "elapsed_s": round(r.elapsed_s, 3),
        "session": ep.session,
        "established": ep.established,
        "carried": r.carried,
        "emitted": r.emitted,
        "delivered": ep.messages_delivered,
        "expired": ep.messages_expired_sending + ep.messages_expired_receiving,
        "usable_rate_bps": ep.usable_rate_bps,
        "sessions": r.sessions,
        "messages_sent": ep.messages_sent,
        "expired_sending": ep.messages_expired_sending,
        "expired_receiving": ep.messages_expired_receiving,
        "repairs": ep.repairs,
        "fec_recovered": ep.fec.recovered if ep.fec is not None else 0,
        "fec_parity_sent": ep.fec.parity_sent if ep.fec is not None else 0,
        "planned_loss": ep.planned_loss,
        "dropped": {
            "send_buffer_full": r.dropped_full,
            "no_destination": r.dropped_no_destination,
            "not_from_forward": r.dropped_strangers,
            "local_socket_error": r.local_errors,
        },
        "links": [
            {
                "link": ln.link,
                "state": ln.state.name,
                "capacity_bps": ln.capacity_bps,
                "delivery_rate_bps": ln.delivery_rate_bps,
                "queue_delay_ns": ln.queue_delay_ns,
                "srtt_ns": ln.srtt_ns,
                "loss": ln.loss,
                "datagrams_sent": ln.datagrams_sent,
                "bytes_sent": ln.bytes_sent,
                "datagrams_received": ln.datagrams_received,
                "bytes_received": ln.bytes_received,
                "pmtu": ln.pmtu,
            }
            for ln in ep.links
        ],
    }


class StatsLog:
    """``--stats-log FILE``: a JSON object per line (`log_record`), one per status
    line, written through at once, so a program can follow the usable rate while the
    relay runs. The file is truncated when the relay starts."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("w", encoding="utf-8", buffering=1)  # line-buffered

    def write(self, stats: Callable[[], RelayStats]) -> None:
        now, wall = time.monotonic(), time.time()
        record = log_record(stats(), now, wall)
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()


class Printer:
    """Stats on `out` (stderr): one line rewritten in place on a terminal (every
    second), else a line every `interval_s` seconds (none if 0); notices, taken from
    `notices`, get lines of their own."""

    def __init__(
        self,
        notices: deque[str],
        stats: Callable[[], RelayStats],
        out: TextIO,
        interval_s: float,
    ) -> None:
        self.notices, self.stats, self.out = notices, stats, out
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
            self.out.write(_CLEAR + status_line(self.stats())[:width])
            self._shown = True
        elif status and self.interval_s > 0:
            self.out.write(status_line(self.stats()) + "\n")
        self.out.flush()

    def _notices(self, *, clear: bool) -> None:
        """Each waiting notice on a line of its own (the status line cleared first)."""
        notices, out = self.notices, self.out
        if self._shown and (notices or clear):
            out.write(_CLEAR)
            self._shown = False
        while notices:
            out.write("plait relay " + notices.popleft() + "\n")

    def final(self, stats: RelayStats) -> None:
        self._notices(clear=True)
        self.out.write(final_report(stats) + "\n")
        self.out.flush()
