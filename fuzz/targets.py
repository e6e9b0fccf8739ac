"""Fuzz targets: plain functions of one ``bytes`` argument.

atheris runs them (``python3 dev.py fuzz NAME``) and the test suite runs the same
functions under hypothesis (tests/test_fuzz_targets.py). A target raises only when it
finds a bug; expected rejections of bad input are swallowed here.

* ``decode``: `wire.decode` raises only MalformedPacket; what it accepts is canonical.
* ``body``: the same for `wire.decode_body` of each packet type, and `parse_data`.
* ``fec``: `BlockDecoder` fed genuine blocks (rebuilt exactly) and garbage (never
  raises, stays within its bounds); the two Reed-Solomon codecs agree.
* ``crypto``: `Opener.open` / `open_hello` raise only AuthenticationFailed, open what
  was sealed, and refuse every change to it.
* ``endpoint`` / ``endpoint_psk``: `Endpoint.receive_datagram` of a live session
  (see `endpoint_target`).
* ``psk_peer``: a peer holding the psk sends well-formed records that break the rules;
  B's tables, events and CPU stay bounded (fuzz/psk_peer.py).
"""

from __future__ import annotations

import enum
import functools
import struct
from collections.abc import Callable
from typing import Final

import plait
from fuzz import corpus
from fuzz.psk_peer import psk_peer_target
from plait import crypto, wire
from plait.errors import AuthenticationFailed, MalformedPacket
from plait.events import MessageExpired, MessageReceived
from plait.fec import BlockDecoder, shards_of
from plait.rs import ErasureCodec, PortableCodec, default_codec
from plait.sim import payload

__all__ = [
    "TARGETS",
    "body_target",
    "crypto_target",
    "decode_target",
    "endpoint_psk_target",
    "endpoint_target",
    "fec_target",
]

_M32: Final = 0xFFFF_FFFF

#: How much later than the truth the peer-clock mapping may be (see `_check_delivered`).
_CLOCK_SLACK_NS: Final = 50_000_000


class Reader:
    """The fuzz input as a stream of small integers and byte strings: a structure-aware
    target reads its decisions from it. Reads past the end give zeros (and `left()`
    says 0), so every input, even an empty one, is a complete program."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def byte(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            return 0
        self.pos = pos + 1
        return self.data[pos]

    def u16(self) -> int:
        return self.byte() << 8 | self.byte()

    def u32(self) -> int:
        return self.u16() << 16 | self.u16()

    def take(self, n: int) -> bytes:
        """Up to `n` bytes (fewer at the end of the input)."""
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out

    def rest(self) -> bytes:
        return self.take(self.left())


def decode_target(data: bytes) -> None:
    """`wire.decode` raises only MalformedPacket; what it accepts is canonical."""
    try:
        packet = wire.decode(data)
    except MalformedPacket:
        return
    again = wire.encode(packet)
    if again != data:
        raise AssertionError(f"accepted a non-canonical encoding: {data.hex()} -> {again.hex()}")
    if wire.decode(memoryview(data)) != packet:
        raise AssertionError("decoding a memoryview differs from decoding bytes")


def body_target(data: bytes) -> None:
    """The first byte picks a packet type; `decode_body` of the rest raises only
    MalformedPacket, accepts only canonical bodies, and `parse_data` agrees with it."""
    if not data:
        return
    ptype = wire.PacketType(1 + data[0] % 7)
    offset = 1 + (data[0] >> 3)  # bodies that start inside the buffer, as after a header
    try:
        body = wire.decode_body(ptype, data, offset)
    except MalformedPacket:
        body = None
    if ptype is wire.PacketType.DATA:
        try:
            fields: wire.DataFields | None = wire.parse_data(data, offset)
        except MalformedPacket:
            fields = None
        if (body is None) != (fields is None):
            raise AssertionError("parse_data and decode_body disagree on acceptance")
        if isinstance(body, wire.Data) and fields != (
            body.seq,
            body.deadline,
            body.stream,
            body.msg,
            body.payload,
            body.frag_index,
            body.frag_count,
        ):
            raise AssertionError("parse_data and decode_body disagree on the fields")
    if body is None:
        return
    if offset > len(data) or wire.encode_body(body) != data[offset:]:
        raise AssertionError(f"accepted a non-canonical {ptype.name} body: {data.hex()}")


# --- FEC -----------------------------------------------------------------------------


@functools.cache
def _codecs() -> tuple[ErasureCodec, ErasureCodec]:
    """(the default codec, the portable one): the same bytes, two implementations."""
    return default_codec(), PortableCodec()


def _decoder_bounds(decoder: BlockDecoder) -> None:
    if decoder.open_blocks > decoder.max_blocks or decoder.stored_records > decoder.max_records:
        raise AssertionError("a BlockDecoder table outgrew its bound")


def _genuine_block(reader: Reader, decoder: BlockDecoder, codec: ErasureCodec) -> None:
    """A real block whose shards arrive in part and in any order: what is rebuilt is
    exactly the records that were lost, once each."""
    k, m = 1 + reader.byte() % 12, 1 + reader.byte() % decoder.max_m
    base = reader.u32()
    records = [reader.take(reader.byte() % 48) for _ in range(k)]
    parity = codec.parity(k, m, shards_of(records))
    if parity != _codecs()[1].parity(k, m, shards_of(records)):
        raise AssertionError(f"the codecs disagree on parity for k={k} m={m}")
    have = [j for j in range(k + m) if reader.byte() & 3]  # about 3 in 4 shards arrive
    order = sorted(have, key=lambda j: (reader.byte(), j))
    known: dict[int, bytes] = {}  # records that arrived or were rebuilt
    for j in order:
        if j < k:
            got = [] if base + j in known else decoder.on_data(base + j, records[j])
            known[base + j] = records[j]
        else:
            shard = wire.Parity(
                base=base & _M32, count=k, parity_count=m, index=j - k, shard=parity[j - k]
            )
            got = decoder.on_parity(base, shard)
        for seq, record in got:
            if seq in known or not 0 <= seq - base < k:
                raise AssertionError(f"rebuilt record {seq}, which is not missing")
            if record != records[seq - base]:
                raise AssertionError(f"rebuilt record {seq} wrong: {record!r}")
            known[seq] = record
    if len(have) >= k and len(known) != k:
        raise AssertionError(f"{len(have)} of {k}+{m} shards in, but not all records rebuilt")
    _decoder_bounds(decoder)


def _parity_from(reader: Reader, base: int) -> wire.Parity:
    """A PARITY body that passes the wire rules (as every parity from the network does)."""
    k = 1 + reader.byte() % 255
    m = 1 + reader.byte() % (256 - k)
    shard = reader.take(1 + reader.byte() % 40) or b"\x00"
    return wire.Parity(
        base=base & _M32, count=k, parity_count=m, index=reader.byte() % m, shard=shard
    )


def fec_target(data: bytes) -> None:
    """`BlockDecoder` rebuilds genuine blocks exactly, and with garbage (records and
    parity of any shape, blocks overlapping or with wrong ids) it never raises and its
    tables stay within their bounds."""
    reader = Reader(data)
    mode = reader.byte()
    codec = _codecs()[mode & 1]
    decoder = BlockDecoder(codec, max_blocks=4, max_records=32, max_k=16, max_m=4)
    if mode & 2:
        _genuine_block(reader, decoder, codec)
    base = reader.u16()
    while reader.left():
        op = reader.byte() % 4
        seq = base + reader.byte() - 16
        if op == 0:
            decoder.on_data(seq, reader.take(reader.byte() % 48))
        elif op == 1:
            decoder.on_parity(seq, _parity_from(reader, seq))
        elif op == 2:  # a genuine-looking small block: right shape, shard from the input
            k, m = 1 + reader.byte() % 4, 1 + reader.byte() % 2
            width = 2 + reader.byte() % 16
            shard = reader.take(width).ljust(width, b"\x00")
            parity = wire.Parity(
                base=seq & _M32, count=k, parity_count=m, index=reader.byte() % m, shard=shard
            )
            decoder.on_parity(seq, parity)
        else:
            decoder.expire(seq)
        _decoder_bounds(decoder)


# --- AEAD ----------------------------------------------------------------------------

_PSK: Final = bytes(range(32))
_NONCE_I: Final = bytes(range(100, 116))


@functools.cache
def _keys() -> tuple[crypto.DirectionKeys, crypto.Opener, bytes]:
    keys = crypto.session_keys(_PSK, 0x0A0B0C0D, _NONCE_I, bytes(range(200, 216)))[0]
    return keys, crypto.Opener(keys), crypto.hello_key(_PSK)


def _mutate(reader: Reader, sealed: bytes) -> bytes:
    """`sealed` with bits flipped, cut short, or extended, as the input says."""
    how = reader.byte() % 3
    if how == 0:
        out = bytearray(sealed)
        for _ in range(1 + reader.byte() % 3):
            bit = reader.u16() % (len(out) * 8)
            out[bit >> 3] ^= 1 << (bit & 7)
        return bytes(out)
    if how == 1:
        return sealed[: reader.u16() % len(sealed)]
    return sealed + (reader.take(1 + reader.byte() % 8) or b"\x00")


def _open_or_refuse(call: Callable[[], bytes], expected: bytes | None, what: str) -> None:
    """`call()` returns `expected`, or raises AuthenticationFailed when it is None."""
    try:
        got = call()
    except AuthenticationFailed:
        if expected is not None:
            raise AssertionError(f"{what}: a genuine datagram failed to open") from None
        return
    if expected is None:
        raise AssertionError(f"{what}: opened something that was not sealed so")
    if got != expected:
        raise AssertionError(f"{what}: opened to other bytes than were sealed")


def _packet_number(reader: Reader) -> int:
    """Small, 32-bit, or one no sender uses (>= 2^64, negative)."""
    kind, value = reader.byte() % 4, reader.byte()
    if kind == 1:
        return value << 24 | reader.u32()
    if kind == 2:
        return (1 << 64) + value
    return -1 - value if kind == 3 else value


def crypto_target(data: bytes) -> None:
    """Garbage never opens; a sealed datagram opens to its body on its own link and
    packet number only, and any change to it (bits, length, link, packet number) makes
    it fail; HELLOs likewise, with the `bound` of the answer checked too."""
    reader = Reader(data)
    keys, opener, hello_key = _keys()
    mode, link, pn = reader.byte() % 4, reader.byte(), _packet_number(reader)
    header_len = 11 if reader.byte() & 1 else 17
    if mode == 0:  # garbage, with a header length that may not even fit
        cut = header_len + reader.byte() % 8 - 4
        rest = reader.rest()
        _open_or_refuse(lambda: opener.open(rest, cut, link, pn), None, "open")
        return
    if mode == 2:  # garbage HELLO
        rest = reader.rest()
        _open_or_refuse(
            lambda: crypto.open_hello(hello_key, rest, header_len, link, pn), None, "open_hello"
        )
        return
    pn %= 1 << 64  # sealing: a packet number a sender may use
    header = reader.take(header_len).ljust(header_len, b"\x00")
    if mode == 1:
        body = reader.take(reader.byte())
        sealed = crypto.Sealer(keys).seal(header, body, link, pn)
        _open_or_refuse(lambda: opener.open(sealed, header_len, link, pn), body, "open")
        wrong_link, wrong_pn = (link + 1) % 256, pn + 1 + reader.byte()
        _open_or_refuse(lambda: opener.open(sealed, header_len, wrong_link, pn), None, "link")
        _open_or_refuse(lambda: opener.open(sealed, header_len, link, wrong_pn), None, "pn")
        changed = _mutate(reader, sealed)
        same = body if changed == sealed else None  # flips that undid each other
        _open_or_refuse(lambda: opener.open(changed, header_len, link, pn), same, "changed")
        return
    body = bytes((reader.byte() & 1,)) + reader.take(16).ljust(16, b"\x00")
    bound = _NONCE_I if reader.byte() & 1 else b""
    sealed = crypto.seal_hello(hello_key, header, body, link, pn, bound)
    _open_or_refuse(
        lambda: crypto.open_hello(hello_key, sealed, header_len, link, pn, bound), body, "hello"
    )
    other = b"" if bound else _NONCE_I
    _open_or_refuse(
        lambda: crypto.open_hello(hello_key, sealed, header_len, link, pn, other), None, "bound"
    )
    changed = _mutate(reader, sealed)
    _open_or_refuse(
        lambda: crypto.open_hello(hello_key, changed, header_len, link, pn, bound),
        body if changed == sealed else None,
        "changed hello",
    )


# --- the endpoint ----------------------------------------------------------------------


class Attack(enum.IntEnum):
    """One step of the endpoint target: the input's next byte, modulo their number."""

    REAL = 0
    """A captured datagram of the session, on its link, at its arrival time."""
    RAW = 1
    """Bytes straight from the input."""
    OTHER_LINK = 2
    """A captured datagram replayed on another link."""
    AGAIN = 3
    """The previous datagram again, on the same link, later."""
    TRUNCATE = 4
    OVERSIZE = 5
    """A captured datagram padded, up to 65,507 bytes (the largest UDP payload)."""
    FLIP = 6
    """A captured datagram with 1-4 bits flipped."""
    HEADER = 7
    """A captured datagram with one header field rewritten (first byte, session, link
    sequence, timestamp, echo added or removed)."""
    OLD_SESSION = 8
    """A datagram of an older session with the same config and psk."""
    FORGE = 9
    """A body of any type built from the input (DATA fragments that overlap or
    overflow, PARITY with any block id and shape, FEEDBACK, CLOSE, ...), sent as the
    peer: sealed with the sender's key when there is a psk."""
    MUTATE = 10
    """A captured body with some bytes overwritten (block ids, fragment fields, message
    numbers, lengths), sent as the peer."""
    WAIT = 11
    """Time passes (10 µs to 65 s); `handle_timer`."""


_ATTACKS: Final = tuple(Attack)
_MAX_STEPS: Final = 24
_MAX_DATAGRAM: Final = 65_507
#: Attacks that speak for the peer (sealed with its key when there is a psk): what they
#: deliver is not what the application sent, so the delivery check is relaxed after one.
_KEYED: Final = frozenset({Attack.FORGE, Attack.MUTATE})
#: Without a psk nothing tells these from genuine datagrams (wire-format.md section 8).
_UNDETECTABLE: Final = _KEYED | {Attack.TRUNCATE, Attack.OVERSIZE, Attack.FLIP, Attack.HEADER}


class _EndpointRun:
    """One input against a fresh copy of the captured session's responder B.

    Every other datagram is handed over as a view of a buffer that is overwritten right
    after the call. Checked after every datagram: nothing escapes `receive_datagram`, it
    is counted exactly once (accepted or dropped by reason), a dropped one changed no
    state, and with a psk nothing but the sender's own datagrams is accepted. Checked
    for every event: each message of a stream is resolved (delivered or expired) at
    most once and in order, and until something forged was fed, what is delivered is
    exactly what the sender sent, before its deadline. Checked at the end: the public
    counters agree, the tables are in their bounds, and without a psk everything B sent
    decodes.
    """

    def __init__(self, session: corpus.Session, data: bytes) -> None:
        self.session = session
        self.reader = Reader(data)
        self.ep = session.endpoint()
        self.links = len(session.config.links)
        self.now = session.start
        self.fed = 0
        self.forged = False
        self.resolved: dict[int, int] = {}  # stream -> last message resolved
        self.last: tuple[bytes, int, bool] | None = None  # data, link, authentic
        self.sealer: crypto.Sealer | None = None
        self.pn = [0] * self.links  # the last packet number forged, per link
        self.base = _public_count(self.ep.stats())

    # --- counters ------------------------------------------------------------------------

    def _accepted(self) -> int:
        return sum(link.datagrams_in for link in self.ep.links.links)

    def _counted(self) -> int:
        return self._accepted() + sum(self.ep._drops.values())  # stats() is slower

    # --- steps ---------------------------------------------------------------------------

    def run(self) -> None:
        reader = self.reader
        for _ in range(_MAX_STEPS):
            if not reader.left():
                break
            self.step(_ATTACKS[reader.byte() % len(_ATTACKS)])
        self.finish()

    def _pick(self, pool: tuple[corpus.Sent, ...]) -> corpus.Sent:
        return pool[self.reader.u16() % len(pool)]

    def step(self, attack: Attack) -> None:  # noqa: PLR0911, PLR0912  (one branch per attack)
        r = self.reader
        if attack is Attack.WAIT:
            self.now += (1 + r.u16()) * (1_000_000 if r.byte() & 1 else 10_000)
            self.ep.handle_timer(now=self.now)
            self._drain()
            return
        if attack is Attack.RAW:
            data, link = r.take(r.u16() % 1500), r.byte() % self.links
            ours = data[1:5] == self.session.session.to_bytes(4, "big")
            self.feed(data, link, attack, forged=ours and self.session.psk is None)
            return
        if attack is Attack.OLD_SESSION:
            old = self._pick(self.session.old)
            link = old.link if r.byte() & 1 else r.byte() % self.links
            self.feed(old.datagram, link, attack)
            return
        if attack is Attack.AGAIN:
            if self.last is not None:
                self.now += r.byte() * 1_000_000
                data, link, authentic = self.last
                self.feed(data, link, attack, authentic=authentic)
            return
        if attack is Attack.FORGE:
            sent = self._pick(self.session.sent)
            ptype = wire.PacketType(1 + r.byte() % 7)
            self._as_peer(ptype, _forged_body(r, ptype, sent), attack)
            return
        sent = self._pick(self.session.sent)
        if attack is Attack.MUTATE:
            self._as_peer(sent.ptype, _overwrite(r, sent.body), attack)
            return
        data, link = sent.datagram, sent.link
        at = sent.arrival if sent.arrival >= 0 else sent.time
        if attack is Attack.REAL:
            self.feed(data, link, attack, authentic=True, at=at)
            return
        if attack is Attack.OTHER_LINK:
            link = (link + 1 + r.byte() % (self.links - 1)) % self.links
        elif attack is Attack.TRUNCATE:
            data = data[: r.u16() % len(data)]
        elif attack is Attack.OVERSIZE:
            size = min(_MAX_DATAGRAM, len(data) + 1 + r.u16())
            fill = r.take(1 + r.byte() % 8) or b"\x00"
            data = (data + fill * (size // len(fill) + 1))[:size]
        elif attack is Attack.FLIP:
            data = _flip(r, data)
        elif attack is Attack.HEADER:
            data = _rewrite_header(r, data)
        authentic = data == sent.datagram and link == sent.link  # a change that undid itself
        self.feed(data, link, attack, authentic=authentic, at=at)

    def feed(
        self,
        data: bytes,
        link: int,
        attack: Attack,
        *,
        authentic: bool = False,
        forged: bool = False,
        at: int | None = None,
    ) -> None:
        """Hand one datagram to B and check it was counted once."""
        psk = self.session.psk
        if at is not None and at > self.now:
            self.now = at
        if not authentic and (attack in _KEYED or (psk is None and attack in _UNDETECTABLE)):
            forged = True
        self.forged = self.forged or forged
        ep = self.ep
        before, accepted, state = self._counted(), self._accepted(), _state(ep)
        highest = ep.links.links[link].health.inbound.highest if 0 <= link < self.links else None
        if self.fed % 2:  # a view of a buffer the caller reuses at once (the API allows it)
            buffer = bytearray(data)
            took = ep.receive_datagram(memoryview(buffer), link=link, now=self.now)
            buffer[:] = b"\xa5" * len(buffer)
        else:
            took = ep.receive_datagram(data, link=link, now=self.now)
        self.fed += 1
        counted = self._counted() - before
        if counted != 1:
            raise AssertionError(f"{attack.name}: counted {counted} times")
        newest = ep.links.links[link].health.inbound.highest != highest  # moves a `*` link
        if took != (self._accepted() > accepted and newest):
            raise AssertionError(f"{attack.name}: receive_datagram returned {took}")
        if self._accepted() == accepted and _state(ep) != state:
            raise AssertionError(f"{attack.name}: a dropped datagram changed the state")
        if psk and self._accepted() > accepted and not authentic and attack not in _KEYED:
            raise AssertionError(f"{attack.name}: accepted an unauthenticated datagram")
        self.last = (data, link, authentic)
        self._drain()

    def _as_peer(self, ptype: wire.PacketType, body: bytes, attack: Attack) -> None:
        """Send `body` as the peer would: a fresh packet number on a link, the right
        session (mostly), sealed with the sender's key when there is a psk."""
        r, session = self.reader, self.session
        link = r.byte() % self.links
        highest = self.ep.links.links[link].health.inbound.highest
        pn = max(self.pn[link] + 1, (highest or 0) + 1) + r.byte() % 3
        self.pn[link] = pn
        echo = r.u32() if r.byte() & 1 else None
        header = wire.pack_header(
            ptype,
            session.session if r.byte() % 8 else r.u32(),
            pn & 0xFFFF,
            (self.now // 1000 + r.byte() - 128) & _M32,
            echo,
            r.u16() if echo is not None else 0,
        )
        if session.psk is None:
            data = header + body
        elif ptype is wire.PacketType.HELLO:
            data = header + body + bytes(wire.TAG_SIZE)
            if len(body) == crypto.HELLO_BODY_SIZE:
                data = crypto.seal_hello(session.hello_key, header, body, link, pn)
        else:
            if self.sealer is None:
                if session.keys is None:
                    raise RuntimeError("a psk session without keys")
                self.sealer = crypto.Sealer(session.keys)
            data = self.sealer.seal(header, body, link, pn)
        self.feed(data, link, attack)

    # --- events and the end --------------------------------------------------------------

    def _drain(self) -> None:
        for datagram, link in self.ep.datagrams_to_send(now=self.now):
            if not 0 <= link < self.links:
                raise AssertionError(f"a datagram for link {link}")
            if self.session.psk is None:
                try:
                    wire.decode(datagram)
                except MalformedPacket as exc:
                    raise AssertionError(f"B sent a malformed datagram: {exc}") from None
        while (event := self.ep.next_event()) is not None:
            if isinstance(event, MessageReceived):
                self._resolve(event.stream, event.msg)
                self._check_delivered(event)
            elif isinstance(event, MessageExpired) and not event.sent:
                self._resolve(event.stream, event.msg + event.count - 1, event.msg)

    def _resolve(self, stream: int, last: int, first: int | None = None) -> None:
        """Messages `first` .. `last` (just `last` unless a run expired) are resolved now."""
        first = last if first is None else first
        if first <= self.resolved.get(stream, -1) or last < first:
            raise AssertionError(f"stream {stream}: message {first} resolved twice or out of order")
        self.resolved[stream] = last

    def _check_delivered(self, event: MessageReceived) -> None:
        if self.forged:
            return  # the peer's key, or no psk: forged content may be delivered
        decoded = payload.decode(event.data)
        if decoded is None or (decoded.stream, decoded.number) != (event.stream, event.msg):
            raise AssertionError(f"delivered what the sender never sent: {event!r}")
        late = self.now - decoded.deadline
        # The simulator has one clock, so the true offset between the ends is 0. The
        # estimate may still be later than that by about the spread of the links' one-way
        # delays (a window whose smallest transit came from a slow link: the mapping's
        # documented approximation), and never by more.
        slack = min(max(0, self.ep._clock._offset_us() * 1000), _CLOCK_SLACK_NS)
        if late > slack + 1000:
            raise AssertionError(f"delivered {late} ns after its deadline: {event!r}")

    def finish(self) -> None:
        ep = self.ep
        if _public_count(ep.stats()) != self.base + self.fed:
            raise AssertionError("stats(): accepted + dropped != datagrams fed")
        inbox, decoder = ep.inbox, ep._decoder
        if inbox.partials > inbox.max_partials:
            raise AssertionError(f"{inbox.partials} partial messages")
        if decoder is not None:
            _decoder_bounds(decoder)
        deadline = ep.next_deadline()
        if deadline is not None:
            self.now = max(self.now, deadline)
            ep.handle_timer(now=self.now)
            self._drain()


def _state(ep: plait.Endpoint) -> tuple[object, ...]:
    """What a dropped datagram must leave as it was (wire-format.md section 4): the
    windows, tables and estimates the receive path writes; not the drop counters."""
    inbox, decoder, clock, hs = ep.inbox, ep._decoder, ep._clock, ep._hs
    links = tuple(
        (
            ln.datagrams_in,
            ln.echo_ts,
            ln.echo_at,
            ln.health.inbound.highest,
            ln.health.inbound.received,
            ln.health.bytes_received,
            ln.health.rtt.samples,
            ln.health.last_proof,
        )
        for ln in ep.links.links
    )
    fec = None if decoder is None else (decoder.open_blocks, decoder.stored_records)
    inbound = (inbox.window.highest, inbox.window.received, inbox.partials, inbox.waiting)
    peer = (clock._min_transit, clock.min_rtt_ns, ep.outbox.stats.acked)
    endpoint = (len(ep._events), len(ep._control), hs.session, hs.locked, ep.closed)
    return links, fec, inbound, peer, endpoint


def _public_count(stats: plait.Stats) -> int:
    """Datagrams accepted plus datagrams dropped, from the public counters."""
    return sum(link.datagrams_received for link in stats.links) + sum(stats.drops.values())


def _flip(r: Reader, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(1 + r.byte() % 4):
        bit = r.u16() % (len(out) * 8)
        out[bit >> 3] ^= 1 << (bit & 7)
    return bytes(out)


def _rewrite_header(r: Reader, data: bytes) -> bytes:
    """One header field rewritten: first byte, session, link seq, timestamp, or the
    echo block added or removed."""
    out = bytearray(data)
    field = r.byte() % 5
    if field == 0:
        out[0] = r.byte()
    elif field == 1:
        out[1:5] = r.u32().to_bytes(4, "big")
    elif field == 2:
        out[5:7] = r.u16().to_bytes(2, "big")
    elif field == 3:
        out[7:11] = r.u32().to_bytes(4, "big")
    elif out[0] & 0x10:
        out[0] &= 0xEF
        del out[11:17]
    else:
        out[0] |= 0x10
        out[11:11] = r.take(6).ljust(6, b"\x00")
    return bytes(out)


def _overwrite(r: Reader, body: bytes) -> bytes:
    """`body` with 1-3 runs of its first 24 bytes overwritten, maybe cut or extended."""
    out = bytearray(body)
    for _ in range(1 + r.byte() % 3):
        at = r.byte() % min(len(out) + 1, 24)
        chunk = r.take(1 + r.byte() % 4)
        out[at : at + len(chunk)] = chunk
    how = r.byte() % 4
    if how == 1:
        del out[r.u16() % (len(out) + 1) :]
    elif how == 2:
        out += r.take(r.byte())
    return bytes(out)


_DATA_FIXED: Final = struct.Struct("!BIIBH")


def _forged_body(r: Reader, ptype: wire.PacketType, sent: corpus.Sent) -> bytes:
    """A `ptype` body from the input, its numbers near those of a captured datagram so
    that they land in the receiver's windows (fields may break the wire rules)."""
    near = 0
    if sent.ptype in (wire.PacketType.DATA, wire.PacketType.PARITY) and len(sent.body) >= 5:
        near = int.from_bytes(sent.body[1:5], "big")
    seq = (near + r.byte() - 128) & _M32 if r.byte() % 4 else r.u32()
    if ptype is wire.PacketType.DATA:
        frag = r.byte() & 1
        head = _DATA_FIXED.pack(
            frag if r.byte() % 8 else r.byte(),
            seq,
            r.u32() if r.byte() & 1 else (sent.time // 1000 + 150_000) & _M32,
            r.byte() % 4 if r.byte() % 8 else r.byte(),
            r.u16() % 8 if r.byte() % 4 else r.u16(),
        )
        if frag:
            head += bytes((r.byte(), r.byte()))
        return head + r.take(r.u16() % 1400)
    if ptype is wire.PacketType.PARITY:
        head = struct.pack("!BIBBB", 0 if r.byte() % 8 else r.byte(), seq, *r.take(3).ljust(3))
        return head + r.take(1 + r.u16() % 1400)
    if ptype is wire.PacketType.FEEDBACK:
        n_ranges, n_links = r.byte() % 8, r.byte() % 4
        head = struct.pack("!BIHBB", 0, seq, r.u16(), n_ranges, n_links)
        return head + r.take(4 * n_ranges + 7 * n_links + r.byte() % 3)
    if ptype is wire.PacketType.HELLO:
        return bytes((r.byte() & 3,)) + r.take(16).ljust(16, b"\x00")
    if ptype is wire.PacketType.CLOSE:
        return bytes((r.byte() & 1,)) + r.take(2)
    return bytes((r.byte() & 1,)) + r.take(r.byte() % 16)  # PROBE (padding), PROBE_ACK


def _endpoint(psk: bool, data: bytes) -> None:
    _EndpointRun(corpus.session(psk), data).run()


def endpoint_target(data: bytes) -> None:
    """`Endpoint.receive_datagram` of a live session without a psk (see `_EndpointRun`)."""
    _endpoint(False, data)


def endpoint_psk_target(data: bytes) -> None:
    """`Endpoint.receive_datagram` of a live session with a psk (see `_EndpointRun`)."""
    _endpoint(True, data)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decode": decode_target,
    "body": body_target,
    "fec": fec_target,
    "crypto": crypto_target,
    "endpoint": endpoint_target,
    "endpoint_psk": endpoint_psk_target,
    "psk_peer": psk_peer_target,
}
