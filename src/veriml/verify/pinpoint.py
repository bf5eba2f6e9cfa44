"""Pinpointing a disagreement between two parties' commitments, as pure functions over digests (the two
narrowing levels of a Verde dispute, arXiv 2502.19405, section 3).

1. **Steps**: both parties hash the training state after every step of a segment; state 0 is agreed (the
   checkpoint they start from) and the last is not. `bisect_steps` halves the range on each round, asking
   whether the parties agree at the midpoint, and ends at one step s whose start state is agreed and whose
   end state is not: ceil(log2(n)) rounds.
2. **Operators**: inside step s both parties commit the step's trace as a Merkle tree over one leaf per
   value (`veriml.training.graph`). `first_difference` walks down the two trees from the root, always into
   the leftmost child whose hashes differ, to the first leaf that differs: every leaf before it is the
   same in both trees, so every input of that operator is agreed, and a referee recomputes that operator
   alone. Rounds: the tree's depth, ceil(log2(leaves)).

A leaf binds its own index (the trees use OpenZeppelin's sorted-pair hash, which does not bind order), so a
party cannot move a leaf to another position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from veriml.verify.merkle import MerkleTree


@dataclass(frozen=True)
class Pinpoint:
    """Where a dispute narrowed to and after how many rounds."""

    index: int
    rounds: int


def bisect_steps(n: int, agree: Callable[[int], bool]) -> Pinpoint:
    """The step `s` (0-based, in 0..n-1) with `agree(s)` and not `agree(s + 1)`, where `agree(i)` says
    whether the parties' hashes of state i match; `agree(0)` must hold and `agree(n)` must not."""
    if n < 1:
        raise ValueError("a segment has at least one step")
    lo, hi, rounds = 0, n, 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if agree(mid):
            lo = mid
        else:
            hi = mid
        rounds += 1
    return Pinpoint(lo, rounds)


def bisect_roots(a: Sequence[bytes], b: Sequence[bytes]) -> Pinpoint:
    """`bisect_steps` over two lists of state hashes 0..n (equal at 0, different at n)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError("two lists of n + 1 state hashes, n >= 1")
    if a[0] != b[0] or a[-1] == b[-1]:
        raise ValueError("no dispute: the start states differ or the end states agree")
    return bisect_steps(len(a) - 1, lambda i: a[i] == b[i])


def first_difference(a: MerkleTree, b: MerkleTree) -> Pinpoint:
    """The first leaf at which two same-shaped trees differ, found by descending from the root."""
    if len(a.levels[0]) != len(b.levels[0]):
        raise ValueError("the traces have different lengths")
    if a.root == b.root:
        raise ValueError("no dispute: the roots agree")
    depth = len(a.levels) - 1
    i, rounds = 0, 0
    for level in range(depth, 0, -1):
        below_a, below_b = a.levels[level - 1], b.levels[level - 1]
        left = 2 * i
        if left + 1 >= len(below_a):  # a promoted node: its only child is itself
            i = left
            continue
        i = left if below_a[left] != below_b[left] else left + 1
        rounds += 1
    return Pinpoint(i, rounds)
