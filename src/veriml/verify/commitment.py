"""Commit-reveal commitments, mirroring `QuorumJobs.commitmentOf`."""

from __future__ import annotations

import secrets

from eth_abi import encode
from eth_hash.auto import keccak

from veriml.types import Digest


def commitment(chain_id: int, market: str, job_id: int, node: str, digest: Digest, salt: bytes) -> bytes:
    """keccak256(abi.encode(chainid, market, jobId, node, digest, salt)): bound to chain, market, job and node."""
    if len(digest) != 32 or len(salt) != 32:
        raise ValueError("digest and salt must be 32 bytes")
    return keccak(
        encode(
            ["uint256", "address", "uint256", "address", "bytes32", "bytes32"],
            [chain_id, market, job_id, node, digest, salt],
        )
    )


def new_salt() -> bytes:
    """32 random bytes; a commitment's secrecy rests on the salt being unguessable."""
    return secrets.token_bytes(32)
