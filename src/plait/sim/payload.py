"""Self-describing test messages: every payload carries what the checker needs.

A generated message can be verified by whoever receives it, with no shared state::

    offset  size  field
    0       6     tag: keyed BLAKE2b-48 of everything after it
    6       1     stream
    7       4     index: the message's number on its stream (counts from 0)
    11      6     send time, ns (absolute simulation clock, < 2**48, about 78 hours)
    17      3     deadline budget, µs (deadline = send time + budget * 1000, < 16.7 s)
    20      ...   padding: deterministic bytes, a function of the index

So the smallest message is 20 bytes. The tag covers the header, the padding and the
length, so truncation, corruption and splicing are all caught (a random change passes
with probability 2**-48). The key is public: the tag guards against accidents and
hostile test traffic, not against an attacker.
"""

from __future__ import annotations

import hashlib
import struct
from typing import Final, NamedTuple

from plait.errors import ConfigError

__all__ = ["MAX_BUDGET_NS", "MAX_TIME_NS", "MIN_SIZE", "Decoded", "deadline_of", "decode", "encode"]

_KEY: Final = b"plait.sim payload v1"
_TAG: Final = 6
_FIELDS: Final = struct.Struct("!BIHIHB")  # stream, index, send hi/lo, budget hi/lo
MIN_SIZE: Final = _TAG + _FIELDS.size
MAX_TIME_NS: Final = 2**48 - 1
MAX_BUDGET_NS: Final = (2**24 - 1) * 1_000
_PAD: Final = bytes(range(256)) * 258


class Decoded(NamedTuple):
    """The fields of a verified payload."""

    stream: int
    number: int
    """The message's index on its stream."""
    sent: int
    deadline: int


def _tag(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=_TAG, key=_KEY).digest()


def encode(stream: int, index: int, sent: int, budget_ns: int, size: int) -> bytes:
    """A payload of `size` bytes; its deadline is ``sent + budget_ns // 1000 * 1000``.

    Raises:
        ConfigError: a field is out of range, or `size` is under `MIN_SIZE`.
    """
    budget_us = budget_ns // 1_000
    if not (
        MIN_SIZE <= size <= len(_PAD)
        and 0 <= stream <= 0xFF
        and 0 <= index <= 0xFFFF_FFFF
        and 0 <= sent <= MAX_TIME_NS
        and 0 <= budget_us < 2**24
    ):
        raise ConfigError(f"payload field out of range: {stream=} {index=} {sent=} {size=}")
    start = index & 0xFF
    body = (
        _FIELDS.pack(
            stream, index, sent >> 32, sent & 0xFFFF_FFFF, budget_us >> 8, budget_us & 0xFF
        )
        + _PAD[start : start + size - MIN_SIZE]
    )
    return _tag(body) + body


def decode(data: bytes) -> Decoded | None:
    """The fields of `data`, or None if it is not an intact payload."""
    if len(data) < MIN_SIZE or len(data) > len(_PAD) or _tag(data[_TAG:]) != data[:_TAG]:
        return None
    stream, index, send_hi, send_lo, budget_hi, budget_lo = _FIELDS.unpack_from(data, _TAG)
    sent = send_hi << 32 | send_lo
    return Decoded(stream, index, sent, sent + (budget_hi << 8 | budget_lo) * 1_000)


def deadline_of(sent: int, budget_ns: int) -> int:
    """The deadline `encode` records for a message sent at `sent` with `budget_ns`."""
    return sent + budget_ns // 1_000 * 1_000
