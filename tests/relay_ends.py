"""What the relay tests share: free ports, link flags, the UDP ends of a relay pair
(a source talking to relay A's listen port, a sink relay B forwards to), and whether a
relay's links all carry data yet."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterable

from plait import LinkState
from plait_adapters.relay import Relay
from tests.adapter_pairs import free_ports

__all__ = ["LINKS", "PSK", "Ends", "all_carrying", "carrying", "free_ports", "link_flags"]

LINKS = 3
PSK = bytes(range(100, 132))
"""A fixed key: the tests need one, not a secret one."""


def link_flags(mine: list[int], theirs: list[int], rate: str = "20M") -> list[str]:
    out = []
    for a, b in zip(mine, theirs, strict=True):
        out += ["--link", f"127.0.0.1:{a}=127.0.0.1:{b}:{rate}"]
    return out


def carrying(relay: Relay, links: Iterable[int] = range(LINKS)) -> bool:
    """The session is established and each of `links` carries data (UP or DEGRADED).
    A responder that waited for its peer may hold its links on probation for 2 s first
    (issue 14); a test that exchanges datagrams at once would depend on that timing."""
    states = [ln.state for ln in relay.session.stats().endpoint.links]
    return relay.established and all(states[i] >= LinkState.DEGRADED for i in links)


def all_carrying(err: str) -> bool:
    """The last status line in `err` shows every link carrying."""
    lines = [line for line in err.splitlines() if " | " in line]
    states = re.findall(r"\d+:(\w+) ", lines[-1].split(" | ")[1]) if lines else []
    return len(states) == LINKS and all(st in {"UP", "DEGRADED"} for st in states)


class Ends:
    """A UDP source (talks to relay A's listen port) and a sink (relay B forwards to it)."""

    def __init__(self) -> None:
        self.source = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.source.bind(("127.0.0.1", 0))
        self.sink.bind(("127.0.0.1", 0))
        self.source.settimeout(5.0)
        self.sink.settimeout(5.0)
        self.sink_port = self.sink.getsockname()[1]

    def exchange(self, listen: tuple[str, int], count: int) -> None:
        """`count` datagrams of mixed sizes to the sink and a reply to each: both arrive
        intact, in order (one at a time, so in order is what UDP itself would give)."""
        for i in range(count):
            data = i.to_bytes(4, "big") * (1 + (i * 37) % 2000)
            self.source.sendto(data, listen)
            got, relay_b = self.sink.recvfrom(65536)
            assert got == data
            self.sink.sendto(b"reply " + data[:8], relay_b)
            back, relay_a = self.source.recvfrom(65536)
            assert back == b"reply " + data[:8]
            assert relay_a == listen  # replies come from the relay's listen address

    def close(self) -> None:
        self.source.close()
        self.sink.close()
