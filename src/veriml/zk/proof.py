"""A proof as the chain sees it: the proof bytes and the public instances (inputs first, then outputs).

EZKL writes proofs as JSON (`hex_proof`, little-endian hex `instances`); the Solidity verifier takes
`verifyProof(bytes proof, uint256[] instances)` and `ZkJobs.submitProof(jobId, proof, instances)` passes
both through. This module converts between the two and encodes the verifier's calldata.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eth_abi import encode
from eth_hash.auto import keccak

from veriml.zk.field import FIELD_MODULUS, felt_from_le_hex, words_hash

VERIFY_SELECTOR = keccak(b"verifyProof(bytes,uint256[])")[:4]


@dataclass(frozen=True)
class Proof:
    """Proof bytes plus public instances; `n_inputs` of them are the circuit's input."""

    proof: bytes
    instances: tuple[int, ...]
    n_inputs: int

    def __post_init__(self) -> None:
        if not 0 <= self.n_inputs <= len(self.instances):
            raise ValueError("n_inputs out of range")

    @property
    def inputs(self) -> tuple[int, ...]:
        return self.instances[: self.n_inputs]

    @property
    def outputs(self) -> tuple[int, ...]:
        return self.instances[self.n_inputs :]

    @property
    def input_hash(self) -> bytes:
        """What ZkJobs compares with the job's inputHash."""
        return words_hash(self.inputs)

    @property
    def output_hash(self) -> bytes:
        return words_hash(self.outputs)

    def verifier_calldata(self) -> bytes:
        """Calldata of `verifyProof(proof, instances)` on the EZKL verifier."""
        return VERIFY_SELECTOR + encode(["bytes", "uint256[]"], [self.proof, list(self.instances)])

    # ---- building ----
    @classmethod
    def from_ezkl(cls, data: dict[str, Any] | Path, n_inputs: int) -> Proof:
        """From EZKL's proof JSON (a dict or a path to it)."""
        if not isinstance(data, dict):
            data = json.loads(Path(data).read_text())
        proof = bytes.fromhex(data["hex_proof"].removeprefix("0x"))
        instances = tuple(felt_from_le_hex(h) for group in data["instances"] for h in group)
        return cls(proof, instances, n_inputs)

    def to_json(self) -> dict[str, Any]:
        return {
            "proof": "0x" + self.proof.hex(),
            "instances": [hex(i) for i in self.instances],
            "n_inputs": self.n_inputs,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Proof:
        return cls(bytes.fromhex(data["proof"][2:]), tuple(int(i, 16) for i in data["instances"]), data["n_inputs"])

    # ---- tampering (what dishonest nodes and tests do) ----
    def with_outputs(self, outputs: tuple[int, ...]) -> Proof:
        if len(outputs) != len(self.outputs) or any(not 0 <= o < FIELD_MODULUS for o in outputs):
            raise ValueError("outputs must be as many field elements as before")
        return replace(self, instances=self.inputs + tuple(outputs))

    def with_flipped_bit(self, byte: int = 100, bit: int = 0) -> Proof:
        raw = bytearray(self.proof)
        raw[byte % len(raw)] ^= 1 << bit
        return replace(self, proof=bytes(raw))
