"""A small deterministic two-endpoint harness for the endpoint tests.

Links have a rate (FIFO serialization), a one-way delay (optionally per direction and
changing over time), Bernoulli loss, and can be cut from a given time. Everything runs
on a virtual clock driven by a heap; randomness comes from one seeded `random.Random`.
The full simulator with scenarios is `plait.sim`; this harness stays tiny on purpose.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable

import attrs

import plait

MS = 1_000_000


@attrs.define
class Path:
    """One link, one direction."""

    rate_bps: int = 10_000_000
    delay_ns: int = 20 * MS
    loss: float = 0.0
    jitter_ns: int = 0  # uniform extra delay per datagram: reorders within the link
    duplicate: float = 0.0  # chance a datagram arrives twice
    dead_from: int | None = None  # drop everything from this time on
    delay_fn: Callable[[int], int] | None = None  # delay as a function of send time
    free_at: int = 0
    carried: int = 0
    dropped: int = 0


@attrs.define
class Net:
    a: plait.Endpoint
    b: plait.Endpoint
    paths: dict[tuple[str, int], Path]  # ("ab" | "ba", link) -> path
    rng: random.Random
    now: int = 0
    events: dict[str, list[plait.Event]] = attrs.field(factory=lambda: {"a": [], "b": []})
    delivered: dict[str, list[tuple[int, plait.MessageReceived]]] = attrs.field(
        factory=lambda: {"a": [], "b": []}
    )
    sent_on: dict[str, list[tuple[int, int]]] = attrs.field(factory=lambda: {"a": [], "b": []})
    #: (time, link, packet type) of every datagram each side sent
    sent_types: dict[str, list[tuple[int, int, int]]] = attrs.field(
        factory=lambda: {"a": [], "b": []}
    )
    _heap: list[tuple[int, int, str, int, bytes]] = attrs.field(factory=list)
    _order: int = 0
    tamper: Callable[[bytes, int], bytes | None] | None = None  # applied on the wire

    @classmethod
    def build(
        cls,
        config: plait.Config,
        *,
        seed: int = 1,
        delays_ms: list[int] | None = None,
        loss: list[float] | None = None,
        jitter_ms: int = 0,
        duplicate: float = 0.0,
    ) -> Net:
        rng = random.Random(seed)
        n = len(config.links)
        delays = delays_ms or [10 + 10 * i for i in range(n)]
        losses = loss or [0.0] * n
        paths = {
            (d, i): Path(
                rate_bps=config.links[i].rate_bps or 10_000_000,  # unknown: a fast path
                delay_ns=delays[i] * MS,
                loss=losses[i],
                jitter_ns=jitter_ms * MS,
                duplicate=duplicate,
            )
            for d in ("ab", "ba")
            for i in range(n)
        }
        a = plait.Endpoint(config, initiator=True, now=0, rng=random.Random(seed * 7 + 1))
        b = plait.Endpoint(config, initiator=False, now=0, rng=random.Random(seed * 7 + 2))
        net = cls(a=a, b=b, paths=paths, rng=rng)
        net._flush("a")
        return net

    def ep(self, side: str) -> plait.Endpoint:
        return self.a if side == "a" else self.b

    def _flush(self, side: str) -> None:
        ep = self.ep(side)
        direction = "ab" if side == "a" else "ba"
        for datagram, link in ep.datagrams_to_send(now=self.now):
            self.sent_on[side].append((self.now, link))
            self.sent_types[side].append((self.now, link, datagram[0] & 0x0F))
            path = self.paths[(direction, link)]
            tx = (len(datagram) + 28) * 8 * 1_000_000_000 // path.rate_bps
            start = max(self.now, path.free_at)
            path.free_at = start + tx
            if path.dead_from is not None and self.now >= path.dead_from:
                path.dropped += 1
                continue
            if self.rng.random() < path.loss:
                path.dropped += 1
                continue
            delay = path.delay_fn(self.now) if path.delay_fn else path.delay_ns
            if path.jitter_ns:
                delay += self.rng.randrange(path.jitter_ns)
            if self.tamper is not None:
                changed = self.tamper(datagram, link)
                if changed is None:
                    continue
                datagram = changed  # noqa: PLW2901  (the wire delivers the tampered bytes)
            path.carried += 1
            peer = "b" if side == "a" else "a"
            copies = 2 if self.rng.random() < path.duplicate else 1
            for copy in range(copies):
                self._order += 1
                at = start + tx + delay + copy * self.rng.randrange(1, 5 * MS)
                heapq.heappush(self._heap, (at, self._order, peer, link, datagram))
        while (event := ep.next_event()) is not None:
            self.events[side].append(event)
            if isinstance(event, plait.MessageReceived):
                self.delivered[side].append((self.now, event))

    def send(self, side: str, data: bytes, **kw: object) -> int:
        handle = self.ep(side).send(data, now=self.now, **kw)  # type: ignore[arg-type]  # test passthrough
        self._flush(side)
        return handle

    def run_until(self, until: int, *, tick: Callable[[Net], None] | None = None) -> None:
        """Advance the clock to `until`, delivering datagrams and firing timers in order.
        A timer that stays due at one instant (handle_timer made no progress) fails."""
        stuck, last_timer = 0, -1
        while True:
            deadlines = [
                (d, s) for s in ("a", "b") if (d := self.ep(s).next_deadline()) is not None
            ]
            next_timer = min(deadlines) if deadlines else None
            next_arrival = self._heap[0][0] if self._heap else None
            candidates = [
                t for t in (next_arrival, next_timer[0] if next_timer else None) if t is not None
            ]
            if not candidates or min(candidates) > until:
                self.now = until
                return
            t = max(self.now, min(candidates))
            self.now = t
            if next_arrival is not None and next_arrival <= t:
                _, _, side, link, datagram = heapq.heappop(self._heap)
                self.ep(side).receive_datagram(datagram, link=link, now=t)
                self._flush(side)
            else:
                assert next_timer is not None
                side = next_timer[1]
                stuck = stuck + 1 if t == last_timer else 0
                last_timer = t
                if stuck > 1000:
                    raise AssertionError(f"{side}'s timer stays due at {t} (was {next_timer[0]})")
                self.ep(side).handle_timer(now=t)
                self._flush(side)
            if tick is not None:
                tick(self)
