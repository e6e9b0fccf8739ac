"""`plait relay`'s local socket: the UDP socket applications send to and receive from.

Bound to ``listen``; or, with only ``forward``, to an ephemeral port on the address the
kernel sends to the forward destination from (127.0.0.1 for a local one), taking
datagrams from the forward destination alone (see `plait_adapters.relay`).
"""

from __future__ import annotations

import errno
import socket

import attrs

from plait_adapters._links import SOCKET_BUFFER, Address
from plait_adapters._relay_config import RelayConfig, RelayConfigError

__all__ = ["Local", "local_socket", "source_for"]


@attrs.frozen
class Local:
    sock: socket.socket
    dest: Address | None
    """The forward destination, resolved (None: reply to the last source)."""
    only_from: Address | None
    """The one source the socket takes datagrams from (None: anyone)."""
    note: str | None
    """Something the operator should know about how it was bound."""


def _resolve(addr: Address, what: str) -> tuple[socket.AddressFamily, Address]:
    """`addr` as the kernel will use it (a host name looked up once, here)."""
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(addr[0], addr[1], type=socket.SOCK_DGRAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise RelayConfigError(f"{what}: cannot resolve {addr[0]!r}: {exc}") from exc
    return family, (str(sockaddr[0]), int(sockaddr[1]))


def source_for(family: socket.AddressFamily, dest: Address) -> tuple[str, str | None]:
    """The local address the kernel sends to `dest` from (127.0.0.1 for a local
    destination), learnt by connecting a UDP socket, which sends nothing; the wildcard
    and a note if there is no route to `dest` now."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(dest)
        except OSError as exc:
            wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"  # noqa: S104  (filtered by source)
            return wildcard, (
                f"no route to the forward address now ({exc.strerror}): the local socket "
                "listens on every address, and takes datagrams from the forward address only"
            )
        return str(probe.getsockname()[0]), None


def local_socket(cfg: RelayConfig) -> Local:
    """The relay's local UDP socket: bound to `listen`; or, with only `forward`, to an
    ephemeral port on the forward destination's side, taking datagrams from it alone."""
    dest = only_from = note = None
    family = socket.AF_INET
    if cfg.forward is not None:
        family, dest = _resolve(cfg.forward, "forward")
    if cfg.listen is not None:
        addr = cfg.listen
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    elif dest is not None:
        host, note = source_for(family, dest)
        addr, only_from = (host, 0), dest
    else:  # pragma: no cover  (the configuration has listen, forward or both)
        raise RelayConfigError("give --listen, --forward or both")
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
        try:
            sock.bind(addr)
        except OSError as exc:
            why = exc.strerror
            if exc.errno == errno.EADDRINUSE:
                why = "the port is in use by another program (another relay?)"
            raise OSError(exc.errno, f"cannot bind the local address {addr}: {why}") from exc
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return Local(sock, dest, only_from, note)
