"""End-to-end CPU cost per message: two plait Endpoints against two aioquic connections.

    taskset -c 0 python3 dev.py bench endpoint
    taskset -c 0 .venv/bin/python bench/endpoint.py --profile   # one run + cProfile, plait psk

Both builds of the core in one command: 5 runs of each (``--runs``), alternating compiled
and pure Python (``PLAIT_PURE_PYTHON=1``), each in a fresh interpreter; every figure is
the median over the runs (only the pure build where the compiled one is not built).

Needs aioquic in the venv (``.venv/bin/pip install aioquic``).

Pin to one core (``taskset -c 0``): both ends run in this one process, so every figure
is CPU time on one core, with no network, no sockets and no sleeping.

plait: A (initiator) and B, 4 links, FEC 8+2 (fixed: adaptive off, else it drops to 8+1
with no loss), 1200-byte messages, with and without a psk. Each link is configured at
1 Gbit/s so that pacing never holds a packet back: this measures CPU, not link rates.
Datagrams go straight from one side's `datagrams_to_send` into the other's
`receive_datagram` on the same link id, with a virtual clock (int ns) that advances
100 us per message. The session is established
first (HELLO exchange, 100 ms of virtual time) and warmed up with 2000 messages (200 ms,
past the 150 ms deadline budget, so that expiry timers run as in a long session); then,
per message:

* send: ``a.send(...)`` + ``a.datagrams_to_send(now)`` (DATA, and parity when a block
  closes);
* receive: ``b.receive_datagram`` for each of those datagrams + draining
  ``b.next_event()``;
* background: timers on both sides (`next_deadline` / `handle_timer`), B's FEEDBACK and
  A's processing of it, probes and their answers, until both sides are quiet.

The peer in the same run is aioquic sending QUIC DATAGRAM frames (RFC 9221) of the same
1200 bytes between a client and a server connection held in memory (TLS 1.3 with a
throw-away EC P-256 certificate), once with the suite it negotiates by default
(AES-256-GCM) and once with ChaCha20-Poly1305 forced (plait's AEAD). aioquic needs
``max_datagram_frame_size`` raised, and ``max_datagram_size`` (its UDP payload) raised
to 1252 bytes (a 1280-byte IPv4 MTU, plait's base path MTU) for a 1200-byte frame
to fit. Per message: send = ``send_datagram_frame`` + ``datagrams_to_send``; receive =
``receive_datagram`` + draining ``next_event()``; background = timers and ACKs both
ways.

Every message is timed on its own with perf_counter_ns, GC off; the cases run in
interleaved rounds so that a noisy neighbour hits them all alike. Columns: send,
receive, s+r (send + receive of the same message) and total (= send + receive +
background) per message, median and p99 in us;
background is its mean per message (it comes in bursts: a FEEDBACK every 10 ms, an ACK
every 1 ms); msgs/s = 1e9 / mean total ns, on one core; dgrams = datagrams sent per
message (plait: 1 DATA + 2/8 parity; probes); the ratios are plait's median
total / the aioquic row's median total (< 1: plait is cheaper). Every message is checked
to arrive exactly once with its bytes intact.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import json
import pstats
import random
import ssl
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import child_runs, measure, write_json
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import DatagramFrameReceived
from aioquic.tls import CipherSuite
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import plait

SIZE = 1200
LINKS = 4
STEP_NS = 100_000  # virtual time per message
MESSAGES = 6000  # timed, per case
WARMUP = 2000  # per case, before timing: 200 ms of virtual time, past the 150 ms deadlines
ROUNDS = 10  # the timed messages of each case are split into this many interleaved rounds
START_NS = 1_000_000_000
SETUP_NS = 100_000_000
QUIC_UDP_PAYLOAD = 1280 - 28  # IPv4 MTU 1280, plait's base path MTU (plait.pmtu)
CLIENT_ADDR = ("10.0.0.1", 4433)
SERVER_ADDR = ("10.0.0.2", 4433)


def _payload(index: int, filler: bytes) -> bytes:
    """A 1200-byte message that names itself: its index, then fixed random filler."""
    return index.to_bytes(4, "big") + filler


class Pair(Protocol):
    """Two connected ends in memory, one message at a time."""

    received: dict[int, list[bytes]]
    other_events: Counter[str]

    def step(self, payload: bytes) -> tuple[int, int, int]:
        """Send one message from one end to the other: (send, receive, background) ns."""
        ...

    def datagrams(self) -> int:
        """Datagrams sent by the sending end so far."""
        ...


def _record(received: dict[int, list[bytes]], data: bytes) -> None:
    received.setdefault(int.from_bytes(data[:4], "big"), []).append(data)


# --- plait -------------------------------------------------------------------------------


class PlaitPair:
    def __init__(self, psk: bytes | None) -> None:
        self.config = plait.Config(
            links=[plait.LinkConfig(rate_bps=1_000_000_000)] * LINKS,
            fec=plait.FecConfig(k=8, m=2, adaptive=False),
            psk=psk,
        )
        self.now = START_NS
        self.a = plait.Endpoint(
            self.config, initiator=True, now=self.now, rng=random.Random(b"bench a")
        )
        self.b = plait.Endpoint(
            self.config, initiator=False, now=self.now, rng=random.Random(b"bench b")
        )
        self.received: dict[int, list[bytes]] = {}
        self.other_events: Counter[str] = Counter()
        self.sent = 0
        while self.now < START_NS + SETUP_NS:
            self.now += 1_000_000
            self._background()
        if not (self.a.established and self.b.established):
            raise RuntimeError("plait: the session did not establish")

    def _drain(self, ep: plait.Endpoint) -> None:
        while (event := ep.next_event()) is not None:
            if isinstance(event, plait.MessageReceived):
                _record(self.received, event.data)
            else:
                self.other_events[type(event).__name__] += 1

    def _background(self) -> None:
        a, b, now = self.a, self.b, self.now
        for ep in (a, b):
            due = ep.next_deadline()
            if due is not None and due <= now:
                ep.handle_timer(now=now)
        for _ in range(8):  # until quiet: feedback, probes, their answers
            moved = False
            for src, dst in ((b, a), (a, b)):
                out = src.datagrams_to_send(now=now)
                if out:
                    moved = True
                    if src is a:
                        self.sent += len(out)
                    for data, link in out:
                        dst.receive_datagram(data, link=link, now=now)
            self._drain(a)
            self._drain(b)
            if not moved:
                break

    def step(self, payload: bytes) -> tuple[int, int, int]:
        a, b = self.a, self.b
        self.now = now = self.now + STEP_NS
        clock = time.perf_counter_ns
        t0 = clock()
        a.send(payload, now=now)
        out = a.datagrams_to_send(now=now)
        t1 = clock()
        for data, link in out:
            b.receive_datagram(data, link=link, now=now)
        while (event := b.next_event()) is not None:
            if isinstance(event, plait.MessageReceived):
                _record(self.received, event.data)
            else:
                self.other_events[type(event).__name__] += 1
        t2 = clock()
        self._background()
        t3 = clock()
        self.sent += len(out)
        return t1 - t0, t2 - t1, t3 - t2

    def datagrams(self) -> int:
        return self.sent


# --- aioquic -----------------------------------------------------------------------------


def _certificate() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


_SUITES = {
    CipherSuite.AES_128_GCM_SHA256: "AES-128-GCM",
    CipherSuite.AES_256_GCM_SHA384: "AES-256-GCM",
    CipherSuite.CHACHA20_POLY1305_SHA256: "ChaCha20",
}


class QuicPair:
    def __init__(
        self,
        suite: CipherSuite | None,
        cert: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    ) -> None:
        suites = None if suite is None else [suite]
        client_cfg = QuicConfiguration(
            is_client=True,
            verify_mode=ssl.CERT_NONE,
            server_name="localhost",
            alpn_protocols=["bench"],
            max_datagram_frame_size=65536,
            max_datagram_size=QUIC_UDP_PAYLOAD,
            cipher_suites=suites,
        )
        server_cfg = QuicConfiguration(
            is_client=False,
            certificate=cert[0],
            private_key=cert[1],
            alpn_protocols=["bench"],
            max_datagram_frame_size=65536,
            max_datagram_size=QUIC_UDP_PAYLOAD,
            cipher_suites=suites,
        )
        self.client = QuicConnection(configuration=client_cfg)
        self.server = QuicConnection(
            configuration=server_cfg,
            original_destination_connection_id=self.client.original_destination_connection_id,
        )
        self.now = START_NS
        self.received: dict[int, list[bytes]] = {}
        self.other_events: Counter[str] = Counter()
        self.sent = 0
        self.client.connect(SERVER_ADDR, now=self.now / 1e9)
        while self.now < START_NS + SETUP_NS:
            self.now += 1_000_000
            self._background()
        tls = self.client.tls
        if tls.key_schedule is None or not self.client._handshake_confirmed:
            raise RuntimeError("aioquic: the handshake did not complete")
        self.suite = _SUITES[CipherSuite(tls.key_schedule.cipher_suite)]

    def _drain(self, conn: QuicConnection) -> None:
        while (event := conn.next_event()) is not None:
            if isinstance(event, DatagramFrameReceived):
                _record(self.received, event.data)
            else:
                self.other_events[type(event).__name__] += 1

    def _background(self) -> None:
        client, server = self.client, self.server
        now = self.now / 1e9
        for conn in (client, server):
            due = conn.get_timer()
            if due is not None and due <= now:
                conn.handle_timer(now=now)
        for _ in range(8):
            moved = False
            for src, dst, addr in ((client, server, CLIENT_ADDR), (server, client, SERVER_ADDR)):
                out = src.datagrams_to_send(now=now)
                if out:
                    moved = True
                    if src is client:
                        self.sent += len(out)
                    for data, _ in out:
                        dst.receive_datagram(data, addr, now=now)
            self._drain(client)
            self._drain(server)
            if not moved:
                break

    def step(self, payload: bytes) -> tuple[int, int, int]:
        client, server = self.client, self.server
        self.now += STEP_NS
        now = self.now / 1e9
        clock = time.perf_counter_ns
        t0 = clock()
        client.send_datagram_frame(payload)
        out = client.datagrams_to_send(now=now)
        t1 = clock()
        for data, _ in out:
            server.receive_datagram(data, CLIENT_ADDR, now=now)
        while (event := server.next_event()) is not None:
            if isinstance(event, DatagramFrameReceived):
                _record(self.received, event.data)
            else:
                self.other_events[type(event).__name__] += 1
        t2 = clock()
        self._background()
        t3 = clock()
        self.sent += len(out)
        return t1 - t0, t2 - t1, t3 - t2

    def datagrams(self) -> int:
        return self.sent


# --- measuring ---------------------------------------------------------------------------


class Case:
    def __init__(self, name: str, make: Callable[[], Pair]) -> None:
        self.name = name
        self.pair = make()
        self.next_index = 0
        self.send: list[int] = []
        self.receive: list[int] = []
        self.background: list[int] = []
        self.datagrams_before = 0

    def run(self, count: int, filler: bytes, *, timed: bool) -> None:
        payloads = [_payload(self.next_index + i, filler) for i in range(count)]
        self.next_index += count
        step = self.pair.step
        gc.collect()
        gc.disable()
        try:
            if not timed:
                for payload in payloads:
                    step(payload)
                self.datagrams_before = self.pair.datagrams()
                return
            for payload in payloads:
                s, r, b = step(payload)
                self.send.append(s)
                self.receive.append(r)
                self.background.append(b)
        finally:
            gc.enable()

    def check(self, filler: bytes) -> None:
        """Every message sent arrived exactly once, with its bytes."""
        got = self.pair.received
        for index in range(self.next_index):
            copies = got.get(index)
            if copies is None or len(copies) != 1 or copies[0] != _payload(index, filler):
                raise AssertionError(f"{self.name}: message {index} arrived as {copies!r:.80}")
        if len(got) != self.next_index:
            raise AssertionError(f"{self.name}: {len(got) - self.next_index} unknown messages")

    def summary(self) -> dict[str, float]:
        totals = [
            s + r + b for s, r, b in zip(self.send, self.receive, self.background, strict=True)
        ]
        send_receive = [s + r for s, r in zip(self.send, self.receive, strict=True)]
        n = len(totals)
        mean_total = statistics.fmean(totals)
        return {
            "messages": n,
            "send_median_us": _pct(self.send, 50) / 1e3,
            "send_p99_us": _pct(self.send, 99) / 1e3,
            "receive_median_us": _pct(self.receive, 50) / 1e3,
            "receive_p99_us": _pct(self.receive, 99) / 1e3,
            "background_mean_us": statistics.fmean(self.background) / 1e3,
            "send_receive_median_us": _pct(send_receive, 50) / 1e3,
            "send_receive_p99_us": _pct(send_receive, 99) / 1e3,
            "total_median_us": _pct(totals, 50) / 1e3,
            "total_p99_us": _pct(totals, 99) / 1e3,
            "total_mean_us": mean_total / 1e3,
            "messages_per_s": 1e9 / mean_total,
            "datagrams_per_message": (self.pair.datagrams() - self.datagrams_before) / n,
        }


def _pct(values: list[int], pct: int) -> float:
    ordered = sorted(values)
    if pct == 50:
        return float(statistics.median(ordered))
    return float(ordered[min(len(ordered) - 1, len(ordered) * pct // 100)])


def _profile(filler: bytes, top: int, quic: QuicPair) -> None:
    """cProfile over the timed loop of plait with a psk: the top functions by own time and
    by cumulative time, in us per message (under the profiler, so inflated), then the
    unprofiled cost of the calls a driver makes after every event."""
    pair = PlaitPair(bytes(32))
    for i in range(WARMUP):
        pair.step(_payload(i, filler))
    payloads = [_payload(WARMUP + i, filler) for i in range(MESSAGES)]
    profiler = cProfile.Profile()
    gc.collect()
    gc.disable()
    profiler.enable()
    for payload in payloads:
        pair.step(payload)
    profiler.disable()
    gc.enable()
    profile = pstats.Stats(profiler).get_stats_profile()
    rows = list(profile.func_profiles.items())
    whole = sum(fp.tottime for _, fp in rows) / MESSAGES * 1e6
    print(f"\ncProfile, plait (psk), {MESSAGES} messages: {whole:.1f} us/message under the")
    print("profiler (the run above, unprofiled, is the true cost; shares carry over)")
    for title, key in (("own time", "tottime"), ("cumulative time", "cumtime")):
        print(
            f"\ntop {top} by {title:53} {'calls/msg':>9} {'own us':>7} {'cum us':>7} {'own %':>6}"
        )
        rows.sort(key=lambda row: -float(getattr(row[1], key)))
        for func, fp in rows[:top]:
            where = (
                f"{Path(fp.file_name).name}:{fp.line_number}({func})" if fp.line_number else func
            )
            calls = int(fp.ncalls.split("/")[0])
            share = 100 * fp.tottime / MESSAGES * 1e6 / whole
            print(
                f"  {where[:60]:60} {calls / MESSAGES:9.2f} {fp.tottime / MESSAGES * 1e6:7.2f} "
                f"{fp.cumtime / MESSAGES * 1e6:7.2f} {share:6.1f}"
            )
    a, b, now = pair.a, pair.b, pair.now
    idle: list[tuple[str, Callable[[], object]]] = [
        ("plait A next_deadline()", a.next_deadline),
        ("plait B next_deadline()", b.next_deadline),
        ("plait A datagrams_to_send(), nothing due", lambda: a.datagrams_to_send(now=now)),
        ("aioquic client get_timer()", quic.client.get_timer),
        (
            "aioquic client datagrams_to_send(), nothing due",
            lambda: quic.client.datagrams_to_send(now=quic.now / 1e9),
        ),
    ]
    print("\nper call, unprofiled, after the run above:")
    for name, fn in idle:
        print(f"  {name:50} {measure(fn, batch=200, repeats=50)['median_ns'] / 1e3:6.2f} us")


#: Runs per build; each figure reported is the median of these.
RUNS = 5
_FIELDS = ("send_median_us", "receive_median_us", "background_mean_us")


def _run_cases(messages: int, filler: bytes) -> list[Case]:
    """One run: the four cases in interleaved rounds, every message checked."""
    cert = _certificate()
    cases = [
        Case("plait (no psk)", lambda: PlaitPair(None)),
        Case("plait (psk)", lambda: PlaitPair(bytes(32))),
        Case("aioquic", lambda: QuicPair(None, cert)),
        Case("aioquic", lambda: QuicPair(CipherSuite.CHACHA20_POLY1305_SHA256, cert)),
    ]
    for case in cases:
        if isinstance(case.pair, QuicPair):
            case.name += f" ({case.pair.suite})"  # the suite the handshake settled on
    for case in cases:
        case.run(WARMUP, filler, timed=False)
    per_round = max(1, messages // ROUNDS)
    for _ in range(ROUNDS):
        for case in cases:
            case.run(per_round, filler, timed=True)
    for case in cases:
        case.check(filler)
    return cases


def _child(messages: int, filler: bytes) -> None:
    """One run in this process (its build), as JSON on stdout, for `_both_builds`."""
    cases = _run_cases(messages, filler)
    rows = [
        {"case": case.name, **case.summary(), "other": dict(case.pair.other_events)}
        for case in cases
    ]
    print(json.dumps({"compiled": plait.COMPILED, "rows": rows}))


def _both_builds(messages: int, runs: int) -> list[tuple[str, list[dict[str, object]]]]:
    """`runs` runs of each build, alternating, each in a fresh interpreter; the builds
    that exist here (the compiled one only if it is built)."""
    results = child_runs(__file__, ["--messages", str(messages)], runs, plait.COMPILED)
    return [(build, _medians(rows)) for build, rows in results.items()]


def _medians(runs: list[list[dict[str, object]]]) -> list[dict[str, object]]:
    """Per case, the median over runs of every figure, and of each run's ratios."""
    rows = []
    for index, first in enumerate(runs[0]):
        per_run = [run[index] for run in runs]
        row: dict[str, object] = {"case": first["case"], "runs": len(runs)}
        for key, value in first.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                row[key] = round(statistics.median(float(r[key]) for r in per_run), 3)  # type: ignore[arg-type]  # a number, checked on the first run
        for peer, column in ((2, "aes"), (3, "chacha20")):
            ratios = [
                float(r["total_median_us"]) / float(run[peer]["total_median_us"])  # type: ignore[arg-type]  # numbers from _child
                for r, run in zip(per_run, runs, strict=True)
            ]
            row[f"ratio_vs_aioquic_{column}"] = round(statistics.median(ratios), 3)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=MESSAGES, help="timed, per case")
    parser.add_argument("--runs", type=int, default=RUNS, help="runs per build (medians)")
    parser.add_argument("--profile", action="store_true", help="also cProfile plait psk")
    parser.add_argument("--top", type=int, default=15, help="profile rows to print")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    filler = random.Random(1200).randbytes(SIZE - 4)
    if args.child:
        _child(args.messages, filler)
        return
    if args.profile:
        cases = _run_cases(args.messages, filler)
        quic = cases[3].pair
        assert isinstance(quic, QuicPair)  # the fourth case is aioquic's
        _profile(filler, args.top, quic)
        return
    builds = _both_builds(args.messages, args.runs)
    print(
        f"{SIZE}-byte messages, {args.messages} timed per case, medians of {args.runs} runs per "
        f"build; us per message (plait: {LINKS} links at 1 Gbit/s, FEC 8+2)"
    )
    head = (
        f"{'build':9} {'case':21} {'send med':>8} {'recv med':>8} {'bg mean':>7} "
        f"{'s+r med':>7} {'total med':>9} {'p99':>6} {'msgs/s':>7} {'dgrams':>6} "
        f"{'vs ChaCha':>9} {'vs AES':>6}"
    )
    print(head)
    for build, rows in builds:
        for s in rows:
            print(
                f"{build:9} {s['case']!s:21} {s['send_median_us']:8.1f} "
                f"{s['receive_median_us']:8.1f} {s['background_mean_us']:7.1f} "
                f"{s['send_receive_median_us']:7.1f} {s['total_median_us']:9.1f} "
                f"{s['total_p99_us']:6.1f} {s['messages_per_s']:7.0f} "
                f"{s['datagrams_per_message']:6.2f} {s['ratio_vs_aioquic_chacha20']:9.2f} "
                f"{s['ratio_vs_aioquic_aes']:6.2f}",
                flush=True,
            )
    payload = {
        "unit": "us per message, median of the runs' medians (ratios: median of each run's)",
        "message_bytes": SIZE,
        "plait": {"links": LINKS, "rate_bps": 1_000_000_000, "fec": "8+2"},
        "step_ns": STEP_NS,
        "runs_per_build": args.runs,
        "builds": dict(builds),
    }
    print(f"wrote {write_json('endpoint', payload)}")


if __name__ == "__main__":
    main()
