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
SO_REUSEADDR and receive/send buffers raised towards `rmem_max`/`wmem_max` so a burst
from plait's pacer is not dropped by the kernel.
"""

from __future__ import annotations

import errno
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Final

import attrs

import plait

__all__ = [
    "Address",
    "LinkError",
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


class LinkError(OSError):
    """A link's socket could not be set up as specified (bind, interface, connect), or a
    link cannot be used as specified (no remote on the initiator)."""


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


def open_socket(link: LinkSpec, index: int = 0) -> socket.socket:
    """A non-blocking UDP socket bound to `link.local` and connected to `link.remote`
    (left unconnected when `link.remote` is None).

    Raises:
        LinkError: the address cannot be bound or connected, or the interface cannot be
            selected (SO_BINDTODEVICE needs root or CAP_NET_RAW).
    """
    sock = socket.socket(_family(link.local[0]), socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
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
            raise LinkError(
                exc.errno or errno.EINVAL, f"link {index}: cannot bind {link.local}: {exc}"
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
