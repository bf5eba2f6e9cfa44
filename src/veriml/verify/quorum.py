"""The quorum rule, as the contract applies it (JobMarket._tally + OutputMatching.largestCluster).

Pure: takes the reveals (None for a node that did not reveal) and returns who wins and who is slashed,
so nodes and clients can predict a settlement and tests can check the contract against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from veriml.types import Digest
from veriml.verify.digest import digests_match


@dataclass(frozen=True)
class Tally:
    """Outcome of a quorum: the winning digest (if a strict majority agreed), winners and slashed indices."""

    majority: bool
    digest: Digest | None
    winners: tuple[int, ...]
    slashed: tuple[int, ...]


def tally(reveals: Sequence[Digest | None], policy: str = "tokens", threshold: int = 0) -> Tally:
    """Group reveals around the digest matching the most others; a strict majority of all n wins.

    With a majority, everyone outside the cluster (dissenters and no-shows) is slashed. Without one,
    only those who did not reveal are.
    """
    n = len(reveals)
    best, size = -1, 0
    for i, d in enumerate(reveals):
        if d is None:
            continue
        count = sum(1 for e in reveals if e is not None and digests_match(policy, threshold, d, e))
        if count > size:  # strict: the first of equal clusters wins, as on-chain
            best, size = i, count
    if size * 2 > n:
        center = reveals[best]
        assert center is not None
        winners = tuple(
            i for i, d in enumerate(reveals) if d is not None and digests_match(policy, threshold, center, d)
        )
        return Tally(True, center, winners, tuple(i for i in range(n) if i not in winners))
    return Tally(False, None, (), tuple(i for i, d in enumerate(reveals) if d is None))


def settlement(fee: int, n: int, winners: int, slashed_total: int) -> tuple[int, int]:
    """(each winner's credit, the user's refund), as `JobMarket._pay` computes them."""
    refund = fee + slashed_total
    each = 0
    if winners:
        each = fee // n + slashed_total // winners
        refund -= each * winners
    return each, refund
