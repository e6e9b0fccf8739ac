"""Configuration: frozen, validated once at construction, shared by both ends.

Every value has a unit in its name or docstring (``_ns`` is integer nanoseconds,
``_bps`` bits per second). Out-of-range values raise `plait.errors.ConfigError` when the
config is built, never later on the hot path.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import Any

import attrs

from plait._types import NS_PER_MS, NS_PER_S
from plait.errors import ConfigError, UsageError
from plait.wire import UDP_IPV4_OVERHEAD, UDP_IPV6_OVERHEAD

__all__ = ["Config", "FecConfig", "HealthConfig", "LinkConfig", "Scheduling"]

MAX_LINKS = 16
MIN_RATE_BPS = 8_000
MAX_RATE_BPS = 10**11
MAX_MESSAGE = 65_536
#: The longest deadline budget: the wire carries deadlines as u32 µs of the sender's
#: clock, which the receiver places within ±2^31 µs (35.8 minutes) of its own.
MAX_LATENCY_NS = 30 * 60 * NS_PER_S


def _positive(name: str, value: int) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def check_budget(budget_ns: int, name: str) -> None:
    """Raises UsageError unless `budget_ns` is an int in 1 .. `MAX_LATENCY_NS`: a deadline
    budget the wire's u32 µs deadline field can carry (`send`, `set_latency`)."""
    if type(budget_ns) is not int or not 0 < budget_ns <= MAX_LATENCY_NS:
        raise UsageError(
            f"{name} must be in 1..{MAX_LATENCY_NS} ns (30 minutes, what the wire can carry;"
            f" 0 or less: already passed), got {budget_ns!r}"
        )


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _validate_range(lo: float, hi: float) -> Any:
    ints = type(lo) is int and type(hi) is int  # a count or a time: no float, no bool

    def check(inst: object, attr: attrs.Attribute[Any], value: float) -> None:
        if type(value) is bool or (ints and type(value) is not int):
            raise ConfigError(f"{attr.name} must be an int, got {value!r}")
        if not lo <= value <= hi:
            raise ConfigError(f"{attr.name} must be in [{lo}, {hi}], got {value}")

    return check


def _validate_rate(inst: object, attr: attrs.Attribute[Any], value: int | None) -> None:
    if value is None:
        return
    if type(value) is not int:
        raise ConfigError(f"{attr.name} must be an int (bit/s) or None, got {value!r}")
    if not MIN_RATE_BPS <= value <= MAX_RATE_BPS:
        raise ConfigError(f"{attr.name} must be in [{MIN_RATE_BPS}, {MAX_RATE_BPS}] bit/s")


def _validate_positive(inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    if type(value) is not int:  # a float or bool here would wedge the clock arithmetic
        raise ConfigError(f"{attr.name} must be an int, got {value!r}")
    _positive(attr.name, value)


def _validate_latency(inst: object, attr: attrs.Attribute[Any], value: int) -> None:
    _validate_positive(inst, attr, value)
    if value < NS_PER_MS:  # a budget shorter than any round trip: every message expires
        raise ConfigError(f"{attr.name} is in ns and must be >= 1 ms (1_000_000), got {value}")
    if value > MAX_LATENCY_NS:  # the wire carries deadlines as u32 µs (±35.8 minutes)
        raise ConfigError(f"{attr.name} must be <= 30 minutes ({MAX_LATENCY_NS}), got {value}")


def _validate_timeout(inst: object, attr: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None:
        _validate_positive(inst, attr, value)


class Scheduling(enum.Enum):
    """How the sender picks a link for each packet."""

    DWRR = "dwrr"
    """Deficit weighted round robin in proportion to each link's weight (default)."""
    EARLIEST_ARRIVAL = "earliest"
    """The link where the packet would arrive first: pacing backlog + serialization +
    one-way delay."""


@attrs.frozen
class LinkConfig:
    """One link. Its id is its index in `Config.links`, the same on both ends."""

    rate_bps: int | None = attrs.field(default=None, validator=_validate_rate)
    """An upper bound on what this link carries, in bit/s (a data plan, a radio's
    maximum), or None: unknown. Either way plait measures what the link really carries
    and paces to that (`plait.capacity`); a number is a ceiling, never a promise."""
    ipv6: bool = False
    """Counts 48 bytes of IPv6+UDP header per datagram instead of IPv4's 28."""

    @property
    def overhead(self) -> int:
        """IP + UDP header bytes each datagram costs on this link."""
        return UDP_IPV6_OVERHEAD if self.ipv6 else UDP_IPV4_OVERHEAD


@attrs.frozen
class HealthConfig:
    """Link health: probing, the up/down bound, and the degraded-state thresholds.

    A link is declared down when no round trip has been confirmed on it for
    ``probe_interval_ns * down_after_probes`` (default 100 ms x 3 = 300 ms).
    """

    probe_interval_ns: int = attrs.field(default=100 * NS_PER_MS, validator=_validate_positive)
    down_after_probes: int = attrs.field(default=3, validator=_validate_range(1, 100))
    probation_ns: int = attrs.field(default=250 * NS_PER_MS, validator=_validate_positive)
    """How long a recovered link must stay good before it gets its full share back;
    doubled for every demotion in a row (flap damping), up to `probation_max_ns`."""
    probation_max_ns: int = attrs.field(default=30 * NS_PER_S, validator=_validate_positive)
    loss_degrade: float = attrs.field(default=0.10, validator=_validate_range(0.0, 1.0))
    """Loss fraction above which a link is degraded."""
    loss_recover: float = attrs.field(default=0.03, validator=_validate_range(0.0, 1.0))
    """Loss fraction it must stay under to recover (hysteresis)."""
    rtt_degrade_factor: float = attrs.field(default=3.0, validator=_validate_range(1.0, 1000.0))
    """Degraded when smoothed RTT exceeds this many times the link's own minimum ..."""
    rtt_recover_factor: float = attrs.field(default=1.5, validator=_validate_range(1.0, 1000.0))
    """... and recovered only when it is back under this many times the minimum ..."""
    rtt_slack_ns: int = attrs.field(default=20 * NS_PER_MS, validator=_validate_range(0, 10**10))
    """... plus this slack, so that links with a tiny minimum RTT do not flap on noise."""
    degraded_share: float = attrs.field(default=0.25, validator=_validate_range(0.0, 1.0))
    """A degraded link's weight is multiplied by this."""
    min_rtt_window_ns: int = attrs.field(default=10 * NS_PER_S, validator=_validate_positive)

    def __attrs_post_init__(self) -> None:
        _check(self.loss_recover <= self.loss_degrade, "loss_recover must be <= loss_degrade")
        _check(
            self.rtt_recover_factor <= self.rtt_degrade_factor,
            "rtt_recover_factor must be <= rtt_degrade_factor",
        )
        _check(self.probation_ns <= self.probation_max_ns, "probation_ns > probation_max_ns")

    @property
    def down_after_ns(self) -> int:
        """The documented failover bound: silence this long marks a link down."""
        return self.probe_interval_ns * self.down_after_probes


@attrs.frozen
class FecConfig:
    """Reed-Solomon FEC: blocks of up to `k` data packets protected by `m` parity packets."""

    k: int = attrs.field(default=16, validator=_validate_range(1, 64))
    """Records per block (at most, when adaptive)."""
    m: int = attrs.field(default=6, validator=_validate_range(1, 16))
    """Parity per block (at most, when adaptive: `plait.protection` picks the least that
    reaches `Config.target_loss`, often none when re-sends fit the deadline)."""
    flush_ns: int | None = attrs.field(default=None, validator=_validate_timeout)
    """Longest a block stays open before its parity goes out; None: a quarter of the
    latency budget."""
    adaptive: bool = True
    """Let k and m follow measured loss and the time budget, within these bounds."""


def _links(value: Iterable[LinkConfig]) -> tuple[LinkConfig, ...]:
    return tuple(value)


def _validate_links(
    inst: object, attr: attrs.Attribute[Any], value: tuple[LinkConfig, ...]
) -> None:
    _check(1 <= len(value) <= MAX_LINKS, f"1..{MAX_LINKS} links, got {len(value)}")
    for link in value:
        _check(isinstance(link, LinkConfig), f"links must be LinkConfig, got {type(link)}")


def _validate_psk(inst: object, attr: attrs.Attribute[Any], value: bytes | None) -> None:
    _check(value is None or len(value) == 32, "psk must be 32 bytes or None")


@attrs.frozen
class Config:
    """One session's configuration; both ends must use equal configs."""

    links: tuple[LinkConfig, ...] = attrs.field(converter=_links, validator=_validate_links)
    fec: FecConfig | None = FecConfig()
    psk: bytes | None = attrs.field(default=None, validator=_validate_psk)
    latency_ns: int = attrs.field(default=150 * NS_PER_MS, validator=_validate_latency)
    """Default deadline budget per message: ``send(..., deadline=None)`` means now + this
    (at least 1 ms, at most `MAX_LATENCY_NS`: 30 minutes, what the wire's deadline field
    can carry)."""
    mtu: int = attrs.field(default=1500, validator=_validate_range(576, 65_535))
    """Largest IP packet (bytes, IP and UDP headers included) plait may send on any link:
    an upper bound, not a promise. Each link's path MTU is found by probing (DPLPMTUD,
    RFC 8899, `plait.pmtu`): datagrams start at 1280 bytes (the IPv6 minimum; or this
    bound if lower) and grow to what each path is shown to carry, up to this. The
    default, Ethernet's 1500, lets a 1316-byte video datagram travel whole on ordinary
    paths; set it lower to cap what is probed, or to 1280 or less to probe nothing."""
    pmtu_raise_ns: int = attrs.field(default=600 * NS_PER_S, validator=_validate_positive)
    """How long a link whose path MTU was found below `mtu` keeps it before probing for
    more again (RFC 8899's PMTU_RAISE_TIMER)."""
    scheduling: Scheduling = Scheduling.DWRR
    adaptive_weights: bool = False
    """Weights from measured delivery rate and loss instead of the configured rates."""
    health: HealthConfig = HealthConfig()
    max_message: int = attrs.field(default=MAX_MESSAGE, validator=_validate_range(1, MAX_MESSAGE))
    send_buffer_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=_validate_positive)
    """Bound on bytes queued for sending; beyond it `send` refuses (backpressure)."""
    streams: int = attrs.field(default=8, validator=_validate_range(1, 256))
    feedback_interval_ns: int = attrs.field(default=10 * NS_PER_MS, validator=_validate_positive)
    """Longest the receiver waits, after new data, before sending a FEEDBACK (one due
    within a quarter of this goes with the data that arrives then)."""
    target_loss: float = attrs.field(default=1e-4, validator=_validate_range(1e-9, 0.5))
    """The residual loss protection aims for (1e-4: 99.99 % of messages delivered): re-sends,
    FEC and copies are chosen, by cost, to reach it (`plait.protection`)."""
    max_protection: float = attrs.field(default=1.0, validator=_validate_range(0.0, 16.0))
    """The most protection may add on the wire, as a fraction of the data (FEC parity
    per record, copies count 1.0 each; below 1.0 no copies are made; 0: re-sends only)."""
    auto_duplicate: bool = True
    """Send a second copy on the next best link when a message's remaining budget is too
    short for a lost packet to be detected and re-sent in time, and neither FEC nor
    anything else can bring its loss under `target_loss`."""
    handshake_timeout_ns: int | None = attrs.field(
        default=5 * NS_PER_S, validator=_validate_timeout
    )
    """An endpoint not established this long after it was made ends (`SessionClosed`
    with `CloseReason.HANDSHAKE_TIMEOUT`, `WRONG_PSK` or `ROLE_CONFLICT`); None: it waits
    for its peer for ever (a relay's responder). Like SRT's SRTO_CONNTIMEO (3 s)."""
    idle_timeout_ns: int | None = attrs.field(default=5 * NS_PER_S, validator=_validate_timeout)
    """An established session whose links have all been DOWN this long ends
    (`CloseReason.IDLE_TIMEOUT`): the peer vanished. None: it waits for ever. The peer
    is declared gone after about ``health.down_after_ns`` + this (0.3 + 5 s); like
    SRT's SRTO_PEERIDLETIMEO (5 s) and QUIC's idle timeout."""
