"""``plait relay`` between two network namespaces while a link's capacity changes.

The set-up of `tests.test_netns` (four veth pairs shaped by ``tc tbf`` at 2, 5, 8 and
10 Mbit/s, a user-space impairment relay in namespace B adding 30, 10, 20 and 15 ms),
with deep tbf queues and no random loss, so that what is measured is how plait follows
capacity. A stream of 1316-byte datagrams (7 MPEG-TS packets) at 5 Mbit/s runs from a
source in A through relay A and relay B to a sink in B, for `STREAM_S` seconds:

* `WARM_S` s as set up;
* **phase A, a cut:** ``tc qdisc change`` takes link 1 from 5 to 1 Mbit/s, both ways,
  for `CUT_S` s, then back to 5;
* after `SETTLE_S` s, **phase B, an outage:** the impairment relay drops everything on
  link 3 (10 Mbit/s), both ways, for `DOWN_S` s, then carries it again (veth and tbf
  untouched, as when a modem's radio loses its cell);
* `TAIL_S` s more.

Twice: with each link's rate told to the relays (95 % of the tbf rate, as in
`tests.test_netns`), and with no rate at all (plait finds them).

Measured (printed with ``pytest -s``, and written to ``capacity.json`` in the test's
tmp dir): what reached the sink (each datagram exactly once, in order, >= 99.9 %); what
relay A put into link 1's tbf against what the tbf let through (its counters, read
every `SAMPLE_S` s: sent bytes + the change in backlog + drops = what A offered); when
link 3 carried data again after its return (the impairment relay stamps the first
data-sized datagram from A after it); tail drops of every tbf (``tc -s``); and relay
A's own view (``--stats-log``: its usable rate and link capacities).

Real time on a shared machine: the harness checks itself as `tests.test_netns` does
(the impairment relay on time, a canary that says how long an ordinary process was
held up; beyond `STARVED_MS` the run is inconclusive and skipped), and every time
bound below leaves room for what the canary measured.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from tests.netns_setup import PSK, Procs, pct, run, shaped_namespaces, tc_stats

RATES_MBIT: Final = (2, 5, 8, 10)
DELAYS_MS: Final = (30, 10, 20, 15)
STREAM_BPS: Final = 5_000_000
SIZE: Final = 1316
MTU: Final = 1400
"""A 1316-byte datagram fits in one plait packet of 1391 bytes (the default 1280 would
split it in two)."""
FRAME: Final = SIZE + 16 + 11 + 6 + 14 + 28 + 14
"""Bytes on the wire per stream datagram (1405): payload, AEAD tag, plait header, echo
and DATA fields, IPv4 + UDP, Ethernet (tbf counts the Ethernet header)."""
LATENCY_MS: Final = 150.0
"""The relays' deadline (their default)."""
PLAIT_SHARE: Final = 0.95
"""Told rates are this share of the tbf rate (tbf counts the Ethernet header too)."""
CUT_LINK: Final = 1
CUT_MBIT: Final = 1
DOWN_LINK: Final = 3
"""Not the cut link: a link that misbehaved recently serves a longer probation (flap
damping), and phase B is about a first outage."""
WARM_S: Final = 3.0
CUT_S: Final = 5.0
SETTLE_S: Final = 3.0
DOWN_S: Final = 3.0
TAIL_S: Final = 3.0
STREAM_S: Final = WARM_S + CUT_S + SETTLE_S + DOWN_S + TAIL_S
SAMPLE_S: Final = 0.1
TBF_BURST: Final = "4kb"
"""About three frames: a rate with no burst to speak of."""
TBF_LIMIT_BYTES: Final = 64 * 1024
"""Deep queues: 64 KiB is 0.52 s at the cut rate (1 Mbit/s), 0.26 s at 2, 0.10 s at 5,
52 ms at 10, each counted from an empty queue. A sender that ignores the cut sees its
datagrams queue far past the 150 ms deadline for a second before the tbf drops any
(offered ~1.3 Mbit/s against 1: the queue grows by ~40 kB/s), so the test sees whether
plait reacts to delay, not to loss; and a sender that reacts within an RTT or two, or
overshoots for one RTT while it finds a rate (2x per RTT at start-up, on the 30 ms
link: ~15 kB), never fills it."""
REACT_S: Final = 1.0
"""From one second after the cut, relay A sends no more on the cut link than it
carries."""
QUEUE_SLACK_BYTES: Final = 1000 * CUT_MBIT * 100 // 8 + 2 * FRAME
"""What A may still add to the cut link's queue after `REACT_S` (sent bytes + the
growth of the backlog - what the tbf carried): 100 ms of queue at the cut rate (plait
cuts when the queue stays above 10-40 ms, and probes upward from there), + 2 frames
for the sampling (a counter read may fall between a frame's enqueue and its dequeue)."""
READMIT_S: Final = 0.5
"""A link back from an outage carries data again within this."""
TAIL_DROPS_MAX: Final = 5
"""Tail drops per tbf (both directions, whole run). With `TBF_LIMIT_BYTES` a drop needs
a queue of >= 52 ms on the fastest link, 0.26 s on the slowest and 0.52 s on the cut
one, which a sender that follows delay never builds; a few are allowed for a start-up
overshoot on a busy machine."""
IMPAIR_LATE_MAX_P99_US: Final = 10_000
"""As in `tests.test_netns`: the "network" released 99 % of what it held within 10 ms."""
STARVED_MS: Final = LATENCY_MS / 2
"""A canary held up longer than this makes the run inconclusive (as in tests.test_netns)."""


def _tbf(mbit: int) -> tuple[str, ...]:
    return ("tbf", "rate", f"{mbit}mbit", "burst", TBF_BURST, "limit", str(TBF_LIMIT_BYTES))


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    with shaped_namespaces(len(RATES_MBIT), lambda i: _tbf(RATES_MBIT[i])) as pair:
        yield pair


class _Sampler(threading.Thread):
    """Reads namespace A's qdisc counters (`tc_stats`) every `SAMPLE_S` s."""

    def __init__(self, ns: str) -> None:
        super().__init__(daemon=True)
        self.ns = ns
        self.samples: list[tuple[float, dict[str, dict[str, int]]]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            before = time.monotonic()
            counters = tc_stats(self.ns)
            after = time.monotonic()
            self.samples.append(((before + after) / 2, counters))
            self._done.wait(max(0.0, SAMPLE_S - (after - before)))

    def stop(self) -> None:
        self._done.set()
        self.join(10.0)

    def first_after(self, t: float) -> tuple[float, dict[str, int]]:
        """The first sample of link `CUT_LINK`'s tbf taken after `t`."""
        at, counters = next((s for s in self.samples if s[0] >= t), self.samples[-1])
        return at, counters[f"pa{CUT_LINK}"]

    def last_before(self, t: float) -> tuple[float, dict[str, int]]:
        at, counters = next((s for s in reversed(self.samples) if s[0] <= t), self.samples[0])
        return at, counters[f"pa{CUT_LINK}"]

    def peak(self, start: float, end: float) -> int:
        """The largest backlog of link `CUT_LINK`'s tbf seen between `start` and `end`."""
        seen = [c[f"pa{CUT_LINK}"]["backlog"] for t, c in self.samples if start <= t <= end]
        return max(seen, default=0)


def _offered(
    a: tuple[float, dict[str, int]], b: tuple[float, dict[str, int]], peak: int
) -> dict[str, Any]:
    """What A put into the tbf between two samples, what it let through, and what it
    could have let through (its rate x the time); `peak` is the largest backlog seen."""
    (ta, ca), (tb, cb) = a, b
    carried = cb["bytes"] - ca["bytes"]
    queued = cb["backlog"] - ca["backlog"]
    drops = cb["drops"] - ca["drops"]
    return {
        "seconds": round(tb - ta, 3),
        "offered_bytes": carried + queued + drops * FRAME,
        "carried_bytes": carried,
        "capacity_bytes": round(CUT_MBIT * 1e6 / 8 * (tb - ta)),
        "backlog_bytes": [ca["backlog"], cb["backlog"]],
        "peak_backlog_bytes": peak,
        "drops": drops,
    }


def _cut(ns_a: str, ns_b: str, mbit: int) -> float:
    """Set link `CUT_LINK`'s rate, A's side first; returns when A's side took it."""
    spec = _tbf(mbit)
    run("tc", "-n", ns_a, "qdisc", "change", "dev", f"pa{CUT_LINK}", "root", *spec)
    at = time.monotonic()
    run("tc", "-n", ns_b, "qdisc", "change", "dev", f"pb{CUT_LINK}", "root", *spec)
    return at


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


@pytest.mark.parametrize("told", [True, False], ids=["rates-told", "rates-unknown"])
def test_relay_follows_capacity(namespaces: tuple[str, str], tmp_path: Path, told: bool) -> None:
    ns_a, ns_b = namespaces
    key = tmp_path / "plait.key"
    key.write_text(PSK.hex(), encoding="ascii")
    common = ["--psk-file", str(key), "--stats-interval", "0.25", "--mtu", str(MTU)]
    links_a, links_b, impair = [], [], []
    for i, (mbit, delay) in enumerate(zip(RATES_MBIT, DELAYS_MS, strict=True)):
        rate = f":{round(mbit * PLAIT_SHARE * 1000)}k" if told else ""
        links_a += ["--link", f"10.77.{i}.1:7000=10.77.{i}.2:7000@pa{i}{rate}"]
        links_b += ["--link", f"127.0.0.1:{7100 + i}=127.0.0.1:{7200 + i}{rate}"]
        ends = (f"10.77.{i}.2:7000", f"10.77.{i}.1:7000", f"127.0.0.1:{7200 + i}")
        impair += ["--link", "/".join((*ends, f"127.0.0.1:{7100 + i}", str(delay)))]
    relay = ["-m", "plait", "relay", *common]
    helper = ["-m", "tests.impair"]
    rt = ["--rt", "20"]
    procs = Procs(tmp_path)
    sampler = _Sampler(ns_a)
    marks: dict[str, float] = {}
    try:
        procs.start("sink", ns_b, [*helper, "sink", "--bind", "127.0.0.1:9000", *rt])
        switch = ["--switch", str(DOWN_LINK), "--loss", "0"]
        procs.start("impair", ns_b, [*helper, "forward", *impair, *switch, *rt])
        procs.start("canary", ns_b, [*helper, "canary"])
        procs.start("relay_b", ns_b, [*relay, *links_b, "--forward", "127.0.0.1:9000", "--once"])
        log = ["--stats-log", str(tmp_path / "relay_a.log")]
        argv_a = [*relay, *links_a, "--listen", ":5000", "--initiator", *log]
        procs.start("relay_a", ns_a, argv_a)
        procs.wait_for("relay_a", "established", 20.0)
        procs.wait_for("relay_b", "established", 5.0)
        for name in ("relay_a", "relay_b"):
            procs.wait_carrying(name, range(len(RATES_MBIT)), 20.0)
        sampler.start()
        stream = ["--to", "127.0.0.1:5000", "--rate-bps", str(STREAM_BPS), "--size", str(SIZE)]
        t0 = marks["start"] = time.monotonic()
        procs.start("source", ns_a, [*helper, "source", *stream, "--seconds", str(STREAM_S)])
        _sleep_until(t0 + WARM_S)
        marks["cut"] = _cut(ns_a, ns_b, CUT_MBIT)
        _sleep_until(t0 + WARM_S + CUT_S)
        marks["restored"] = _cut(ns_a, ns_b, RATES_MBIT[CUT_LINK])
        _sleep_until(t0 + WARM_S + CUT_S + SETTLE_S)
        procs.send_signal("impair", signal.SIGUSR1)  # link 3 down, both ways
        _sleep_until(t0 + WARM_S + CUT_S + SETTLE_S + DOWN_S)
        procs.send_signal("impair", signal.SIGUSR2)  # and back
        assert procs.procs["source"].wait(STREAM_S + 10.0) == 0, procs.err("source")
        time.sleep(0.5)  # the last datagrams' deadlines
        sampler.stop()
        drops = {ns: tc_stats(ns) for ns in (ns_a, ns_b)}
        assert procs.stop("relay_a") == 0, procs.err("relay_a")
        assert procs.procs["relay_b"].wait(10.0) == 0, procs.err("relay_b")
        for name in ("sink", "impair", "canary"):
            assert procs.stop(name, signal.SIGTERM) == 0, procs.err(name)
    finally:
        sampler.stop()
        procs.kill_all()
    load = procs.load()
    log_a = [json.loads(line) for line in (tmp_path / "relay_a.log").read_text().splitlines()]
    report = _report(load, sampler, marks, drops, log_a, told)
    print("\n" + _render(report))
    (tmp_path / "capacity.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(f"  written    {tmp_path / 'capacity.json'}")

    sink = load["sink"]
    assert sink["corrupt"] == sink["duplicates"] == sink["reordered"] == 0  # in order, once
    assert "Traceback" not in procs.err("relay_a") + procs.err("relay_b")
    assert load["source"]["sent"] > 0.95 * STREAM_S * STREAM_BPS / (SIZE * 8)
    impair_late = load["impair"]["release_late_us"]
    assert impair_late["p99"] < IMPAIR_LATE_MAX_P99_US, f"the harness was late: {impair_late}"
    held_ms = load["canary"]["late_us"]["max"] / 1000
    if held_ms > STARVED_MS:
        pytest.skip(f"inconclusive: the machine held an ordinary process up {held_ms} ms")
    assert report["delivered_pct"] >= 99.9, report["lost_by_phase"]
    # One second after the cut, the queue A built before it knew is gone, and from then
    # on A puts no more into the link than the link carries.
    after = report["cut"]["after_react"]
    assert after["backlog_bytes"][0] <= QUEUE_SLACK_BYTES, report["cut"]
    assert after["offered_bytes"] <= after["carried_bytes"] + QUEUE_SLACK_BYTES, after
    assert report["outage"]["readmitted_s"] is not None, report["outage"]
    assert report["outage"]["readmitted_s"] <= READMIT_S + held_ms / 1000, report["outage"]
    for dev, count in report["tail_drops"].items():
        assert count <= TAIL_DROPS_MAX, (dev, report["tail_drops"])


def _phase_of(sent_at: float, marks: dict[str, float]) -> str:
    t0 = marks["start"]
    if sent_at < marks["cut"]:
        return "warm"
    if sent_at < marks["restored"]:
        return "cut"
    if sent_at < t0 + WARM_S + CUT_S + SETTLE_S:
        return "settle"
    if sent_at < t0 + WARM_S + CUT_S + SETTLE_S + DOWN_S:
        return "down"
    return "tail"


def _report(
    load: dict[str, Any],
    sampler: _Sampler,
    marks: dict[str, float],
    drops: dict[str, dict[str, dict[str, int]]],
    log_a: list[dict[str, Any]],
    told: bool,
) -> dict[str, Any]:
    src, sink = load["source"], load["sink"]
    got = set(sink["seqs"])
    lost: dict[str, int] = {}
    for seq in range(src["sent"]):
        if seq not in got:
            phase = _phase_of((src["start_ns"] + seq * src["interval_ns"]) / 1e9, marks)
            lost[phase] = lost.get(phase, 0) + 1
    lat = sink["latency_us"]
    by_phase: dict[str, list[int]] = {}
    for seq, us in zip(sink["seqs"], lat, strict=True):
        phase = _phase_of((src["start_ns"] + seq * src["interval_ns"]) / 1e9, marks)
        by_phase.setdefault(phase, []).append(us)
    cut, restored = marks["cut"], marks["restored"]
    react = sampler.first_after(cut + REACT_S)
    switch = load["impair"]["switch"]
    events = dict(switch["events_ns"])  # one down, one up
    back = switch["data_in_after_up_ns"]
    series = [
        {
            "t": round(rec["t"] - marks["start"], 2),
            "usable_mbit": round(rec["usable_rate_bps"] / 1e6, 2),
            "capacity_mbit": [round(ln["capacity_bps"] / 1e6, 2) for ln in rec["links"]],
            "states": [ln["state"] for ln in rec["links"]],
        }
        for rec in log_a
        if rec["t"] >= marks["start"]
    ]
    return {
        "rates_told": told,
        "sent": src["sent"],
        "received": sink["received"],
        "delivered_pct": 100.0 * sink["received"] / src["sent"],
        "lost_by_phase": lost,
        "latency_ms": {
            "p50": pct(lat, 0.5) / 1000,
            "p99": pct(lat, 0.99) / 1000,
            "max": max(lat) / 1000,
            "p99_max_by_phase": {
                k: [pct(v, 0.99) / 1000, max(v) / 1000] for k, v in by_phase.items()
            },
        },
        "cut": {
            "first_second": _offered(
                sampler.first_after(cut), react, sampler.peak(cut, cut + REACT_S)
            ),
            "after_react": _offered(
                react, sampler.last_before(restored), sampler.peak(cut + REACT_S, restored)
            ),
        },
        "outage": {
            "seconds": (events["up"] - events["down"]) / 1e9,
            "readmitted_s": (back[0] - events["up"]) / 1e9 if back else None,
            "cut_datagrams": {
                k: v["cut"] for k, v in load["impair"].items() if isinstance(v, dict) and "cut" in v
            },
        },
        "tail_drops": {
            dev: counters["drops"]
            for ns in drops.values()
            for dev, counters in sorted(ns.items())
            if dev.startswith(("pa", "pb"))
        },
        "canary_late_us": load["canary"]["late_us"],
        "impair_late_us": load["impair"]["release_late_us"],
        "expired": load["relay_a"]["session"]["endpoint"]["messages_expired_sending"]
        + load["relay_b"]["session"]["endpoint"]["messages_expired_receiving"],
        "resent": load["relay_a"]["session"]["endpoint"]["repairs"],
        "relay_a_series": series,
    }


def _render(r: dict[str, Any]) -> str:
    lat, first, after = r["latency_ms"], r["cut"]["first_second"], r["cut"]["after_react"]
    readmit = r["outage"]["readmitted_s"]
    picks = [s for s in r["relay_a_series"] if int(s["t"] * 4) % 4 == 0]  # one a second
    return "\n".join(
        [
            f"netns capacity: rates {'told' if r['rates_told'] else 'unknown'}; link "
            f"{CUT_LINK} cut 5 -> {CUT_MBIT} Mbit/s for {CUT_S:.0f} s, link {DOWN_LINK} down "
            f"{r['outage']['seconds']:.1f} s",
            f"  stream     {r['sent']} sent, {r['received']} received "
            f"({r['delivered_pct']:.3f} %), lost by phase {r['lost_by_phase']}; "
            f"{r['expired']} expired, {r['resent']} re-sent",
            f"  latency    p50 {lat['p50']:.1f}  p99 {lat['p99']:.1f}  max {lat['max']:.1f} ms"
            f"; p99/max by phase {lat['p99_max_by_phase']}",
            f"  cut, 1st s A offered {first['offered_bytes']} B, tbf carried "
            f"{first['carried_bytes']} B of {first['capacity_bytes']} B in {first['seconds']} s"
            f"; backlog {first['backlog_bytes']} B (peak {first['peak_backlog_bytes']}), "
            f"{first['drops']} drops",
            f"  cut, after A offered {after['offered_bytes']} B, tbf carried "
            f"{after['carried_bytes']} B of {after['capacity_bytes']} B in {after['seconds']} s"
            f"; backlog {after['backlog_bytes']} B (peak {after['peak_backlog_bytes']}), "
            f"{after['drops']} drops",
            f"  outage     data again on link {DOWN_LINK} "
            + (f"{readmit * 1000:.0f} ms after its return" if readmit is not None else "never"),
            f"  tail drops {r['tail_drops']}",
            f"  canary     late p50/p99/max {'/'.join(map(str, r['canary_late_us'].values()))} us"
            f"; impair release late {'/'.join(map(str, r['impair_late_us'].values()))} us",
            "  relay A    t (s): usable / capacity per link (Mbit/s), states",
            *(
                f"    {s['t']:5.1f}  {s['usable_mbit']:5.2f} / "
                f"{' '.join(f'{c:5.2f}' for c in s['capacity_mbit'])}  {' '.join(s['states'])}"
                for s in picks
            ),
        ]
    )
