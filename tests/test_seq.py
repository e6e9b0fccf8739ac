"""plait.seq: serial arithmetic, unwrapping across the wrap, and the receive window
checked against a plain model (a Python set of unwrapped numbers)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from plait.errors import ConfigError
from plait.seq import SEQ16, SEQ32, ReceiveWindow, SerialSpace, Verdict

spaces = st.sampled_from([SEQ16, SEQ32, SerialSpace(8), SerialSpace(2)])


def _near_wrap(space: SerialSpace) -> st.SearchStrategy[int]:
    """Unwrapped values whose wire form is close below a multiple of the modulus."""
    return st.builds(
        lambda laps, back: laps * space.modulus - back,
        st.integers(0, 3),
        st.integers(1, min(space.half, 300)),
    )


@given(spaces, st.data())
def test_diff_inverts_add(space: SerialSpace, data: st.DataObject) -> None:
    a = data.draw(st.integers(0, space.mask))
    n = data.draw(st.integers(-space.half, space.half - 1))
    assert space.diff(space.add(a, n), a) == n
    assert space.lt(a, space.add(a, n)) == (n > 0)


@given(spaces, st.data())
def test_lt_is_antisymmetric_below_half(space: SerialSpace, data: st.DataObject) -> None:
    a = data.draw(st.integers(0, space.mask))
    b = data.draw(st.integers(0, space.mask))
    if (a - b) % space.modulus != space.half:
        assert space.lt(a, b) == (space.diff(a, b) < 0)
        assert not (space.lt(a, b) and space.lt(b, a))


@pytest.mark.parametrize("space", [SEQ16, SEQ32])
def test_exact_half_is_before_both_ways_and_never_lt(space: SerialSpace) -> None:
    assert space.diff(0, space.half) == space.diff(space.half, 0) == -space.half
    assert not space.lt(0, space.half)
    assert not space.lt(space.half, 0)


def test_wrap_edges() -> None:
    assert SEQ16.lt(0xFFFF, 0)
    assert SEQ16.diff(0, 0xFFFF) == 1
    assert SEQ32.lt(0xFFFF_FFFF, 5)
    assert SEQ32.add(0xFFFF_FFFF, 1) == 0
    assert SEQ16.unwrap(0, expected=0xFFFF) == 0x1_0000
    assert SEQ16.unwrap(0xFFFF, expected=0x1_0001) == 0xFFFF
    assert SEQ16.unwrap(0xFFFF, expected=0) == -1


@given(spaces, st.data())
def test_unwrap_recovers_values_within_half(space: SerialSpace, data: st.DataObject) -> None:
    expected = data.draw(_near_wrap(space) | st.integers(-(2**40), 2**40))
    offset = data.draw(st.integers(-space.half + 1, space.half))
    true = expected + offset
    assert space.unwrap(true & space.mask, expected) == true


def test_serial_space_needs_two_bits() -> None:
    with pytest.raises(ConfigError):
        SerialSpace(1)


# --- the receive window ------------------------------------------------------------------


@given(
    st.sampled_from([SEQ16, SEQ32]),
    st.integers(1, 300),
    st.integers(1, 400),
    st.integers(0, 2**32),
    st.integers(1, 64),
)
def test_wire_values_across_the_wrap(
    space: SerialSpace, back: int, count: int, seed: int, spread: int
) -> None:
    """A sender starting just below the wrap, with reordering, duplicates and loss: the
    receiver unwraps every wire value to the true number and accepts each exactly once."""
    rng = random.Random(seed)
    start = space.modulus - back
    sent = [n for n in range(start, start + count) if rng.random() > 0.1]
    arrivals = sorted(
        sent + rng.sample(sent, len(sent) // 5), key=lambda n: n + rng.random() * spread
    )
    window = ReceiveWindow(size=128, start=start)
    accepted = []
    for n in arrivals:
        unwrapped = window.unwrap(n & space.mask, space)
        assert unwrapped == n
        if window.receive(unwrapped) is Verdict.NEW:
            accepted.append(n)
    assert sorted(accepted) == sorted(set(accepted))
    assert set(accepted) <= set(sent)
    late = window.too_old
    assert len(accepted) + late >= len(set(sent))  # every sent number accepted or too old


def test_window_edges() -> None:
    w = ReceiveWindow(size=4, start=10)
    assert w.highest is None
    assert w.received_ranges() == []
    assert w.missing_ranges() == []
    assert w.check(9) is Verdict.TOO_OLD
    assert w.receive(12) is Verdict.NEW
    assert w.missing_ranges() == [(10, 11)]
    assert w.receive(12) is Verdict.DUPLICATE
    assert w.receive(10) is Verdict.NEW
    assert (w.reordered, w.max_reorder) == (1, 2)
    assert w.receive(20) is Verdict.NEW  # jump: 10, 12 slide out received; 11, 13..16 lost
    assert w.lost == 5
    assert w.missing_ranges() == [(17, 19)]
    assert w.receive(16) is Verdict.TOO_OLD
    assert (w.received, w.duplicates, w.too_old) == (3, 1, 1)


def test_window_of_one() -> None:
    w = ReceiveWindow(size=1)
    assert [w.receive(n) for n in (0, 0, 2, 1, 3)] == [
        Verdict.NEW,
        Verdict.DUPLICATE,
        Verdict.NEW,
        Verdict.TOO_OLD,
        Verdict.NEW,
    ]
    assert w.lost == 1


def test_window_size_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        ReceiveWindow(size=0)


class WindowModel(RuleBasedStateMachine):
    """The window against a set of unwrapped numbers."""

    @initialize(
        size=st.integers(1, 40),
        start=st.integers(-50, 50) | st.just(2**32 - 3) | st.just(2**64),
    )
    def setup(self, size: int, start: int) -> None:
        self.window = ReceiveWindow(size=size, start=start)
        self.size, self.start = size, start
        self.top = start - 1
        self.got: set[int] = set()
        self.counts = {v: 0 for v in Verdict}
        self.reordered = 0

    def _model_verdict(self, n: int) -> Verdict:
        if n > self.top:
            return Verdict.NEW
        if n < self.start or n <= self.top - self.size:
            return Verdict.TOO_OLD
        return Verdict.DUPLICATE if n in self.got else Verdict.NEW

    def _receive(self, n: int) -> None:
        expected = self._model_verdict(n)
        assert self.window.check(n) is expected
        assert self.window.receive(n) is expected
        self.counts[expected] += 1
        if expected is Verdict.NEW:
            if n < self.top:
                self.reordered += 1
            self.got.add(n)
            self.top = max(self.top, n)

    @rule(delta=st.integers(-45, 45))
    def near(self, delta: int) -> None:
        self._receive(self.top + delta)

    @rule(jump=st.integers(41, 10_000))
    def far_ahead(self, jump: int) -> None:
        self._receive(self.top + jump)

    @rule()
    def next_in_order(self) -> None:
        self._receive(self.top + 1)

    @invariant()
    def counters_agree(self) -> None:
        w = self.window
        assert w.received == self.counts[Verdict.NEW] == len(self.got)
        assert w.duplicates == self.counts[Verdict.DUPLICATE]
        assert w.too_old == self.counts[Verdict.TOO_OLD]
        assert w.reordered == self.reordered
        assert w.highest == (self.top if self.got else None)

    @invariant()
    def lost_is_what_slid_out_unreceived(self) -> None:
        out_hi = self.top - self.size
        slid_out = max(0, out_hi - self.start + 1)
        assert self.window.lost == slid_out - sum(1 for n in self.got if n <= out_hi)

    @invariant()
    def ranges_match_the_model(self) -> None:
        floor = max(self.start, self.top - self.size + 1)
        inside = range(floor, self.top + 1)
        assert _expand(self.window.received_ranges()) == [n for n in inside if n in self.got]
        assert _expand(self.window.missing_ranges()) == [n for n in inside if n not in self.got]
        assert self.window.floor == floor


def _expand(ranges: list[tuple[int, int]]) -> list[int]:
    out: list[int] = []
    for lo, hi in ranges:
        assert lo <= hi
        out.extend(range(lo, hi + 1))
    return out


TestWindowModel = WindowModel.TestCase
