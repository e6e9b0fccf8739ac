"""``plait relay --trace FILE``: what the relay saw, as a `plait.tracelog` trace.

Seen from this end, so ``dir`` 0 is what arrives here from the peer: each message
delivered (its latency estimated as arrival - (deadline - the relay's latency budget),
both on this host's clock: exact when both ends use the same ``latency_ms``), each
message that expired while arriving, and each link's received bytes once a second;
``dir`` 1 is what this end sends (expired while sending, bytes sent). Link and session
events as this end's endpoint reported them (``side`` 0). ``plait plot FILE`` draws it.

The file is written through a lock (the session's thread writes messages and events,
the main thread the per-second bytes) and flushed once a second.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Final

import plait
from plait.tracelog import header
from plait_adapters._links import clock

__all__ = ["RelayTrace"]

_STATES: Final = {plait.LinkDown: "DOWN", plait.LinkDegraded: "DEGRADED", plait.LinkUp: "UP"}


class RelayTrace:
    """A trace file being written; `close` it."""

    def __init__(self, path: Path, links: int, budget_ns: int) -> None:
        self._file = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._budget = budget_ns
        self._last: dict[tuple[int, int], int] = {}  # (dir, link) -> bytes so far
        self._looked = clock()
        head = header("relay", f"relay trace, {links} links", links, budget_ns, clock())
        head["direction"] = "peer -> this relay"
        self._write(head)

    def _write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)

    def message(self, msg: plait.MessageReceived) -> None:
        now = clock()
        self._write(
            {"t": now, "ev": "delivered", "dir": 0, "latency": now - msg.deadline + self._budget}
        )

    def event(self, event: plait.Event) -> None:
        now = clock()
        kind = type(event)
        if kind in _STATES:
            link = getattr(event, "link", -1)
            self._write({"t": now, "ev": "link", "side": 0, "link": link, "state": _STATES[kind]})
        elif isinstance(event, plait.MessageExpired):
            where = "sending" if event.sent else "receiving"
            self._write(
                {"t": now, "ev": "expired", "dir": int(event.sent), "sent": None, "where": where}
            )
        elif isinstance(event, plait.SessionEstablished | plait.SessionClosed):
            what = "established" if isinstance(event, plait.SessionEstablished) else "closed"
            self._write({"t": now, "ev": "session", "side": 0, "what": what})

    def links(self, stats: plait.Stats, new_session: bool) -> None:
        """Each link's bytes since the last call, both ways (counters start again with
        each session: `new_session`)."""
        now = clock()
        span, self._looked = now - self._looked, now
        if new_session:
            self._last.clear()
        for ln in stats.links:
            for way, total in ((0, ln.bytes_received), (1, ln.bytes_sent)):
                grew = total - self._last.get((way, ln.link), 0)
                self._last[way, ln.link] = total
                if grew > 0:
                    self._write(
                        {
                            "t": now,
                            "ev": "bytes",
                            "dir": way,
                            "link": ln.link,
                            "bytes": grew,
                            "span": span,
                        }
                    )
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()
