"""The send queue (`plait.outbox`): what goes out next when a link is busy."""

from __future__ import annotations

from plait.events import Event
from plait.outbox import Item, Outbox

S = 1_000_000_000
MS = 1_000_000


def _always(size: int, deadline: int, now: int) -> bool:
    return True


def _outbox() -> tuple[Outbox, list[Event]]:
    events: list[Event] = []
    box = Outbox(events.append, links=2, max_payload=1200, send_buffer_bytes=1 << 20, fec=None)
    return box, events


def _send_out(box: Outbox, link: int, link_seq: int, now: int) -> Item:
    item = box.take(now, _always)
    assert item is not None
    box.commit(item, now)
    box.on_transmitted(item, link, link_seq, now)
    return item


def test_a_deferred_repair_goes_first_next_time_and_new_data_is_not_blocked() -> None:
    """A repair whose best link is busy is put aside (`defer`): what follows it - new
    messages here - can be taken meanwhile for the free links, and next time the repair
    comes first, before anything else."""
    box, _ = _outbox()
    box.send(b"a" * 100, 0, S, 0, 0)
    first = _send_out(box, 0, 0, 0)
    box.repair_late(0, -1, lambda link, link_seq, deadline: True)  # its link's queue grew
    box.send(b"b" * 100, 0, S, 0, 1)
    repair = box.take(2, _always)
    assert repair is not None
    assert repair.kind != 0
    assert repair.seq == first.seq
    fresh = box.take(2, _always)  # the repair waits for its link: new data goes on
    assert fresh is not None
    assert fresh.kind == 0
    box.commit(fresh, 2)
    box.on_transmitted(fresh, 1, 0, 2)
    box.defer([repair])
    again = box.take(3, _always)
    assert again is repair
    assert box.take(3, _always) is None


def test_a_deferred_repair_acknowledged_meanwhile_is_dropped() -> None:
    box, _ = _outbox()
    box.send(b"a" * 100, 0, S, 0, 0)
    first = _send_out(box, 0, 0, 0)
    box.repair_late(0, -1, lambda link, link_seq, deadline: True)
    repair = box.take(1, _always)
    assert repair is not None
    assert repair.seq == first.seq
    box.defer([repair])
    box.on_acked(first.seq, first.seq)  # the original arrived after all
    assert box.take(2, _always) is None
    assert not box.pending()


def _on(box: Outbox, link: int, link_seq: int, now: int) -> Item:
    box.send(b"x" * 100, 0, 10 * S, 0, now)
    return _send_out(box, link, link_seq, now)


def test_a_record_on_a_silent_link_is_lost_once_a_later_one_should_have_overtaken_it() -> None:
    """RACK across links: link 0 takes 30 ms one way, link 1 10 ms. A record acknowledged
    on link 1 tells what the peer had by then; a record on link 0 that should have
    arrived 2 ms (the window) before that is lost, though nothing later arrived on
    link 0 (it may have died)."""
    box, _ = _outbox()
    box.owd = [30 * MS, 10 * MS]
    slow = _on(box, 0, 0, 0)  # due at the peer at 30 ms
    early = _on(box, 1, 0, 5 * MS)  # there at 15 ms: says nothing about `slow`
    box.on_acked(early.seq, early.seq)
    box.on_overdue(0, 2 * MS)
    assert box.stats.lost == 0
    later = _on(box, 1, 1, 25 * MS)  # there at 35 ms: `slow` should have been by 32
    box.on_acked(later.seq, later.seq)
    box.on_overdue(0, 2 * MS)
    assert box.stats.lost == 1
    repair = box.take(40 * MS, _always)
    assert repair is not None
    assert repair.seq == slow.seq


def test_the_queue_a_link_holds_and_records_sent_twice_are_no_evidence() -> None:
    box, _ = _outbox()
    box.owd = [30 * MS, 10 * MS]
    box.queue = [20 * MS, 0]  # link 0's bottleneck holds 20 ms now: due at 50 ms
    _on(box, 0, 0, 0)
    later = _on(box, 1, 0, 25 * MS)  # there at 35 ms
    box.on_acked(later.seq, later.seq)
    box.on_overdue(0, 2 * MS)
    assert box.stats.lost == 0
    twice = _on(box, 1, 1, 60 * MS)
    box.repair_late(1, 0, lambda link, link_seq, deadline: True)
    again = box.take(61 * MS, _always)  # the same record, re-sent: which copy arrives?
    assert again is not None
    assert again.seq == twice.seq
    box.on_transmitted(again, 0, 1, 61 * MS)
    box.on_acked(twice.seq, twice.seq)
    box.on_overdue(0, 2 * MS)
    assert box.stats.lost == 0
