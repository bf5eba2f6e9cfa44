"""Choose a market's audit parameters (p, k, stake, slash) and quorum size n so every adversary's gain is negative.

Built on the closed forms of `veriml.sim.economics` (pure Python, no numpy), so `veriml params` runs on the
base install. The search is exhaustive over small grids; it minimises the audit scheme's extra compute
(p * k executions per job), then the stake a node must lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from veriml.sim.economics import ADVERSARIES, InvalidEconomics, Market, Scheme, applicable, gain, min_burn

# p in basis points: fine steps where the cheap answers live, coarser above 1%.
P_GRID_BPS: tuple[int, ...] = tuple(range(1, 100)) + tuple(range(100, 1000, 10)) + tuple(range(1000, 10_001, 100))
K_GRID: tuple[int, ...] = (1, 2, 3, 4, 5)
SLASH_GRID_BPS: tuple[int, ...] = (5000, 10_000)
STAKE_FACTORS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0)
MAX_QUORUM = 15


@dataclass(frozen=True)
class Choice:
    """The chosen parameters and the worst adversary's gain per scheme (margin = -worst gain, ETH per job)."""

    market: Market
    gains: dict[tuple[Scheme, str], float]

    def margin(self, scheme: Scheme) -> float:
        return -max(g for (s, _), g in self.gains.items() if s == scheme)

    @property
    def self_challenge_burn(self) -> float:
        """Smallest burn share at which an optimistic executor's self-challenge loses, at this market's watchers."""
        return min_burn("self_challenge", self.market)

    @property
    def audit_overhead(self) -> float:
        """Expected executions per job in the audit scheme, counting the asserter's."""
        return 1 + self.market.audit_p * self.market.audit_k


def scheme_gains(scheme: Scheme, m: Market) -> dict[tuple[Scheme, str], float]:
    return {(scheme, a): gain(scheme, a, m) for a in ADVERSARIES if applicable(scheme, a)}


def _audit_ok(m: Market) -> bool:
    return all(g < 0 for g in scheme_gains("audit", m).values())


def smallest_p(m: Market) -> float | None:
    """Smallest audit probability on the grid at which every audit adversary's gain is negative, or None."""
    for bps in P_GRID_BPS:
        if _audit_ok(m.with_(audit_p=bps / 10_000)):
            return bps / 10_000
    return None


def smallest_n(m: Market) -> int | None:
    """Smallest odd quorum size at which every quorum adversary's gain is negative, or None up to 15."""
    for n in range(1, MAX_QUORUM + 1, 2):
        if all(g < 0 for g in scheme_gains("quorum", m.with_(quorum_n=n)).values()):
            return n
    return None


def choose(base: Market) -> Choice:
    """Search stake, slash, k and p (audit) and n (quorum) for `base`'s prices, costs and collusion share."""
    best: tuple[float, float, Market] | None = None
    for factor in STAKE_FACTORS:
        for slash_bps in SLASH_GRID_BPS:
            for k in K_GRID:
                m = base.with_(stake=base.stake * factor, slash_bps=slash_bps, audit_k=k)
                p = smallest_p(m)
                if p is None:
                    continue
                key = (p * k, m.slash)
                if best is None or key < best[:2]:
                    best = (key[0], key[1], m.with_(audit_p=p))
        if best is not None:
            break  # the smallest stake that works wins over lower audit cost at a larger stake
    if best is None:
        raise InvalidEconomics(
            f"no audit parameters deter every adversary up to a stake of {base.stake * STAKE_FACTORS[-1]} ETH: "
            "raise the stake or the price, or lower the collusion share"
        )
    m = best[2]
    n = smallest_n(m)
    if n is None:
        raise InvalidEconomics(f"no odd quorum size up to {MAX_QUORUM} deters every adversary at these prices")
    m = m.with_(quorum_n=n)
    gains: dict[tuple[Scheme, str], float] = {}
    for scheme in ("quorum", "optimistic", "zk", "audit"):
        gains.update(scheme_gains(scheme, m))
    return Choice(m, gains)
