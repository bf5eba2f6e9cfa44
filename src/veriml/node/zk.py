"""The prover node of the zk scheme: follow ZkJobs, prove the jobs it is drawn for, and watch deadlines.

`step()` does one pass and returns what it did, like `NodeDaemon.step`, so tests and the demo can drive
nodes deterministically; `run()` loops it. Proving never blocks a step: it goes to a `ProverPool` (worker
processes, a memory check, a proof cache per (model, input)), and a later step submits the finished proof.
A node also keeps the others honest about time: once a job's proof deadline has passed it calls `expire`,
which slashes the silent node and refunds the user (anyone may).

Dishonest behaviour is data: a `ZkFault` picks what the node does with its proof.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from eth_account.signers.local import LocalAccount
from web3 import Web3

from veriml.chain.contracts import Contracts
from veriml.chain.zk import ZkJobs, ZkJobStatus, ZkJobView
from veriml.errors import ConfigError, ContractRevert
from veriml.node.daemon import Action
from veriml.node.loop import register_once, run_steps
from veriml.zk.field import argmax, felt_from_int, int_from_felt
from veriml.zk.proof import Proof
from veriml.zk.prover import ProveResult, ProverPool
from veriml.zk.register import ZkModel

log = logging.getLogger("veriml.node.zk")

# Reverts that only mean another party got there first.
_RACES = ("ZkJobs: job not awaiting assignment", "ZkJobs: job not open")


class ZkFault(Enum):
    """What a dishonest prover does; each must end with the node slashed and the user refunded."""

    HONEST = "honest"
    FORGED_OUTPUT = "forged-output"  # proves honestly, then claims another class in the output instances
    TAMPERED_PROOF = "tampered-proof"  # flips one bit of a valid proof
    REPLAYED_PROOF = "replayed-proof"  # submits a valid proof of a different input (a cheap, reused answer)
    NO_SHOW = "no-show"  # drawn, never submits


@dataclass
class ZkJobRecord:
    """What this node remembers about one job."""

    job_id: int
    model_id: bytes
    input: tuple[int, ...]
    phase: str = "seen"  # seen | proving | done
    outcome: str | None = None
    prove: ProveResult | None = None
    submit_gas: int | None = None
    proof_bytes: int | None = None
    submitted_outputs: tuple[int, ...] | None = None  # what the node claimed (after any fault)
    txs: dict[str, str] = field(default_factory=dict)


class ZkProverNode:
    """One staked node serving zk models."""

    def __init__(
        self,
        jobs: ZkJobs,
        contracts: Contracts,
        account: LocalAccount,
        models: Sequence[ZkModel],
        pool: ProverPool,
        fault: ZkFault = ZkFault.HONEST,
        start_block: int = 0,
        withdraw_min_wei: int = 0,
    ) -> None:
        self.jobs = jobs
        self.contracts = contracts
        self.account = account
        self.models = {m.model_id: m for m in models}
        self.pool = pool
        self.fault = fault
        self.honest = fault is ZkFault.HONEST
        self.withdraw_min_wei = withdraw_min_wei
        self.last_block = start_block - 1
        self.records: dict[int, ZkJobRecord] = {}

    @property
    def address(self) -> str:
        return self.account.address

    def __repr__(self) -> str:
        return f"ZkProverNode({self.address[:10]}.., {self.fault.value})"

    def register(self, stake: int, endpoint: str, pubkey: bytes = b"") -> bool:
        """Stake and announce the served models, unless already registered; True if it registered now."""
        return register_once(self.contracts, self.account, stake, endpoint, pubkey, list(self.models))

    # ---- the loop ----
    def run(self, stop: threading.Event, poll_interval: float = 0.5) -> None:
        """Step until `stop` is set; errors in one step are logged and the next step retries."""
        run_steps(self.step, self.address, stop, poll_interval)

    def step(self) -> list[Action]:
        """Discover jobs, assign, prove, submit, expire late jobs, withdraw earnings."""
        head = self.jobs.chain.block_number()
        self._discover(head)
        actions: list[Action] = []
        for rec in [r for r in self.records.values() if r.phase != "done"]:
            try:
                actions += self._advance(rec, head)
            except ContractRevert as e:
                log.warning("%s job %s: %s", self.address[:10], rec.job_id, e.reason)
                actions.append(Action(self.address, rec.job_id, "skip", detail=e.reason))
        actions += self._maybe_withdraw()
        return actions

    @property
    def proving(self) -> bool:
        """Whether a proof of this node is being computed."""
        return any(r.phase == "proving" for r in self.records.values())

    def _discover(self, head: int) -> None:
        start = self.last_block + 1
        if start > head:
            return
        for ev in self.jobs.events("JobSubmitted", start, head):
            mid = bytes(ev["args"]["modelId"])
            if mid in self.models:
                jid = int(ev["args"]["jobId"])
                self.records[jid] = ZkJobRecord(jid, mid, tuple(int(x) for x in ev["args"]["input"]))
        self.last_block = head

    def _advance(self, rec: ZkJobRecord, head: int) -> list[Action]:
        job = self.jobs.job(rec.job_id)
        out: list[Action] = []
        if job.status == ZkJobStatus.SUBMITTED and head > job.submit_block:
            receipt = self._racy(lambda: self.jobs.assign(self.account, rec.job_id))
            if receipt is not None:
                out.append(Action(self.address, rec.job_id, "assign", _hex(receipt)))
            job = self.jobs.job(rec.job_id)
        if job.status.final:
            rec.phase, rec.outcome = "done", rec.outcome or job.status.name.lower()
            return out
        if job.status != ZkJobStatus.ASSIGNED:
            return out
        if job.node != self.address:
            # Not ours: keep the drawn node to its deadline.
            if head > job.deadline:
                receipt = self._racy(lambda: self.jobs.expire(self.account, rec.job_id))
                if receipt is not None:
                    out.append(Action(self.address, rec.job_id, "expire", _hex(receipt), f"node {job.node}"))
            return out
        if head > job.deadline:
            rec.phase, rec.outcome = "done", "missed the proof deadline"
            return out
        if self.fault is ZkFault.NO_SHOW:
            return out
        return out + self._prove_and_submit(rec, job)

    def _prove_and_submit(self, rec: ZkJobRecord, job: ZkJobView) -> list[Action]:
        model = self.models[rec.model_id]
        target = self._input_to_prove(rec)
        try:
            result = self.pool.request(rec.model_id, model.circuit, target)
        except (ConfigError, RuntimeError, OSError) as e:
            # This machine could not prove it (memory, a broken worker, EZKL's own error): give up on the job;
            # the deadline will pass and the stake pays for it, which is the price of taking the job.
            log.error("%s job %s: proving failed: %s", self.address[:10], rec.job_id, e)
            rec.phase, rec.outcome = "done", f"proving failed: {e}"
            return [Action(self.address, rec.job_id, "skip", detail=f"proving failed: {e}")]
        if result is None:
            if rec.phase != "proving":
                rec.phase = "proving"
                return [Action(self.address, rec.job_id, "prove", detail="proof started")]
            return []
        rec.prove = result
        proof = self._doctor(result.proof)
        rec.proof_bytes = len(proof.proof)
        rec.submitted_outputs = proof.outputs
        gas = self.jobs.proof_gas(rec.model_id, proof.proof, proof.instances)
        receipt = self.jobs.submit_proof(self.account, rec.job_id, proof.proof, proof.instances, gas=gas)
        rec.submit_gas = int(receipt["gasUsed"])
        rec.txs["submit_proof"] = _hex(receipt)
        rejected = self.jobs.receipt_events("ProofRejected", receipt)
        rec.phase = "done"
        rec.outcome = f"rejected: {rejected[0]['args']['reason']}" if rejected else "verified"
        label = argmax(proof.outputs)
        detail = f"class {label}, {rec.proof_bytes} B proof, {rec.submit_gas} gas -> {rec.outcome}"
        return [Action(self.address, rec.job_id, "submit_proof", _hex(receipt), detail)]

    # ---- faults ----
    def _input_to_prove(self, rec: ZkJobRecord) -> tuple[int, ...]:
        if self.fault is not ZkFault.REPLAYED_PROOF:
            return rec.input
        # A valid proof, but of another input: all zeros (or all max if the job's input is all zeros).
        other = tuple(0 for _ in rec.input)
        if other == rec.input:
            bound = self.jobs.circuit(rec.model_id).input_max
            other = tuple(bound for _ in rec.input)
        return other

    def _doctor(self, proof: Proof) -> Proof:
        if self.fault is ZkFault.TAMPERED_PROOF:
            return proof.with_flipped_bit()
        if self.fault is ZkFault.FORGED_OUTPUT:
            return proof.with_outputs(forge_outputs(proof.outputs))
        return proof

    # ---- helpers ----
    def _racy(self, send):  # noqa: ANN001, ANN202
        try:
            return send()
        except ContractRevert as e:
            if e.reason in _RACES:
                return None
            raise

    def _maybe_withdraw(self) -> list[Action]:
        owed = self.jobs.credits(self.address)
        if owed == 0 or owed < self.withdraw_min_wei:
            return []
        receipt = self.jobs.withdraw(self.account)
        return [Action(self.address, 0, "withdraw", _hex(receipt), f"{owed} wei")]


def forge_outputs(outputs: Sequence[int]) -> tuple[int, ...]:
    """Logits that pick another class: the winner's and the runner-up's values swapped (the runner-up
    bumped by one on a tie; a single output is just bumped)."""
    vals = [int_from_felt(o) for o in outputs]
    if len(vals) == 1:
        return (felt_from_int(vals[0] + 1),)
    top, second = sorted(range(len(vals)), key=lambda i: (-vals[i], i))[:2]
    if vals[top] == vals[second]:
        vals[second] += 1
    else:
        vals[top], vals[second] = vals[second], vals[top]
    return tuple(felt_from_int(v) for v in vals)


def _hex(receipt: object) -> str:
    return Web3.to_hex(receipt["transactionHash"])  # type: ignore[index]
