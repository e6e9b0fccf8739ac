"""Logging (issue 17): the adapters turn the core's events and counters into stdlib
`logging` records under ``plait.``; drops are rate-limited; the core logs nothing.

Two adapter `Session`s are driven in memory on a virtual clock (the runtime's part,
sockets and timers, is what every adapter adds around them), so the records are exact."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

import plait
from plait import demo
from plait_adapters._links import LinkSpec, clock
from plait_adapters._log import DROP_LOG_INTERVAL_NS
from plait_adapters._session import Session

MS = 1_000_000
LINKS = 3
SRC = Path(__file__).resolve().parent.parent / "src" / "plait"


class _Pair:
    """Two sessions over `LINKS` in-memory links; `cut` links drop everything."""

    def __init__(self) -> None:
        cfg = plait.Config(links=[plait.LinkConfig()] * LINKS, psk=bytes(range(32)))
        specs = [LinkSpec(("127.0.0.1", 7000 + i), ("127.0.0.1", 8000 + i)) for i in range(3)]
        self.a = Session(cfg, specs, initiator=True, runtime="mem")
        self.b = Session(cfg, specs, initiator=False, runtime="mem")
        self.now = clock()
        self.cut: set[int] = set()

    def run(self, ms: int) -> None:
        for _ in range(ms):
            for src, dst in ((self.a, self.b), (self.b, self.a)):
                for datagram, link in src.service(self.now):
                    if link not in self.cut:
                        dst.feed(link, datagram, self.now)
                src.events()
                src.deadline()  # arms the timer `service` handles when it is due
            self.now += MS


@pytest.fixture
def pair(caplog: pytest.LogCaptureFixture) -> _Pair:
    caplog.set_level(logging.DEBUG, logger="plait")
    return _Pair()


def _messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


def test_session_start_and_end_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="plait")
    pair = _Pair()
    opening = _messages(caplog, "plait.session")
    assert opening == [
        (logging.INFO, "session opening: initiator, 3 links (mem)"),
        (logging.INFO, "session opening: responder, 3 links (mem)"),
    ]
    pair.run(50)
    assert pair.a.established
    assert pair.b.established
    sid = pair.a.endpoint.stats().session
    established = f"session {sid:#010x} established (mem)"
    assert _messages(caplog, "plait.session")[2:4] == [(logging.INFO, established)] * 2
    for datagram, link in pair.a.close(pair.now):  # CLOSE (nothing to linger for)
        pair.b.feed(link, datagram, pair.now)
    pair.run(200)
    ended = _messages(caplog, "plait.session")[4:]
    assert (
        logging.INFO,
        f"session {sid:#010x} ended: application, by this end (code 0, mem)",
    ) in ended
    assert (
        logging.INFO,
        f"session {sid:#010x} ended: application, by the peer (code 0, mem)",
    ) in ended


def test_a_handshake_timeout_is_a_warning_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="plait")
    pair = _Pair()
    pair.cut = set(range(LINKS))  # nobody hears anybody
    pair.run(6_000)  # Config.handshake_timeout_ns: 5 s
    records = _messages(caplog, "plait.session")
    assert (
        logging.WARNING,
        "session (not established) ended: handshake timeout, by this end (code 0, mem)",
    ) in records


def test_link_state_changes(pair: _Pair, caplog: pytest.LogCaptureFixture) -> None:
    pair.run(200)
    pair.cut = {1}
    pair.run(1_000)
    sid = pair.a.endpoint.stats().session
    down = (logging.WARNING, f"link 1 down (session {sid:#010x}, mem)")
    assert down in _messages(caplog, "plait.link")
    pair.cut = set()
    pair.run(5_000)
    assert (logging.INFO, f"link 1 up (session {sid:#010x}, mem)") in _messages(
        caplog, "plait.link"
    )
    assert all(
        f"link {i} down" not in m for _, m in _messages(caplog, "plait.link") for i in (0, 2)
    )


def test_drops_are_logged_by_reason_at_most_once_per_interval(
    pair: _Pair, caplog: pytest.LogCaptureFixture
) -> None:
    b = pair.b
    now = pair.now
    for _ in range(5):
        b.feed(0, b"\x21junk", now)  # 5 bytes: not even a header
    b.service(now + DROP_LOG_INTERVAL_NS)
    drops = _messages(caplog, "plait.drops")
    assert drops == [(logging.INFO, "datagrams dropped: 5 (malformed: truncated header 5)")]
    for _ in range(1000):  # a flood right after: no record until the interval has passed
        b.feed(0, b"\x21junk", now)
        b.service(now + DROP_LOG_INTERVAL_NS + 1)
    assert len(_messages(caplog, "plait.drops")) == 1
    b.service(now + 2 * DROP_LOG_INTERVAL_NS)
    assert _messages(caplog, "plait.drops")[1:] == [
        (logging.INFO, "datagrams dropped: 1000 (malformed: truncated header 1000)")
    ]
    b.service(now + 3 * DROP_LOG_INTERVAL_NS)  # nothing new: nothing said
    assert len(_messages(caplog, "plait.drops")) == 2


def test_socket_errors_are_warnings(pair: _Pair, caplog: pytest.LogCaptureFixture) -> None:
    def refused(data: bytes) -> object:
        raise ConnectionRefusedError(111, "refused")

    pair.a.transmit([(b"x", 0), (b"y", 0)], [refused] * LINKS)
    pair.a.service(pair.now + DROP_LOG_INTERVAL_NS)
    assert (logging.WARNING, "socket errors: 2 (send: ECONNREFUSED 2)") in _messages(
        caplog, "plait.drops"
    )


def test_the_core_never_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    report = demo.demo("flap", seed=1, duration_s=1.0)
    assert report.result.ok
    assert caplog.records == []
    uses = [
        path.relative_to(SRC)
        for path in sorted(SRC.rglob("*.py"))
        if re.search(r"^\s*(import logging|from logging)", path.read_text(), re.M)
    ]
    assert uses == []
