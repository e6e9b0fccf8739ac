"""Link specs and their sockets: what every adapter binds, and the clock they all read.

A link is one UDP socket bound to a local address (optionally to a network interface
with SO_BINDTODEVICE) and connected to the peer's address for that link, so the kernel
drops datagrams from anyone else and `send()` needs no address. Link ids are the
positions in the list, the same on both ends (plait's wire format carries no link id).

A responder's link may have no remote (``remote=None``): it *learns* the peer's address,
as WireGuard does. Its socket is bound, not connected; every datagram is read with its
source address, and the link sends to the source of the last datagram the endpoint
accepted as the peer's (`_session.Peer`). So the initiator may sit behind NAT (a
cellular modem's carrier-grade NAT) and the NAT may re-map it mid-session. The
initiator has to know where to send: a link of its with no remote is a `LinkError`.

Sockets are non-blocking, IPv4 or IPv6 (chosen from the local address), with
receive/send buffers raised towards `rmem_max`/`wmem_max` so a burst from plait's pacer
is not dropped by the kernel. Ports are exclusive: no SO_REUSEADDR or SO_REUSEPORT, so a
second program (a second relay started with the same configuration) gets EADDRINUSE
instead of silently sharing the port and taking some of the peer's datagrams (UDP needs
neither option to rebind a port at once after a close: it has no TIME_WAIT).

A link whose modem is down is not a configuration error. Opening it fails with an
error that can go away by itself (`LinkError.transient`: its address is not on this
host yet, its interface is missing or down, there is no route); `LinkSockets` with
``retry=True`` (the raw adapter's ``retry_links``, which the relay uses) leaves such a
link closed and tries again with back-off, while the others run. Sending on a link
whose interface is down fails (ENETUNREACH and the like): the adapters count that and
carry on, and plait's link health marks the link DOWN from its silence.
"""

from __future__ import annotations

import errno
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

import plait

__all__ = [
    "OPEN_LATER",
    "STALE",
    "Address",
    "LinkError",
    "LinkSockets",
    "LinkSpec",
    "check",
    "clock",
    "open_socket",
    "open_sockets",
    "specs",
]

Address = tuple[str, int]
clock: Final = time.monotonic_ns
"""The clock every adapter feeds plait: CLOCK_MONOTONIC in integer ns (asyncio's
`loop.time()` and trio's default clock read the same clock, in float seconds)."""

SOCKET_BUFFER: Final = 4 * 1024 * 1024
"""Requested SO_RCVBUF/SO_SNDBUF; the kernel caps it at net.core.rmem_max/wmem_max."""


OPEN_LATER: Final = frozenset(
    {
        errno.EADDRNOTAVAIL,  # the local address is not on this host (yet): DHCP, a modem
        errno.ENODEV,  # SO_BINDTODEVICE: no such interface (yet): a USB modem unplugged
        errno.ENXIO,
        errno.ENETUNREACH,  # connect: no route, e.g. the interface is down
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
        errno.ENONET,
        socket.EAI_AGAIN,  # a remote host name, and no name server within reach
    }
)
"""Errors of opening a link that may go away by themselves (`LinkError.transient`).
Everything else, a port another program owns (EADDRINUSE), a malformed or unknown
address, no permission for SO_BINDTODEVICE, cannot work until someone changes
something."""

STALE: Final = frozenset({errno.ENODEV})
"""Send errors that mean the socket itself will never work again, whatever happens to
the network: its SO_BINDTODEVICE interface was removed. The socket keeps the old
interface index, so it still fails with ENODEV after an interface of the same name
comes back (checked in a namespace with a veth deleted and re-created); only a new
socket works. Other send errors (ENETUNREACH while an interface is down) end when the
network comes back, with the same socket."""

RETRY_FIRST_NS: Final = 500_000_000
"""A link that could not be opened is tried again after this long ..."""
RETRY_MAX_NS: Final = 10_000_000_000
"""... then after twice as long each time, up to this."""


class LinkError(OSError):
    """A link's socket could not be set up as specified (bind, interface, connect), or a
    link cannot be used as specified (no remote on the initiator)."""

    @property
    def transient(self) -> bool:
        """True if the cause may go away by itself (`OPEN_LATER`): the link may open
        later. False for what needs the operator (a port in use, a bad address)."""
        return self.errno in OPEN_LATER


@attrs.frozen
class LinkSpec:
    """One link: where to bind, where the peer's socket for this link is, and
    optionally the network interface to send through (needs CAP_NET_RAW).

    ``remote=None`` (a responder only): learn the peer's address from what arrives, and
    follow it when it changes (NAT rebinding); see the module docstring."""

    local: Address
    remote: Address | None
    interface: str | None = None


LinkLike = LinkSpec | tuple[Address, Address | None] | tuple[Address, Address | None, str | None]


def specs(links: Iterable[LinkLike]) -> tuple[LinkSpec, ...]:
    """Normalise (local, remote[, interface]) tuples into `LinkSpec`s."""
    return tuple(link if isinstance(link, LinkSpec) else LinkSpec(*link) for link in links)


def check(config: plait.Config, links: Sequence[LinkSpec], *, initiator: bool) -> None:
    """Raise `plait.errors.UsageError` if the specs do not match the config, and
    `LinkError` if the initiator has a link with no remote."""
    if len(links) != len(config.links):
        raise plait.errors.UsageError(
            f"{len(links)} link specs for a config of {len(config.links)} links"
        )
    if initiator:
        for i, link in enumerate(links):
            if link.remote is None:
                raise LinkError(
                    errno.EDESTADDRREQ,
                    f"link {i}: the initiator needs the peer's address (remote=None, "
                    "learning it from what arrives, is for the responder only)",
                )


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


_IP_MTU_DISCOVER: Final = getattr(socket, "IP_MTU_DISCOVER", 10)  # Linux's values, for
_IPV6_MTU_DISCOVER: Final = getattr(socket, "IPV6_MTU_DISCOVER", 23)  # Pythons before 3.12
_PMTUDISC_PROBE: Final = 3  # IP_PMTUDISC_PROBE and IPV6_PMTUDISC_PROBE


def dont_fragment(sock: socket.socket) -> None:
    """Send with don't-fragment set and without the kernel's own path MTU estimate
    (Linux's IP_PMTUDISC_PROBE): plait finds each path's MTU itself with padded probes
    (`plait.pmtu`, RFC 8899 §3: DPLPMTUD needs DF), so a datagram too big for the path
    must be lost, not cut into fragments that would pass the probe. Elsewhere the
    system's default stays (a datagram the kernel refuses to send is counted as a send
    error, EMSGSIZE, and plait takes it for a probe that was lost)."""
    if sys.platform != "linux":
        return
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_MTU_DISCOVER, _PMTUDISC_PROBE)
    else:
        sock.setsockopt(socket.IPPROTO_IP, _IP_MTU_DISCOVER, _PMTUDISC_PROBE)


def open_socket(link: LinkSpec, index: int = 0) -> socket.socket:
    """A non-blocking UDP socket bound to `link.local` and connected to `link.remote`
    (left unconnected when `link.remote` is None).

    Raises:
        LinkError: the address cannot be bound (in use: EADDRINUSE, exclusive ports) or
            connected, or the interface cannot be selected (SO_BINDTODEVICE needs root
            or CAP_NET_RAW); `LinkError.transient` says whether it may work later.
    """
    sock = socket.socket(_family(link.local[0]), socket.SOCK_DGRAM)
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        dont_fragment(sock)
        if link.interface is not None:
            try:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_BINDTODEVICE, link.interface.encode() + b"\0"
                )
            except PermissionError as exc:
                raise LinkError(
                    exc.errno,
                    f"link {index}: SO_BINDTODEVICE {link.interface!r} needs root or CAP_NET_RAW",
                ) from exc
            except OSError as exc:
                raise LinkError(
                    exc.errno, f"link {index}: interface {link.interface!r}: {exc.strerror}"
                ) from exc
        try:
            sock.bind(link.local)
        except OSError as exc:
            why = str(exc)
            if exc.errno == errno.EADDRINUSE:
                why = "the port is in use by another program (another relay?)"
            raise LinkError(
                exc.errno or errno.EINVAL, f"link {index}: cannot bind {link.local}: {why}"
            ) from exc
        try:
            if link.remote is not None:
                sock.connect(link.remote)
        except OSError as exc:
            raise LinkError(
                exc.errno or errno.EINVAL,
                f"link {index}: cannot connect to {link.remote}: {exc}",
            ) from exc
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def open_sockets(links: Sequence[LinkSpec]) -> list[socket.socket]:
    """One socket per link (see `open_socket`); all or none."""
    socks: list[socket.socket] = []
    try:
        for i, link in enumerate(links):
            socks.append(open_socket(link, i))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


class _Attempt:
    """A link waiting to be opened: when to try next, the back-off, the last error."""

    __slots__ = ("at", "backoff", "error")

    def __init__(self, at: int, backoff: int, error: str) -> None:
        self.at, self.backoff, self.error = at, backoff, error


class LinkSockets:
    """Each link's socket: open, or closed and waiting for its next attempt.

    With ``retry=False`` `open` is all or none, like `open_sockets`. With ``retry=True``
    a link whose opening fails with a transient error (`LinkError.transient`) stays
    closed and is tried again at `due()` by `attempt()`: `RETRY_FIRST_NS` later, then
    doubling up to `RETRY_MAX_NS`; `fail()` closes an open link whose socket went stale
    (`STALE`) and puts it there too. An error that needs the operator still raises from
    `open`; in a later attempt it is kept and retried like the others, because raising
    then would end a session that runs on the other links. Times are the caller's clock
    (`clock`, ns); nothing here blocks or reads a clock.
    """

    def __init__(self, links: Sequence[LinkSpec], *, retry: bool) -> None:
        self.links = tuple(links)
        self.retry = retry
        self.socks: list[socket.socket | None] = [None] * len(self.links)
        self.waiting: dict[int, _Attempt] = {}
        self._open = open_socket  # looked up now: a test may replace the module's

    def open(self, now: int) -> None:
        """Open every link (see the class docstring for what is left closed).

        Raises:
            LinkError: a link cannot be opened, and the error is not transient (or
                ``retry`` is off); every socket opened so far is closed again.
        """
        try:
            for i, link in enumerate(self.links):
                try:
                    self.socks[i] = self._open(link, i)
                except LinkError as exc:
                    if not (self.retry and exc.transient):
                        raise
                    self.waiting[i] = _Attempt(now + RETRY_FIRST_NS, RETRY_FIRST_NS, _why(exc))
        except BaseException:
            self.close()
            raise

    def due(self) -> int | None:
        """When the next waiting link is to be tried (None: none waits)."""
        return min((w.at for w in self.waiting.values()), default=None)

    def attempt(self, now: int) -> list[tuple[int, socket.socket]]:
        """Try each waiting link whose time has come; returns the links opened, each
        with its new socket."""
        opened = []
        for i, wait in list(self.waiting.items()):
            if wait.at > now:
                continue
            try:
                sock = self._open(self.links[i], i)
            except OSError as exc:
                wait.error = _why(exc)
                wait.backoff = min(2 * wait.backoff, RETRY_MAX_NS)
                wait.at = now + wait.backoff
                continue
            del self.waiting[i]
            self.socks[i] = sock
            opened.append((i, sock))
        return opened

    def fail(self, link: int, error: OSError, now: int) -> None:
        """Close `link`'s socket, which cannot work any more (`STALE`), and try a new
        one `RETRY_FIRST_NS` from now."""
        self._close(link)
        why = f"link {link}: stale socket: {error.strerror or error}"
        self.waiting[link] = _Attempt(now + RETRY_FIRST_NS, RETRY_FIRST_NS, why)

    def close_link(self, link: int) -> None:
        """Close `link` for good: no further attempts."""
        self._close(link)
        self.waiting.pop(link, None)

    def close(self) -> None:
        for link in range(len(self.socks)):
            self.close_link(link)

    def not_open(self) -> dict[int, str]:
        """Each waiting link, with the error of its last attempt."""
        return {link: wait.error for link, wait in sorted(self.waiting.items())}

    def _close(self, link: int) -> None:
        sock, self.socks[link] = self.socks[link], None
        if sock is not None:
            sock.close()


def _why(exc: OSError) -> str:
    """A `LinkError`'s own message (it names the link and the errno), else the text."""
    return exc.strerror if isinstance(exc, LinkError) and exc.strerror else str(exc)
