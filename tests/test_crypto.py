"""plait.crypto (§8 v2): round trips, tamper and replay detection, the key schedule against
an independent RFC 5869 reference (hmac + hashlib), known-answer vectors, and HELLOs
that cannot be forged from re-sent ones."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import given
from hypothesis import strategies as st

from plait import crypto, wire
from plait.crypto import DirectionKeys, Opener, Sealer
from plait.errors import AuthenticationFailed, ConfigError, UsageError

PSK = bytes(range(32))
SESSION = 0x0A0B0C0D
NONCE_I = bytes(range(0x40, 0x50))
NONCE_R = bytes(range(0x80, 0x90))
HEADER = bytes.fromhex("210a0b0c0dfffe075bcd15")  # DATA, session 0x0a0b0c0d, link seq 0xfffe
HELLO_HEADER = bytes.fromhex("260a0b0c0dfffe075bcd15")
HELLO_BODY = bytes.fromhex("00000102030405060708090a0b0c0d0e0f")  # flags 0, nonce 00..0f

psks = st.binary(min_size=32, max_size=32)
nonces = st.binary(min_size=16, max_size=16)
sessions = st.integers(0, 0xFFFF_FFFF)
links = st.integers(0, 255)
packet_numbers = st.integers(0, 2**64 - 1)
direction_keys = st.builds(
    DirectionKeys, key=st.binary(min_size=32, max_size=32), iv=st.binary(min_size=12, max_size=12)
)
headers = st.binary(min_size=0, max_size=24)
bodies = st.binary(min_size=0, max_size=1500)


def _ref_hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256 from the standard library: the reference for the key schedule."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info + bytes((counter,)), hashlib.sha256).digest()
        okm += block
        counter += 1
    return okm[:length]


def _ref_nonce(iv: bytes, link: int, pn: int) -> bytes:
    """§8's nonce, byte by byte: iv XOR (0x000000 || link u8 || packet number u64)."""
    mask = bytes(3) + bytes((link,)) + pn.to_bytes(8, "big")
    return bytes(a ^ b for a, b in zip(iv, mask, strict=True))


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


# --- the reference and the known answers -----------------------------------------------


def test_reference_hkdf_passes_rfc5869_test_case_1() -> None:
    okm = _ref_hkdf(bytes(range(13)), b"\x0b" * 22, bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )


# Computed once with `_ref_hkdf`, `_ref_nonce`, the raw AEAD and the inputs spelled out
# in §8 v2 (session as u32 big-endian; one salt for both directions).
KAT_HELLO_KEY = "af02cd785a2e0153ad8dcb6cfc2e72d6708f5ec311b81e7729b2cb681879f916"
KAT_I2R_KEY = "9d700abfeb0c876757c7eb696fff12043c17e0f35814a5557f91db6d97381b9c"
KAT_I2R_IV = "9a865bce7cd58cfa1820b28c"
KAT_R2I_KEY = "5ddf008e4c1576ebc7ef373b8e4da02f1d8507366a42cc09c939d9bd6ab2c578"
KAT_R2I_IV = "fa22cc2b0ab0686744723447"
# wire vector `data` (link seq 0xfffe, unwrapped to 0x1fffe) sealed i2r on link 2; wire
# vector `hello` sealed on link 1 as packet 0x1fffe; and the responder's answer (flags
# RESPONSE, nonce NONCE_R, link seq 3) sealed on link 3 as packet 3, bound to NONCE_I.
KAT_DATA_PN = 0x1_FFFE
KAT_SEALED_DATA = (
    "210a0b0c0dfffe075bcd158bfe3ab5576a32424e5ed8357de5c415552ef0abd588e57eddd7958d6144224255"
)
KAT_HELLO_LINK, KAT_HELLO_PN = 1, 0x1_FFFE
KAT_SEALED_HELLO = (
    "260a0b0c0dfffe075bcd1500000102030405060708090a0b0c0d0e0f3accdbef0efb700e8cb96f290efe0ca6"
)
RESPONSE_HEADER = bytes.fromhex("260a0b0c0d0003075bcd16")
RESPONSE_BODY = b"\x01" + NONCE_R
KAT_RESPONSE_LINK, KAT_RESPONSE_PN = 3, 3
KAT_SEALED_RESPONSE = (
    "260a0b0c0d0003075bcd1601808182838485868788898a8b8c8d8e8fa37220c9f7d559e0859cd9742c00e100"
)


def _ref_session_keys(
    psk: bytes, session: int, nonce_i: bytes, nonce_r: bytes
) -> tuple[bytes, bytes, bytes, bytes]:
    """§8 v2 by the reference: i2r key, i2r iv, r2i key, r2i iv."""
    salt = b"plait v1" + session.to_bytes(4, "big") + nonce_i + nonce_r
    return (
        _ref_hkdf(salt, psk, b"i2r key", 32),
        _ref_hkdf(salt, psk, b"i2r iv", 12),
        _ref_hkdf(salt, psk, b"r2i key", 32),
        _ref_hkdf(salt, psk, b"r2i iv", 12),
    )


def test_known_answers_match_the_reference() -> None:
    assert _ref_hkdf(b"plait v1 hello", PSK, b"hello key", 32).hex() == KAT_HELLO_KEY
    assert [k.hex() for k in _ref_session_keys(PSK, SESSION, NONCE_I, NONCE_R)] == [
        KAT_I2R_KEY,
        KAT_I2R_IV,
        KAT_R2I_KEY,
        KAT_R2I_IV,
    ]


def test_key_schedule_known_answers() -> None:
    assert crypto.hello_key(PSK).hex() == KAT_HELLO_KEY
    i2r, r2i = crypto.session_keys(PSK, SESSION, NONCE_I, NONCE_R)
    assert (i2r.key.hex(), i2r.iv.hex()) == (KAT_I2R_KEY, KAT_I2R_IV)
    assert (r2i.key.hex(), r2i.iv.hex()) == (KAT_R2I_KEY, KAT_R2I_IV)


@given(psks, sessions, nonces, nonces)
def test_key_schedule_matches_the_reference(
    psk: bytes, session: int, nonce_i: bytes, nonce_r: bytes
) -> None:
    i2r, r2i = crypto.session_keys(psk, session, nonce_i, nonce_r)
    assert (i2r.key, i2r.iv, r2i.key, r2i.iv) == _ref_session_keys(psk, session, nonce_i, nonce_r)


def test_sealed_known_answers() -> None:
    i2r, _ = crypto.session_keys(PSK, SESSION, NONCE_I, NONCE_R)
    body = wire.pack_data(41, 0x075E1705, 0, 9, b"hello")
    sealed = Sealer(i2r).seal(HEADER, body, 2, KAT_DATA_PN)
    assert sealed.hex() == KAT_SEALED_DATA
    assert Opener(i2r).open(sealed, wire.HEADER_SIZE, 2, KAT_DATA_PN) == body
    key = crypto.hello_key(PSK)
    hello = crypto.seal_hello(key, HELLO_HEADER, HELLO_BODY, KAT_HELLO_LINK, KAT_HELLO_PN)
    assert hello.hex() == KAT_SEALED_HELLO
    assert crypto.open_hello(key, hello, 11, KAT_HELLO_LINK, KAT_HELLO_PN) == HELLO_BODY
    response = crypto.seal_hello(
        key, RESPONSE_HEADER, RESPONSE_BODY, KAT_RESPONSE_LINK, KAT_RESPONSE_PN, NONCE_I
    )
    assert response.hex() == KAT_SEALED_RESPONSE
    opened = crypto.open_hello(key, response, 11, KAT_RESPONSE_LINK, KAT_RESPONSE_PN, NONCE_I)
    assert opened == RESPONSE_BODY
    assert wire.decode(RESPONSE_HEADER + opened).body == wire.Hello(nonce=NONCE_R, response=True)


def test_known_answers_use_the_spec_nonce_and_associated_data() -> None:
    """The vectors rebuilt with the raw AEAD, the nonce and AD built byte by byte."""
    key, iv = bytes.fromhex(KAT_I2R_KEY), bytes.fromhex(KAT_I2R_IV)
    sealed = bytes.fromhex(KAT_SEALED_DATA)
    nonce = _ref_nonce(iv, 2, KAT_DATA_PN)
    body = ChaCha20Poly1305(key).decrypt(nonce, sealed[11:], HEADER + b"\x02")
    assert wire.decode(HEADER + body) == wire.Packet(
        wire.Header(session=SESSION, link_seq=0xFFFE, ts=123456789),
        wire.Data(seq=41, deadline=0x075E1705, stream=0, msg=9, payload=b"hello"),
    )
    aead = ChaCha20Poly1305(bytes.fromhex(KAT_HELLO_KEY))
    tag = aead.encrypt(
        _ref_nonce(HELLO_BODY[1:13], 1, 0x1_FFFE), b"", HELLO_HEADER + HELLO_BODY + b"\x01"
    )
    assert bytes.fromhex(KAT_SEALED_HELLO) == HELLO_HEADER + HELLO_BODY + tag
    tag = aead.encrypt(
        _ref_nonce(NONCE_R[:12], 3, 3), b"", RESPONSE_HEADER + RESPONSE_BODY + b"\x03" + NONCE_I
    )
    assert bytes.fromhex(KAT_SEALED_RESPONSE) == RESPONSE_HEADER + RESPONSE_BODY + tag


# --- sealing and opening ---------------------------------------------------------------


@given(direction_keys, headers, bodies, links, packet_numbers)
def test_round_trip(keys: DirectionKeys, header: bytes, body: bytes, link: int, pn: int) -> None:
    sealed = Sealer(keys).seal(header, body, link, pn)
    assert len(sealed) == len(header) + len(body) + wire.TAG_SIZE
    assert sealed[: len(header)] == header
    opener = Opener(keys)
    assert opener.open(sealed, len(header), link, pn) == body
    assert opener.open(memoryview(sealed), len(header), link, pn) == body
    assert opener.open(bytearray(sealed), len(header), link, pn) == body
    assert (
        ChaCha20Poly1305(keys.key).decrypt(
            _ref_nonce(keys.iv, link, pn), sealed[len(header) :], header + bytes((link,))
        )
        == body
    )


@given(direction_keys, headers, st.binary(min_size=8, max_size=1500), links, packet_numbers)
def test_ciphertext_differs_from_body(
    keys: DirectionKeys, header: bytes, body: bytes, link: int, pn: int
) -> None:
    sealed = Sealer(keys).seal(header, body, link, pn)
    assert sealed[len(header) : -wire.TAG_SIZE] != body


@given(direction_keys, headers, bodies, links, packet_numbers, st.data())
def test_any_bit_flip_fails(
    keys: DirectionKeys, header: bytes, body: bytes, link: int, pn: int, data: st.DataObject
) -> None:
    sealed = Sealer(keys).seal(header, body, link, pn)
    bit = data.draw(st.integers(0, 8 * len(sealed) - 1), label="bit")
    with pytest.raises(AuthenticationFailed):
        Opener(keys).open(_flip(sealed, bit), len(header), link, pn)


def test_every_single_bit_flip_fails() -> None:
    keys, _ = crypto.session_keys(PSK, SESSION, NONCE_I, NONCE_R)
    sealed = Sealer(keys).seal(HEADER, b"a body of thirty-two bytes......", 3, 1000)
    opener = Opener(keys)
    for bit in range(8 * len(sealed)):
        with pytest.raises(AuthenticationFailed):
            opener.open(_flip(sealed, bit), len(HEADER), 3, 1000)


@given(direction_keys, headers, bodies, links, links, packet_numbers)
def test_other_link_fails(
    keys: DirectionKeys, header: bytes, body: bytes, link: int, other: int, pn: int
) -> None:
    sealed = Sealer(keys).seal(header, body, link, pn)
    if other != link:
        with pytest.raises(AuthenticationFailed):
            Opener(keys).open(sealed, len(header), other, pn)


@given(direction_keys, headers, bodies, links, packet_numbers, packet_numbers)
def test_other_packet_number_fails(
    keys: DirectionKeys, header: bytes, body: bytes, link: int, pn: int, other: int
) -> None:
    sealed = Sealer(keys).seal(header, body, link, pn)
    opener = Opener(keys)
    for wrong in (other, pn + 1, pn - 1, pn + 2**16, pn ^ (1 << 63), pn + 2**64):
        if wrong != pn:
            with pytest.raises(AuthenticationFailed):
                opener.open(sealed, len(header), link, wrong)


@given(psks, sessions, nonces, nonces, headers, bodies, links, packet_numbers)
def test_other_keys_fail(
    psk: bytes,
    session: int,
    nonce_i: bytes,
    nonce_r: bytes,
    header: bytes,
    body: bytes,
    link: int,
    pn: int,
) -> None:
    i2r, r2i = crypto.session_keys(psk, session, nonce_i, nonce_r)
    sealed = Sealer(i2r).seal(header, body, link, pn)
    others = [
        r2i,  # the other direction
        crypto.session_keys(psk, session ^ 1, nonce_i, nonce_r)[0],  # another session id
        crypto.session_keys(psk, session, _flip(nonce_i, 0), nonce_r)[0],  # another nonce_i
        crypto.session_keys(psk, session, nonce_i, _flip(nonce_r, 0))[0],  # another nonce_r
        crypto.session_keys(_flip(psk, 255), session, nonce_i, nonce_r)[0],  # another psk
        DirectionKeys(key=i2r.key, iv=_flip(i2r.iv, 95)),  # the right key, another iv
    ]
    for keys in others:
        with pytest.raises(AuthenticationFailed):
            Opener(keys).open(sealed, len(header), link, pn)
    # and the other direction's sealer does not produce what this direction opens
    with pytest.raises(AuthenticationFailed):
        Opener(i2r).open(Sealer(r2i).seal(header, body, link, pn), len(header), link, pn)


@given(direction_keys, headers, bodies, links, packet_numbers)
def test_truncations_and_extensions_fail(
    keys: DirectionKeys, header: bytes, body: bytes, link: int, pn: int
) -> None:
    sealed = Sealer(keys).seal(header, body, link, pn)
    opener = Opener(keys)
    for cut in range(len(sealed)):
        with pytest.raises(AuthenticationFailed):
            opener.open(sealed[:cut], len(header), link, pn)
    for extra in (b"\x00", b"\x00" * 16):
        with pytest.raises(AuthenticationFailed):
            opener.open(sealed + extra, len(header), link, pn)
    for header_len in {len(header) - 1, len(header) + 1, -1, len(sealed), 10**9} - {len(header)}:
        with pytest.raises(AuthenticationFailed):
            opener.open(sealed, header_len, link, pn)


@given(
    direction_keys,
    st.binary(max_size=2000) | st.binary(max_size=40),
    st.integers(-3, 60),
    links,
    st.integers(-(2**70), 2**70) | packet_numbers,
)
def test_garbage_raises_only_authentication_failed(
    keys: DirectionKeys, data: bytes, header_len: int, link: int, pn: int
) -> None:
    opener = Opener(keys)
    for datagram in (data, memoryview(data), bytearray(data)):
        with pytest.raises(AuthenticationFailed):
            opener.open(datagram, header_len, link, pn)


def test_sealer_rejects_misuse_without_changing_state() -> None:
    keys, _ = crypto.session_keys(PSK, SESSION, NONCE_I, NONCE_R)
    sealer, opener = Sealer(keys), Opener(keys)
    for link, pn in [(-1, 0), (256, 0), (0, -1), (0, 2**64)]:
        with pytest.raises(UsageError):
            sealer.seal(HEADER, b"x", link, pn)
    first = sealer.seal(HEADER, b"x", 5, 7)
    for pn in (7, 6, 0):  # a repeated or older packet number would repeat a nonce
        with pytest.raises(UsageError):
            sealer.seal(HEADER, b"y", 5, pn)
    assert opener.open(sealer.seal(HEADER, b"y", 5, 8), len(HEADER), 5, 8) == b"y"
    assert opener.open(sealer.seal(HEADER, b"z", 6, 0), len(HEADER), 6, 0) == b"z"
    last = sealer.seal(HEADER, b"w", 5, 2**64 - 1)
    assert opener.open(last, len(HEADER), 5, 2**64 - 1) == b"w"
    assert opener.open(first, len(HEADER), 5, 7) == b"x"
    for link in (-1, 256):
        with pytest.raises(UsageError):
            opener.open(first, len(HEADER), link, 7)


def test_sealed_wire_packets_have_the_sizes_of_section_5() -> None:
    keys, _ = crypto.session_keys(PSK, SESSION, NONCE_I, NONCE_R)
    sealer = Sealer(keys)
    for size in (0, 200, 1200):
        body = wire.pack_data(1, 2, 0, 3, bytes(size))
        sealed = sealer.seal(HEADER, body, 0, size)
        assert len(sealed) == 39 + size
        plain = Opener(keys).open(sealed, wire.HEADER_SIZE, 0, size)
        assert wire.decode(HEADER + plain).body == wire.Data(
            seq=1, deadline=2, stream=0, msg=3, payload=bytes(size)
        )


# --- key schedule ----------------------------------------------------------------------


@given(psks, sessions, nonces, nonces)
def test_key_schedule_is_deterministic_and_directional(
    psk: bytes, session: int, nonce_i: bytes, nonce_r: bytes
) -> None:
    i2r, r2i = crypto.session_keys(psk, session, nonce_i, nonce_r)
    assert (i2r, r2i) == crypto.session_keys(psk, session, nonce_i, nonce_r)
    assert i2r != r2i
    assert i2r.key != r2i.key
    assert i2r.iv != r2i.iv
    assert len(i2r.key) == len(r2i.key) == 32
    assert len(i2r.iv) == len(r2i.iv) == 12
    assert crypto.hello_key(psk) not in (i2r.key, r2i.key)


@given(psks, sessions, nonces, nonces, st.sampled_from(["psk", "session", "nonce_i", "nonce_r"]))
def test_every_input_changes_both_directions(
    psk: bytes, session: int, nonce_i: bytes, nonce_r: bytes, which: str
) -> None:
    psk2 = _flip(psk, 3) if which == "psk" else psk
    session2 = session ^ 1 if which == "session" else session
    nonce_i2 = _flip(nonce_i, 3) if which == "nonce_i" else nonce_i
    nonce_r2 = _flip(nonce_r, 3) if which == "nonce_r" else nonce_r
    before = crypto.session_keys(psk, session, nonce_i, nonce_r)
    after = crypto.session_keys(psk2, session2, nonce_i2, nonce_r2)
    for old, new in zip(before, after, strict=True):
        assert old.key != new.key
        assert old.iv != new.iv
    assert (crypto.hello_key(psk) == crypto.hello_key(psk2)) == (which != "psk")


@given(psks, sessions, nonces, nonces, nonces)
def test_replayed_hello_gets_fresh_keys_in_both_directions(
    psk: bytes, session: int, nonce_i: bytes, old_nonce_r: bytes, fresh_nonce_r: bytes
) -> None:
    """An attacker replays an old HELLO (same nonce_i), then that session's DATA: the
    responder's fresh nonce_r gives other keys both ways, so the old DATA opens nowhere."""
    if old_nonce_r == fresh_nonce_r:
        return
    old_i2r, old_r2i = crypto.session_keys(psk, session, nonce_i, old_nonce_r)
    new_i2r, new_r2i = crypto.session_keys(psk, session, nonce_i, fresh_nonce_r)
    assert old_i2r.key != new_i2r.key
    assert old_i2r.iv != new_i2r.iv
    assert old_r2i.key != new_r2i.key
    assert old_r2i.iv != new_r2i.iv
    recorded = Sealer(old_i2r).seal(HEADER, b"old data", 0, 5)
    assert Opener(old_i2r).open(recorded, len(HEADER), 0, 5) == b"old data"
    with pytest.raises(AuthenticationFailed):
        Opener(new_i2r).open(recorded, len(HEADER), 0, 5)


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_psk_must_be_32_bytes(size: int) -> None:
    psk = bytes(size)
    with pytest.raises(ConfigError):
        crypto.hello_key(psk)
    with pytest.raises(ConfigError):
        crypto.session_keys(psk, SESSION, NONCE_I, NONCE_R)


def test_other_key_schedule_misuse() -> None:
    for session in (-1, 2**32):
        with pytest.raises(UsageError):
            crypto.session_keys(PSK, session, NONCE_I, NONCE_R)
    for nonce_i, nonce_r in [
        (NONCE_I[:15], NONCE_R),
        (NONCE_I, NONCE_R + b"\x00"),
        (b"", NONCE_R),
        (NONCE_I, b""),
        (NONCE_I + NONCE_R, b""),  # the salt's length would match, but not its parts
    ]:
        with pytest.raises(UsageError):
            crypto.session_keys(PSK, SESSION, nonce_i, nonce_r)
    with pytest.raises(UsageError):
        DirectionKeys(key=bytes(31), iv=bytes(12))
    with pytest.raises(UsageError):
        DirectionKeys(key=bytes(32), iv=bytes(16))


def test_repr_hides_the_keys() -> None:
    for keys in crypto.session_keys(PSK, SESSION, NONCE_I, NONCE_R):
        text = repr(keys)
        assert keys.key.hex() not in text
        assert repr(keys.key) not in text
        assert repr(keys.iv) not in text
        assert text == "DirectionKeys(key=<32 bytes>, iv=<12 bytes>)"


# --- HELLO -----------------------------------------------------------------------------

hello_bodies = st.builds(lambda flags, nonce: bytes((flags,)) + nonce, st.integers(0, 255), nonces)
bounds = st.just(b"") | nonces


@given(psks, headers, hello_bodies, links, packet_numbers, bounds)
def test_hello_round_trip(
    psk: bytes, header: bytes, body: bytes, link: int, pn: int, bound: bytes
) -> None:
    key = crypto.hello_key(psk)
    sealed = crypto.seal_hello(key, header, body, link, pn, bound)
    assert sealed[:-16] == header + body  # in the clear
    assert len(sealed) == len(header) + 17 + 16
    for datagram in (sealed, memoryview(sealed), bytearray(sealed)):
        assert crypto.open_hello(key, datagram, len(header), link, pn, bound) == body
    tag = ChaCha20Poly1305(key).encrypt(
        _ref_nonce(body[1:13], link, pn), b"", header + body + bytes((link,)) + bound
    )
    assert sealed[-16:] == tag


@given(psks, headers, hello_bodies, links, packet_numbers, bounds, st.data())
def test_hello_tampering_fails(
    psk: bytes,
    header: bytes,
    body: bytes,
    link: int,
    pn: int,
    bound: bytes,
    data: st.DataObject,
) -> None:
    key = crypto.hello_key(psk)
    sealed = crypto.seal_hello(key, header, body, link, pn, bound)
    hlen = len(header)
    bit = data.draw(st.integers(0, 8 * len(sealed) - 1), label="bit")
    with pytest.raises(AuthenticationFailed):
        crypto.open_hello(key, _flip(sealed, bit), hlen, link, pn, bound)
    with pytest.raises(AuthenticationFailed):  # another link
        crypto.open_hello(key, sealed, hlen, link ^ 1, pn, bound)
    for wrong in {pn + 1, pn - 1, pn ^ (1 << 63), pn + 2**64} - {pn}:  # another packet number
        with pytest.raises(AuthenticationFailed):
            crypto.open_hello(key, sealed, hlen, link, wrong, bound)
    with pytest.raises(AuthenticationFailed):  # another psk
        crypto.open_hello(crypto.hello_key(_flip(psk, 0)), sealed, hlen, link, pn, bound)
    for other in (b"", _flip(bound or bytes(16), 127), bytes(16)):  # answering another HELLO
        if other != bound:
            with pytest.raises(AuthenticationFailed):
                crypto.open_hello(key, sealed, hlen, link, pn, other)
    for cut in range(len(sealed)):
        with pytest.raises(AuthenticationFailed):
            crypto.open_hello(key, sealed[:cut], hlen, link, pn, bound)
    with pytest.raises(AuthenticationFailed):
        crypto.open_hello(key, sealed + b"\x00", hlen, link, pn, bound)
    for header_len in (hlen - 1, hlen + 1):
        with pytest.raises(AuthenticationFailed):
            crypto.open_hello(key, sealed, header_len, link, pn, bound)


@pytest.mark.parametrize(
    ("sealed", "link", "pn", "bound"),
    [
        (KAT_SEALED_HELLO, KAT_HELLO_LINK, KAT_HELLO_PN, b""),
        (KAT_SEALED_RESPONSE, KAT_RESPONSE_LINK, KAT_RESPONSE_PN, NONCE_I),
    ],
    ids=["hello", "response"],
)
def test_every_hello_bit_flip_fails(sealed: str, link: int, pn: int, bound: bytes) -> None:
    key = crypto.hello_key(PSK)
    datagram = bytes.fromhex(sealed)
    assert len(crypto.open_hello(key, datagram, 11, link, pn, bound)) == 17
    for bit in range(8 * len(datagram)):
        with pytest.raises(AuthenticationFailed):
            crypto.open_hello(key, _flip(datagram, bit), 11, link, pn, bound)


def test_response_is_bound_to_the_hello_it_answers() -> None:
    """The answer opens only with the nonce_i of the HELLO it answers; a HELLO sealed
    without a bound does not open as an answer, nor an answer as a HELLO."""
    key = crypto.hello_key(PSK)
    response = bytes.fromhex(KAT_SEALED_RESPONSE)
    link, pn = KAT_RESPONSE_LINK, KAT_RESPONSE_PN
    for other in (b"", _flip(NONCE_I, 0), _flip(NONCE_I, 127), NONCE_R, bytes(16)):
        with pytest.raises(AuthenticationFailed):
            crypto.open_hello(key, response, 11, link, pn, other)
    unbound = crypto.seal_hello(key, RESPONSE_HEADER, RESPONSE_BODY, link, pn)
    assert unbound != response
    with pytest.raises(AuthenticationFailed):
        crypto.open_hello(key, unbound, 11, link, pn, NONCE_I)
    hello = bytes.fromhex(KAT_SEALED_HELLO)
    with pytest.raises(AuthenticationFailed):
        crypto.open_hello(key, hello, 11, KAT_HELLO_LINK, KAT_HELLO_PN, NONCE_I)


@given(psks, hello_bodies, st.lists(st.tuples(links, packet_numbers), min_size=2, max_size=8))
def test_each_hello_transmission_has_its_own_nonce_and_tag(
    psk: bytes, body: bytes, transmissions: list[tuple[int, int]]
) -> None:
    key = crypto.hello_key(psk)
    sent = set(transmissions)
    nonces_used = {_ref_nonce(body[1:13], link, pn) for link, pn in sent}
    tags = {crypto.seal_hello(key, HELLO_HEADER, body, link, pn)[-16:] for link, pn in sent}
    assert len(nonces_used) == len(tags) == len(sent)


@given(
    psks,
    st.binary(max_size=80),
    st.integers(-3, 60),
    links,
    st.integers(-(2**70), 2**70) | packet_numbers,
    bounds,
)
def test_hello_garbage_raises_only_authentication_failed(
    psk: bytes, data: bytes, header_len: int, link: int, pn: int, bound: bytes
) -> None:
    key = crypto.hello_key(psk)
    for datagram in (data, memoryview(data), bytearray(data)):
        with pytest.raises(AuthenticationFailed):
            crypto.open_hello(key, datagram, header_len, link, pn, bound)


def test_hello_packet_number_no_sender_uses_fails_to_open() -> None:
    key = crypto.hello_key(PSK)
    hello = bytes.fromhex(KAT_SEALED_HELLO)
    for pn in (-1, -KAT_HELLO_PN, 2**64, 2**64 + KAT_HELLO_PN):
        with pytest.raises(AuthenticationFailed):
            crypto.open_hello(key, hello, 11, KAT_HELLO_LINK, pn)


def test_hello_misuse() -> None:
    key = crypto.hello_key(PSK)
    hello = bytes.fromhex(KAT_SEALED_HELLO)
    for body in (HELLO_BODY[:16], HELLO_BODY + b"\x00"):
        with pytest.raises(UsageError):
            crypto.seal_hello(key, HELLO_HEADER, body, 0, 0)
    for link in (-1, 256):
        with pytest.raises(UsageError):
            crypto.seal_hello(key, HELLO_HEADER, HELLO_BODY, link, 0)
        with pytest.raises(UsageError):
            crypto.open_hello(key, hello, 11, link, KAT_HELLO_PN)
    for pn in (-1, 2**64):
        with pytest.raises(UsageError):
            crypto.seal_hello(key, HELLO_HEADER, HELLO_BODY, 0, pn)
    for bound in (b"\x00", NONCE_I[:15], NONCE_I + b"\x00", NONCE_I + NONCE_R):
        with pytest.raises(UsageError):
            crypto.seal_hello(key, HELLO_HEADER, HELLO_BODY, 0, 0, bound)
        with pytest.raises(UsageError):
            crypto.open_hello(key, hello, 11, KAT_HELLO_LINK, KAT_HELLO_PN, bound)
    for bad_key in (key[:16], key + b"\x00"):
        with pytest.raises(UsageError):
            crypto.seal_hello(bad_key, HELLO_HEADER, HELLO_BODY, 0, 0)
        with pytest.raises(UsageError):
            crypto.open_hello(bad_key, hello, 11, KAT_HELLO_LINK, KAT_HELLO_PN)


# --- the v1 HELLO weakness, and why v2 closes it -----------------------------------------
# §8 v1 sealed every HELLO with one key and nonce = the HELLO nonce's first 12 bytes, but
# a HELLO is re-sent (on every link, until answered) with a new Link Seq and Timestamp:
# two tags under one (key, nonce) pair give away that nonce's Poly1305 key (r, s), and
# then anyone can forge HELLOs with any header, flags and last 4 nonce bytes. The forger
# below is plain modular arithmetic on public values (RFC 8439 §2.5, §2.8). v2 XORs the
# link and packet number into the nonce, so no two transmissions share a Poly1305 key.

_P1305 = (1 << 130) - 5
_CLAMP = 0x0FFFFFFC0FFFFFFC0FFFFFFC0FFFFFFF


def _poly1305_blocks(ad: bytes) -> list[int]:
    """RFC 8439 §2.8 mac_data for an empty ciphertext and <= 32 bytes of associated data,
    as Poly1305 block integers."""
    assert len(ad) <= 32
    mac_data = ad + bytes(-len(ad) % 16) + struct.pack("<QQ", len(ad), 0)
    return [int.from_bytes(mac_data[i : i + 16], "little") | 1 << 128 for i in range(0, 48, 16)]


def _poly1305_sum(blocks: list[int], r: int) -> int:
    acc = 0
    for block in blocks:
        acc = (acc + block) * r % _P1305
    return acc


def _forge_hello(one: bytes, two: bytes, forged_clear: bytes, link: int) -> bytes:
    """A tag for `forged_clear` on `link`, from two sealed unbound HELLOs that differ in
    their first 16 bytes, assuming (as v1 did) that both were sealed under one nonce."""
    ad1, ad2 = one[:-16] + bytes((link,)), two[:-16] + bytes((link,))
    b1, b2 = _poly1305_blocks(ad1), _poly1305_blocks(ad2)
    t1, t2 = int.from_bytes(one[-16:], "little"), int.from_bytes(two[-16:], "little")
    # t1 - t2 = (b1[0] - b2[0]) * r^3 mod p, up to a multiple of 2^128.
    inverse, cube_root = pow(b1[0] - b2[0], -1, _P1305), pow(3, -1, _P1305 - 1)
    for k in range(-5, 5):
        r = pow((t1 - t2 + (k << 128)) * inverse % _P1305, cube_root, _P1305)
        if r & _CLAMP == r:
            s = (t1 - _poly1305_sum(b1, r)) % (1 << 128)
            blocks = _poly1305_blocks(forged_clear + bytes((link,)))
            tag = (_poly1305_sum(blocks, r) + s) % (1 << 128)
            return forged_clear + tag.to_bytes(16, "little")
    return forged_clear + one[-16:]


def _hello_header(link_seq: int, ts: int) -> bytes:
    return bytes.fromhex("260a0b0c0d") + struct.pack("!HI", link_seq, ts)


# Another session id, RESPONSE set and a new nonce tail: nothing the psk holder sent.
FORGED_CLEAR = bytes.fromhex("26deadbeef000000000000") + b"\x01" + HELLO_BODY[1:13] + b"\xff" * 4


def test_the_forger_works_when_a_hello_nonce_repeats() -> None:
    """The control: two HELLOs sealed with one nonce, link and packet number (what v1 did
    on every re-send, and what seal_hello's caller must never do) let anyone forge."""
    key = crypto.hello_key(PSK)
    first = crypto.seal_hello(key, _hello_header(0xFFFE, 1000), HELLO_BODY, 1, 7)
    again = crypto.seal_hello(key, _hello_header(0xFFFF, 2000), HELLO_BODY, 1, 7)
    forged = _forge_hello(first, again, FORGED_CLEAR, 1)
    assert crypto.open_hello(key, forged, 11, 1, 7) == FORGED_CLEAR[11:]


def test_resent_hellos_do_not_let_an_attacker_forge_one() -> None:
    """One HELLO re-sent on several links, each time as the link's next packet: every
    pair the attacker combines fails to forge, on any link and packet number."""
    key = crypto.hello_key(PSK)
    transmissions = [(1, 0x1_FFFE), (1, 0x1_FFFF), (1, 0x2_0000), (2, 0), (2, 1), (0, 5)]
    sent = [
        crypto.seal_hello(key, _hello_header(pn & 0xFFFF, 1000 + i), HELLO_BODY, link, pn)
        for i, (link, pn) in enumerate(transmissions)
    ]
    for i, one in enumerate(sent):
        for j, two in enumerate(sent):
            if i == j:
                continue
            for link in {transmissions[i][0], transmissions[j][0]}:
                forged = _forge_hello(one, two, FORGED_CLEAR, link)
                for at_link, at_pn in transmissions:
                    with pytest.raises(AuthenticationFailed):
                        crypto.open_hello(key, forged, 11, at_link, at_pn)
