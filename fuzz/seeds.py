"""Named example packets: the fuzzers' seed corpus and the wire doc's test vectors."""

from __future__ import annotations

from plait import wire

_H = wire.Header(session=0x0A0B0C0D, link_seq=0xFFFE, ts=123_456_789)
_H_ECHO = wire.Header(
    session=0x0A0B0C0D, link_seq=7, ts=123_460_000, echo=wire.Echo(ts=987_654_321, delay=250)
)

EXAMPLES: dict[str, wire.Packet] = {
    "data": wire.Packet(
        _H, wire.Data(seq=41, deadline=123_606_789, stream=0, msg=9, payload=b"hello")
    ),
    "data-fragment": wire.Packet(
        _H_ECHO,
        wire.Data(
            seq=0xFFFF_FFFF,
            deadline=0x0000_1000,
            stream=3,
            msg=0xFFFF,
            payload=b"frag",
            frag_index=1,
            frag_count=5,
        ),
    ),
    "parity": wire.Packet(
        _H, wire.Parity(base=40, count=8, parity_count=2, index=1, shard=b"\x00\x05hello\x00")
    ),
    "feedback": wire.Packet(
        _H_ECHO,
        wire.Feedback(
            largest=1000,
            first_run=10,
            ranges=((2, 5), (1, 1)),
            links=(
                wire.LinkReport(link=0, link_seq=500, received=498, jitter=120),
                wire.LinkReport(link=2, link_seq=70, received=70, jitter=0xFFFF),
            ),
        ),
    ),
    "feedback-empty": wire.Packet(_H, wire.Feedback(largest=0, first_run=0)),
    "probe": wire.Packet(_H, wire.Probe(padding=4)),
    "probe-ack": wire.Packet(_H_ECHO, wire.ProbeAck()),
    "hello": wire.Packet(_H, wire.Hello(nonce=bytes(range(16)))),
    "hello-response": wire.Packet(_H_ECHO, wire.Hello(nonce=bytes(range(16, 32)), response=True)),
    "close": wire.Packet(_H, wire.Close(code=1)),
}
