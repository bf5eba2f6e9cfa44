"""Thin typed wrappers over the deployed contracts: one method per contract function we use.

Writes take the signing account first and return the receipt; reads return frozen views. Reverts come
back as `ContractRevert` with the contract's reason.
"""

from __future__ import annotations

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
from veriml.chain.deploy import Deployment
from veriml.chain.tx import call, send
from veriml.errors import ContractRevert
from veriml.types import POLICY_CODES, SCHEME_CODES, Address, Digest, JobId, ModelId

POLICY_NAMES = {v: k for k, v in POLICY_CODES.items()}
SCHEME_NAMES = {v: k for k, v in SCHEME_CODES.items()}


class JobStatus(IntEnum):
    """JobMarket.Status."""

    NONE = 0
    SUBMITTED = 1
    ASSIGNED = 2
    VERIFIED = 3
    DISPUTED = 4
    REFUNDED = 5

    @property
    def final(self) -> bool:
        return self in (JobStatus.VERIFIED, JobStatus.DISPUTED, JobStatus.REFUNDED)


@dataclass(frozen=True)
class JobView:
    job_id: JobId
    user: Address
    model_id: ModelId
    input_hash: bytes
    scheme: str
    n: int
    status: JobStatus
    policy: str
    threshold: int
    commits: int
    reveals: int
    submit_block: int
    commit_deadline: int
    reveal_deadline: int
    candidates_hash: bytes
    fee: int
    result_digest: Digest
    params: bytes


@dataclass(frozen=True)
class NodeView:
    address: Address
    stake: int
    endpoint: str
    pubkey: bytes
    unbond_block: int
    open_jobs: int
    registered: bool


@dataclass(frozen=True)
class ModelView:
    model_id: ModelId
    owner: Address
    weights_root: bytes
    policy: str
    threshold: int
    price: int


@dataclass(frozen=True)
class SlotView:
    assigned: bool
    revealed: bool
    commitment: bytes
    digest: Digest


def frozen_candidates(scheme: Contract, job_id: int, submit_block: int) -> tuple[list[str], list[int]]:
    """The candidate list a scheme froze for a job at submission (StakeDraw.CandidatesFrozen)."""
    logs = scheme.events.CandidatesFrozen().get_logs(
        from_block=submit_block, to_block=submit_block, argument_filters={"jobId": job_id}
    )
    if len(logs) != 1:
        raise ContractRevert(f"no CandidatesFrozen event for job {job_id} in block {submit_block}")
    return list(logs[0]["args"]["candidates"]), list(logs[0]["args"]["weights"])


class Contracts:
    """The veriml contracts on one chain."""

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.deployment = deployment
        self.models: Contract = self._bind("ModelRegistry", deployment.model_registry)
        self.nodes: Contract = self._bind("NodeRegistry", deployment.node_registry)
        self.market: Contract = self._bind("JobMarket", deployment.job_market)

    def _bind(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name).abi)

    # ---- models ----
    def register_model(
        self,
        account: LocalAccount,
        model_id: bytes,
        weights_root: bytes,
        policy: str,
        threshold: int,
        price: int,
    ) -> TxReceipt:
        fn = self.models.functions.register(model_id, weights_root, POLICY_CODES[policy], threshold, price)
        return send(self.w3, fn, account)

    def model_exists(self, model_id: bytes) -> bool:
        return bool(call(self.models.functions.exists(model_id)))

    def model(self, model_id: bytes) -> ModelView:
        m = call(self.models.functions.getModel(model_id))
        return ModelView(ModelId(bytes(model_id)), m[0], bytes(m[1]), POLICY_NAMES[m[2]], m[3], m[4])

    # ---- nodes ----
    def register_node(
        self, account: LocalAccount, stake: int, endpoint: str, pubkey: bytes, model_ids: list[bytes]
    ) -> TxReceipt:
        return send(self.w3, self.nodes.functions.register(endpoint, pubkey, model_ids), account, value=stake)

    def top_up(self, account: LocalAccount, amount: int) -> TxReceipt:
        return send(self.w3, self.nodes.functions.topUp(), account, value=amount)

    def request_unbond(self, account: LocalAccount) -> TxReceipt:
        return send(self.w3, self.nodes.functions.requestUnbond(), account)

    def withdraw_stake(self, account: LocalAccount) -> TxReceipt:
        return send(self.w3, self.nodes.functions.withdrawStake(), account)

    def node(self, address: str) -> NodeView:
        n = call(self.nodes.functions.getNode(Web3.to_checksum_address(address)))
        return NodeView(Address(Web3.to_checksum_address(address)), n[0], n[1], bytes(n[2]), n[3], n[4], n[5])

    def stake_of(self, address: str) -> int:
        return int(call(self.nodes.functions.stakeOf(Web3.to_checksum_address(address))))

    def candidates(self, model_id: bytes) -> list[tuple[Address, int]]:
        addrs, weights = call(self.nodes.functions.candidates(model_id))
        return [(Address(a), int(w)) for a, w in zip(addrs, weights, strict=True)]

    def total_staked(self) -> int:
        return int(call(self.nodes.functions.totalStaked()))

    # ---- jobs ----
    def submit(
        self,
        account: LocalAccount,
        model_id: bytes,
        input_hash: bytes,
        params: bytes,
        n: int,
        fee: int,
        scheme: str = "quorum",
    ) -> tuple[JobId, TxReceipt]:
        fn = self.market.functions.submit(model_id, input_hash, params, SCHEME_CODES[scheme], n)
        receipt = send(self.w3, fn, account, value=fee)
        (event,) = self.market.events.JobSubmitted().process_receipt(receipt, errors=DISCARD)
        return JobId(event["args"]["jobId"]), receipt

    def assign(self, account: LocalAccount, job_id: int) -> TxReceipt:
        """Draw the job's nodes from the candidates frozen at its submission."""
        cands, weights = self.frozen_candidates(job_id)
        return send(self.w3, self.market.functions.assign(job_id, cands, weights), account)

    def frozen_candidates(self, job_id: int) -> tuple[list[str], list[int]]:
        """The (nodes, stakes) a job may draw from, as emitted when it was submitted."""
        return frozen_candidates(self.market, job_id, self.job(job_id).submit_block)

    def commit(self, account: LocalAccount, job_id: int, commitment: bytes) -> TxReceipt:
        return send(self.w3, self.market.functions.commit(job_id, commitment), account)

    def reveal(
        self, account: LocalAccount, job_id: int, digest: bytes, salt: bytes, output_key: bytes = bytes(32)
    ) -> TxReceipt:
        """Open a commitment; `output_key` names the output blob at the node's endpoint (not committed)."""
        return send(self.w3, self.market.functions.reveal(job_id, digest, salt, output_key), account)

    def finalize(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return send(self.w3, self.market.functions.finalize(job_id), account)

    def withdraw(self, account: LocalAccount) -> TxReceipt:
        return send(self.w3, self.market.functions.withdraw(), account)

    def job(self, job_id: int) -> JobView:
        j = call(self.market.functions.getJob(job_id))
        return JobView(
            JobId(job_id),
            j[0],
            ModelId(bytes(j[1])),
            bytes(j[2]),
            SCHEME_NAMES[j[3]],
            j[4],
            JobStatus(j[5]),
            POLICY_NAMES[j[6]],
            j[7],
            j[8],
            j[9],
            j[10],
            j[11],
            j[12],
            bytes(j[13]),
            j[14],
            Digest(bytes(j[15])),
            bytes(j[16]),
        )

    def assigned_nodes(self, job_id: int) -> list[Address]:
        return [Address(a) for a in call(self.market.functions.assignedNodes(job_id))]

    def slot(self, job_id: int, node: str) -> SlotView:
        s = call(self.market.functions.slotOf(job_id, Web3.to_checksum_address(node)))
        return SlotView(s[0], s[1], bytes(s[2]), Digest(bytes(s[3])))

    def credits(self, address: str) -> int:
        return int(call(self.market.functions.credits(Web3.to_checksum_address(address))))

    def total_escrow(self) -> int:
        return int(call(self.market.functions.totalEscrow()))

    def total_credits(self) -> int:
        return int(call(self.market.functions.totalCredits()))

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))

    # ---- events ----
    def market_events(self, name: str, from_block: int, to_block: int | None = None, **filters: Any) -> list[Any]:
        """Decoded JobMarket events of one kind in [from_block, to_block]."""
        event = getattr(self.market.events, name)()
        to = self.w3.eth.block_number if to_block is None else to_block
        if to < from_block:
            return []
        return list(event.get_logs(from_block=from_block, to_block=to, argument_filters=filters or None))
