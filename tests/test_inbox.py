"""`plait.inbox.Inbox` on its own: order, exactly-once and the waiting bounds.

Records arrive in any order, some never; whatever the caps do, each stream reports
every message number exactly once, in order (delivered with the data that was sent,
or expired), and the waiting table stays inside its count and byte caps after every
call.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from plait.events import Event, MessageExpired, MessageReceived
from plait.inbox import Inbox

US = 1000
FAR = 10**9  # a deadline (µs) far ahead: only the caps give a gap up


def _payload(stream: int, msg: int, size: int) -> bytes:
    return bytes([stream, msg & 0xFF]) * (size // 2)


def _inbox(events: list[Event], **caps: int) -> Inbox:
    return Inbox(events.append, lambda deadline: deadline * US, **caps)


def _real_waiting_bytes(inbox: Inbox) -> int:
    return sum(len(data) for s in inbox._streams.values() for data, _ in s.waiting.values() if data)


records = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 40), st.integers(0, 3000)),
    max_size=120,
)


@given(records, st.integers(1, 10), st.integers(0, 9000))
def test_each_message_is_reported_once_in_order_within_the_caps(
    arrivals: list[tuple[int, int, int]], max_waiting: int, max_waiting_bytes: int
) -> None:
    events: list[Event] = []
    inbox = _inbox(events, max_waiting=max_waiting, max_waiting_bytes=max_waiting_bytes)
    sizes: dict[tuple[int, int], int] = {}
    for seq, (stream, msg, drawn) in enumerate(arrivals):
        size = sizes.setdefault((stream, msg), drawn)  # a message has one size
        inbox.on_record(seq, FAR, stream, msg, _payload(stream, msg, size), 0, 1, now=0)
        assert inbox.waiting_bytes == _real_waiting_bytes(inbox)
        assert inbox.waiting_bytes <= max_waiting_bytes
        assert all(len(s.waiting) <= max_waiting for s in inbox._streams.values())
    next_msg = {0: 0, 1: 0, 2: 0}
    for event in events:
        assert isinstance(event, MessageReceived | MessageExpired)
        assert event.msg == next_msg[event.stream]  # contiguous: none skipped or repeated
        next_msg[event.stream] += event.count if isinstance(event, MessageExpired) else 1
        if isinstance(event, MessageReceived):
            size = sizes[(event.stream, event.msg)]
            assert event.data == _payload(event.stream, event.msg, size)


def test_a_gap_is_waited_for_while_the_bytes_fit() -> None:
    events: list[Event] = []
    inbox = _inbox(events, max_waiting_bytes=10_000)
    for msg in range(1, 5):  # message 0 is missing: 4 000 bytes wait behind it
        inbox.on_record(msg, FAR, 0, msg, bytes(1000), 0, 1, now=0)
    assert events == []
    assert inbox.waiting_bytes == 4000
    inbox.on_record(0, FAR, 0, 0, b"first", 0, 1, now=0)  # the gap fills: all five go
    assert [e.msg for e in events if isinstance(e, MessageReceived)] == [0, 1, 2, 3, 4]
    assert inbox.waiting_bytes == 0


def test_past_the_byte_cap_the_oldest_gap_is_given_up_on_the_growing_stream_first() -> None:
    events: list[Event] = []
    inbox = _inbox(events, max_waiting_bytes=5000)
    inbox.on_record(0, FAR, 1, 1, bytes(2000), 0, 1, now=0)  # stream 1 waits for its 0
    inbox.on_record(1, FAR, 0, 1, bytes(2000), 0, 1, now=0)  # stream 0 waits for its 0
    inbox.on_record(2, FAR, 0, 3, bytes(2000), 0, 1, now=0)  # 6 000 bytes: over the cap
    assert events == [
        MessageExpired(stream=0, msg=0, sent=False),
        MessageReceived(data=bytes(2000), stream=0, msg=1, deadline=FAR * US),
    ]
    assert inbox.waiting_bytes == 4000  # stream 0's message 3 (behind 2) and stream 1's 1


def test_a_record_on_a_stream_the_config_lacks_is_ignored_and_counted() -> None:
    events: list[Event] = []
    inbox = _inbox(events, streams=8)
    assert inbox.on_record(0, FAR, 8, 0, b"not ours", 0, 1, now=0)
    assert inbox.on_record(1, FAR, 7, 0, b"ours", 0, 1, now=0)
    assert events == [MessageReceived(data=b"ours", stream=7, msg=0, deadline=FAR * US)]
    assert (inbox.stats.bad_stream, len(inbox._streams)) == (1, 1)
