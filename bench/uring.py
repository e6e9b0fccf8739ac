"""io_uring against plain sockets for plait's datagram I/O, every candidate binding in one run.

    taskset -c 1 .venv/bin/python bench/uring.py            # ~35 s; bench/results/uring.json
    taskset -c 1 .venv/bin/python bench/uring.py --quick    # a smoke run, nothing written

Pin to one core: everything here runs in one process, on loopback, and the ratios
(each row's median / the plain-socket row's median, same run) are the result; absolute
microseconds move with the machine and its load.

Three cases, all with 1200-byte datagrams on connected UDP sockets over 127.0.0.1:

a) send: 16 datagrams spread over 4 sockets (4 links), as `datagrams_to_send` hands
   them over. Plain: 16 `sock.send()`. io_uring: 16 SEND SQEs in one submission (one
   `io_uring_enter`) and their 16 completions reaped. Timed: the whole batch; reported
   per datagram. The receivers are drained after each batch, untimed.
b) receive: 16 datagrams (4 per socket) sent with plain `send()` and then drained.
   Plain: `recv_into` a preallocated buffer (or `recv`) on each non-blocking socket until
   EAGAIN. io_uring: a multishot receive (IORING_RECV_MULTISHOT, provided-buffer ring)
   armed on every socket; the completions are reaped. Timed: the 16 sends AND the drain,
   because without DEFER_TASKRUN the kernel does io_uring's receive work (copying into a
   provided buffer, posting the completion) while the sending syscall returns; the
   "receive" column subtracts the same run's plain send cost (case a) from the total.
c) ping-pong: one datagram A -> B, B sends it back, A receives it; one process, one
   thread, so this is pure CPU per round trip (no wake-ups). Plain: 4 syscalls.
   io_uring: a send submitted per hop, the receive already armed (multishot).

Candidates (each row says which one; rows whose binding is missing are skipped with the
reason in the JSON): `uring-api` (PyPI, MIT) raw and through
`plait_adapters.uring.UringTransport`, with SQPOLL where the kernel allows it;
`liburing` (PyPI, CC0; its buffer-ring setup cannot be called from Python, so it uses
the older provided buffers, one SQE per returned buffer); cffi over the system's
liburing (Debian: liburing-dev), compiled at start-up in a temporary directory, driven
call by call from Python; and C loops compiled the same way, which show the floor with
no Python per datagram, io_uring against plain system calls, in all three cases.

SQPOLL rows run in cases of their own (a', c'), with the kernel poller moved to a CPU
this process is not pinned to, so that its spinning does not slow the other rows; the
share of a core that the poller used during the case is printed and recorded.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import os
import shutil
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "adapters"))

from _harness import write_json

from plait_adapters.uring import UringTransport

SIZE = 1200
LINKS = 4
BATCH = 16
PAYLOAD = bytes(range(256)) * 4 + bytes(SIZE - 1024)
SEND_TAG = 1 << 20  # user_data of send completions in the raw rows; receives carry a link

Round = Callable[[], int]  # runs one round, returns the timed ns


# --- sockets --------------------------------------------------------------------------


def _pair() -> tuple[socket.socket, socket.socket]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.bind(("127.0.0.1", 0))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.setblocking(False)
    a.connect(b.getsockname())
    b.connect(a.getsockname())
    return a, b


class Sockets:
    """LINKS connected pairs: tx[i] <-> rx[i]."""

    def __init__(self, n: int = LINKS) -> None:
        pairs = [_pair() for _ in range(n)]
        self.tx = [a for a, _ in pairs]
        self.rx = [b for _, b in pairs]

    def drain(self, socks: list[socket.socket]) -> int:
        n = 0
        for s in socks:
            while True:
                try:
                    s.recv(4096)
                except BlockingIOError:
                    break
                n += 1
        return n

    def close(self) -> None:
        for s in self.tx + self.rx:
            s.close()


ITEMS = [(PAYLOAD, i % LINKS) for i in range(BATCH)]


def _poller_tids() -> set[int]:
    return {
        int(t.name)
        for t in Path("/proc/self/task").iterdir()
        if (t / "comm").read_text().startswith("iou-sqp")
    }


def _other_cpu() -> int | None:
    """A CPU this process is not pinned to: where the SQPOLL rows put the kernel poller."""
    mine = os.sched_getaffinity(0)
    return next((c for c in range(os.cpu_count() or 1) if c not in mine), None)


OTHER_CPU = _other_cpu()


def _poller_cpu_ns() -> int:
    """CPU time of this process's SQPOLL kernel threads (named iou-sqp-PID), in ns."""
    total = 0
    tick = 1e9 / os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            if not (task / "comm").read_text().startswith("iou-sqp"):
                continue
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int((int(fields[11]) + int(fields[12])) * tick)  # utime + stime
    return total


# --- bindings ---------------------------------------------------------------------------


def _import(name: str) -> tuple[Any, str | None]:
    try:
        return importlib.import_module(name), None
    except ImportError as exc:
        return None, f"{name} not importable: {exc}"


CFFI_CDEF = """
struct io_uring { ...; };
struct io_uring_sqe { uint64_t user_data; ...; };
struct io_uring_cqe { uint64_t user_data; int32_t res; uint32_t flags; ...; };
struct io_uring_buf_ring { ...; };
int io_uring_queue_init(unsigned entries, struct io_uring *ring, unsigned flags);
void io_uring_queue_exit(struct io_uring *ring);
struct io_uring_sqe *io_uring_get_sqe(struct io_uring *ring);
void io_uring_prep_send(struct io_uring_sqe *sqe, int sockfd, const char *buf, size_t len,
                        int flags);
int io_uring_submit(struct io_uring *ring);
int io_uring_submit_and_wait(struct io_uring *ring, unsigned wait_nr);
unsigned io_uring_peek_batch_cqe(struct io_uring *ring, struct io_uring_cqe **cqes,
                                 unsigned count);
void io_uring_cq_advance(struct io_uring *ring, unsigned nr);
void io_uring_buf_ring_add(struct io_uring_buf_ring *br, void *addr, unsigned int len,
                           unsigned short bid, int mask, int buf_offset);
void io_uring_buf_ring_advance(struct io_uring_buf_ring *br, int count);
struct io_uring_buf_ring *plait_setup_buf_ring(struct io_uring *ring, unsigned entries,
                                               int bgid);
void plait_prep_recv_multishot(struct io_uring_sqe *sqe, int fd, int bgid);
int plait_c_uring_send(struct io_uring *ring, int *fds, const char *buf, unsigned len, int n);
int plait_c_send(int *fds, const char *buf, unsigned len, int n);
int plait_c_recv(int *fds, int nfds, char *buf, unsigned len);
int plait_c_uring_drain(struct io_uring *ring, struct io_uring_buf_ring *br, char *base,
                        unsigned size, int mask, int *fds, int bgid, int want);
int plait_c_pingpong_plain(int a, int b, const char *msg, unsigned len, char *buf);
int plait_c_pingpong_uring(struct io_uring *ring, struct io_uring_buf_ring *br, char *base,
                           unsigned size, int mask, int *fds, int bgid, const char *msg,
                           unsigned len);
"""

CFFI_SOURCE = r"""
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct io_uring_buf_ring *plait_setup_buf_ring(struct io_uring *ring, unsigned entries,
                                               int bgid) {
    void *mem = NULL;
    if (posix_memalign(&mem, 4096, entries * sizeof(struct io_uring_buf)))
        return NULL;
    memset(mem, 0, entries * sizeof(struct io_uring_buf));
    struct io_uring_buf_reg reg = {0};
    reg.ring_addr = (unsigned long)mem;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    if (io_uring_register_buf_ring(ring, &reg, 0)) { free(mem); return NULL; }
    io_uring_buf_ring_init((struct io_uring_buf_ring *)mem);
    return (struct io_uring_buf_ring *)mem;
}

void plait_prep_recv_multishot(struct io_uring_sqe *sqe, int fd, int bgid) {
    io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
}

/* The floor: n SEND SQEs, one enter, n completions reaped, no Python in the loop. */
int plait_c_uring_send(struct io_uring *ring, int *fds, const char *buf, unsigned len, int n) {
    for (int i = 0; i < n; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
        io_uring_prep_send(sqe, fds[i], buf, len, 0);
        sqe->user_data = i;
    }
    int got = 0, ret = io_uring_submit_and_wait(ring, n);
    if (ret < 0) return ret;
    while (got < n) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(ring, &cqe)) return -1;
        io_uring_cqe_seen(ring, cqe);
        got++;
    }
    return got;
}

/* The other floor: n send() system calls. */
int plait_c_send(int *fds, const char *buf, unsigned len, int n) {
    for (int i = 0; i < n; i++)
        if (send(fds[i], buf, len, 0) < 0) return -1;
    return n;
}

/* Receive floor, plain: recv() until EAGAIN on every socket. */
int plait_c_recv(int *fds, int nfds, char *buf, unsigned len) {
    int n = 0;
    for (int i = 0; i < nfds; i++)
        while (recv(fds[i], buf, len, MSG_DONTWAIT) >= 0) n++;
    return n;
}

static void rearm(struct io_uring *ring, int *fds, int bgid, unsigned long link) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    plait_prep_recv_multishot(sqe, fds[link], bgid);
    sqe->user_data = link;
    io_uring_submit(ring);
}

/* Receive floor, io_uring: reap multishot completions until `want` datagrams came;
   every buffer goes straight back to the ring. */
int plait_c_uring_drain(struct io_uring *ring, struct io_uring_buf_ring *br, char *base,
                        unsigned size, int mask, int *fds, int bgid, int want) {
    int n = 0;
    while (n < want) {
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        int returned = 0;
        io_uring_for_each_cqe(ring, head, cqe) {
            seen++;
            if (cqe->user_data >= (1u << 20)) continue;
            if (cqe->res > 0) {
                int bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
                io_uring_buf_ring_add(br, base + bid * size, size, bid, mask, returned++);
                n++;
            }
            if (!(cqe->flags & IORING_CQE_F_MORE)) rearm(ring, fds, bgid, cqe->user_data);
        }
        io_uring_buf_ring_advance(br, returned);
        io_uring_cq_advance(ring, seen);
        if (!seen && io_uring_wait_cqe(ring, &cqe)) return -1;
    }
    return n;
}

int plait_c_pingpong_plain(int a, int b, const char *msg, unsigned len, char *buf) {
    if (send(a, msg, len, 0) < 0) return -1;
    int n = recv(b, buf, 2048, MSG_DONTWAIT);
    if (n < 0 || send(b, buf, n, 0) < 0) return -1;
    return recv(a, buf, 2048, MSG_DONTWAIT);
}

static int hop(struct io_uring *ring, struct io_uring_buf_ring *br, char *base, unsigned size,
               int mask, int *fds, int bgid, const char *data, unsigned len, int src,
               unsigned long dst, char **out) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    io_uring_prep_send(sqe, fds[src], data, len, 0);
    sqe->user_data = 1u << 20;
    io_uring_submit(ring);
    for (;;) {
        struct io_uring_cqe *cqe;
        if (io_uring_wait_cqe(ring, &cqe)) return -1;
        unsigned long ud = cqe->user_data;
        int res = cqe->res;
        unsigned flags = cqe->flags;
        io_uring_cqe_seen(ring, cqe);
        if (ud >= (1u << 20)) continue;
        if (!(flags & IORING_CQE_F_MORE)) rearm(ring, fds, bgid, ud);
        if (ud == dst && res > 0) {
            int bid = flags >> IORING_CQE_BUFFER_SHIFT;
            *out = base + bid * size;
            io_uring_buf_ring_add(br, *out, size, bid, mask, 0);
            io_uring_buf_ring_advance(br, 1);
            return res;
        }
    }
}

/* Ping-pong floor, io_uring: a send SQE per hop, multishot receives on both sockets. */
int plait_c_pingpong_uring(struct io_uring *ring, struct io_uring_buf_ring *br, char *base,
                           unsigned size, int mask, int *fds, int bgid, const char *msg,
                           unsigned len) {
    char *got;
    int n = hop(ring, br, base, size, mask, fds, bgid, msg, len, 0, 1, &got);
    if (n < 0) return n;
    return hop(ring, br, base, size, mask, fds, bgid, got, n, 1, 0, &got);
}
"""


def _build_cffi() -> tuple[Any, Any, str | None]:
    """(ffi, lib) of a module compiled against the system liburing, or the reason not."""
    cffi, why = _import("cffi")
    if cffi is None:
        return None, None, why
    if not Path("/usr/include/liburing.h").exists():
        return None, None, "liburing.h missing (Debian: apt-get install liburing-dev)"
    build = tempfile.mkdtemp(prefix="plait-uring-cffi-")
    ffi_builder = cffi.FFI()
    ffi_builder.cdef(CFFI_CDEF)
    ffi_builder.set_source("_plait_uring_cffi", CFFI_SOURCE, libraries=["uring"])
    try:
        ffi_builder.compile(tmpdir=build, verbose=False)
    except Exception as exc:  # a missing compiler shows up as several exception types
        return None, None, f"compiling the cffi module failed: {exc}"
    sys.path.insert(0, build)
    try:
        module = importlib.import_module("_plait_uring_cffi")
    finally:
        sys.path.remove(build)
        shutil.rmtree(build, ignore_errors=True)  # the loaded module stays mapped
    return module.ffi, module.lib, None


def _liburing_version() -> str:
    """The system liburing's version, from its versioned shared object's name."""
    for lib_dir in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64"):
        for so in sorted(Path(lib_dir).glob("liburing.so.*.*")):
            return so.name.removeprefix("liburing.so.")
    return "unknown"


# --- the methods -----------------------------------------------------------------------------
# A method is a factory: given its own fresh sockets it returns (round, close), where
# round() runs one round and returns the timed nanoseconds.

Method = Callable[["Sockets"], tuple[Round, Callable[[], None]]]
perf = time.perf_counter_ns


class Bindings:
    """The candidate modules, None where missing (main() fills them in)."""

    ua: Any = None  # uring_api
    lu: Any = None  # liburing (PyPI)
    ffi: Any = None  # cffi over the system liburing
    lib: Any = None


def _drained(socks: Sockets, fn: Callable[[], None]) -> Round:
    """Time fn() (which sends BATCH datagrams on socks.tx), then drain socks.rx untimed."""

    def round_() -> int:
        t0 = perf()
        fn()
        t1 = perf()
        got = socks.drain(socks.rx)
        deadline = time.monotonic() + 1.0
        while got < BATCH and time.monotonic() < deadline:  # SQPOLL sends asynchronously
            got += socks.drain(socks.rx)
        if got != BATCH:
            raise RuntimeError(f"sent {BATCH}, received {got}")
        return t1 - t0

    return round_


def _send16(tx: list[socket.socket]) -> None:
    for data, link in ITEMS:
        tx[link].send(data)


class UaRing:
    """A uring-api ring with a multishot receive armed on `fds` (link = index)."""

    def __init__(self, flags: int, fds: list[int], buffers: int = 256) -> None:
        ua = Bindings.ua
        self.ring = ua.Ring(64, flags, True, 1024)
        self.more = ua.IORING_CQE_F_MORE
        self.group = self.ring.create_buf_group(2048, buffers)
        self.fds = fds
        self.handles = [self.arm(link) for link in range(len(fds))]
        self.ring.submit()

    def arm(self, link: int) -> Any:
        return self.ring.prepare_recv_multishot(self.fds[link], self.group, 0, link)

    def close(self) -> None:
        for h in self.handles:
            self.ring.prepare_cancel_nowait(h, no_deliver_multi=True)
        self.ring.submit()
        self.ring.wait(0.05)
        self.group.close()
        self.ring.close()


def _c_ring(entries: int = 64) -> Any:
    ring = Bindings.ffi.new("struct io_uring *")
    if Bindings.lib.io_uring_queue_init(entries, ring, 0):
        raise OSError("io_uring_queue_init failed")
    return ring


class CfBufRing:
    """A provided-buffer ring registered through the system liburing, via cffi."""

    def __init__(self, ring: Any, bgid: int, count: int = 256, size: int = 2048) -> None:
        ffi, lib = Bindings.ffi, Bindings.lib
        self.br = lib.plait_setup_buf_ring(ring, count, bgid)
        if self.br == ffi.NULL:
            raise OSError("io_uring_register_buf_ring failed")
        self.mem = ffi.new("char[]", count * size)
        self.base = ffi.cast("char *", self.mem)
        self.size = size
        self.mask = count - 1
        for bid in range(count):
            lib.io_uring_buf_ring_add(self.br, self.base + bid * size, size, bid, self.mask, bid)
        lib.io_uring_buf_ring_advance(self.br, count)


def _lu_provide(ring: Any, bufs: list[bytearray], bgid: int) -> None:
    """liburing (PyPI): hand `bufs` to the kernel as legacy provided buffers."""
    lu = Bindings.lu
    for bid, b in enumerate(bufs):
        sqe = lu.io_uring_get_sqe(ring)
        lu.io_uring_prep_provide_buffers(sqe, b, 1, bgid, bid)
        sqe.user_data = SEND_TAG
    lu.io_uring_submit_and_wait(ring, len(bufs))
    lu.io_uring_cq_advance(ring, lu.io_uring_cq_ready(ring))


def _lu_arm(ring: Any, fd: int, link: int, bgid: int) -> None:
    lu = Bindings.lu
    sqe = lu.io_uring_get_sqe(ring)
    lu.io_uring_prep_recv_multishot(sqe, fd, None, 0)
    sqe.flags |= lu.IOSQE_BUFFER_SELECT
    lu.io_uring_sqe_set_buf_group(sqe, bgid)
    sqe.user_data = link


def _cf_arm(ring: Any, fd: int, link: int, bgid: int) -> None:
    sqe = Bindings.lib.io_uring_get_sqe(ring)
    Bindings.lib.plait_prep_recv_multishot(sqe, fd, bgid)
    sqe.user_data = link


def _nothing() -> None:
    return None


# --- case a: send 16 over 4 links ------------------------------------------------------------


def a_plain(socks: Sockets) -> tuple[Round, Callable[[], None]]:
    tx = socks.tx
    return _drained(socks, lambda: _send16(tx)), _nothing


def a_uring_api(flags: int) -> Method:
    def make(socks: Sockets) -> tuple[Round, Callable[[], None]]:
        before = _poller_tids()
        ring = Bindings.ua.Ring(64, flags)
        if OTHER_CPU is not None:
            for tid in _poller_tids() - before:
                os.sched_setaffinity(tid, {OTHER_CPU})
        fds = [s.fileno() for s in socks.tx]
        construct = ring.construct_send

        def send() -> None:
            ring.prepare([construct(fds[link], data, 0, SEND_TAG) for data, link in ITEMS])
            ring.submit()
            left = BATCH
            while left:
                for c in ring.wait(1.0) or ():
                    if c.res < 0:
                        raise OSError(-c.res, "send")
                    left -= 1

        return _drained(socks, send), ring.close

    return make


def a_transport(sqpoll: bool) -> Method:
    def make(socks: Sockets) -> tuple[Round, Callable[[], None]]:
        t = UringTransport(socks.tx, sqpoll=sqpoll, sqpoll_cpu=OTHER_CPU if sqpoll else None)
        return _drained(socks, lambda: t.send_batch(ITEMS)), t.close

    return make


def a_liburing(socks: Sockets) -> tuple[Round, Callable[[], None]]:
    lu = Bindings.lu
    ring = lu.Ring()
    lu.io_uring_queue_init(64, ring, 0)
    cqe = lu.Cqe()
    fds = [s.fileno() for s in socks.tx]
    get_sqe = lu.io_uring_get_sqe
    prep_send = lu.io_uring_prep_send

    def send() -> None:
        for data, link in ITEMS:
            sqe = get_sqe(ring)
            prep_send(sqe, fds[link], data, 0)
            sqe.user_data = SEND_TAG
        lu.io_uring_submit_and_wait(ring, BATCH)
        n = 0
        it = lu.io_uring_cqe_iter_init(ring)
        while lu.io_uring_cqe_iter_next(it, cqe):
            if cqe[0].res < 0:
                raise OSError(-cqe[0].res, "send")
            n += 1
        lu.io_uring_cq_advance(ring, n)

    return _drained(socks, send), lambda: lu.io_uring_queue_exit(ring)


def a_cffi(socks: Sockets) -> tuple[Round, Callable[[], None]]:
    lib = Bindings.lib
    ring = _c_ring()
    fds = [s.fileno() for s in socks.tx]
    cqes = Bindings.ffi.new("struct io_uring_cqe *[64]")
    get_sqe = lib.io_uring_get_sqe
    prep_send = lib.io_uring_prep_send

    def send() -> None:
        for data, link in ITEMS:
            sqe = get_sqe(ring)
            prep_send(sqe, fds[link], data, len(data), 0)
            sqe.user_data = SEND_TAG
        lib.io_uring_submit_and_wait(ring, BATCH)
        n = lib.io_uring_peek_batch_cqe(ring, cqes, 64)
        for i in range(n):
            if cqes[i].res < 0:
                raise OSError(-cqes[i].res, "send")
        lib.io_uring_cq_advance(ring, n)

    return _drained(socks, send), lambda: lib.io_uring_queue_exit(ring)


def a_c_floor(uring: bool) -> Method:
    def make(socks: Sockets) -> tuple[Round, Callable[[], None]]:
        lib = Bindings.lib
        fds = Bindings.ffi.new("int[]", [socks.tx[link].fileno() for _, link in ITEMS])
        ring = _c_ring()

        def send() -> None:
            if uring:
                n = lib.plait_c_uring_send(ring, fds, PAYLOAD, SIZE, BATCH)
            else:
                n = lib.plait_c_send(fds, PAYLOAD, SIZE, BATCH)
            if n != BATCH:
                raise RuntimeError("C loop failed")

        return _drained(socks, send), lambda: lib.io_uring_queue_exit(ring)

    return make


# --- case b: 16 plain sends, then receive them --------------------------------------------------


def b_plain(into: bool) -> Method:
    def make(socks: Sockets) -> tuple[Round, Callable[[], None]]:
        tx, rx = socks.tx, socks.rx
        buf = bytearray(4096)

        def round_() -> int:
            t0 = perf()
            _send16(tx)
            got = []
            for s in rx:
                while True:
                    try:
                        got.append(s.recv_into(buf) if into else len(s.recv(4096)))
                    except BlockingIOError:
                        break
            t1 = perf()
            if len(got) != BATCH:
                raise RuntimeError(f"received {len(got)}")
            return t1 - t0

        return round_, _nothing

    return make


def b_uring_api(flags: int, wait_s: float) -> Method:
    def make(socks: Sockets) -> tuple[Round, Callable[[], None]]:
        tx = socks.tx
        u = UaRing(flags, [s.fileno() for s in socks.rx])
        ring, more = u.ring, u.more

        def round_() -> int:
            t0 = perf()
            _send16(tx)
            n = 0
            while n < BATCH:
                for c in ring.wait(wait_s) or ():
                    if c.res > 0:
                        view = memoryview(c.result)  # the provided buffer, no copy
                        n += view.nbytes == SIZE
                        view.release()  # back to the buffer ring
                    if not c.flags & more:
                        u.handles[c.user_data] = u.arm(c.user_data)
            t1 = perf()
            return t1 - t0

        return round_, u.close

    return make


def b_transport(socks: Sockets) -> tuple[Round, Callable[[], None]]:
    tx = socks.tx
    t = UringTransport(socks.rx)

    def round_() -> int:
        t0 = perf()
        _send16(tx)
        n = 0
        while n < BATCH:
            n += len(t.receive(0))
        t1 = perf()
        return t1 - t0

    return round_, t.close


def b_liburing(socks: Sockets) -> tuple[Round, Callable[[], None]]:
    lu = Bindings.lu
    tx = socks.tx
    fds = [s.fileno() for s in socks.rx]
    ring = lu.Ring()
    lu.io_uring_queue_init(512, ring, 0)
    cqe = lu.Cqe()
    bufs = [bytearray(2048) for _ in range(128)]
    _lu_provide(ring, bufs, 7)
    for link, fd in enumerate(fds):
        _lu_arm(ring, fd, link, 7)
    lu.io_uring_submit(ring)
    shift, more = lu.IORING_CQE_BUFFER_SHIFT, lu.IORING_CQE_F_MORE

    def round_() -> int:
        t0 = perf()
        _send16(tx)
        n = 0
        while n < BATCH:
            seen = 0
            it = lu.io_uring_cqe_iter_init(ring)
            while lu.io_uring_cqe_iter_next(it, cqe):
                e = cqe[0]
                seen += 1
                if e.user_data == SEND_TAG:
                    continue
                res, flags = e.res, e.flags
                if res > 0:
                    bid = flags >> shift
                    view = memoryview(bufs[bid])[:res]
                    n += view.nbytes == SIZE
                    view.release()
                    sqe = lu.io_uring_get_sqe(ring)  # the buffer goes back by an SQE
                    lu.io_uring_prep_provide_buffers(sqe, bufs[bid], 1, 7, bid)
                    sqe.user_data = SEND_TAG
                if not flags & more:
                    _lu_arm(ring, fds[e.user_data], e.user_data, 7)
            lu.io_uring_cq_advance(ring, seen)
        lu.io_uring_submit(ring)
        t1 = perf()
        return t1 - t0

    return round_, lambda: lu.io_uring_queue_exit(ring)


def b_cffi(socks: Sockets) -> tuple[Round, Callable[[], None]]:
    ffi, lib = Bindings.ffi, Bindings.lib
    tx = socks.tx
    fds = [s.fileno() for s in socks.rx]
    ring = _c_ring()
    br = CfBufRing(ring, 3)
    for link, fd in enumerate(fds):
        _cf_arm(ring, fd, link, 3)
    lib.io_uring_submit(ring)
    cqes = ffi.new("struct io_uring_cqe *[64]")
    more = 1 << 1  # IORING_CQE_F_MORE

    def round_() -> int:
        t0 = perf()
        _send16(tx)
        n = 0
        while n < BATCH:
            got = lib.io_uring_peek_batch_cqe(ring, cqes, 64)
            returned = 0
            for i in range(got):
                e = cqes[i]
                res, flags = e.res, e.flags
                if res > 0:
                    bid = flags >> 16
                    addr = br.base + bid * br.size
                    view = memoryview(ffi.buffer(addr, res))
                    n += view.nbytes == SIZE
                    view.release()
                    lib.io_uring_buf_ring_add(br.br, addr, br.size, bid, br.mask, returned)
                    returned += 1
                if not flags & more:
                    _cf_arm(ring, fds[e.user_data], e.user_data, 3)
            lib.io_uring_buf_ring_advance(br.br, returned)
            lib.io_uring_cq_advance(ring, got)
        t1 = perf()
        return t1 - t0

    return round_, lambda: lib.io_uring_queue_exit(ring)


def b_c_floor(uring: bool) -> Method:
    def make(socks: Sockets) -> tuple[Round, Callable[[], None]]:
        ffi, lib = Bindings.ffi, Bindings.lib
        tx = socks.tx
        fds = ffi.new("int[]", [s.fileno() for s in socks.rx])
        buf = ffi.new("char[]", 4096)
        ring = _c_ring()
        br = CfBufRing(ring, 5)
        if uring:
            for link in range(LINKS):
                _cf_arm(ring, fds[link], link, 5)
            lib.io_uring_submit(ring)

        def round_() -> int:
            t0 = perf()
            _send16(tx)
            if uring:
                n = lib.plait_c_uring_drain(ring, br.br, br.base, br.size, br.mask, fds, 5, BATCH)
            else:
                n = lib.plait_c_recv(fds, LINKS, buf, 4096)
            t1 = perf()
            if n != BATCH:
                raise RuntimeError(f"C drain got {n}")
            return t1 - t0

        return round_, lambda: lib.io_uring_queue_exit(ring)

    return make


# --- case c: ping-pong --------------------------------------------------------------------------


def c_plain(socks: Sockets) -> tuple[Round, Callable[[], None]]:
    a, b = socks.tx[0], socks.rx[0]
    buf = bytearray(4096)
    view = memoryview(buf)

    def round_() -> int:
        t0 = perf()
        a.send(PAYLOAD)
        n = b.recv_into(buf)
        b.send(view[:n])
        n = a.recv_into(buf)
        t1 = perf()
        if n != SIZE:
            raise RuntimeError("ping-pong lost its datagram")
        return t1 - t0

    return round_, _nothing


def c_uring_api(flags: int, wait_s: float) -> Method:
    def make(socks: Sockets) -> tuple[Round, Callable[[], None]]:
        u = UaRing(flags, [socks.tx[0].fileno(), socks.rx[0].fileno()], 64)
        ring, more, fds = u.ring, u.more, u.fds

        def hop(data: Any, src: int, dst: int) -> Any:
            ring.prepare_send(fds[src], data, 0, SEND_TAG)
            ring.submit()
            while True:
                for c in ring.wait(wait_s) or ():
                    link = c.user_data
                    if link == SEND_TAG:
                        continue
                    if not c.flags & more:
                        u.handles[link] = u.arm(link)
                    if link == dst and c.res > 0:
                        return c.result

        def round_() -> int:
            t0 = perf()
            got = hop(PAYLOAD, 0, 1)
            back = hop(got, 1, 0)  # sent straight from B's provided buffer
            t1 = perf()
            if back.length != SIZE:
                raise RuntimeError("ping-pong lost its datagram")
            return t1 - t0

        return round_, u.close

    return make


def c_transport(sqpoll: bool) -> Method:
    def make(socks: Sockets) -> tuple[Round, Callable[[], None]]:
        cpu = OTHER_CPU if sqpoll else None
        t = UringTransport([socks.tx[0], socks.rx[0]], sqpoll=sqpoll, sqpoll_cpu=cpu)

        def round_() -> int:
            t0 = perf()
            t.send_batch([(PAYLOAD, 0)])
            [(link, data)] = t.receive(None)
            t.send_batch([(data, link)])
            [(link, data)] = t.receive(None)
            t1 = perf()
            if link != 0 or len(data) != SIZE:
                raise RuntimeError("ping-pong lost its datagram")
            return t1 - t0

        return round_, t.close

    return make


def c_liburing(socks: Sockets) -> tuple[Round, Callable[[], None]]:
    lu = Bindings.lu
    fds = [socks.tx[0].fileno(), socks.rx[0].fileno()]
    ring = lu.Ring()
    lu.io_uring_queue_init(256, ring, 0)
    cqe = lu.Cqe()
    bufs = [bytearray(2048) for _ in range(64)]
    _lu_provide(ring, bufs, 9)
    _lu_arm(ring, fds[0], 0, 9)
    _lu_arm(ring, fds[1], 1, 9)
    lu.io_uring_submit(ring)
    shift, more = lu.IORING_CQE_BUFFER_SHIFT, lu.IORING_CQE_F_MORE

    def hop(data: Any, src: int, dst: int) -> tuple[bytearray, int]:
        sqe = lu.io_uring_get_sqe(ring)
        lu.io_uring_prep_send(sqe, fds[src], data, 0)
        sqe.user_data = SEND_TAG
        lu.io_uring_submit(ring)
        result: tuple[bytearray, int] | None = None
        while result is None:
            seen = 0
            it = lu.io_uring_cqe_iter_init(ring)
            while lu.io_uring_cqe_iter_next(it, cqe):
                e = cqe[0]
                seen += 1
                link, flags = e.user_data, e.flags
                if link == SEND_TAG:
                    continue
                if not flags & more:
                    _lu_arm(ring, fds[link], link, 9)
                if link == dst and e.res > 0:
                    bid = flags >> shift
                    result = (bufs[bid], e.res)
                    sqe = lu.io_uring_get_sqe(ring)  # returned with the next submit
                    lu.io_uring_prep_provide_buffers(sqe, bufs[bid], 1, 9, bid)
                    sqe.user_data = SEND_TAG
            lu.io_uring_cq_advance(ring, seen)
        return result

    def round_() -> int:
        t0 = perf()
        got, n = hop(PAYLOAD, 0, 1)
        _, n = hop(bytes(memoryview(got)[:n]), 1, 0)  # its send takes bytes
        t1 = perf()
        if n != SIZE:
            raise RuntimeError("ping-pong lost its datagram")
        return t1 - t0

    return round_, lambda: lu.io_uring_queue_exit(ring)


def c_cffi(socks: Sockets) -> tuple[Round, Callable[[], None]]:
    ffi, lib = Bindings.ffi, Bindings.lib
    fds = [socks.tx[0].fileno(), socks.rx[0].fileno()]
    ring = _c_ring()
    br = CfBufRing(ring, 4, 64)
    _cf_arm(ring, fds[0], 0, 4)
    _cf_arm(ring, fds[1], 1, 4)
    lib.io_uring_submit(ring)
    cqes = ffi.new("struct io_uring_cqe *[64]")
    more = 1 << 1

    def hop(data: Any, length: int, src: int, dst: int) -> tuple[Any, int]:
        sqe = lib.io_uring_get_sqe(ring)
        lib.io_uring_prep_send(sqe, fds[src], data, length, 0)
        sqe.user_data = SEND_TAG
        lib.io_uring_submit(ring)
        result = None
        while result is None:
            got = lib.io_uring_peek_batch_cqe(ring, cqes, 64)
            for i in range(got):
                e = cqes[i]
                link = e.user_data
                if link == SEND_TAG:
                    continue
                if not e.flags & more:
                    _cf_arm(ring, fds[link], link, 4)
                if link == dst and e.res > 0:
                    bid = e.flags >> 16
                    result = (br.base + bid * br.size, e.res)
                    lib.io_uring_buf_ring_add(br.br, result[0], br.size, bid, br.mask, 0)
                    lib.io_uring_buf_ring_advance(br.br, 1)
            lib.io_uring_cq_advance(ring, got)
        return result

    def round_() -> int:
        t0 = perf()
        got, n = hop(PAYLOAD, SIZE, 0, 1)
        _, n = hop(got, n, 1, 0)  # sent straight from the provided buffer
        t1 = perf()
        if n != SIZE:
            raise RuntimeError("ping-pong lost its datagram")
        return t1 - t0

    return round_, lambda: lib.io_uring_queue_exit(ring)


def c_c_floor(uring: bool) -> Method:
    def make(socks: Sockets) -> tuple[Round, Callable[[], None]]:
        ffi, lib = Bindings.ffi, Bindings.lib
        a, b = socks.tx[0].fileno(), socks.rx[0].fileno()
        fds = ffi.new("int[]", [a, b])
        buf = ffi.new("char[]", 4096)
        ring = _c_ring()
        br = CfBufRing(ring, 6, 64)
        if uring:
            _cf_arm(ring, a, 0, 6)
            _cf_arm(ring, b, 1, 6)
            lib.io_uring_submit(ring)

        def round_() -> int:
            t0 = perf()
            if uring:
                n = lib.plait_c_pingpong_uring(
                    ring, br.br, br.base, br.size, br.mask, fds, 6, PAYLOAD, SIZE
                )
            else:
                n = lib.plait_c_pingpong_plain(a, b, PAYLOAD, SIZE, buf)
            t1 = perf()
            if n != SIZE:
                raise RuntimeError("ping-pong lost its datagram")
            return t1 - t0

        return round_, lambda: lib.io_uring_queue_exit(ring)

    return make


# --- driver ----------------------------------------------------------------------------------


def _run(rounds: dict[str, Round], per_block: int, blocks: int, ops: int) -> dict[str, Any]:
    """Interleaved blocks of rounds; p50/p99 of the per-op time (round ns / ops)."""
    samples: dict[str, list[float]] = {k: [] for k in rounds}
    names = list(rounds)
    for fn in rounds.values():  # warm up
        for _ in range(50):
            fn()
    gc.disable()
    try:
        for block in range(blocks):
            for name in names[block % len(names) :] + names[: block % len(names)]:
                fn = rounds[name]
                acc = samples[name]
                for _ in range(per_block):
                    acc.append(fn() / ops)
    finally:
        gc.enable()
    out: dict[str, Any] = {}
    for name in names:
        s = sorted(samples[name])
        out[name] = {
            "p50_ns": statistics.median(s),
            "p99_ns": s[min(len(s) - 1, int(len(s) * 0.99))],
            "samples": len(s),
        }
    return out


def _phase(
    title: str,
    methods: dict[str, Method | None],
    *,
    links: int,
    per_block: int,
    blocks: int,
    ops: int,
    unit: str,
) -> dict[str, Any]:
    """Build every method on its own sockets, run them interleaved, print the table."""
    rounds: dict[str, Round] = {}
    closers: list[Callable[[], None]] = []
    skipped: dict[str, str] = {}
    for name, make in methods.items():
        if make is None:
            skipped[name] = "binding unavailable"
            continue
        socks = Sockets(links)
        closers.append(socks.close)
        try:
            rnd, close = make(socks)
        except (OSError, RuntimeError) as exc:
            skipped[name] = str(exc)
            continue
        rounds[name] = rnd
        closers.append(close)
    p0, w0 = _poller_cpu_ns(), time.perf_counter_ns()
    try:
        results = _run(rounds, per_block, blocks, ops)
        poller_share = (_poller_cpu_ns() - p0) / (time.perf_counter_ns() - w0)
    finally:
        for close in reversed(closers):
            close()
    base = next(iter(results))
    ref = results[base]["p50_ns"]
    print(f"\n{title}")
    print(f"{'':64} {'p50 us':>7} {'p99 us':>7} {'ratio':>6}")
    for name, r in results.items():
        r["ratio_p50_vs_plain"] = r["p50_ns"] / ref
        print(
            f"{name:64} {r['p50_ns'] / 1e3:7.2f} {r['p99_ns'] / 1e3:7.2f} "
            f"{r['ratio_p50_vs_plain']:6.2f}"
        )
    for name, why in skipped.items():
        print(f"{name:64} skipped: {why}")
    print(f"({unit}; ratio = p50 / the first row's p50, same run)")
    if poller_share > 0:
        print(f"SQPOLL kernel threads used {poller_share:.0%} of a core during this case")
    return {"rows": results, "skipped": skipped, "sqpoll_thread_core_share": poller_share}


LIBURING = _liburing_version()


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few samples, no JSON")
    args = parser.parse_args()
    blocks = 3 if args.quick else 15
    Bindings.ua, ua_why = _import("uring_api")
    Bindings.lu, lu_why = _import("liburing")
    Bindings.ffi, Bindings.lib, cf_why = _build_cffi()
    unavailable = {
        k: v for k, v in (("uring-api", ua_why), ("liburing", lu_why), ("cffi", cf_why)) if v
    }
    for k, v in unavailable.items():
        print(f"unavailable: {k}: {v}")
    ua, lu, cf = Bindings.ua is not None, Bindings.lu is not None, Bindings.lib is not None
    sqpoll = Bindings.ua.IORING_SETUP_SQPOLL if ua else 0
    defer = 0
    if ua:
        defer = Bindings.ua.IORING_SETUP_SINGLE_ISSUER | Bindings.ua.IORING_SETUP_DEFER_TASKRUN
    versions = {
        "kernel": os.uname().release,
        "uring-api": _dist_version("uring-api"),
        "uring-api bundled liburing": getattr(Bindings.ua, "__liburing_version__", None),
        "liburing (PyPI)": _dist_version("liburing"),
        "system liburing (cffi)": LIBURING if cf else None,
        "cpu affinity": sorted(os.sched_getaffinity(0)),
        "sqpoll thread cpu": OTHER_CPU,
    }
    print(versions)

    def pick(ok: bool, m: Method) -> Method | None:
        return m if ok else None

    common = {"links": LINKS, "per_block": 100, "blocks": blocks, "ops": BATCH}
    unit_a = "us per datagram"
    send = _phase(
        "a) send 16 x 1200 B over 4 UDP sockets",
        {
            "plain send() x16": a_plain,
            "uring-api: 16 SQEs, 1 submit, reap 16": pick(ua, a_uring_api(0)),
            "UringTransport.send_batch (1 submit; reaps the previous batch)": pick(
                ua, a_transport(False)
            ),
            "liburing (PyPI): 16 SQEs, 1 submit, reap 16": pick(lu, a_liburing),
            f"cffi + liburing {LIBURING}: 16 SQEs, 1 submit, reap 16": pick(cf, a_cffi),
            "C loop, no Python per datagram: 16 send()": pick(cf, a_c_floor(False)),
            "C loop, no Python per datagram: io_uring 16 SQEs, 1 enter": pick(cf, a_c_floor(True)),
        },
        unit=unit_a,
        **common,
    )
    send_sqpoll = _phase(
        f"a') the same with SQPOLL (the kernel poller pinned to CPU {OTHER_CPU}; a separate "
        "case so that its polling does not slow the other rows)",
        {
            "plain send() x16": a_plain,
            "uring-api SQPOLL: 16 SQEs, reap 16": pick(ua, a_uring_api(sqpoll)),
            "UringTransport SQPOLL .send_batch (no system call)": pick(ua, a_transport(True)),
        },
        unit=unit_a,
        **common,
    )
    recv = _phase(
        "b) 16 plain sends + receiving them, 4 UDP sockets",
        {
            "plain recv_into() until EAGAIN": b_plain(True),
            "plain recv() until EAGAIN (bytes)": b_plain(False),
            "uring-api: multishot, memoryview of the buffer": pick(ua, b_uring_api(0, 0.0)),
            "uring-api DEFER_TASKRUN: multishot, memoryview": pick(ua, b_uring_api(defer, 1.0)),
            "UringTransport.receive (bytes)": pick(ua, b_transport),
            "liburing (PyPI): multishot, legacy provided buffers": pick(lu, b_liburing),
            f"cffi + liburing {LIBURING}: multishot, buffer ring": pick(cf, b_cffi),
            "C loop, no Python per datagram: recv() until EAGAIN": pick(cf, b_c_floor(False)),
            "C loop, no Python per datagram: multishot, buffer ring": pick(cf, b_c_floor(True)),
        },
        unit="us per datagram, its send included",
        **common,
    )
    plain_send = send["rows"]["plain send() x16"]["p50_ns"]
    print("receive alone = the row's p50 - plain send()'s p50 from case a, us per datagram:")
    for name, r in recv["rows"].items():
        r["receive_only_p50_ns"] = r["p50_ns"] - plain_send
        print(f"  {name:62} {r['receive_only_p50_ns'] / 1e3:7.2f}")
    pp = {"links": 1, "per_block": 400, "blocks": blocks, "ops": 1}
    pingpong = _phase(
        "c) one-packet ping-pong in one process",
        {
            "plain: send, recv_into, send, recv_into": c_plain,
            "uring-api: send SQE + multishot receive": pick(ua, c_uring_api(0, 0.0)),
            "uring-api DEFER_TASKRUN: send SQE + multishot receive": pick(
                ua, c_uring_api(defer, 1.0)
            ),
            "UringTransport: send_batch + receive": pick(ua, c_transport(False)),
            "liburing (PyPI): send SQE + multishot receive": pick(lu, c_liburing),
            f"cffi + liburing {LIBURING}: send SQE + multishot receive": pick(cf, c_cffi),
            "C, no Python: send, recv, send, recv": pick(cf, c_c_floor(False)),
            "C, no Python: send SQE + multishot receive": pick(cf, c_c_floor(True)),
        },
        unit="us per round trip",
        **pp,
    )
    pingpong_sqpoll = _phase(
        f"c') ping-pong with SQPOLL (the kernel poller pinned to CPU {OTHER_CPU})",
        {
            "plain: send, recv_into, send, recv_into": c_plain,
            "UringTransport SQPOLL: send_batch + receive": pick(ua, c_transport(True)),
        },
        unit="us per round trip",
        **pp,
    )
    if not args.quick:
        path = write_json(
            "uring",
            {
                "versions": versions,
                "unavailable": unavailable,
                "datagram_bytes": SIZE,
                "send_16_over_4": send,
                "send_16_over_4_sqpoll": send_sqpoll,
                "send_plus_receive_16_over_4": recv,
                "pingpong": pingpong,
                "pingpong_sqpoll": pingpong_sqpoll,
            },
        )
        print(f"\nwrote {path}")


if __name__ == "__main__":
    if not sys.platform.startswith("linux"):
        sys.exit("io_uring is Linux-only")
    main()
