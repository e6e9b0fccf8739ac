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
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Sequence
from typing import Final

from plait.errors import UsageError
from plait.rs import ErasureCodec
from plait.wire import MAX_BLOCK_SHARDS, Parity

__all__ = ["BlockDecoder", "BlockEncoder", "FecStats", "ParityBlock", "shards_of"]

_LEN: Final = struct.Struct("!H")
_COMPACT: Final = 1024  # _Arrivals drops its consumed front from this length on


def shards_of(records: Sequence[bytes]) -> list[bytes]:
    """Data shards of a block: ``u16 len || record``, zero-padded to the longest."""
    width = 2 + max(len(r) for r in records)
    return [_LEN.pack(len(r)) + r + bytes(width - 2 - len(r)) for r in records]


def _joined(records: Sequence[bytes]) -> bytes:
    """`shards_of(records)` end to end, built in one copy."""
    longest = 0
    for r in records:
        longest = max(longest, len(r))
    width = 2 + longest
    parts: list[bytes] = []
    last, prefix = -1, b""
    for r in records:
        n = len(r)
        if n != last:  # records mostly share one length: one prefix for them all
            last, prefix = n, _LEN.pack(n)
        parts.append(prefix)
        parts.append(r)
        if n + 2 < width:
            parts.append(bytes(width - 2 - n))
    return b"".join(parts)


def _record_at(whole: bytes, start: int, width: int) -> bytes | None:
    """The record in the rebuilt shard ``whole[start : start + width]`` (width >= 2), or
    None if its length prefix or padding is wrong."""
    end, stop = start + 2 + (whole[start] << 8 | whole[start + 1]), start + width
    if end > stop or (end < stop and whole.count(0, end, stop) != stop - end):
        return None
    return whole[start + 2 : end]


class FecStats:
    """Counters of one direction's FEC; `overhead` is parity bytes / data bytes."""

    __slots__ = (
        "blocks_complete",
        "blocks_lost",
        "blocks_recovered",
        "blocks_sent",
        "data_bytes",
        "evicted",
        "parity_bytes",
        "parity_received",
        "parity_sent",
        "reasons",
        "recovered",
    )

    def __init__(self) -> None:
        self.blocks_sent = self.parity_sent = self.parity_bytes = self.data_bytes = 0
        self.parity_received = self.recovered = 0
        self.blocks_complete = self.blocks_recovered = self.blocks_lost = 0
        self.reasons: dict[str, int] = {}
        self.evicted = 0  # records evicted: counted apart, since it is per record

    def drop(self, reason: str) -> None:
        self.reasons[reason] = self.reasons.get(reason, 0) + 1

    @property
    def dropped(self) -> dict[str, int]:
        """What was dropped, by reason."""
        return {**self.reasons, "record evicted": self.evicted} if self.evicted else self.reasons

    @property
    def overhead(self) -> float:
        return self.parity_bytes / self.data_bytes if self.data_bytes else 0.0


class ParityBlock:
    """The parity of one closed block: `shards[i]` is parity shard i of the `count`
    records from data sequence `base` on. One plain object per block, where `records`
    makes one frozen `Parity` per shard."""

    __slots__ = ("base", "count", "shards")

    def __init__(self, base: int, count: int, shards: list[bytes]) -> None:
        self.base, self.count, self.shards = base, count, shards

    def records(self) -> list[Parity]:
        """The PARITY records of the block."""
        base, k, shards = self.base, self.count, self.shards
        m = len(shards)
        return [
            Parity(base=base, count=k, parity_count=m, index=i, shard=shards[i]) for i in range(m)
        ]


def _records_of(block: ParityBlock | None) -> list[Parity]:
    return [] if block is None else block.records()


class BlockEncoder:
    """Groups outgoing DATA records into blocks and computes their parity."""

    __slots__ = (
        "_base",
        "_block_flush",
        "_block_k",
        "_block_m",
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
        self._block_k = self._block_m = self._block_flush = 0  # k, m, flush_ns of the open block
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
        return _records_of(self.push(seq, record, now))

    def push(self, seq: int, record: bytes, now: int) -> ParityBlock | None:
        """`add` without a `Parity` object per shard: the block's parity, if this record
        completes it, as one `ParityBlock`."""
        records = self._records
        if not records:
            if not self.m:
                return None  # no FEC for now: nothing to keep
            self._base, self._opened_at = seq, now
            self._block_k, self._block_m, self._block_flush = self.k, self.m, self.flush_ns
        elif seq != self._base + len(records):
            raise UsageError(f"record {seq} does not follow {self._base + len(records) - 1}")
        records.append(record)
        self.stats.data_bytes += len(record)
        return self._close() if len(records) >= self._block_k else None

    def deadline(self) -> int | None:
        """When the open block must be flushed, if one is open."""
        return self._opened_at + self._block_flush if self._records else None

    def on_timer(self, now: int) -> list[Parity]:
        """Flush the open block if its deadline has passed."""
        return _records_of(self.close_due(now))

    def flush(self) -> list[Parity]:
        """Close the open block now, whatever its size."""
        return _records_of(self.close_due(0, force=True))

    def close_due(self, now: int, *, force: bool = False) -> ParityBlock | None:
        """`on_timer` (or with `force`, `flush`) as one `ParityBlock`, like `push`."""
        if self._records and (force or now >= self._opened_at + self._block_flush):
            return self._close()
        return None

    def _close(self) -> ParityBlock | None:
        records, self._records = self._records, []
        k, m, base = len(records), self._block_m, self._base
        if k < self._block_k and self.parity_for is not None:
            m = min(m, self.parity_for(k))
            if not m:
                return None
        parity = self.codec.encode(k, m, _joined(records))
        stats = self.stats
        stats.blocks_sent += 1
        stats.parity_sent += m
        stats.parity_bytes += m * len(parity[0])
        return ParityBlock(base, k, parity)


class _Arrivals:
    """The stored records' (time, seq), oldest first: one flat list read from `head`,
    its consumed front cut off once it is half the list (O(1) amortized, and list
    operations are what mypyc compiles to direct calls)."""

    __slots__ = ("flat", "head")

    def __init__(self) -> None:
        self.flat: list[int] = []
        self.head = 0

    def __len__(self) -> int:
        return (len(self.flat) - self.head) >> 1

    def push(self, at: int, seq: int) -> None:
        flat = self.flat
        flat.append(at)
        flat.append(seq)

    def oldest_at(self) -> int:
        """When the oldest was stored; only if there is one."""
        return self.flat[self.head]

    def pop(self) -> int:
        """Forget the oldest; its seq."""
        flat, head = self.flat, self.head + 2
        seq = flat[head - 1]
        if head >= _COMPACT and head * 2 >= len(flat):
            del flat[:head]
            head = 0
        self.head = head
        return seq


class _Block:
    """An open block: its parity so far, and how many of its records are stored."""

    __slots__ = ("base", "have", "k", "m", "nbytes", "opened_at", "parity", "width")

    def __init__(self, base: int, k: int, m: int, width: int, now: int, have: int) -> None:
        self.base, self.k, self.m, self.width = base, k, m, width
        self.opened_at = now
        self.parity: dict[int, bytes] = {}
        self.nbytes = 0
        self.have = have  # records of base .. base + k - 1 in the decoder's store


class BlockDecoder:
    """Rebuilds lost DATA records from parity. Memory is bounded by `max_blocks` open
    blocks holding at most `max_parity_bytes` of parity and `max_records` stored records
    of at most `max_record_bytes` (the oldest of each are evicted, and counted); `expire`
    with a time releases what is older than `hold_ns`."""

    __slots__ = (
        "_arrivals",
        "_bases",
        "_blocks",
        "_frames",
        "_frames_k",
        "_frames_m",
        "_frames_width",
        "_full_heads",
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
        self._arrivals = _Arrivals()
        self.record_bytes = self.parity_bytes = 0
        self._blocks: dict[int, _Block] = {}
        self._bases: list[int] = []  # the open blocks' bases, ascending (they never overlap)
        self._frames: Sequence[bytes] = ()  # the codec's frames for the last block rebuilt
        self._frames_k = self._frames_m = self._frames_width = 0
        self._full_heads: list[bytes] = []

    @property
    def open_blocks(self) -> int:
        return len(self._blocks)

    @property
    def stored_records(self) -> int:
        return len(self._records)

    def on_data(self, seq: int, record: bytes, now: int = 0) -> list[tuple[int, bytes]]:
        """A DATA record arrived (or was rebuilt elsewhere) at `now`; returns records
        rebuilt now."""
        if seq in self._records or not self._store(seq, record, now) or not self._bases:
            return []
        block = self._block_of(seq)
        if block is None:
            return []
        block.have += 1
        return self._attempt(block, now)

    def _store(self, seq: int, record: bytes, now: int) -> bool:
        """Keep a record for blocks to come, within `max_records` and `max_record_bytes`
        (the oldest go first); False if it is too large to keep. The caller counts it
        in its open block, if any."""
        size = len(record)
        if size > self.max_record_bytes:
            self.stats.drop("record too large to keep")
            return False
        records = self._records
        while len(records) >= self.max_records or self.record_bytes + size > self.max_record_bytes:
            if not self._forget_oldest():
                break
            self.stats.evicted += 1
        records[seq] = record
        self.record_bytes += size
        self._arrivals.push(now, seq)
        return True

    def _forget_oldest(self) -> bool:
        """Forget the oldest stored record; False if there is none."""
        if not len(self._arrivals):
            return False
        seq = self._arrivals.pop()
        old = self._records.pop(seq, None)  # always there: one arrival per stored record
        if old is not None:
            self.record_bytes -= len(old)
            block = self._block_of(seq) if self._bases else None
            if block is not None:
                block.have -= 1
        return True

    def on_parity(self, seq_base: int, parity: Parity, now: int = 0) -> list[tuple[int, bytes]]:
        """A PARITY shard arrived at `now`; `seq_base` is its unwrapped base. Returns
        records rebuilt now. Shards that cannot be right are dropped and counted."""
        return self.on_shard(
            seq_base, parity.count, parity.parity_count, parity.index, parity.shard, now
        )

    def on_shard(
        self, seq_base: int, k: int, m: int, index: int, shard: bytes, now: int
    ) -> list[tuple[int, bytes]]:
        """`on_parity` from the record's fields (`plait.wire.parse_parity`)."""
        width = len(shard)
        stats = self.stats
        stats.parity_received += 1
        too_large = k > self.max_k or m > self.max_m
        if too_large or width < _LEN.size:  # a data shard holds its u16 length
            stats.drop("block too large" if too_large else "parity shard too short")
            return []
        block = self._blocks.get(seq_base)
        if block is None:
            records = self._records
            if self._bases and self._overlaps(seq_base, k):
                stats.drop("overlapping block")
                return []
            have = 0
            for s in range(seq_base, seq_base + k):
                if s in records:
                    have += 1
            if have == k:
                stats.blocks_complete += 1  # nothing missing: no need to open the block
                return []
            block = self._open(seq_base, k, m, width, now, have)
        elif block.k != k or block.m != m or block.width != width:
            stats.drop("inconsistent parity")
            return []
        if index in block.parity or self._keep(block, index, shard):
            return self._attempt(block, now)
        return []  # it alone outgrew the parity bytes: dropped (counted)

    def _block_of(self, seq: int) -> _Block | None:
        """The open block that `seq` belongs to, if any."""
        bases = self._bases
        i = bisect_right(bases, seq)
        if i:
            block = self._blocks[bases[i - 1]]
            if seq < block.base + block.k:
                return block
        return None

    def _overlaps(self, base: int, k: int) -> bool:
        """Whether a block of `k` records from `base` (no open block's base) would
        overlap an open block: the one before it, or the one after it."""
        bases = self._bases
        i = bisect_left(bases, base)
        if i:
            before = self._blocks[bases[i - 1]]
            if before.base + before.k > base:
                return True
        return i < len(bases) and bases[i] < base + k

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

    def _open(self, base: int, k: int, m: int, width: int, now: int, have: int) -> _Block:
        if len(self._blocks) >= self.max_blocks:
            self._close(next(iter(self._blocks.values())), lost=True)
        block = _Block(base, k, m, width, now, have)
        self._blocks[base] = block
        insort(self._bases, base)
        return block

    def _close(self, block: _Block, *, lost: bool) -> None:
        del self._blocks[block.base]
        bases = self._bases
        del bases[bisect_left(bases, block.base)]
        self.parity_bytes -= block.nbytes
        if lost and block.have < block.k:
            self.stats.blocks_lost += 1

    def expire(self, before_base: int, now: int | None = None) -> None:
        """Give up on open blocks whose base is below `before_base` (their data is past
        its deadline), and, given `now`, on blocks and records older than `hold_ns`
        (blocks that never complete, records no block claims); those blocks still
        missing data count as lost."""
        bases = self._bases
        while bases and bases[0] < before_base:
            self._close(self._blocks[bases[0]], lost=True)
        if now is None:
            return
        limit = now - self.hold_ns
        while self._blocks:
            block = next(iter(self._blocks.values()))
            if block.opened_at >= limit:
                break
            self._close(block, lost=True)
        arrivals = self._arrivals
        while len(arrivals) and arrivals.oldest_at() < limit:
            self._forget_oldest()

    def _frames_for(self, k: int, m: int, width: int) -> Sequence[bytes]:
        """The codec's frames for a (k, m) block of `width`-byte shards, and, as
        `_full_heads`, each data shard's frame with the length prefix of a record that
        fills its shard (most do). The last block shape's are kept."""
        if k != self._frames_k or m != self._frames_m or width != self._frames_width:
            frames = self._frames = self.codec.frames(k, m, width)
            prefix = _LEN.pack(min(width - 2, 0xFFFF))  # wider: no record fills it
            self._full_heads = [frames[j] + prefix for j in range(k)]
            self._frames_k, self._frames_m, self._frames_width = k, m, width
        return self._frames

    def _attempt(self, block: _Block, now: int) -> list[tuple[int, bytes]]:
        k = block.k
        if block.have >= k:
            self.stats.blocks_complete += 1
            self._close(block, lost=False)
            return []
        if block.have + len(block.parity) < k:
            return []
        # k shards are in: the stored records framed as data shards (one copy each), and
        # as many parity shards as records are missing, all behind the codec's frames
        base, m, width, records = block.base, block.m, block.width, self._records
        frames = self._frames_for(k, m, width)
        heads = self._full_heads
        fragments: dict[int, bytes] = {}
        lost: list[int] = []
        last, prefix = -1, b""
        for j in range(k):
            record = records.get(base + j)
            if record is None:
                lost.append(j)
                continue
            n = len(record)
            if n + 2 == width:
                fragments[j] = heads[j] + record
            elif n + 2 < width:
                if n != last:
                    last, prefix = n, _LEN.pack(n)
                fragments[j] = b"".join((frames[j], prefix, record, bytes(width - 2 - n)))
            else:
                self.stats.drop("record longer than its block's shards")
                self._close(block, lost=True)
                return []
        for i in sorted(block.parity)[: len(lost)]:
            fragments[k + i] = frames[k + i] + block.parity[i]
        whole = self.codec.decode(k, m, fragments)
        rebuilt = []
        for j in lost:
            got = _record_at(whole, j * width, width)
            if got is None:
                self.stats.drop("rebuilt shard does not check out")
                self._close(block, lost=True)
                return []
            rebuilt.append((base + j, got))
        self._close(block, lost=False)  # first: the records stored below are no members
        for seq, record in rebuilt:
            self._store(seq, record, now)
        self.stats.recovered += len(rebuilt)
        self.stats.blocks_recovered += 1
        return rebuilt
