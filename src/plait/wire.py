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

This module is the record API: frozen records for every packet, `encode`/`decode` of
them. The constants, `PacketType`, and the header and DATA record as plain values (the
fast path the endpoint uses per datagram: `parse_header`, `parse_data`, `pack_header`,
`pack_data`) live in `plait.wirefast`; the record codec is built on them, and this module
re-exports them, so every name of the wire format is importable from `plait.wire`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Final, assert_never

import attrs

from plait.errors import EncodeError, MalformedPacket
from plait.wirefast import (
    ECHO_SIZE,
    HEADER_SIZE,
    NONCE_SIZE,
    TAG_SIZE,
    UDP_IPV4_OVERHEAD,
    UDP_IPV6_OVERHEAD,
    VERSION,
    Buffer,
    DataFields,
    HeaderFields,
    PacketType,
    need,
    pack_data,
    pack_header,
    parse_data,
    parse_header,
)

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
    "pack_parity",
    "parse_data",
    "parse_header",
    "parse_parity",
]

# HELLO body flag: this HELLO answers the peer's HELLO.
_FLAG_RESPONSE: Final = 0x01

_PARITY: Final = struct.Struct("!BIBBB")
_FEEDBACK: Final = struct.Struct("!BIHBB")
_RANGE: Final = struct.Struct("!HH")
_LINK_REPORT: Final = struct.Struct("!BHHHI")
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

    # TYPE is a property, not a ClassVar: mypyc writes any class attribute into a
    # compiled class's __annotations__ as a plain type, and attrs takes it for a field
    @property
    def TYPE(self) -> PacketType:  # noqa: N802  (a constant of the record type)
        return PacketType.DATA

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

    @property
    def TYPE(self) -> PacketType:  # noqa: N802  (a constant of the record type)
        return PacketType.PARITY

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
    rx_ts: int = 0
    """The receiver's µs clock (u32) when `link_seq` arrived: with the sender's own send
    time of that datagram, a one-way delay sample (`plait.capacity`)."""


@attrs.frozen(kw_only=True)
class Feedback:
    """Receiver report. Ranges walk down from `largest`:

    run 0 covers ``largest - first_run + 1 .. largest``; each following ``(gap, run)`` pair
    skips `gap` missing sequence numbers, then covers `run` received ones. ``first_run == 0``
    means nothing has been received yet (and then there are no ranges).
    """

    @property
    def TYPE(self) -> PacketType:  # noqa: N802  (a constant of the record type)
        return PacketType.FEEDBACK

    largest: int
    first_run: int
    ranges: tuple[tuple[int, int], ...] = ()
    links: tuple[LinkReport, ...] = ()


@attrs.frozen(kw_only=True)
class Probe:
    """Keepalive / RTT probe, optionally padded with zeros (path MTU checks)."""

    @property
    def TYPE(self) -> PacketType:  # noqa: N802  (a constant of the record type)
        return PacketType.PROBE

    padding: int = 0


@attrs.frozen
class ProbeAck:
    """Answer to a PROBE; the header's echo carries the probe's timestamp."""

    @property
    def TYPE(self) -> PacketType:  # noqa: N802  (a constant of the record type)
        return PacketType.PROBE_ACK


@attrs.frozen(kw_only=True)
class Hello:
    """Session start. The nonce feeds the key schedule when the session has a psk."""

    @property
    def TYPE(self) -> PacketType:  # noqa: N802  (a constant of the record type)
        return PacketType.HELLO

    nonce: bytes
    response: bool = False


@attrs.frozen(kw_only=True)
class Close:
    """The sender closes the session."""

    @property
    def TYPE(self) -> PacketType:  # noqa: N802  (a constant of the record type)
        return PacketType.CLOSE

    code: int


Body = Data | Parity | Feedback | Probe | ProbeAck | Hello | Close


@attrs.frozen
class Packet:
    """One decoded datagram: its header and its body."""

    header: Header
    body: Body


# --- rules shared by encoder and decoder -----------------------------------------------
# Each returns None when the fields are acceptable, else a short reason. (DATA's rule is
# with its fast path in `plait.wirefast`.)


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


def encode_header(ptype: PacketType, header: Header) -> bytes:
    """The common header (and echo, if any) for a packet of type `ptype`."""
    echo = header.echo
    if echo is None:
        return pack_header(ptype, header.session, header.link_seq, header.ts, None, 0)
    return pack_header(ptype, header.session, header.link_seq, header.ts, echo.ts, echo.delay)


def _encode_parity(body: Parity) -> bytes:
    return pack_parity(body.base, body.count, body.parity_count, body.index, body.shard)


def pack_parity(base: int, count: int, parity_count: int, index: int, shard: bytes) -> bytes:
    """The body of a PARITY record from its fields, without a `Parity` object (the
    sender's path: one per shard of every block).

    Raises:
        EncodeError: a field is outside its wire range or the fields are inconsistent.
    """
    problem = _parity_problem(count, parity_count, index, len(shard))
    if problem:
        raise EncodeError(problem)
    try:
        return _PARITY.pack(0, base, count, parity_count, index) + shard
    except struct.error as exc:
        raise EncodeError(f"Parity field out of range: {exc}") from None


def _encode_feedback(body: Feedback) -> bytes:
    problem = _feedback_problem(body.largest, body.first_run, body.ranges, body.links)
    if problem:
        raise EncodeError(problem)
    parts = [_FEEDBACK.pack(0, body.largest, body.first_run, len(body.ranges), len(body.links))]
    parts.extend(_RANGE.pack(gap, run) for gap, run in body.ranges)
    parts.extend(
        _LINK_REPORT.pack(r.link, r.link_seq, r.received, r.jitter, r.rx_ts) for r in body.links
    )
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
    base, count, parity_count, index, shard = parse_parity(data, off)
    return Parity(base=base, count=count, parity_count=parity_count, index=index, shard=shard)


def parse_parity(data: Buffer, off: int) -> tuple[int, int, int, int, bytes]:
    """A PARITY body's (base, count, parity_count, index, shard), checked as `decode_body`
    checks it, without a `Parity` object (the receiver's path).

    Raises:
        MalformedPacket: the body is truncated or its fields are inconsistent.
    """
    need(data, off + _PARITY.size, "PARITY")
    flags, base, count, parity_count, index = _PARITY.unpack_from(data, off)
    off += _PARITY.size
    if flags:
        raise MalformedPacket("reserved PARITY flags")
    problem = _parity_problem(count, parity_count, index, len(data) - off)
    if problem:
        raise MalformedPacket(problem)
    return base, count, parity_count, index, bytes(data[off:])


def _decode_feedback(data: Buffer, off: int) -> Feedback:
    need(data, off + _FEEDBACK.size, "FEEDBACK")
    flags, largest, first_run, n_ranges, n_links = _FEEDBACK.unpack_from(data, off)
    off += _FEEDBACK.size
    if flags:
        raise MalformedPacket("reserved FEEDBACK flags")
    if len(data) != off + n_ranges * _RANGE.size + n_links * _LINK_REPORT.size:
        raise MalformedPacket("FEEDBACK length")
    ranges = tuple(_RANGE.unpack_from(data, off + i * _RANGE.size) for i in range(n_ranges))
    off += n_ranges * _RANGE.size
    links = tuple(
        LinkReport(*_LINK_REPORT.unpack_from(data, off + i * _LINK_REPORT.size))
        for i in range(n_links)
    )
    problem = _feedback_problem(largest, first_run, ranges, links)
    if problem:
        raise MalformedPacket(problem)
    return Feedback(largest=largest, first_run=first_run, ranges=ranges, links=links)


def _flags_only(data: Buffer, off: int, what: str) -> None:
    need(data, off + 1, what)
    if data[off]:
        raise MalformedPacket("reserved " + what + " flags")


def _decode_probe(data: Buffer, off: int) -> Probe:
    _flags_only(data, off, "PROBE")
    padding = len(data) - off - 1
    if padding and bytes(data[off + 1 :]).count(0) != padding:
        raise MalformedPacket("PROBE padding not zero")
    return Probe(padding=padding)


_PROBE_ACK: Final = ProbeAck()


def _decode_probe_ack(data: Buffer, off: int) -> ProbeAck:
    _flags_only(data, off, "PROBE_ACK")
    if len(data) != off + 1:
        raise MalformedPacket("PROBE_ACK length")
    return _PROBE_ACK


def _decode_hello(data: Buffer, off: int) -> Hello:
    if len(data) != off + _HELLO.size:
        raise MalformedPacket("HELLO length")
    flags, nonce = _HELLO.unpack_from(data, off)
    if flags & ~_FLAG_RESPONSE:
        raise MalformedPacket("reserved HELLO flags")
    return Hello(nonce=nonce, response=bool(flags))


def _decode_close(data: Buffer, off: int) -> Close:
    if len(data) != off + _CLOSE.size:
        raise MalformedPacket("CLOSE length")
    flags, code = _CLOSE.unpack_from(data, off)
    if flags:
        raise MalformedPacket("reserved CLOSE flags")
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
