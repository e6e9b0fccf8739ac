"""``plait relay`` between two network namespaces over four shaped, lossy links.

Two namespaces, A and B, are joined by four veth pairs. Each direction of each pair
is shaped by ``tc tbf`` at the link's rate (2, 5, 8, 10 Mbit/s). Loss and delay come
from a user-space impairment relay in B (`tests.impair`, since this kernel has no
netem): 2 % loss per link and direction from a seeded `random.Random`, and a fixed
delay per link::

    ns A                                       ns B
    source -> relay A ==veth i, tbf==> impair i (2 % loss, d_i ms) -> relay B -> sink
                      <==veth i, tbf== impair i (2 % loss, d_i ms) <-

A 5 Mbit/s stream (1200-byte datagrams, ~520/s, sequence-numbered and timestamped)
runs through for `SECONDS`. The test asserts that >= 99.9 % arrive, each exactly once
and intact, and compares the one-way latency (source to sink, CLOCK_MONOTONIC, which
every namespace shares) with the floor of each link: its delay plus the time to
serialize one 1289-byte frame at its rate. The numbers are printed (``pytest -s``)
and written to ``netns.json`` in the test's tmp dir.

Needs root, ``ip`` and ``tc`` (with tbf); skipped with the reason otherwise.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.netns_setup import PSK, Procs, ip, pct, run, shaped_namespaces

RATES_MBIT: Final = (2, 5, 8, 10)
DELAYS_MS: Final = (30, 10, 20, 15)
LOSS: Final = 0.02
SECONDS: Final = 15.0
STREAM_BPS: Final = 5_000_000
SIZE: Final = 1200
LATENCY_MS: Final = 150.0
"""The relay's deadline (its default)."""
PLAIT_SHARE: Final = 0.95
"""The rate plait is given, as a share of the tbf rate: tbf also counts the 14-byte
Ethernet header of each frame, which plait's 28 bytes of IP + UDP overhead leave out."""
FRAME: Final = SIZE + 16 + 11 + 6 + 14 + 28 + 14
"""Bytes on the wire per stream datagram: payload, AEAD tag, plait header, echo and
DATA fields, IPv4 + UDP, Ethernet."""
IMPAIR_LATE_MAX_P99_US: Final = 10_000
"""The harness's own precondition: the impairment relay released 99 % of what it held
within 10 ms of its time. It measured p99 0.1 ms on a machine with one busy core and
1.9-5.8 ms on this 2-vCPU VM shared with other test runs; beyond 10 ms the "network"
itself, not plait, would be what the latencies measure."""
METRICS_PORT: Final = 9100
"""Relay A's Prometheus endpoint, inside namespace A."""
STARVED_MS: Final = LATENCY_MS / 2
"""A machine that held an ordinary process up longer than this (the canary) makes the
run inconclusive: the relays, ordinary processes too, could not meet the deadline."""


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by four veth pairs shaped by `_tbf`; deleted afterwards."""
    with shaped_namespaces(len(RATES_MBIT), lambda i: _tbf(RATES_MBIT[i])) as pair:
        yield pair


def _tbf(mbit: int) -> tuple[str, ...]:
    """A token bucket at `mbit` holding about three frames: no burst to speak of."""
    return ("tbf", "rate", f"{mbit}mbit", "burst", "4kb", "latency", "50ms")


def test_relay_over_four_shaped_lossy_links(namespaces: tuple[str, str], tmp_path: Path) -> None:
    ns_a, ns_b = namespaces
    key = tmp_path / "plait.key"
    key.write_text(PSK.hex(), encoding="ascii")
    common = ["--psk-file", str(key), "--stats-interval", "1"]
    links_a, links_b, impair = [], [], []
    for i, (mbit, delay) in enumerate(zip(RATES_MBIT, DELAYS_MS, strict=True)):
        rate = f"{round(mbit * PLAIT_SHARE * 1000)}k"
        links_a += ["--link", f"10.77.{i}.1:7000=10.77.{i}.2:7000@pa{i}:{rate}"]
        links_b += ["--link", f"127.0.0.1:{7100 + i}=127.0.0.1:{7200 + i}:{rate}"]
        ends = (f"10.77.{i}.2:7000", f"10.77.{i}.1:7000", f"127.0.0.1:{7200 + i}")
        impair += ["--link", "/".join((*ends, f"127.0.0.1:{7100 + i}", str(delay)))]
    relay = ["-m", "plait", "relay", *common]
    procs = Procs(tmp_path)
    t0 = time.monotonic()
    try:
        helper = ["-m", "tests.impair"]
        rt = ["--rt", "20"]  # the "network" and the clock at the sink run ahead of the relays
        procs.start("sink", ns_b, [*helper, "sink", "--bind", "127.0.0.1:9000", *rt])
        procs.start("impair", ns_b, [*helper, "forward", *impair, "--loss", str(LOSS), *rt])
        procs.start("canary", ns_b, [*helper, "canary"])
        stats_log = tmp_path / "relay_b.jsonl"
        argv_b = [*relay, *links_b, "--forward", "127.0.0.1:9000", "--once"]
        argv_b += ["--stats-log", str(stats_log)]
        procs.start("relay_b", ns_b, argv_b)
        metrics = ["--metrics-listen", f"127.0.0.1:{METRICS_PORT}"]
        procs.start(
            "relay_a", ns_a, [*relay, *links_a, "--listen", ":5000", "--initiator", *metrics]
        )
        procs.wait_for("relay_a", "established", 20.0)
        procs.wait_for("relay_b", "established", 5.0)
        # Every link carrying at both ends before the stream starts: a responder that
        # waited for its peer may put its links on probation for 2 s first (issue 14).
        for name in ("relay_a", "relay_b"):
            procs.wait_carrying(name, range(len(RATES_MBIT)), 20.0)
        stream = ["--to", "127.0.0.1:5000", "--rate-bps", str(STREAM_BPS), "--size", str(SIZE)]
        procs.start("source", ns_a, [*helper, "source", *stream, "--seconds", str(SECONDS)])
        # relay A's live metrics, scraped inside its namespace twice while the stream runs
        time.sleep(SECONDS / 3)
        scrapes = [_scrape(ns_a, METRICS_PORT)]
        time.sleep(SECONDS / 3)
        scrapes.append(_scrape(ns_a, METRICS_PORT))
        assert procs.procs["source"].wait(SECONDS + 10.0) == 0, procs.err("source")
        time.sleep(0.5)  # the last datagrams' deadlines
        assert procs.stop("relay_a") == 0, procs.err("relay_a")  # Ctrl-C: CLOSE to B
        assert procs.procs["relay_b"].wait(10.0) == 0, procs.err("relay_b")  # --once: it ends too
        for name in ("sink", "impair", "canary"):
            assert procs.stop(name, signal.SIGTERM) == 0, procs.err(name)
    finally:
        procs.kill_all()
    elapsed = time.monotonic() - t0
    load = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in procs.procs}
    report = _report(load, elapsed)
    print("\n" + _render(report))
    (tmp_path / "netns.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"  written    {tmp_path / 'netns.json'}")

    _check_metrics(scrapes, stats_log)
    sent, sink = load["source"]["sent"], load["sink"]
    assert sink["corrupt"] == sink["duplicates"] == sink["reordered"] == 0  # in order, once
    assert "Traceback" not in procs.err("relay_a") + procs.err("relay_b")
    assert sent > 0.95 * SECONDS * STREAM_BPS / (SIZE * 8)
    # The harness first. The impairment relay (the "network") released what it held on
    # time, give or take 10 ms at p99: it runs at SCHED_FIFO, but a busy VM still
    # delays it (p99 0.1 ms with one busy core, 2-6 ms with the machine shared).
    impair_late = report["impair"]["release_late_us"]
    assert impair_late["p99"] < IMPAIR_LATE_MAX_P99_US, f"the harness was late: {impair_late}"
    # The canary, an ordinary process like the relays, measures how long the machine
    # held such a process up. Beyond half the deadline, no relay can deliver on time:
    # the run says nothing about plait's latency (with another copy of this test on the
    # same two vCPUs, relay B's timers fired up to 297 ms late).
    held = report["canary_late_us"]
    if held["max"] > STARVED_MS * 1000:
        pytest.skip(f"inconclusive: the machine held an ordinary process up {held} us")
    assert report["delivered_pct"] >= 99.9
    # protection by cost (issue 13): re-sends, which fit this budget, and parity only
    # where a loss is not judged yet; measured 1.118
    assert report["wire_per_payload"] <= 1.15, report["wire_per_payload"]
    # Each latency below includes the lateness of the impairment relay and of both
    # relays, so the bounds allow for what the harness measured: `slack`.
    slack = (impair_late["p99"] + 2 * held["p99"]) / 1000
    # Nothing arrives sooner than the shortest delay: the impairment relay did its job,
    # and the latency is measured on one clock.
    lat, floors = report["latency_ms"], report["floor_ms"]
    assert lat["min"] >= min(DELAYS_MS)
    # The floors: the best link's (12.1 ms) is what one perfect path would give; the
    # worst link's (35.2 ms) is what in-order delivery waits for when a message rides
    # the slowest link. The median stays within twice the best floor. Losses (2 %, so
    # past p99) are repaired by re-sends, which fit this 150 ms budget and cost far
    # less than FEC (plait.protection): such a message arrives about one slow round
    # trip (2 x 30 ms) plus the feedback delay later, so p99 stays within the worst
    # floor + that + 15 ms; each + `slack`. Nothing comes later than its deadline, + 10 ms for the
    # two local hops, + the longest the canary was held up: relay B decides on time,
    # and may be held up before the datagram leaves it.
    assert lat["p50"] <= 2 * min(floors) + slack, (lat, slack)
    repair_ms = 2 * max(DELAYS_MS) + 10.0  # one slow round trip + the feedback delay
    assert lat["p99"] <= max(floors) + repair_ms + 15.0 + slack, (lat, slack)
    assert lat["max"] <= LATENCY_MS + 10.0 + held["max"] / 1000, (lat, held)


Scrape = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(ns: str, port: int) -> Scrape:
    """Relay A's /metrics, fetched inside `ns` and parsed by prometheus-client's own
    parser: {(name, labels): value}."""
    fetch = (
        "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen("
        f"'http://127.0.0.1:{port}/metrics', timeout=10).read().decode())"
    )
    text = subprocess.run(  # noqa: S603  (this interpreter, a fixed one-liner)
        ["ip", "netns", "exec", ns, sys.executable, "-c", fetch],  # noqa: S607
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout
    out: Scrape = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _check_metrics(scrapes: list[Scrape], stats_log: Path) -> None:
    """Both scrapes have every link's metrics; the counters only grew between them, and
    so did relay B's --stats-log lines."""
    first, second = scrapes
    for link in map(str, range(len(RATES_MBIT))):
        lab = (("link", link),)
        assert second["plait_link_sent_bytes_total", lab] > 0
        assert 0 < second["plait_link_rtt_seconds", lab] < 1.0
        assert second["plait_link_capacity_bytes_per_second", lab] > 0
    assert (
        second["plait_relay_carried_datagrams_total", ()]
        > first["plait_relay_carried_datagrams_total", ()]
        > 0
    )
    counters = [k for k in first if k[0].endswith("_total")]
    assert all(second[k] >= first[k] for k in counters), counters
    records = [json.loads(line) for line in stats_log.read_text().splitlines()]
    assert len(records) >= 3
    for earlier, later in itertools.pairwise(records):
        assert all(later[k] >= earlier[k] for k in ("emitted", "delivered", "repairs"))


def _report(load: dict[str, Any], elapsed: float) -> dict[str, Any]:
    lat = load["sink"]["latency_us"]
    a, b = load["relay_a"], load["relay_b"]
    fec_b = b["session"]["endpoint"]["fec"]
    drops = {
        k: v["dropped"] for k, v in load["impair"].items() if isinstance(v, dict) and "dropped" in v
    }
    return {
        "setup": {
            "rates_mbit": RATES_MBIT,
            "delays_ms": DELAYS_MS,
            "loss_per_link_and_direction": LOSS,
            "plait_rates_bps": [ln_rate(m) for m in RATES_MBIT],
            "stream_bps": STREAM_BPS,
            "datagram_bytes": SIZE,
            "seconds": SECONDS,
        },
        "sent": load["source"]["sent"],
        "received": load["sink"]["received"],
        "delivered_pct": 100.0 * load["sink"]["received"] / load["source"]["sent"],
        "reordered": load["sink"]["reordered"],
        "latency_ms": {
            "min": min(lat) / 1000,
            "p50": pct(lat, 0.5) / 1000,
            "p99": pct(lat, 0.99) / 1000,
            "p999": pct(lat, 0.999) / 1000,
            "max": max(lat) / 1000,
        },
        "floor_ms": [
            round(d + FRAME * 8 / (m * 1e6) * 1000, 2)
            for d, m in zip(DELAYS_MS, RATES_MBIT, strict=True)
        ],
        "fec_rebuilt": fec_b["recovered"] if fec_b else 0,
        "originals_after_rebuild": b["session"]["endpoint"]["duplicates_dropped"],
        "lost_inbound": sum(ln["inbound_lost"] for ln in b["session"]["endpoint"]["links"]),
        "resent": a["session"]["endpoint"]["repairs"],
        "expired": b["session"]["endpoint"]["messages_expired_receiving"]
        + a["session"]["endpoint"]["messages_expired_sending"],
        "impair": {"dropped": drops, "release_late_us": load["impair"]["release_late_us"]},
        "canary_late_us": load["canary"]["late_us"],
        "cpu_pct": {
            "relay_a": 100.0 * a["cpu_s"] / a["elapsed_s"],
            "relay_b": 100.0 * b["cpu_s"] / b["elapsed_s"],
            "impair": 100.0 * load["impair"]["cpu_s"] / elapsed,
        },
        "relay_timer_late_us": {
            name: [r["session"][f"timer_late_{q}_ns"] // 1000 for q in ("p50", "p99", "max")]
            for name, r in (("relay_a", a), ("relay_b", b))
        },
        "link_share": [ln["datagrams_sent"] for ln in a["session"]["endpoint"]["links"]],
        # every datagram both ways with its 28 bytes of IPv4 + UDP, per payload byte
        "wire_per_payload": sum(
            ln["bytes_sent"] + 28 * ln["datagrams_sent"]
            for r in (a, b)
            for ln in r["session"]["endpoint"]["links"]
        )
        / (load["source"]["sent"] * SIZE),
        "test_seconds": elapsed,
    }


def ln_rate(mbit: int) -> int:
    return round(mbit * PLAIT_SHARE * 1000) * 1000


def _render(r: dict[str, Any]) -> str:
    lat, cpu = r["latency_ms"], r["cpu_pct"]
    return "\n".join(
        [
            "netns: plait relay, 4 links 2/5/8/10 Mbit/s (tbf), delays "
            f"{'/'.join(map(str, DELAYS_MS))} ms, {LOSS:.0%} loss each way",
            f"  stream     {r['sent']} sent, {r['received']} received "
            f"({r['delivered_pct']:.3f} %), {r['reordered']} out of order",
            f"  latency    min {lat['min']:.1f}  p50 {lat['p50']:.1f}  p99 {lat['p99']:.1f}  "
            f"p99.9 {lat['p999']:.1f}  max {lat['max']:.1f} ms",
            f"  floor      {' / '.join(f'{f:.1f}' for f in r['floor_ms'])} ms "
            "(per link: delay + one frame at its rate)",
            f"  repair     {r['fec_rebuilt']} rebuilt by FEC ({r['originals_after_rebuild']} "
            f"originals came later), {r['resent']} re-sent, {r['expired']} expired; "
            f"{r['lost_inbound']} datagrams lost at B; "
            f"{r['wire_per_payload']:.3f} wire bytes per payload byte",
            f"  impair     dropped {sum(r['impair']['dropped'].values())}, release late "
            f"p50/p99/max {'/'.join(str(v) for v in r['impair']['release_late_us'].values())} us",
            f"  canary     an ordinary process woke late p50/p99/max "
            f"{'/'.join(str(v) for v in r['canary_late_us'].values())} us",
            f"  cpu        relay A {cpu['relay_a']:.0f} %, relay B {cpu['relay_b']:.0f} %, "
            f"impair {cpu['impair']:.0f} %",
            f"  timers     relay A late p50/p99/max {r['relay_timer_late_us']['relay_a']} us, "
            f"relay B {r['relay_timer_late_us']['relay_b']} us",
            f"  links      datagrams sent by A per link {r['link_share']}",
            f"  took       {r['test_seconds']:.1f} s",
        ]
    )


# --- a dead modem ----------------------------------------------------------------------------

MODEM_STREAM_BPS: Final = 1_000_000
MODEM_SIZE: Final = 1000
PHASE_S: Final = 2.0


def _stream(procs: Procs, ns: str, phase: int, seconds: float = PHASE_S) -> None:
    """Start phase `phase`'s stream: numbered from 10 000 x `phase`, to relay A."""
    args = ["--to", "127.0.0.1:5000", "--rate-bps", str(MODEM_STREAM_BPS)]
    args += ["--size", str(MODEM_SIZE), "--seconds", str(seconds), "--first", str(10_000 * phase)]
    procs.start(f"source{phase}", ns, ["-m", "tests.impair", "source", *args])


def _streamed(procs: Procs, phase: int) -> None:
    """Wait for phase `phase`'s stream to end (its last datagrams get 1 s to arrive)."""
    assert procs.procs[f"source{phase}"].wait(PHASE_S + 20.0) == 0, procs.err(f"source{phase}")


def _carrying(procs: Procs, links: Sequence[int]) -> None:
    procs.wait_carrying("relay_a", links, 30.0)


def _phase_view(source: dict[str, Any], tmp: Path) -> dict[str, Any]:
    """What the relays' ``--stats-log`` lines say about one phase's stream, from its
    start to 1 s after its end: messages expired at each end (sending at A, receiving
    at B) and, per link of A, the states seen and the smallest capacity estimate."""
    start = source["start_ns"] / 1e9
    end = start + source["seconds"] + 1.0
    view: dict[str, Any] = {}
    for name in ("relay_a", "relay_b"):
        lines = (tmp / f"{name}.log").read_text().splitlines()
        recs = [json.loads(line) for line in lines]
        before = [r for r in recs if r["t"] < start][-1:]
        during = [r for r in recs if start <= r["t"] <= end]
        if not during:
            continue
        base = (
            before[0]["expired"] if before and before[0]["session"] == during[-1]["session"] else 0
        )
        view[f"{name} expired"] = during[-1]["expired"] - base
        if name == "relay_a":
            links = range(len(during[0]["links"]))
            view["A states"] = [sorted({r["links"][i]["state"] for r in during}) for i in links]
            view["A min capacity kbit/s"] = [
                min(r["links"][i]["capacity_bps"] for r in during) // 1000 for i in links
            ]
    return view


def test_relay_survives_a_dead_modem(namespaces: tuple[str, str], tmp_path: Path) -> None:
    """Relay A's links are bound to their interfaces (``@paN``), as on a host with four
    modems, and relay B's to its addresses on the other side; no impairment relay.
    A stream of 1000-byte datagrams at 1 Mbit/s runs for 2 s in each phase:

    1. at start, link 2's address is missing and link 3's interface is down: A starts
       anyway and carries the stream on links 0 and 1;
    2. the address comes and the interface goes up: both links open at their next
       attempt, come UP and carry again;
    3. link 1's interface goes down in the middle of a stream, and up again;
    4. link 2's interface is removed and created again (a USB modem unplugged): its
       old socket cannot work any more (ENODEV); A opens a new one;
    5. every interface goes down for longer than ``reopen_after`` (1 s): both relays
       open new sessions, which find each other over links 0 and 2 while 1 and 3 are
       still down, and take 1 and 3 when they come up.

    Every phase's stream arrives (>= 99 %, exactly once, in order); no relay exits.
    Both relays write ``--stats-log``: for each phase the test prints (and, if the phase
    fell short, says in the failure) what expired at each end, and relay A's link
    states and smallest capacity estimates meanwhile.
    """
    ns_a, ns_b = namespaces
    key = tmp_path / "plait.key"
    key.write_text(PSK.hex(), encoding="ascii")
    common = ["--psk-file", str(key), "--stats-interval", "0.5", "--latency-ms", "1000"]
    common += ["--reopen-after", "1"]
    links_a, links_b = [], []
    for i, mbit in enumerate(RATES_MBIT):
        rate = f"{round(mbit * PLAIT_SHARE * 1000)}k"
        links_a += ["--link", f"10.77.{i}.1:7000=10.77.{i}.2:7000@pa{i}:{rate}"]
        links_b += ["--link", f"10.77.{i}.2:7000=10.77.{i}.1:7000:{rate}"]
    everything = range(len(RATES_MBIT))
    relay = ["-m", "plait", "relay", *common]
    log = {n: ["--stats-log", str(tmp_path / f"{n}.log")] for n in ("relay_a", "relay_b")}
    procs = Procs(tmp_path)
    ip(ns_a, "addr", "del", "10.77.2.1/30", "dev", "pa2")  # a modem without its address
    ip(ns_a, "link", "set", "pa3", "down")  # a modem switched off
    try:
        procs.start("sink", ns_b, ["-m", "tests.impair", "sink", "--bind", "127.0.0.1:9000"])
        argv_b = [*relay, *links_b, "--forward", "127.0.0.1:9000", *log["relay_b"]]
        procs.start("relay_b", ns_b, argv_b)
        procs.start(
            "relay_a",
            ns_a,
            [*relay, *links_a, "--listen", "127.0.0.1:5000", "--initiator", *log["relay_a"]],
        )
        procs.wait_for("relay_a", "established", 20.0)
        procs.wait_for("relay_a", "link 2: cannot bind", 5.0)
        procs.wait_for("relay_a", "link 3: cannot connect", 5.0)
        _carrying(procs, [0, 1])
        _stream(procs, ns_a, 1)
        _streamed(procs, 1)

        ip(ns_a, "addr", "add", "10.77.2.1/30", "dev", "pa2")
        ip(ns_a, "link", "set", "pa3", "up")
        procs.wait_for("relay_a", "link 2: open", 30.0)  # attempts 0.5, 1.5, 3.5, 7.5 s, ...
        procs.wait_for("relay_a", "link 3: open", 30.0)
        _carrying(procs, everything)
        _stream(procs, ns_a, 2)
        _streamed(procs, 2)

        _stream(procs, ns_a, 3)
        time.sleep(PHASE_S / 3)
        ip(ns_a, "link", "set", "pa1", "down")
        procs.wait_for("relay_a", "link 1 down", 5.0)
        _streamed(procs, 3)
        ip(ns_a, "link", "set", "pa1", "up")
        _carrying(procs, everything)

        ip(ns_a, "link", "del", "pa2")  # both ends of the veth go
        peer = ("peer", "name", "pb2", "netns", ns_b)
        run("ip", "link", "add", "pa2", "netns", ns_a, "type", "veth", *peer)
        for ns, dev, host in ((ns_a, "pa2", 1), (ns_b, "pb2", 2)):
            ip(ns, "addr", "add", f"10.77.2.{host}/30", "dev", dev)
            ip(ns, "link", "set", dev, "up")
        procs.wait_for("relay_a", "link 2: stale socket", 10.0)
        procs.wait_until(
            "relay_a", lambda: procs.err("relay_a").count("link 2: open") == 2, "reopened", 10.0
        )
        _carrying(procs, everything)
        _stream(procs, ns_a, 4)
        _streamed(procs, 4)

        for i in everything:
            ip(ns_a, "link", "set", f"pa{i}", "down")
        for name in ("relay_a", "relay_b"):
            procs.wait_for(name, "every link is down: a new session waits", 10.0)
        for i in (0, 2):
            ip(ns_a, "link", "set", f"pa{i}", "up")
        procs.wait_until(
            "relay_a", lambda: procs.err("relay_a").count("established") == 2, "again", 30.0
        )
        _carrying(procs, [0, 2])
        _stream(procs, ns_a, 5)
        _streamed(procs, 5)
        for i in (1, 3):
            ip(ns_a, "link", "set", f"pa{i}", "up")
        _carrying(procs, everything)
        _stream(procs, ns_a, 6)
        _streamed(procs, 6)

        time.sleep(1.0)  # the last datagrams' deadlines
        assert procs.stop("relay_a") == 0, procs.err("relay_a")
        assert procs.stop("relay_b", signal.SIGTERM) == 0, procs.err("relay_b")
        assert procs.stop("sink", signal.SIGTERM) == 0, procs.err("sink")
    finally:
        procs.kill_all()
    load = {n: json.loads((tmp_path / f"{n}.json").read_text()) for n in procs.procs}
    sink, seqs = load["sink"], set(load["sink"]["seqs"])
    assert sink["corrupt"] == sink["duplicates"] == sink["reordered"] == 0  # in order, once
    delivered = {}
    for phase in range(1, 7):
        sent = load[f"source{phase}"]["sent"]
        first = 10_000 * phase
        delivered[phase] = len(seqs & set(range(first, first + sent))) / sent
    print(f"\n  dead modem: delivered per phase {delivered}")
    views = {p: _phase_view(load[f"source{p}"], tmp_path) for p in delivered}
    for phase, view in views.items():
        print(f"    phase {phase}: {view}")
    assert all(share >= 0.99 for share in delivered.values()), (delivered, views)
    text = procs.err("relay_a") + procs.err("relay_b")
    assert "Traceback" not in text
    assert load["relay_a"]["sessions"] == 2
    errors = load["relay_a"]["session"]["errors"]  # the second session: 1 and 3 waited
    assert errors.get("send: link not open", 0) > 0, errors
