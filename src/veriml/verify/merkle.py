"""Merkle trees whose proofs verify with OpenZeppelin's `MerkleProof` (sorted-pair keccak256).

Leaves are hashed twice (`keccak(keccak(data))`) before entering the tree, as OpenZeppelin recommends,
so that a leaf can never be confused with an inner node (second-preimage resistance). An odd node at
any level is promoted unchanged to the next level.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_hash.auto import keccak


def leaf_hash(data: bytes) -> bytes:
    """The tree leaf for `data`: keccak256(keccak256(data))."""
    return keccak(keccak(data))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """OpenZeppelin's commutative pair hash: keccak256 of the two words in ascending order."""
    return keccak(a + b) if a < b else keccak(b + a)


@dataclass(frozen=True)
class MerkleTree:
    """A tree over already-hashed leaves; `levels[0]` are the leaves, `levels[-1]` is `[root]`."""

    levels: tuple[tuple[bytes, ...], ...]

    @classmethod
    def from_leaves(cls, leaves: Sequence[bytes]) -> MerkleTree:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        if any(len(x) != 32 for x in leaves):
            raise ValueError("Merkle leaves must be 32-byte hashes")
        levels = [tuple(leaves)]
        while len(levels[-1]) > 1:
            cur = levels[-1]
            nxt = [hash_pair(cur[i], cur[i + 1]) for i in range(0, len(cur) - 1, 2)]
            if len(cur) % 2:
                nxt.append(cur[-1])
            levels.append(tuple(nxt))
        return cls(tuple(levels))

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from leaf `index` up to the root (promoted nodes contribute nothing)."""
        if not 0 <= index < len(self.levels[0]):
            raise IndexError(f"leaf index {index} out of range")
        out = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index //= 2
        return out


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """Root of the tree over 32-byte `leaves`."""
    return MerkleTree.from_leaves(leaves).root


def verify_proof(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """Mirror of `MerkleProof.verify` in OpenZeppelin 5.x."""
    h = leaf
    for p in proof:
        h = hash_pair(h, p)
    return h == root
