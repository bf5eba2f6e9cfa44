"""The zk scheme's contract, `ZkJobs`: deployment and a thin typed wrapper (web3 only, like contracts.py).

`deploy_zk` adds ZkJobs to an existing deployment and authorises it in the NodeRegistry to lock and
slash nodes; the deployment comes back with `schemes["zk"]` set. Verifier contracts are deployed from
bytecode built at model registration (see `veriml.zk.verifier`), not from the committed artifacts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from veriml.chain.backends import Chain
from veriml.chain.deploy import Deployment
from veriml.chain.scheme_contract import SchemeContract, decode_view
from veriml.chain.tx import call, send_raw
from veriml.types import Address, JobId, ModelId

SCHEME = "zk"
SETTLE_GAS_RESERVE = 300_000  # ZkJobs.SETTLE_GAS_RESERVE


@dataclass(frozen=True)
class ZkConfig:
    """ZkJobs parameters fixed at deployment."""

    prove_window_blocks: int = 40


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
    from veriml import schemes

    return schemes.get(SCHEME).deploy(chain, deployment, deployer, config)


def deploy_bytecode(chain: Chain, deployer: LocalAccount, abi: list[dict[str, Any]], bytecode: str) -> TxReceipt:
    """Deploy a contract we compiled ourselves (a verifier); returns the receipt (`contractAddress`)."""
    factory = chain.w3.eth.contract(abi=abi, bytecode=bytecode)
    tx = factory.constructor().build_transaction(
        {"from": deployer.address, "nonce": chain.w3.eth.get_transaction_count(deployer.address, "pending")}
    )
    return send_raw(chain.w3, tx, deployer)


class ZkJobs(SchemeContract):
    """The ZkJobs contract of one deployment."""

    SCHEME = SCHEME
    ARTIFACT = "ZkJobs"
    STATUS = ZkJobStatus
    VIEW = ZkJobView

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
        return self.send(owner, fn)

    def has_circuit(self, model_id: bytes) -> bool:
        return bool(call(self.contract.functions.hasCircuit(model_id)))

    def circuit(self, model_id: bytes) -> CircuitView:
        return decode_view(CircuitView, call(self.contract.functions.getCircuit(model_id)))

    # ---- users ----
    def submit(
        self, user: LocalAccount, model_id: bytes, input_felts: Sequence[int], fee: int
    ) -> tuple[JobId, TxReceipt]:
        receipt = self.send(user, self.contract.functions.submit(model_id, list(input_felts)), value=fee)
        return self.submitted(receipt), receipt

    # ---- nodes ----
    def submit_proof(
        self, node: LocalAccount, job_id: int, proof: bytes, instances: Sequence[int], gas: int | None = None
    ) -> TxReceipt:
        fn = self.contract.functions.submitProof(job_id, proof, list(instances))
        return self.send(node, fn, gas=gas)

    def proof_gas(self, model_id: bytes, proof: bytes, instances: Sequence[int]) -> int:
        """A gas limit that always covers `submitProof` for this model: the verifier's fixed budget (what the
        contract demands, 1/64 kept back) plus settlement and calldata. Sending with it skips the estimate,
        which on most backends would run the expensive verifier once more just to price it."""
        verify = self.circuit(model_id).verify_gas
        calldata = 16 * (4 + 32 * 5 + len(proof) + 32 * len(instances))
        return 21_000 + calldata + verify + verify // 63 + SETTLE_GAS_RESERVE + 200_000

    def expire(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return self.send(account, self.contract.functions.expire(job_id))

    # ---- views ----
    def job(self, job_id: int) -> ZkJobView:
        j = call(self.fn.getJob(job_id))
        node = None if int(j.node, 16) == 0 else Address(j.node)
        return decode_view(ZkJobView, j._replace(node=node), {"status": ZkJobStatus}, job_id=JobId(job_id))

    def blocks_to_deadline(self, job: ZkJobView, head: int) -> int | None:
        """Blocks until the next deadline an open job waits on (None if none)."""
        if job.status == ZkJobStatus.SUBMITTED:
            return max(1, job.submit_block + 1 - head)
        if job.status == ZkJobStatus.ASSIGNED:
            return max(1, job.deadline + 1 - head)
        return None

    def input_hash_of(self, felts: Sequence[int]) -> bytes:
        return bytes(call(self.contract.functions.inputHashOf(list(felts))))

    def prove_window(self) -> int:
        return int(call(self.contract.functions.proveWindow()))
