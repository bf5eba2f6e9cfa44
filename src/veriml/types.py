"""Domain units shared by every layer: ids, digests, money, and the names of schemes and policies."""

from __future__ import annotations

from typing import Literal, NewType

JobId = NewType("JobId", int)
ModelId = NewType("ModelId", bytes)  # 32 bytes: keccak256 of the canonical manifest JSON
Digest = NewType("Digest", bytes)  # 32 bytes: what a policy makes of an output, compared on-chain
BlobKey = NewType("BlobKey", str)  # 64 hex chars: sha256 of the blob's bytes
Wei = NewType("Wei", int)
Address = NewType("Address", str)  # EIP-55 checksummed

Scheme = Literal["quorum", "optimistic", "zk", "audit"]
Policy = Literal["exact", "tokens", "phash", "tolerance"]

# On-chain enum values (QuorumJobs.sol / ModelRegistry.sol); keep in step with the contracts.
SCHEME_CODES: dict[str, int] = {"quorum": 0, "optimistic": 1, "zk": 2, "audit": 3}
POLICY_CODES: dict[str, int] = {"exact": 0, "tokens": 1, "phash": 2, "tolerance": 3}
