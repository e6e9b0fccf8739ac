"""A session's lifecycle: its states, its two timeouts, and why it ended.

States run one way: CONNECTING -> ESTABLISHED -> CLOSING -> CLOSED (CLOSING only when
`Endpoint.close` lingers; any state may go straight to CLOSED). A session ends once,
with one `SessionClosed` whose `CloseReason` says why:

* ``close()`` lingers (like SRT's SRTO_LINGER, QUIC's draining): messages already handed
  over keep going until each is acknowledged or reaches its deadline, then CLOSE goes
  out. ``close(abort=True)``, the peer's CLOSE and the timeouts end it at once.
* handshake timeout: not established within `Config.handshake_timeout_ns` of the
  endpoint's creation. What was heard meanwhile names the cause: HELLOs that failed
  authentication (a peer with another psk), HELLO requests at an initiator (both ends
  initiators), or nothing (no peer; both ends responders).
* idle timeout: established, and every link DOWN for `Config.idle_timeout_ns`.

Either way, every message the application handed over ends as delivered
(acknowledged) or reported to the sender (`Outbox.settle_all`). `Lifecycle` keeps the
times and counts and decides; the endpoint acts. It reads no clock.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Final

from plait._types import IntArg
from plait.config import Config
from plait.errors import AuthenticationFailed, UsageError
from plait.events import CloseReason, Event, SessionClosed
from plait.handshake import Handshake
from plait.inbox import Inbox
from plait.links import LinkState
from plait.linkset import Link
from plait.outbox import Outbox
from plait.wire import Buffer, Hello

__all__ = ["Lifecycle", "SessionState"]

_NEVER: Final = 1 << 62


class SessionState(enum.IntEnum):
    """Where a session is in its life (`Endpoint.state`)."""

    CONNECTING = 0
    """The HELLO exchange has not completed."""
    ESTABLISHED = 1
    """Both ends hold the session; messages flow."""
    CLOSING = 2
    """`close()` was called: no new messages; those handed over finish (linger)."""
    CLOSED = 3
    """Ended (`SessionClosed` was emitted); nothing more is sent or accepted."""


class Lifecycle:
    """The state, the timeouts' clocks, the handshake's failure counts, and the end."""

    __slots__ = (
        "_born",
        "_down_since",
        "_emit",
        "_handshake_ns",
        "_idle_ns",
        "_inbox",
        "_on_end",
        "_outbox",
        "code",
        "due",
        "hellos_unauthenticated",
        "role_conflicts",
        "state",
    )

    def __init__(
        self,
        config: Config,
        now: int,
        outbox: Outbox,
        inbox: Inbox,
        emit: Callable[[Event], None],
        on_end: Callable[[int, bool], None],
    ) -> None:
        self._outbox, self._inbox = outbox, inbox
        self._emit, self._on_end = emit, on_end
        self._handshake_ns = config.handshake_timeout_ns
        self._idle_ns = config.idle_timeout_ns
        self._born = now
        self._down_since = -1  # when every link went DOWN (-1: not all are)
        self.state = SessionState.CONNECTING
        self.due = _NEVER
        """`deadline()`, kept (`_NEVER`: none): the endpoint reads it on every query."""
        self._refresh()
        self.code = 0
        """The code `close()` was given, sent in CLOSE when lingering ends."""
        self.hellos_unauthenticated = 0
        """HELLOs that failed authentication: a peer with another psk (or forgeries)."""
        self.role_conflicts = 0
        """HELLO requests that reached this initiator: the peer is an initiator too."""

    def established(self) -> None:
        if self.state is SessionState.CONNECTING:
            self.state = SessionState.ESTABLISHED
            self._refresh()

    def on_links(self, links: Sequence[Link], now: int) -> None:
        """Link states changed: start or stop the idle clock."""
        if all(ln.health.state is LinkState.DOWN for ln in links):
            if self._down_since < 0:
                self._down_since = now
        else:
            self._down_since = -1
        self._refresh()

    def _refresh(self) -> None:
        due = self.deadline()
        self.due = _NEVER if due is None else due

    def deadline(self) -> int | None:
        """When a timeout ends the session, if nothing changes (None: never)."""
        state = self.state
        if state is SessionState.CONNECTING:
            return None if self._handshake_ns is None else self._born + self._handshake_ns
        if state is SessionState.CLOSED or self._idle_ns is None or self._down_since < 0:
            return None
        return self._down_since + self._idle_ns

    def timed_out(self, now: int) -> CloseReason | None:
        """The reason the session ends at `now`, if a timeout was reached."""
        due = self.deadline()
        if due is None or now < due:
            return None
        if self.state is not SessionState.CONNECTING:
            return CloseReason.IDLE_TIMEOUT
        if self.role_conflicts:
            return CloseReason.ROLE_CONFLICT
        if self.hellos_unauthenticated:
            return CloseReason.WRONG_PSK
        return CloseReason.HANDSHAKE_TIMEOUT

    # --- the end -----------------------------------------------------------------------------

    def close(self, code: IntArg, abort: bool, now: int) -> None:
        """`Endpoint.close`: linger (CLOSING), or with `abort` end now."""
        if type(code) is not int or not 0 <= code <= 0xFFFF:
            raise UsageError(f"code must be an int in 0..65535, got {code!r}")
        if self.state is SessionState.CLOSED:
            return
        self.code = code
        if abort:
            self.end(CloseReason.ABORTED, code, now, by_peer=False)
        else:
            self.state = SessionState.CLOSING
            self._refresh()
            self.linger(now)

    def on_timer(self, now: int) -> None:
        """End the session if a timeout was reached or lingering is over."""
        if now >= self.due:
            reason = self.timed_out(now)
            if reason is not None:
                self.end(reason, 0, now, by_peer=False)
        self.linger(now)

    def linger(self, now: int) -> None:
        """Lingering ends once every message handed over is delivered or reported."""
        if self.state is SessionState.CLOSING and not self._outbox.stats.unsettled:
            self.end(CloseReason.APPLICATION, self.code, now, by_peer=False)

    def end(self, reason: CloseReason, code: int, now: int, *, by_peer: bool) -> None:
        """The session ends: report what is left on both sides (the inbox delivers what
        is complete: nothing more will come), CLOSE to the peer, `SessionClosed`."""
        if self.state is SessionState.CLOSED:
            return
        self._outbox.settle_all()
        self._inbox.flush(now)
        self._on_end(code, by_peer)
        self.state = SessionState.CLOSED
        self.due = _NEVER
        self._emit(SessionClosed(code=code, by_peer=by_peer, reason=reason))

    def open_hello(
        self, hs: Handshake, data: Buffer, offset: int, link: int, seq: int
    ) -> Hello | None:
        """`Handshake.open_hello`, counting what tells a misconfiguration from silence:
        HELLOs that fail authentication, and HELLO requests reaching an initiator."""
        connecting = self.state is SessionState.CONNECTING
        try:
            hello = hs.open_hello(data, offset, link, seq)
        except AuthenticationFailed:
            if connecting and hs.opens_as_request(data, offset, link, seq):
                self.role_conflicts += 1
            else:
                self.hellos_unauthenticated += 1
            raise
        if connecting and hello is not None and hs.initiator and not hello.response:
            self.role_conflicts += 1
        return hello
