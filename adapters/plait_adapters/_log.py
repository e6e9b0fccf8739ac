"""What the adapters and the relay tell stdlib `logging`.

The core (`plait`) never logs: its events and `plait.Stats` are the source, and an
adapter turns them into records here, off the per-datagram path. Loggers, all under
``plait.`` (the relay adds ``plait.relay``):

=================  ========  =====================================================
logger             level     what
=================  ========  =====================================================
``plait.session``  INFO      a session opens, is established, ends: with its reason
                             (`plait.CloseReason`); WARNING when it ended by a
                             timeout, a wrong psk or a role conflict
``plait.link``     WARNING   a link goes DOWN or DEGRADED; INFO when it is UP again
``plait.drops``    INFO      datagrams the endpoint dropped, by reason (malformed,
                             other session, replay, ...); WARNING for socket errors
                             and messages that expired. At most one record per kind
                             every `DROP_LOG_INTERVAL_NS`, with the counts since the
                             last one: a flood of junk costs one line per interval
=================  ========  =====================================================

Like any library, plait_adapters adds only a `logging.NullHandler` to ``plait``: an
application that configures logging sees the records, one that does not sees nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Final

import plait

__all__ = [
    "DROPS",
    "DROP_LOG_INTERVAL_NS",
    "LINK",
    "LOGGED",
    "SESSION",
    "CountLog",
    "DropLog",
    "log_event",
]

SESSION: Final = logging.getLogger("plait.session")
LINK: Final = logging.getLogger("plait.link")
DROPS: Final = logging.getLogger("plait.drops")
DROP_LOG_INTERVAL_NS: Final = 10_000_000_000
"""How often, at most, each kind of drop is logged (10 s)."""

logging.getLogger("plait").addHandler(logging.NullHandler())

_CLEAN: Final = frozenset({plait.CloseReason.APPLICATION})
LOGGED: Final = frozenset(
    {
        plait.LinkDown,
        plait.LinkDegraded,
        plait.LinkUp,
        plait.SessionEstablished,
        plait.SessionClosed,
        plait.UsableRateChanged,
    }
)
"""The event types `log_event` writes (a set lookup keeps the others cheap)."""


def log_event(event: plait.Event, session: int, runtime: str) -> None:
    """A record for a link or session event (messages, expiries and FEC rebuilds are
    counted, not logged one by one: `DropLog`)."""
    name = f"session {session:#010x}" if session else "session (not established)"
    match event:
        case plait.LinkDown(link=link):
            LINK.warning("link %d down (%s, %s)", link, name, runtime)
        case plait.LinkDegraded(link=link):
            LINK.warning("link %d degraded (%s, %s)", link, name, runtime)
        case plait.LinkUp(link=link):
            LINK.info("link %d up (%s, %s)", link, name, runtime)
        case plait.SessionEstablished(session=sid):
            SESSION.info("session %#010x established (%s)", sid, runtime)
        case plait.SessionClosed(code=code, by_peer=by_peer, reason=reason):
            level = logging.INFO if reason in _CLEAN else logging.WARNING
            SESSION.log(
                level,
                "%s ended: %s, by %s (code %d, %s)",
                name,
                reason.name.lower().replace("_", " "),
                "the peer" if by_peer else "this end",
                code,
                runtime,
            )
        case plait.UsableRateChanged(rate_bps=rate):
            SESSION.debug("%s: usable rate %d bit/s", name, rate)
        case _:
            pass


class CountLog:
    """Counters that only grow (drops by reason), logged as what grew since the last
    call: ``datagrams dropped: 12 (malformed: truncated header 10, other session 2)``.
    The caller rate-limits (`DropLog`, the relay's stats tick)."""

    __slots__ = ("_last", "level", "logger", "what")

    def __init__(self, logger: logging.Logger, level: int, what: str) -> None:
        self.logger, self.level, self.what = logger, level, what
        self._last: dict[str, int] = {}

    def update(self, counts: Mapping[str, int]) -> None:
        """Log the counts that grew since the last call, if any."""
        grew = {key: n - self._last.get(key, 0) for key, n in counts.items()}
        grew = {key: n for key, n in grew.items() if n > 0}
        self._last = dict(counts)
        if grew and self.logger.isEnabledFor(self.level):
            total = sum(grew.values())
            detail = ", ".join(f"{key} {n}" for key, n in sorted(grew.items()))
            self.logger.log(self.level, "%s %d (%s)", self.what, total, detail)


class DropLog:
    """An adapter session's drops, expiries and socket errors, rate-limited: `due_ns`
    is one comparison for the loop to make on every wake-up."""

    __slots__ = ("_datagrams", "_errors", "_expired", "due_ns", "interval_ns")

    def __init__(self, now: int, interval_ns: int = DROP_LOG_INTERVAL_NS) -> None:
        self.interval_ns = interval_ns
        self.due_ns = now + interval_ns
        self._datagrams = CountLog(DROPS, logging.INFO, "datagrams dropped:")
        self._errors = CountLog(DROPS, logging.WARNING, "socket errors:")
        self._expired = CountLog(DROPS, logging.WARNING, "messages expired:")

    def report(self, now: int, stats: Callable[[], plait.Stats], errors: Mapping[str, int]) -> None:
        """Log what grew since the last report; the next is due `interval_ns` later.
        `stats` is called only if a record could be written."""
        self.due_ns = now + self.interval_ns
        if not DROPS.isEnabledFor(logging.WARNING):
            return
        snapshot = stats()
        self._datagrams.update(snapshot.drops)
        self._errors.update(errors)
        self._expired.update(
            {
                "sending": snapshot.messages_expired_sending,
                "receiving": snapshot.messages_expired_receiving,
            }
        )
