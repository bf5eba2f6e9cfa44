"""Pure functions of the zk package: field elements, quantization, hashing, proof values, forged outputs."""

from __future__ import annotations

from fractions import Fraction

import pytest
from eth_abi.packed import encode_packed
from eth_hash.auto import keccak

from veriml.sim.faults import forge_outputs
from veriml.zk import digits
from veriml.zk.field import (
    FIELD_MODULUS,
    argmax,
    dequantize,
    felt_from_int,
    felt_from_le_hex,
    felt_to_le_hex,
    int_from_felt,
    quantize,
    words_hash,
)
from veriml.zk.proof import VERIFY_SELECTOR, Proof


def test_signed_felts_round_trip() -> None:
    for x in (0, 1, -1, 12345, -(2**100), FIELD_MODULUS // 2, -(FIELD_MODULUS // 2)):
        f = felt_from_int(x)
        assert 0 <= f < FIELD_MODULUS
        assert int_from_felt(f) == x
    assert felt_from_int(-1) == FIELD_MODULUS - 1
    with pytest.raises(ValueError):
        felt_from_int(FIELD_MODULUS)
    with pytest.raises(ValueError):
        int_from_felt(FIELD_MODULUS)


def test_little_endian_hex_is_ezkls_layout() -> None:
    assert felt_from_le_hex("50" + "00" * 31) == 0x50
    assert felt_to_le_hex(0x50) == "50" + "00" * 31
    f = felt_from_int(-7)
    assert felt_from_le_hex(felt_to_le_hex(f)) == f
    with pytest.raises(ValueError):
        felt_from_le_hex("00" * 31)
    with pytest.raises(ValueError):
        felt_from_le_hex("ff" * 32)  # above the modulus


def test_quantize_is_exact_or_refuses() -> None:
    assert quantize([0, 0.5, -0.25, Fraction(3, 16)], 7) == [0, 64, felt_from_int(-32), 24]
    assert dequantize(quantize([0.5, -0.25], 7), 7) == [0.5, -0.25]
    with pytest.raises(ValueError, match="not representable"):
        quantize([0.1], 7)


def test_words_hash_is_keccak_of_packed_uint256() -> None:
    felts = [0, 1, FIELD_MODULUS - 1, 128]
    assert words_hash(felts) == keccak(encode_packed(["uint256[]"], [felts]))
    with pytest.raises(ValueError):
        words_hash([FIELD_MODULUS])


def test_argmax_reads_signed_values() -> None:
    assert argmax([felt_from_int(v) for v in (-5, 3, -1, 3)]) == 1
    assert argmax([felt_from_int(v) for v in (-5, -2, -9)]) == 1


def test_digit_encoding() -> None:
    px = [0, 1, 8, 16] * 16
    assert digits.encode_input(px, 7) == [p * 8 for p in px]
    assert digits.encode_input(px, 4) == px
    assert digits.input_max(7) == 128
    for bad in ([0] * 63, [17] + [0] * 63, [-1] + [0] * 63, [0.5] + [0] * 63):
        with pytest.raises(ValueError):
            digits.encode_input(bad, 7)
    assert len(digits.render(px)) == 8


@pytest.mark.parametrize("values", [(5, 3, 1), (3, 3, 1), (-4, -4), (-1, -9, 2, 2, 0), (7,)])
def test_forged_outputs_change_the_class(values: tuple[int, ...]) -> None:
    felts = tuple(felt_from_int(v) for v in values)
    forged = forge_outputs(felts)
    assert len(forged) == len(felts) and forged != felts
    if len(felts) > 1:
        assert argmax(forged) != argmax(felts)


def test_proof_value_round_trips_and_tampers() -> None:
    p = Proof(b"\x01\x02\x03" * 10, (1, 2, 3, 4, 5), n_inputs=3)
    assert p.inputs == (1, 2, 3) and p.outputs == (4, 5)
    assert Proof.from_json(p.to_json()) == p
    assert p.input_hash == words_hash([1, 2, 3])
    assert p.with_flipped_bit().proof != p.proof and p.with_flipped_bit().instances == p.instances
    assert p.with_outputs((9, 9)).instances == (1, 2, 3, 9, 9)
    with pytest.raises(ValueError):
        p.with_outputs((1,))
    assert p.verifier_calldata()[:4] == VERIFY_SELECTOR == keccak(b"verifyProof(bytes,uint256[])")[:4]
    with pytest.raises(ValueError):
        Proof(b"", (1,), n_inputs=2)
