"""What an operator watches on a running ``plait relay`` (issue 17): its log file and
its live metrics. Two relay commands (subprocesses) on 127.0.0.1 over 3 links carry
datagrams both ways; every wait is bounded and generous (a loaded 2-core machine)."""

from __future__ import annotations

import itertools
import json
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from plait import cli, plot, tracelog
from plait_adapters._relay_config import RelayConfigError, parse
from tests.relay_ends import LINKS, PSK, Ends, all_carrying, free_ports, link_flags

ROOT = Path(__file__).resolve().parent.parent


def _wait(ready: Callable[[], bool], timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while not ready() and time.monotonic() < end:
        time.sleep(0.05)
    return ready()


class _Commands:
    """Relay B (the responder, forwarding to the sink), then relay A (the initiator,
    listening), each with its own extra flags; stderr to files."""

    def __init__(self, ends: Ends, tmp: Path, extra_a: list[str], extra_b: list[str]) -> None:
        self.ends = ends
        key = tmp / "plait.key"
        key.write_bytes(PSK)
        a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
        self.listen = ("127.0.0.1", free_ports(1)[0])
        common = ["--psk-file", str(key), "--stats-interval", "0.2"]
        argv_a = ["--listen", f"127.0.0.1:{self.listen[1]}", "--initiator"]
        argv_a += [*link_flags(a_ports, b_ports), *common, *extra_a]
        argv_b = ["--forward", f"127.0.0.1:{ends.sink_port}", *link_flags(b_ports, a_ports)]
        argv_b += [*common, *extra_b]
        self.errs = {name: tmp / f"{name}.err" for name in "ab"}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        for name, argv in (("b", argv_b), ("a", argv_a)):
            with self.errs[name].open("wb") as f:
                cmd = [sys.executable, "-m", "plait", "relay", *argv]
                self.procs[name] = subprocess.Popen(cmd, stderr=f, cwd=ROOT)  # noqa: S603  (our own command)

    def err(self, name: str) -> str:
        return self.errs[name].read_text()

    def carrying(self) -> bool:
        return all(all_carrying(self.err(name)) for name in "ab")

    def stop(self, name: str, sig: int = signal.SIGINT) -> int:
        self.procs[name].send_signal(sig)
        return self.procs[name].wait(20.0)

    def kill(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.fixture
def commands(tmp_path: Path) -> Iterator[Callable[[list[str], list[str]], _Commands]]:
    ends = Ends()
    made: list[_Commands] = []

    def start(extra_a: list[str], extra_b: list[str]) -> _Commands:
        made.append(_Commands(ends, tmp_path, extra_a, extra_b))
        return made[-1]

    yield start
    for c in made:
        c.kill()
    ends.close()


def test_the_log_file_tells_the_session_and_the_links(
    commands: Callable[[list[str], list[str]], _Commands], tmp_path: Path
) -> None:
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    c = commands(["--log-file", str(log_a)], ["--log-file", str(log_b), "--log-level", "WARNING"])
    assert _wait(c.carrying), c.err("a") + c.err("b")
    assert c.stop("a") == 0
    assert _wait(lambda: "a new session waits" in c.err("b"))
    assert c.stop("b", signal.SIGTERM) == 0
    a, b = log_a.read_text(), log_b.read_text()
    line = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) plait\.[a-z]+: "
    assert all(re.match(line, text) for text in a.splitlines())
    sid = re.search(r"INFO plait.session: session (0x[0-9a-f]{8}) established \(raw\)", a)
    assert sid is not None
    assert "INFO plait.session: session opening: initiator, 3 links (raw)" in a
    assert f"INFO plait.session: session {sid[1]} ended: application, by this end (code 0" in a
    assert a.count(" established") == 1  # the relay's own notice is not logged twice
    assert "INFO" not in b  # --log-level warning (B closed cleanly: nothing worse)


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One scrape, parsed by prometheus-client's own parser: {(name, labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = reply.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _counters(scrape: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    return {
        f"{name}{dict(labels)}": v
        for (name, labels), v in scrape.items()
        if name.endswith("_total")
    }


def test_metrics_are_scraped_while_the_relays_run(
    commands: Callable[[list[str], list[str]], _Commands], tmp_path: Path
) -> None:
    port_a, port_b = free_ports(2)
    stats_log = tmp_path / "b.jsonl"
    c = commands(
        ["--metrics-listen", f"127.0.0.1:{port_a}"],
        ["--metrics-listen", f"127.0.0.1:{port_b}", "--stats-log", str(stats_log)],
    )
    assert _wait(c.carrying), c.err("a") + c.err("b")
    assert f"metrics at http://127.0.0.1:{port_a}/metrics" in c.err("a")
    c.ends.exchange(c.listen, 30)
    first_a, first_b = _scrape(port_a), _scrape(port_b)
    c.ends.exchange(c.listen, 30)
    assert _wait(lambda: _scrape(port_b)["plait_messages_delivered_total", ()] >= 60)
    second_a, second_b = _scrape(port_a), _scrape(port_b)
    # sized for A's traffic within half a second of it (loopback: nothing lost)
    assert _wait(lambda: ("plait_planned_loss_ratio", ()) in _scrape(port_a))
    assert 0 <= _scrape(port_a)["plait_planned_loss_ratio", ()] <= 1e-4
    assert c.stop("a") == 0
    assert c.stop("b", signal.SIGTERM) == 0

    assert first_a["plait_relay_carried_datagrams_total", ()] == 30
    assert second_a["plait_relay_carried_datagrams_total", ()] == 60
    assert second_b["plait_relay_emitted_datagrams_total", ()] == 60
    assert second_a["plait_messages_delivered_total", ()] == 60  # the replies
    assert second_a["plait_session_established", ()] == 1
    for link in map(str, range(LINKS)):
        states = {
            labels[1][1]: v
            for (name, labels), v in second_a.items()
            if name == "plait_link_state" and labels[0] == ("link", link)
        }
        assert set(states) == {"DOWN", "PROBATION", "DEGRADED", "UP"}
        assert sum(states.values()) == 1
        assert states["UP"] + states["DEGRADED"] == 1
        lab = (("link", link),)
        assert 0 < second_a["plait_link_rtt_seconds", lab] < 1.0
        assert 0 <= second_a["plait_link_loss_ratio", lab] <= 1
        assert second_a["plait_link_capacity_bytes_per_second", lab] > 0
        assert second_a["plait_link_sent_bytes_total", lab] > 0
        assert second_b["plait_link_received_datagrams_total", lab] > 0
    for name in ("plait_repairs_total", "plait_fec_recovered_total", "plait_fec_parity_sent_total"):
        assert (name, ()) in second_b
    assert ("plait_messages_expired_total", (("side", "receiving"),)) in second_b
    assert "process_cpu_seconds_total" in {name for name, _ in second_a}
    for before, after in ((first_a, second_a), (first_b, second_b)):
        grown = _counters(after)
        assert all(grown[key] >= value for key, value in _counters(before).items())

    records = [json.loads(line) for line in stats_log.read_text().splitlines()]
    assert len(records) >= 3
    growing = ("carried", "emitted", "delivered", "expired", "repairs", "fec_recovered")
    for earlier, later in itertools.pairwise(records):
        assert later["t"] >= earlier["t"]
        assert all(later[key] >= earlier[key] for key in growing)
        for a, b in zip(earlier["links"], later["links"], strict=True):
            for key in ("bytes_sent", "datagrams_sent", "bytes_received", "datagrams_received"):
                assert b[key] >= a[key]
    assert records[-1]["emitted"] == 60
    planned = records[-1]["planned_loss"]  # B sent only the replies, over loopback
    assert planned is None or 0 <= planned <= 1e-4
    assert records[-1]["links"][0]["bytes_received"] > 0


def test_metrics_without_the_extra_are_refused_before_anything_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    argv = ["--listen", "127.0.0.1:5000", *link_flags([7000], [7001]), "--metrics-listen", ":0"]
    with pytest.raises(RelayConfigError, match=re.escape("pip install 'plait[metrics]'")):
        parse(argv)


def test_a_metrics_port_in_use_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["relay", "--listen", f"127.0.0.1:{free_ports(1)[0]}", *link_flags([0], [9])]
        with pytest.raises(SystemExit) as exit_info:
            cli.main([*argv, "--metrics-listen", f"127.0.0.1:{port}"])
    assert exit_info.value.code == 2
    assert "plait relay: error: --metrics-listen: Address already in use" in capsys.readouterr().err


def test_a_relay_trace_draws(
    commands: Callable[[list[str], list[str]], _Commands], tmp_path: Path
) -> None:
    """Relay B's --trace: each datagram from A delivered, with a latency within the
    budget, link bytes each second, the session's events; plait plot draws it."""
    trace = tmp_path / "b.jsonl"
    c = commands([], ["--trace", str(trace)])
    assert _wait(c.carrying), c.err("a") + c.err("b")
    c.ends.exchange(c.listen, 40)
    time.sleep(1.5)  # a look at the links or two: the bytes records
    assert c.stop("a") == 0
    assert c.stop("b", signal.SIGTERM) == 0
    head, records = tracelog.read(trace)
    assert head["source"] == "relay"
    assert head["links"] == LINKS
    assert head["budget_ns"] == 150_000_000
    delivered = [r for r in records if r["ev"] == "delivered"]
    assert len(delivered) == 40
    assert all(-50_000_000 < r["latency"] < 150_000_000 for r in delivered)
    assert {r["what"] for r in records if r["ev"] == "session"} >= {"established", "closed"}
    received = sum(r["bytes"] for r in records if r["ev"] == "bytes" and r["dir"] == 0)
    assert received > 40 * 4  # every datagram's payload at least, headers on top
    pytest.importorskip("matplotlib", reason="plait plot needs matplotlib (the plot extra)")
    png = tmp_path / "b.png"
    plot.plot_file(trace, png)
    assert png.read_bytes().startswith(b"\x89PNG")
