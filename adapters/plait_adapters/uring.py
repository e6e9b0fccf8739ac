"""io_uring datagram transport for plait's adapters, on the `uring-api` binding.

    transport = UringTransport([sock0, sock1, sock2])   # one UDP socket per link
    transport.send_batch(endpoint.datagrams_to_send(now=now))
    for link, data in transport.receive(timeout_ns=200_000):
        endpoint.receive_datagram(data, link=link, now=clock())
    transport.close()

What it does with the ring (docs/io_uring.md has the measurements):

* `send_batch` turns every (datagram, link) pair into one SEND SQE and publishes them all
  with a single `io_uring_enter`, whatever links they go to. Their completions are reaped
  later (by `receive`, or by the next `send_batch` once a batch is in flight), so sending
  costs one system call per batch rather than one per datagram.
* Every socket has one multishot receive armed (IORING_OP_RECV with IORING_RECV_MULTISHOT)
  drawing from one provided-buffer ring shared by all links. The kernel copies each arriving
  datagram into a registered buffer and posts a completion; `receive` reads completions
  from the shared queue, usually without a system call. When the kernel ends a multishot
  (buffer ring empty, an ICMP error on a connected socket, a zero-length datagram), the
  next `receive` arms it again; the datagrams wait in the socket's queue meanwhile.
* SQPOLL (`sqpoll=True`) hands submission to a kernel thread: `send_batch` then makes no
  system call at all, at the price of a kernel thread that polls the queue (a whole CPU
  while busy, for up to a second after the last submission). The thread inherits this
  thread's CPU mask; `sqpoll_cpu` moves it to another CPU.

The sockets stay the caller's: the transport never closes them. It must be driven from
one thread (the one that created it). The link number of a datagram is the position of its
socket in the list given to the constructor, as plait's endpoint numbers links.
"""

from __future__ import annotations

import errno
import importlib
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from plait.errors import PlaitError, UsageError

# Imported by name: uring-api's type stub is a bare top-level module that type checkers do
# not pick up (its objects are Any either way), and this keeps the module importable, and
# checkable, where the binding is not installed.
_IMPORT_ERROR: str | None = None
uring_api: Any = None
try:
    uring_api = importlib.import_module("uring_api")
except ImportError as exc:  # pragma: no cover - exercised where the binding is absent
    _IMPORT_ERROR = f"the uring-api package is not installed ({exc}): pip install 'plait[uring]'"

__all__ = ["UringTransport", "UringUnavailable", "availability"]

_SEND = -1  # user_data of every send completion; receives carry their link number
_CANCEL = -2  # user_data of the cancels sent by close()
_F_MORE = 1 << 1  # IORING_CQE_F_MORE: the multishot goes on (kernel ABI, never changes)
_NO_BUFFERS = -errno.ENOBUFS  # a multishot's end when the buffer ring ran dry
_MAX_DATAGRAM = 65535


class UringUnavailable(PlaitError, RuntimeError):  # noqa: N818  (names the condition)
    """io_uring cannot be used here; `reason` says why (binding, kernel, sandbox)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"io_uring transport unavailable: {reason}")
        self.reason = reason


def _why_no_ring() -> str:
    """The best explanation for a failed io_uring_setup that this process can find."""
    try:
        with open("/proc/sys/kernel/io_uring_disabled", encoding="ascii") as f:
            disabled = f.read().strip()
    except OSError:
        disabled = ""
    if disabled == "2":
        return "io_uring is disabled by the kernel (sysctl kernel.io_uring_disabled=2)"
    if disabled == "1":
        return (
            "io_uring is limited to the io_uring_group by sysctl kernel.io_uring_disabled=1 "
            "and this process is not in it"
        )
    return (
        "io_uring_setup failed: the kernel is older than 5.1, was built without io_uring, "
        "or a seccomp policy (container runtime, sandbox) blocks it"
    )


def _sqpoll_threads() -> set[int]:
    """Thread ids of this process's SQPOLL kernel threads (named iou-sqp-PID)."""
    tids: set[int] = set()
    try:
        tasks = list(Path("/proc/self/task").iterdir())
    except OSError:
        return tids
    for task in tasks:
        try:
            if (task / "comm").read_text().startswith("iou-sqp"):
                tids.add(int(task.name))
        except OSError:
            continue
    return tids


def availability() -> str | None:
    """None when the transport can be built here, else the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return f"io_uring is Linux-only (this is {sys.platform})"
    if _IMPORT_ERROR is not None:
        return _IMPORT_ERROR
    probe = uring_api.probe()
    if not probe:
        return _why_no_ring()
    missing = [k for k in ("IORING_RECV_MULTISHOT", "IORING_BUF_RING") if not probe.get(k)]
    if missing:
        return f"the kernel lacks {', '.join(missing)} (multishot receive needs Linux >= 6.0)"
    return None


def _check_arguments(
    sockets: Sequence[socket.socket],
    peers: Sequence[Any] | None,
    buffer_size: int,
    buffer_count: int,
    entries: int,
) -> tuple[list[int], list[Any]]:
    """The sockets' fds and send addresses (None: connected); UsageError on a bad one."""
    if not sockets:
        raise UsageError("UringTransport needs at least one socket")
    if peers is not None and len(peers) != len(sockets):
        raise UsageError(f"{len(peers)} peers for {len(sockets)} sockets")
    if buffer_count < 1 or buffer_count & (buffer_count - 1) or buffer_count > 32768:
        raise UsageError(f"buffer_count must be a power of two <= 32768, not {buffer_count}")
    if not 1 <= buffer_size <= _MAX_DATAGRAM + 1:
        raise UsageError(f"buffer_size must be 1..65536, not {buffer_size}")
    if entries < 1:
        raise UsageError(f"entries must be positive, not {entries}")
    fds: list[int] = []
    addrs: list[Any] = []
    for i, sock in enumerate(sockets):
        if sock.fileno() < 0:
            raise UsageError(f"socket {i} is closed")
        if sock.type != socket.SOCK_DGRAM:
            raise UsageError(f"socket {i} is not a datagram socket")
        peer = None if peers is None else peers[i]
        if peer is None:
            try:
                sock.getpeername()
            except OSError:
                raise UsageError(f"socket {i} is not connected and no peer was given") from None
        fds.append(sock.fileno())
        addrs.append(peer)
    return fds, addrs


class UringTransport:
    """Batched send and multishot receive for a set of UDP sockets, one io_uring ring.

    `peers[i]`, when given and not None, is the address that link i sends to (sendto);
    otherwise socket i must be connected. `buffer_size` must hold the largest datagram
    (a longer one is truncated by the kernel, as `recv` would); `buffer_count` buffers
    (a power of two) are shared by all links: it bounds how many received datagrams can
    wait in the ring before `receive` runs. Raises `UringUnavailable` when io_uring cannot
    be used here and `UsageError` for bad arguments.
    """

    def __init__(
        self,
        sockets: Sequence[socket.socket],
        *,
        peers: Sequence[Any] | None = None,
        buffer_size: int = 2048,
        buffer_count: int = 256,
        entries: int = 256,
        sqpoll: bool = False,
        sqpoll_cpu: int | None = None,
    ) -> None:
        fds, addrs = _check_arguments(sockets, peers, buffer_size, buffer_count, entries)
        reason = availability()
        if reason is not None:
            raise UringUnavailable(reason)
        flags = uring_api.IORING_SETUP_SQPOLL if sqpoll else 0
        pollers_before = _sqpoll_threads() if sqpoll else set()
        try:
            # A completion queue deep enough for every buffer plus a full send batch.
            ring = uring_api.Ring(entries, flags, True, max(2 * entries, 2 * buffer_count))
        except OSError as exc:
            what = "SQPOLL ring" if sqpoll else "ring"
            raise UringUnavailable(f"creating the {what} failed: {exc}") from exc
        if sqpoll and sqpoll_cpu is not None:
            # The poller inherits this thread's CPU mask; left there it competes with the
            # thread that feeds it. uring-api has no IORING_SETUP_SQ_AFF, so move it.
            try:
                for tid in _sqpoll_threads() - pollers_before:
                    os.sched_setaffinity(tid, {sqpoll_cpu})
            except OSError as exc:
                ring.close()
                raise UsageError(
                    f"cannot pin the SQPOLL thread to CPU {sqpoll_cpu}: {exc}"
                ) from exc
        try:
            group = ring.create_buf_group(buffer_size, buffer_count)
        except (OSError, RuntimeError, ValueError) as exc:
            ring.close()
            raise UringUnavailable(f"registering the provided-buffer ring failed: {exc}") from exc
        self._ring = ring
        self._group = group
        self._fds = fds
        self._addrs = addrs
        self._buffer_count = buffer_count
        self._armed: list[Any] = [None] * len(fds)  # the live multishot handle per link
        self._starved: set[int] = set()  # links whose multishot ended for lack of buffers
        self._pending: list[tuple[int, bytes]] = []  # datagrams reaped by send_batch
        self._sends_in_flight = 0
        self.closed = False
        self.sqpoll = sqpoll
        self.send_errors = 0  # send completions with an error (ECONNREFUSED, ENOBUFS, ...)
        self.last_send_error = 0  # its errno
        self.receive_errors = 0  # multishot receives ended by an error other than ENOBUFS
        self.rearms = 0  # multishot receives armed again after the kernel ended them
        try:
            for link in range(len(fds)):
                self._arm(link)
            ring.submit()
        except BaseException:
            self._teardown()
            raise

    # --- public surface -------------------------------------------------------------

    @property
    def links(self) -> int:
        return len(self._fds)

    def fileno(self) -> int:
        """The ring's fd: readable when completions are waiting (for epoll or asyncio)."""
        fd: int = self._ring.fd
        return fd

    def send_batch(self, items: Iterable[tuple[bytes, int]]) -> None:
        """Queue every (datagram, link) and submit them all in one system call.

        A send that fails later (no route, ICMP unreachable on a connected socket) is not
        raised: it is counted in `send_errors` / `last_send_error`, as a lost datagram.
        """
        if self.closed:
            raise UsageError("send_batch on a closed UringTransport")
        ring = self._ring
        fds = self._fds
        addrs = self._addrs
        n = len(fds)
        construct_send = ring.construct_send
        batch: list[Any] = []
        for data, link in items:
            if not 0 <= link < n:
                raise UsageError(f"no link {link}")
            addr = addrs[link]
            if addr is None:
                batch.append(construct_send(fds[link], data, 0, _SEND))
            else:
                batch.append(ring.construct_sendto(fds[link], data, addr, 0, _SEND))
        if not batch:
            return
        if self._sends_in_flight:
            # Reap the previous batch's completions first (no system call when they are
            # already posted) so in-flight sends never pile up between receives.
            self._harvest(0.0, self._pending)
        ring.prepare(batch)
        ring.submit()
        self._sends_in_flight += len(batch)

    def receive(self, timeout_ns: int | None = 0) -> list[tuple[int, bytes]]:
        """Every datagram that has arrived, as (link, bytes), in arrival order per link.

        Waits up to `timeout_ns` for the first one (0: only what is there now; None: until
        one arrives). Re-arms any multishot receive the kernel ended since the last call.
        """
        if self.closed:
            raise UsageError("receive on a closed UringTransport")
        out = self._pending
        self._pending = []
        if out or timeout_ns == 0:
            self._harvest(0.0, out)
        elif timeout_ns is None:
            while not out:
                self._harvest(None, out)
        else:
            deadline = time.monotonic_ns() + timeout_ns
            while True:
                self._harvest(max(0, deadline - time.monotonic_ns()) / 1e9, out)
                if out or time.monotonic_ns() >= deadline:
                    break
        return out

    def close(self) -> None:
        """Cancel the receives, reap what is in flight, release the ring. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._teardown()

    def __enter__(self) -> UringTransport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def stats(self) -> dict[str, int]:
        """Counters; `submits` is the ring's submissions (io_uring_enter calls to submit)."""
        ring_stats = self._ring.stats() if not self._ring.closed else {}
        return {
            "links": len(self._fds),
            "submits": ring_stats.get("submit_main_events", 0),
            "sends_in_flight": self._sends_in_flight,
            "send_errors": self.send_errors,
            "receive_errors": self.receive_errors,
            "rearms": self.rearms,
            "buffers_leased": self._group.leased_count,
        }

    # --- internals ------------------------------------------------------------------

    def _arm(self, link: int) -> None:
        self._armed[link] = self._ring.prepare_recv_multishot(self._fds[link], self._group, 0, link)

    def _harvest(self, timeout: float | None, out: list[tuple[int, bytes]]) -> None:
        """Reap one batch of completions into `out`; re-arm ended receives."""
        completions = self._ring.wait(timeout)
        if completions:
            sent = 0
            for c in completions:
                link: int = c.user_data  # ours: an int
                res = c.res
                if link == _SEND:
                    sent += 1
                    if res < 0:
                        self.send_errors += 1
                        self.last_send_error = -res
                    continue
                if res > 0:
                    # c.result is a BufView leased from the buffer ring; copying it out
                    # releases the buffer to the kernel at once.
                    out.append((link, bytes(c.result)))
                if not c.flags & _F_MORE and link >= 0 and not self.closed:
                    self._armed[link] = None
                    if res == _NO_BUFFERS:
                        self._starved.add(link)
                    else:
                        if res < 0:
                            self.receive_errors += 1
                        self._arm(link)
                        self.rearms += 1
            self._sends_in_flight -= sent
        if self._starved and self._group.leased_count < self._buffer_count:
            for link in sorted(self._starved):
                self._arm(link)
                self.rearms += 1
            self._starved.clear()

    def _teardown(self) -> None:
        ring = self._ring
        if ring.closed:
            return
        try:
            for handle in self._armed:
                if handle is not None:
                    ring.prepare_cancel(handle, _CANCEL, no_deliver_multi=True)
            self._armed = [None] * len(self._fds)
            deadline = time.monotonic() + 1.0
            while ring.pending_count() and time.monotonic() < deadline:
                ring.wait(0.05)  # cancel acks, send completions: nothing to deliver
        finally:
            self._pending = []
            self._group.close()
            ring.close()
