"""The io_uring transport under `plait_adapters.uring`: `UringTransport`, on `uring-api`.

* `send_batch` turns every (datagram, link) pair of a flush into a SEND SQE and
  publishes them all with one `io_uring_enter`; completions are reaped later.
* Every socket has one multishot receive (IORING_RECV_MULTISHOT) drawing from one
  provided-buffer ring shared by all links; `receive` copies each datagram out of its
  registered buffer (which goes back at once), usually without a system call. When the
  kernel ends a multishot (buffers ran dry, an ICMP error, a zero-length datagram) it
  is armed again at once; datagrams wait in the socket's queue meanwhile.
* The thread that drives the transport arms the receives (`arm()`, or its first
  `receive`), not the one that built it: the kernel runs a request's work on the thread
  that submitted it, and fails it with ECANCELED once that thread has exited.
* SQPOLL (`sqpoll=True`): a kernel thread takes the submissions, so `send_batch` makes
  no system call, at the price of that thread polling (a whole CPU while busy, for up
  to a second after the last submission); `sqpoll_cpu` moves it off this thread's CPU.

`UringTransport` never closes the sockets (the session does). A datagram's link number
is the position of its socket in the list given to the constructor.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Sequence
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
_CANCEL = -2  # user_data of the cancels sent by close_link() and close()
_F_MORE = 1 << 1  # IORING_CQE_F_MORE: the multishot goes on (kernel ABI, never changes)
_NO_BUFFERS = -errno.ENOBUFS  # a multishot's end when the buffer ring ran dry
_MAX_DATAGRAM = 65535

ErrorHook = Callable[[str, int], object]
"""Called with ("send" or "recv", errno) for each failed send or ended receive."""


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
    with contextlib.suppress(OSError):
        for task in Path("/proc/self/task").iterdir():
            with contextlib.suppress(OSError):  # the thread may have ended meanwhile
                if (task / "comm").read_text().startswith("iou-sqp"):
                    tids.add(int(task.name))
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
    wait in the ring before `receive` runs. `on_error("send" | "recv", errno)` hears of
    each failed send and each receive ended by an error. Raises `UringUnavailable` when
    io_uring cannot be used here and `UsageError` for bad arguments.
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
        on_error: ErrorHook | None = None,
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
        try:
            if sqpoll and sqpoll_cpu is not None:
                # The poller inherits this thread's CPU mask; left there it competes with
                # the thread that feeds it. uring-api has no IORING_SETUP_SQ_AFF: move it.
                try:
                    for tid in _sqpoll_threads() - pollers_before:
                        os.sched_setaffinity(tid, {sqpoll_cpu})
                except OSError as exc:
                    raise UsageError(
                        f"cannot pin the SQPOLL thread to CPU {sqpoll_cpu}: {exc}"
                    ) from exc
            try:
                self._group = ring.create_buf_group(buffer_size, buffer_count)
            except (OSError, RuntimeError, ValueError) as exc:
                raise UringUnavailable(
                    f"registering the provided-buffer ring failed: {exc}"
                ) from exc
        except BaseException:
            ring.close()
            raise
        self._ring = ring
        self._fds = fds  # -1 once close_link() took the link out
        self._addrs = addrs
        self._on_error = on_error
        self._armed: list[Any] = [None] * len(fds)  # the live multishot handle per link
        self._to_arm = set(range(len(fds)))  # links with no live receive: arm from the driver
        self._pending: list[tuple[int, bytes]] = []  # datagrams reaped by send_batch
        self._sends_in_flight = 0
        self.closed = False
        self.sqpoll = sqpoll
        self.send_errors = 0  # failed sends (ECONNREFUSED, ENOBUFS, EBADF on a closed link)
        self.last_send_error = 0  # its errno
        self.receive_errors = 0  # multishot receives ended by an error other than ENOBUFS
        self.rearms = 0  # multishot receives armed again after the kernel ended them

    # --- public surface -------------------------------------------------------------

    @property
    def waiting(self) -> int:
        """Datagrams that `send_batch` reaped and `receive` will return (the ring's fd
        does not show them)."""
        return len(self._pending)

    def fileno(self) -> int:
        """The ring's fd: readable when completions are waiting (for epoll or asyncio)."""
        fd: int = self._ring.fd
        return fd

    def arm(self) -> None:
        """Arm a multishot receive on every link that has none, from this thread (the
        one that drives the transport); `receive` does it too."""
        if self.closed:
            raise UsageError("arm on a closed UringTransport")
        if not self._to_arm:
            return
        prepare = self._ring.prepare_recv_multishot
        for link in sorted(self._to_arm):
            self._armed[link] = prepare(self._fds[link], self._group, 0, link)
        self._to_arm.clear()
        self._ring.submit()

    def send_batch(self, items: Iterable[tuple[bytes, int]]) -> None:
        """Queue every (datagram, link) and submit them all in one system call.

        A send that fails later (no route, ICMP unreachable on a connected socket), or
        one to a closed link, is not raised: it is counted in `send_errors` /
        `last_send_error` and reported to `on_error`, as a lost datagram.
        """
        if self.closed:
            raise UsageError("send_batch on a closed UringTransport")
        ring, fds, addrs = self._ring, self._fds, self._addrs
        n = len(fds)
        construct_send = ring.construct_send
        batch: list[Any] = []
        for data, link in items:
            if not 0 <= link < n:
                raise UsageError(f"no link {link}")
            fd, addr = fds[link], addrs[link]
            if fd < 0:
                self._failed("send", errno.EBADF)
            elif addr is None:
                batch.append(construct_send(fd, data, 0, _SEND))
            else:
                batch.append(ring.construct_sendto(fd, data, addr, 0, _SEND))
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
        one arrives). A zero-length datagram comes out as b"".
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

    def close_link(self, link: int) -> None:
        """Take one link out before its socket is closed: its receive is cancelled and
        sends to it fail with EBADF (counted, not raised). Idempotent."""
        if not 0 <= link < len(self._fds):
            raise UsageError(f"no link {link}")
        handle, self._armed[link] = self._armed[link], None
        self._fds[link] = -1
        self._to_arm.discard(link)
        if handle is not None and not self.closed:
            # The request holds the socket open until the cancel lands; nothing it
            # received after this is delivered.
            self._ring.prepare_cancel(handle, _CANCEL, no_deliver_multi=True)
            self._ring.submit()

    def close(self) -> None:
        """Cancel the receives, reap what is in flight, release the ring. Idempotent."""
        if self.closed:
            return
        self.closed = True
        ring = self._ring
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

    def __enter__(self) -> UringTransport:
        return self

    def __exit__(
        self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None
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

    def _failed(self, where: str, err: int) -> None:
        if where == "send":
            self.send_errors += 1
            self.last_send_error = err
        else:
            self.receive_errors += 1
        if self._on_error is not None:
            self._on_error(where, err)

    def _harvest(self, timeout: float | None, out: list[tuple[int, bytes]]) -> None:
        """Reap one batch of completions into `out`; arm again the receives that ended."""
        if self._to_arm:
            self.arm()
        sent = 0
        for c in self._ring.wait(timeout) or ():
            link: int = c.user_data  # ours: an int
            res = c.res
            if link < 0:
                if link == _SEND:
                    sent += 1
                    if res < 0:
                        self._failed("send", -res)
                continue
            if res >= 0:
                # c.result is a BufView leased from the buffer ring; copying it out
                # releases the buffer to the kernel at once.
                out.append((link, bytes(c.result)))
            if not c.flags & _F_MORE and self._fds[link] >= 0:
                self._armed[link] = None
                self._to_arm.add(link)
                self.rearms += 1
                if res < 0 and res != _NO_BUFFERS:
                    self._failed("recv", -res)
        self._sends_in_flight -= sent
        if self._to_arm:
            self.arm()
