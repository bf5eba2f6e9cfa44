"""The quorum scheme: n nodes commit to a digest of their output, reveal it, and a strict majority wins.

Contract `QuorumJobs.sol`; rule mirrored by `veriml.verify.quorum`; client `veriml.client.sdk.Client`.
The node role here runs the model (through `veriml.tasks`), commits, reveals and finalizes. Its three
hooks (`execute`, `will_commit`, `reveal_values`) are what `veriml.sim.faults` overrides to misbehave.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from veriml.errors import BlobNotFound, NetworkError, VerificationError
from veriml.node import state as st
from veriml.node.participant import Action, Role
from veriml.types import Address, BlobKey, Digest, JobId, ModelId
from veriml.verify.commitment import commitment, new_salt
from veriml.verify.quorum import INPUT_UNAVAILABLE


@dataclass(frozen=True)
class QuorumConfig:
    """QuorumJobs parameters fixed at deployment."""

    commit_window_blocks: int = 40
    reveal_window_blocks: int = 40


class JobStatus(IntEnum):
    """QuorumJobs.Status."""

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

    scheme = "quorum"


@dataclass(frozen=True)
class SlotView:
    assigned: bool
    revealed: bool
    commitment: bytes
    digest: Digest


class QuorumJobs(SchemeContract):
    """The QuorumJobs contract of one deployment."""

    SCHEME = "quorum"
    ARTIFACT = "QuorumJobs"
    STATUS = JobStatus
    VIEW = JobView

    def job(self, job_id: int) -> JobView:
        from veriml.chain.contracts import POLICY_NAMES

        raw = call(self.fn.getJob(job_id))
        return decode_view(
            JobView, raw._replace(policy=POLICY_NAMES[raw.policy]), {"status": JobStatus}, job_id=JobId(job_id)
        )

    def submit(
        self, account: LocalAccount, model_id: bytes, input_hash: bytes, params: bytes, n: int, fee: int
    ) -> tuple[JobId, TxReceipt]:
        receipt = self.send(account, self.fn.submit(model_id, input_hash, params, n), value=fee)
        return self.submitted(receipt), receipt

    def commit(self, account: LocalAccount, job_id: int, commitment: bytes) -> TxReceipt:
        return self.send(account, self.fn.commit(job_id, commitment))

    def reveal(
        self, account: LocalAccount, job_id: int, digest: bytes, salt: bytes, output_key: bytes = bytes(32)
    ) -> TxReceipt:
        """Open a commitment; `output_key` names the output blob at the node's endpoint (not committed)."""
        return self.send(account, self.fn.reveal(job_id, digest, salt, output_key))

    def finalize(self, account: LocalAccount, job_id: int) -> TxReceipt:
        return self.send(account, self.fn.finalize(job_id))

    def assigned_nodes(self, job_id: int) -> list[Address]:
        return [Address(a) for a in call(self.fn.assignedNodes(job_id))]

    def slot(self, job_id: int, node: str) -> SlotView:
        return decode_view(SlotView, call(self.fn.slotOf(job_id, Web3.to_checksum_address(node))))

    def blocks_to_deadline(self, job: JobView, head: int) -> int | None:
        """Blocks until the next deadline an open job waits on (None if it waits on nobody's deadline)."""
        if job.status == JobStatus.SUBMITTED:
            return max(1, job.submit_block + 1 - head)
        if job.status == JobStatus.ASSIGNED:
            if job.commits < job.n and head <= job.commit_deadline:
                return job.commit_deadline + 1 - head
            if head <= job.reveal_deadline:
                return job.reveal_deadline + 1 - head
        return None


class QuorumRole(Role):
    """A staked node in quorum jobs: run the model, commit, reveal, finalize."""

    honest = True

    def __init__(
        self,
        jobs: QuorumJobs,
        account: LocalAccount,
        state: st.NodeState,
        models: Sequence[Any] = (),
        input_store: Any = None,
        output_store: Any = None,
    ) -> None:
        super().__init__(jobs, account, state)
        self.jobs: QuorumJobs = jobs
        self.runners = {m.model_id: m for m in models}
        self.input_store = input_store
        self.output_store = output_store

    def model_ids(self) -> list[bytes]:
        return list(self.runners)

    def serves(self, submitted: Any) -> bool:
        return bytes(submitted["args"]["modelId"]) in self.runners

    def advance(self, job_id: int, head: int) -> list[Action]:
        rec = self.state.get(job_id)
        assert rec is not None
        job = self.jobs.job(job_id)
        out: list[Action] = []
        if job.status == JobStatus.SUBMITTED and head > job.submit_block:
            out += self.racy(job_id, "assign", lambda: self.jobs.assign(self.account, job_id))
            job = self.jobs.job(job_id)
        if job.status.final:
            self.state.close_job(job_id, job.status.name.lower())
            return out
        if job.status != JobStatus.ASSIGNED:
            return out

        phase = rec.phase
        if phase == st.SEEN:
            drawn = self.address in self.jobs.assigned_nodes(job_id)
            phase = st.ASSIGNED if drawn else st.DONE
            self.state.update(job_id, phase=phase, outcome=None if drawn else "not drawn")
            if not drawn:
                return out
        if phase == st.ASSIGNED:
            if head > job.commit_deadline:
                self.state.close_job(job_id, "missed commit window")
                return out
            if not self.will_commit(job):
                return out
            rec = self._prepare(job)
            c = commitment(
                self.jobs.chain.chain_id, self.jobs.address, job_id, self.address, Digest(rec.digest), rec.salt
            )
            detail = "input unavailable" if rec.digest == INPUT_UNAVAILABLE else f"digest 0x{rec.digest.hex()[:12]}.."
            if self.jobs.slot(job_id, self.address).commitment == c:
                # Our commit was mined but we stopped before recording it (a crash between the two): the
                # salt and digest are saved, so carry on to the reveal instead of committing again.
                resumed = "our commit is already on chain"
                out.append(Action(self.address, job_id, "resume", detail=resumed, scheme=self.scheme))
            else:
                out.append(self.act(job_id, "commit", lambda: self.jobs.commit(self.account, job_id, c), detail))
            self.state.update(job_id, phase=st.COMMITTED)
            phase = st.COMMITTED
            job = self.jobs.job(job_id)
        if phase == st.COMMITTED:
            reveal_open = job.commits == job.n or head > job.commit_deadline
            if reveal_open and head <= job.reveal_deadline:
                rec = self.state.get(job_id)
                assert rec is not None and rec.digest is not None
                digest, salt = self.reveal_values(rec)
                key = bytes.fromhex(rec.output_key) if rec.output_key else bytes(32)
                try:
                    out.append(
                        self.act(job_id, "reveal", lambda: self.jobs.reveal(self.account, job_id, digest, salt, key))
                    )
                except reverts.RevealMismatch as e:
                    # A rejected reveal will not be accepted on a retry either: we are a no-show now.
                    self.state.update(job_id, phase=st.REVEALED, outcome=f"reveal rejected: {e.reason}")
                    return [*out, self.skip(job_id, e.reason)]
                self.state.update(job_id, phase=st.REVEALED)
                job = self.jobs.job(job_id)
        if job.reveals == job.n or self.jobs.chain.block_number() > job.reveal_deadline:
            out += self.racy(job_id, "finalize", lambda: self.jobs.finalize(self.account, job_id))
            self.state.close_job(job_id, self.jobs.job(job_id).status.name.lower())
        return out

    def _prepare(self, job: JobView) -> st.JobRecord:
        """Run the job once and remember its digest and salt before anything is sent."""
        rec = self.state.get(job.job_id)
        assert rec is not None
        if rec.digest is not None:
            return rec
        result = self.execute(job)
        if result is None:
            digest, key = INPUT_UNAVAILABLE, None
        else:
            digest, key = result.digest(), self.output_store.put(result.encode())
        self.state.update(job.job_id, digest=digest, salt=new_salt(), output_key=key)
        return self.state.get(job.job_id)  # type: ignore[return-value]

    # ---- hooks (overridden by veriml.sim.faults) ----
    def fetch_input(self, job: JobView) -> bytes | None:
        """The job's input, or None when the store does not have it (the node abstains)."""
        return fetch_job_input(self.input_store, job.input_hash)

    def execute(self, job: JobView) -> Any:
        """Run the model on the job's input: the output document, or None when the input is unavailable.
        Bad params or input give an error document every honest node agrees on."""
        from veriml import tasks

        data = self.fetch_input(job)
        if data is None:
            return None
        return tasks.execute(self.runners[job.model_id], data, job.params)

    def will_commit(self, job: JobView) -> bool:
        """Whether to take part in this job at all."""
        return True

    def reveal_values(self, rec: st.JobRecord) -> tuple[bytes, bytes]:
        """The (digest, salt) to reveal: exactly what was committed."""
        assert rec.digest is not None and rec.salt is not None
        return rec.digest, rec.salt


QUORUM_TASKS = ("text-generation", "image-generation", "chat", "embeddings")


def fetch_job_input(store: Any, input_hash: bytes) -> bytes | None:
    """A job's input from `store`, or None when the store does not have it. A store serving wrong bytes is
    not the job's fault: NetworkError, so the step is retried."""
    try:
        return store.get(BlobKey(input_hash.hex()))
    except BlobNotFound:
        return None
    except VerificationError:
        raise NetworkError(f"input blob {input_hash.hex()} came back corrupted") from None


def deterministic_runners(env: Any) -> list[Any]:
    """The models of `env` that run on the deterministic runtimes (QUORUM_TASKS), loaded once per network
    and run under `env.variation` when one is given; what quorum and audit roles execute."""
    from veriml.models import zoo
    from veriml.models.runners import load_runner

    runners = []
    for name in env.models:
        if zoo.manifest(name).task not in QUORUM_TASKS:
            continue
        if name not in env.loaded:
            env.loaded[name] = load_runner(name)
        m = env.loaded[name]
        if env.variation is not None and hasattr(m, "with_variation"):
            m = m.with_variation(env.variation)
        runners.append(m)
    return runners


def role_for(jobs: QuorumJobs, account: LocalAccount, state: st.NodeState, env: Any) -> QuorumRole:
    """A quorum role serving the models of `env` that run on the deterministic runtimes."""
    return QuorumRole(jobs, account, state, deterministic_runners(env), env.input_store, env.output_store)


def _client(contracts: Any, account: LocalAccount, input_store: Any = None, **_: Any) -> Any:
    from veriml.client.sdk import Client

    return Client(contracts, account, input_store)


SPEC = schemes.register(
    schemes.SchemeSpec(
        name="quorum",
        summary="n staked nodes commit and reveal a digest of their output; a strict majority wins",
        artifact="QuorumJobs",
        contract=QuorumJobs,
        config=QuorumConfig,
        constructor_args=lambda c, d: (
            c.commit_window_blocks,
            c.reveal_window_blocks,
            d.config.slash_bps,
            d.config.burn_bps,
        ),
        role=role_for,
        client=_client,
        faults=("honest", "wrong-output", "no-show", "bad-reveal"),
    )
)
