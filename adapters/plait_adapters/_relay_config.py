"""`plait relay`'s configuration: a TOML file, flags, or both (flags win).

Everything a relay needs is checked here, before a socket is opened, and every problem
raises `RelayConfigError` with a message that names the key or flag at fault (the
command prints it and exits with status 2). The link list of the two ends must agree
link by link (same order); plait cannot check that for you.

A link on the command line is ``LOCAL=REMOTE[@IFACE][:RATE]``, for example
``10.0.1.1:7001=10.0.1.2:7001@wwan0:10mbit``; in TOML it is a ``[[link]]`` table with
``local`` and optionally ``remote``, ``interface`` and ``rate``. Addresses are
``host:port`` or ``[v6-host]:port``; rates are bits per second with an optional k, M
or G (``2M``, ``2mbit``, ``2000k``, ``2000000``). A rate is a ceiling (a data plan, a
radio's maximum): plait measures what each link carries and paces to that, so a link
whose rate nobody knows has none (`plait.LinkConfig.rate_bps` None). A remote of ``*``
(or, in TOML, no ``remote``) makes the link learn the peer's address from what arrives
and follow it (the peer behind NAT); only the responder may do that, the initiator must
know where to send.

Every number is checked for what it means: finite, not negative, within a bound that
keeps the relay working (a deadline up to a minute, periods up to a day, spins up to a
second, a CPU this process may run on). Files are read with a bound (a key file of at
most 4 KiB, a TOML file of at most 1 MiB), so ``--psk-file /dev/zero`` is refused
instead of filling the memory; ``--stats-json`` must name a file in a directory that
exists, checked now rather than when the relay stops. argparse's own usage errors are
one line too (`RelayConfigError`, like the rest).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn, TypeVar, cast

import attrs

import plait
from plait_adapters._links import Address, LinkSpec

__all__ = [
    "LOG_LEVELS",
    "RelayConfig",
    "RelayConfigError",
    "build_parser",
    "parse",
    "parse_address",
    "parse_link",
    "parse_rate",
]

_T = TypeVar("_T")

_RATE: Final = re.compile(r"(\d+(?:\.\d*)?)\s*([kmg]?)(bit)?(?:/s)?", re.IGNORECASE)
_SCALE: Final = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}
_MAX_RATE_BPS: Final = 10**11
"""plait's own bound (`plait.LinkConfig.rate_bps`)."""
_TOP_KEYS: Final = frozenset(
    {
        "link",
        "listen",
        "forward",
        "initiator",
        "psk_file",
        "latency_ms",
        "target_loss",
        "max_protection",
        "fec",
        "mtu",
        "busy_poll_us",
        "spin_us",
        "cpu",
        "stats_interval",
        "stats_json",
        "stats_log",
        "log_file",
        "log_level",
        "metrics_listen",
        "trace",
        "reopen_after",
        "once",
    }
)
_LINK_KEYS: Final = frozenset({"local", "remote", "interface", "rate"})
_LEARN: Final = "*"
"""The remote that means: learn the peer's address (the responder's links only)."""
_FEC_KEYS: Final = frozenset({"k", "m", "adaptive"})
MAX_KEY_FILE: Final = 4096
"""A key file larger than this is refused (it holds 32 bytes, or 64 hex digits)."""
MAX_TOML: Final = 1 << 20
MAX_LATENCY_MS: Final = 60_000.0
"""A relay's deadline: up to a minute (plait is for datagrams that are useless late)."""
MAX_PERIOD_S: Final = 86_400.0
"""`stats_interval` and `reopen_after`: up to a day."""
MAX_SPIN_US: Final = 1_000_000
"""`busy_poll_us` and `spin_us`: up to a second of spinning."""
_IFNAMSIZ: Final = 16
LOG_LEVELS: Final = ("debug", "info", "warning", "error")


class RelayConfigError(ValueError):
    """A relay setting is missing, malformed or out of range."""


@attrs.frozen
class RelayConfig:
    """One relay end. `links` and `rates_bps` are in link order, the links equal on
    both ends; a rate is each link's ceiling, None where it is unknown."""

    links: tuple[LinkSpec, ...]
    rates_bps: tuple[int | None, ...]
    listen: Address | None = None
    """The local UDP address applications send to (None: an ephemeral port)."""
    forward: Address | None = None
    """Where messages from the peer go (None: the last source seen on `listen`)."""
    initiator: bool = False
    psk: bytes | None = None
    latency_ms: float = 150.0
    target_loss: float = 1e-4
    """The share of messages protection may leave lost (`plait.Config.target_loss`)."""
    max_protection: float = 1.0
    """The most protection may add, as a share of the data (`plait.Config.max_protection`)."""
    fec: plait.FecConfig | None = attrs.field(factory=plait.FecConfig)
    mtu: int = 1500
    """Largest IP packet on any link: a bound; plait finds each path's own (`plait.pmtu`)."""
    busy_poll_us: int = 0
    """Spin this long after each datagram before sleeping (0: never; costs CPU)."""
    spin_us: int = 50
    """Spin this long before a pacing deadline instead of sleeping through it."""
    cpu: int | None = None
    stats_interval_s: float = 10.0
    """Seconds between stats lines when stderr is not a terminal (0: final stats only)."""
    stats_json: Path | None = None
    stats_log: Path | None = None
    """A file that gets one JSON line of stats (usable rate, each link's capacity) at
    every stats line, for a program to follow (`plait_adapters._relay_report.StatsLog`)."""
    log_file: Path | None = None
    """A file that gets the ``plait.*`` log records (`plait_adapters._log`), appended."""
    log_level: str = "info"
    """The least severe record written to `log_file`: one of `LOG_LEVELS`."""
    trace: Path | None = None
    """A `plait.tracelog` trace of what this end saw (`plait_adapters._relay_trace`)."""
    metrics_listen: Address | None = None
    """Where to serve Prometheus metrics over HTTP (`plait_adapters._relay_metrics`)."""
    reopen_after_s: float = 5.0
    """Open a new session when every link has been down this long (0: never)."""
    once: bool = False
    """Exit when the session ends or is lost, instead of opening a new one."""

    def plait_config(self) -> plait.Config:
        """The session's `plait.Config` (raises `RelayConfigError` if plait refuses it)."""
        try:
            return plait.Config(
                links=[plait.LinkConfig(rate_bps=r, ipv6=_is_v6(s)) for r, s in self._pairs()],
                fec=self.fec,
                psk=self.psk,
                latency_ns=round(self.latency_ms * 1_000_000),
                target_loss=self.target_loss,
                max_protection=self.max_protection,
                mtu=self.mtu,
                # the relay waits for its peer for ever and replaces a lost session
                # itself (`reopen_after`): the endpoint's own timeouts stay off
                handshake_timeout_ns=None,
                idle_timeout_ns=None,
            )
        except plait.errors.ConfigError as exc:
            raise RelayConfigError(str(exc)) from exc

    def _pairs(self) -> list[tuple[int | None, LinkSpec]]:
        return list(zip(self.rates_bps, self.links, strict=True))


def _is_v6(link: LinkSpec) -> bool:
    return ":" in link.local[0]


# --- values ----------------------------------------------------------------------------------


def parse_address(text: str, what: str, *, port_zero: bool = False) -> Address:
    """``host:port`` or ``[v6]:port`` (an empty host means every interface)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not host.isprintable():
        raise RelayConfigError(f"{what}: {text!r} is not host:port")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise RelayConfigError(f"{what}: write an IPv6 address as [{host}]:{port}")
    number = int(port)
    if not (0 if port_zero else 1) <= number <= 65535:
        raise RelayConfigError(f"{what}: port {number} is out of range")
    return (host or "0.0.0.0", number)  # noqa: S104  (an empty host asks for every interface)


def parse_rate(text: str | int, what: str) -> int:
    """Bits per second: ``2M``, ``2mbit``, ``2000k``, ``2000000``."""
    if isinstance(text, int) and not isinstance(text, bool):
        rate = text
    elif (
        isinstance(text, str)
        and (m := _RATE.fullmatch(text.strip()))
        and math.isfinite(scaled := float(m[1]) * _SCALE[m[2].lower()])
    ):
        rate = round(scaled)
    else:
        raise RelayConfigError(
            f"{what}: rate {text!r} is not bits per second (e.g. 10mbit, 10M, 2500k)"
        )
    if rate < plait.config.MIN_RATE_BPS:
        raise RelayConfigError(f"{what}: rate {rate} bit/s is below plait's minimum of 8 kbit/s")
    if rate > _MAX_RATE_BPS:
        raise RelayConfigError(f"{what}: rate {rate} bit/s is above plait's maximum of 100 Gbit/s")
    return rate


def _remote(text: str, what: str) -> Address | None:
    """A link's remote: ``host:port``, or ``*`` (None: learn it)."""
    return None if text.strip() == _LEARN else parse_address(text, what)


def _split_rate(rest: str) -> tuple[str, str, str | None]:
    """``REMOTE[@IFACE][:RATE]`` -> (REMOTE, IFACE or "", RATE or None). A remote holds
    one colon (``host:port``, ``[v6]:port``: the brackets' inside not counted) or none
    (``*``); a colon beyond that, or after the interface, starts the rate."""
    remote, at, iface = rest.partition("@")
    if at:
        iface, colon, rate = iface.partition(":")
        return remote, iface, rate if colon else None
    bare = remote.rpartition("]")[2] if remote.startswith("[") else remote
    if bare.count(":") > (0 if bare.startswith(_LEARN) else 1):
        remote, _, rate = remote.rpartition(":")
        return remote, "", rate
    return remote, "", None


def parse_link(text: str, index: int) -> tuple[LinkSpec, int | None]:
    """``LOCAL=REMOTE[@IFACE][:RATE]`` -> (spec, rate in bit/s or None: unknown); a
    REMOTE of ``*`` gives a spec with no remote (learn it)."""
    what = f"--link {text!r}"
    local, eq, rest = text.partition("=")
    if not eq:
        raise RelayConfigError(f"{what}: expected LOCAL=REMOTE[@IFACE][:RATE]")
    remote, iface, rate = _split_rate(rest)
    if "@" in rest and not iface:
        raise RelayConfigError(f"{what}: empty interface after @")
    spec = LinkSpec(
        parse_address(local, what, port_zero=True),
        _remote(remote, what),
        _interface(iface, what) or None,
    )
    return spec, None if rate is None else parse_rate(rate, f"link {index}")


def _interface(name: str, what: str) -> str:
    """A network interface name as Linux takes it: up to 15 bytes, no '/', ':',
    whitespace or control character ("" stays "": no interface)."""
    bad = not name.isprintable() or any(c in name for c in "/: ") or name in {".", ".."}
    if bad or len(name.encode()) >= _IFNAMSIZ:
        raise RelayConfigError(f"{what}: {name!r} is not an interface name")
    return name


def _read(path: Path, limit: int, what: str) -> bytes:
    """At most `limit` bytes of `path`; more is an error (a device, the wrong file)."""
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise RelayConfigError(f"{what} {str(path)!r}: {exc.strerror}") from exc
    except ValueError as exc:  # a NUL byte in the path
        raise RelayConfigError(f"{what} {str(path)!r}: {exc}") from exc
    if len(data) > limit:
        raise RelayConfigError(f"{what} {str(path)!r}: larger than {limit} bytes")
    return data


def _read_psk(path: Path) -> bytes:
    raw = _read(path, MAX_KEY_FILE, "psk file")
    if len(raw) == 32:
        return raw
    text = raw.strip()
    if len(text) == 64:
        try:
            return bytes.fromhex(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            pass
    raise RelayConfigError(
        f"psk file {str(path)!r}: expected 32 raw bytes or 64 hex digits, got {len(raw)} bytes"
    )


def _parse_fec(text: str) -> plait.FecConfig | None:
    if text.lower() in {"off", "none", "no"}:
        return None
    k, colon, m = text.partition(":")
    if not colon or not k.isdigit() or not m.isdigit():
        raise RelayConfigError(f"--fec {text!r}: expected K:M (e.g. 8:2) or off")
    return _fec({"k": int(k), "m": int(m)}, "--fec")


def _fec(table: Mapping[str, Any], what: str) -> plait.FecConfig:
    _known(table, _FEC_KEYS, what)
    try:
        return plait.FecConfig(
            k=_typed(table, "k", int, what, 8),
            m=_typed(table, "m", int, what, 2),
            adaptive=_typed(table, "adaptive", bool, what, True),
        )
    except plait.errors.ConfigError as exc:
        raise RelayConfigError(f"{what}: {exc}") from exc


# --- TOML ------------------------------------------------------------------------------------


def _known(table: Mapping[str, Any], keys: frozenset[str], what: str) -> None:
    unknown = sorted(set(table) - keys)
    if unknown:
        raise RelayConfigError(
            f"{what}: unknown key {unknown[0]!r} (known: {', '.join(sorted(keys))})"
        )


def _typed(table: Mapping[str, Any], key: str, kind: type[_T], what: str, default: _T) -> _T:
    value = table.get(key, default)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok, value = abs(value) < 2**63, float(value)
    if not ok:
        raise RelayConfigError(f"{what}: {key} must be {kind.__name__}, got {value!r}")
    return cast(_T, value)  # checked against `kind` just above


def _toml_link(table: object, where: str) -> tuple[LinkSpec, int | None]:
    if not isinstance(table, dict):
        raise RelayConfigError(f"{where}: write each link as a [[link]] table")
    _known(table, _LINK_KEYS, where)
    if "local" not in table:
        raise RelayConfigError(f"{where}: missing 'local'")
    local = parse_address(_typed(table, "local", str, where, ""), where, port_zero=True)
    remote = _remote(_typed(table, "remote", str, where, _LEARN), where)
    iface = _interface(_typed(table, "interface", str, where, ""), where)
    rate = parse_rate(table["rate"], where) if "rate" in table else None
    return LinkSpec(local, remote, iface or None), rate


def _toml_fec(value: object, what: str) -> plait.FecConfig | None:
    if value is False:
        return None
    if isinstance(value, dict):
        return _fec(value, f"{what}: fec")
    raise RelayConfigError(f"{what}: fec must be false or a table {{ k = 8, m = 2 }}")


_SCALARS: Final[dict[str, tuple[str, type]]] = {
    "initiator": ("initiator", bool),
    "latency_ms": ("latency_ms", float),
    "target_loss": ("target_loss", float),
    "max_protection": ("max_protection", float),
    "mtu": ("mtu", int),
    "busy_poll_us": ("busy_poll_us", int),
    "spin_us": ("spin_us", int),
    "cpu": ("cpu", int),
    "stats_interval": ("stats_interval_s", float),
    "reopen_after": ("reopen_after_s", float),
    "once": ("once", bool),
    "log_level": ("log_level", str),
}
"""TOML key -> (`RelayConfig` field, type) for the settings taken as they are."""


def _from_toml(path: Path) -> dict[str, Any]:
    """The file's settings, as keyword arguments of `RelayConfig` (only those it sets).
    Relative paths in it (psk_file, stats_json, stats_log, log_file) are relative to
    the file."""
    what = str(path)
    try:
        data = tomllib.loads(_read(path, MAX_TOML, "config file").decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise RelayConfigError(
            f"{what}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise RelayConfigError(f"{what}: {exc}") from exc
    _known(data, _TOP_KEYS, what)
    out: dict[str, Any] = {}
    if "link" in data:
        if not isinstance(data["link"], list):
            raise RelayConfigError(f"{what}: write each link as a [[link]] table")
        pairs = [_toml_link(t, f"{what}: link {i}") for i, t in enumerate(data["link"])]
        out["links"] = tuple(spec for spec, _ in pairs)
        out["rates_bps"] = tuple(rate for _, rate in pairs)
    for key in ("listen", "forward", "metrics_listen"):
        if key in data:
            text, any_port = _typed(data, key, str, what, ""), key == "metrics_listen"
            out[key] = parse_address(text, f"{what}: {key}", port_zero=any_port)
    if "psk_file" in data:
        out["psk"] = _read_psk(path.parent / _typed(data, "psk_file", str, what, ""))
    for key in ("stats_json", "stats_log", "log_file", "trace"):
        if key in data:
            out[key] = path.parent / _typed(data, key, str, what, "")
    if "fec" in data:
        out["fec"] = _toml_fec(data["fec"], what)
    for key, (field, kind) in _SCALARS.items():
        if key in data:
            out[field] = _typed(data, key, kind, what, kind())
    return out


# --- flags -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors (a flag that is not a number, an unknown flag)
    raised as one-line `RelayConfigError`s instead of a usage message and exit."""

    def error(self, message: str) -> NoReturn:
        raise RelayConfigError(f"{message} (see plait relay --help)")


_EPILOG: Final = """\
Both ends need the same links in the same order; exactly one is the --initiator.
A RATE is a ceiling (2M, 2mbit, 2000k); without one, plait measures what the link
carries. Addresses are HOST:PORT or [V6-HOST]:PORT.

example, an encoder's host (A) and a server's host (B), two links:
  A: plait relay --initiator --listen 127.0.0.1:5000 --psk-file key \\
       --link 10.0.1.1:7001=10.0.1.2:7001@wwan0 --link 10.0.2.1:7002=10.0.2.2:7002@wwan1
  B: plait relay --forward 127.0.0.1:6000 --psk-file key \\
       --link 10.0.1.2:7001=*  --link 10.0.2.2:7002=*
  (key: 32 random bytes, the same file on both ends: head -c 32 /dev/urandom > key)

Stops on SIGINT, SIGTERM or SIGHUP (status 0); 2 for a bad configuration, 1 if the
session failed. A TOML --config FILE takes the same settings, named as the flags
with _ for - ([[link]] tables with local, remote, interface, rate)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``plait relay`` argument parser (every default is None: "not given")."""
    p = _Parser(
        prog="plait relay",
        description="Carry UDP datagrams between two hosts over several plait links.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_EPILOG,
    )
    p.add_argument("--config", metavar="FILE", type=Path, help="a TOML file (flags override it)")
    p.add_argument(
        "--link",
        metavar="LOCAL=REMOTE[@IFACE][:RATE]",
        action="append",
        help="one link, repeated in link order (replaces the file's links); a REMOTE of * "
        "learns the peer's address (the responder's links only: a peer behind NAT); RATE "
        "is the most the link may carry (default: unknown, measured)",
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="the local UDP address to carry from")
    p.add_argument(
        "--forward",
        metavar="HOST:PORT",
        help="where to send what the peer carries (default: the last source seen)",
    )
    p.add_argument(
        "--initiator",
        action=argparse.BooleanOptionalAction,
        help="this end starts the session (exactly one end must)",
    )
    p.add_argument("--psk-file", type=Path, metavar="FILE", help="32 raw bytes or 64 hex digits")
    p.add_argument(
        "--latency-ms", type=float, metavar="MS", help="each datagram's deadline (default 150)"
    )
    p.add_argument(
        "--target-loss",
        type=float,
        metavar="SHARE",
        help="the share of messages protection may leave lost (default 1e-4)",
    )
    p.add_argument(
        "--max-protection",
        type=float,
        metavar="SHARE",
        help="the most FEC and copies may add, as a share of the data (default 1.0)",
    )
    p.add_argument("--fec", metavar="K:M|off", help="Reed-Solomon block (default 8:2, adaptive)")
    p.add_argument(
        "--mtu",
        type=int,
        metavar="BYTES",
        help="largest IP packet on any link; each path's is found by probing (default 1500)",
    )
    p.add_argument(
        "--busy-poll-us", type=int, metavar="US", help="spin after traffic (default 0: sleep)"
    )
    p.add_argument(
        "--spin-us", type=int, metavar="US", help="spin before a pacing deadline (default 50)"
    )
    p.add_argument("--cpu", type=int, metavar="N", help="pin the session's thread to this CPU")
    p.add_argument(
        "--stats-interval",
        type=float,
        metavar="SECONDS",
        help="stats line period when stderr is not a terminal (default 10; 0: only final)",
    )
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write final stats as JSON")
    p.add_argument(
        "--stats-log",
        type=Path,
        metavar="FILE",
        help="append a JSON line of stats (usable rate, link capacities) at every stats line",
    )
    p.add_argument(
        "--log-file",
        type=Path,
        metavar="FILE",
        help="append log records (links up and down, sessions and why they ended, drops "
        "every 10 s at most), timestamped, to FILE",
    )
    p.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        type=str.lower,
        help="the least severe record --log-file gets (default: info; debug adds the "
        "usable rate's changes)",
    )
    p.add_argument(
        "--trace",
        type=Path,
        metavar="FILE",
        help="write every message delivered or expired, link event and each link's bytes "
        "per second as JSON lines, for plait plot FILE",
    )
    p.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve live metrics for Prometheus at http://HOST:PORT/metrics (per link: state, "
        "RTT, loss, capacity, bytes, datagrams; per session: delivered, expired, re-sent, FEC);"
        " needs pip install 'plait[metrics]'",
    )
    p.add_argument(
        "--reopen-after",
        type=float,
        metavar="SECONDS",
        help="open a new session when every link has been down this long (default 5; 0: never)",
    )
    p.add_argument(
        "--once",
        action=argparse.BooleanOptionalAction,
        help="exit when the peer closes the session or it is lost, instead of waiting for "
        "the peer again",
    )
    return p


_FLAGS: Final = {
    "initiator": "initiator",
    "latency_ms": "latency_ms",
    "target_loss": "target_loss",
    "max_protection": "max_protection",
    "mtu": "mtu",
    "busy_poll_us": "busy_poll_us",
    "spin_us": "spin_us",
    "cpu": "cpu",
    "stats_interval": "stats_interval_s",
    "stats_json": "stats_json",
    "stats_log": "stats_log",
    "log_file": "log_file",
    "log_level": "log_level",
    "trace": "trace",
    "reopen_after": "reopen_after_s",
    "once": "once",
}
"""argparse dest -> `RelayConfig` field, for the flags taken as they are."""


def parse(argv: Sequence[str]) -> RelayConfig:
    """A `RelayConfig` from ``plait relay`` arguments.

    Raises:
        RelayConfigError: a setting is missing, malformed or inconsistent.
        SystemExit: argparse's own usage errors (status 2) and ``--help`` (status 0).
    """
    args = build_parser().parse_args(argv)
    kw: dict[str, Any] = {} if args.config is None else _from_toml(args.config)
    if args.link:
        pairs = [parse_link(text, i) for i, text in enumerate(args.link)]
        kw["links"] = tuple(spec for spec, _ in pairs)
        kw["rates_bps"] = tuple(rate for _, rate in pairs)
    for flag in ("listen", "forward", "metrics_listen"):
        text = getattr(args, flag)
        if text is not None:
            what, any_port = "--" + flag.replace("_", "-"), flag == "metrics_listen"
            kw[flag] = parse_address(text, what, port_zero=any_port)
    if args.psk_file is not None:
        kw["psk"] = _read_psk(args.psk_file)
    if args.fec is not None:
        kw["fec"] = _parse_fec(args.fec)
    given = {field: getattr(args, flag) for flag, field in _FLAGS.items()}
    kw.update({field: value for field, value in given.items() if value is not None})
    return _checked(kw)


def _checked(kw: dict[str, Any]) -> RelayConfig:
    links = kw.get("links", ())
    if not 1 <= len(links) <= plait.config.MAX_LINKS:
        raise RelayConfigError(
            f"give 1 to {plait.config.MAX_LINKS} links (--link or [[link]]), got {len(links)}"
        )
    if kw.get("initiator", False):
        for i, link in enumerate(links):
            if link.remote is None:
                raise RelayConfigError(
                    f"link {i}: the initiator needs the peer's address; a remote of '*' "
                    "(learn it from what arrives) is for the responder only"
                )
    if kw.get("listen") is None and kw.get("forward") is None:
        raise RelayConfigError("give --listen, --forward or both: nothing to carry otherwise")
    if not 0 < kw.get("latency_ms", 150.0) <= MAX_LATENCY_MS:  # also refuses nan
        raise RelayConfigError(
            f"latency_ms must be > 0 and <= {MAX_LATENCY_MS:.0f}, got {kw['latency_ms']}"
        )
    for key in ("busy_poll_us", "spin_us"):
        if not 0 <= kw.get(key, 0) <= MAX_SPIN_US:
            raise RelayConfigError(f"{key} must be in [0, {MAX_SPIN_US}], got {kw[key]}")
    for key in ("stats_interval_s", "reopen_after_s"):
        if not 0 <= kw.get(key, 0.0) <= MAX_PERIOD_S:  # nan would spin, inf overflows
            name = key.removesuffix("_s")
            raise RelayConfigError(f"{name} must be in [0, {MAX_PERIOD_S:.0f}] s, got {kw[key]}")
    _check_cpu(kw.get("cpu"))
    for key in ("stats_json", "stats_log", "log_file", "trace"):
        _check_stats_file(key, kw.get(key))
    _check_observing(kw)
    cfg = RelayConfig(**kw)
    cfg.plait_config()  # plait's own checks (mtu, fec, ...) now, not after sockets open
    return cfg


def _check_observing(kw: dict[str, Any]) -> None:
    """The log level is one we know; metrics need their extra."""
    if kw.get("log_level", "info") not in LOG_LEVELS:
        raise RelayConfigError(
            f"log_level must be one of {', '.join(LOG_LEVELS)}, got {kw['log_level']!r}"
        )
    if kw.get("metrics_listen") and importlib.util.find_spec("prometheus_client") is None:
        raise RelayConfigError(
            "--metrics-listen needs prometheus-client: pip install 'plait[metrics]'"
        )


def _check_cpu(cpu: int | None) -> None:
    if cpu is None:
        return
    allowed = os.sched_getaffinity(0)
    if cpu not in allowed:
        raise RelayConfigError(
            f"cpu {cpu} is not one this process may run on ({', '.join(map(str, sorted(allowed)))})"
        )


def _check_stats_file(key: str, path: Path | None) -> None:
    """A stats file is written later (the JSON stats when the relay stops): its
    directory must exist now."""
    if path is None:
        return
    if "\0" in str(path):
        raise RelayConfigError(f"{key} {str(path)!r}: a NUL byte in the path")
    try:
        is_dir, parent_ok = path.is_dir(), path.parent.is_dir()
    except OSError as exc:
        raise RelayConfigError(f"{key} {str(path)!r}: {exc.strerror}") from exc
    if is_dir:
        raise RelayConfigError(f"{key} {str(path)!r} is a directory")
    if not parent_ok:
        raise RelayConfigError(f"{key} {str(path)!r}: no directory {str(path.parent)!r}")
