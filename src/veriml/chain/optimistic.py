"""The optimistic scheme's contract (`OptimisticJobs.sol`): deployment and a thin typed wrapper.

Writes take the signing account first and return the receipt; reads return frozen views. Reverts come back
as `ContractRevert` with the contract's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from veriml.chain.backends import Chain
from veriml.chain.deploy import Deployment
from veriml.chain.scheme_contract import SchemeContract, decode_view
from veriml.chain.tx import call
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


def deploy_optimistic(
    chain: Chain, deployment: Deployment, deployer: LocalAccount, config: OptimisticConfig | None = None
) -> Deployment:
    """Deploy OptimisticJobs on `deployment`'s registries (with `config`, default the deployment's) and
    authorise it in the NodeRegistry; the deployment comes back with `schemes["optimistic"]` set."""
    from veriml import schemes

    return schemes.get(SCHEME).deploy(chain, deployment, deployer, config)


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


class OptimisticJobs(SchemeContract):
    """The OptimisticJobs contract of one deployment."""

    SCHEME = SCHEME
    ARTIFACT = "OptimisticJobs"
    STATUS = OptStatus
    VIEW = OptJobView

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        super().__init__(chain, deployment)
        self._bond: int | None = None

    # ---- writes ----
    def submit(self, account: LocalAccount, model_id: bytes, data: bytes, fee: int) -> tuple[JobId, TxReceipt]:
        receipt = self.send(account, self.fn.submit(model_id, data), value=fee)
        return self.submitted(receipt), receipt

    def post(self, account: LocalAccount, job_id: int, output: bytes, trace_root: bytes, steps: int) -> TxReceipt:
        return self.send(account, self.fn.post(job_id, output, trace_root, steps))

    def missed_post(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return self.send(account, self.fn.missedPost(job_id))

    def finalize(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return self.send(account, self.fn.finalize(job_id))

    def challenge(self, account: LocalAccount, job_id: int, bond: int | None = None) -> TxReceipt:
        return self.send(account, self.fn.challenge(job_id), value=self.challenge_bond() if bond is None else bond)

    def bisect(self, account: LocalAccount, job_id: int, mid_hash: bytes, proof: list[bytes]) -> TxReceipt:
        return self.send(account, self.fn.bisect(job_id, mid_hash, proof))

    def respond(self, account: LocalAccount, job_id: int, agree: bool) -> TxReceipt:
        return self.send(account, self.fn.respond(job_id, agree))

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
        return self.send(account, fn, gas=gas)

    def timeout(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return self.send(account, self.fn.timeout(job_id))

    # ---- reads ----
    def dispute(self, job_id: int) -> DisputeView:
        return decode_view(DisputeView, call(self.fn.getDispute(job_id)), {"turn": Turn})

    def job_and_dispute(self, job_id: int) -> tuple[OptJobView, DisputeView]:
        """The job and its open dispute (turn NONE when there is none), in one call."""
        return self.job(job_id), self.dispute(job_id)

    def blocks_to_deadline(self, job: OptJobView, head: int) -> int | None:
        """Blocks until the next deadline an open job waits on (None if none)."""
        if job.status == OptStatus.SUBMITTED:
            return max(1, job.submit_block + 1 - head)
        if job.status.final:
            return None
        d = self.dispute(job.job_id)
        deadline = d.deadline if d.open else job.deadline
        return max(1, deadline + 1 - head)

    def has_challenged(self, job_id: int, account: str) -> bool:
        return bool(call(self.fn.hasChallenged(job_id, Web3.to_checksum_address(account))))

    def challenge_bond(self) -> int:
        """The bond a challenge must carry (immutable, so asked once)."""
        if self._bond is None:
            self._bond = int(call(self.fn.challengeBond()))
        return self._bond

_EMPTY_ROW = (0, 0, 0, False, False, 0, 0, 0, b"")


def _row_tuple(row: WeightRow | None) -> tuple:
    return _EMPTY_ROW if row is None else row.as_tuple()
