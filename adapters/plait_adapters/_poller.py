"""`Poller`: how a thread-driven loop waits for datagrams, other threads and deadlines.

One epoll set holds the link sockets and an eventfd that other threads write to wake
the loop (only while it sleeps: `sleeping`). `wait()` picks, in this order:

* spin: ``epoll.poll(0)`` in a loop while within `busy_poll_ns` of the last activity
  (a reply often comes back within microseconds; a blocking wait costs a wake-up, ~30 us
  across vCPUs here) or within `spin_ns` of the deadline;
* block until `spin_ns` before the deadline, then spin the rest: a sleep alone wakes
  50-90 us late (timer slack; `setup_thread` lowers it with prctl). The block is one
  ``select`` with a microsecond timeout, so a deadline costs one wake-up (epoll's
  timeout is in whole milliseconds: rounded down, it would wake once more for the
  rest; rounded up, late). Only with no deadline, or an fd of 1024 or more (which
  ``select`` cannot take), does it block in epoll, in whole milliseconds rounded down.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import threading
from collections.abc import Callable, MutableMapping
from typing import Final

from plait_adapters._links import clock

__all__ = ["Poller", "setup_thread"]

Ready = list[tuple[int, int]]
_MS: Final = 1_000_000
_PR_SET_TIMERSLACK: Final = 29


def setup_thread(
    cpu: int | None, timer_slack_ns: int | None, notes: MutableMapping[str, str]
) -> None:
    """Pin the calling thread to `cpu` and set its timer slack (both optional)."""
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
        notes["cpu"] = str(cpu)
    if timer_slack_ns is not None:
        libc = ctypes.CDLL(None, use_errno=True)
        ok = libc.prctl(_PR_SET_TIMERSLACK, timer_slack_ns, 0, 0, 0) == 0
        notes["timer slack"] = f"{timer_slack_ns} ns" if ok else "refused"


class Poller:
    def __init__(self, fds: list[int], *, busy_poll_ns: int, spin_ns: int) -> None:
        self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._fds = [*fds, self.efd]
        self._epoll = select.epoll()
        for fd in self._fds:
            self._epoll.register(fd, select.EPOLLIN)
        self.busy_poll_ns, self.spin_ns = busy_poll_ns, spin_ns
        self.sleeping = False
        self._select_ok = max(self._fds) < 1024  # select() takes fds < 1024 only
        self._lock = threading.Lock()
        self._closed = False

    def wait(
        self,
        due: int | None,
        last_active: int,
        pending: Callable[[], bool],
        idle: Callable[[], bool],
    ) -> Ready:
        """Ready (fd, events) pairs, or [] at the deadline or when `pending()`; `idle()`
        runs before blocking (True: it did work, so look again)."""
        poll, spin_ns = self._epoll.poll, self.spin_ns
        now = clock()
        spin_end = last_active + self.busy_poll_ns
        while not pending():
            left = -1 if due is None else due - now
            if due is not None and left <= 0:
                return poll(0)  # due; but a look at the sockets first, so input never starves
            if now < spin_end or 0 <= left <= spin_ns:
                if ready := poll(0):
                    return ready
                now = clock()
                continue
            if idle():
                now = clock()
                continue
            self.sleeping = True
            if pending():  # again: a writer may have missed `sleeping`
                self.sleeping = False
                return []
            block = left - spin_ns
            if left < 0:
                ready = poll(-1)
            elif self._select_ok:
                ready = [(fd, 0) for fd in select.select(self._fds, [], [], block / 1e9)[0]]
            else:
                ready = poll((block // _MS) / 1000)
            self.sleeping = False
            if ready:
                return ready
            now = clock()
        return []

    def woken(self) -> None:
        """Reset the eventfd after it showed up in a ready list."""
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self.efd)

    def wake(self) -> None:
        """Wake `wait()`; thread-safe, and a no-op once closed."""
        with self._lock:  # never write to a closed (or reused) descriptor
            if not self._closed:
                os.eventfd_write(self.efd, 1)

    def add(self, fd: int) -> None:
        """Watch one more fd for input (a link's socket opened later)."""
        self._epoll.register(fd, select.EPOLLIN)
        self._fds.append(fd)
        self._select_ok = max(self._fds) < 1024

    def remove(self, fd: int) -> None:
        self._epoll.unregister(fd)
        self._fds.remove(fd)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._epoll.close()
                os.close(self.efd)
