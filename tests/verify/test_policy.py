"""The policy registry mirrors the contract: codes, digest functions and the matching rule."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from veriml.types import POLICY_CODES
from veriml.verify import policy
from veriml.verify.digest import digests_match, exact_digest, tokens_digest
from veriml.verify.quorum import tally

SOL = Path(__file__).resolve().parents[2] / "contracts" / "src"


def test_every_policy_is_registered_with_the_contracts_code() -> None:
    assert set(policy.POLICIES) == set(POLICY_CODES)
    registry = (SOL / "ModelRegistry.sol").read_text()
    matching = (SOL / "OutputMatching.sol").read_text()
    for name, p in policy.POLICIES.items():
        assert p.code == POLICY_CODES[name]
        assert re.search(rf"POLICY_{name.upper()} = {p.code};", registry)
    assert "POLICY_PHASH = 2" in matching and policy.policy("phash").rule == "hamming64"
    with pytest.raises(ValueError, match="unknown policy"):
        policy.policy("fuzzy")


def test_digests_by_policy() -> None:
    assert policy.digest("exact", b"abc") == exact_digest(b"abc")
    assert policy.digest("tokens", [1, 2]) == tokens_digest([1, 2])
    assert policy.digest("tolerance", np.zeros(3), step=0.1) != policy.digest("tolerance", np.ones(3), step=0.1)
    assert exact_digest(b"\x00\x00\x00\x01") != tokens_digest([1])  # domain separated


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32), st.integers(0, 64))
def test_matches_is_the_on_chain_rule(a: bytes, b: bytes, t: int) -> None:
    low = bin(int.from_bytes(a[-8:], "big") ^ int.from_bytes(b[-8:], "big")).count("1")
    assert policy.matches("phash", t, a, b) == (low <= t) == digests_match("phash", t, a, b)
    for name in ("exact", "tokens", "tolerance"):
        assert policy.matches(name, t, a, b) == (a == b)


def h(bits: int) -> bytes:
    return bytes(24) + bits.to_bytes(8, "big")


def test_quorum_grouping_by_hamming_distance_ties_and_all_different() -> None:
    far = (1 << 64) - 1  # 64 bits from 0
    # within t of the centre (t itself included) wins; t + 1 is slashed
    r = tally([h(0), h(0b1111), h(0b11111 << 8)], "phash", 4)
    assert r.majority and r.winners == (0, 1) and r.slashed == (2,)
    # 2-2-1 of five: no strict majority, so disputed, and nobody who revealed is slashed
    r = tally([h(0), h(1), h(far), h(far ^ 1), h(0xFF << 28)], "phash", 4)
    assert not r.majority and r.slashed == ()
    # all different
    r = tally([h(0), h(far), h(0xFFFF_FFFF)], "phash", 4)
    assert not r.majority and r.winners == ()
