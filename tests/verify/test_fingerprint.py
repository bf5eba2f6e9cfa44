"""Fingerprint math: interpolation, sizes, honest noise accepted, other states rejected, bad bytes refused."""

from __future__ import annotations

import numpy as np
import pytest

from veriml.verify.fingerprint import (
    CHUNK,
    PRIME,
    TOP_K,
    Thresholds,
    check,
    decode,
    evaluate,
    fingerprint,
    interpolate,
    top_k,
)

WIDTH = 576  # SmolLM2-135M's hidden size


def states(seed: int, tokens: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((tokens, WIDTH)).astype(np.float32) * 3


def test_interpolation_passes_through_its_points() -> None:
    rng = np.random.default_rng(0)
    xs = [int(x) for x in rng.choice(PRIME, 128, replace=False)]
    ys = [int(y) for y in rng.integers(0, PRIME, 128)]
    poly = interpolate(xs, ys)
    assert len(poly) == 128
    assert [evaluate(poly, x) for x in xs] == ys


def test_interpolation_refuses_repeated_x() -> None:
    with pytest.raises(ValueError, match="distinct"):
        interpolate([1, 1 + PRIME], [2, 3])


def test_size_is_258_bytes_per_32_tokens() -> None:
    fp = fingerprint(states(1, tokens=3 * CHUNK))
    assert len(fp) == 3 * 258
    assert [len(p) for p in decode(fp)] == [TOP_K] * 3


def test_top_k_picks_largest_magnitudes() -> None:
    chunk = np.zeros((2, 8), dtype=np.float32)
    chunk[0, 3], chunk[1, 5], chunk[1, 0] = -9.0, 7.0, 0.5
    idx, bits = top_k(chunk, 2)
    assert list(idx) == [3, 13]
    assert list(bits.astype(np.uint16).view(np.float16)) == [-9.0, 7.0]


def test_same_states_accepted_and_float_noise_accepted() -> None:
    h = states(2, tokens=40)  # a partial last chunk too
    fp = fingerprint(h)
    ok, checks = check(fp, h)
    assert ok and all(c.exponent_matches == c.points for c in checks)
    noisy = h * (1 + np.random.default_rng(3).standard_normal(h.shape).astype(np.float32) * 1e-4)
    assert check(fp, noisy)[0]


def test_other_states_rejected() -> None:
    h = states(4)
    fp = fingerprint(h)
    ok, checks = check(fp, states(5))
    assert not ok
    assert max(c.exponent_matches for c in checks) < 90
    # one chunk replaced is enough to reject
    mixed = h.copy()
    mixed[CHUNK:] = states(6)[CHUNK:]
    ok, checks = check(fp, mixed)
    assert not ok
    assert checks[0].accepted(Thresholds()) and not checks[1].accepted(Thresholds())


def test_chunk_count_must_match_the_output() -> None:
    h = states(7, tokens=64)
    assert check(fingerprint(h), h[:32]) == (False, [])


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00", "header"),
        (b"\x00\x05\x00\x01", "claims 5"),
        (b"\x00\x01\xff\xff", "below the prime"),
        (b"\x00\x00", "claims 0"),
    ],
)
def test_malformed_fingerprints_refused(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode(data)


@pytest.mark.parametrize(
    "hidden, message",
    [
        (np.zeros(5, dtype=np.float32), "non-empty"),
        (np.full((2, 4), np.nan, dtype=np.float32), "NaN"),
        (np.zeros((2, 4096), dtype=np.float32), "beyond the prime"),
    ],
)
def test_bad_hidden_states_refused(hidden: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fingerprint(hidden)
