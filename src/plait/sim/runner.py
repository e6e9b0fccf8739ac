"""The event loop: two endpoints, the links between them, traffic, and the checks.

One heap holds everything that will happen: datagram arrivals, endpoint timers, traffic
sends, hostile injections and outage marks, ordered by ``(time, sequence number)`` so
ties go in the order they were scheduled. Each step feeds one input to one endpoint and
then, like every plait adapter, drains ``datagrams_to_send`` onto the links, drains
``next_event`` into the checker, and re-arms that endpoint's timer if ``next_deadline``
changed. Nothing here reads a clock or draws from the global `random`: every random
choice comes from a `random.Random` seeded from ``(seed, component)``, so the same
scenario and seed replay the same run, byte for byte (`SimResult.digest`).
"""

from __future__ import annotations

import heapq
import importlib
import itertools
import random
from collections.abc import Callable, Iterator
from typing import Any, Final

import attrs

from plait._types import NS_PER_MS
from plait.config import Config
from plait.errors import BackpressureError
from plait.events import MessageExpired, MessageReceived, MessageUnconfirmed, SessionClosed
from plait.sim._protocol import EndpointFactory, EndpointLike, Side
from plait.sim.checker import Checker, Invariant
from plait.sim.hostile import Injector, Junk
from plait.sim.network import CORRUPTED, Path, outage_windows
from plait.sim.payload import deadline_of, encode
from plait.sim.result import SimResult
from plait.sim.scenarios import Scenario
from plait.sim.trace import Record, Trace
from plait.sim.traffic import TrafficItem

__all__ = ["SimResult", "default_endpoint", "run"]

_ARRIVE: Final = 0
_TIMER: Final = 1
_TRAFFIC: Final = 2
_INJECT: Final = 3
_OUTAGE: Final = 4
_SIDES: Final = (Side.A, Side.B)
_BUSY_LIMIT: Final = 1_000  # timer firings at one instant before it counts as stuck


def default_endpoint(config: Config, initiator: bool, now: int, rng: random.Random) -> EndpointLike:
    """Builds a real `plait.Endpoint` (imported only when a run needs it)."""
    endpoint_class = importlib.import_module("plait").Endpoint
    endpoint: EndpointLike = endpoint_class(config, initiator=initiator, now=now, rng=rng)
    return endpoint


def run(
    scenario: Scenario,
    *,
    seed: int,
    duration_ns: int | None = None,
    endpoint_factory: EndpointFactory | None = None,
    progress: Callable[[float], None] | None = None,
    trace_limit: int = 0,
) -> SimResult:
    """Simulate `scenario` with `seed` and check every invariant.

    Args:
        scenario: the links, impairments and traffic (see `plait.sim.SCENARIOS`).
        seed: any int; the run is a pure function of scenario, seed and endpoint code.
        duration_ns: how long traffic runs (default: the scenario's); the run then goes
            on for the scenario's `drain_ns`.
        endpoint_factory: ``factory(config, initiator, now, rng)`` building each side
            (default: `plait.Endpoint`).
        progress: called with the fraction of simulated time done, at most 101 times.
        trace_limit: keep this many trace records readable in `SimResult.trace`.

    Returns:
        the counters, the violations, and the trace digest.
    """
    sim = _Run(
        scenario,
        seed,
        scenario.duration_ns if duration_ns is None else duration_ns,
        endpoint_factory or default_endpoint,
        trace_limit,
    )
    return sim.loop(progress)


class _Run:
    """One run's state. Sides are plain ints (0 = A, 1 = B) on the hot path."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int,
        duration_ns: int,
        factory: EndpointFactory,
        trace_limit: int,
    ) -> None:
        def rng(name: str) -> random.Random:
            return random.Random(f"plait.sim/{seed}/{name}")

        self.scenario = scenario
        self.seed = seed
        self.start = start = scenario.clock_start_ns
        self.stop_traffic = start + duration_ns
        self.end = self.stop_traffic + scenario.drain_ns
        self.n_links = len(scenario.links)
        self.paths = tuple(
            tuple(
                Path(
                    spec.path(side),
                    rng(f"path/{side.name}/{i}"),
                    link=i,
                    direction=side,
                    epoch=start,
                    outages=outage_windows(scenario.outages, i, side, start),
                )
                for i, spec in enumerate(scenario.links)
            )
            for side in _SIDES
        )
        config = scenario.config()
        self.endpoints = (
            factory(config, True, start, rng("endpoint/A")),
            factory(config, False, start, rng("endpoint/B")),
        )
        self.checker = Checker()
        self.trace = Trace(trace_limit)
        self.heap: list[tuple[int, int, int, Any, Any, Any]] = []
        self.seq = itertools.count()
        self.armed: list[int | None] = [None, None]
        self.generation = [0, 0]
        self.busy = [(-1, 0), (-1, 0)]  # (time, firings at that time) per side
        self.stuck = [False, False]
        self.backpressured = 0
        self.steps = 0
        self.next_index: tuple[dict[int, int], dict[int, int]] = ({}, {})
        self.events: tuple[dict[str, int], dict[str, int]] = ({}, {})

        traffic_start = start + scenario.warmup_ns
        self.senders = [int(t.sender) for t in scenario.traffic]
        self.sources: list[Iterator[TrafficItem]] = [
            t.schedule(rng(f"traffic/{i}"), traffic_start, self.stop_traffic, scenario.latency_ns)
            for i, t in enumerate(scenario.traffic)
        ]
        for i, source in enumerate(self.sources):
            item = next(source, None)
            if item is not None:
                self.push(item[0], _TRAFFIC, i, item)
        self.injector: Injector | None = None
        if scenario.hostile is not None:
            self.injector = Injector(scenario.hostile, rng("hostile"), self.n_links)
            first = self.injector.next_time(start)
            if first is not None:
                self.push(first, _INJECT)
        for i, outage in enumerate(scenario.outages):
            self.push(start + outage.start_ns, _OUTAGE, i, 1)
            self.push(start + outage.end_ns, _OUTAGE, i, 0)

    def push(self, time: int, kind: int, a: Any = None, b: Any = None, c: Any = None) -> None:
        heapq.heappush(self.heap, (time, next(self.seq), kind, a, b, c))

    # -- the loop ---------------------------------------------------------------------

    def loop(self, progress: Callable[[float], None] | None) -> SimResult:
        start, end = self.start, self.end
        span = max(1, end - start)
        next_report = start
        self.after(0, start)
        self.after(1, start)
        heap = self.heap
        pop = heapq.heappop
        handlers = (self.arrive, self.timer, self.traffic, self.inject, self.outage)
        while heap and heap[0][0] <= end:
            now, _, kind, a, b, c = pop(heap)
            self.steps += 1
            if progress is not None and now >= next_report:
                progress((now - start) / span)
                next_report = now + span // 100
            handlers[kind](now, a, b, c)
        if progress is not None:
            progress(1.0)
        self.checker.finish(end, self.scenario.grace_ns)
        return self.result()

    def after(self, side: int, now: int, floor: int | None = None) -> None:
        """Drain one endpoint after an input: datagrams, events, then its timer."""
        endpoint = self.endpoints[side]
        for data, link in endpoint.datagrams_to_send(now=now):
            self.transmit(side, link, data, now)
        event = endpoint.next_event()
        while event is not None:
            self.on_event(side, event, now)
            event = endpoint.next_event()
        deadline = endpoint.next_deadline()
        if deadline != self.armed[side]:
            self.armed[side] = deadline
            self.generation[side] += 1
            if deadline is not None:
                floor = now if floor is None else floor
                self.push(max(deadline, floor), _TIMER, side, self.generation[side])

    def transmit(self, side: int, link: int, data: bytes, now: int) -> None:
        if not 0 <= link < self.n_links:
            self.checker.flag(Invariant.BAD_LINK, now, _SIDES[side], detail=f"link {link}")
            return
        fate, arrival, out, dup_arrival = self.paths[side][link].transmit(data, now)
        self.trace.add(
            Record.NET, now, side, link, fate, arrival, data + out if fate & CORRUPTED else data
        )
        if arrival >= 0:
            self.push(arrival, _ARRIVE, 1 - side, link, out)
            if dup_arrival >= 0:
                self.push(dup_arrival, _ARRIVE, 1 - side, link, out)
        if self.injector is not None:
            self.injector.observe(_SIDES[side], link, data)

    def receive(self, side: int, link: int, data: bytes, now: int) -> None:
        try:
            self.endpoints[side].receive_datagram(data, link=link, now=now)
        except Exception as exc:  # a violation to report, not a reason to stop
            self.checker.flag(
                Invariant.RECEIVE_RAISED, now, _SIDES[side], detail=f"{type(exc).__name__}: {exc}"
            )
        self.after(side, now)

    def on_event(self, side: int, event: object, now: int) -> None:
        counts = self.events[side]
        name = type(event).__name__
        counts[name] = counts.get(name, 0) + 1
        if isinstance(event, MessageReceived):
            self.trace.add(Record.RECEIVED, now, side, event.stream, event.msg, len(event.data))
            self.checker.on_received(_SIDES[side], event.data, event.stream, event.msg, now)
        elif isinstance(event, MessageExpired):
            for msg in range(event.msg, event.msg + event.count):  # a receiver's run
                self.trace.add(Record.EXPIRED, now, side, event.stream, msg, event.sent)
                self.checker.on_expired(
                    _SIDES[side], event.stream, msg, event.sent, now, event.handle
                )
        elif isinstance(event, MessageUnconfirmed):
            self.trace.add(Record.UNCONFIRMED, now, side, event.stream, event.msg, event.handle)
            self.checker.on_unconfirmed(_SIDES[side], event.stream, event.msg, event.handle, now)
        else:
            described = repr(event) if attrs.has(type(event)) else name
            self.trace.add(Record.EVENT, now, side, blob=described.encode())
            if isinstance(event, SessionClosed):
                self.checker.flag(Invariant.SESSION_CLOSED, now, _SIDES[side], detail=described)

    # -- handlers, one per kind of heap entry -----------------------------------------

    def arrive(self, now: int, side: int, link: int, data: bytes) -> None:
        path = self.paths[1 - side][link]
        path.carried += 1
        path.carried_bytes += len(data)
        self.trace.add(Record.ARRIVE, now, side, link, len(data))
        self.receive(side, link, data, now)

    def timer(self, now: int, side: int, generation: int, unused: None) -> None:
        if generation != self.generation[side]:
            return  # re-armed since
        self.armed[side] = None
        self.generation[side] += 1
        at, count = self.busy[side]
        count = count + 1 if at == now else 1
        self.busy[side] = (now, count)
        self.trace.add(Record.TIMER, now, side)
        self.endpoints[side].handle_timer(now=now)
        if count == _BUSY_LIMIT and not self.stuck[side]:
            self.checker.flag(Invariant.BUSY_TIMER, now, _SIDES[side])
            self.stuck[side] = True
        # a stuck endpoint's timer is served at most once a millisecond from then on
        self.after(side, now, now + NS_PER_MS if self.stuck[side] else None)

    def traffic(self, now: int, source: int, item: TrafficItem, unused: None) -> None:
        _, stream, size, budget = item
        side = self.senders[source]
        index = self.next_index[side].get(stream, 0)
        deadline = deadline_of(now, budget)
        try:
            handle = self.endpoints[side].send(
                encode(stream, index, now, budget, size), now=now, stream=stream, deadline=deadline
            )
        except BackpressureError:
            self.backpressured += 1
            self.trace.add(Record.BACKPRESSURE, now, side, stream, size)
        else:
            self.next_index[side][stream] = index + 1
            handle = handle if isinstance(handle, int) else -1
            self.checker.on_sent(_SIDES[side], stream, index, deadline, handle)
            self.trace.add(Record.SEND, now, side, stream, index, deadline)
        self.after(side, now)
        upcoming = next(self.sources[source], None)
        if upcoming is not None:
            self.push(max(upcoming[0], now), _TRAFFIC, source, upcoming)

    def inject(self, now: int, _a: None, _b: None, _c: None) -> None:
        assert self.injector is not None  # only scheduled when there is one
        side, link, data, kind = self.injector.make()
        self.trace.add(Record.INJECT, now, side, link, kind, len(data), data)
        self.receive(side, link, data, now)
        upcoming = self.injector.next_time(now)
        if upcoming is not None:
            self.push(upcoming, _INJECT)

    def outage(self, now: int, index: int, starts: int, unused: None) -> None:
        outage = self.scenario.outages[index]
        self.trace.add(
            Record.OUTAGE,
            now,
            -1 if outage.link is None else outage.link,
            -1 if outage.direction is None else outage.direction,
            starts,
        )

    def result(self) -> SimResult:
        checker = self.checker
        injected: dict[str, int] = {}
        if self.injector is not None:
            injected = {kind.name.lower(): self.injector.counts[kind] for kind in Junk}
        return SimResult(
            scenario=self.scenario.name,
            seed=self.seed,
            start_ns=self.start,
            end_ns=self.end,
            digest=self.trace.hexdigest(),
            sent=checker.sent,
            delivered=checker.delivered,
            expired=checker.expired,
            in_flight=checker.in_flight,
            backpressured=self.backpressured,
            latencies=tuple(sorted(checker.latencies)),
            deliveries=tuple(sorted((t - self.start, lat) for t, lat in checker.deliveries)),
            links=tuple(path.stats() for paths in self.paths for path in paths),
            injected=injected,
            events=self.events,
            violations=tuple(checker.violations),
            violation_counts=dict(checker.counts),
            endpoint_stats=(self.endpoints[0].stats(), self.endpoints[1].stats()),
            steps=self.steps,
            trace=tuple(self.trace.records),
        )
