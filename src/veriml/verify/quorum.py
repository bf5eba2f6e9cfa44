"""The quorum rule, as the contract applies it (QuorumJobs._tally + OutputMatching.largestCluster).

Pure: takes the reveals (None for a node that did not reveal) and returns who wins and who is slashed,
so nodes and clients can predict a settlement and tests can check the contract against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_hash.auto import keccak

from veriml.types import Digest
from veriml.verify.digest import digests_match

# QuorumJobs.INPUT_UNAVAILABLE: what a node reveals when the job's input was not available to it. It is an
# abstention: never in a cluster, never paid, never slashed.
INPUT_UNAVAILABLE = Digest(keccak(b"veriml: input unavailable"))


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
    only those who did not reveal are. An INPUT_UNAVAILABLE reveal is an abstention: never slashed.
    """
    n = len(reveals)
    votes = [None if d == INPUT_UNAVAILABLE else d for d in reveals]
    abstained = {i for i, d in enumerate(reveals) if d == INPUT_UNAVAILABLE}
    best, size = -1, 0
    for i, d in enumerate(votes):
        if d is None:
            continue
        count = sum(1 for e in votes if e is not None and digests_match(policy, threshold, d, e))
        if count > size:  # strict: the first of equal clusters wins, as on-chain
            best, size = i, count
    if size * 2 > n:
        center = votes[best]
        assert center is not None
        winners = tuple(i for i, d in enumerate(votes) if d is not None and digests_match(policy, threshold, center, d))
        return Tally(True, center, winners, tuple(i for i in range(n) if i not in winners and i not in abstained))
    return Tally(False, None, (), tuple(i for i, d in enumerate(reveals) if d is None))


def distributable(slashed: int, burn_bps: int) -> int:
    """What of a slash may be paid on (JobEscrow._slash burns `burn_bps` of it)."""
    return slashed - slashed * burn_bps // 10_000


def settlement(fee: int, n: int, winners: int, slashed_total: int) -> tuple[int, int]:
    """(each winner's credit, the user's refund), as `QuorumJobs._pay` computes them; `slashed_total` is
    the distributable part of the slashes. Without winners the user's compensation is capped at its fee."""
    if not winners:
        return 0, fee + min(slashed_total, fee)
    each = fee // n + slashed_total // winners
    return each, fee + slashed_total - each * winners
