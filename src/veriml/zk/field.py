"""Field elements of the BN254 scalar field, as EZKL circuits and their Solidity verifiers use them.

Pure functions only: quantizing a model's input into field elements, hashing them the way `ZkJobs`
does, reading EZKL's little-endian hex felts, and turning output felts back into signed fixed-point
numbers. A fixed-point value v at scale s is the integer round(v * 2**s); negative integers wrap to
FIELD_MODULUS - |x|, which is how EZKL lays out signed values.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from eth_hash.auto import keccak

FIELD_MODULUS = 21888242871839275222246405745257275088548364400416034343698204186575808495617
HALF_FIELD = FIELD_MODULUS // 2


def felt_from_int(x: int) -> int:
    """The field element representing the signed integer `x` (|x| < p/2)."""
    if not -HALF_FIELD <= x <= HALF_FIELD:
        raise ValueError(f"{x} does not fit in a signed field element")
    return x % FIELD_MODULUS


def int_from_felt(f: int) -> int:
    """The signed integer a field element stands for (elements above p/2 are negative)."""
    if not 0 <= f < FIELD_MODULUS:
        raise ValueError("not a field element")
    return f - FIELD_MODULUS if f > HALF_FIELD else f


def felt_from_le_hex(h: str) -> int:
    """EZKL serialises felts as 32-byte little-endian hex strings."""
    raw = bytes.fromhex(h[2:] if h.startswith("0x") else h)
    if len(raw) != 32:
        raise ValueError(f"a felt is 32 bytes, got {len(raw)}")
    f = int.from_bytes(raw, "little")
    if f >= FIELD_MODULUS:
        raise ValueError("not a field element")
    return f


def felt_to_le_hex(f: int) -> str:
    """Inverse of `felt_from_le_hex`."""
    return f.to_bytes(32, "little").hex()


def quantize(values: Sequence[float | int | Fraction], scale: int) -> list[int]:
    """Fixed-point field elements of `values` at `scale`, refusing any value that is not exact there.

    Exactness is what lets a client compute a job's input hash without running EZKL: the value it
    quantizes is the value the circuit sees, bit for bit."""
    out = []
    for v in values:
        q = Fraction(v) * (1 << scale)
        if q.denominator != 1:
            raise ValueError(f"{v} is not representable at fixed-point scale {scale}")
        out.append(felt_from_int(int(q)))
    return out


def dequantize(felts: Sequence[int], scale: int) -> list[float]:
    """Floats of fixed-point field elements at `scale` (exact for |x| < 2**53)."""
    return [int_from_felt(f) / (1 << scale) for f in felts]


def words_hash(felts: Sequence[int]) -> bytes:
    """keccak256 of the felts as 32-byte big-endian words: `ZkJobs` hashes input and output instances so."""
    if any(not 0 <= f < FIELD_MODULUS for f in felts):
        raise ValueError("not a field element")
    return keccak(b"".join(f.to_bytes(32, "big") for f in felts))


def argmax(felts: Sequence[int]) -> int:
    """Index of the largest signed value (the first one on ties): the class a classifier's logits pick."""
    vals = [int_from_felt(f) for f in felts]
    return max(range(len(vals)), key=lambda i: (vals[i], -i))
