"""Session start: the HELLO exchange and the session keys (wire-format.md sections 7, 8).

The initiator picks the session id and its nonce; the responder adopts them from the
first acceptable HELLO and answers with its own nonce. With a pre-shared key both
directions' keys depend on both nonces, so nothing but HELLO is sealed before the
exchange completes, and a replayed old HELLO cannot bring back old keys. Until the
responder has authenticated a datagram other than HELLO (`lock`), a HELLO of another
session replaces the one it adopted if it is *newer*, so a replayed HELLO cannot lock
the real initiator out, and replayed old ones cannot take its place (WireGuard's
handshake timestamp, in the first 8 bytes of the initiator's nonce: the µs of its clock
when the endpoint was made; the rest is random). An adopted session that has not proved
itself for `_HALF_OPEN_NS` may be replaced by any HELLO, so an initiator whose clock
started again (a reboot) gets in. A repeated HELLO of the adopted session is answered
at most once per `_ANSWER_GAP_NS` per link: replays are not answered at line rate.

`Handshake` only decides; the endpoint sends the packets and reports the events.
"""

from __future__ import annotations

import enum
import random
from typing import Final

from plait import crypto
from plait.errors import AuthenticationFailed
from plait.wire import Buffer, Hello, PacketType, decode_body, encode_body

__all__ = ["Handshake", "HelloOutcome"]

_HALF_OPEN_NS: Final = 2_000_000_000
_ANSWER_GAP_NS: Final = 20_000_000


class HelloOutcome(enum.Enum):
    """What a received HELLO means."""

    REJECT = 0
    """Not for this session, or not expected: drop it."""
    ESTABLISHED = 1
    """The session starts now (responder: adopted; initiator: answered)."""
    REPLACED = 2
    """Responder: a new HELLO replaced a half-open session (forget per-link state)."""
    ANSWER_AGAIN = 3
    """Responder: the initiator repeats its HELLO; our answer was lost."""
    REPEAT = 4
    """A repeated answer, or a repeated HELLO answered just before: nothing to do."""


class Handshake:
    """HELLO state and session keys of one endpoint."""

    __slots__ = (
        "_adopted_at",
        "_answered",
        "_hello_key",
        "_psk",
        "_rng",
        "established",
        "initiator",
        "locked",
        "nonce_i",
        "nonce_r",
        "opener",
        "sealer",
        "session",
    )

    def __init__(self, psk: bytes | None, initiator: bool, rng: random.Random, now: int) -> None:
        self._psk = psk
        self._rng = rng
        self._hello_key = crypto.hello_key(psk) if psk else b""
        self.initiator = initiator
        self.established = False
        self.locked = False  # an authenticated non-HELLO datagram of the session arrived
        self.sealer: crypto.Sealer | None = None
        self.opener: crypto.Opener | None = None
        self.nonce_r = b""
        self._adopted_at = 0
        self._answered: dict[int, int] = {}  # link -> when a repeated HELLO was last answered
        if initiator:
            self.session = rng.getrandbits(32)
            stamp = ((now // 1000) & 0xFFFF_FFFF_FFFF_FFFF).to_bytes(8, "big")
            self.nonce_i = stamp + rng.randbytes(16)[8:]  # the timestamp, then 8 random bytes
        else:
            self.session, self.nonce_i = -1, b""

    @property
    def can_seal(self) -> bool:
        """True when more than HELLO may go out: a session, and with a psk, its keys."""
        return self.session >= 0 and (self.sealer is not None or not self._psk)

    def hello_body(self) -> bytes:
        """The body of our HELLO (the initiator's request, or the responder's answer)."""
        if self.initiator:
            return encode_body(Hello(nonce=self.nonce_i, response=False))
        return encode_body(Hello(nonce=self.nonce_r, response=True))

    def seal_hello(self, header: bytes, body: bytes, link: int, packet_number: int) -> bytes:
        if not self._psk:
            return header + body
        bound = b"" if self.initiator else self.nonce_i  # an answer names the request
        return crypto.seal_hello(self._hello_key, header, body, link, packet_number, bound)

    def open_hello(self, data: Buffer, offset: int, link: int, packet_number: int) -> Hello | None:
        """The HELLO in `data`, authenticated if there is a psk.

        Raises:
            AuthenticationFailed, MalformedPacket: the endpoint drops and counts these.
        """
        if self._psk:
            bound = self.nonce_i if self.initiator else b""
            body = crypto.open_hello(self._hello_key, data, offset, link, packet_number, bound)
            hello = decode_body(PacketType.HELLO, body)
        else:
            hello = decode_body(PacketType.HELLO, data, offset)
        return hello if isinstance(hello, Hello) else None

    def opens_as_request(self, data: Buffer, offset: int, link: int, packet_number: int) -> bool:
        """Initiator: whether a HELLO that failed authentication is another initiator's
        request under our psk (both ends initiators). One more AEAD, while connecting."""
        if not self._psk or not self.initiator:
            return False
        try:
            crypto.open_hello(self._hello_key, data, offset, link, packet_number, b"")
        except AuthenticationFailed:
            return False
        return True

    def on_hello(self, hello: Hello | None, session: int, now: int, link: int) -> HelloOutcome:
        """Advance the exchange with a HELLO from the peer's `session` on `link` (None:
        the datagram did not hold one)."""
        if hello is None:
            return HelloOutcome.REJECT
        if self.initiator:
            return self._on_answer(hello, session)
        return self._asked(hello, session, now, link)

    def _on_answer(self, hello: Hello, session: int) -> HelloOutcome:
        if not hello.response or session != self.session:
            return HelloOutcome.REJECT
        if self.established:
            if hello.nonce == self.nonce_r:
                return HelloOutcome.REPEAT
            if self.locked:
                return HelloOutcome.REJECT
            # the responder re-adopted our session after a replayed HELLO displaced it:
            # its new nonce means new keys (we have not authenticated anything yet)
            self.nonce_r = hello.nonce
            self._derive()
            return HelloOutcome.REPEAT
        self.nonce_r = hello.nonce
        self._derive()
        return HelloOutcome.ESTABLISHED

    def _asked(self, hello: Hello, session: int, now: int, link: int) -> HelloOutcome:
        if hello.response:
            return HelloOutcome.REJECT
        outcome = HelloOutcome.ESTABLISHED
        if self.session >= 0:
            if session == self.session and hello.nonce == self.nonce_i:
                if now - self._answered.get(link, -_ANSWER_GAP_NS) < _ANSWER_GAP_NS:
                    return HelloOutcome.REPEAT
                self._answered[link] = now
                return HelloOutcome.ANSWER_AGAIN
            if self.locked:
                return HelloOutcome.REJECT  # one endpoint carries one session
            older = hello.nonce[:8] <= self.nonce_i[:8]  # big-endian: bytes order as numbers
            if older and now - self._adopted_at < _HALF_OPEN_NS:
                return HelloOutcome.REJECT  # an older session's HELLO: a replay
            outcome = HelloOutcome.REPLACED
        self.session, self.nonce_i, self._adopted_at = session, hello.nonce, now
        self._answered.clear()
        self.nonce_r = self._rng.randbytes(16)
        self._derive()
        return outcome

    def _derive(self) -> None:
        self.established = True
        if not self._psk:
            return
        i2r, r2i = crypto.session_keys(self._psk, self.session, self.nonce_i, self.nonce_r)
        if self.initiator:
            self.sealer, self.opener = crypto.Sealer(i2r), crypto.Opener(r2i)
        else:
            self.opener, self.sealer = crypto.Opener(i2r), crypto.Sealer(r2i)
