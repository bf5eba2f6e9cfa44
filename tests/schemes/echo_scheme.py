"""The worked example of docs/architecture.md: a do-nothing scheme added through the seam.

One contract on JobEscrow (contracts/test/EchoJobs.sol) and this one module: its wrapper, its config, its
spec. Registered, it deploys with every other scheme and is reachable as `contracts.scheme("echo")`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from eth_account.signers.local import LocalAccount
from web3.types import TxReceipt

from veriml import schemes
from veriml.chain.scheme_contract import SchemeContract
from veriml.types import Address, JobId, ModelId


@dataclass(frozen=True)
class EchoConfig:
    """EchoJobs has no parameters of its own."""


class EchoStatus(IntEnum):
    NONE = 0
    SUBMITTED = 1
    ASSIGNED = 2
    ESCALATED = 3
    VERIFIED = 4
    REFUNDED = 5


@dataclass(frozen=True)
class EchoJobView:
    job_id: JobId
    user: Address
    node: Address
    model_id: ModelId
    input_hash: bytes
    status: EchoStatus
    submit_block: int
    fee: int
    digest: bytes
    sub_job: int


class EchoJobs(SchemeContract):
    SCHEME = "echo"
    ARTIFACT = "EchoJobs"
    STATUS = EchoStatus
    VIEW = EchoJobView

    def submit(self, account: LocalAccount, model_id: bytes, input_hash: bytes, fee: int) -> tuple[JobId, TxReceipt]:
        receipt = self.send(account, self.fn.submit(model_id, input_hash), value=fee)
        return self.submitted(receipt), receipt

    def echo(self, account: LocalAccount, job_id: int, digest: bytes) -> TxReceipt:
        return self.send(account, self.fn.echo(job_id, digest))

    def escalate(self, account: LocalAccount, job_id: int, n: int) -> TxReceipt:
        return self.send(account, self.fn.escalate(job_id, n))

    def settle(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return self.send(account, self.fn.settle(job_id))

    def blocks_to_deadline(self, job: EchoJobView, head: int) -> int | None:
        return None


SPEC = schemes.SchemeSpec(
    name="echo",
    summary="one drawn node echoes a digest; anyone may escalate the job to a quorum sub-job",
    artifact="EchoJobs",
    contract=EchoJobs,
    config=EchoConfig,
    constructor_args=lambda c, d: (d.schemes["quorum"], d.config.slash_bps, d.config.burn_bps),
)
