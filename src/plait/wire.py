"""plait's wire format, version 1: pure encode/decode of every packet type.

A datagram is a common header, an optional echo, then a body whose first byte is the
body's flags (docs/wire-format.md is the normative text; this module and that document
must agree). All integers are unsigned, big-endian.

    header  (11 B) ver:3 | E:1 | type:4 , session u32 , link_seq u16 , ts_us u32
    echo    ( 6 B) echo_ts u32 , echo_delay_us u16          present iff E = 1
    body    flags u8 , type-specific fields

The body of a DATA packet is self-contained: it is the record that FEC protects, so a
rebuilt packet is decoded with the same code. Decoders raise `MalformedPacket` and
nothing else, for any input; encoders raise `EncodeError` for any field outside its wire
range and never produce bytes the decoder rejects (encodings are canonical:
``encode(decode(b)) == b`` for every accepted ``b``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import IntEnum
from typing import ClassVar, Final, assert_never

import attrs

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
    "Body",
    "Buffer",
    "Close",
    "Data",
    "DataFields",
    "Echo",
    "Feedback",
    "Header",
    "HeaderFields",
    "Hello",
    "LinkReport",
    "Packet",
    "PacketType",
    "Parity",
    "Probe",
    "ProbeAck",
    "decode",
    "decode_body",
    "decode_header",
    "encode",
    "encode_body",
    "encode_header",
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
# HELLO body flag: this HELLO answers the peer's HELLO.
_FLAG_RESPONSE: Final = 0x01

_HDR: Final = struct.Struct("!BIHI")
_ECHO: Final = struct.Struct("!IH")
_DATA: Final = struct.Struct("!BIIBH")
_FRAG: Final = struct.Struct("!BB")
_PARITY: Final = struct.Struct("!BIBBB")
_FEEDBACK: Final = struct.Struct("!BIHBB")
_RANGE: Final = struct.Struct("!HH")
_LINK_REPORT: Final = struct.Struct("!BHHH")
_HELLO: Final = struct.Struct("!B16s")
_CLOSE: Final = struct.Struct("!BH")

#: Largest number of shards (data + parity) one GF(2^8) Reed-Solomon block can have.
MAX_BLOCK_SHARDS: Final = 256
#: Feedback ranges may span at most half the 32-bit sequence space.
_MAX_FEEDBACK_SPAN: Final = 1 << 31


# --- records ---------------------------------------------------------------------------


@attrs.frozen
class Echo:
    """The peer's timestamp echoed back, and how long (µs) the echoer held it."""

    ts: int
    """The `Header.ts` being echoed (µs, mod 2^32)."""
    delay: int
    """µs between receiving that timestamp and sending this echo; 0xFFFF = 65.535 ms or more."""


@attrs.frozen
class Header:
    """Per-datagram fields; written anew for every transmission on every link."""

    session: int
    """Session id (u32) both ends agreed on in the HELLO exchange."""
    link_seq: int
    """Per-link sequence number (u16, wraps): exact per-link loss and reordering."""
    ts: int
    """Sender's clock at transmission, µs mod 2^32."""
    echo: Echo | None = None


@attrs.frozen(kw_only=True)
class Data:
    """A message, or one fragment of one (``frag_count > 1``)."""

    TYPE: ClassVar[PacketType] = PacketType.DATA
    seq: int
    """Session-wide data sequence (u32, wraps): dedup across links, FEC block membership."""
    deadline: int
    """Absolute deadline in the sender's µs clock (mod 2^32)."""
    stream: int
    """Application stream (u8); ordering is per stream."""
    msg: int
    """Message number within the stream (u16, wraps)."""
    payload: bytes
    frag_index: int = 0
    frag_count: int = 1


@attrs.frozen(kw_only=True)
class Parity:
    """Parity shard `index` of a block of `count` DATA records, seqs base .. base+count-1."""

    TYPE: ClassVar[PacketType] = PacketType.PARITY
    base: int
    """Data sequence of the block's first DATA record: the block id."""
    count: int
    """k: the number of DATA records the block covers (1..255)."""
    parity_count: int
    """m: the number of parity shards in the block (1..255, k + m <= 256)."""
    index: int
    """This shard's parity index, 0 .. m-1."""
    shard: bytes


@attrs.frozen
class LinkReport:
    """What the receiver has seen on one link, for the sender's link-health estimates."""

    link: int
    link_seq: int
    """Highest per-link sequence received (u16)."""
    received: int
    """Datagrams received on the link so far, mod 2^16."""
    jitter: int
    """RFC 3550 interarrival jitter in µs, saturating at 0xFFFF."""


@attrs.frozen(kw_only=True)
class Feedback:
    """Receiver report. Ranges walk down from `largest`:

    run 0 covers ``largest - first_run + 1 .. largest``; each following ``(gap, run)`` pair
    skips `gap` missing sequence numbers, then covers `run` received ones. ``first_run == 0``
    means nothing has been received yet (and then there are no ranges).
    """

    TYPE: ClassVar[PacketType] = PacketType.FEEDBACK
    largest: int
    first_run: int
    ranges: tuple[tuple[int, int], ...] = ()
    links: tuple[LinkReport, ...] = ()


@attrs.frozen(kw_only=True)
class Probe:
    """Keepalive / RTT probe, optionally padded with zeros (path MTU checks)."""

    TYPE: ClassVar[PacketType] = PacketType.PROBE
    padding: int = 0


@attrs.frozen
class ProbeAck:
    """Answer to a PROBE; the header's echo carries the probe's timestamp."""

    TYPE: ClassVar[PacketType] = PacketType.PROBE_ACK


@attrs.frozen(kw_only=True)
class Hello:
    """Session start. The nonce feeds the key schedule when the session has a psk."""

    TYPE: ClassVar[PacketType] = PacketType.HELLO
    nonce: bytes
    response: bool = False


@attrs.frozen(kw_only=True)
class Close:
    """The sender closes the session."""

    TYPE: ClassVar[PacketType] = PacketType.CLOSE
    code: int


Body = Data | Parity | Feedback | Probe | ProbeAck | Hello | Close


@attrs.frozen
class Packet:
    """One decoded datagram: its header and its body."""

    header: Header
    body: Body


# --- rules shared by encoder and decoder -----------------------------------------------
# Each returns None when the fields are acceptable, else a short reason.


def _frag_problem(index: int, count: int, payload_len: int) -> str | None:
    if count == 1:
        return None if index == 0 else "fragment index without fragments"
    if count < 1 or index >= count:
        return "fragment index out of range"
    return None if payload_len else "empty fragment"


def _parity_problem(count: int, parity_count: int, index: int, shard_len: int) -> str | None:
    if count < 1 or parity_count < 1 or count + parity_count > MAX_BLOCK_SHARDS:
        return "block shape"
    if index >= parity_count:
        return "parity index out of range"
    return None if shard_len else "empty parity shard"


def _feedback_problem(
    largest: int, first_run: int, ranges: tuple[tuple[int, int], ...], links: tuple[LinkReport, ...]
) -> str | None:
    if first_run == 0:
        if ranges or largest:
            return "ranges without a first run"
    else:
        span = first_run
        for gap, run in ranges:
            if gap < 1 or run < 1:
                return "empty gap or run"
            span += gap + run
        if span > _MAX_FEEDBACK_SPAN:
            return "ranges span more than 2^31"
    previous = -1
    for report in links:
        if report.link <= previous:
            return "link reports not in increasing link order"
        previous = report.link
    return None


# --- encoding --------------------------------------------------------------------------


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


def encode_header(ptype: PacketType, header: Header) -> bytes:
    """The common header (and echo, if any) for a packet of type `ptype`."""
    echo = header.echo
    if echo is None:
        return pack_header(ptype, header.session, header.link_seq, header.ts, None, 0)
    return pack_header(ptype, header.session, header.link_seq, header.ts, echo.ts, echo.delay)


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


def _encode_parity(body: Parity) -> bytes:
    problem = _parity_problem(body.count, body.parity_count, body.index, len(body.shard))
    if problem:
        raise EncodeError(problem)
    return _PARITY.pack(0, body.base, body.count, body.parity_count, body.index) + body.shard


def _encode_feedback(body: Feedback) -> bytes:
    problem = _feedback_problem(body.largest, body.first_run, body.ranges, body.links)
    if problem:
        raise EncodeError(problem)
    parts = [_FEEDBACK.pack(0, body.largest, body.first_run, len(body.ranges), len(body.links))]
    parts.extend(_RANGE.pack(gap, run) for gap, run in body.ranges)
    parts.extend(_LINK_REPORT.pack(r.link, r.link_seq, r.received, r.jitter) for r in body.links)
    return b"".join(parts)


def _encode_probe(body: Probe) -> bytes:
    if body.padding < 0:
        raise EncodeError("negative padding")
    return bytes(1 + body.padding)


def _encode_hello(body: Hello) -> bytes:
    if len(body.nonce) != NONCE_SIZE:
        raise EncodeError(f"HELLO nonce must be {NONCE_SIZE} bytes")
    return _HELLO.pack(_FLAG_RESPONSE if body.response else 0, body.nonce)


def _encode_any_body(body: Body) -> bytes:  # noqa: PLR0911  (one return per packet type)
    match body:
        case Data():
            return pack_data(
                body.seq,
                body.deadline,
                body.stream,
                body.msg,
                body.payload,
                body.frag_index,
                body.frag_count,
            )
        case Parity():
            return _encode_parity(body)
        case Feedback():
            return _encode_feedback(body)
        case Probe():
            return _encode_probe(body)
        case ProbeAck():
            return b"\x00"
        case Hello():
            return _encode_hello(body)
        case Close():
            return _CLOSE.pack(0, body.code)
        case _:
            assert_never(body)


def encode_body(body: Body) -> bytes:
    """The body bytes of `body`; for DATA this is the record FEC protects.

    Raises:
        EncodeError: a field is outside its wire range or the fields are inconsistent.
    """
    try:
        return _encode_any_body(body)
    except struct.error as exc:
        raise EncodeError(f"{type(body).__name__} field out of range: {exc}") from None


def encode(packet: Packet) -> bytes:
    """The datagram for `packet` (plaintext; `plait.crypto` seals it when there is a psk).

    Raises:
        EncodeError: a field is outside its wire range or the fields are inconsistent.
    """
    body = packet.body
    if body.TYPE is PacketType.PROBE_ACK and packet.header.echo is None:
        raise EncodeError("PROBE_ACK needs an echo")
    return encode_header(body.TYPE, packet.header) + encode_body(body)


# --- decoding --------------------------------------------------------------------------


def _malformed(reason: str) -> MalformedPacket:
    return MalformedPacket(reason)


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
        raise _malformed("truncated header")
    first, session, link_seq, ts = _HDR.unpack_from(data)
    ptype = _FIRST_BYTE[first]
    if ptype is None:
        if first >> _VERSION_SHIFT != VERSION:
            raise _malformed("unknown version")
        raise _malformed("unknown type")
    if not first & _ECHO_BIT:
        if ptype is PacketType.PROBE_ACK:
            raise _malformed("PROBE_ACK without echo")
        return ptype, session, link_seq, ts, None, 0, HEADER_SIZE
    if len(data) < HEADER_SIZE + ECHO_SIZE:
        raise _malformed("truncated echo")
    echo_ts, echo_delay = _ECHO.unpack_from(data, HEADER_SIZE)
    return ptype, session, link_seq, ts, echo_ts, echo_delay, HEADER_SIZE + ECHO_SIZE


def decode_header(data: Buffer) -> tuple[PacketType, Header, int]:
    """Parse the common header (and echo) of `data`.

    Returns:
        The packet type, the header, and the offset where the body starts.
    Raises:
        MalformedPacket: truncated, unknown version or type, or PROBE_ACK without echo.
    """
    ptype, session, link_seq, ts, echo_ts, echo_delay, offset = parse_header(data)
    echo = None if echo_ts is None else Echo(echo_ts, echo_delay)
    return ptype, Header(session, link_seq, ts, echo), offset


def _need(data: Buffer, end: int, what: str) -> None:
    if len(data) < end:
        raise _malformed("truncated " + what)


#: What `parse_data` returns, in `Data`'s field order:
#: seq, deadline, stream, msg, payload, frag_index, frag_count.
DataFields = tuple[int, int, int, int, bytes, int, int]


def parse_data(data: Buffer, off: int) -> DataFields:
    """Fast path of decoding a DATA body at `off`: the same checks, a plain tuple.

    Raises:
        MalformedPacket: for any input the format does not allow.
    """
    _need(data, off + _DATA.size, "DATA")
    flags, seq, deadline, stream, msg = _DATA.unpack_from(data, off)
    off += _DATA.size
    if flags == 0:
        return seq, deadline, stream, msg, bytes(data[off:]), 0, 1
    if flags != _FLAG_FRAG:
        raise _malformed("reserved DATA flags")
    _need(data, off + _FRAG.size, "fragment fields")
    index, count = _FRAG.unpack_from(data, off)
    off += _FRAG.size
    if count < 2 or _frag_problem(index, count, len(data) - off):
        raise _malformed("bad fragment fields")
    return seq, deadline, stream, msg, bytes(data[off:]), index, count


def _decode_data(data: Buffer, off: int) -> Data:
    seq, deadline, stream, msg, payload, index, count = parse_data(data, off)
    return Data(
        seq=seq,
        deadline=deadline,
        stream=stream,
        msg=msg,
        payload=payload,
        frag_index=index,
        frag_count=count,
    )


def _decode_parity(data: Buffer, off: int) -> Parity:
    _need(data, off + _PARITY.size, "PARITY")
    flags, base, count, parity_count, index = _PARITY.unpack_from(data, off)
    off += _PARITY.size
    if flags:
        raise _malformed("reserved PARITY flags")
    problem = _parity_problem(count, parity_count, index, len(data) - off)
    if problem:
        raise _malformed(problem)
    return Parity(
        base=base, count=count, parity_count=parity_count, index=index, shard=bytes(data[off:])
    )


def _decode_feedback(data: Buffer, off: int) -> Feedback:
    _need(data, off + _FEEDBACK.size, "FEEDBACK")
    flags, largest, first_run, n_ranges, n_links = _FEEDBACK.unpack_from(data, off)
    off += _FEEDBACK.size
    if flags:
        raise _malformed("reserved FEEDBACK flags")
    if len(data) != off + n_ranges * _RANGE.size + n_links * _LINK_REPORT.size:
        raise _malformed("FEEDBACK length")
    ranges = tuple(_RANGE.unpack_from(data, off + i * _RANGE.size) for i in range(n_ranges))
    off += n_ranges * _RANGE.size
    links = tuple(
        LinkReport(*_LINK_REPORT.unpack_from(data, off + i * _LINK_REPORT.size))
        for i in range(n_links)
    )
    problem = _feedback_problem(largest, first_run, ranges, links)
    if problem:
        raise _malformed(problem)
    return Feedback(largest=largest, first_run=first_run, ranges=ranges, links=links)


def _flags_only(data: Buffer, off: int, what: str) -> None:
    _need(data, off + 1, what)
    if data[off]:
        raise _malformed("reserved " + what + " flags")


def _decode_probe(data: Buffer, off: int) -> Probe:
    _flags_only(data, off, "PROBE")
    padding = len(data) - off - 1
    if padding and bytes(data[off + 1 :]).count(0) != padding:
        raise _malformed("PROBE padding not zero")
    return Probe(padding=padding)


_PROBE_ACK: Final = ProbeAck()


def _decode_probe_ack(data: Buffer, off: int) -> ProbeAck:
    _flags_only(data, off, "PROBE_ACK")
    if len(data) != off + 1:
        raise _malformed("PROBE_ACK length")
    return _PROBE_ACK


def _decode_hello(data: Buffer, off: int) -> Hello:
    if len(data) != off + _HELLO.size:
        raise _malformed("HELLO length")
    flags, nonce = _HELLO.unpack_from(data, off)
    if flags & ~_FLAG_RESPONSE:
        raise _malformed("reserved HELLO flags")
    return Hello(nonce=nonce, response=bool(flags))


def _decode_close(data: Buffer, off: int) -> Close:
    if len(data) != off + _CLOSE.size:
        raise _malformed("CLOSE length")
    flags, code = _CLOSE.unpack_from(data, off)
    if flags:
        raise _malformed("reserved CLOSE flags")
    return Close(code=code)


_BODY_DECODERS: Final[dict[PacketType, Callable[[Buffer, int], Body]]] = {
    PacketType.DATA: _decode_data,
    PacketType.PARITY: _decode_parity,
    PacketType.FEEDBACK: _decode_feedback,
    PacketType.PROBE: _decode_probe,
    PacketType.PROBE_ACK: _decode_probe_ack,
    PacketType.HELLO: _decode_hello,
    PacketType.CLOSE: _decode_close,
}


def decode_body(ptype: PacketType, data: Buffer, offset: int = 0) -> Body:
    """Parse the body of a `ptype` packet that starts at `offset` and runs to the end.

    Raises:
        MalformedPacket: for any input the format does not allow.
    """
    return _BODY_DECODERS[ptype](data, offset)


def decode(data: Buffer) -> Packet:
    """Parse one plaintext datagram.

    Payloads and shards are copied out once, so the result does not alias `data`.

    Raises:
        MalformedPacket: for any input the format does not allow, and only that.
    """
    ptype, header, offset = decode_header(data)
    return Packet(header, _BODY_DECODERS[ptype](data, offset))
