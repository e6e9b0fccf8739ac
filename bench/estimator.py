"""The capacity estimator's cost: `plait.capacity.Capacity` per peer report, against
aioquic's CUBIC congestion controller fed the same datagrams, in the same run.

A report covers `PER_REPORT` datagrams (10 ms of a 10 Mbit/s link at 1228 bytes each);
plait books each datagram (`on_sent`) and folds in one report (`on_report`); aioquic
books each (`on_packet_sent`) and acknowledges each (`on_packet_acked`) plus one RTT
sample, which is what its recovery does per ACK frame. The steady state alternates
between growing, holding and cutting: the model link's rate moves every 200 reports.

    python3 dev.py bench estimator     # writes bench/results/estimator.json
"""

from __future__ import annotations

import sys
from pathlib import Path

from aioquic.quic.congestion.cubic import CubicCongestionControl
from aioquic.quic.packet import QuicPacketType
from aioquic.quic.packet_builder import QuicSentPacket
from aioquic.tls import Epoch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import measure, write_json

from plait.capacity import Capacity

PER_REPORT = 10
SIZE = 1228
MS = 1_000_000


class _PlaitLoop:
    """A Capacity fed a model bottleneck whose rate moves (so every branch is taken)."""

    def __init__(self) -> None:
        self.cap = Capacity(None, 0)
        self.now = 0
        self.arrived = 0.0  # the bottleneck's clock, ns
        self.reports = 0

    def step(self) -> None:
        cap, now = self.cap, self.now
        rate = (2_000_000, 8_000_000, 4_000_000)[(self.reports // 200) % 3]
        gap = SIZE * 8 * 1_000_000_000 // max(cap.rate_bps, 1)
        for _ in range(PER_REPORT):
            cap.on_sent(SIZE, now)
            self.arrived = max(self.arrived, now + 20 * MS) + SIZE * 8e9 / rate
            now += gap
        top = cap.sent - 1
        rx_us = int(self.arrived) // 1000 & 0xFFFF_FFFF
        cap.on_report(top, cap.sent, rx_us, 500, 40 * MS, now)
        self.now = now
        self.reports += 1


class _CubicLoop:
    """aioquic's CUBIC: the same datagrams sent and acknowledged, one RTT sample."""

    def __init__(self) -> None:
        self.cc = CubicCongestionControl(max_datagram_size=SIZE)
        self.now = 0.0
        self.pn = 0

    def step(self) -> None:
        cc, now = self.cc, self.now
        packets = []
        for _ in range(PER_REPORT):
            packet = QuicSentPacket(
                epoch=Epoch.ONE_RTT,
                in_flight=True,
                is_ack_eliciting=True,
                is_crypto_packet=False,
                packet_number=self.pn,
                packet_type=QuicPacketType.ONE_RTT,
                sent_time=now,
                sent_bytes=SIZE,
            )
            self.pn += 1
            cc.on_packet_sent(packet=packet)
            packets.append(packet)
            now += 0.001
        for packet in packets:
            cc.on_packet_acked(now=now, packet=packet)
        cc.on_rtt_measurement(now=now, rtt=0.04)
        self.now = now


def main() -> None:
    plait_loop, cubic_loop = _PlaitLoop(), _CubicLoop()
    a = measure(plait_loop.step, batch=100, repeats=300)
    b = measure(cubic_loop.step, batch=100, repeats=300)
    ratio = a["median_ns"] / b["median_ns"]
    print(f"per report of {PER_REPORT} datagrams   median ns   p99 ns")
    print(f"  plait Capacity            {a['median_ns']:9.0f} {a['p99_ns']:8.0f}")
    print(f"  aioquic CUBIC             {b['median_ns']:9.0f} {b['p99_ns']:8.0f}")
    print(f"  ratio plait / aioquic     {ratio:9.2f}")
    payload = {
        "unit": f"ns per report of {PER_REPORT} datagrams (the model link's own cost included)",
        "plait": a,
        "aioquic_cubic": b,
        "ratio": round(ratio, 2),
    }
    print(f"wrote {write_json('estimator', payload)}")


if __name__ == "__main__":
    main()
