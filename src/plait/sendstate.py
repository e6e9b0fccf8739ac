"""What the sending half of a session (`plait.outbox`) tracks: a queued message
(`Message`), a record in flight (`SentRecord`), what goes out next (`Item`: a new
fragment, a repair or a parity shard, by `kind`), and its counters (`OutboxStats`).
Plain slotted classes: one of each is built per message on the hot path.
"""

from __future__ import annotations

from typing import Final

__all__ = ["NEW", "PARITY", "REPAIR", "Item", "Message", "OutboxStats", "SentRecord"]

NEW: Final = 0  # `Item.kind`: a new fragment
REPAIR: Final = 1  # ... a re-send of a record in flight
PARITY: Final = 2  # ... an FEC parity shard


class Message:
    """A message handed to `Outbox.send`: its fragments, until each is acknowledged or
    it is reported (expired or unconfirmed)."""

    __slots__ = (
        "copies",
        "deadline",
        "deadline_us",
        "done",
        "frags",
        "handle",
        "msg",
        "queued_at",
        "settled",
        "stream",
        "unacked",
    )

    def __init__(
        self, stream: int, frags: list[bytes], deadline: int, handle: int, copies: int, now: int
    ) -> None:
        self.queued_at = now
        self.stream = stream
        self.frags = frags
        self.deadline = deadline
        self.deadline_us = deadline // 1000
        self.handle = handle
        self.msg = -1  # assigned when its first fragment goes out
        self.done = False  # fully handed over, or expired
        self.copies = copies
        self.unacked = 0  # records sent and not acknowledged yet
        self.settled = False  # delivered (acknowledged in full) or reported: said once


class SentRecord:
    """A DATA record in flight: its bytes (for a re-send), its message, where it went."""

    __slots__ = ("at", "deadline", "links", "msg", "record", "rescued")

    def __init__(self, record: bytes, msg: Message) -> None:
        self.record = record
        self.msg = msg
        self.deadline = msg.deadline
        self.links: list[int] = []
        self.at = 0  # when it last went out
        self.rescued = False  # re-sent because its link's queue made it late


class Item:
    """What goes out next: a new fragment, a repair, or a parity shard."""

    __slots__ = ("avoid", "body", "copies", "deadline", "frag", "kind", "msg", "seq", "size")

    def __init__(self, kind: int, size: int, deadline: int) -> None:
        self.kind = kind
        self.size = size  # body bytes
        self.deadline = deadline
        self.msg: Message | None = None
        self.frag = 0
        self.seq = -1
        self.body = b""
        self.copies = 0
        self.avoid = -1  # a link not to use, if there is a choice

    @property
    def is_parity(self) -> bool:
        return self.kind == PARITY


class OutboxStats:
    """The outbox's counters (`plait.stats` snapshots them)."""

    __slots__ = (
        "acked",
        "delivered",
        "expired",
        "lost",
        "messages",
        "records",
        "repairs",
        "unconfirmed",
    )

    def __init__(self) -> None:
        self.messages = self.records = self.repairs = self.lost = 0
        self.acked = self.expired = self.unconfirmed = 0
        self.delivered = 0  # messages acknowledged in full

    @property
    def unsettled(self) -> int:
        """Messages neither delivered nor reported yet (queued or in flight)."""
        return self.messages - self.delivered - self.expired - self.unconfirmed
