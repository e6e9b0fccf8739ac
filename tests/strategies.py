"""Hypothesis strategies for every wire packet (shared by tests and the fuzz corpus)."""

from __future__ import annotations

from hypothesis import strategies as st

from plait import wire

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)

echoes = st.builds(wire.Echo, ts=u32, delay=u16)
plain_headers = st.builds(wire.Header, session=u32, link_seq=u16, ts=u32, echo=st.none())
headers = st.builds(wire.Header, session=u32, link_seq=u16, ts=u32, echo=st.none() | echoes)


@st.composite
def data_bodies(draw: st.DrawFn) -> wire.Data:
    count = draw(st.just(1) | st.integers(2, 255))
    index = 0 if count == 1 else draw(st.integers(0, count - 1))
    payload = draw(st.binary(min_size=0 if count == 1 else 1, max_size=64))
    return wire.Data(
        seq=draw(u32),
        deadline=draw(u32),
        stream=draw(u8),
        msg=draw(u16),
        payload=payload,
        frag_index=index,
        frag_count=count,
    )


@st.composite
def parity_bodies(draw: st.DrawFn) -> wire.Parity:
    count = draw(st.integers(1, 255))
    parity_count = draw(st.integers(1, 256 - count))
    return wire.Parity(
        base=draw(u32),
        count=count,
        parity_count=parity_count,
        index=draw(st.integers(0, parity_count - 1)),
        shard=draw(st.binary(min_size=1, max_size=64)),
    )


link_reports = st.lists(
    st.builds(wire.LinkReport, link=u8, link_seq=u16, received=u16, jitter=u16, rx_ts=u32),
    max_size=16,
    unique_by=lambda r: r.link,
).map(lambda rs: tuple(sorted(rs, key=lambda r: r.link)))


@st.composite
def feedback_bodies(draw: st.DrawFn) -> wire.Feedback:
    links = draw(link_reports)
    if draw(st.booleans()):
        return wire.Feedback(largest=0, first_run=0, links=links)
    pair = st.tuples(st.integers(1, 0xFFFF), st.integers(1, 0xFFFF))
    return wire.Feedback(
        largest=draw(u32),
        first_run=draw(st.integers(1, 0xFFFF)),
        ranges=tuple(draw(st.lists(pair, max_size=8))),
        links=links,
    )


bodies: st.SearchStrategy[wire.Body] = st.one_of(
    data_bodies(),
    parity_bodies(),
    feedback_bodies(),
    st.builds(wire.Probe, padding=st.integers(0, 64)),
    st.builds(wire.Hello, nonce=st.binary(min_size=16, max_size=16), response=st.booleans()),
    st.builds(wire.Close, code=u16),
)


@st.composite
def packets(draw: st.DrawFn) -> wire.Packet:
    if draw(st.integers(0, 7)) == 0:  # PROBE_ACK must carry an echo
        header = wire.Header(draw(u32), draw(u16), draw(u32), draw(echoes))
        return wire.Packet(header, wire.ProbeAck())
    return wire.Packet(draw(headers), draw(bodies))
