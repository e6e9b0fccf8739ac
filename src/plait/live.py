"""Live changes to a running endpoint: link ceilings, weights, scheduling, the latency
budget, FEC. Each takes effect at once, without reconnecting, and refuses a bad value
with a `UsageError` before anything changes (times in int ns, rates in int bit/s).

`Endpoint` inherits these; they are here to keep the endpoint's module about the loop.
"""

from __future__ import annotations

from plait import checks
from plait._types import IntArg
from plait.clock import CallerTime
from plait.config import MAX_RATE_BPS, MIN_RATE_BPS, FecConfig, Scheduling, check_budget
from plait.errors import UsageError
from plait.fec import BlockDecoder
from plait.fecpolicy import FecSender, new_decoder, new_encoder
from plait.linkset import LinkSet
from plait.outbox import Outbox

__all__ = ["LiveChanges"]


class LiveChanges:
    """The live-change methods of `plait.Endpoint`."""

    links: LinkSet
    outbox: Outbox
    latency_ns: int
    _fec: FecSender
    _decoder: BlockDecoder | None
    _time: CallerTime

    def set_link_rate(self, link: IntArg, rate_bps: IntArg | None) -> None:
        """Set a link's ceiling (bit/s; None: none) without reconnecting. A number is
        also taken as its rate until measurement says otherwise (`plait.capacity`)."""
        if type(link) is not int or not 0 <= link < len(self.links.links):
            raise UsageError(f"no link {link!r}")
        if rate_bps is not None and (
            type(rate_bps) is not int or not MIN_RATE_BPS <= rate_bps <= MAX_RATE_BPS
        ):
            raise UsageError(f"rate_bps must be None or an int in {MIN_RATE_BPS}..{MAX_RATE_BPS}")
        self.links.set_rate(link, rate_bps)

    def set_adaptive_weights(self, adaptive: bool) -> None:
        """Switch between configured and measured link weights, at once."""
        if type(adaptive) is not bool:
            raise UsageError(f"adaptive must be a bool, got {adaptive!r}")
        self.links.adaptive = adaptive
        self.links.update_weights()

    def set_scheduling(self, scheduling: Scheduling) -> None:
        """Switch how each packet's link is picked (`Scheduling`), at once."""
        try:
            self.links.scheduling = Scheduling(scheduling)
        except ValueError:
            raise UsageError(f"scheduling must be a plait.Scheduling, got {scheduling!r}") from None

    def set_latency(self, latency_ns: IntArg) -> None:
        """Change the default deadline budget for messages sent from now on (int ns, >= 1 ms
        and at most 30 minutes, what the wire's deadline field carries)."""
        latency_ns = checks.ns("latency_ns", latency_ns)
        if latency_ns < 1_000_000:
            raise UsageError(f"latency_ns is in ns and must be >= 1 ms (1_000_000): {latency_ns}")
        check_budget(latency_ns, "latency_ns")
        self.latency_ns = latency_ns

    def set_fec(self, fec: FecConfig | None, *, now: IntArg) -> None:
        """Change FEC for blocks started from now on (None: off); the open block is flushed."""
        if fec is not None and not isinstance(fec, FecConfig):
            raise UsageError("fec must be a FecConfig or None")
        now = checks.ns("now", now)
        self.outbox.flush_fec(self._time.at(now), force=True)
        self._fec.config = fec
        self.outbox.fec = new_encoder(fec, self.latency_ns)
        if fec is not None and self._decoder is None:
            self._decoder = new_decoder(self.latency_ns)
