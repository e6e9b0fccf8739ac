"""``plait relay``: its configuration (TOML, flags, errors) and the relay end to end.

The end-to-end cases run two relays on 127.0.0.1 over 3 links with a UDP source and a
sink, datagrams both ways: in this process (two `Relay` objects in threads; once with
the responder learning the initiator's addresses through a NAT that re-maps them) and
as the real command (``python -m plait relay``, two subprocesses), stopped with
SIGINT. Every wait is bounded.
"""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import plait
from plait import cli
from plait_adapters import LinkSpec
from plait_adapters._relay_config import (
    RelayConfig,
    RelayConfigError,
    parse,
    parse_address,
    parse_link,
    parse_rate,
)
from plait_adapters._relay_report import Printer
from plait_adapters.relay import Relay, final_report, status_line
from tests.adapter_pairs import Nat
from tests.relay_ends import LINKS, PSK, Ends, all_carrying, carrying, free_ports, link_flags

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "relay.md"


# --- values ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "bps"),
    [
        ("10mbit", 10_000_000),
        ("10M", 10_000_000),
        ("2.5M", 2_500_000),
        ("2500k", 2_500_000),
        ("1G", 1_000_000_000),
        ("64000", 64_000),
        (" 5 Mbit/s ", 5_000_000),
        (7_000_000, 7_000_000),
    ],
)
def test_rates(text: str | int, bps: int) -> None:
    assert parse_rate(text, "x") == bps


@pytest.mark.parametrize("text", ["5mbps", "fast", "", "5 MB", "-1M", "1000", True, 2.5])
def test_bad_rates_name_the_unit(text: str) -> None:
    with pytest.raises(RelayConfigError, match=r"rate|minimum"):
        parse_rate(text, "x")


def test_addresses() -> None:
    assert parse_address("10.0.0.1:7000", "x") == ("10.0.0.1", 7000)
    assert parse_address("[::1]:7000", "x") == ("::1", 7000)
    assert parse_address(":5000", "x") == ("0.0.0.0", 5000)  # noqa: S104  (what ":5000" means)
    assert parse_address("h:0", "x", port_zero=True) == ("h", 0)
    for bad, why in [
        ("10.0.0.1", "host:port"),
        ("10.0.0.1:x", "host:port"),
        ("::1:7000", r"\[::1\]:7000"),
        ("h:70000", "out of range"),
        ("h:0", "out of range"),
    ]:
        with pytest.raises(RelayConfigError, match=why):
            parse_address(bad, "x")


def test_link_flag() -> None:
    spec, rate = parse_link("10.0.1.1:7001=10.0.1.2:7002@wwan0:10mbit", 0)
    assert spec == LinkSpec(("10.0.1.1", 7001), ("10.0.1.2", 7002), "wwan0")
    assert rate == 10_000_000
    spec, rate = parse_link("[fd00::1]:0=[fd00::2]:7002:2M", 1)
    assert spec == LinkSpec(("fd00::1", 0), ("fd00::2", 7002), None)
    assert rate == 2_000_000
    for bad in ["10.0.1.1:7001", "a:1=b", "a:1=b:2@:5M", "a:1=b:2:fast", "a:1=b:2:"]:
        with pytest.raises(RelayConfigError, match=r"--link|rate"):
            parse_link(bad, 0)


def test_a_remote_of_star_learns_the_peers_address(tmp_path: Path) -> None:
    """``*`` as a link's remote (or no remote in TOML): the link learns the peer's
    address (a spec with remote None)."""
    spec, rate = parse_link("0.0.0.0:7000=*:5M", 0)
    assert (spec, rate) == (LinkSpec(("0.0.0.0", 7000), None), 5_000_000)  # noqa: S104
    spec, _ = parse_link("[::]:7001=*@eth1:2M", 1)
    assert spec == LinkSpec(("::", 7001), None, "eth1")
    text = 'forward = "127.0.0.1:9000"\n[[link]]\nlocal = "10.0.0.1:7000"\nremote = "*"\n'
    text += 'rate = "5M"\n[[link]]\nlocal = "10.0.0.1:7001"\nrate = "2M"\n'
    cfg = parse(["--config", str(_write(tmp_path, text))])
    assert [link.remote for link in cfg.links] == [None, None]
    assert cfg.initiator is False


def test_the_initiator_must_know_its_remotes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A learning link on the initiator is a configuration error (exit status 2): it
    has to know where to send."""
    why = r"link 1: the initiator needs the peer's address; a remote of '\*'"
    flags = ["--initiator", "--listen", ":5000", "--link", "127.0.0.1:0=127.0.0.1:9:5M"]
    with pytest.raises(RelayConfigError, match=why):
        parse([*flags, "--link", "127.0.0.1:0=*:5M"])
    text = 'initiator = true\nlisten = ":5000"\n[[link]]\nlocal = "a:1"\nremote = "b:2"\n'
    text += 'rate = "5M"\n[[link]]\nlocal = "a:2"\nrate = "5M"\n'
    with pytest.raises(RelayConfigError, match=why):
        parse(["--config", str(_write(tmp_path, text))])
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["relay", *flags, "--link", "127.0.0.1:0=*:5M"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("plait relay: error: link 1: the initiator needs the peer's address")


# --- TOML and flags --------------------------------------------------------------------------

TOML = """
initiator = true
listen = "127.0.0.1:5000"
psk_file = "key.hex"
latency_ms = 200
mtu = 1500
fec = { k = 6, m = 2, adaptive = false }
busy_poll_us = 20
stats_interval = 2.5

[[link]]
local = "10.0.1.1:7001"
remote = "10.0.1.2:7001"
interface = "wwan0"
rate = "10mbit"

[[link]]
local = "10.0.2.1:7002"
remote = "10.0.2.2:7002"
rate = 2000000
"""


def _write(tmp_path: Path, text: str, name: str = "relay.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_toml(tmp_path: Path) -> None:
    (tmp_path / "key.hex").write_text(bytes(range(32)).hex() + "\n", encoding="ascii")
    cfg = parse(["--config", str(_write(tmp_path, TOML))])
    assert cfg == RelayConfig(
        links=(
            LinkSpec(("10.0.1.1", 7001), ("10.0.1.2", 7001), "wwan0"),
            LinkSpec(("10.0.2.1", 7002), ("10.0.2.2", 7002)),
        ),
        rates_bps=(10_000_000, 2_000_000),
        listen=("127.0.0.1", 5000),
        initiator=True,
        psk=bytes(range(32)),  # the psk file is found next to the TOML file
        latency_ms=200.0,
        fec=plait.FecConfig(k=6, m=2, adaptive=False),
        mtu=1500,
        busy_poll_us=20,
        stats_interval_s=2.5,
    )
    pc = cfg.plait_config()
    assert [lc.rate_bps for lc in pc.links] == [10_000_000, 2_000_000]
    assert pc.latency_ns == 200_000_000
    assert pc.psk == bytes(range(32))
    assert pc.mtu == 1500


def test_protection_settings_reach_plait(tmp_path: Path) -> None:
    """--target-loss and --max-protection (or their TOML keys) become the session's
    `plait.Config` fields; plait's own bounds refuse what is out of range."""
    base = ["--listen", "127.0.0.1:5000", "--link", "127.0.0.1:7000=127.0.0.1:7001"]
    pc = parse([*base, "--max-protection", "2", "--target-loss", "1e-3"]).plait_config()
    assert (pc.max_protection, pc.target_loss) == (2.0, 1e-3)
    path = _write(tmp_path, "target_loss = 1e-5\nmax_protection = 3\n")
    pc = parse(["--config", str(path), *base]).plait_config()
    assert (pc.max_protection, pc.target_loss) == (3.0, 1e-5)
    for flag, value, why in [
        ("--max-protection", "20", "max_protection must be in"),
        ("--max-protection", "nan", "max_protection must be in"),
        ("--target-loss", "0.9", "target_loss must be in"),
        ("--target-loss", "x", "invalid float"),
    ]:
        with pytest.raises(RelayConfigError, match=why):
            parse([*base, flag, value])


def test_flags_override_the_file(tmp_path: Path) -> None:
    (tmp_path / "key.hex").write_bytes(bytes(32))  # 32 raw bytes work too
    path = str(_write(tmp_path, TOML))
    flags = ["--no-initiator", "--latency-ms", "80", "--fec", "off", "--spin-us", "0"]
    flags += ["--link", "1.1.1.1:1=2.2.2.2:2:3M", "--forward", "127.0.0.1:6000"]
    cfg = parse(["--config", path, *flags])
    assert cfg.initiator is False
    assert cfg.latency_ms == 80.0
    assert cfg.fec is None
    assert cfg.links == (LinkSpec(("1.1.1.1", 1), ("2.2.2.2", 2)),)  # --link replaces [[link]]
    assert cfg.rates_bps == (3_000_000,)
    assert cfg.listen == ("127.0.0.1", 5000)  # from the file
    assert cfg.forward == ("127.0.0.1", 6000)
    assert cfg.spin_us == 0
    assert cfg.busy_poll_us == 20


def test_flags_alone_and_defaults(tmp_path: Path) -> None:
    cfg = parse(["--listen", ":5000", "--link", "127.0.0.1:0=127.0.0.1:9:5M"])
    assert cfg.initiator is False
    assert cfg.psk is None
    assert cfg.fec == plait.FecConfig()
    assert (cfg.busy_poll_us, cfg.spin_us) == (0, 50)  # no core spun by default
    assert cfg.stats_interval_s == 10.0
    assert cfg.plait_config().latency_ns == 150_000_000


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('listen = ":1"\nbogus = 1\n', "unknown key 'bogus'"),
        ('listen = ":1"\n[[link]]\nremote = "b:2"\nrate = "5M"\n', "link 0: missing 'local'"),
        ('listen = ":1"\n[[link]]\nlocal="a:1"\nremote="b:2"\nrate="5M"\nmtu=1\n', "unknown key"),
        ('listen = ":1"\nlink = 3\n', r"\[\[link\]\] table"),
        ('listen = 5000\n[[link]]\nlocal="a:1"\nremote="b:2"\nrate="5M"\n', "listen must be str"),
        ('initiator = "yes"\n', "initiator must be bool"),
        ('mtu = true\nlisten=":1"\n', "mtu must be int"),
        ("fec = 3\n", "fec must be false or a table"),
        ("fec = { k = 8, n = 2 }\n", "unknown key 'n'"),
        ("fec = { k = 99 }\n", r"k must be in \[1, 64\]"),
        ('listen = ":1"\nlisten = ":2"\n', "at line 2"),  # tomllib's error, with its line
        ('listen = ":1"\n', "give 1 to 16 links"),
        ('[[link]]\nlocal="a:1"\nremote="b:2"\nrate="5M"\n', "--listen, --forward"),
        ('listen=":1"\nmtu=100\n[[link]]\nlocal="a:1"\nremote="b:2"\nrate="5M"\n', "mtu"),
        ('listen=":1"\npsk_file="nope"\n', "psk file"),
    ],
)
def test_toml_errors_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(RelayConfigError, match=message):
        parse(["--config", str(_write(tmp_path, text))])


def test_flag_errors(tmp_path: Path) -> None:
    good = ["--listen", ":5000", "--link", "127.0.0.1:0=127.0.0.1:9:5M"]
    (tmp_path / "short.key").write_bytes(b"too short")
    for extra, message in [
        (["--latency-ms", "0"], "latency_ms must be > 0"),
        (["--spin-us", "-1"], r"spin_us must be in \[0, 1000000\], got -1"),
        (["--fec", "8"], "K:M"),
        (["--psk-file", str(tmp_path / "short.key")], "32 raw bytes or 64 hex"),
        (["--config", str(tmp_path / "missing.toml")], "missing.toml"),
    ]:
        with pytest.raises(RelayConfigError, match=message):
            parse(good + extra)


def test_cli_config_error_exits_2_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["relay", "--listen", ":5000", "--link", "a:1=b:2:lots"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("plait relay: error: link 0: rate 'lots'")
    assert "Traceback" not in err


def test_cli_relay_help_is_the_relays_own(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["relay", "--help"])
    assert exit_info.value.code == 0
    assert "LOCAL=REMOTE[@IFACE][:RATE]" in capsys.readouterr().out


def test_an_address_that_cannot_be_bound_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["relay", "--listen", f"127.0.0.1:{port}", *link_flags([0], [9])])
    assert exit_info.value.code == 2
    assert "cannot bind the local address" in capsys.readouterr().err


def test_the_core_cli_does_not_import_the_relay() -> None:
    """`plait.cli` imports `plait_adapters.relay` (sockets, threads) only when it runs."""
    code = "import sys, plait.cli; print(sorted(m for m in sys.modules if 'adapters' in m))"
    out = subprocess.run(  # noqa: S603  (this interpreter, our own code)
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_docs_toml_examples_parse(tmp_path: Path) -> None:
    """Every TOML block of docs/relay.md is a valid relay configuration."""
    blocks = re.findall(r"^```toml\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
    assert blocks
    (tmp_path / "plait.key").write_text(PSK.hex(), encoding="ascii")
    for i, block in enumerate(blocks):
        cfg = parse(["--config", str(_write(tmp_path, block, f"doc{i}.toml"))])
        assert len(cfg.links) >= 3


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture
def ends() -> Iterator[Ends]:
    e = Ends()
    yield e
    e.close()


class _Pair:
    """Two `Relay` objects in this process, each serving in a thread, over 3 links."""

    def __init__(self, ends: Ends, tmp_path: Path, *extra: str, once_b: bool = False) -> None:
        key = tmp_path / "plait.key"
        key.write_bytes(PSK)
        a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
        self.listen = ("127.0.0.1", free_ports(1)[0])
        common = ["--psk-file", str(key), "--fec", "4:2", "--latency-ms", "1000", *extra]
        argv_a = ["--listen", f"127.0.0.1:{self.listen[1]}", "--initiator"]
        argv_b = ["--forward", f"127.0.0.1:{ends.sink_port}", *(["--once"] if once_b else [])]
        self.a = Relay(parse([*argv_a, *link_flags(a_ports, b_ports), *common]))
        self.b = Relay(parse([*argv_b, *link_flags(b_ports, a_ports), *common]))
        self.threads = {r: threading.Thread(target=r.serve, daemon=True) for r in (self.a, self.b)}
        for t in self.threads.values():
            t.start()
        assert self.wait(lambda: carrying(self.a) and carrying(self.b))

    @staticmethod
    def wait(ready: Callable[[], bool], timeout: float = 10.0) -> bool:
        end = time.monotonic() + timeout
        while not ready() and time.monotonic() < end:
            time.sleep(0.01)
        return ready()

    def close(self) -> None:
        """Stop both, then close both (closing A first would make B open a new session)."""
        for relay, thread in self.threads.items():
            relay.stop()
            thread.join(5.0)
        for relay in self.threads:
            relay.close()


@pytest.fixture
def pair(ends: Ends, tmp_path: Path) -> Iterator[Callable[..., _Pair]]:
    made: list[_Pair] = []

    def make(*extra: str, once_b: bool = False) -> _Pair:
        made.append(_Pair(ends, tmp_path, *extra, once_b=once_b))
        return made[-1]

    yield make
    for p in made:
        p.close()


def test_two_relays_in_process(ends: Ends, pair: Callable[..., _Pair]) -> None:
    p = pair()
    ends.exchange(p.listen, 60)
    p.close()
    a, b = p.a.stats(), p.b.stats()
    assert (a.carried, a.emitted, b.carried, b.emitted) == (60, 60, 60, 60)
    assert a.session.endpoint.messages_delivered == 60
    assert a.dropped_full == a.dropped_no_destination == a.local_errors == 0
    assert a.session.endpoint.closed
    assert a.sessions == b.sessions == 1
    line = status_line(a)
    assert "in 60  out 60  delivered 60  expired 0" in line
    assert len(re.findall(r"\d:(UP|DOWN|DEGRADED|PROBATION) ", line)) == LINKS
    report = final_report(a)
    assert "carried 60 datagrams to the peer, emitted 60 from it" in report
    assert report.count("\n  link ") == LINKS


def test_a_lost_peer_is_found_again(ends: Ends, pair: Callable[..., _Pair]) -> None:
    """Every socket of A closes (a crash, as B sees it): after `--reopen-after`, both
    ends open new sessions, find each other, and carry traffic again."""
    p = pair("--reopen-after", "0.5")
    ends.exchange(p.listen, 5)
    for link in range(LINKS):
        p.a.session.close_link(link)
    assert p.wait(lambda: p.a.sessions == p.b.sessions == 2)
    assert p.wait(lambda: p.a.established and p.b.established)
    ends.exchange(p.listen, 5)
    notices = " ".join(p.b.notices)
    assert "every link is down: a new session waits for the peer" in notices
    assert p.a.stats().carried == 10


def test_a_psk_mismatch_is_announced(ends: Ends, tmp_path: Path) -> None:
    """Relays with different keys never connect; the responder says why, once, rather
    than only counting drops (issue 15)."""
    keys = []
    for name, key in (("a.key", PSK), ("b.key", bytes(32))):
        keys.append(tmp_path / name)
        keys[-1].write_bytes(key)
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    argv_a = ["--initiator", "--psk-file", str(keys[0]), *link_flags(a_ports, b_ports)]
    argv_b = ["--forward", f"127.0.0.1:{ends.sink_port}", "--psk-file", str(keys[1])]
    a = Relay(parse([*argv_a, "--listen", f"127.0.0.1:{free_ports(1)[0]}"]))
    b = Relay(parse([*argv_b, *link_flags(b_ports, a_ports)]))
    threads = [threading.Thread(target=r.serve, daemon=True) for r in (a, b)]
    for t in threads:
        t.start()
    try:
        said = "HELLOs failed authentication: the peer holds another psk"
        assert _Pair.wait(lambda: any(said in n for n in b.notices), 10.0)
        assert not a.established
        assert not b.established
    finally:
        for relay, thread in zip((a, b), threads, strict=True):
            relay.stop()
            thread.join(5.0)
            relay.close()
    assert sum(said in n for n in b.notices) == 1


def test_a_warning_when_protection_cannot_reach_the_target(pair: Callable[..., _Pair]) -> None:
    """While this end carries traffic and the plan leaves more than the target lost, one
    warning that says what to raise; a notice when it is back within; nothing while
    nothing is carried (an idle end's plan is sized for no traffic)."""
    p = pair()
    a, said = p.a, "above the target 0.0001"
    a._check_plan(3e-3)  # nothing carried yet
    assert not any(said in n for n in a.notices)
    a._carried += 1
    a._check_plan(3e-3)
    a._carried += 1
    a._check_plan(4e-3)  # still short: said once
    assert sum(said in n and "--max-protection 1" in n for n in a.notices) == 1
    a._carried += 1
    a._check_plan(5e-5)
    assert any("reaches the target 0.0001 again" in n for n in a.notices)


def test_once_ends_serve_when_the_peer_closes(ends: Ends, pair: Callable[..., _Pair]) -> None:
    p = pair(once_b=True)
    ends.exchange(p.listen, 3)
    p.a.stop()
    p.threads[p.a].join(5.0)
    p.a.close()  # CLOSE on every link
    p.threads[p.b].join(5.0)
    assert not p.threads[p.b].is_alive()
    assert p.b.closed_by_peer
    assert not p.b.lost
    assert p.b.sessions == 1


def test_once_ends_serve_when_the_peer_is_lost(ends: Ends, pair: Callable[..., _Pair]) -> None:
    p = pair("--reopen-after", "0.3", once_b=True)
    for link in range(LINKS):
        p.a.session.close_link(link)
    p.threads[p.b].join(10.0)
    assert not p.threads[p.b].is_alive()
    assert p.b.lost
    assert not p.b.closed_by_peer


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_stats_on_a_terminal_rewrite_one_line(ends: Ends, pair: Callable[..., _Pair]) -> None:
    p = pair()
    ends.exchange(p.listen, 2)
    out = _Tty()
    printer = Printer(p.a.notices, p.a.stats, out, interval_s=10.0)
    assert printer.interval_s == 1.0  # a terminal gets a fresh line every second
    printer.tick(True)
    p.a.notice("hello")
    printer.tick(True)
    printer.final(p.a.stats())
    text = out.getvalue()
    status = r"\r\x1b\[K *\d+s  in 2  out \d [^\n\r]*"  # rewritten in place, no newline
    notice = r"plait relay \[ *[\d.]+ s\] [^\n]*\n"
    clear = r"\r\x1b\[K"
    # established, the line; cleared, hello, the line again; cleared, the final report
    pattern = f"{notice}{status}{clear}{notice}{status}{clear}plait relay: final"
    assert re.fullmatch(pattern + r".*of one core\)\n", text, re.S), text
    assert "] hello\n" in text
    piped = io.StringIO()
    Printer(p.a.notices, p.a.stats, piped, interval_s=0.0).tick(
        True
    )  # not a terminal, stats off: nothing
    assert "\r" not in piped.getvalue()
    assert "in 2" not in piped.getvalue()


def test_plait_relay_command_both_ways_and_sigint(ends: Ends, tmp_path: Path) -> None:
    """The real command: two subprocesses with a psk. SIGINT makes A send CLOSE, print
    its final stats and exit 0; B sees the peer close, opens a new session to wait for
    it, and exits 0 on its own SIGINT (SIGTERM works the same)."""
    key = tmp_path / "plait.key"
    key.write_text(PSK.hex(), encoding="ascii")
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    listen = ("127.0.0.1", free_ports(1)[0])
    common = ["--psk-file", str(key), "--stats-interval", "0.2"]
    argv_a = ["--listen", f"127.0.0.1:{listen[1]}", "--initiator", *link_flags(a_ports, b_ports)]
    argv_b = ["--forward", f"127.0.0.1:{ends.sink_port}", *link_flags(b_ports, a_ports)]
    procs, errs = [], []
    for name, argv in (("b", argv_b), ("a", argv_a)):
        err = tmp_path / f"{name}.err"
        errs.append(err)
        cmd = [sys.executable, "-m", "plait", "relay", *argv, *common]
        cmd += ["--stats-json", str(tmp_path / f"{name}.json")]
        with err.open("wb") as f:
            procs.append(subprocess.Popen(cmd, stderr=f, cwd=ROOT))  # noqa: S603  (our own command)
    proc_b, proc_a = procs
    try:
        assert _Pair.wait(lambda: "established" in errs[1].read_text(), 20.0)
        assert _Pair.wait(lambda: all_carrying(errs[0].read_text()), 20.0)  # B's links
        ends.exchange(listen, 20)
        time.sleep(0.5)  # a stats line or two
        proc_a.send_signal(signal.SIGINT)
        assert proc_a.wait(10.0) == 0
        assert _Pair.wait(lambda: "a new session waits" in errs[0].read_text())
        proc_b.send_signal(signal.SIGTERM)
        assert proc_b.wait(10.0) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err_b, err_a = (e.read_text() for e in errs)
    assert "Traceback" not in err_a + err_b
    assert re.search(r"\bin 20  out 20  delivered 20  expired 0\b", err_a)
    assert "plait relay: final stats after" in err_a
    assert "carried 20 datagrams to the peer, emitted 20 from it" in err_a
    assert "session closed by the peer (code 0)" in err_b
    stats_a = json.loads((tmp_path / "a.json").read_text())
    stats_b = json.loads((tmp_path / "b.json").read_text())
    assert (stats_a["carried"], stats_a["emitted"]) == (20, 20)
    assert stats_a["session"]["endpoint"]["closed"] is True
    assert stats_b["closed_by_peer"] is True
    assert stats_b["sessions"] == 2
    assert stats_b["emitted"] == 20
    assert stats_b["session"]["endpoint"]["messages_delivered"] == 20  # the session that ended


def test_a_responder_with_star_remotes_follows_a_nat(ends: Ends, tmp_path: Path) -> None:
    """Relay B (the responder) has ``*`` remotes; relay A (the initiator) reaches it
    through a NAT, which mid-run gives every link a new public port and forgets the old
    one. B follows: datagrams go both ways before and after, B's through the new
    mappings."""
    key = tmp_path / "plait.key"
    key.write_bytes(PSK)
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    listen = ("127.0.0.1", free_ports(1)[0])
    common = ["--psk-file", str(key), "--latency-ms", "1000"]
    nat = Nat([("127.0.0.1", port) for port in b_ports])
    relays: list[Relay] = []
    threads: list[threading.Thread] = []
    try:
        links_b = [f"--link=127.0.0.1:{port}=*:20M" for port in b_ports]
        links_a = [
            f"--link=127.0.0.1:{port}=127.0.0.1:{inside[1]}:20M"
            for port, inside in zip(a_ports, nat.inside, strict=True)
        ]
        relays.append(Relay(parse(["--forward", f"127.0.0.1:{ends.sink_port}", *links_b, *common])))
        relays.append(
            Relay(parse(["--listen", f"127.0.0.1:{listen[1]}", "--initiator", *links_a, *common]))
        )
        threads = [threading.Thread(target=r.serve, daemon=True) for r in relays]
        for t in threads:
            t.start()
        b, a = relays
        assert _Pair.wait(lambda: carrying(a) and carrying(b))
        ends.exchange(listen, 10)
        assert _Pair.wait(lambda: all(nat.replies)), nat.replies
        nat.remap()
        ends.exchange(listen, 10)
        # B answers through the new mappings: on each link within a keepalive or two,
        # if no message reply happened to go there (a link whose data proves it
        # skips its keepalives)
        assert _Pair.wait(lambda: all(nat.replies)), nat.replies
        assert (a.stats().carried, a.stats().emitted) == (20, 20)
        assert b.sessions == 1
        b._watch()  # what the stats tick does: a notice for each moved address
        moved = [
            f"link {i}: the peer is at 127.0.0.1:{p}" for i, p in enumerate(nat.mapped_ports())
        ]
        assert [n.split("] ", 1)[1] for n in b.notices][-LINKS:] == moved
        report = final_report(b.stats())
        assert all(f"peer 127.0.0.1:{p}" in report for p in nat.mapped_ports()), report
    finally:
        for relay, thread in zip(relays, threads, strict=False):
            relay.stop()
            thread.join(5.0)
        for relay in relays:
            relay.close()
        nat.close()
