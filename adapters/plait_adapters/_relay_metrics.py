"""``plait relay --metrics-listen HOST:PORT``: live metrics for Prometheus.

A scrape of ``http://HOST:PORT/metrics`` reads one `RelayStats` snapshot and renders it
(`RelayCollector`); nothing is kept between scrapes, and the relay does no work for
metrics between them. The HTTP server, the exposition format (text 0.0.4, or
OpenMetrics when the scraper asks) and its escaping are prometheus-client's, the
well-kept client library (docs/design.md says why not by hand): an optional
dependency, ``pip install 'plait[metrics]'``, checked when the flags are read.

Names follow Prometheus' conventions: a ``plait_`` prefix, base units (seconds, bytes,
ratios), ``_total`` on counters, one ``link`` label per link. Per link: state (one
series per state, 1 for the current one), RTT, loss, estimated capacity, queue delay,
path MTU, bytes and datagrams each way. Per session: messages sent, delivered and
expired, re-sends, FEC (parity sent, packets rebuilt, blocks lost, k and m), drops by
reason, the usable rate. Per relay: local datagrams carried, emitted and dropped by
reason, sessions opened. Session counters start again at 0 with each new session
(Prometheus' ``rate()`` reads that as a counter reset).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

import plait
from plait_adapters._links import Address
from plait_adapters._relay_report import RelayStats

__all__ = ["MetricsServer", "RelayCollector"]

_NS: Final = 1e-9
_STATES: Final = tuple(state.name for state in plait.LinkState)


def _gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=list(labels))


def _counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


class RelayCollector:
    """Renders `stats()` (a relay's snapshot) as metric families, at each scrape."""

    def __init__(self, stats: Callable[[], RelayStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        r = self._stats()
        yield from self._links(r.session.endpoint)
        yield from self._session(r.session.endpoint)
        yield from self._relay(r)

    @staticmethod
    def _links(ep: plait.Stats) -> Iterator[Metric]:
        link = ("link",)
        state = _gauge("plait_link_state", "1 for the link's current state", ("link", "state"))
        rtt = _gauge("plait_link_rtt_seconds", "smoothed round-trip time", link)
        loss = _gauge("plait_link_loss_ratio", "outbound loss (fraction) from the peer", link)
        capacity = _gauge(
            "plait_link_capacity_bytes_per_second",
            "what the link is estimated to carry now, IP headers in (its pacing rate)",
            link,
        )
        queue = _gauge("plait_link_queue_delay_seconds", "one-way delay above its minimum", link)
        mtu = _gauge("plait_link_mtu_bytes", "path MTU in use (IP bytes)", link)
        flows = {
            (kind, way): _counter(f"plait_link_{way}_{kind}", f"{kind} {way} on the link", link)
            for kind in ("bytes", "datagrams")
            for way in ("sent", "received")
        }
        for ln in ep.links:
            name = str(ln.link)
            for st in _STATES:
                state.add_metric([name, st], 1.0 if ln.state.name == st else 0.0)
            rtt.add_metric([name], ln.srtt_ns * _NS)
            loss.add_metric([name], ln.loss)
            capacity.add_metric([name], ln.capacity_bps / 8)
            queue.add_metric([name], ln.queue_delay_ns * _NS)
            mtu.add_metric([name], ln.pmtu)
            flows["bytes", "sent"].add_metric([name], ln.bytes_sent)
            flows["bytes", "received"].add_metric([name], ln.bytes_received)
            flows["datagrams", "sent"].add_metric([name], ln.datagrams_sent)
            flows["datagrams", "received"].add_metric([name], ln.datagrams_received)
        yield from (state, rtt, loss, capacity, queue, mtu, *flows.values())

    @staticmethod
    def _session(ep: plait.Stats) -> Iterator[Metric]:
        est = _gauge("plait_session_established", "1 while the session is established")
        est.add_metric([], 1.0 if ep.established else 0.0)
        usable = _gauge(
            "plait_session_usable_rate_bytes_per_second",
            "message bytes per second the links carry now (after loss, headers, parity)",
        )
        usable.add_metric([], ep.usable_rate_bps / 8)
        sent = _counter("plait_messages_sent", "messages handed to the session")
        sent.add_metric([], ep.messages_sent)
        delivered = _counter("plait_messages_delivered", "messages from the peer delivered")
        delivered.add_metric([], ep.messages_delivered)
        expired = _counter("plait_messages_expired", "messages past their deadline", ("side",))
        expired.add_metric(["sending"], ep.messages_expired_sending)
        expired.add_metric(["receiving"], ep.messages_expired_receiving)
        repairs = _counter("plait_repairs", "records re-sent after a loss or a link failure")
        repairs.add_metric([], ep.repairs)
        drops = _counter("plait_dropped_datagrams", "inbound datagrams refused", ("reason",))
        for reason, n in sorted(ep.drops.items()):
            drops.add_metric([reason], n)
        yield from (est, usable, sent, delivered, expired, repairs, drops)
        if ep.planned_loss is not None:
            planned = _gauge(
                "plait_planned_loss_ratio",
                "the share of messages the protection plan expects to lose (0-1)",
            )
            planned.add_metric([], ep.planned_loss)
            yield planned
        fec = ep.fec
        if fec is None:
            return
        k = _gauge("plait_fec_k", "records per FEC block (at most)")
        k.add_metric([], fec.k)
        m = _gauge("plait_fec_m", "parity packets per FEC block (at most)")
        m.add_metric([], fec.m)
        parity = _counter("plait_fec_parity_sent", "FEC parity packets sent")
        parity.add_metric([], fec.parity_sent)
        rebuilt = _counter("plait_fec_recovered", "lost packets rebuilt from parity")
        rebuilt.add_metric([], fec.recovered)
        lost = _counter("plait_fec_blocks_lost", "FEC blocks that could not be rebuilt")
        lost.add_metric([], fec.blocks_lost)
        yield from (k, m, parity, rebuilt, lost)

    @staticmethod
    def _relay(r: RelayStats) -> Iterator[Metric]:
        carried = _counter("plait_relay_carried_datagrams", "local datagrams handed to plait")
        carried.add_metric([], r.carried)
        emitted = _counter("plait_relay_emitted_datagrams", "peer messages sent locally")
        emitted.add_metric([], r.emitted)
        dropped = _counter(
            "plait_relay_dropped_datagrams", "local datagrams dropped by the relay", ("reason",)
        )
        dropped.add_metric(["send_buffer_full"], r.dropped_full)
        dropped.add_metric(["no_destination"], r.dropped_no_destination)
        dropped.add_metric(["not_from_forward"], r.dropped_strangers)
        dropped.add_metric(["local_socket_error"], r.local_errors)
        sessions = _counter("plait_relay_sessions", "sessions opened")
        sessions.add_metric([], r.sessions)
        yield from (carried, emitted, dropped, sessions)


class MetricsServer:
    """An HTTP server on its own threads answering ``GET /metrics`` with `stats()`
    rendered, plus the process' CPU and memory (``process_*``). Raises `OSError` if
    `address` cannot be bound."""

    def __init__(self, address: Address, stats: Callable[[], RelayStats]) -> None:
        registry = CollectorRegistry()
        registry.register(RelayCollector(stats))
        ProcessCollector(registry=registry)
        self._server, self._thread = start_http_server(address[1], address[0], registry)

    @property
    def address(self) -> Address:
        host, port = self._server.server_address[:2]
        return (str(host), int(port))

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)
