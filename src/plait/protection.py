"""Protection by cost: re-sends, FEC and copies, chosen for what the deadline needs.

A message sent on a link with loss ``p`` is lost with probability ``p``; three repairs
can lower that, each at a price on the wire:

* **ARQ** (a re-send after the loss is found) costs only what is lost (``p`` of the
  bytes), but needs time: the loss shows after about the link's RTT plus the peer's
  feedback delay and a reordering window, and the re-send then needs the fastest
  link's one-way delay. Each further round needs the fastest link's RTT plus the
  feedback delay again. With ``r`` rounds that fit the budget, the residual loss is
  ``p * q^r`` (``q``: the repair links' loss).
* **FEC** (``m`` parity per ``k`` records, `plait.fec`) costs ``m / k`` always, and
  repairs without a round trip: a record stays lost only when more than ``m`` of the
  ``k + m`` packets of its block are. What FEC cannot rebuild, ARQ still may.
* **Copies** (the same record on a second link) cost 100 %, and leave ``p * q``.

The policy takes the cheapest that brings the residual under `Config.target_loss`
(1e-4 by default: 99.99 % delivered), within `Config.max_protection` (the most extra
bytes, as a fraction of the data, a user allows): ARQ alone when the budget holds
enough rounds; else the least FEC that, with whatever rounds fit, reaches the target;
copies only for a message that neither can save in time. Losses come in bursts on
real links; the FEC side keeps at least the mean burst length of parity (`plait.fec`).

All figures are per link, weighted by each link's share of the traffic. The model and
its numbers are in docs/design.md ("Protection").
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

__all__ = [
    "ALWAYS",
    "MAX_ROUNDS",
    "NEVER",
    "LinkView",
    "arq_rounds",
    "choose_block",
    "choose_fec",
    "choose_protection",
    "copy_below",
    "fec_left",
    "needs_copy",
    "plan_residual",
    "repair_loss",
    "residual",
    "residual_arq",
    "residual_with_copies",
]

MAX_ROUNDS: Final = 8  # beyond this, q^r is 0 for any loss a link stays UP with
_MAX_LOSS: Final = 0.5
_BURSTY: Final = 1.5
"""Mean loss burst (datagrams) from which losses are not independent: a burst hides
itself from loss detection and takes the re-send's neighbours too, so ARQ alone is not
trusted and FEC sized to the burst is kept."""

LinkView = tuple[float, float, int, int]
"""One link as the policy sees it: (share of traffic, loss, time to find a loss on it
and land a re-send elsewhere (ns), one further round (ns))."""


def arq_rounds(budget_ns: int, first_ns: int, round_ns: int) -> int:
    """How many re-sends can still land within `budget_ns`: the first needs
    `first_ns`, each further one `round_ns` more."""
    if budget_ns < first_ns or first_ns <= 0:
        return 0
    if round_ns <= 0:
        return MAX_ROUNDS
    return min(MAX_ROUNDS, 1 + (budget_ns - first_ns) // round_ns)


def residual_arq(loss: float, repair_loss: float, rounds: int) -> float:
    """The chance a record is never delivered: lost, then every re-send lost too."""
    return min(loss, _MAX_LOSS) * min(repair_loss, _MAX_LOSS) ** rounds


def fec_left(k: int, m: int, p: float) -> float:
    """The chance that a record lost in a block of ``k + m`` is not rebuilt: ``m`` or
    more of the other ``k + m - 1`` packets are lost too (independent losses)."""
    if m <= 0:
        return 1.0
    n = k + m - 1
    # at least 0: the sum of what is rebuilt can round to a hair above 1
    return max(0.0, 1.0 - sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(m)))


def repair_loss(links: Sequence[LinkView]) -> float:
    """The loss a re-send is taken to meet: the traffic-weighted loss of the links. (Not
    the least lossy link's: its estimate, over a few hundred datagrams, reads 0 % now
    and then on a 1 % link, and a residual of p * 0 sent re-sends alone where they
    failed 40 % of the time.)"""
    total = sum(share for share, _, _, _ in links)
    if total <= 0:
        return max((loss for _, loss, _, _ in links), default=0.0)
    return sum(share * loss for share, loss, _, _ in links) / total


def residual(links: Sequence[LinkView], budget_ns: int, fec_left: float = 1.0) -> float:
    """The traffic-weighted chance a record is never delivered: lost on its link, not
    rebuilt by FEC (`fec_left`), and every re-send that fits `budget_ns` lost too (at
    `repair_loss`)."""
    if not links:
        return 0.0
    total = sum(share for share, _, _, _ in links) or 1.0
    repair = repair_loss(links)
    out = 0.0
    for share, loss, first_ns, round_ns in links:
        rounds = arq_rounds(budget_ns, first_ns, round_ns)
        out += share / total * residual_arq(loss, repair, rounds)
    return out * fec_left


def _arq_alone(links: Sequence[LinkView], budget_ns: int, burst: float, target: float) -> bool:
    """Re-sends alone reach the target (or nothing is lost), and losses are not bursty."""
    lossy = any(loss > 0.0 for _, loss, _, _ in links)
    return residual(links, budget_ns) <= target and (burst < _BURSTY or not lossy)


def choose_fec(
    links: Sequence[LinkView],
    *,
    budget_ns: int,
    k: int,
    m_max: int,
    burst: float,
    target: float,
    max_protection: float,
) -> int:
    """The parity count of `choose_protection`'s plan."""
    return choose_protection(
        links,
        budget_ns=budget_ns,
        k=k,
        m_max=m_max,
        burst=burst,
        target=target,
        max_protection=max_protection,
    )[0]


def choose_protection(
    links: Sequence[LinkView],
    *,
    budget_ns: int,
    k: int,
    m_max: int,
    burst: float,
    target: float,
    max_protection: float,
) -> tuple[int, bool]:
    """(m, copies): the parity count per block of `k` records (0: no FEC), and whether
    the messages FEC leaves short of the target may also go on a second link (False
    only where their copies would not fit the cap; the per-message rule, `needs_copy`,
    still decides which, by the time each has left), that
    with the re-sends that fit `budget_ns` bring the residual loss under `target` at
    the least cost: parity ``m / k`` plus the share of the traffic copied, within
    `max_protection` (so at most ``m_max``, and at least the mean loss burst). When no
    plan within the cap reaches the target, the one that comes closest."""
    if not links or _arq_alone(links, budget_ns, burst, target):
        return 0, True  # ARQ alone does (or nothing is lost); urgent messages may be copied
    return _best(links, budget_ns, k, m_max, burst, target, max_protection)[1:]


def choose_block(
    links: Sequence[LinkView],
    *,
    budget_ns: int,
    k_max: int,
    m_max: int,
    burst: float,
    target: float,
    max_protection: float,
) -> tuple[int, int, bool]:
    """(k, m, copies): `choose_protection`'s plan with the block size chosen too, up to
    `k_max` (what the traffic brings while a block may stay open). Where ``m_max``
    parity cannot bring a block of `k_max` to the target, a smaller block with the
    same parity may: at 10 % loss, (16, 6) leaves 1.8e-3 of the records lost, (8, 6)
    1.3e-4, at twice the cost; the cheapest that reaches the target wins."""
    if not links or _arq_alone(links, budget_ns, burst, target):
        return k_max, 0, True
    best = (*_best(links, budget_ns, k_max, m_max, burst, target, max_protection), k_max)
    for k in range(k_max - 1, 0, -1):
        if not best[0][0]:
            break  # reached: a smaller block needs as much parity per record or more
        found = (*_best(links, budget_ns, k, m_max, burst, target, max_protection), k)
        if found[0] < best[0]:
            best = found
    _, m, copies, k = best
    return k, m, copies


def _best(
    links: Sequence[LinkView],
    budget_ns: int,
    k: int,
    m_max: int,
    burst: float,
    target: float,
    max_protection: float,
) -> tuple[tuple[bool, float, float], int, bool]:
    """(its key, m, copies) of the best plan for blocks of `k`: the cheapest that
    reaches the target, else the one that comes closest."""
    total = sum(share for share, _, _, _ in links) or 1.0
    p = _block_loss(links)
    cap = min(m_max, int(max_protection * k + 1e-9))
    floor = max(1, math.ceil(burst)) if burst > 1 else 1
    ways = (True, False) if len(links) > 1 else (False,)  # a copy needs a second link
    best, best_key = (cap, False), (True, math.inf, math.inf)
    for m in range(min(floor, cap), cap + 1):
        if not m:
            continue
        left = fec_left(k, m, p)
        for copies in ways:
            copied, res = residual_with_copies(links, budget_ns, left, target, copies=copies)
            cost = m / k + copied / total
            if cost > max_protection + 1e-9:
                continue
            # the cheapest that reaches the target; if none does, the one closest to it
            key = (res > target, cost if res <= target else res, cost)
            if key < best_key:
                best, best_key = (m, copies), key
    return best_key, best[0], best[1]


def plan_residual(
    links: Sequence[LinkView], *, budget_ns: int, k: int, m: int, copies: bool, target: float
) -> float:
    """The traffic-weighted residual loss a plan leaves by the model: blocks of `k`
    records with `m` parity (0: none), the re-sends that fit `budget_ns`, and, with
    `copies`, a second copy of what they leave above `target` (what `choose_protection`
    weighs; above `target` where no plan within the cap reaches it)."""
    left = fec_left(k, m, _block_loss(links))
    return residual_with_copies(links, budget_ns, left, target, copies=copies)[1]


def _block_loss(links: Sequence[LinkView]) -> float:
    """The loss a block spread over the links meets: their traffic-weighted loss."""
    total = sum(share for share, _, _, _ in links) or 1.0
    return min(_MAX_LOSS, sum(share * loss for share, loss, _, _ in links) / total)


def residual_with_copies(
    links: Sequence[LinkView], budget_ns: int, left: float, target: float, *, copies: bool
) -> tuple[float, float]:
    """(the traffic `needs_copy` will send twice when FEC leaves `left`, and the
    traffic-weighted residual loss then): a copied record is lost only if its copy is
    lost too."""
    repair = repair_loss(links)
    copied = out = total = 0.0
    for share, loss, first_ns, round_ns in links:
        total += share
        lost = residual_arq(loss, repair, arq_rounds(budget_ns, first_ns, round_ns)) * left
        if copies and lost > target:
            copied += share
            lost *= min(repair, _MAX_LOSS)
        out += share * lost
    return copied, out / (total or 1.0)


def needs_copy(
    loss: float,
    repair_loss: float,
    rounds: int,
    fec: tuple[int, int],
    *,
    target: float,
    max_protection: float,
    block_loss: float | None = None,
) -> bool:
    """Whether one message should also go on a second link: what ARQ (`rounds` re-sends
    fit its deadline) and FEC (``(k, m)`` of its block; m = 0: none) leave of a loss
    is above `target`, and copies are allowed (`max_protection` >= 1). `loss` is its
    own link's; the rest of its block is spread over all links, so the chance FEC
    rebuilds it is taken at `block_loss` (the traffic-weighted loss; None: `loss`).
    Copies are for the few messages nothing else saves (a slow link, a deadline
    shorter than a round trip); the common case is sized by `choose_fec`, so they
    cost little on average."""
    k, m = fec
    if max_protection < 1.0:
        return False
    others = loss if block_loss is None else block_loss
    return residual_arq(loss, repair_loss, rounds) * fec_left(k, m, others) > target


NEVER: Final = -(1 << 62)
"""`copy_below` when no time left is short enough for a copy."""
ALWAYS: Final = 1 << 62
"""... and when every time left is."""


def copy_below(
    loss: float,
    repair_loss: float,
    first_ns: int,
    round_ns: int,
    fec: tuple[int, int],
    *,
    target: float,
    max_protection: float,
    block_loss: float | None = None,
) -> int:
    """`needs_copy` as a time threshold: a message with less than this left (ns) needs a
    copy, with this or more it does not; the same answer as `needs_copy` with the re-sends
    `arq_rounds` fits in the time left, but computed once for a link instead of per
    message (more time, more re-sends, less loss)."""
    if first_ns <= 0:
        return (
            NEVER
            if not needs_copy(
                loss,
                repair_loss,
                0,
                fec,
                target=target,
                max_protection=max_protection,
                block_loss=block_loss,
            )
            else ALWAYS
        )
    for rounds in range(MAX_ROUNDS + 1):
        if not needs_copy(
            loss,
            repair_loss,
            rounds,
            fec,
            target=target,
            max_protection=max_protection,
            block_loss=block_loss,
        ):
            return NEVER if rounds == 0 else first_ns + (rounds - 1) * max(0, round_ns)
    return ALWAYS
