"""Hostile traffic: junk datagrams pushed straight into an endpoint's receive path.

At Poisson times (`rate_per_s` on average, over both sides) the injector hands one
datagram to an endpoint's ``receive_datagram``, bypassing the links:

* **random**: random bytes, 0 to 1400 long;
* **truncated**: a real datagram seen earlier, cut short;
* **bitflip**: a copy of a real datagram with 1-8 bits flipped;
* **replay**: an exact copy of a real datagram seen earlier (up to `history` back),
  delivered later in time and, with probability `cross_link`, on another link.

Real datagrams are the ones the peer sent toward this endpoint; the injector keeps the
last `history` of each direction. A correct endpoint drops all of it (counting why),
raises nothing, and delivers every message exactly once.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from typing import Any

import attrs

from plait.errors import ConfigError
from plait.sim._protocol import Side

__all__ = ["HostileSpec", "Injector", "Junk"]


class Junk(enum.IntEnum):
    """The kinds of injected datagram."""

    RANDOM = 0
    TRUNCATED = 1
    BITFLIP = 2
    REPLAY = 3


def _non_negative(inst: object, attr: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ConfigError(f"{attr.name} must be >= 0, got {value}")


@attrs.frozen
class HostileSpec:
    """How much junk to inject, and of which kinds (relative weights)."""

    rate_per_s: float = attrs.field(default=200.0, validator=_non_negative)
    random: float = attrs.field(default=1.0, validator=_non_negative)
    truncated: float = attrs.field(default=1.0, validator=_non_negative)
    bitflip: float = attrs.field(default=1.0, validator=_non_negative)
    replay: float = attrs.field(default=2.0, validator=_non_negative)
    cross_link: float = 0.5
    """Chance that a replay goes to a different link than the original's."""
    history: int = 512

    def __attrs_post_init__(self) -> None:
        if self.random + self.truncated + self.bitflip + self.replay <= 0:
            raise ConfigError("at least one kind of junk needs a weight")
        if self.history <= 0:
            raise ConfigError("history must be > 0")


class Injector:
    """The live state of the hostile traffic of one run."""

    __slots__ = ("_cum", "_history", "_links", "_mean_gap", "_rng", "counts", "spec")

    def __init__(self, spec: HostileSpec, rng: random.Random, links: int) -> None:
        self.spec = spec
        self._rng = rng
        self._links = links
        self._mean_gap = 1e9 / spec.rate_per_s if spec.rate_per_s else 0.0
        weights = (spec.random, spec.truncated, spec.bitflip, spec.replay)
        total = sum(weights)
        acc = 0.0
        cum = []
        for w in weights:
            acc += w / total
            cum.append(acc)
        self._cum = cum
        # per receiving side: (link, datagram) heading to it
        self._history: tuple[deque[tuple[int, bytes]], ...] = (
            deque(maxlen=spec.history),
            deque(maxlen=spec.history),
        )
        self.counts = [0] * len(Junk)

    def observe(self, sender: Side, link: int, data: bytes) -> None:
        """Remember a real datagram `sender` put on `link`."""
        self._history[1 - sender].append((link, data))

    def next_time(self, now: int) -> int | None:
        """When the next injection is due (None: never)."""
        if not self._mean_gap:
            return None
        return now + 1 + int(self._rng.expovariate(1.0 / self._mean_gap))

    def make(self) -> tuple[Side, int, bytes, Junk]:
        """One junk datagram: ``(receiving side, link, bytes, kind)``."""
        rng = self._rng
        side = Side.A if rng.random() < 0.5 else Side.B
        history = self._history[side]
        draw = rng.random()
        kind = Junk(next((i for i, c in enumerate(self._cum) if draw < c), Junk.REPLAY))
        link = int(rng.random() * self._links)
        orig_link, real = history[int(rng.random() * len(history))] if history else (0, b"")
        if kind is Junk.RANDOM or not real:
            kind = Junk.RANDOM
            data = rng.randbytes(int(rng.random() * 1401))
        elif kind is Junk.TRUNCATED:
            data = real[: int(rng.random() * len(real))]
        elif kind is Junk.BITFLIP:
            out = bytearray(real)
            for _ in range(1 + int(rng.random() * 8)):
                bit = int(rng.random() * len(out) * 8)
                out[bit >> 3] ^= 1 << (bit & 7)
            data = bytes(out)
        else:
            data = real
            if self._links > 1 and rng.random() < self.spec.cross_link:
                link = (orig_link + 1 + int(rng.random() * (self._links - 1))) % self._links
            else:
                link = orig_link
        self.counts[kind] += 1
        return side, link, data, kind
