"""The fast path of plait's wire format: the header and the DATA record as plain values.

Every datagram goes through `parse_header` or `pack_header`, and every message through
`parse_data` or `pack_data`, so these four build no records: they take and return plain
values and tuples (a frozen attrs record costs several times as much to build; see
docs/design.md §2). They hold every check the format makes on these fields.
`plait.wire` builds its record API (`encode`/`decode`) on them and re-exports them, so
``from plait.wire import parse_header`` is the public path. This module also holds what
both share: the version, the sizes and `PacketType` (docs/wire-format.md §2-3 is the
normative text).

    header  (11 B) ver:3 | E:1 | type:4 , session u32 , link_seq u16 , ts_us u32
    echo    ( 6 B) echo_ts u32 , echo_delay_us u16          present iff E = 1
    DATA    flags u8 , seq u32 , deadline_us u32 , stream u8 , msg u16 ,
            [frag_index u8 , frag_count u8 ]                present iff flags = 1
            payload

Parsers raise `MalformedPacket` and nothing else; packers raise `EncodeError` for any
field outside its wire range and never produce bytes the parsers reject.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final

from plait.errors import EncodeError, MalformedPacket

#: What the decoders accept: any contiguous buffer of bytes.
Buffer = bytes | bytearray | memoryview

__all__ = [
    "ECHO_SIZE",
    "HEADER_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "UDP_IPV4_OVERHEAD",
    "UDP_IPV6_OVERHEAD",
    "VERSION",
    "Buffer",
    "DataFields",
    "HeaderFields",
    "PacketType",
    "need",
    "pack_data",
    "pack_header",
    "parse_data",
    "parse_header",
]

VERSION: Final = 1
#: Bytes of the common header (without echo).
HEADER_SIZE: Final = 11
#: Bytes of the optional echo block.
ECHO_SIZE: Final = 6
#: Bytes of the AEAD tag appended when the session has a pre-shared key.
TAG_SIZE: Final = 16
#: Bytes of the HELLO nonce.
NONCE_SIZE: Final = 16
#: IPv4 (20) + UDP (8) header bytes every datagram also costs on the link.
UDP_IPV4_OVERHEAD: Final = 28
#: IPv6 (40) + UDP (8) header bytes every datagram also costs on the link.
UDP_IPV6_OVERHEAD: Final = 48


class PacketType(IntEnum):
    """The 4-bit packet type. 0 and 8-15 are unassigned: a receiver drops them."""

    DATA = 1
    """A message or a fragment of one: the unit of ordering, dedup and FEC."""
    PARITY = 2
    """One Reed-Solomon parity shard over a block of consecutive DATA records."""
    FEEDBACK = 3
    """Receiver report: received data-sequence ranges and per-link counters."""
    PROBE = 4
    """Keepalive / RTT probe; the peer answers with PROBE_ACK on the same link."""
    PROBE_ACK = 5
    """Answer to a PROBE; always carries the echo of the probe's timestamp."""
    HELLO = 6
    """Session start: the initiator's (or, as a response, the responder's) nonce."""
    CLOSE = 7
    """The sender is closing the session, with a reason code."""


_VERSION_SHIFT: Final = 5
_ECHO_BIT: Final = 0x10
_TYPE_MASK: Final = 0x0F
_VERSION_BITS: Final = VERSION << _VERSION_SHIFT

# DATA body flag: the fragment fields follow the fixed part.
_FLAG_FRAG: Final = 0x01

_HDR: Final = struct.Struct("!BIHI")
_ECHO: Final = struct.Struct("!IH")
_DATA: Final = struct.Struct("!BIIBH")
_FRAG: Final = struct.Struct("!BB")


# --- the rule shared by packer and parser ----------------------------------------------


def _frag_problem(index: int, count: int, payload_len: int) -> str | None:
    """None when the fragment fields are acceptable, else a short reason."""
    if count == 1:
        return None if index == 0 else "fragment index without fragments"
    if count < 1 or index >= count:
        return "fragment index out of range"
    return None if payload_len else "empty fragment"


# --- packing ---------------------------------------------------------------------------


def pack_header(
    ptype: PacketType, session: int, link_seq: int, ts: int, echo_ts: int | None, echo_delay: int
) -> bytes:
    """Fast path of `encode_header`: the header from plain values (echo_ts None: no echo).

    Raises:
        EncodeError: a field is outside its wire range.
    """
    try:
        if echo_ts is None:
            return _HDR.pack(_VERSION_BITS | ptype, session, link_seq, ts)
        return _HDR.pack(_VERSION_BITS | _ECHO_BIT | ptype, session, link_seq, ts) + _ECHO.pack(
            echo_ts, echo_delay
        )
    except struct.error as exc:
        raise EncodeError(f"header field out of range: {exc}") from None


def pack_data(
    seq: int,
    deadline: int,
    stream: int,
    msg: int,
    payload: bytes,
    frag_index: int = 0,
    frag_count: int = 1,
) -> bytes:
    """Fast path of `encode_body` for DATA: the DATA record from plain values.

    Raises:
        EncodeError: a field is outside its wire range or the fragment fields are wrong.
    """
    problem = _frag_problem(frag_index, frag_count, len(payload))
    if problem:
        raise EncodeError(problem)
    try:
        if frag_count == 1:
            return _DATA.pack(0, seq, deadline, stream, msg) + payload
        fixed = _DATA.pack(_FLAG_FRAG, seq, deadline, stream, msg)
        return fixed + _FRAG.pack(frag_index, frag_count) + payload
    except struct.error as exc:
        raise EncodeError(f"DATA field out of range: {exc}") from None


# --- parsing ---------------------------------------------------------------------------


def need(data: Buffer, end: int, what: str) -> None:
    """Check that `data` holds at least `end` bytes (for every body parser).

    Raises:
        MalformedPacket: "truncated `what`" when it does not.
    """
    if len(data) < end:
        raise MalformedPacket("truncated " + what)


def _first_byte_table() -> tuple[PacketType | None, ...]:
    """First byte -> packet type for version 1 (echo bit either way); None: drop."""
    table: list[PacketType | None] = [None] * 256
    for ptype in PacketType:
        table[_VERSION_BITS | ptype] = ptype
        table[_VERSION_BITS | _ECHO_BIT | ptype] = ptype
    return tuple(table)


_FIRST_BYTE: Final = _first_byte_table()

#: What `parse_header` returns: type, session, link_seq, ts, echo_ts (None: no echo),
#: echo_delay, and the offset where the body starts.
HeaderFields = tuple[PacketType, int, int, int, int | None, int, int]


def parse_header(data: Buffer) -> HeaderFields:
    """Fast path of `decode_header`: the same checks, plain values instead of records.

    Raises:
        MalformedPacket: truncated, unknown version or type, or PROBE_ACK without echo.
    """
    if len(data) < HEADER_SIZE:
        raise MalformedPacket("truncated header")
    first, session, link_seq, ts = _HDR.unpack_from(data)
    ptype = _FIRST_BYTE[first]
    if ptype is None:
        if first >> _VERSION_SHIFT != VERSION:
            raise MalformedPacket("unknown version")
        raise MalformedPacket("unknown type")
    if not first & _ECHO_BIT:
        if ptype is PacketType.PROBE_ACK:
            raise MalformedPacket("PROBE_ACK without echo")
        return ptype, session, link_seq, ts, None, 0, HEADER_SIZE
    if len(data) < HEADER_SIZE + ECHO_SIZE:
        raise MalformedPacket("truncated echo")
    echo_ts, echo_delay = _ECHO.unpack_from(data, HEADER_SIZE)
    return ptype, session, link_seq, ts, echo_ts, echo_delay, HEADER_SIZE + ECHO_SIZE


#: What `parse_data` returns, in `Data`'s field order:
#: seq, deadline, stream, msg, payload, frag_index, frag_count.
DataFields = tuple[int, int, int, int, bytes, int, int]


def parse_data(data: Buffer, off: int) -> DataFields:
    """Fast path of decoding a DATA body at `off`: the same checks, a plain tuple.

    Raises:
        MalformedPacket: for any input the format does not allow.
    """
    need(data, off + _DATA.size, "DATA")
    flags, seq, deadline, stream, msg = _DATA.unpack_from(data, off)
    off += _DATA.size
    if flags == 0:
        return seq, deadline, stream, msg, bytes(data[off:]), 0, 1
    if flags != _FLAG_FRAG:
        raise MalformedPacket("reserved DATA flags")
    need(data, off + _FRAG.size, "fragment fields")
    index, count = _FRAG.unpack_from(data, off)
    off += _FRAG.size
    if count < 2 or _frag_problem(index, count, len(data) - off):
        raise MalformedPacket("bad fragment fields")
    return seq, deadline, stream, msg, bytes(data[off:]), index, count
