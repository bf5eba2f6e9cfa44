"""The zk scheme's contract, `ZkJobs`: deployment and a thin typed wrapper (web3 only, like contracts.py).

`deploy_zk` adds ZkJobs to an existing deployment and authorises it in the NodeRegistry to lock and
slash nodes; the deployment comes back with `schemes["zk"]` set. Verifier contracts are deployed from
bytecode built at model registration (see `veriml.zk.verifier`), not from the committed artifacts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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
from veriml.chain.tx import call, send, send_raw
from veriml.errors import ConfigError
from veriml.types import Address, JobId, ModelId

SCHEME = "zk"
SETTLE_GAS_RESERVE = 300_000  # ZkJobs.SETTLE_GAS_RESERVE


@dataclass(frozen=True)
class ZkConfig:
    """ZkJobs parameters fixed at deployment."""

    prove_window_blocks: int = 40
    slash_bps: int = 5_000  # half the stake of a node whose proof fails or never comes


class ZkJobStatus(IntEnum):
    """ZkJobs.Status."""

    NONE = 0
    SUBMITTED = 1
    ASSIGNED = 2
    VERIFIED = 3
    REJECTED = 4
    EXPIRED = 5
    REFUNDED = 6

    @property
    def final(self) -> bool:
        return self.value >= ZkJobStatus.VERIFIED


@dataclass(frozen=True)
class ZkJobView:
    job_id: JobId
    user: Address
    model_id: ModelId
    input_hash: bytes
    status: ZkJobStatus
    node: Address | None
    submit_block: int
    deadline: int
    fee: int
    output_hash: bytes


@dataclass(frozen=True)
class CircuitView:
    verifier: Address
    verifier_code_hash: bytes
    vk_hash: bytes
    n_inputs: int
    n_outputs: int
    verify_gas: int
    input_max: int


def deploy_zk(
    chain: Chain, deployment: Deployment, deployer: LocalAccount, config: ZkConfig | None = None
) -> Deployment:
    """Deploy ZkJobs next to `deployment`'s registries and authorise it to lock and slash nodes.

    `deployer` must own the NodeRegistry (it deployed it)."""
    config = config or ZkConfig()
    address = deploy_contract(
        chain,
        deployer,
        "ZkJobs",
        deployment.model_registry,
        deployment.node_registry,
        deployment.randomness,
        config.prove_window_blocks,
        config.slash_bps,
    )
    registry = chain.w3.eth.contract(
        address=Web3.to_checksum_address(deployment.node_registry), abi=load_artifact("NodeRegistry").abi
    )
    send(chain.w3, registry.functions.setScheme(address, True), deployer)
    return dataclasses.replace(deployment, schemes={**deployment.schemes, SCHEME: address})


def deploy_bytecode(chain: Chain, deployer: LocalAccount, abi: list[dict[str, Any]], bytecode: str) -> TxReceipt:
    """Deploy a contract we compiled ourselves (a verifier); returns the receipt (`contractAddress`)."""
    factory = chain.w3.eth.contract(abi=abi, bytecode=bytecode)
    tx = factory.constructor().build_transaction(
        {"from": deployer.address, "nonce": chain.w3.eth.get_transaction_count(deployer.address, "pending")}
    )
    return send_raw(chain.w3, tx, deployer)


class ZkJobs:
    """The ZkJobs contract of one deployment."""

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        if SCHEME not in deployment.schemes:
            raise ConfigError("the deployment has no zk scheme (run deploy_zk first)")
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.deployment = deployment
        self.address = Web3.to_checksum_address(deployment.schemes[SCHEME])
        self.contract: Contract = self.w3.eth.contract(address=self.address, abi=load_artifact("ZkJobs").abi)

    # ---- model owners ----
    def register_circuit(
        self,
        owner: LocalAccount,
        model_id: bytes,
        verifier: str,
        vk_hash: bytes,
        n_inputs: int,
        n_outputs: int,
        verify_gas: int,
        input_max: int,
    ) -> TxReceipt:
        fn = self.contract.functions.registerCircuit(
            model_id, Web3.to_checksum_address(verifier), vk_hash, n_inputs, n_outputs, verify_gas, input_max
        )
        return send(self.w3, fn, owner)

    def has_circuit(self, model_id: bytes) -> bool:
        return bool(call(self.contract.functions.hasCircuit(model_id)))

    def circuit(self, model_id: bytes) -> CircuitView:
        c = call(self.contract.functions.getCircuit(model_id))
        return CircuitView(Address(c[0]), bytes(c[1]), bytes(c[2]), c[3], c[4], c[5], c[6])

    # ---- users ----
    def submit(
        self, user: LocalAccount, model_id: bytes, input_felts: Sequence[int], fee: int
    ) -> tuple[JobId, TxReceipt]:
        receipt = send(self.w3, self.contract.functions.submit(model_id, list(input_felts)), user, value=fee)
        (event,) = self.contract.events.JobSubmitted().process_receipt(receipt, errors=DISCARD)
        return JobId(event["args"]["jobId"]), receipt

    def assign(self, account: LocalAccount, job_id: int) -> TxReceipt:
        """Draw the node from the candidates frozen at submission."""
        cands, weights = frozen_candidates(self.contract, job_id, self.job(job_id).submit_block)
        return send(self.w3, self.contract.functions.assign(job_id, cands, weights), account)

    # ---- nodes ----
    def submit_proof(
        self, node: LocalAccount, job_id: int, proof: bytes, instances: Sequence[int], gas: int | None = None
    ) -> TxReceipt:
        fn = self.contract.functions.submitProof(job_id, proof, list(instances))
        return send(self.w3, fn, node, gas=gas)

    def proof_gas(self, model_id: bytes, proof: bytes, instances: Sequence[int]) -> int:
        """A gas limit that always covers `submitProof` for this model: the verifier's fixed budget (what the
        contract demands, 1/64 kept back) plus settlement and calldata. Sending with it skips the estimate,
        which on most backends would run the expensive verifier once more just to price it."""
        verify = self.circuit(model_id).verify_gas
        calldata = 16 * (4 + 32 * 5 + len(proof) + 32 * len(instances))
        return 21_000 + calldata + verify + verify // 63 + SETTLE_GAS_RESERVE + 200_000

    def expire(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return send(self.w3, self.contract.functions.expire(job_id), account)

    def withdraw(self, account: LocalAccount) -> TxReceipt:
        return send(self.w3, self.contract.functions.withdraw(), account)

    # ---- views ----
    def job(self, job_id: int) -> ZkJobView:
        j = call(self.contract.functions.getJob(job_id))
        node = None if int(j[4], 16) == 0 else Address(j[4])
        return ZkJobView(
            JobId(job_id), Address(j[0]), ModelId(bytes(j[1])), bytes(j[2]), ZkJobStatus(j[3]), node, j[5], j[6],
            j[7], bytes(j[8]),
        )  # fmt: skip

    def input_hash_of(self, felts: Sequence[int]) -> bytes:
        return bytes(call(self.contract.functions.inputHashOf(list(felts))))

    def next_job_id(self) -> int:
        return int(call(self.contract.functions.nextJobId()))

    def credits(self, address: str) -> int:
        return int(call(self.contract.functions.credits(Web3.to_checksum_address(address))))

    def total_escrow(self) -> int:
        return int(call(self.contract.functions.totalEscrow()))

    def total_credits(self) -> int:
        return int(call(self.contract.functions.totalCredits()))

    def prove_window(self) -> int:
        return int(call(self.contract.functions.proveWindow()))

    def balance(self) -> int:
        return int(self.w3.eth.get_balance(self.address))

    # ---- events ----
    def events(self, name: str, from_block: int, to_block: int | None = None, **filters: Any) -> list[Any]:
        """Decoded ZkJobs events of one kind in [from_block, to_block]."""
        event = getattr(self.contract.events, name)()
        to = self.w3.eth.block_number if to_block is None else to_block
        if to < from_block:
            return []
        return list(event.get_logs(from_block=from_block, to_block=to, argument_filters=filters or None))

    def receipt_events(self, name: str, receipt: TxReceipt) -> list[Any]:

        return list(getattr(self.contract.events, name)().process_receipt(receipt, errors=DISCARD))
