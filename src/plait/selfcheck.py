"""A deterministic self-check of framing and sequence windows.

``plait selfcheck`` runs it (``plait demo`` runs whole sessions over the simulated
network instead): every packet type is built at random (from a seeded `random.Random`),
round-tripped through the wire format and mutated to check that only canonical
encodings are accepted; then a few links carry datagrams with loss, duplication and
reordering across the 16-bit wrap, and each receive window's counts are checked
against the truth.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs

from plait import wire
from plait.errors import MalformedPacket
from plait.seq import SEQ16, ReceiveWindow

__all__ = ["FramingResult", "LinkResult", "SelfCheckReport", "run"]


@attrs.frozen
class FramingResult:
    packets: int
    by_type: dict[str, int]
    round_trip_failures: int
    mutations: int
    mutations_rejected: int
    mutations_canonical: int
    mutation_failures: int

    @property
    def ok(self) -> bool:
        return self.round_trip_failures == 0 and self.mutation_failures == 0


@attrs.frozen
class LinkResult:
    link: int
    sent: int
    arrivals: int
    accepted: int
    duplicates_dropped: int
    reordered: int
    lost_true: int
    lost_counted: int
    unwrap_errors: int

    @property
    def ok(self) -> bool:
        return (
            self.unwrap_errors == 0
            and self.lost_true == self.lost_counted
            and self.accepted == self.sent - self.lost_true
        )


@attrs.frozen
class SelfCheckReport:
    seed: int
    framing: FramingResult
    links: tuple[LinkResult, ...]

    @property
    def ok(self) -> bool:
        return self.framing.ok and all(link.ok for link in self.links)


def _header(rng: random.Random, echo: bool | None = None) -> wire.Header:
    with_echo = rng.random() < 0.3 if echo is None else echo
    return wire.Header(
        session=rng.getrandbits(32),
        link_seq=rng.getrandbits(16),
        ts=rng.getrandbits(32),
        echo=wire.Echo(rng.getrandbits(32), rng.getrandbits(16)) if with_echo else None,
    )


def _data(rng: random.Random) -> wire.Body:
    count = 1 if rng.random() < 0.5 else rng.randint(2, 255)
    return wire.Data(
        seq=rng.getrandbits(32),
        deadline=rng.getrandbits(32),
        stream=rng.getrandbits(8),
        msg=rng.getrandbits(16),
        payload=rng.randbytes(rng.randint(0 if count == 1 else 1, 300)),
        frag_index=rng.randrange(count),
        frag_count=count,
    )


def _parity(rng: random.Random) -> wire.Body:
    k = rng.randint(1, 32)
    m = rng.randint(1, 8)
    return wire.Parity(
        base=rng.getrandbits(32),
        count=k,
        parity_count=m,
        index=rng.randrange(m),
        shard=rng.randbytes(rng.randint(1, 300)),
    )


def _feedback(rng: random.Random) -> wire.Body:
    links = tuple(
        wire.LinkReport(i, rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(16))
        for i in sorted(rng.sample(range(16), rng.randint(0, 6)))
    )
    if rng.random() < 0.1:
        return wire.Feedback(largest=0, first_run=0, links=links)
    ranges = tuple((rng.randint(1, 50), rng.randint(1, 500)) for _ in range(rng.randint(0, 10)))
    return wire.Feedback(
        largest=rng.getrandbits(32), first_run=rng.randint(1, 1000), ranges=ranges, links=links
    )


_MAKERS: dict[str, Callable[[random.Random], wire.Body]] = {
    "DATA": _data,
    "PARITY": _parity,
    "FEEDBACK": _feedback,
    "PROBE": lambda rng: wire.Probe(padding=rng.randint(0, 64)),
    "PROBE_ACK": lambda rng: wire.ProbeAck(),
    "HELLO": lambda rng: wire.Hello(nonce=rng.randbytes(16), response=rng.random() < 0.5),
    "CLOSE": lambda rng: wire.Close(code=rng.getrandbits(16)),
}


def check_framing(rng: random.Random, per_type: int, mutations_each: int) -> FramingResult:
    """Round-trip `per_type` random packets of every type, then mutate each encoding."""
    failures = rejected = canonical = mutation_failures = 0
    by_type = {}
    for name, make in _MAKERS.items():
        by_type[name] = per_type
        for _ in range(per_type):
            body = make(rng)
            packet = wire.Packet(_header(rng, True if name == "PROBE_ACK" else None), body)
            raw = wire.encode(packet)
            if wire.decode(raw) != packet:
                failures += 1
            for _ in range(mutations_each):
                mutated = bytearray(raw)
                for _ in range(rng.randint(1, 3)):
                    mutated[rng.randrange(len(mutated))] = rng.getrandbits(8)
                try:
                    again = wire.decode(bytes(mutated))
                except MalformedPacket:
                    rejected += 1
                    continue
                if wire.encode(again) == bytes(mutated):
                    canonical += 1
                else:
                    mutation_failures += 1
    return FramingResult(
        packets=per_type * len(_MAKERS),
        by_type=by_type,
        round_trip_failures=failures,
        mutations=per_type * len(_MAKERS) * mutations_each,
        mutations_rejected=rejected,
        mutations_canonical=canonical,
        mutation_failures=mutation_failures,
    )


def check_link(rng: random.Random, link: int, sent: int, loss: float, spread: float) -> LinkResult:
    """One link: per-link numbers from 300 below the 16-bit wrap, with loss, duplicates
    and reordering; the receive window must account for every datagram."""
    start = SEQ16.modulus - 300
    numbers = range(start, start + sent)
    survivors = [n for n in numbers if rng.random() >= loss]
    copies = survivors + [n for n in survivors if rng.random() < 0.02]
    arrivals = sorted(copies, key=lambda n: n + rng.random() * spread)
    window = ReceiveWindow(size=1024, start=start)
    unwrap_errors = 0
    for n in arrivals:
        unwrapped = window.unwrap(n & SEQ16.mask, SEQ16)
        unwrap_errors += unwrapped != n
        window.receive(unwrapped)
    highest = window.highest if window.highest is not None else start - 1
    in_window = sum(hi - lo + 1 for lo, hi in window.missing_ranges())
    return LinkResult(
        link=link,
        sent=sent,
        arrivals=len(arrivals),
        accepted=window.received,
        duplicates_dropped=window.duplicates,
        reordered=window.reordered,
        lost_true=sent - len(survivors),
        lost_counted=window.lost + in_window + (start + sent - 1 - highest),
        unwrap_errors=unwrap_errors,
    )


def run(seed: int = 1, *, per_type: int = 400, datagrams: int = 5000) -> SelfCheckReport:
    """The whole self-check; the same seed gives the same report."""
    rng = random.Random(seed)
    framing = check_framing(rng, per_type, mutations_each=3)
    links = tuple(
        check_link(rng, link, datagrams, loss=0.01 * (link + 1), spread=2.0 + 6 * link)
        for link in range(4)
    )
    return SelfCheckReport(seed=seed, framing=framing, links=links)


def render(report: SelfCheckReport) -> str:
    """A summary a person reads in five seconds."""
    f = report.framing
    lines = [
        f"plait self-check, seed {report.seed}: framing and sequence windows",
        "(whole sessions over a simulated network: plait demo)",
        "",
        f"framing  {f.packets} packets of {len(f.by_type)} types round-tripped, "
        f"{f.round_trip_failures} failures",
        f"         {f.mutations} mutated datagrams: {f.mutations_rejected} rejected as "
        f"malformed, {f.mutations_canonical} still valid and canonical, "
        f"{f.mutation_failures} failures",
        "windows  4 links, per-link counters starting 300 below the 16-bit wrap",
        "",
        "  link   sent  arrived  accepted  dups dropped  reordered  lost  lost counted  ok",
    ]
    lines.extend(
        f"  {r.link:>4} {r.sent:>6} {r.arrivals:>8} {r.accepted:>9} {r.duplicates_dropped:>13}"
        f" {r.reordered:>10} {r.lost_true:>5} {r.lost_counted:>13}  {'yes' if r.ok else 'NO'}"
        for r in report.links
    )
    lines += ["", "result: " + ("OK" if report.ok else "FAILED")]
    return "\n".join(lines)
