"""The output policies in one registry: name -> how an output becomes a digest, and when two digests match.

The match rule mirrors `OutputMatching.sol` exactly (equality, or Hamming distance of the low 64 bits for
phash), so a node or client can predict a settlement; `veriml.verify.quorum.tally` groups reveals by it.

| policy    | output                 | digest                                   | on-chain match          |
|-----------|------------------------|------------------------------------------|-------------------------|
| exact     | bytes                  | keccak("veriml/exact" ‖ bytes)           | equal                   |
| tokens    | token ids              | keccak("veriml/tokens" ‖ uint32 ids)     | equal                   |
| phash     | a picture (PNG bytes)  | keccak tag (24 B) ‖ 64-bit perceptual hash | popcount(xor low 64) <= t |
| tolerance | a float tensor         | keccak of the tensor quantized to a step | equal (bounds off-chain) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from veriml.types import POLICY_CODES, Digest
from veriml.verify.digest import digests_match, exact_digest, tokens_digest
from veriml.verify.phash import phash_digest
from veriml.verify.tolerance import tolerance_digest


@dataclass(frozen=True)
class OutputPolicy:
    """One policy: its on-chain code, its digest function and its matching rule."""

    name: str
    code: int
    rule: Literal["equal", "hamming64"]
    digest: Callable[..., Digest]
    takes_threshold: bool

    def matches(self, a: Digest, b: Digest, threshold: int = 0) -> bool:
        """`OutputMatching.matches(code, threshold, a, b)`."""
        return digests_match(self.name, threshold, a, b)


POLICIES: dict[str, OutputPolicy] = {
    "exact": OutputPolicy("exact", POLICY_CODES["exact"], "equal", exact_digest, False),
    "tokens": OutputPolicy("tokens", POLICY_CODES["tokens"], "equal", tokens_digest, False),
    "phash": OutputPolicy("phash", POLICY_CODES["phash"], "hamming64", phash_digest, True),
    "tolerance": OutputPolicy("tolerance", POLICY_CODES["tolerance"], "equal", tolerance_digest, True),
}


def policy(name: str) -> OutputPolicy:
    """The registered policy `name`; ValueError if there is none."""
    try:
        return POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; one of {', '.join(POLICIES)}") from None


def digest(name: str, output: Any, **params: Any) -> Digest:
    """Digest `output` by policy `name` (params: `kind` for phash, `step` for tolerance)."""
    return policy(name).digest(output, **params)


def matches(name: str, threshold: int, a: Digest, b: Digest) -> bool:
    """Whether two digests count as the same output under policy `name`, as the contract decides."""
    return policy(name).matches(a, b, threshold)
