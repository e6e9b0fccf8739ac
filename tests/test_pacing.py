"""plait.pacing: exact serialization times, and a bottleneck queue that never builds."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plait.errors import ConfigError
from plait.pacing import Pacer


def test_tx_time_counts_ip_and_udp_headers() -> None:
    assert Pacer(10_000_000).tx_ns(1200) == 982_400  # (1200 + 28) * 8 / 10 Mbps
    assert Pacer(2_000_000, overhead=48).tx_ns(1200) == 4_992_000
    assert Pacer(3_000_000, overhead=0).tx_ns(1) == 2_667  # rounded up, never down


def test_back_to_back_spacing_after_the_burst() -> None:
    p = Pacer(10_000_000, overhead=0, burst_ns=0, now=0)
    assert [p.reserve(1250, now=0) for _ in range(4)] == [0, 1_000_000, 2_000_000, 3_000_000]
    assert p.backlog_ns(0) == 4_000_000
    assert not p.ready(3_999_999)
    assert p.ready(4_000_000)
    assert p.next_release(0) == 4_000_000


def test_idle_credit_is_capped_at_the_burst() -> None:
    p = Pacer(10_000_000, overhead=0, burst_ns=2_000_000, now=0)
    releases = [p.reserve(1250, now=10_000_000_000) for _ in range(4)]
    t = 10_000_000_000
    # 2 ms of credit: three 1 ms datagrams leave together, the third then waits 2 ms in
    # the bottleneck queue, which is exactly the burst bound
    assert releases == [t, t, t, t + 1_000_000]


def test_rate_change_applies_to_the_next_reservation() -> None:
    p = Pacer(10_000_000, overhead=0, burst_ns=0)
    p.reserve(1250, now=0)
    p.set_rate(5_000_000)
    assert p.reserve(1250, now=0) == 1_000_000
    assert p.reserve(1250, now=0) == 3_000_000


def test_bad_parameters() -> None:
    with pytest.raises(ConfigError):
        Pacer(0)
    with pytest.raises(ConfigError):
        Pacer(1_000_000, burst_ns=-1)
    with pytest.raises(ConfigError):
        Pacer(1_000_000).set_rate(-5)


@given(
    rate=st.integers(100_000, 100_000_000),
    burst=st.integers(0, 5_000_000),
    overhead=st.sampled_from([0, 28, 48]),
    sends=st.lists(st.tuples(st.integers(0, 3_000_000), st.integers(1, 1400)), max_size=200),
)
def test_a_bottleneck_at_the_link_rate_never_queues_more_than_the_burst(
    rate: int, burst: int, overhead: int, sends: list[tuple[int, int]]
) -> None:
    """Feed the release times into a FIFO that drains at exactly the link rate: no
    datagram waits in it longer than the burst allowance (plus 1 ns of rounding each)."""
    pacer = Pacer(rate, overhead=overhead, burst_ns=burst, now=0)
    now = 0
    free_at = 0.0  # when the bottleneck finishes its current datagram
    last_release = 0
    for gap, size in sends:
        now += gap
        release = pacer.reserve(size, now)
        assert release >= now
        assert release >= last_release
        last_release = release
        exact_tx = (size + overhead) * 8 * 10**9 / rate
        start = max(release, free_at)
        assert start - release <= burst + len(sends)  # the queueing delay
        free_at = start + exact_tx


@given(st.integers(100_000, 100_000_000), st.integers(1, 1400))
def test_saturated_throughput_is_the_rate(rate: int, size: int) -> None:
    pacer = Pacer(rate, overhead=28, burst_ns=0, now=0)
    releases = [pacer.reserve(size, 0) for _ in range(1000)]
    bits = 999 * (size + 28) * 8
    achieved = bits * 10**9 / (releases[-1] - releases[0])
    assert rate * 0.999 <= achieved <= rate
