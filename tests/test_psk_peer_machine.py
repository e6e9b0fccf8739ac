"""A hypothesis state machine over a peer that holds the psk (`fuzz.psk_peer.PskPeer`).

Every rule sends an authenticated, well-formed datagram whose records break the rules,
or lets time pass; after each, `PskPeer` checks that nothing escaped, the datagram was
counted once, every table of the receiver is within its bounds in entries and bytes,
the call's events and CPU are bounded, and each stream's messages are resolved once and
in order. At the end 36 minutes pass and the receiver holds nothing of it.
The same model is the ``psk_peer`` fuzz target (fuzz/fuzz_psk_peer.py).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

from fuzz import corpus
from fuzz.psk_peer import PskPeer

streams = st.integers(0, 9)  # 8 and 9 are not in the config
deadlines = st.integers(0, 4)
sizes = st.one_of(st.integers(0, 1400), st.integers(1400, 65_000))


class PskPeerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.peer = PskPeer(corpus.session(True))

    @rule(
        stream=streams,
        ahead=st.one_of(st.integers(0, 3), st.integers(0, 0xFFFF)),
        deadline=deadlines,
        size=sizes,
        skip=st.one_of(st.just(0), st.integers(0, 40_000)),
    )
    def data(self, stream: int, ahead: int, deadline: int, size: int, skip: int) -> None:
        self.peer.data(stream, ahead, self.peer.deadline(deadline), size, skip)

    @rule(
        stream=streams,
        ahead=st.integers(0, 2047),
        count=st.integers(1, 255),
        index=st.integers(0, 254),
        deadline=deadlines,
        size=st.integers(0, 20_000),
    )
    def fragment(
        self, stream: int, ahead: int, count: int, index: int, deadline: int, size: int
    ) -> None:
        self.peer.fragment(stream, ahead, index % count, count, self.peer.deadline(deadline), size)

    @rule(
        ahead=st.integers(0, 0xFFFF),
        k=st.integers(1, 80),
        m=st.integers(1, 20),
        index=st.integers(0, 19),
        width=st.one_of(st.integers(2, 1400), st.integers(1400, 60_000)),
    )
    def parity(self, ahead: int, k: int, m: int, index: int, width: int) -> None:
        self.peer.parity(ahead, k, m, index, width)

    @rule(
        largest=st.integers(0, 0xFFFF_FFFF),
        first_run=st.integers(1, 0xFFFF),
        ranges=st.lists(
            st.tuples(st.integers(1, 0xFFFF), st.integers(1, 0xFFFF)), max_size=254
        ).map(tuple),
    )
    def feedback(self, largest: int, first_run: int, ranges: tuple[tuple[int, int], ...]) -> None:
        self.peer.feedback(largest, first_run, ranges)

    @rule(stream=streams, size=st.integers(0, 1200))
    def ordinary(self, stream: int, size: int) -> None:
        self.peer.data(stream, 0, self.peer.deadline(3), size)

    @rule(span=st.one_of(st.integers(0, 200_000_000), st.integers(0, 3_000_000_000)))
    def wait(self, span: int) -> None:
        self.peer.wait(span)

    def teardown(self) -> None:
        self.peer.finish()


TestPskPeer = PskPeerMachine.TestCase
TestPskPeer.settings = settings(
    settings(), max_examples=settings().max_examples // 2, stateful_step_count=60
)
