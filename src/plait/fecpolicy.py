"""The sender's FEC policy: which code the next blocks use, and where their packets go.

* Spread: a link may carry at most ``max(m, ceil((k + m) / links))`` packets of one
  block, so that losing one link costs a block no more than m packets wherever the
  number of links allows it (with fewer links the cap is the even share). The cap is a
  preference for the link choice, never a reason to hold a packet back.
* Sizing: twice a second k, m and the flush deadline are re-chosen with
  `plait.fec.choose_params` from the links' rate-weighted loss, the mean loss burst, the
  traffic rate and the latency budget, within the configured maxima.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from plait.config import FecConfig
from plait.fec import BlockEncoder, choose_params
from plait.linkset import LinkSet
from plait.outbox import Item, Outbox
from plait.rs import ErasureCodec, default_codec

__all__ = ["FecSender", "codec"]

_TUNE_EVERY: Final = 500_000_000
_BLOCKS_TRACKED: Final = 8
_CODEC: list[ErasureCodec] = []  # one per process: stateless but for its caches


def codec() -> ErasureCodec:
    """The process's erasure codec (pyeclib's ISA-L when it self-tests, else portable)."""
    if not _CODEC:
        _CODEC.append(default_codec())
    return _CODEC[0]


def new_encoder(fec: FecConfig | None, latency_ns: int) -> BlockEncoder | None:
    """An encoder for `fec` (None: FEC off); the flush defaults to a quarter of the budget."""
    if fec is None:
        return None
    flush = fec.flush_ns if fec.flush_ns is not None else latency_ns // 4
    return BlockEncoder(codec(), fec.k, fec.m, flush)


class FecSender:
    """Spread and sizing of the blocks an `Outbox` sends."""

    __slots__ = ("_next_tune", "_spread", "config", "links", "outbox")

    def __init__(self, outbox: Outbox, links: LinkSet, config: FecConfig | None, now: int) -> None:
        self.outbox, self.links, self.config = outbox, links, config
        self._spread: dict[int, list[int]] = {}  # block base -> its datagrams per link
        self._next_tune = now

    def block_base(self, item: Item) -> int | None:
        """The block `item` belongs to (None: FEC off, or a repair)."""
        fec = self.outbox.fec
        if fec is None or item.kind == 1:
            return None
        if item.is_parity:
            return item.seq
        base = fec.block_base
        return self.outbox.next_seq if base is None else base

    def rule(self, item: Item) -> Callable[[int], bool] | None:
        """The links `item` should prefer (None: any)."""
        fec = self.outbox.fec
        base = self.block_base(item)
        if fec is None or base is None:
            return None
        counts = self._spread.get(base)
        if counts is None:
            return None
        cap = max(fec.m, -(-(fec.k + fec.m) // max(1, len(self.links.carrying()))))
        return lambda link: counts[link] < cap

    def on_sent(self, base: int | None, link: int) -> None:
        """A packet of block `base` went out on `link`."""
        if base is None:
            return
        counts = self._spread.setdefault(base, [0] * len(self.links))
        counts[link] += 1
        while len(self._spread) > _BLOCKS_TRACKED:
            del self._spread[next(iter(self._spread))]

    def due(self, now: int) -> bool:
        return now >= self._next_tune

    def tune(self, now: int, latency_ns: int) -> None:
        """Re-size the next blocks from what the links measured."""
        self._next_tune = now + _TUNE_EVERY
        fec, encoder = self.config, self.outbox.fec
        if fec is None or encoder is None or not fec.adaptive:
            return
        carrying = self.links.carrying()
        total = sum(ln.rate_bps for ln in carrying) or 1
        loss = sum(ln.health.loss * ln.rate_bps for ln in carrying) / total
        k, m, flush = choose_params(
            k_max=fec.k,
            m_max=fec.m,
            loss=loss,
            burst=self.outbox.burst,
            budget_ns=latency_ns,
            packet_interval_ns=max(1, (1200 * 8 * 1_000_000_000) // total),
        )
        encoder.set_params(k, m, fec.flush_ns if fec.flush_ns is not None else flush)
