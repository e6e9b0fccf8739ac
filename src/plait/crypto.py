"""Datagram protection for sessions with a pre-shared key (docs/wire-format.md §8, v2).

Every datagram is ``header || ChaCha20-Poly1305(body) || tag`` (RFC 8439). The header
(11 or 17 bytes) travels in the clear and is authenticated, followed by one byte, the
link id, as associated data, so a datagram replayed onto another link fails to open.
The 12-byte nonce is ``iv XOR (0x000000 || link u8 || packet number u64)``, where the
packet number is the sender's unwrapped per-link counter (§6).

Keys (1-RTT): `session_keys` derives both directions from one HKDF-SHA256 (RFC 5869)
secret over the psk, salted with ``"plait v1" || session u32 || nonce_i || nonce_r``.
Both HELLO nonces are needed, so nothing but HELLO is sealed before the HELLO exchange
completes, and the responder's fresh nonce_r changes both directions' keys: a replayed
old HELLO followed by replayed DATA opens nothing.

HELLO packets are sealed with `hello_key` (independent of the session) and keep their
body (flags || 16-byte nonce) in the clear; the tag covers an empty plaintext. The AEAD
nonce is built like a data nonce with the first 12 bytes of the HELLO's own nonce as
iv, so every transmission (each link, each packet number) uses a fresh nonce, and
re-sending a HELLO gives nothing away. The associated data is ``header || body || link
u8 || bound``: `bound` is empty for the initiator's HELLO and the initiator's nonce_i
for the responder's answer, which binds the answer to the request it answers.

Rules:

* Nothing here reads a clock or draws entropy: nonces and session ids are inputs.
* All primitives come from `cryptography`; this module only builds nonces, associated
  data and HKDF inputs.
* `Opener.open` and `open_hello` raise `AuthenticationFailed` and nothing else for any
  datagram (truncated, garbage, forged, replayed onto another link, a packet number no
  sender uses); misuse by the caller (a link id outside 0..255, a key or `bound` of
  the wrong size) raises `UsageError`, a psk of the wrong size `ConfigError`.
* A `Sealer` refuses a packet number that is not larger than the last one it sealed on
  the same link: a repeated nonce would leak the XOR of two plaintexts and the
  Poly1305 key. `seal_hello` keeps no state: its caller must never seal two HELLOs
  with the same nonce on the same link with the same packet number.
"""

from __future__ import annotations

from typing import Final

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from plait.errors import AuthenticationFailed, ConfigError, UsageError
from plait.wire import NONCE_SIZE, TAG_SIZE, Buffer

__all__ = [
    "AEAD_NONCE_SIZE",
    "HELLO_BODY_SIZE",
    "KEY_SIZE",
    "PSK_SIZE",
    "DirectionKeys",
    "Opener",
    "Sealer",
    "hello_key",
    "open_hello",
    "seal_hello",
    "session_keys",
]

#: Bytes of the pre-shared key.
PSK_SIZE: Final = 32
#: Bytes of a ChaCha20-Poly1305 key.
KEY_SIZE: Final = 32
#: Bytes of a ChaCha20-Poly1305 nonce, and so of a direction's iv.
AEAD_NONCE_SIZE: Final = 12
#: Bytes of a HELLO body: flags u8 || nonce (16 bytes).
HELLO_BODY_SIZE: Final = 1 + NONCE_SIZE

_LABEL: Final = b"plait v1"
_HELLO_SALT: Final = b"plait v1 hello"
_PN_LIMIT: Final = 1 << 64
_LINK_COUNT: Final = 256
#: The associated-data suffix for each link id: one byte.
_LINK_BYTE: Final = tuple(bytes((link,)) for link in range(_LINK_COUNT))


@attrs.frozen(repr=False)
class DirectionKeys:
    """The ChaCha20-Poly1305 key and iv of one direction of one session."""

    key: bytes
    iv: bytes

    # checked here rather than by `attrs.field` validators: a class-level `attrs.field()`
    # default fails at import when mypyc compiles this module
    def __attrs_post_init__(self) -> None:
        if len(self.key) != KEY_SIZE:
            raise UsageError(f"key must be {KEY_SIZE} bytes")
        if len(self.iv) != AEAD_NONCE_SIZE:
            raise UsageError(f"iv must be {AEAD_NONCE_SIZE} bytes")

    def __repr__(self) -> str:
        return f"DirectionKeys(key=<{len(self.key)} bytes>, iv=<{len(self.iv)} bytes>)"


# --- key schedule (§8) -----------------------------------------------------------------


def _hkdf(psk: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand(HKDF-Extract(salt, psk), info, length), RFC 5869."""
    return HKDF(algorithm=SHA256(), length=length, salt=salt, info=info).derive(psk)


def _check_psk(psk: bytes) -> None:
    if len(psk) != PSK_SIZE:
        raise ConfigError(f"the pre-shared key must be {PSK_SIZE} bytes")


def hello_key(psk: bytes) -> bytes:
    """The key that seals HELLO packets: independent of the session.

    Raises:
        ConfigError: `psk` is not 32 bytes.
    """
    _check_psk(psk)
    return _hkdf(psk, _HELLO_SALT, b"hello key", KEY_SIZE)


def session_keys(
    psk: bytes, session: int, nonce_i: bytes, nonce_r: bytes
) -> tuple[DirectionKeys, DirectionKeys]:
    """``(i2r, r2i)``: the keys and ivs of both directions of a session.

    secret = HKDF-Extract(salt = "plait v1" || session u32 || nonce_i || nonce_r, psk);
    each direction's key and iv are HKDF-Expand(secret, "i2r key" / "i2r iv" /
    "r2i key" / "r2i iv", 32 / 12). The responder's fresh nonce_r changes both
    directions, so a replayed old HELLO cannot bring back keys used before.

    Raises:
        ConfigError: `psk` is not 32 bytes.
        UsageError: `session` is not a u32 or a nonce is not 16 bytes.
    """
    _check_psk(psk)
    if not 0 <= session <= 0xFFFF_FFFF:
        raise UsageError("session id must be a u32")
    if len(nonce_i) != NONCE_SIZE or len(nonce_r) != NONCE_SIZE:
        raise UsageError(f"HELLO nonces are {NONCE_SIZE} bytes")
    salt = b"".join((_LABEL, session.to_bytes(4, "big"), nonce_i, nonce_r))
    i2r = DirectionKeys(
        key=_hkdf(psk, salt, b"i2r key", KEY_SIZE), iv=_hkdf(psk, salt, b"i2r iv", AEAD_NONCE_SIZE)
    )
    r2i = DirectionKeys(
        key=_hkdf(psk, salt, b"r2i key", KEY_SIZE), iv=_hkdf(psk, salt, b"r2i iv", AEAD_NONCE_SIZE)
    )
    return i2r, r2i


# --- sealing and opening datagrams -----------------------------------------------------


def _link_ivs(iv: bytes) -> dict[int, int]:
    """Per link id: the iv as an integer with the link byte already XORed in."""
    base = int.from_bytes(iv, "big")
    return {link: base ^ (link << 64) for link in range(_LINK_COUNT)}


class Sealer:
    """Seals the datagrams of one direction of a session."""

    __slots__ = ("_encrypt", "_ivs", "_last")

    def __init__(self, keys: DirectionKeys) -> None:
        self._encrypt: Final = ChaCha20Poly1305(keys.key).encrypt
        self._ivs: Final = _link_ivs(keys.iv)
        # Last packet number sealed per link; -1: none yet.
        self._last: Final = [-1] * _LINK_COUNT

    def seal(self, header: bytes, body: bytes, link: int, packet_number: int) -> bytes:
        """``header || ciphertext || tag`` for `body` sent on `link` as `packet_number`.

        Args:
            header: the header (and echo) exactly as sent; authenticated, not encrypted.
            body: the plaintext body (flags byte onwards).
            link: the link id, 0..255.
            packet_number: the sender's unwrapped per-link counter, 0 <= n < 2^64, larger
                than any this sealer has sealed on `link` before.

        Raises:
            UsageError: `link` or `packet_number` out of range, or `packet_number` not
                larger than the last one sealed on `link` (nothing is changed).
        """
        try:
            iv = self._ivs[link]
        except KeyError:
            raise UsageError("link id must be 0..255") from None
        last = self._last
        if not last[link] < packet_number < _PN_LIMIT:
            raise UsageError("packet number must grow on each link and stay below 2^64")
        last[link] = packet_number
        nonce = (iv ^ packet_number).to_bytes(12)  # big-endian by default (3.11+), fastest
        return header + self._encrypt(nonce, body, header + _LINK_BYTE[link])


class Opener:
    """Opens the datagrams of one direction of a session."""

    __slots__ = ("_decrypt", "_ivs")

    def __init__(self, keys: DirectionKeys) -> None:
        self._decrypt: Final = ChaCha20Poly1305(keys.key).decrypt
        self._ivs: Final = _link_ivs(keys.iv)

    def open(self, datagram: Buffer, header_len: int, link: int, packet_number: int) -> bytes:
        """The plaintext body of `datagram`, received on `link` as `packet_number`.

        Args:
            datagram: the whole datagram as received.
            header_len: bytes of header (and echo) in front of the ciphertext.
            link: the link id the datagram arrived on, 0..255.
            packet_number: the sender's per-link counter, unwrapped from Link Seq.

        Raises:
            AuthenticationFailed: for any datagram that is not exactly what the peer
                sealed for this link and packet number (including one too short to hold
                a tag, and a packet number no sender uses: negative or >= 2^64).
            UsageError: `link` is not 0..255.
        """
        try:
            iv = self._ivs[link]
        except KeyError:
            raise UsageError("link id must be 0..255") from None
        if type(datagram) is not bytes:
            datagram = bytes(datagram)
        if not (0 <= packet_number < _PN_LIMIT and 0 <= header_len <= len(datagram) - TAG_SIZE):
            raise AuthenticationFailed("cannot be a sealed datagram")
        try:
            return self._decrypt(
                (iv ^ packet_number).to_bytes(12),
                datagram[header_len:],
                datagram[:header_len] + _LINK_BYTE[link],
            )
        except InvalidTag:
            raise AuthenticationFailed("datagram failed authentication") from None


# --- HELLO -----------------------------------------------------------------------------


def _hello_aead(key: bytes, link: int, bound: bytes) -> ChaCha20Poly1305:
    if len(key) != KEY_SIZE:
        raise UsageError(f"the HELLO key must be {KEY_SIZE} bytes")
    if not 0 <= link < _LINK_COUNT:
        raise UsageError("link id must be 0..255")
    if len(bound) not in (0, NONCE_SIZE):
        raise UsageError(f"bound must be empty or the {NONCE_SIZE}-byte nonce_i")
    return ChaCha20Poly1305(key)


def _hello_nonce(body: bytes, link: int, packet_number: int) -> bytes:
    """The HELLO's nonce (first 12 bytes) XOR (0x000000 || link u8 || packet number u64)."""
    iv = int.from_bytes(body[1 : 1 + AEAD_NONCE_SIZE], "big")
    return (iv ^ (link << 64) ^ packet_number).to_bytes(AEAD_NONCE_SIZE, "big")


def seal_hello(
    key: bytes, header: bytes, body: bytes, link: int, packet_number: int, bound: bytes = b""
) -> bytes:
    """``header || body || tag``: the body (flags || nonce) stays in the clear.

    The tag is ChaCha20-Poly1305 over an empty plaintext with associated data
    ``header || body || link u8 || bound`` and nonce = the first 12 bytes of the HELLO
    nonce XOR (0x000000 || link u8 || packet number u64), so each transmission of a
    HELLO (another link or packet number) uses another AEAD nonce.

    Args:
        key: `hello_key(psk)`.
        header: the header (and echo) exactly as sent.
        body: flags || nonce, 17 bytes.
        link: the link id, 0..255.
        packet_number: the sender's unwrapped per-link counter, 0 <= n < 2^64. Nothing
            here remembers it: never seal two HELLOs with one nonce, link and number.
        bound: b"" for the initiator's HELLO; the initiator's nonce_i (16 bytes) for the
            responder's answer.

    Raises:
        UsageError: the key is not 32 bytes, `body` is not 17 bytes, `link` is not
            0..255, `packet_number` is not 0 <= n < 2^64, or `bound` is neither empty
            nor 16 bytes.
    """
    aead = _hello_aead(key, link, bound)
    if len(body) != HELLO_BODY_SIZE:
        raise UsageError(f"a HELLO body is {HELLO_BODY_SIZE} bytes")
    if not 0 <= packet_number < _PN_LIMIT:
        raise UsageError("packet number must be 0 <= n < 2^64")
    clear = header + body
    nonce = _hello_nonce(body, link, packet_number)
    return clear + aead.encrypt(nonce, b"", clear + _LINK_BYTE[link] + bound)


def open_hello(
    key: bytes,
    datagram: Buffer,
    header_len: int,
    link: int,
    packet_number: int,
    bound: bytes = b"",
) -> bytes:
    """The clear HELLO body (flags || nonce, 17 bytes) of `datagram`, once its tag verifies.

    Args:
        key: `hello_key(psk)`.
        datagram: the whole datagram as received.
        header_len: bytes of header (and echo) in front of the body.
        link: the link id the datagram arrived on, 0..255.
        packet_number: the sender's per-link counter, unwrapped from Link Seq.
        bound: b"" to open an initiator's HELLO; the initiator's own nonce_i to open the
            responder's answer to it.

    Raises:
        AuthenticationFailed: the datagram is not a HELLO sealed with `key` for `link`,
            `packet_number` and `bound` (wrong length, altered, forged, from another
            psk, answering another HELLO, or a packet number no sender uses).
        UsageError: the key is not 32 bytes, `link` is not 0..255, or `bound` is neither
            empty nor 16 bytes.
    """
    aead = _hello_aead(key, link, bound)
    datagram = bytes(datagram)
    if not (
        0 <= packet_number < _PN_LIMIT
        and header_len >= 0
        and len(datagram) == header_len + HELLO_BODY_SIZE + TAG_SIZE
    ):
        raise AuthenticationFailed("not a sealed HELLO")
    clear = datagram[:-TAG_SIZE]
    body = clear[header_len:]
    nonce = _hello_nonce(body, link, packet_number)
    try:
        aead.decrypt(nonce, datagram[-TAG_SIZE:], clear + _LINK_BYTE[link] + bound)
    except InvalidTag:
        raise AuthenticationFailed("HELLO failed authentication") from None
    return body
