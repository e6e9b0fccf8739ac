"""``plait relay`` and rates: a link's rate may be left out (unknown: plait measures what
the link carries), and the relay tells what it measured. The status line, the final
report, ``--stats-json`` and ``--stats-log`` (a JSON line per status line, written while
the relay runs) show the session's usable rate and each link's estimated capacity."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from plait.capacity import START_BPS
from plait_adapters import LinkSpec
from plait_adapters._relay_config import RelayConfigError, parse, parse_link
from plait_adapters._relay_report import bps
from plait_adapters.relay import Relay, final_report, status_line
from tests.relay_ends import LINKS, PSK, Ends, all_carrying, free_ports

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("text", "spec", "rate"),
    [
        ("10.0.1.1:7001=10.0.1.2:7002", LinkSpec(("10.0.1.1", 7001), ("10.0.1.2", 7002)), None),
        ("a:1=b:2:5M", LinkSpec(("a", 1), ("b", 2)), 5_000_000),
        ("a:1=b:2@wwan0", LinkSpec(("a", 1), ("b", 2), "wwan0"), None),
        ("a:1=b:2@wwan0:2M", LinkSpec(("a", 1), ("b", 2), "wwan0"), 2_000_000),
        ("[fd00::1]:0=[fd00::2]:7002", LinkSpec(("fd00::1", 0), ("fd00::2", 7002)), None),
        ("[fd00::1]:0=[fd00::2]:7002:2M", LinkSpec(("fd00::1", 0), ("fd00::2", 7002)), 2_000_000),
        ("0.0.0.0:7000=*", LinkSpec(("0.0.0.0", 7000), None), None),  # noqa: S104
        ("0.0.0.0:7000=*:5M", LinkSpec(("0.0.0.0", 7000), None), 5_000_000),  # noqa: S104
        ("[::]:7001=*@eth1", LinkSpec(("::", 7001), None, "eth1"), None),
    ],
)
def test_a_link_flag_may_leave_out_its_rate(text: str, spec: LinkSpec, rate: int | None) -> None:
    assert parse_link(text, 0) == (spec, rate)


def test_a_link_without_a_rate_reaches_plait_as_unknown(tmp_path: Path) -> None:
    cfg = parse(["--listen", ":5000", "--link", "a:1=b:2", "--link", "a:2=b:3:5M"])
    assert cfg.rates_bps == (None, 5_000_000)
    assert [lc.rate_bps for lc in cfg.plait_config().links] == [None, 5_000_000]
    toml = tmp_path / "relay.toml"
    text = 'listen = ":5000"\n[[link]]\nlocal = "a:1"\nremote = "b:2"\n'
    toml.write_text(text + '[[link]]\nlocal = "a:2"\nremote = "b:3"\nrate = "2M"\n')
    assert parse(["--config", str(toml)]).rates_bps == (None, 2_000_000)
    with pytest.raises(RelayConfigError, match="rate"):
        parse(["--listen", ":5000", "--link", "a:1=b:2:"])  # a colon, then no rate


def test_bps() -> None:
    assert [bps(r) for r in (4_750_000, 12_000_000, 950_000, 64_000, 999, 0)] == [
        "4.75M",
        "12.00M",
        "950k",
        "64k",
        "999",
        "0",
    ]


def test_the_lines_show_the_usable_rate_and_each_links_capacity() -> None:
    """A link without a rate starts at plait's `START_BPS` (1 Mbit/s), one with a rate
    at that rate; the status line and the final report show both, and the usable rate."""
    mine, theirs, listen = free_ports(2), free_ports(2), free_ports(1)[0]
    links = ["--link", f"127.0.0.1:{mine[0]}=127.0.0.1:{theirs[0]}"]
    links += ["--link", f"127.0.0.1:{mine[1]}=127.0.0.1:{theirs[1]}:5M"]
    relay = Relay(parse(["--listen", f"127.0.0.1:{listen}", *links]))
    try:
        r = relay.stats()
    finally:
        relay.close()
    ep = r.session.endpoint
    assert [ln.capacity_bps for ln in ep.links] == [START_BPS, 5_000_000]
    line = status_line(r)
    assert f"  usable {bps(ep.usable_rate_bps)}  | " in line, line
    assert re.search(r"\| 0:\w+ \S+ \S+ 1\.00M  1:\w+ \S+ \S+ 5\.00M$", line), line
    report = final_report(r)
    assert f"  usable     {ep.usable_rate_bps / 1e6:.2f} Mbit/s of messages" in report
    assert re.search(r"  link 0 .*  capacity  1\.00M  sent", report), report
    assert re.search(r"  link 1 .*  capacity  5\.00M  sent", report), report


def test_the_stats_log_follows_the_relay_while_it_runs(tmp_path: Path) -> None:
    """Two relays as commands, no rates given: while they run, A's ``--stats-log``
    gets a JSON line per status line (0.2 s), stamped with CLOCK_MONOTONIC, with the
    usable rate and each link's capacity; its last line, written at exit, agrees with
    ``--stats-json``."""
    key = tmp_path / "plait.key"
    key.write_text(PSK.hex(), encoding="ascii")
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    listen = ("127.0.0.1", free_ports(1)[0])
    ends = Ends()
    common = ["--psk-file", str(key), "--stats-interval", "0.2"]
    link_a = [f"--link=127.0.0.1:{a}=127.0.0.1:{b}" for a, b in zip(a_ports, b_ports, strict=True)]
    link_b = [f"--link=127.0.0.1:{b}=127.0.0.1:{a}" for a, b in zip(a_ports, b_ports, strict=True)]
    argv_a = ["--listen", f"127.0.0.1:{listen[1]}", "--initiator", *link_a]
    argv_a += ["--stats-log", str(tmp_path / "a.log"), "--stats-json", str(tmp_path / "a.json")]
    argv_b = ["--forward", f"127.0.0.1:{ends.sink_port}", *link_b]
    procs: list[subprocess.Popen[bytes]] = []
    t0 = time.monotonic()
    try:
        for name, argv in (("b", argv_b), ("a", argv_a)):
            cmd = [sys.executable, "-m", "plait", "relay", *argv, *common]
            with (tmp_path / f"{name}.err").open("wb") as err:
                procs.append(subprocess.Popen(cmd, stderr=err, cwd=ROOT))  # noqa: S603  (our own command)
        err_a = tmp_path / "a.err"
        _wait(lambda: all_carrying(err_a.read_text()), 20.0)
        ends.exchange(listen, 10)
        log = tmp_path / "a.log"
        _wait(lambda: len(log.read_text().splitlines()) >= 3, 10.0)  # while it runs
        running = [json.loads(line) for line in log.read_text().splitlines()]
        procs[1].send_signal(signal.SIGINT)
        assert procs[1].wait(10.0) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        ends.close()
    times = [rec["t"] for rec in running]
    assert t0 < times[0] < times[-1] < time.monotonic()
    assert times == sorted(times)
    for rec in running:
        assert [ln["link"] for ln in rec["links"]] == list(range(LINKS))
        assert all(ln["capacity_bps"] >= START_BPS // 2 for ln in rec["links"]), rec
        if rec["established"]:
            assert 0 < rec["usable_rate_bps"] <= sum(ln["capacity_bps"] for ln in rec["links"])
    last = json.loads(log.read_text().splitlines()[-1])
    final = json.loads((tmp_path / "a.json").read_text())["session"]["endpoint"]
    assert last["usable_rate_bps"] == final["usable_rate_bps"] > 0
    assert [ln["capacity_bps"] for ln in last["links"]] == [
        ln["capacity_bps"] for ln in final["links"]
    ]
    assert last["carried"] == 10
    text = err_a.read_text()
    assert re.search(r"usable \d[\d.]*[Mk]?  \| 0:", text), text
    assert "capacity" in text  # the final report's per-link lines


def _wait(ready: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)
