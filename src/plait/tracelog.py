"""Per-event traces as JSON lines: written by ``plait demo --trace`` (the simulator) and
``plait relay --trace`` (real links), drawn by ``plait plot``.

One JSON object per line. The first is a header; every other has ``t`` (ns, the
writer's clock: virtual in the simulator, CLOCK_MONOTONIC in the relay) and ``ev``:

==============  ================================================================
``ev``          fields
==============  ================================================================
``delivered``   ``latency`` (ns), ``dir`` (the sending side, 0 = A->B; left out
                when unknown): a message arrived whole and in time; it was sent
                at ``t - latency``
``expired``     ``dir``, ``sent`` (ns, or null if unknown), ``where`` (``sending``:
                it never left in full; ``receiving``: it did not arrive in time)
``bytes``       ``dir``, ``link``, ``bytes``: datagram bytes on a link: one datagram,
                or (with ``span``, ns) all of the ``span`` before ``t``
``link``        ``side``, ``link``, ``state`` (``DOWN``, ``DEGRADED``, ``UP``):
                what that side's endpoint reported
``outage``      ``link`` (-1: all), ``start`` (true/false): a scripted outage
``session``     ``side``, ``what`` (``established``, ``closed``)
==============  ================================================================

The header: ``{"trace": "plait", "version": 1, "source": "sim" | "relay", "title":
..., "links": N, "budget_ns": the deadline budget, "t0": the first time}``. Readers
skip kinds they do not know, so new kinds can be added without a new version.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final, TextIO

from plait.sim.trace import Record

__all__ = ["VERSION", "TraceError", "from_sim", "read", "write"]

VERSION: Final = 1
_LINK_EVENTS: Final = {"LinkDown": "DOWN", "LinkDegraded": "DEGRADED", "LinkUp": "UP"}
_SESSION_EVENTS: Final = {"SessionEstablished": "established", "SessionClosed": "closed"}


class TraceError(ValueError):
    """A file that is not a plait trace (or a version this plait cannot read)."""


def header(source: str, title: str, links: int, budget_ns: int, t0: int) -> dict[str, Any]:
    return {
        "trace": "plait",
        "version": VERSION,
        "source": source,
        "title": title,
        "links": links,
        "budget_ns": budget_ns,
        "t0": t0,
    }


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def from_sim(
    records: Iterable[tuple[object, ...]],
    deliveries: Iterable[tuple[int, int]],
    *,
    title: str,
    links: int,
    budget_ns: int,
    t0: int,
) -> Iterator[dict[str, Any]]:
    """A trace from a simulator run with ``trace_limit`` (`SimResult.trace` and
    `SimResult.deliveries`): the header, then one record per message delivered or
    expired, datagram sent, link or session event, and outage edge, in time order.

    Latencies come from the checker, which reads each message's send time from its
    payload (`SimResult.deliveries`, without direction: ``dir`` is left out). The
    endpoint numbers a message when it first leaves, so a send and its delivery cannot
    be paired from the trace's message numbers alone; an expired message's ``sent`` is
    therefore null (drawn at its deadline less the budget)."""
    yield header("sim", title, links, budget_ns, t0)
    done = sorted((t0 + sent + latency, latency) for sent, latency in deliveries)
    i = 0
    for record in records:  # (kind name, time, a, b, c, d, blob as hex): see sim.trace
        kind, t = record[0], _int(record[1])
        a, b, c, d = (_int(x) for x in record[2:6])
        while i < len(done) and done[i][0] <= t:
            yield {"t": done[i][0], "ev": "delivered", "latency": done[i][1]}
            i += 1
        if kind == Record.EXPIRED.name:
            yield {
                "t": t,
                "ev": "expired",
                "dir": a if d else 1 - a,
                "sent": None,
                "where": "sending" if d else "receiving",
            }
        elif kind == Record.NET.name:
            size = len(record[6]) // 2 if isinstance(record[6], str) else 0
            yield {"t": t, "ev": "bytes", "dir": a, "link": b, "bytes": size}
        elif kind == Record.OUTAGE.name:
            yield {"t": t, "ev": "outage", "link": a, "start": bool(c)}
        elif kind == Record.EVENT.name:
            yield from _event(t, a, record[6])
    for when, latency in done[i:]:
        yield {"t": when, "ev": "delivered", "latency": latency}


def _event(t: int, side: int, blob: object) -> Iterator[dict[str, Any]]:
    text = bytes.fromhex(blob).decode() if isinstance(blob, str) else ""
    name, _, rest = text.partition("(")
    if name in _LINK_EVENTS:
        link = int(rest.split("=", 1)[1].rstrip(")")) if "=" in rest else -1
        yield {"t": t, "ev": "link", "side": side, "link": link, "state": _LINK_EVENTS[name]}
    elif name in _SESSION_EVENTS:
        yield {"t": t, "ev": "session", "side": side, "what": _SESSION_EVENTS[name]}


def write(out: TextIO, records: Iterable[dict[str, Any]]) -> int:
    """Write `records` as JSON lines; returns how many."""
    n = 0
    for n, record in enumerate(records, 1):  # noqa: B007  (n is the count)
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
    return n


def read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the records of a trace file.

    Raises:
        TraceError: not a plait trace, a version this plait does not read, or a line
            that is not JSON.
        OSError: the file cannot be read.
    """
    with path.open(encoding="utf-8") as f:
        lines = iter(f)
        try:
            head = json.loads(next(lines, "null"))
        except json.JSONDecodeError as exc:
            raise TraceError(f"{path}: not a plait trace (line 1: {exc.msg})") from None
        if not isinstance(head, dict) or head.get("trace") != "plait":
            raise TraceError(f"{path}: not a plait trace (no header)")
        if head.get("version") != VERSION:
            raise TraceError(f"{path}: trace version {head.get('version')}; this plait reads 1")
        records = []
        for number, line in enumerate(lines, 2):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TraceError(f"{path}: line {number}: {exc.msg}") from None
            if isinstance(record, dict) and isinstance(record.get("t"), int):
                records.append(record)
    return head, records
