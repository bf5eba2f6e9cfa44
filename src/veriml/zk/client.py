"""The user's side of a zk job: quantize the input, escrow the fee, and read back a proven output.

A verified zk job needs no trust in the node: the contract accepted a proof that the registered circuit
maps this job's input instances to the output instances it emitted. The client re-hashes those outputs
against the job's stored output hash and decodes them (signed fixed point) into logits and a class.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from veriml.chain.zk import ZkJobs, ZkJobStatus
from veriml.errors import FeeTooLow, UserInputError, VerificationError
from veriml.types import JobId
from veriml.zk import digits
from veriml.zk.field import argmax, dequantize, words_hash
from veriml.zk.register import ZkModel


@dataclass(frozen=True)
class ZkJobResult:
    """A settled zk job and the evidence for it."""

    job_id: JobId
    model: str
    status: str  # verified | rejected | expired | refunded
    node: str | None
    input_hash: str
    output: tuple[int, ...] | None  # output instances (field elements) of the accepted proof
    logits: tuple[float, ...] | None
    label: int | None
    fee: int
    refund: int
    slashed: int
    reason: str | None
    txs: dict[str, str] = field(default_factory=dict)

    @property
    def fee_paid(self) -> int:
        return self.fee - min(self.fee, self.refund)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.job_id,
            "model": self.model,
            "scheme": "zk",
            "status": self.status,
            "node": self.node,
            "input_hash": self.input_hash,
            "label": self.label,
            "logits": list(self.logits) if self.logits is not None else None,
            "fee": self.fee,
            "fee_paid": self.fee_paid,
            "refund": self.refund,
            "slashed": self.slashed,
            "reason": self.reason,
            "txs": self.txs,
        }


class ZkClient:
    """Submit and read zk jobs for one model as one account."""

    def __init__(self, jobs: ZkJobs, account: LocalAccount, model: ZkModel) -> None:
        self.jobs = jobs
        self.account = account
        self.model = model
        self._submit_tx: dict[int, str] = {}

    @property
    def address(self) -> str:
        return self.account.address

    def encode_digit(self, pixels: Sequence[int]) -> list[int]:
        try:
            return digits.encode_input(pixels, self.model.circuit.input_scale)
        except ValueError as e:
            raise UserInputError(str(e)) from None

    def submit_digit(self, pixels: Sequence[int], fee: int | None = None) -> JobId:
        """Escrow a job classifying one 8x8 digit (64 pixels 0..16)."""
        return self.submit(self.encode_digit(pixels), fee)

    def run_digit(
        self,
        pixels: Sequence[int],
        fee: int | None = None,
        between: Callable[[], object] | None = None,
        timeout: float = 600.0,
    ) -> ZkJobResult:
        """Submit one digit and wait until its job settles, calling `between` meanwhile (in a local network,
        its `tick`, which drives the nodes)."""
        return self.wait(self.submit_digit(pixels, fee), between, timeout)

    def submit(self, felts: Sequence[int], fee: int | None = None) -> JobId:
        """Escrow a job on input instances `felts` (validated here as ZkJobs will)."""
        c = self.model.circuit
        if len(felts) != c.n_inputs:
            raise UserInputError(f"the circuit takes {c.n_inputs} input values, got {len(felts)}")
        if any(not 0 <= f <= self.model.input_max for f in felts):
            raise UserInputError(f"input values must be field elements in 0..{self.model.input_max}")
        price = self.model.manifest.price_wei
        fee = price if fee is None else fee
        if fee < price:
            raise FeeTooLow(f"fee {fee} wei is below the model's price {price} wei")
        job_id, receipt = self.jobs.submit(self.account, self.model.model_id, felts, fee)
        self._submit_tx[job_id] = Web3.to_hex(receipt["transactionHash"])
        return job_id

    def result(self, job_id: int) -> ZkJobResult:
        """The job's outcome, read from the chain; outputs re-hashed against the job's output hash."""
        job = self.jobs.job(job_id)
        found = self._events(job_id, job.submit_block)
        output = logits = label = None
        refund = slashed = 0
        reason = None
        txs = {"submit": self._submit_tx.get(job_id, "")}
        for name, e in found.items():
            txs.setdefault(_TX_NAMES[name], Web3.to_hex(e["transactionHash"]))
        if (e := found.get("ProofAccepted")) is not None:
            output = tuple(int(x) for x in e["args"]["output"])
            if words_hash(output) != job.output_hash:
                raise VerificationError(f"job {job_id}: emitted outputs do not hash to the job's output hash")
            logits = tuple(dequantize(output, self.model.circuit.output_scale))
            label = argmax(output)
        if (e := found.get("ProofRejected")) is not None:
            refund, slashed, reason = int(e["args"]["refund"]), int(e["args"]["slashed"]), e["args"]["reason"]
        if (e := found.get("JobExpired")) is not None:
            refund, slashed, reason = (
                int(e["args"]["refund"]),
                int(e["args"]["slashed"]),
                "no proof before the deadline",
            )
        if (e := found.get("JobRefunded")) is not None:
            refund, reason = int(e["args"]["amount"]), e["args"]["reason"]
        return ZkJobResult(
            JobId(job_id), self.model.name, job.status.name.lower(), job.node, "0x" + job.input_hash.hex(), output,
            logits, label, job.fee, refund, slashed, reason, txs,
        )  # fmt: skip

    def _events(self, job_id: int, start: int) -> dict[str, Any]:
        """The job's settlement events by name (each happens at most once per job)."""
        return {name: evs[0] for name in _TX_NAMES if (evs := self.jobs.events(name, start, jobId=job_id))}

    def wait(self, job_id: int, between: Callable[[], object] | None = None, timeout: float = 600.0) -> ZkJobResult:
        """Call `between` (e.g. stepping local nodes) until the job settles, then return its result."""
        deadline = time.monotonic() + timeout
        while not (job := self.jobs.job(job_id)).status.final:
            if time.monotonic() > deadline:
                raise TimeoutError(f"zk job {job_id} did not settle within {timeout:.0f}s")
            if job.status == ZkJobStatus.ASSIGNED and self.jobs.chain.block_number() > job.deadline:
                # The node let its deadline pass: settle it ourselves (slash + refund) rather than wait.
                self.jobs.expire(self.account, job_id)
                continue
            if between is not None:
                between()
            else:
                time.sleep(0.5)
        return self.result(job_id)

    def withdraw(self) -> int:
        owed = self.jobs.credits(self.address)
        if owed:
            self.jobs.withdraw(self.account)
        return owed


_TX_NAMES = {
    "JobAssigned": "assign",
    "ProofAccepted": "submit_proof",
    "ProofRejected": "submit_proof",
    "JobExpired": "expire",
    "JobRefunded": "refund",
}
