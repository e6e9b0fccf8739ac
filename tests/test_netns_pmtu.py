"""``plait relay`` finds each link's path MTU on real sockets (`plait.pmtu`).

Two namespaces joined by two veth pairs; pair 1's MTU is 1400, pair 0's the usual
1500. The relays run with their defaults (no ``--mtu``: 1500 is the bound) and a psk::

    ns A                                    ns B
    source -> relay A ==veth 0 (1500)==> relay B -> sink
                      ==veth 1 (1400)==>

A 2 Mbit/s stream of 1316-byte datagrams (video's) runs for `SECONDS`. Link sockets
send with don't-fragment and without the kernel's path MTU cache, so a probe larger
than veth 1 is refused by the kernel (EMSGSIZE, counted as a send error) instead of
being fragmented into a false success. The test asserts that relay A settles at 1500
and 1400, that every datagram arrives once and intact, that no send failed but the
probes', and that the stream's datagrams went whole (one DATA record each) once the
search was over. Needs root and ``ip``; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Final

from tests.netns_setup import PSK, Procs, ip, shaped_namespaces

SECONDS: Final = 5.0
STREAM_BPS: Final = 2_000_000
SIZE: Final = 1316
MTUS: Final = (1500, 1400)


def test_relay_finds_each_links_path_mtu(tmp_path: Path) -> None:
    with shaped_namespaces(len(MTUS), lambda i: ("pfifo",)) as (ns_a, ns_b):
        for i, mtu in enumerate(MTUS):
            ip(ns_a, "link", "set", f"pa{i}", "mtu", str(mtu))
            ip(ns_b, "link", "set", f"pb{i}", "mtu", str(mtu))
        key = tmp_path / "plait.key"
        key.write_text(PSK.hex(), encoding="ascii")
        relay = ["-m", "plait", "relay", "--psk-file", str(key), "--stats-interval", "1"]
        links_a = [a for i in range(2) for a in ("--link", f"10.77.{i}.1:7000=10.77.{i}.2:7000")]
        links_b = [a for i in range(2) for a in ("--link", f"10.77.{i}.2:7000=10.77.{i}.1:7000")]
        procs = Procs(tmp_path)
        try:
            helper = ["-m", "tests.impair"]
            procs.start("sink", ns_b, [*helper, "sink", "--bind", "127.0.0.1:9000"])
            procs.start(
                "relay_b", ns_b, [*relay, *links_b, "--forward", "127.0.0.1:9000", "--once"]
            )
            log_a = tmp_path / "relay_a.jsonl"
            a_args = [*links_a, "--listen", ":5000", "--initiator", "--stats-log", str(log_a)]
            procs.start("relay_a", ns_a, [*relay, *a_args])
            procs.wait_for("relay_a", "established", 20.0)
            for name in ("relay_a", "relay_b"):
                procs.wait_carrying(name, range(len(MTUS)), 20.0)
            # the stream starts once the search has found both paths (it takes a few
            # RTTs, longer on a loaded machine, where a stream started at once had up
            # to 4 % of its datagrams cut in two while it settled)
            procs.wait_until("relay_a", lambda: _pmtus(log_a) == list(MTUS), "settled", 20.0)
            stream = ["--to", "127.0.0.1:5000", "--rate-bps", str(STREAM_BPS), "--size", str(SIZE)]
            procs.start("source", ns_a, [*helper, "source", *stream, "--seconds", str(SECONDS)])
            assert procs.procs["source"].wait(SECONDS + 10.0) == 0, procs.err("source")
            assert procs.stop("relay_a") == 0, procs.err("relay_a")
            assert procs.procs["relay_b"].wait(10.0) == 0, procs.err("relay_b")
            assert procs.stop("sink", signal.SIGTERM) == 0, procs.err("sink")
        finally:
            procs.kill_all()
        load = procs.load()
    session = load["relay_a"]["session"]
    links = session["endpoint"]["links"]
    assert [ln["pmtu"] for ln in links] == list(MTUS), links
    assert [ln["pmtu_state"] for ln in links] == ["SEARCH_COMPLETE"] * 2
    # only probes failed to leave: veth 1 refuses what is bigger than 1400 (DF set);
    # (a HELLO that came before relay B's sockets were open may be refused: recv errors)
    sends = {k for k in session["errors"] if k.startswith("send")}
    assert sends <= {"send: EMSGSIZE"}, session["errors"]
    assert session["errors"].get("send: EMSGSIZE", 0) <= links[1]["pmtu_probes"]
    sent, sink = load["source"]["sent"], load["sink"]
    assert sink["received"] == sent
    assert sink["corrupt"] == sink["duplicates"] == sink["reordered"] == 0
    endpoint = session["endpoint"]
    assert endpoint["payload_size"] >= SIZE  # a video datagram goes whole on both links
    # the stream started after the search: one DATA record per datagram
    assert endpoint["records_sent"] == endpoint["messages_sent"]


def _pmtus(log: Path) -> list[int]:
    """Each link's path MTU in the last line of relay A's --stats-log (none yet: [])."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    if not lines:
        return []
    return [ln["pmtu"] for ln in json.loads(lines[-1])["links"]]
