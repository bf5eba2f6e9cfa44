"""Fingerprints of a generation's hidden states (after TOPLOC), and the check a validator runs against one.

A generator keeps the final-norm hidden states of its decode tokens, cuts them into chunks of `CHUNK`
tokens and, per chunk, takes the `TOP_K` entries of largest magnitude. The points (flat index, float16
bits of the value) are interpolated by one polynomial over the prime `PRIME`; its `TOP_K` coefficients,
two bytes each, plus a two-byte point count are the chunk's encoding (258 bytes for 32 tokens at k=128).

A validator recomputes the hidden states with one prefill over prompt + claimed output, takes its own
top-k indices, evaluates the committed polynomial there and compares float16 exponents (must be equal)
and mantissas (small differences are honest float noise). Numbers in, numbers out: no torch here.

The default thresholds below are provisional (TOPLOC's published ones); `benchmarks/fingerprint_detection.py`
is where they are to be measured against honest variation and cheats.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PRIME = 65497  # largest prime below 2**16: every coefficient fits two bytes
CHUNK = 32
TOP_K = 128
_HEADER = 2  # the chunk's point count, big-endian


@dataclass(frozen=True)
class Thresholds:
    """When a chunk is accepted: enough exponents equal, and the mantissa differences small."""

    min_exponent_matches: int = 90
    max_mantissa_mean: float = 10.0
    max_mantissa_median: float = 8.0


@dataclass(frozen=True)
class ChunkCheck:
    """What the validator saw for one chunk."""

    points: int
    exponent_matches: int
    mantissa_mean: float
    mantissa_median: float

    def accepted(self, t: Thresholds) -> bool:
        """Whether this chunk passes `t` (the exponent count is scaled when a chunk has fewer than 128 points)."""
        need = -(-t.min_exponent_matches * self.points // TOP_K)  # ceil, so a short chunk is held to the same rate
        return (
            self.exponent_matches >= need
            and self.mantissa_mean <= t.max_mantissa_mean
            and self.mantissa_median <= t.max_mantissa_median
        )


def _as_hidden(hidden: np.ndarray) -> np.ndarray:
    h = np.asarray(hidden)
    if h.ndim != 2 or h.shape[0] == 0 or h.shape[1] == 0:
        raise ValueError(f"hidden states must be a non-empty (tokens, width) array, not shape {h.shape}")
    if not np.all(np.isfinite(h)):
        raise ValueError("hidden states contain NaN or infinity")
    if CHUNK * h.shape[1] >= PRIME:
        raise ValueError(f"a chunk of {CHUNK} tokens x {h.shape[1]} has flat indices beyond the prime {PRIME}")
    return h.astype(np.float32, copy=False)


def top_k(chunk: np.ndarray, k: int = TOP_K) -> tuple[np.ndarray, np.ndarray]:
    """The flat indices (ascending) of the k entries of largest magnitude, and their float16 bit patterns."""
    flat = np.asarray(chunk, dtype=np.float32).reshape(-1)
    k = min(k, flat.size)
    # a stable sort on -|x| breaks ties by index, so two machines with equal values pick the same points
    idx = np.sort(np.argsort(-np.abs(flat), kind="stable")[:k])
    bits = flat[idx].astype(np.float16).view(np.uint16)
    return idx.astype(np.int64), bits.astype(np.int64)


def interpolate(xs: list[int], ys: list[int]) -> list[int]:
    """Coefficients (lowest degree first) of the polynomial mod PRIME through the points (xs[i], ys[i])."""
    if len(set(x % PRIME for x in xs)) != len(xs):
        raise ValueError("interpolation points must have distinct x modulo the prime")
    n = len(xs)
    # Newton divided differences, then expand the Newton form into monomial coefficients
    coef = [y % PRIME for y in ys]
    for j in range(1, n):
        for i in range(n - 1, j - 1, -1):
            coef[i] = (coef[i] - coef[i - 1]) * pow(xs[i] - xs[i - j], -1, PRIME) % PRIME
    poly = [0] * n
    for i in range(n - 1, -1, -1):
        # poly = poly * (x - xs[i]) + coef[i]
        new = [0] * n
        for d in range(n - 1):
            new[d + 1] = poly[d]
        for d in range(n):
            new[d] = (new[d] - xs[i] * poly[d]) % PRIME
        new[0] = (new[0] + coef[i]) % PRIME
        poly = new
    return poly


def evaluate(poly: list[int], x: int) -> int:
    """The polynomial (lowest degree first) at x, mod PRIME."""
    acc = 0
    for c in reversed(poly):
        acc = (acc * x + c) % PRIME
    return acc


def encode_chunk(chunk: np.ndarray, k: int = TOP_K) -> bytes:
    """One chunk's encoding: point count (2 bytes) then the interpolating polynomial's coefficients (2 bytes each)."""
    idx, bits = top_k(chunk, k)
    poly = interpolate([int(i) for i in idx], [int(b) for b in bits])
    return len(poly).to_bytes(_HEADER, "big") + b"".join(c.to_bytes(2, "big") for c in poly)


def fingerprint(hidden: np.ndarray, k: int = TOP_K) -> bytes:
    """The fingerprint of a generation: its (tokens, width) decode hidden states, chunk by chunk."""
    h = _as_hidden(hidden)
    return b"".join(encode_chunk(h[s : s + CHUNK], k) for s in range(0, h.shape[0], CHUNK))


def decode(data: bytes) -> list[list[int]]:
    """The chunks' polynomials from a fingerprint; ValueError if the bytes are not a well-formed one."""
    out, pos = [], 0
    while pos < len(data):
        if pos + _HEADER > len(data):
            raise ValueError("fingerprint ends inside a chunk header")
        n = int.from_bytes(data[pos : pos + _HEADER], "big")
        pos += _HEADER
        if n == 0 or pos + 2 * n > len(data):
            raise ValueError(f"fingerprint chunk claims {n} coefficients; {max(0, len(data) - pos) // 2} remain")
        poly = [int.from_bytes(data[pos + 2 * i : pos + 2 * i + 2], "big") for i in range(n)]
        if any(c >= PRIME for c in poly):
            raise ValueError(f"fingerprint coefficient not below the prime {PRIME}")
        out.append(poly)
        pos += 2 * n
    return out


def _split(bits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float16 bit patterns -> (sign and exponent, mantissa)."""
    return bits >> 10, bits & 0x3FF


def check_chunk(poly: list[int], chunk: np.ndarray) -> ChunkCheck:
    """Compare a committed chunk polynomial with the validator's own hidden states for that chunk."""
    idx, own = top_k(chunk, len(poly))
    claimed = np.array([evaluate(poly, int(i)) for i in idx], dtype=np.int64)
    exp_c, man_c = _split(claimed)
    exp_o, man_o = _split(own)
    same = exp_c == exp_o
    diffs = np.abs(man_c[same] - man_o[same])
    # with no exponent agreeing there is nothing to measure: report the worst mantissa distance
    mean = float(diffs.mean()) if diffs.size else float(0x3FF)
    median = float(np.median(diffs)) if diffs.size else float(0x3FF)
    return ChunkCheck(len(idx), int(same.sum()), mean, median)


def check(data: bytes, hidden: np.ndarray, thresholds: Thresholds = Thresholds()) -> tuple[bool, list[ChunkCheck]]:
    """Whether a fingerprint matches the validator's hidden states (every chunk must pass), with per-chunk detail.

    A fingerprint with a different number of chunks than the claimed output has tokens is rejected outright.
    """
    h = _as_hidden(hidden)
    polys = decode(data)
    starts = range(0, h.shape[0], CHUNK)
    if len(polys) != len(starts):
        return False, []
    checks = [check_chunk(p, h[s : s + CHUNK]) for p, s in zip(polys, starts, strict=True)]
    return all(c.accepted(thresholds) for c in checks), checks
