"""The send queue (`plait.outbox`): what goes out next when a link is busy."""

from __future__ import annotations

from plait.events import Event
from plait.outbox import Item, Outbox

S = 1_000_000_000


def _always(size: int, deadline: int) -> bool:
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
