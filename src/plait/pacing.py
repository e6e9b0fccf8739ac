"""Per-link pacing by next-release time, in integer nanoseconds.

Each link releases datagrams no faster than its rate, so its bottleneck queue never
builds: a datagram of ``s`` bytes occupies the link for ``(s + overhead) * 8 / rate``
seconds, and the next one may start only after it (the same model as Linux's fq pacing
and BBR's pacing rate). The size counted includes the IP+UDP header (28 bytes IPv4, 48
IPv6). After an idle spell up to `burst_ns` of credit is kept, so a timer that fires a
little late does not cost capacity, and the bottleneck queue stays under `burst_ns`.

`reserve()` books the link for one datagram and returns its release time; it may lie in
the future, and then the datagram waits in the sender's per-link queue. The pacing
backlog (`backlog_ns`) is what an earliest-arrival scheduler adds to a link's delay.
"""

from __future__ import annotations

from plait._types import NS_PER_MS, NS_PER_S
from plait.errors import ConfigError

__all__ = ["Pacer"]


class Pacer:
    """Next-release-time pacer for one link."""

    __slots__ = ("_next", "burst_ns", "overhead", "rate_bps")

    def __init__(
        self, rate_bps: int, *, overhead: int = 28, burst_ns: int = NS_PER_MS, now: int = 0
    ) -> None:
        if rate_bps <= 0 or overhead < 0 or burst_ns < 0:
            raise ConfigError("pacer needs rate_bps > 0, overhead >= 0, burst_ns >= 0")
        self.rate_bps = rate_bps
        self.overhead = overhead
        self.burst_ns = burst_ns
        self._next = now - burst_ns

    def tx_ns(self, size: int) -> int:
        """Nanoseconds a datagram of `size` payload bytes occupies the link (rounded up)."""
        return ((size + self.overhead) * 8 * NS_PER_S + self.rate_bps - 1) // self.rate_bps

    def next_release(self, now: int) -> int:
        """The earliest time (>= now) at which the next datagram may leave."""
        release = self._next
        return release if release > now else now

    @property
    def free_at(self) -> int:
        """When the link is free of everything booked so far (may be in the past)."""
        return self._next

    def ready(self, now: int) -> bool:
        """True when a datagram may leave at `now`."""
        return self._next <= now

    def backlog_ns(self, now: int) -> int:
        """How long datagrams already booked keep the link busy after `now`."""
        return max(0, self._next - now)

    def reserve(self, size: int, now: int) -> int:
        """Book the link for a datagram of `size` payload bytes; return its release time."""
        earliest, rate = now - self.burst_ns, self.rate_bps
        start = self._next if self._next > earliest else earliest
        self._next = start + ((size + self.overhead) * 8 * NS_PER_S + rate - 1) // rate  # tx_ns
        return start if start > now else now

    def hold_until(self, until: int) -> None:
        """Release nothing before `until`: the link's bottleneck is still draining what
        was sent (`plait.capacity`)."""
        self._next = max(self._next, until)

    def set_rate(self, rate_bps: int) -> None:
        """Change the rate; datagrams booked from now on use it."""
        if rate_bps <= 0:
            raise ConfigError("rate_bps must be > 0")
        self.rate_bps = rate_bps
