"""Real datagrams captured from the simulator, and the live session they belong to.

The fuzzers and the attacker tests need datagrams that a receiver would accept, not
only random bytes. `capture` runs a short `plait.sim` scenario (three lossy links, FEC,
fragmented and small messages both ways) and keeps every datagram A sent toward B, with
its link, AEAD packet number and plaintext body. `session` then rebuilds B exactly as
it was when that run's session started: the simulator hands each endpoint a seeded
`random.Random`, so rebuilding both ends from the same generator states and letting
them exchange HELLOs gives the same session id, nonces and keys. Every captured
datagram is then a genuine datagram of the rebuilt session.

`Session.endpoint()` returns a fresh copy of that established B in about 0.1 ms (an
unpickled snapshot; the objects that never change, such as the config, the
Reed-Solomon codec and the AEAD primitives, are shared instead of copied). mypyc's
native classes do not pickle, so in the compiled build it replays the handshake instead
(about 1 ms).

`write_corpus(name, ...)` writes seed files for the atheris harnesses into
fuzz/corpus-NAME/ (gitignored). Everything here is deterministic: the same code always
captures the same bytes.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pickle
import random
import sys
import types
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final, NamedTuple

import attrs

import plait
from plait import crypto, sim, wire
from plait.config import FecConfig
from plait.sim import NS_PER_MS, NS_PER_S, Cbr, Mixed, Scenario, Side
from plait.sim.trace import Record

__all__ = [
    "PSK",
    "Capture",
    "Sent",
    "Session",
    "capture",
    "datagrams",
    "fuzz_main",
    "session",
    "write_corpus",
]

#: The pre-shared key of every psk capture.
PSK: Final = hashlib.sha256(b"plait fuzz corpus psk").digest()
MBPS: Final = 1_000_000
#: The seed of the captured session; `OLD_SEED` gives an older session with the same psk.
SEED: Final = 1
OLD_SEED: Final = 2
_NET: Final = Record.NET.name


class Sent(NamedTuple):
    """One datagram A sent toward B during the captured run."""

    time: int
    """When A sent it."""
    arrival: int
    """When the simulated link delivered it to B; -1 if the link lost it."""
    link: int
    pn: int
    """A's per-link counter for it: the AEAD packet number (== its unwrapped Link Seq)."""
    datagram: bytes
    header_len: int
    body: bytes
    """The plaintext body (flags byte onwards), opened with the session keys if sealed."""

    @property
    def ptype(self) -> wire.PacketType:
        return wire.PacketType(self.datagram[0] & 0x0F)


def scenario(psk: bytes | None) -> Scenario:
    """Three lossy links; messages of 20 B to 9 kB (fragmented) A->B, small ones B->A
    (so A sends FEEDBACK), FEC k=4 m=2, one simulated second."""
    links = tuple(
        sim.link(rate * MBPS, delay * NS_PER_MS, jitter_ns=2 * NS_PER_MS, loss=loss)
        for rate, delay, loss in ((2, 30, 0.05), (5, 20, 0.03), (8, 10, 0.02))
    )
    traffic = (
        Mixed(stream=0, sizes=(20, 200, 1200, 3000, 9000), mean_interval_ns=8 * NS_PER_MS),
        Cbr(stream=1, size=40, interval_ns=20 * NS_PER_MS),
        Cbr(stream=2, size=60, interval_ns=50 * NS_PER_MS, sender=Side.B),
    )
    return Scenario(
        "fuzz-capture",
        "the fuzzers' seed traffic",
        links,
        traffic,
        fec=FecConfig(k=4, m=2),
        psk=psk,
        duration_ns=NS_PER_S,
        drain_ns=300 * NS_PER_MS,
        clock_start_ns=NS_PER_S,  # a clock that does not start at 0, like a real one
    )


@attrs.frozen
class Capture:
    """One simulated run: the config, the endpoints' generator states, and the datagrams."""

    config: plait.Config
    start: int
    states: tuple[object, object]
    """`random.Random.getstate()` of A's and B's generators when they were built."""
    a_to_b: tuple[Sent, ...]
    b_to_a: tuple[tuple[int, bytes], ...]
    """(link, datagram) B sent toward A."""
    delivered: int


def _int(value: object) -> int:
    if not isinstance(value, int):
        raise TypeError(f"a trace field is not an int: {value!r}")
    return value


@functools.cache
def capture(psk: bool, seed: int = SEED) -> Capture:
    """Run the capture scenario (with `PSK` or without a psk) and keep its datagrams."""
    scen = scenario(PSK if psk else None)
    states: list[object] = []

    def factory(
        config: plait.Config, initiator: bool, now: int, rng: random.Random
    ) -> sim.EndpointLike:
        states.append(rng.getstate())
        return sim.default_endpoint(config, initiator, now, rng)

    result = sim.run(scen, seed=seed, endpoint_factory=factory, trace_limit=1 << 30)
    a_to_b: list[tuple[int, int, int, bytes]] = []
    b_to_a: list[tuple[int, bytes]] = []
    for record in result.trace:
        if record[0] != _NET:
            continue
        time, sender, link, _fate, arrival = map(_int, record[1:6])
        data = bytes.fromhex(str(record[6]))
        if sender == Side.A:
            a_to_b.append((time, arrival, link, data))
        else:
            b_to_a.append((link, data))
    config = scen.config()
    return Capture(
        config=config,
        start=scen.clock_start_ns,
        states=(states[0], states[1]),
        a_to_b=_open_all(config, a_to_b, b_to_a),
        b_to_a=tuple(b_to_a),
        delivered=result.delivered,
    )


def _nonces(
    a_to_b: list[tuple[int, int, int, bytes]], b_to_a: list[tuple[int, bytes]]
) -> tuple[int, bytes, bytes]:
    """(session, nonce_i, nonce_r) from the first HELLO each way (their bodies are clear)."""

    def hello_nonce(data: bytes) -> bytes:
        offset = wire.parse_header(data)[6]
        return data[offset + 1 : offset + 1 + wire.NONCE_SIZE]

    first_a = next(d for _, _, _, d in a_to_b if d[0] & 0x0F == wire.PacketType.HELLO)
    first_b = next(d for _, d in b_to_a if d[0] & 0x0F == wire.PacketType.HELLO)
    return wire.parse_header(first_a)[1], hello_nonce(first_a), hello_nonce(first_b)


def _open_all(
    config: plait.Config,
    a_to_b: list[tuple[int, int, int, bytes]],
    b_to_a: list[tuple[int, bytes]],
) -> tuple[Sent, ...]:
    opener = None
    if config.psk is not None:
        session, nonce_i, nonce_r = _nonces(a_to_b, b_to_a)
        keys = crypto.session_keys(config.psk, session, nonce_i, nonce_r)[0]
        opener = crypto.Opener(keys)
    counters = [0] * len(config.links)
    out = []
    for time, arrival, link, data in a_to_b:
        pn = counters[link]
        counters[link] += 1
        offset = wire.parse_header(data)[6]
        if opener is None:
            body = data[offset:]
        elif data[0] & 0x0F == wire.PacketType.HELLO:
            body = data[offset : -wire.TAG_SIZE]
        else:
            body = opener.open(data, offset, link, pn)
        out.append(Sent(time, arrival, link, pn, data, offset, body))
    return tuple(out)


# --- the rebuilt session ----------------------------------------------------------------

_SHARED_TYPES: Final = (memoryview, types.BuiltinMethodType)
_LONG_LIST: Final = 1024


class _Pickler(pickle.Pickler):
    """Pickles an endpoint, keeping the objects that never change out of the snapshot,
    and long lists of ints out of the pickle machinery (copied with `list()`, 30x
    faster)."""

    def __init__(self, file: io.BytesIO, shared: dict[int, object]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.shared = shared

    def persistent_id(self, obj: object) -> tuple[str, int] | None:
        # memoryviews (read-only zero buffers), AEAD primitives' bound methods, the config,
        # the codec and B's random generator (drawn from only before the session is
        # locked) are never mutated: shared, not copied
        if type(obj) in _SHARED_TYPES or id(obj) in self.shared:
            self.shared[id(obj)] = obj
            return ("share", id(obj))
        if type(obj) is list and len(obj) >= _LONG_LIST and type(obj[0]) is int:
            self.shared[id(obj)] = list(obj)
            return ("copy", id(obj))
        return None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, shared: dict[int, object]) -> None:
        super().__init__(file)
        self.shared = shared

    def persistent_load(self, pid: object) -> object:
        if not isinstance(pid, tuple):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        how, key = pid
        obj = self.shared[key]
        return list(obj) if how == "copy" and isinstance(obj, list) else obj


class Session:
    """The captured session, rebuilt: fresh copies of its established responder B, and
    everything needed to speak for its initiator A."""

    def __init__(self, psk: bool) -> None:
        cap = capture(psk)
        self.capture = cap
        self.config = cap.config
        self.psk = cap.config.psk
        self.start = cap.start
        self.sent = cap.a_to_b
        #: A's datagrams toward B in an older session of the same config and psk.
        self.old = capture(psk, OLD_SEED).a_to_b
        b = self._handshake()
        self.session = b.session
        if not (b.established and b.session == wire.parse_header(self.sent[0].datagram)[1]):
            raise RuntimeError("the rebuilt session differs from the captured one")
        if not b._hs.locked:  # then its random generator could still be drawn from
            raise RuntimeError("the rebuilt responder is still half-open")
        session, nonce_i, nonce_r = _nonces(
            [(s.time, s.arrival, s.link, s.datagram) for s in self.sent], list(cap.b_to_a)
        )
        self.keys = (
            crypto.session_keys(self.psk, session, nonce_i, nonce_r)[0] if self.psk else None
        )
        self.hello_key = crypto.hello_key(self.psk) if self.psk else b""
        self._shared: dict[int, object] = {id(cap.config): cap.config, id(b._rng): b._rng}
        self._snapshot = b""
        if plait.COMPILED:  # mypyc's native classes do not pickle: endpoint() replays
            return
        decoder = b._decoder  # its codec is shared: stateless but for caches
        if decoder is not None:
            self._shared[id(decoder.codec)] = decoder.codec
        buffer = io.BytesIO()
        _Pickler(buffer, self._shared).dump(b)
        self._snapshot = buffer.getvalue()

    def _handshake(self) -> plait.Endpoint:
        """B rebuilt from the captured generator states: HELLOs and A's first PROBEs."""
        cap = self.capture
        rng_a, rng_b = random.Random(), random.Random()
        rng_a.setstate(cap.states[0])  # type: ignore[arg-type]  # a getstate() value
        rng_b.setstate(cap.states[1])  # type: ignore[arg-type]  # a getstate() value
        a = plait.Endpoint(cap.config, initiator=True, now=cap.start, rng=rng_a)
        b = plait.Endpoint(cap.config, initiator=False, now=cap.start, rng=rng_b)
        for _ in range(3):  # HELLO, its answer, A's PROBEs: B is then established and locked
            for data, link in a.datagrams_to_send(now=cap.start):
                b.receive_datagram(data, link=link, now=cap.start)
            for data, link in b.datagrams_to_send(now=cap.start):
                a.receive_datagram(data, link=link, now=cap.start)
        while b.next_event() is not None:
            pass
        return b

    def endpoint(self) -> plait.Endpoint:
        """A fresh copy of B, just established (HELLOs and A's first PROBEs received):
        unpickled from a snapshot in about 0.1 ms, or, in the compiled build (whose
        native classes do not pickle), rebuilt by replaying the handshake."""
        if plait.COMPILED:
            return self._handshake()
        endpoint = _Unpickler(io.BytesIO(self._snapshot), self._shared).load()
        if not isinstance(endpoint, plait.Endpoint):
            raise TypeError("the snapshot is not an Endpoint")
        return endpoint


@functools.cache
def session(psk: bool) -> Session:
    """The rebuilt capture session (built once per process)."""
    return Session(psk)


# --- seed files -------------------------------------------------------------------------


def write_corpus(name: str, seeds: Callable[[], Iterable[bytes]]) -> str:
    """fuzz/corpus-NAME/, filled with `seeds()` (named by their SHA-1) if it does not
    exist yet; returns its path."""
    corpus = Path(__file__).resolve().parent / f"corpus-{name}"
    if not corpus.is_dir():
        corpus.mkdir()
        for seed in seeds():
            digest = hashlib.sha1(seed, usedforsecurity=False).hexdigest()
            (corpus / digest).write_bytes(seed)
    return str(corpus)


def datagrams(psk: bool) -> list[bytes]:
    """Every distinct datagram of the capture, both directions."""
    cap = capture(psk)
    seen = dict.fromkeys(s.datagram for s in cap.a_to_b)
    seen.update(dict.fromkeys(d for _, d in cap.b_to_a))
    return list(seen)


def fuzz_main(
    name: str, target: Callable[[bytes], None], seeds: Callable[[], Iterable[bytes]]
) -> None:
    """The body of each fuzz/fuzz_NAME.py: with no corpus directory on the command line,
    use fuzz/corpus-NAME/ (written from `seeds()` on first use); then run atheris."""
    import atheris  # noqa: PLC0415  (installed with the fuzz extra only)

    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(write_corpus(name, seeds))
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":  # python3 -m fuzz.corpus: every captured datagram, as seeds
    print(write_corpus("datagrams", lambda: datagrams(False) + datagrams(True)))
