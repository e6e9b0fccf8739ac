"""What the simulator drives: the endpoint interface, and the two sides of a session.

`EndpointLike` is the structural type of `plait.Endpoint` as the simulator uses it, so
the simulator can also drive a fake (the tests do) or a future implementation. The
simulator calls it exactly the way every plait adapter does: one input (`send`,
`receive_datagram` or `handle_timer`), then drain `datagrams_to_send`, then drain
`next_event`, then re-query `next_deadline`.
"""

from __future__ import annotations

import enum
import random
from typing import Protocol

from plait.config import Config

__all__ = ["EndpointFactory", "EndpointLike", "Side"]


class Side(enum.IntEnum):
    """One end of the simulated session. A initiates; a datagram sent by a side travels
    in that side's direction (A's datagrams go A→B)."""

    A = 0
    B = 1

    @property
    def peer(self) -> Side:
        """The other side."""
        return Side.B if self is Side.A else Side.A


class EndpointLike(Protocol):
    """The sans-I/O endpoint API the simulator drives (`plait.Endpoint` has this shape)."""

    def send(
        self, data: bytes, *, now: int, stream: int = 0, deadline: int | None = None
    ) -> object:
        """Queue one message and return its handle (an int that the sending side's
        `MessageExpired.handle` and `MessageUnconfirmed.handle` repeat), or None; may
        raise `plait.errors.BackpressureError`."""
        ...

    def datagrams_to_send(self, *, now: int) -> list[tuple[bytes, int]]:
        """The datagrams due by `now`, each with the id of the link it must go out on."""
        ...

    def receive_datagram(self, data: bytes, *, link: int, now: int) -> None:
        """Feed one datagram that arrived on `link`; never raises."""

    def next_event(self) -> object | None:
        """The next `plait.events.Event`, or None when there is none."""
        ...

    def next_deadline(self) -> int | None:
        """When `handle_timer` should next be called (a pure query), or None."""
        ...

    def handle_timer(self, *, now: int) -> None:
        """Do whatever is due by `now`; safe to call early, late or twice."""

    def stats(self) -> object:
        """A snapshot of the endpoint's counters (stored in the result as is)."""
        ...


class EndpointFactory(Protocol):
    """Builds one endpoint: ``factory(config, initiator, now, rng)``."""

    def __call__(
        self, config: Config, initiator: bool, now: int, rng: random.Random
    ) -> EndpointLike: ...
