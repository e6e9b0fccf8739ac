"""plait.wire: round trips, canonical encodings, exact sizes, and every rejection rule."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz.seeds import EXAMPLES
from plait import wire
from plait.errors import EncodeError, MalformedPacket, ProtocolError, UsageError
from tests.strategies import data_bodies, packets, plain_headers

DOC = Path(__file__).resolve().parent.parent / "docs" / "wire-format.md"
H = wire.Header(session=1, link_seq=2, ts=3)
ECHO_H = wire.Header(session=1, link_seq=2, ts=3, echo=wire.Echo(ts=4, delay=5))


def _data(**kw: object) -> wire.Data:
    fields: dict[str, object] = {"seq": 1, "deadline": 2, "stream": 0, "msg": 0, "payload": b"x"}
    fields.update(kw)
    return wire.Data(**fields)  # type: ignore[arg-type]  # test helper: fields vary by case


@given(packets())
def test_round_trip(packet: wire.Packet) -> None:
    data = wire.encode(packet)
    assert wire.decode(data) == packet
    assert wire.decode(memoryview(data)) == packet
    assert wire.decode(bytearray(data)) == packet


@given(packets(), st.data())
def test_every_prefix_is_rejected_or_canonical(packet: wire.Packet, data: st.DataObject) -> None:
    full = wire.encode(packet)
    cut = data.draw(st.integers(0, len(full) - 1))
    try:
        shorter = wire.decode(full[:cut])
    except MalformedPacket:
        return
    assert wire.encode(shorter) == full[:cut]


@given(packets(), st.data())
def test_mutations_are_rejected_or_canonical(packet: wire.Packet, data: st.DataObject) -> None:
    raw = bytearray(wire.encode(packet))
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        mutated = wire.decode(bytes(raw))
    except MalformedPacket:
        return
    assert wire.encode(mutated) == bytes(raw)


@given(plain_headers, data_bodies())
def test_data_body_is_the_record_after_the_header(header: wire.Header, body: wire.Data) -> None:
    datagram = wire.encode(wire.Packet(header, body))
    record = wire.encode_body(body)
    assert datagram == wire.encode_header(wire.PacketType.DATA, header) + record
    assert wire.decode_body(wire.PacketType.DATA, record) == body
    fixed = 12 if body.frag_count == 1 else 14
    assert len(record) == fixed + len(body.payload)


@given(packets())
def test_fast_path_agrees_with_records(packet: wire.Packet) -> None:
    raw = wire.encode(packet)
    ptype, session, link_seq, ts, echo_ts, echo_delay, offset = wire.parse_header(raw)
    h = packet.header
    assert ptype is packet.body.TYPE
    assert (session, link_seq, ts) == (h.session, h.link_seq, h.ts)
    assert (echo_ts, echo_delay) == ((h.echo.ts, h.echo.delay) if h.echo else (None, 0))
    echo = (h.echo.ts, h.echo.delay) if h.echo else (None, 0)
    assert raw[:offset] == wire.pack_header(ptype, session, link_seq, ts, *echo)
    if isinstance(packet.body, wire.Data):
        fields = wire.parse_data(raw, offset)
        assert attrs.astuple(packet.body) == fields  # the tuple is in the record field order
        assert wire.pack_data(*fields) == raw[offset:]


def test_sizes() -> None:
    assert wire.HEADER_SIZE == 11
    assert len(wire.encode(wire.Packet(H, _data(payload=b"")))) == 23
    assert len(wire.encode(wire.Packet(H, _data(payload=b"ab", frag_count=2)))) == 27
    assert len(wire.encode(wire.Packet(ECHO_H, _data(payload=b"")))) == 29
    assert len(wire.encode(wire.Packet(H, wire.Probe()))) == 12
    assert len(wire.encode(wire.Packet(H, wire.Hello(nonce=bytes(16))))) == 28


def test_header_layout_is_big_endian() -> None:
    raw = wire.encode(wire.Packet(ECHO_H, wire.Close(code=0x0102)))
    assert raw == bytes([0x20 | 0x10 | 7, 0, 0, 0, 1, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4, 0, 5, 0, 1, 2])


def test_empty_message_is_a_valid_data_packet() -> None:
    packet = wire.Packet(H, _data(payload=b""))
    assert wire.decode(wire.encode(packet)) == packet


def test_decode_does_not_alias_its_input() -> None:
    buf = bytearray(wire.encode(wire.Packet(H, _data(payload=b"abc"))))
    packet = wire.decode(memoryview(buf))
    buf[-3:] = b"zzz"
    assert isinstance(packet.body, wire.Data)
    assert packet.body.payload == b"abc"
    assert type(packet.body.payload) is bytes


# --- rejections ------------------------------------------------------------------------

GOOD = wire.encode(wire.Packet(H, _data()))


def _reason(data: bytes) -> str:
    with pytest.raises(MalformedPacket) as info:
        wire.decode(data)
    return str(info.value)


@pytest.mark.parametrize("version", [0, 2, 3, 7])
def test_unknown_version(version: int) -> None:
    assert _reason(bytes([version << 5 | 1]) + GOOD[1:]) == "unknown version"


@pytest.mark.parametrize("ptype", [0, 8, 9, 15])
def test_unknown_type(ptype: int) -> None:
    assert _reason(bytes([0x20 | ptype]) + GOOD[1:]) == "unknown type"


@pytest.mark.parametrize("size", range(wire.HEADER_SIZE))
def test_truncated_header(size: int) -> None:
    assert _reason(GOOD[:size]) == "truncated header"


def test_truncated_echo() -> None:
    raw = wire.encode(wire.Packet(ECHO_H, wire.Probe()))
    assert _reason(raw[: wire.HEADER_SIZE + 5]) == "truncated echo"


def test_probe_ack_needs_echo() -> None:
    assert _reason(wire.encode_header(wire.PacketType.PROBE_ACK, H) + b"\0") == (
        "PROBE_ACK without echo"
    )
    with pytest.raises(EncodeError):
        wire.encode(wire.Packet(H, wire.ProbeAck()))


@pytest.mark.parametrize(
    ("ptype", "body"),
    [
        (wire.PacketType.DATA, struct.pack("!BIIBH", 0x02, 1, 2, 0, 0)),
        (wire.PacketType.DATA, struct.pack("!BIIBH", 0x80, 1, 2, 0, 0)),
        (wire.PacketType.PARITY, struct.pack("!BIBBB", 1, 0, 1, 1, 0) + b"x"),
        (wire.PacketType.FEEDBACK, struct.pack("!BIHBB", 4, 0, 0, 0, 0)),
        (wire.PacketType.PROBE, b"\x01"),
        (wire.PacketType.HELLO, b"\x02" + bytes(16)),
        (wire.PacketType.CLOSE, b"\x01\x00\x00"),
    ],
)
def test_reserved_flags(ptype: wire.PacketType, body: bytes) -> None:
    assert "flags" in _reason(wire.encode_header(ptype, H) + body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (wire.Close(code=1), "CLOSE length"),
        (wire.Hello(nonce=bytes(16)), "HELLO length"),
        (wire.Feedback(largest=0, first_run=0), "FEEDBACK length"),
        (wire.Probe(), "PROBE padding not zero"),
    ],
)
def test_trailing_bytes(body: wire.Body, reason: str) -> None:
    assert _reason(wire.encode(wire.Packet(H, body)) + b"\x01") == reason


@pytest.mark.parametrize(("index", "count"), [(0, 1), (0, 0), (2, 2), (255, 255)])
def test_bad_fragment_fields(index: int, count: int) -> None:
    raw = wire.encode_header(wire.PacketType.DATA, H) + struct.pack(
        "!BIIBHBB", 1, 1, 2, 0, 0, index, count
    )
    assert _reason(raw + b"x") == "bad fragment fields"


def test_empty_fragment_is_rejected() -> None:
    raw = wire.encode_header(wire.PacketType.DATA, H) + struct.pack("!BIIBHBB", 1, 1, 2, 0, 0, 0, 2)
    assert _reason(raw) == "bad fragment fields"
    with pytest.raises(EncodeError, match="empty fragment"):
        wire.encode(wire.Packet(H, _data(payload=b"", frag_count=2)))


@pytest.mark.parametrize(
    ("count", "parity_count", "index", "shard", "reason"),
    [
        (0, 1, 0, b"x", "block shape"),
        (1, 0, 0, b"x", "block shape"),
        (200, 57, 0, b"x", "block shape"),
        (4, 2, 2, b"x", "parity index out of range"),
        (4, 2, 0, b"", "empty parity shard"),
    ],
)
def test_bad_parity(count: int, parity_count: int, index: int, shard: bytes, reason: str) -> None:
    raw = wire.encode_header(wire.PacketType.PARITY, H)
    raw += struct.pack("!BIBBB", 0, 9, count, parity_count, index) + shard
    assert _reason(raw) == reason
    body = wire.Parity(base=9, count=count, parity_count=parity_count, index=index, shard=shard)
    with pytest.raises(EncodeError, match=reason):
        wire.encode(wire.Packet(H, body))


@pytest.mark.parametrize(
    ("largest", "first_run", "ranges", "reason"),
    [
        (5, 0, (), "ranges without a first run"),
        (0, 0, ((1, 1),), "ranges without a first run"),
        (9, 1, ((0, 1),), "empty gap or run"),
        (9, 1, ((1, 0),), "empty gap or run"),
    ],
)
def test_bad_feedback_ranges(
    largest: int, first_run: int, ranges: tuple[tuple[int, int], ...], reason: str
) -> None:
    raw = wire.encode_header(wire.PacketType.FEEDBACK, H)
    raw += struct.pack("!BIHBB", 0, largest, first_run, len(ranges), 0)
    raw += b"".join(struct.pack("!HH", *r) for r in ranges)
    assert _reason(raw) == reason


def test_feedback_span_limit() -> None:
    ranges = ((0xFFFF, 0xFFFF),) * 255
    span = 0xFFFF + 255 * 2 * 0xFFFF
    assert span < 2**31  # u16 fields cannot exceed the limit ...
    body = wire.Feedback(largest=0, first_run=0xFFFF, ranges=ranges)
    assert wire.decode(wire.encode(wire.Packet(H, body))).body == body  # ... so this is fine


def test_feedback_link_reports_must_increase() -> None:
    report = wire.LinkReport(link=1, link_seq=0, received=0, jitter=0)
    raw = wire.encode_header(wire.PacketType.FEEDBACK, H) + struct.pack("!BIHBB", 0, 0, 0, 0, 2)
    raw += struct.pack("!BHHHI", 1, 0, 0, 0, 0) * 2
    assert _reason(raw) == "link reports not in increasing link order"
    with pytest.raises(EncodeError):
        wire.encode(wire.Packet(H, wire.Feedback(largest=0, first_run=0, links=(report, report))))


@pytest.mark.parametrize(
    "packet",
    [
        wire.Packet(wire.Header(session=2**32, link_seq=0, ts=0), wire.Probe()),
        wire.Packet(wire.Header(session=0, link_seq=-1, ts=0), wire.Probe()),
        wire.Packet(H, _data(seq=2**32)),
        wire.Packet(H, _data(stream=256)),
        wire.Packet(H, _data(frag_index=1)),
        wire.Packet(H, wire.Hello(nonce=bytes(15))),
        wire.Packet(H, wire.Close(code=-1)),
        wire.Packet(H, wire.Probe(padding=-1)),
        wire.Packet(ECHO_H.__class__(1, 2, 3, wire.Echo(ts=0, delay=70_000)), wire.Probe()),
    ],
)
def test_encode_rejects_out_of_range_fields(packet: wire.Packet) -> None:
    with pytest.raises(EncodeError) as info:
        wire.encode(packet)
    assert isinstance(info.value, UsageError)
    assert isinstance(info.value, ValueError)


def test_malformed_is_a_protocol_error_not_a_usage_error() -> None:
    assert issubclass(MalformedPacket, ProtocolError)
    assert not issubclass(MalformedPacket, UsageError)


# --- the test vectors in docs/wire-format.md -------------------------------------------

_VECTOR = re.compile(r"^#### Vector `([a-z-]+)`\n\n```text\n(.*?)```", re.MULTILINE | re.DOTALL)


def _doc_vectors() -> dict[str, bytes]:
    text = DOC.read_text(encoding="utf-8")
    return {m[1]: bytes.fromhex(m[2]) for m in _VECTOR.finditer(text)}


def test_doc_has_every_example_vector() -> None:
    assert sorted(_doc_vectors()) == sorted(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_doc_vector_matches_code(name: str) -> None:
    raw = _doc_vectors()[name]
    assert wire.encode(EXAMPLES[name]) == raw
    assert wire.decode(raw) == EXAMPLES[name]
