"""FEC block logic: systematic Reed-Solomon over consecutive DATA records.

Sender (`BlockEncoder`): every DATA record goes out at once, since data is never held
back for parity. A block is the records with data sequence ``base .. base + k' - 1``. Its
m parity shards go out when k records are in, or when the block's flush deadline passes
with k' < k (at 2 Mbps, waiting for ten 1200-byte packets would cost 48 ms).

Receiver (`BlockDecoder`): keeps recent records and open blocks, both bounded in count
and in bytes (a peer holding the key may send 65 kB records and parity for blocks that
never existed), and both released once `hold_ns` old. As soon as any k' shards of a
block are in, it rebuilds the missing records and hands them on. Shards of unequal
length work: each data shard is ``u16 length || record``, zero-padded to the block's
longest (wire-format.md section 9). A rebuilt shard whose
length prefix or padding does not check out is never handed on.

How much parity a block gets is the protection policy's choice (`plait.protection`,
`plait.fecpolicy`).
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from plait.errors import UsageError
from plait.rs import ErasureCodec
from plait.wire import MAX_BLOCK_SHARDS, Parity

__all__ = ["BlockDecoder", "BlockEncoder", "FecStats", "shards_of"]

_LEN: Final = struct.Struct("!H")


def shards_of(records: Sequence[bytes]) -> list[bytes]:
    """Data shards of a block: ``u16 len || record``, zero-padded to the longest."""
    width = 2 + max(len(r) for r in records)
    return [_LEN.pack(len(r)) + r + bytes(width - 2 - len(r)) for r in records]


def _record_of(shard: bytes) -> bytes | None:
    """The record inside a rebuilt shard, or None if its prefix or padding is wrong."""
    if len(shard) < _LEN.size:
        return None
    (length,) = _LEN.unpack_from(shard)
    end = 2 + length
    if end > len(shard) or shard.count(0, end) != len(shard) - end:
        return None
    return shard[2:end]


class FecStats:
    """Counters of one direction's FEC; `overhead` is parity bytes / data bytes."""

    __slots__ = (
        "blocks_complete",
        "blocks_lost",
        "blocks_recovered",
        "blocks_sent",
        "data_bytes",
        "dropped",
        "parity_bytes",
        "parity_received",
        "parity_sent",
        "recovered",
    )

    def __init__(self) -> None:
        self.blocks_sent = self.parity_sent = self.parity_bytes = self.data_bytes = 0
        self.parity_received = self.recovered = 0
        self.blocks_complete = self.blocks_recovered = self.blocks_lost = 0
        self.dropped: dict[str, int] = {}

    def drop(self, reason: str) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    @property
    def overhead(self) -> float:
        return self.parity_bytes / self.data_bytes if self.data_bytes else 0.0


class BlockEncoder:
    """Groups outgoing DATA records into blocks and computes their parity."""

    __slots__ = (
        "_base",
        "_block",
        "_opened_at",
        "_records",
        "codec",
        "flush_ns",
        "k",
        "m",
        "parity_for",
        "stats",
    )

    def __init__(self, codec: ErasureCodec, k: int, m: int, flush_ns: int) -> None:
        self.codec = codec
        self.parity_for: Callable[[int], int] | None = None
        """The parity a block flushed with fewer records than its k needs (at most its
        m; None: its m)."""
        self.stats = FecStats()
        self._records: list[bytes] = []
        self._base = 0
        self._opened_at = 0
        self._block = (0, 0, 0)  # (k, m, flush_ns) of the open block
        self.k = self.m = self.flush_ns = 0
        self.set_params(k, m, flush_ns)

    def set_params(self, k: int, m: int, flush_ns: int) -> None:
        """New code parameters; the open block keeps its own, the next block uses these.
        ``m == 0``: no FEC for now (records start no block until parity is wanted)."""
        if not (k >= 1 and m >= 0 and k + m <= MAX_BLOCK_SHARDS and flush_ns >= 0):
            raise UsageError(f"bad FEC parameters k={k} m={m} flush_ns={flush_ns}")
        self.k, self.m, self.flush_ns = k, m, flush_ns

    @property
    def open_count(self) -> int:
        """Records in the open block (0: no block open)."""
        return len(self._records)

    @property
    def block_base(self) -> int | None:
        """Data sequence of the open block's first record, if a block is open."""
        return self._base if self._records else None

    def add(self, seq: int, record: bytes, now: int) -> list[Parity]:
        """Add the record just sent with data sequence `seq` (one more than the last);
        returns the block's parity if this record completes it."""
        if not self._records:
            if not self.m:
                return []  # no FEC for now: nothing to keep
            self._base, self._opened_at = seq, now
            self._block = (self.k, self.m, self.flush_ns)
        elif seq != self._base + len(self._records):
            raise UsageError(f"record {seq} does not follow {self._base + len(self._records) - 1}")
        self._records.append(record)
        self.stats.data_bytes += len(record)
        return self._close() if len(self._records) >= self._block[0] else []

    def deadline(self) -> int | None:
        """When the open block must be flushed, if one is open."""
        return self._opened_at + self._block[2] if self._records else None

    def on_timer(self, now: int) -> list[Parity]:
        """Flush the open block if its deadline has passed."""
        if self._records and now >= self._opened_at + self._block[2]:
            return self._close()
        return []

    def flush(self) -> list[Parity]:
        """Close the open block now, whatever its size."""
        return self._close() if self._records else []

    def _close(self) -> list[Parity]:
        records, self._records = self._records, []
        k, m = len(records), self._block[1]
        if k < self._block[0] and self.parity_for is not None:
            m = min(m, self.parity_for(k))
            if not m:
                return []
        parity = self.codec.parity(k, m, shards_of(records))
        stats = self.stats
        stats.blocks_sent += 1
        stats.parity_sent += len(parity)
        stats.parity_bytes += sum(map(len, parity))
        return [
            Parity(base=self._base, count=k, parity_count=m, index=i, shard=shard)
            for i, shard in enumerate(parity)
        ]


class _Block:
    __slots__ = ("base", "k", "m", "nbytes", "opened_at", "parity", "width")

    def __init__(self, base: int, k: int, m: int, width: int, now: int) -> None:
        self.base, self.k, self.m, self.width = base, k, m, width
        self.opened_at = now
        self.parity: dict[int, bytes] = {}
        self.nbytes = 0


class BlockDecoder:
    """Rebuilds lost DATA records from parity. Memory is bounded by `max_blocks` open
    blocks holding at most `max_parity_bytes` of parity and `max_records` stored records
    of at most `max_record_bytes` (the oldest of each are evicted, and counted); `expire`
    with a time releases what is older than `hold_ns`."""

    __slots__ = (
        "_arrivals",
        "_blocks",
        "_member",
        "_records",
        "codec",
        "hold_ns",
        "max_blocks",
        "max_k",
        "max_m",
        "max_parity_bytes",
        "max_record_bytes",
        "max_records",
        "parity_bytes",
        "record_bytes",
        "stats",
    )

    def __init__(
        self,
        codec: ErasureCodec,
        *,
        max_blocks: int = 256,
        max_records: int = 4096,
        max_k: int = 64,
        max_m: int = 16,
        max_record_bytes: int = 4 * 1024 * 1024,
        max_parity_bytes: int = 4 * 1024 * 1024,
        hold_ns: int = 1_000_000_000,
    ) -> None:
        self.codec = codec
        self.max_blocks, self.max_records, self.max_k, self.max_m = (
            max_blocks,
            max_records,
            max_k,
            max_m,
        )
        self.max_record_bytes, self.max_parity_bytes = max_record_bytes, max_parity_bytes
        self.hold_ns = hold_ns
        self.stats = FecStats()
        self._records: dict[int, bytes] = {}
        self._arrivals: deque[tuple[int, int]] = deque()  # (stored at, seq), oldest first
        self.record_bytes = self.parity_bytes = 0
        self._blocks: dict[int, _Block] = {}
        self._member: dict[int, int] = {}  # data sequence -> base of its open block

    @property
    def open_blocks(self) -> int:
        return len(self._blocks)

    @property
    def stored_records(self) -> int:
        return len(self._records)

    def on_data(self, seq: int, record: bytes, now: int = 0) -> list[tuple[int, bytes]]:
        """A DATA record arrived (or was rebuilt elsewhere) at `now`; returns records
        rebuilt now."""
        if seq in self._records:
            return []
        self._store(seq, record, now)
        base = self._member.get(seq)
        return [] if base is None else self._attempt(self._blocks[base], now)

    def _store(self, seq: int, record: bytes, now: int) -> None:
        """Keep a record for blocks to come, within `max_records` and `max_record_bytes`
        (the oldest go first)."""
        if len(record) > self.max_record_bytes:
            self.stats.drop("record too large to keep")
            return
        while self._arrivals and (
            len(self._records) >= self.max_records
            or self.record_bytes + len(record) > self.max_record_bytes
        ):
            self._forget_oldest()
            self.stats.drop("record evicted")
        self._records[seq] = record
        self.record_bytes += len(record)
        self._arrivals.append((now, seq))

    def _forget_oldest(self) -> None:
        old = self._records.pop(self._arrivals.popleft()[1], None)
        if old is not None:
            self.record_bytes -= len(old)

    def on_parity(self, seq_base: int, parity: Parity, now: int = 0) -> list[tuple[int, bytes]]:
        """A PARITY shard arrived at `now`; `seq_base` is its unwrapped base. Returns
        records rebuilt now. Shards that cannot be right are dropped and counted."""
        k, m = parity.count, parity.parity_count
        stats = self.stats
        stats.parity_received += 1
        too_large = k > self.max_k or m > self.max_m
        if too_large or len(parity.shard) < _LEN.size:  # a data shard holds its u16 length
            stats.drop("block too large" if too_large else "parity shard too short")
            return []
        block = self._blocks.get(seq_base)
        if block is None:
            if any(s in self._member for s in range(seq_base, seq_base + k)):
                stats.drop("overlapping block")
                return []
            if all(s in self._records for s in range(seq_base, seq_base + k)):
                stats.blocks_complete += 1  # nothing missing: no need to open the block
                return []
            block = self._open(seq_base, k, m, len(parity.shard), now)
        elif (block.k, block.m, block.width) != (k, m, len(parity.shard)):
            stats.drop("inconsistent parity")
            return []
        if parity.index in block.parity or self._keep(block, parity.index, parity.shard):
            return self._attempt(block, now)
        return []  # it alone outgrew the parity bytes: dropped (counted)

    def _keep(self, block: _Block, index: int, shard: bytes) -> bool:
        """Add a shard to `block` within `max_parity_bytes`, the oldest blocks evicted
        first; False if `block` itself had to go."""
        block.parity[index] = shard
        block.nbytes += len(shard)
        self.parity_bytes += len(shard)
        while self.parity_bytes > self.max_parity_bytes:
            oldest = next(iter(self._blocks.values()))
            self._close(oldest, lost=True)
            self.stats.drop("block evicted")
            if oldest is block:
                return False
        return True

    def _open(self, base: int, k: int, m: int, width: int, now: int) -> _Block:
        if len(self._blocks) >= self.max_blocks:
            self._close(next(iter(self._blocks.values())), lost=True)
        block = _Block(base, k, m, width, now)
        self._blocks[base] = block
        for s in range(base, base + k):
            self._member[s] = base
        return block

    def _close(self, block: _Block, *, lost: bool) -> None:
        del self._blocks[block.base]
        self.parity_bytes -= block.nbytes
        for s in range(block.base, block.base + block.k):
            self._member.pop(s, None)
        if lost:
            missing = any(s not in self._records for s in range(block.base, block.base + block.k))
            if missing:
                self.stats.blocks_lost += 1

    def expire(self, before_base: int, now: int | None = None) -> None:
        """Give up on open blocks whose base is below `before_base` (their data is past
        its deadline), and, given `now`, on blocks and records older than `hold_ns`
        (blocks that never complete, records no block claims); those blocks still
        missing data count as lost."""
        for block in [b for b in self._blocks.values() if b.base < before_base]:
            self._close(block, lost=True)
        if now is None:
            return
        limit = now - self.hold_ns
        while self._blocks:
            block = next(iter(self._blocks.values()))
            if block.opened_at >= limit:
                break
            self._close(block, lost=True)
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] < limit:
            self._forget_oldest()

    def _attempt(self, block: _Block, now: int) -> list[tuple[int, bytes]]:
        base, k, records = block.base, block.k, self._records
        present = [j for j in range(k) if base + j in records]
        if len(present) == k:
            self.stats.blocks_complete += 1
            self._close(block, lost=False)
            return []
        if len(present) + len(block.parity) < k:
            return []
        lost = [j for j in range(k) if base + j not in records]
        have: dict[int, bytes] = {}
        for j in present:
            record = records[base + j]
            pad = block.width - 2 - len(record)
            if pad < 0:
                self.stats.drop("record longer than its block's shards")
                self._close(block, lost=True)
                return []
            have[j] = _LEN.pack(len(record)) + record + bytes(pad)
        for i in sorted(block.parity)[: len(lost)]:
            have[k + i] = block.parity[i]
        rebuilt = []
        for j, shard in zip(lost, self.codec.recover(k, block.m, have, lost), strict=True):
            got = _record_of(shard)
            if got is None:
                self.stats.drop("rebuilt shard does not check out")
                self._close(block, lost=True)
                return []
            rebuilt.append((base + j, got))
        for seq, record in rebuilt:
            self._store(seq, record, now)
        self.stats.recovered += len(rebuilt)
        self.stats.blocks_recovered += 1
        self._close(block, lost=False)
        return rebuilt
