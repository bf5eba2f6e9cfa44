"""The audit scheme (Proof of Sampling): one executor commits; a later block's hash decides a secret audit.

Contract `AuditJobs.sol`. One executor, drawn by stake over the candidates frozen at submission, commits
to a digest of its output. From the hash of the block that included that commit (which the executor
cannot know when it signs) the job is audited with probability `audit_bps` / 10000. Unaudited, the
executor reveals and is paid at once. Audited, `auditors` (k) more nodes, never the executor, are drawn;
they execute blind and commit before anyone may reveal; a strict majority of the k + 1 reveals (the
quorum rule, `OutputMatching`) decides, the others are slashed, and without a majority the user is
refunded. The user pays `price * (1 + pool_bps / 10000)` whether or not its job is audited; auditors are
paid from the pool.

What each party can learn (docs/audit.md has the whole list):
- the executor, up to its commit: exactly what it sees of any other job (JobSubmitted, JobAssigned, its
  own slot); the audit decision does not exist yet, since it is drawn from the commit block's hash;
- an auditor, before it commits: the job's input and the executor's *commitment* only (a salted hash);
  the executor's reveal is refused until every auditor committed or their window closed.

The role (`AuditRole`) plays both parts: executor when drawn, auditor when drawn as one. Its hooks
(`execute`, `will_commit`, `reveal_values`) take `as_auditor`, which is how `veriml.sim.faults`
makes a lazy or no-show executor and a lying auditor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.types import TxReceipt

from veriml import schemes
from veriml.chain import reverts
from veriml.chain.scheme_contract import SchemeContract, decode_view
from veriml.chain.tx import call
from veriml.node import state as st
from veriml.node.participant import Action, Role
from veriml.schemes.quorum import deterministic_runners, fetch_job_input
from veriml.types import Address, Digest, JobId, ModelId
from veriml.verify.commitment import commitment, new_salt

AUDIT_COMMITTED = "audit-committed"  # as auditor: commit sent


@dataclass(frozen=True)
class AuditConfig:
    """AuditJobs parameters fixed at deployment (defaults: docs/economics.md, `veriml.sim.economics.Market`:
    p = 5%, k = 2, a 10% pool, so p * k = the pool share and the pool balances on average)."""

    commit_window_blocks: int = 40
    reveal_window_blocks: int = 40
    audit_bps: int = 500
    auditors: int = 2
    pool_bps: int = 1_000


class AuditStatus(IntEnum):
    """AuditJobs.Status."""

    NONE = 0
    SUBMITTED = 1
    ASSIGNED = 2
    COMMITTED = 3
    REVEALING = 4
    AUDITING = 5
    VERIFIED = 6
    FAILED = 7
    REFUNDED = 8

    @property
    def final(self) -> bool:
        return self in (AuditStatus.VERIFIED, AuditStatus.FAILED, AuditStatus.REFUNDED)


@dataclass(frozen=True)
class AuditJobView:
    job_id: JobId
    user: Address
    executor: Address
    model_id: ModelId
    input_hash: bytes
    status: AuditStatus
    audited: bool
    policy: int
    threshold: int
    commits: int
    reveals: int
    submit_block: int
    commit_block: int
    deadline: int
    reveal_deadline: int
    candidates_hash: bytes
    price: int
    fee: int
    result_digest: Digest
    params: bytes

    scheme = "audit"


@dataclass(frozen=True)
class AuditSlotView:
    assigned: bool
    revealed: bool
    commitment: bytes
    digest: Digest


class AuditJobs(SchemeContract):
    """The AuditJobs contract of one deployment."""

    SCHEME = "audit"
    ARTIFACT = "AuditJobs"
    STATUS = AuditStatus
    VIEW = AuditJobView

    # ---- writes ----
    def submit(
        self, account: LocalAccount, model_id: bytes, input_hash: bytes, params: bytes = b"", fee: int | None = None
    ) -> tuple[JobId, TxReceipt]:
        """Escrow `fee` (default `fee_of(model_id)`: price plus the audit-pool contribution) and submit."""
        value = self.fee_of(model_id) if fee is None else fee
        receipt = self.send(account, self.fn.submit(model_id, input_hash, params), value=value)
        return self.submitted(receipt), receipt

    def draw_audit(self, account: LocalAccount, job_id: int) -> TxReceipt:
        cands, weights = self.frozen_candidates(job_id)
        return self.send(account, self.fn.drawAudit(job_id, cands, weights))

    def commit(self, account: LocalAccount, job_id: int, c: bytes) -> TxReceipt:
        return self.send(account, self.fn.commit(job_id, c))

    def reveal(
        self, account: LocalAccount, job_id: int, digest: bytes, salt: bytes, output_key: bytes = bytes(32)
    ) -> TxReceipt:
        return self.send(account, self.fn.reveal(job_id, digest, salt, output_key))

    def finalize(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return self.send(account, self.fn.finalize(job_id))

    def timeout(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return self.send(account, self.fn.timeout(job_id))

    def fund_pool(self, account: LocalAccount, amount: int) -> TxReceipt:
        return self.send(account, self.fn.fundPool(), value=amount)

    # ---- reads ----
    def fee_of(self, model_id: bytes) -> int:
        return int(call(self.fn.feeOf(model_id)))

    def audit_pool(self) -> int:
        return int(call(self.fn.auditPool()))

    def auditors_of(self, job_id: int) -> list[Address]:
        return [Address(a) for a in call(self.fn.auditorsOf(job_id))]

    def voters(self, job_id: int) -> list[Address]:
        """The executor, then the auditors."""
        return [Address(a) for a in call(self.fn.voterList(job_id))]

    def slot(self, job_id: int, node: str) -> AuditSlotView:
        return decode_view(AuditSlotView, call(self.fn.slotOf(job_id, Web3.to_checksum_address(node))))

    def blocks_to_deadline(self, job: AuditJobView, head: int) -> int | None:
        """Blocks until the next deadline an open job waits on (None if it waits on nobody's deadline)."""
        s = job.status
        if s == AuditStatus.SUBMITTED:
            return max(1, job.submit_block + 1 - head)
        if s == AuditStatus.COMMITTED and head <= job.commit_block:
            return job.commit_block + 1 - head
        if s in (AuditStatus.ASSIGNED, AuditStatus.COMMITTED) and head <= job.deadline:
            return job.deadline + 1 - head
        if s == AuditStatus.REVEALING and head <= job.reveal_deadline:
            return job.reveal_deadline + 1 - head
        if s == AuditStatus.AUDITING:
            if job.commits < len(self.auditors_of(job.job_id)) and head <= job.deadline:
                return job.deadline + 1 - head
            if head <= job.reveal_deadline:
                return job.reveal_deadline + 1 - head
        return None


_RACES = (reverts.WrongStatus,)


class AuditRole(Role):
    """A staked node in audit jobs: executor when drawn as one, auditor when drawn as one."""

    honest = True

    def __init__(
        self,
        jobs: AuditJobs,
        account: LocalAccount,
        state: st.NodeState,
        models: Sequence[Any] = (),
        input_store: Any = None,
        output_store: Any = None,
    ) -> None:
        super().__init__(jobs, account, state)
        self.jobs: AuditJobs = jobs
        self.runners = {m.model_id: m for m in models}
        self.input_store = input_store
        self.output_store = output_store

    def model_ids(self) -> list[bytes]:
        return list(self.runners)

    def serves(self, submitted: Any) -> bool:
        return bytes(submitted["args"]["modelId"]) in self.runners

    def racy(self, job_id: int, what: str, send: Callable[[], Any], detail: str = "") -> list[Action]:
        try:
            return [self.act(job_id, what, send, detail)]
        except _RACES:
            return []

    def advance(self, job_id: int, head: int) -> list[Action]:
        job = self.jobs.job(job_id)
        me = self.address
        out: list[Action] = []
        s = job.status
        if s.final:
            self.state.close_job(job_id, s.name.lower())
            return out
        if s == AuditStatus.SUBMITTED:
            if head > job.submit_block:
                out += self.racy(job_id, "assign", lambda: self.jobs.assign(self.account, job_id))
            return out
        if s == AuditStatus.ASSIGNED:
            if job.executor == me and head <= job.deadline and self.will_commit(job, as_auditor=False):
                out += self._commit(job, as_auditor=False)
            elif head > job.deadline and job.executor != me:
                out += self.racy(job_id, "timeout", lambda: self.jobs.timeout(self.account, job_id), "missed commit")
            return out
        if s == AuditStatus.COMMITTED:
            if job.commit_block < head <= job.deadline and (job.executor == me or self._drives(job)):
                out += self.racy(job_id, "draw-audit", lambda: self.jobs.draw_audit(self.account, job_id))
            elif head > job.deadline and job.executor != me:
                out += self.racy(job_id, "timeout", lambda: self.jobs.timeout(self.account, job_id), "no audit draw")
            return out
        if s == AuditStatus.REVEALING:
            if job.executor == me and head <= job.reveal_deadline:
                out += self._reveal(job)
            elif head > job.reveal_deadline and job.executor != me:
                out += self.racy(job_id, "timeout", lambda: self.jobs.timeout(self.account, job_id), "missed reveal")
            return out
        # AUDITING
        voters = self.jobs.voters(job_id)
        if me in voters:
            slot = self.jobs.slot(job_id, me)
            auditor = me != job.executor
            if auditor and slot.commitment == bytes(32) and head <= job.deadline:
                if self.will_commit(job, as_auditor=True):
                    out += self._commit(job, as_auditor=True)
                return out
            reveal_open = job.commits == len(voters) - 1 or head > job.deadline
            if slot.commitment != bytes(32) and not slot.revealed and reveal_open and head <= job.reveal_deadline:
                out += self._reveal(job)
                job = self.jobs.job(job_id)
        if job.reveals == len(voters) or self.jobs.chain.block_number() > job.reveal_deadline:
            out += self.racy(job_id, "finalize", lambda: self.jobs.finalize(self.account, job_id))
        return out

    def _drives(self, job: AuditJobView) -> bool:
        """Whether we call the audit draw for another executor's job (anyone may; all honest nodes do)."""
        return True

    def _commit(self, job: AuditJobView, as_auditor: bool) -> list[Action]:
        rec = self._prepare(job, as_auditor)
        if rec is None:
            # Retried every step until the window closes (then this node is slashed as a no-show: the
            # audit scheme has no input-unavailable abstention yet, see docs/audit.md).
            return [self.skip(job.job_id, "input not available yet")]
        assert rec.digest is not None and rec.salt is not None
        chain_id, me = self.jobs.chain.chain_id, self.address
        c = commitment(chain_id, self.jobs.address, job.job_id, me, Digest(rec.digest), rec.salt)
        role = "auditor" if as_auditor else "executor"
        action = self.act(
            job.job_id, "commit", lambda: self.jobs.commit(self.account, job.job_id, c),
            f"{role}: digest 0x{rec.digest.hex()[:12]}..",
        )  # fmt: skip
        self.state.update(job.job_id, phase=AUDIT_COMMITTED if as_auditor else st.COMMITTED)
        return [action]

    def _reveal(self, job: AuditJobView) -> list[Action]:
        rec = self.state.get(job.job_id)
        if rec is None or rec.digest is None:
            return [self.skip(job.job_id, "nothing committed to reveal")]
        digest, salt = self.reveal_values(rec)
        key = bytes.fromhex(rec.output_key) if rec.output_key else bytes(32)
        try:
            send = lambda: self.jobs.reveal(self.account, job.job_id, digest, salt, key)  # noqa: E731
            action = self.act(job.job_id, "reveal", send)
        except reverts.RevealMismatch as e:
            self.state.update(job.job_id, phase=st.REVEALED, outcome=f"reveal rejected: {e.reason}")
            return [self.skip(job.job_id, e.reason)]
        self.state.update(job.job_id, phase=st.REVEALED)
        return [action]

    def _prepare(self, job: AuditJobView, as_auditor: bool) -> st.JobRecord | None:
        """Run the job once and remember digest and salt before anything is sent (None: no input yet)."""
        rec = self.state.get(job.job_id)
        assert rec is not None
        if rec.digest is not None:
            return rec
        result = self.execute(job, as_auditor)
        if result is None:
            return None
        key = self.output_store.put(result.encode()) if self.output_store is not None else None
        self.state.update(job.job_id, digest=result.digest(), salt=new_salt(), output_key=key)
        return self.state.get(job.job_id)  # type: ignore[return-value]

    # ---- hooks (overridden by veriml.sim.faults) ----
    def fetch_input(self, job: AuditJobView) -> bytes | None:
        return fetch_job_input(self.input_store, job.input_hash)

    def execute(self, job: AuditJobView, as_auditor: bool) -> Any:
        """The output document of the job (the same whether we execute or audit it), or None."""
        from veriml import tasks

        data = self.fetch_input(job)
        if data is None:
            return None
        return tasks.execute(self.runners[job.model_id], data, job.params)

    def will_commit(self, job: AuditJobView, as_auditor: bool) -> bool:
        return True

    def reveal_values(self, rec: st.JobRecord) -> tuple[bytes, bytes]:
        assert rec.digest is not None and rec.salt is not None
        return rec.digest, rec.salt


def role_for(jobs: AuditJobs, account: LocalAccount, state: st.NodeState, env: Any) -> AuditRole:
    """An audit role serving the models of `env` that run on the deterministic runtimes (as quorum's)."""
    return AuditRole(jobs, account, state, deterministic_runners(env), env.input_store, env.output_store)


class AuditClient:
    """A user of the audit scheme: put the input in the blob store, submit, wait."""

    def __init__(self, contracts: Any, account: LocalAccount, input_store: Any = None) -> None:
        self.contracts = contracts
        self.account = account
        self.input_store = input_store
        self.jobs: AuditJobs = contracts.scheme("audit")

    @property
    def address(self) -> str:
        return self.account.address

    def submit_text(self, model: str, prompt: str, max_new_tokens: int = 16, fee: int | None = None) -> JobId:
        from veriml.jobspec import TextParams
        from veriml.models import zoo

        data = prompt.encode()
        key = self.input_store.put(data)
        params = TextParams(max_new_tokens=max_new_tokens).encode()
        job_id, _ = self.jobs.submit(self.account, zoo.manifest(model).model_id(), bytes.fromhex(key), params, fee)
        return job_id

    def wait(
        self, job_id: int, timeout: float = 120.0, between: Callable[[], object] | None = None, poll: float = 0.2
    ) -> AuditJobView:
        deadline = time.monotonic() + timeout
        while True:
            if between is not None:
                between()
            job = self.jobs.job(job_id)
            if job.status.final:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.status.name.lower()} after {timeout:.0f}s")
            if between is None:
                time.sleep(poll)


def _client(contracts: Any, account: LocalAccount, input_store: Any = None, **_: Any) -> AuditClient:
    return AuditClient(contracts, account, input_store)


# Not registered on import until audit joins the built-in schemes: tests call schemes.register(SPEC).
SPEC = schemes.SchemeSpec(
    name="audit",
    summary="one executor commits; a later block's hash secretly picks p of jobs for k blind auditors",
    artifact="AuditJobs",
    contract=AuditJobs,
    config=AuditConfig,
    constructor_args=lambda c, d: (
        c.commit_window_blocks,
        c.reveal_window_blocks,
        c.audit_bps,
        c.auditors,
        c.pool_bps,
        d.config.slash_bps,
        d.config.burn_bps,
    ),  # fmt: skip
    role=role_for,
    client=_client,
    faults=("honest", "wrong-output", "no-show", "lying-auditor"),
)
