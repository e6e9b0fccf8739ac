"""``plait relay`` for operators: a dead modem, a second instance, signals, bad values,
the forward socket's binding (docs/relay.md).

The relays run in this process (`Relay` objects serving in threads) where that is
enough, and as the real command (``python -m plait relay``) where the process itself is
the subject: signals, exit statuses, what reaches stderr. A link whose address is
missing is a local address no interface has (192.0.2.1, TEST-NET-1), or, where it must
appear later, `_links.open_socket` replaced by one that refuses it until the test lets
it through; the namespace test (`tests/test_netns.py`) does it with real interfaces.
Every wait is bounded, with margins that hold on a busy 2-core machine.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import plait
from plait import cli
from plait_adapters import LinkError, LinkSpec
from plait_adapters import _links as links_mod
from plait_adapters._relay_config import parse
from plait_adapters._relay_local import source_for
from plait_adapters.relay import Relay
from tests.adapter_pairs import Nat
from tests.relay_ends import LINKS, PSK, Ends, carrying, free_ports, link_flags

ROOT = Path(__file__).resolve().parent.parent
ABSENT = "192.0.2.1"
"""An address no interface of this host has: binding it fails with EADDRNOTAVAIL."""


@pytest.fixture
def ends() -> Iterator[Ends]:
    e = Ends()
    yield e
    e.close()


def wait(ready: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while not ready() and time.monotonic() < end:
        time.sleep(0.01)
    return ready()


class Serving:
    """Relays serving in threads; `close` stops them all, then closes them all (a peer
    closed first would make the other open a new session)."""

    def __init__(self) -> None:
        self.threads: dict[Relay, threading.Thread] = {}

    def start(self, relay: Relay) -> Relay:
        self.threads[relay] = threading.Thread(target=relay.serve, daemon=True)
        self.threads[relay].start()
        return relay

    def close(self) -> None:
        for relay, thread in self.threads.items():
            relay.stop()
            thread.join(10.0)
        for relay in self.threads:
            relay.close()


@pytest.fixture
def serving() -> Iterator[Serving]:
    s = Serving()
    yield s
    s.close()


def _key(tmp_path: Path) -> str:
    key = tmp_path / "plait.key"
    key.write_bytes(PSK)
    return str(key)


def _common(tmp_path: Path, *extra: str) -> list[str]:
    return ["--psk-file", _key(tmp_path), "--latency-ms", "1000", "--fec", "4:2", *extra]


def _notices(relay: Relay) -> str:
    return "\n".join(relay.notices)


# --- a dead modem ------------------------------------------------------------------------------


class Absent:
    """`_links.open_socket`, refusing the local addresses in `addresses` with
    EADDRNOTAVAIL (as the kernel does while a modem has no address yet)."""

    def __init__(self) -> None:
        self.addresses: set[tuple[str, int]] = set()
        self.real = links_mod.open_socket

    def __call__(self, link: LinkSpec, index: int = 0) -> socket.socket:
        if link.local in self.addresses:
            raise LinkError(
                errno.EADDRNOTAVAIL,
                f"link {index}: cannot bind {link.local}: [Errno 99] Cannot assign "
                "requested address",
            )
        return self.real(link, index)


@pytest.fixture
def absent(monkeypatch: pytest.MonkeyPatch) -> Absent:
    made = Absent()
    monkeypatch.setattr(links_mod, "open_socket", made)
    return made


def _pair(
    ends: Ends, tmp_path: Path, serving: Serving, a_local: Sequence[str], *extra: str
) -> tuple[Relay, Relay, tuple[str, int]]:
    """Relay B (responder, forward to the sink) and relay A (initiator, its links bound
    to `a_local` hosts), serving; returns (A, B, A's listen address)."""
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    listen = ("127.0.0.1", free_ports(1)[0])
    common = _common(tmp_path, *extra)
    links_a = [
        f"--link={host}:{a}=127.0.0.1:{b}:20M"
        for host, a, b in zip(a_local, a_ports, b_ports, strict=True)
    ]
    links_b = [
        f"--link=127.0.0.1:{b}={host if host != ABSENT else '127.0.0.1'}:{a}:20M"
        for host, a, b in zip(a_local, a_ports, b_ports, strict=True)
    ]
    b = serving.start(Relay(parse(["--forward", f"127.0.0.1:{ends.sink_port}", *links_b, *common])))
    a = serving.start(
        Relay(parse(["--listen", f"{listen[0]}:{listen[1]}", "--initiator", *links_a, *common]))
    )
    return a, b, listen


def test_a_link_whose_address_is_missing_at_start(
    ends: Ends, tmp_path: Path, serving: Serving
) -> None:
    """Link 2's local address is on no interface (a modem without its address yet): the
    relay starts anyway, carries everything on links 0 and 1, and says why link 2
    waits."""
    a, b, listen = _pair(ends, tmp_path, serving, ["127.0.0.1", "127.0.0.1", ABSENT])
    assert wait(lambda: carrying(a, [0, 1]) and carrying(b, [0, 1]))
    ends.exchange(listen, 20)
    assert set(a.stats().session.not_open) == {2}
    assert "Cannot assign requested address; link 2 waits and is tried again" in _notices(a)
    assert a.stats().carried == 20


def test_a_link_that_comes_later_and_a_reopen_without_it(
    ends: Ends, tmp_path: Path, serving: Serving, absent: Absent
) -> None:
    """Link 2's address is missing at start, then appears: the link opens at its next
    attempt and carries datagrams. Then it goes again, and A loses every link (its
    sockets close: a crash, as B sees it): both ends open new sessions, A's without
    link 2, and they find each other over links 0 and 1."""
    host = "127.0.0.1"
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    listen = ("127.0.0.1", free_ports(1)[0])
    absent.addresses = {(host, a_ports[2])}
    common = _common(tmp_path, "--reopen-after", "0.5")
    b = serving.start(
        Relay(
            parse(["--forward", f"{host}:{ends.sink_port}", *link_flags(b_ports, a_ports), *common])
        )
    )
    a = serving.start(
        Relay(
            parse(
                [
                    *["--listen", f"{host}:{listen[1]}", "--initiator"],
                    *link_flags(a_ports, b_ports),
                    *common,
                ]
            )
        )
    )
    assert wait(lambda: carrying(a, [0, 1]) and carrying(b, [0, 1]))
    ends.exchange(listen, 5)
    assert set(a.stats().session.not_open) == {2}

    def link_2_in() -> int:
        return b.session.stats().endpoint.links[2].datagrams_received

    assert link_2_in() == 0
    absent.addresses = set()
    assert wait(lambda: not a.stats().session.not_open)
    assert wait(lambda: link_2_in() > 0)  # A's probes reach B on link 2
    assert wait(lambda: "link 2: open" in _notices(a))

    absent.addresses = {(host, a_ports[2])}
    for link in range(LINKS):
        a.session.close_link(link)
    assert wait(lambda: a.sessions == b.sessions == 2)
    assert wait(lambda: carrying(a, [0, 1]) and carrying(b, [0, 1]))
    assert set(a.stats().session.not_open) == {2}
    ends.exchange(listen, 5)
    assert a.stats().carried == 10


def test_a_session_never_established_is_not_replaced(tmp_path: Path, serving: Serving) -> None:
    """An initiator whose peer has not come yet (or whose links are all down) sees
    every link down after 300 ms (without a psk; with one, its links wait for the
    keys); it keeps its session, which goes on asking for the peer, instead of opening
    a new one every `reopen_after`."""
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    listen = f"127.0.0.1:{free_ports(1)[0]}"
    argv = ["--listen", listen, "--initiator", *link_flags(a_ports, b_ports)]
    a = serving.start(Relay(parse([*argv, "--reopen-after", "0.2"])))
    assert wait(lambda: "link 2 down" in _notices(a))
    time.sleep(1.0)  # before: a new session 0.2 s after the links went down, and again
    assert a.sessions == 1
    assert not a.established


def test_links_back_on_probation_keep_the_session(
    ends: Ends, tmp_path: Path, serving: Serving
) -> None:
    """Every link goes down (a NAT drops everything for 0.8 s), then comes back: on
    PROBATION first, which has no event, for 2 s (the second period: flap damping),
    longer than `reopen_after` (1.5 s). The peer is heard again, so the session is
    kept: no new session, and the links come back UP."""
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    listen = ("127.0.0.1", free_ports(1)[0])
    common = _common(tmp_path, "--reopen-after", "1.5")
    nat = Nat([("127.0.0.1", port) for port in b_ports])
    try:
        links_b = [f"--link=127.0.0.1:{port}=*:20M" for port in b_ports]
        links_a = [
            f"--link=127.0.0.1:{port}=127.0.0.1:{inside[1]}:20M"
            for port, inside in zip(a_ports, nat.inside, strict=True)
        ]
        b = serving.start(
            Relay(parse(["--forward", f"127.0.0.1:{ends.sink_port}", *links_b, *common]))
        )
        a = serving.start(
            Relay(parse(["--listen", f"127.0.0.1:{listen[1]}", "--initiator", *links_a, *common]))
        )
        assert wait(lambda: carrying(a) and carrying(b))
        ends.exchange(listen, 3)
        nat.paused = True
        assert wait(lambda: "link 2 down" in _notices(a) and "link 2 down" in _notices(b))
        time.sleep(0.8 - 0.3)
        nat.paused = False
        assert wait(
            lambda: all(ln.state is plait.LinkState.UP for ln in a.stats().session.endpoint.links)
        )
        assert a.sessions == b.sessions == 1
        ends.exchange(listen, 3)
    finally:
        serving.close()
        nat.close()


# --- the forward socket ----------------------------------------------------------------------


def test_the_forward_socket_takes_only_the_destination(
    ends: Ends, tmp_path: Path, serving: Serving
) -> None:
    """With ``--forward`` only, B's local socket is bound to the destination's side
    (127.0.0.1 here, not every address) and drops, and counts, what anyone else sends
    to it: none of it reaches A's application."""
    a, b, listen = _pair(ends, tmp_path, serving, ["127.0.0.1"] * LINKS)
    assert wait(lambda: carrying(a) and carrying(b))
    assert b.local_address[0] == "127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
        for i in range(5):
            stranger.sendto(b"stranger %d" % i, b.local_address)
    ends.exchange(listen, 10)  # the replies, and nothing before them, reach the source
    assert wait(lambda: b.stats().dropped_strangers == 5)
    assert b.stats().carried == 10
    ends.source.settimeout(0.2)
    with pytest.raises(TimeoutError):
        ends.source.recvfrom(65536)


def test_the_forward_side_is_where_the_kernel_sends_from() -> None:
    assert source_for(socket.AF_INET, ("127.0.0.1", 9)) == ("127.0.0.1", None)
    assert source_for(socket.AF_INET, ("127.0.0.53", 9)) == ("127.0.0.1", None)


# --- a second instance -------------------------------------------------------------------------


def _relay_command(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603  (this interpreter, our own command)
        [sys.executable, "-m", "plait", "relay", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def test_a_second_relay_on_the_same_ports_exits_2(tmp_path: Path, serving: Serving) -> None:
    """The same links (another listen port) or the same listen port: the second relay
    stops at once, with one line and status 2, instead of sharing the ports."""
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    listen = free_ports(2)
    links = link_flags(a_ports, b_ports)
    first = ["--listen", f"127.0.0.1:{listen[0]}", "--initiator", *links]
    serving.start(Relay(parse(first)))
    for argv, why in (
        (["--listen", f"127.0.0.1:{listen[1]}", "--initiator", *links], "link 0: cannot bind"),
        (first, "cannot bind the local address"),
    ):
        second = _relay_command(*argv, timeout=20.0)
        assert second.returncode == 2, second
        assert second.stderr.count("\n") == 1, second.stderr
        assert why in second.stderr
        assert "in use by another program" in second.stderr


# --- bad values ----------------------------------------------------------------------------------

UNBINDABLE = ["--listen", f"{ABSENT}:5000", "--link", "127.0.0.1:0=127.0.0.1:9:5M"]
"""A configuration that parses but cannot start (exit 2, "cannot bind the local
address"): a bad value that were not caught would end there, or run, not name itself."""


def _exit_2(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``plait relay ARGV`` here: it must exit 2 with one line; returns the line."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["relay", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    assert err.startswith("plait relay: error: "), err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (["--latency-ms", "inf"], "latency_ms must be > 0 and <= 60000, got inf"),
        (["--latency-ms", "nan"], "latency_ms"),
        (["--latency-ms", "-5"], "latency_ms"),
        (["--latency-ms", "1e300"], "latency_ms"),
        (["--stats-interval", "nan"], "stats_interval must be in"),
        (["--stats-interval", "inf"], "stats_interval must be in"),
        (["--stats-interval", "-1"], "stats_interval must be in"),
        (["--reopen-after", "nan"], "reopen_after must be in"),
        (["--reopen-after", "1e300"], "reopen_after must be in"),
        (["--busy-poll-us", "-1"], "busy_poll_us must be in"),
        (["--spin-us", "10000000000"], "spin_us must be in"),
        (["--cpu", "99"], "cpu 99 is not one this process may run on"),
        (["--cpu", "-1"], "cpu -1 is not one"),
        (["--mtu", "0"], "mtu"),
        (["--mtu", "x"], "argument --mtu: invalid int value: 'x'"),
        (["--latency-ms", "soon"], "argument --latency-ms"),
        (["--fec", "99:2"], "--fec: k must be in"),
        (["--stats-json", "/no/such/dir/stats.json"], "no directory '/no/such/dir'"),
        (["--stats-json", "/"], "is a directory"),
        (["--link", "127.0.0.1:0=127.0.0.1:9:" + "9" * 400 + "M"], "link 1: rate"),
        (["--link", "127.0.0.1:0=127.0.0.1:9:999G"], "above plait's maximum"),
        (["--link", "127.0.0.1:0=127.0.0.1:9@eth0/x:5M"], "is not an interface name"),
        (["--link", "127.0.0.1:0=127.0.0.1:9@averyveryverylongname:5M"], "interface name"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
    ],
    ids=lambda v: v if isinstance(v, str) else " ".join(v)[:40],
)
def test_a_bad_flag_is_one_line_and_exit_2(
    flags: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert why in _exit_2([*UNBINDABLE, *flags], capsys)


TOML_BASE = f'listen = "{ABSENT}:5000"\n'
TOML_LINK = '\n[[link]]\nlocal = "127.0.0.1:0"\nremote = "127.0.0.1:9"\nrate = "5M"\n'


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (b"latency_ms = inf\n", "latency_ms must be > 0"),
        (b"latency_ms = nan\n", "latency_ms must be > 0"),
        (b"latency_ms = 1e400\n", "latency_ms must be > 0"),
        (b"latency_ms = 99999999999999999999999\n", "latency_ms must be float"),
        (b"stats_interval = nan\n", "stats_interval must be in"),
        (b"reopen_after = inf\n", "reopen_after must be in"),
        (b"cpu = 99999999999999999999\n", "is not one this process may run on"),
        (b"busy_poll_us = -1\n", "busy_poll_us must be in"),
        (b"mtu = 99999999999999999999\n", "mtu"),
        (b'psk_file = "a\\u0000b"\n', "psk file"),
        (b'stats_json = "x\\u0000y.json"\n', "a NUL byte in the path"),
        (b'forward = "127.0.0.1\\u0000:9"\n', "is not host:port"),
        (b"latency_ms = 100\x00\n", "(at line 2, column 17)"),
        (b'forward = "127.0.0.1:9\x00"\n', "Illegal character"),
        (b"latency_ms = 100 # \xff\xfe\n", "not UTF-8 text"),
    ],
    ids=lambda v: repr(v)[:40],
)
def test_a_bad_toml_value_is_one_line_and_exit_2(
    text: bytes, why: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "relay.toml"
    path.write_bytes(TOML_BASE.encode() + text + TOML_LINK.encode())
    assert why in _exit_2(["--config", str(path)], capsys)


def test_a_bad_interface_in_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "relay.toml"
    path.write_text(TOML_BASE + TOML_LINK + 'interface = "eth0\\u0000x"\n', encoding="utf-8")
    assert "is not an interface name" in _exit_2(["--config", str(path)], capsys)


def _limit_memory() -> None:  # pragma: no cover  (runs in the child, before exec)
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def test_a_key_file_is_read_with_a_bound(tmp_path: Path) -> None:
    """``--psk-file /dev/zero`` is refused after 4 KiB, not read until the memory runs
    out (the child is limited to 1 GiB, so a regression fails instead of swapping);
    the same for a TOML file."""
    for flag in ("--psk-file", "--config"):
        done = subprocess.run(  # noqa: S603  (this interpreter, our own command)
            [sys.executable, "-m", "plait", "relay", *UNBINDABLE, flag, "/dev/zero"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
            preexec_fn=_limit_memory,
        )
        assert done.returncode == 2, done
        assert done.stderr.count("\n") == 1, done.stderr
        assert "'/dev/zero': larger than" in done.stderr


# --- signals -------------------------------------------------------------------------------------


def test_sighup_closes_the_session_like_sigterm(
    ends: Ends, tmp_path: Path, serving: Serving
) -> None:
    """SIGHUP (a closed terminal, ``kill -HUP``) stops the relay as SIGINT and SIGTERM
    do: CLOSE to the peer, the final stats, status 0."""
    a_ports, b_ports = free_ports(LINKS), free_ports(LINKS)
    common = _common(tmp_path)
    b = serving.start(
        Relay(
            parse(
                ["--forward", f"127.0.0.1:{ends.sink_port}", *link_flags(b_ports, a_ports), *common]
            )
        )
    )
    listen = free_ports(1)[0]
    argv = ["--listen", f"127.0.0.1:{listen}", "--initiator", *link_flags(a_ports, b_ports)]
    err = tmp_path / "a.err"
    with err.open("wb") as f:
        proc = subprocess.Popen(  # noqa: S603  (this interpreter, our own command)
            [sys.executable, "-m", "plait", "relay", *argv, *common], stderr=f, cwd=ROOT
        )
    try:
        # both ends: a CLOSE is sealed with the session's keys, which A has only then
        assert wait(lambda: b.established and "established" in err.read_text(), 30.0)
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(20.0) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert wait(lambda: "session closed by the peer (code 0)" in _notices(b))
    text = err.read_text()
    assert "plait relay: final stats after" in text
    assert "Traceback" not in text


def _open_writer(fifo: Path) -> int:
    """The FIFO's write end once a reader has it open, else -1 (ENXIO: no reader)."""
    try:
        return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno != errno.ENXIO:
            raise
        return -1


def test_a_signal_while_the_key_is_read_ends_it_cleanly(tmp_path: Path) -> None:
    """The key comes from a FIFO (a password manager behind ``<(...)``) that has not
    written yet: SIGINT, SIGTERM or SIGHUP then end the relay with status 0 and no
    traceback; nothing was opened."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        fifo = tmp_path / f"key-{sig}"
        os.mkfifo(fifo)
        argv = [*UNBINDABLE, "--psk-file", str(fifo)]
        proc = subprocess.Popen(  # noqa: S603  (this interpreter, our own command)
            [sys.executable, "-m", "plait", "relay", *argv],
            stderr=subprocess.PIPE,
            cwd=ROOT,
            text=True,
        )
        writer = -1
        try:
            end = time.monotonic() + 30.0
            while writer < 0:  # until the relay opens the FIFO to read the key
                writer = _open_writer(fifo)
                assert time.monotonic() < end
                assert proc.poll() is None
                time.sleep(0.02)
            time.sleep(0.1)  # now blocked in read(): nothing written
            proc.send_signal(sig)
            _, err = proc.communicate(timeout=20.0)
        finally:
            if writer >= 0:
                os.close(writer)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, (sig, err)
        assert err == "", (sig, err)
