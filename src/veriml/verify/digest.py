"""Output digests: what a policy makes of a model's output so that a contract can compare it.

Each digest is 32 bytes. Digests are domain-separated by policy so that, say, an `exact` digest of some
bytes can never equal a `tokens` digest of other data.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from eth_hash.auto import keccak

from veriml.types import Digest


def exact_digest(data: bytes) -> Digest:
    """Digest of raw output bytes: keccak256("veriml/exact" || data)."""
    return Digest(keccak(b"veriml/exact\x00" + data))


def tokens_digest(tokens: Sequence[int]) -> Digest:
    """Digest of a token-id sequence: keccak256("veriml/tokens" || uint32 big-endian ids)."""
    if any(not 0 <= t < 2**32 for t in tokens):
        raise ValueError("token ids must fit in uint32")
    return Digest(keccak(b"veriml/tokens\x00" + struct.pack(f">{len(tokens)}I", *tokens)))


def low64(d: Digest) -> int:
    """The low 64 bits of a digest, as `uint64(uint256(d))` reads them on-chain."""
    return int.from_bytes(d[-8:], "big")


def hamming64(a: Digest, b: Digest) -> int:
    """`OutputMatching.popcount64` of the XOR of two digests' low 64 bits."""
    return (low64(a) ^ low64(b)).bit_count()


def digests_match(policy: str, threshold: int, a: Digest, b: Digest) -> bool:
    """Mirror of `OutputMatching.matches`: equality, or Hamming distance of the low 64 bits for phash.

    `tolerance` is equality on-chain too: its digest is a quantized one (see `veriml.verify.tolerance`).
    """
    if policy == "phash":
        return hamming64(a, b) <= threshold
    return a == b
