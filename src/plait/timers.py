"""The endpoint's timers: when it next needs a call (`next_deadline`) and what is due then
(`handle_timer`).

Rules:

* `next_deadline` is the earliest of every part's own deadline, each kept by its owner
  as its inputs change (`Outbox.deadline`, `Inbox.deadline`, the feedback timer, each
  link's `LinkHealth.due` and tail-loss timeout, the path MTU searches, the lifecycle,
  HELLO repeats), and, while something is queued, the time a pacer releases it. The
  links' part is looked up again only when one of its counters moved. A query: it may
  discard bookkeeping of what is already finished, and changes nothing else.
* `handle_timer` is safe early, late or twice. Called only because a pacer releases
  (that is `datagrams_to_send`'s business), it leaves every timer that is not due
  alone; it judges the links again all the same, as on every call: their health (a
  queue sample going stale, a good spell starting) and the path MTU's loss suspicion
  follow how often they are judged, and the simulator's digests with them.

`Endpoint` inherits these; they are here to keep the endpoint's module about the loop.
"""

from __future__ import annotations

from collections import deque
from typing import Final

from plait import checks
from plait._types import IntArg
from plait.config import Config
from plait.feedback import FeedbackTimer
from plait.handshake import Handshake
from plait.inbox import Inbox
from plait.lifecycle import Lifecycle
from plait.live import LiveChanges
from plait.pmtu import PathMtu
from plait.wire import PacketType, Probe, encode_body

__all__ = ["Timers"]

_NEVER: Final = 1 << 62
#: A datagram to send at the next `datagrams_to_send`: link, type, body, and its echo
#: (True: echo the latest timestamp received, False: if fresh, (ts, at): this one)
Control = tuple[int, PacketType, bytes, bool | tuple[int, int]]


class Timers(LiveChanges):
    """The timer methods of `plait.Endpoint`."""

    config: Config
    closed: bool
    initiator: bool
    inbox: Inbox
    _life: Lifecycle
    _hs: Handshake
    _pmtu: PathMtu
    _feedback: FeedbackTimer
    _hello_at: int
    _control: deque[Control]
    _timeouts: list[int]
    _timeouts_moved: int
    _due_timers: int
    _due_logs: int
    _due_timeouts: int
    _due_links: int
    _timer_work: int

    def next_deadline(self) -> int | None:
        """When `handle_timer` should next be called (absolute ns), or None. A pure query
        (it may discard bookkeeping of what is already finished). None once closed."""
        if self.closed:
            return None
        best = self._work_due()
        if self._hs.can_seal and self.outbox.pending() and self.links.carrying():
            t = self.links.wake_at or self.links.next_free()  # without: a link's recovery
            if t is not None and t < best:
                best = t
        return None if best == _NEVER else best

    def _work_due(self) -> int:
        """When `handle_timer` next has work: `next_deadline` but for the pacers
        (`_NEVER`: none). Each part is kept by its owner as its inputs change."""
        best = self._life.due
        t = self.outbox.deadline()
        if t is not None and t < best:
            best = t
        t = self.inbox.deadline()
        if t is not None and t < best:
            best = t
        t = self._feedback.due
        if t is not None and t < best:
            best = t
        if self._hs.can_seal:
            best = min(best, self._links_due(), self._pmtu.due)
        if self.initiator and not self._hs.locked:
            best = min(best, self._hello_at + self.config.health.probe_interval_ns)
        return best

    def _links_due(self) -> int:
        """The earliest of every link's own timer (`LinkHealth.due`) and its tail-loss
        timeout (its oldest record in flight + its `loss_timeout`): looked up again only
        when one of them may have moved."""
        links, outbox = self.links, self.outbox
        timers, logs = links.epoch.timers, outbox.logs_moved
        if (
            timers == self._due_timers
            and logs == self._due_logs
            and self._timeouts_moved == self._due_timeouts
        ):
            return self._due_links
        best, timeouts = _NEVER, self._timeouts
        for ln in links.links:
            t = ln.health.due
            best = min(best, t)
            oldest = outbox.oldest_unacked(ln.id)
            if oldest is not None and oldest + timeouts[ln.id] < best:
                best = oldest + timeouts[ln.id]
        self._due_timers, self._due_logs = timers, logs
        self._due_timeouts, self._due_links = self._timeouts_moved, best
        return best

    def handle_timer(self, *, now: IntArg) -> None:
        """Do whatever is due by `now`. Safe to call early, late or twice."""
        now = self._time.at(checks.ns("now", now))
        if self.closed:
            return
        # called only because a pacer releases (`datagrams_to_send`'s business), it leaves
        # alone every timer not due; the links are judged again all the same, as on every
        # call (their health and path MTU suspicion follow how often they are judged)
        work = now >= self._work_due() or self._fec.due(now)
        hc = self.config.health
        # until the responder has shown it holds our keys (an authenticated datagram other
        # than HELLO), keep repeating HELLO: a replayed old HELLO may have displaced our
        # session there while it was half-open, and this brings it back
        if (
            work
            and self.initiator
            and not self._hs.locked
            and now >= self._hello_at + hc.probe_interval_ns
        ):
            self._queue_hellos()
            self._hello_at = now
        if self._can_seal():
            for ln in self.links.links:
                if now >= ln.health.probe_at:
                    self._control.append((ln.id, PacketType.PROBE, encode_body(Probe()), False))
                    ln.health.on_probe_sent(now)
                ln.health.update(now)
            self._sync_states(now)
            if self._pmtu.on_timer(now, self.links):
                self._fit_payload(now)
        if not work:
            return
        self._timer_work += 1
        if self._feedback.due is not None and now >= self._feedback.due:
            self._queue_feedback(now)
        for ln in self.links.links:
            self.outbox.check_timeout(ln.id, now, self._timeouts[ln.id])
        self.outbox.on_timer(now)
        self.inbox.on_timer(now)
        if self._decoder is not None:
            self._decoder.expire(self.inbox.window.floor, now)
        if self._fec.due(now):
            self._fec.tune(now, self.latency_ns)
        self._life.on_timer(now)

    # --- what the endpoint does when a timer calls for it ---------------------------------

    def _can_seal(self) -> bool:
        raise NotImplementedError

    def _queue_hellos(self) -> None:
        raise NotImplementedError

    def _queue_feedback(self, now: int) -> None:
        raise NotImplementedError

    def _sync_states(self, now: int) -> None:
        raise NotImplementedError

    def _fit_payload(self, now: int) -> None:
        raise NotImplementedError
