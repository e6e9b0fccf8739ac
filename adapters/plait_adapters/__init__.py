"""plait_adapters: plait's sans-I/O endpoint on real UDP sockets, under four runtimes.

Each adapter owns the clock (`time.monotonic_ns`), the sockets (one per link) and one
timer, and runs the endpoint loop; they share `_session.Session`, so they differ only
in how they wait. The same small surface everywhere:

=============  ==========================================  ===============================
module         open                                        receive
=============  ==========================================  ===============================
`raw`          ``with raw.open_session(cfg, links, ...)``  ``for msg in s``, `on_message`
`aio`          ``async with aio.open_session(...)``        ``async for msg in s``
`trio_`        ``async with trio_.open_session(...)``      ``async for msg in s``
`uring`        ``with uring.open_session(...)``            ``for msg in s``, `on_message`
=============  ==========================================  ===============================

`links` is one ``(local, remote[, interface])`` per link (or `LinkSpec`), in the order
of ``config.links``; `initiator=True` on one end. On the responder, ``remote=None``
learns the peer's address (a peer behind NAT; not under `uring`). Then
``send(data, stream=0)`` (awaited in the async ones), `poll_events()` or an `on_event`
callback for link and session events, `stats()` (a `SessionStats`), `close_link(i)`,
live changes (`set_link_rate`, ...), and close by leaving the block, which lingers
until what was sent is acknowledged or reported. A session that ends (closed, a
handshake or idle timeout) raises `plait.errors.SessionClosedError` or a subclass from
`send`, `receive`, `wait_established`; docs/adapters.md has the whole API.
The runtimes are imported on demand: ``import plait_adapters.trio_`` needs trio;
`uring` (io_uring, opt-in: ``pip install plait[uring]``, Linux >= 6.0) raises
`uring.UringUnavailable` from `open_session` where it cannot run.

They log link state changes, session start and end (with the reason) and drops
(rate-limited) through stdlib `logging`, under ``plait.`` (`plait_adapters._log`).
"""

from __future__ import annotations

from plait_adapters._links import LinkError, LinkSpec
from plait_adapters._session import SessionStats

__all__ = ["LinkError", "LinkSpec", "SessionStats"]
