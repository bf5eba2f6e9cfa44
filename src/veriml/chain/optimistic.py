"""The optimistic scheme's contract (`OptimisticJobs.sol`): deployment and a thin typed wrapper.

Writes take the signing account first and return the receipt; reads return frozen views. Reverts come back
as `ContractRevert` with the contract's reason.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from veriml.chain.artifacts import load_artifact
from veriml.chain.backends import Chain
from veriml.chain.contracts import frozen_candidates
from veriml.chain.deploy import Deployment, deploy_contract
from veriml.chain.tx import call, send
from veriml.types import Address, JobId, ModelId
from veriml.verify.trace import WeightRow

SCHEME = "optimistic"


@dataclass(frozen=True)
class OptimisticConfig:
    """Parameters of the optimistic contract, fixed at deployment."""

    execute_window_blocks: int = 20
    challenge_window_blocks: int = 20
    round_window_blocks: int = 10
    challenge_bond_wei: int = 10**17  # 0.1 ETH
    slash_bps: int = 5_000


def deploy_optimistic(
    chain: Chain, deployment: Deployment, deployer: LocalAccount, config: OptimisticConfig | None = None
) -> Deployment:
    """Deploy OptimisticJobs on the registries of `deployment`, authorise it in the NodeRegistry (the deployer
    must own the registry), and return the deployment with `schemes["optimistic"]` set."""
    cfg = config or OptimisticConfig()
    address = deploy_contract(
        chain,
        deployer,
        "OptimisticJobs",
        deployment.model_registry,
        deployment.node_registry,
        deployment.randomness,
        cfg.execute_window_blocks,
        cfg.challenge_window_blocks,
        cfg.round_window_blocks,
        cfg.challenge_bond_wei,
        cfg.slash_bps,
    )
    registry = chain.w3.eth.contract(address=deployment.node_registry, abi=load_artifact("NodeRegistry").abi)
    send(chain.w3, registry.functions.setScheme(address, True), deployer)
    return dataclasses.replace(deployment, schemes={**deployment.schemes, SCHEME: address})


class OptStatus(IntEnum):
    """OptimisticJobs.Status."""

    NONE = 0
    SUBMITTED = 1
    ASSIGNED = 2
    POSTED = 3
    FINALIZED = 4
    OVERTURNED = 5
    REFUNDED = 6

    @property
    def final(self) -> bool:
        return self in (OptStatus.FINALIZED, OptStatus.OVERTURNED, OptStatus.REFUNDED)


class Turn(IntEnum):
    """OptimisticJobs.Turn."""

    NONE = 0
    EXECUTOR = 1
    CHALLENGER = 2
    STEP = 3


@dataclass(frozen=True)
class OptJobView:
    job_id: JobId
    user: Address
    executor: Address
    model_id: ModelId
    input_hash: bytes
    status: OptStatus
    submit_block: int
    deadline: int
    steps: int
    fee: int
    result_digest: bytes
    trace_root: bytes


@dataclass(frozen=True)
class DisputeView:
    challenger: Address
    turn: Turn
    deadline: int
    lo: int
    hi: int
    rounds: int
    bond: int
    h_lo: bytes
    h_hi: bytes
    h_mid: bytes

    @property
    def open(self) -> bool:
        return self.turn != Turn.NONE

    @property
    def mid(self) -> int:
        return (self.lo + self.hi) // 2


class OptimisticJobs:
    """The OptimisticJobs contract of one deployment."""

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.address = Web3.to_checksum_address(deployment.schemes[SCHEME])
        self.contract: Contract = self.w3.eth.contract(address=self.address, abi=load_artifact("OptimisticJobs").abi)
        self.fn = self.contract.functions
        self._bond: int | None = None

    # ---- writes ----
    def submit(self, account: LocalAccount, model_id: bytes, data: bytes, fee: int) -> tuple[JobId, TxReceipt]:
        receipt = send(self.w3, self.fn.submit(model_id, data), account, value=fee)
        (event,) = self.contract.events.JobSubmitted().process_receipt(receipt, errors=DISCARD)
        return JobId(event["args"]["jobId"]), receipt

    def assign(self, account: LocalAccount, job_id: int) -> TxReceipt:
        """Draw the executor from the candidates frozen at submission."""
        cands, weights = frozen_candidates(self.contract, job_id, self.job(job_id).submit_block)
        return send(self.w3, self.fn.assign(job_id, cands, weights), account)

    def post(self, account: LocalAccount, job_id: int, output: bytes, trace_root: bytes, steps: int) -> TxReceipt:
        return send(self.w3, self.fn.post(job_id, output, trace_root, steps), account)

    def missed_post(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return send(self.w3, self.fn.missedPost(job_id), account)

    def finalize(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return send(self.w3, self.fn.finalize(job_id), account)

    def challenge(self, account: LocalAccount, job_id: int, bond: int | None = None) -> TxReceipt:
        return send(self.w3, self.fn.challenge(job_id), account, value=self.challenge_bond() if bond is None else bond)

    def bisect(self, account: LocalAccount, job_id: int, mid_hash: bytes, proof: list[bytes]) -> TxReceipt:
        return send(self.w3, self.fn.bisect(job_id, mid_hash, proof), account)

    def respond(self, account: LocalAccount, job_id: int, agree: bool) -> TxReceipt:
        return send(self.w3, self.fn.respond(job_id, agree), account)

    def prove_step(
        self,
        account: LocalAccount,
        job_id: int,
        state: bytes,
        row: WeightRow | None,
        proof: list[bytes],
        gas: int | None = None,
    ) -> TxReceipt:
        """Settle a one-step dispute; `row` may be None for a halted state (no weights are needed)."""
        fn = self.fn.proveStep(job_id, state, _row_tuple(row), proof)
        return send(self.w3, fn, account, gas=gas)

    def timeout(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return send(self.w3, self.fn.timeout(job_id), account)

    def withdraw(self, account: LocalAccount) -> TxReceipt:
        return send(self.w3, self.fn.withdraw(), account)

    # ---- reads ----
    def job(self, job_id: int) -> OptJobView:
        return _job_view(job_id, call(self.fn.getJob(job_id)))

    def dispute(self, job_id: int) -> DisputeView:
        return _dispute_view(call(self.fn.getDispute(job_id)))

    def job_and_dispute(self, job_id: int) -> tuple[OptJobView, DisputeView]:
        """The job and its open dispute (turn NONE when there is none), in one call."""
        j, d = call(self.fn.getJobAndDispute(job_id))
        return _job_view(job_id, j), _dispute_view(d)

    def next_job_id(self) -> int:
        return int(call(self.fn.nextJobId()))

    def has_challenged(self, job_id: int, account: str) -> bool:
        return bool(call(self.fn.hasChallenged(job_id, Web3.to_checksum_address(account))))

    def credits(self, account: str) -> int:
        return int(call(self.fn.credits(Web3.to_checksum_address(account))))

    def challenge_bond(self) -> int:
        """The bond a challenge must carry (immutable, so asked once)."""
        if self._bond is None:
            self._bond = int(call(self.fn.challengeBond()))
        return self._bond

    def totals(self) -> dict[str, int]:
        """escrow, bonds and credits, and the contract's balance (which must equal their sum)."""
        return {
            "escrow": int(call(self.fn.totalEscrow())),
            "bonds": int(call(self.fn.totalBonds())),
            "credits": int(call(self.fn.totalCredits())),
            "balance": int(self.w3.eth.get_balance(self.address)),
        }

    def events(self, name: str, from_block: int, to_block: int | None = None, **filters: Any) -> list[Any]:
        """Decoded events of one kind in [from_block, to_block]."""
        event = getattr(self.contract.events, name)()
        to = self.w3.eth.block_number if to_block is None else to_block
        if to < from_block:
            return []
        return list(event.get_logs(from_block=from_block, to_block=to, argument_filters=filters or None))


def _job_view(job_id: int, j: Any) -> OptJobView:
    return OptJobView(
        JobId(job_id),
        j[0],
        j[1],
        ModelId(bytes(j[2])),
        bytes(j[3]),
        OptStatus(j[4]),
        j[5],
        j[6],
        j[7],
        j[8],
        bytes(j[9]),
        bytes(j[10]),
    )


def _dispute_view(d: Any) -> DisputeView:
    return DisputeView(d[0], Turn(d[1]), d[2], d[3], d[4], d[5], d[6], bytes(d[7]), bytes(d[8]), bytes(d[9]))


_EMPTY_ROW = (0, 0, 0, False, False, 0, 0, 0, b"")


def _row_tuple(row: WeightRow | None) -> tuple:
    return _EMPTY_ROW if row is None else row.as_tuple()
