"""The operator daemon: follow the chain, run assigned jobs, commit, reveal, settle, get paid.

`step()` does one pass and returns what it did, so the demo and tests can drive several in-process nodes
deterministically; `run()` loops it for a node process. Everything a node must remember across a restart
is in its `NodeState`; everything else is read back from the chain.

Dishonest behaviour lives in `veriml.sim.faults`, which overrides the three hooks below
(`execute`, `will_commit`, `reveal_values`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from veriml import tasks
from veriml.chain.contracts import Contracts, JobStatus, JobView
from veriml.errors import BlobNotFound, ContractRevert, NetworkError, VerificationError
from veriml.gateway.blobstore import BlobStore
from veriml.node import state as st
from veriml.node.loop import register_once, run_steps
from veriml.types import BlobKey, Digest
from veriml.verify.commitment import commitment, new_salt

log = logging.getLogger("veriml.node")

MAX_DETAIL = 300  # characters of an error kept in an Action or a log line (user bytes can reach messages)

# Reverts that only mean another party got there first.
_RACES = ("JobMarket: job not awaiting assignment", "JobMarket: job not open")


@dataclass(frozen=True)
class Action:
    """One thing a node did in a step (for logs, the demo and tests)."""

    node: str
    job_id: int
    what: str  # assign | commit | reveal | finalize | withdraw | skip
    tx: str | None = None
    detail: str = ""


class NodeDaemon:
    """One staked node serving some models."""

    honest = True

    def __init__(
        self,
        contracts: Contracts,
        account: LocalAccount,
        models: Sequence[tasks.Runner],
        input_store: BlobStore,
        output_store: BlobStore,
        state: st.NodeState,
        withdraw_min_wei: int = 0,
    ) -> None:
        self.contracts = contracts
        self.account = account
        self.runners = {m.model_id: m for m in models}  # type: ignore[attr-defined]
        self.input_store = input_store
        self.output_store = output_store
        self.state = state
        self.withdraw_min_wei = withdraw_min_wei

    @property
    def address(self) -> str:
        return self.account.address

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address[:10]}..)"

    # ---- set-up ----
    def register(self, stake: int, endpoint: str, pubkey: bytes = b"") -> bool:
        """Stake and announce the served models, unless already registered; True if it registered now."""
        return register_once(self.contracts, self.account, stake, endpoint, pubkey, list(self.runners))

    # ---- the loop ----
    def run(self, stop: threading.Event, poll_interval: float = 0.5) -> None:
        """Step until `stop` is set; errors in one step are logged and the next step retries."""
        run_steps(self.step, self.address, stop, poll_interval)

    def step(self) -> list[Action]:
        """Discover new jobs, advance every open one, and withdraw earnings when due."""
        head = self.contracts.chain.block_number()
        self._discover(head)
        actions: list[Action] = []
        for rec in self.state.open_jobs():
            try:
                actions += self._advance(rec.job_id, head)
            except ContractRevert as e:
                # The chain refused: our view was stale (a window closed under us). Record and move on;
                # the next step re-reads the job.
                log.warning("%s job %s: %s", self.address[:10], rec.job_id, e.reason[:MAX_DETAIL])
                actions.append(Action(self.address, rec.job_id, "skip", detail=e.reason[:MAX_DETAIL]))
            except NetworkError:
                raise  # the chain or a blob service is unreachable: the whole step is retried
            except Exception as e:  # noqa: BLE001 - no job may take the node down (a full store, a bug)
                log.exception("%s job %s failed", self.address[:10], rec.job_id)
                actions.append(Action(self.address, rec.job_id, "skip", detail=f"{type(e).__name__}: {e}"[:MAX_DETAIL]))
        actions += self._maybe_withdraw()
        return actions

    def _discover(self, head: int) -> None:
        start = self.state.last_block + 1
        if start > head:
            return
        for ev in self.contracts.market_events("JobSubmitted", start, head):
            if bytes(ev["args"]["modelId"]) in self.runners:
                self.state.add(ev["args"]["jobId"])
        self.state.last_block = head

    def _advance(self, job_id: int, head: int) -> list[Action]:
        rec = self.state.get(job_id)
        assert rec is not None
        job = self.contracts.job(job_id)
        out: list[Action] = []
        if job.status == JobStatus.SUBMITTED and head > job.submit_block:
            receipt = self._send_racy(lambda: self.contracts.assign(self.account, job_id))
            if receipt is not None:
                out.append(Action(self.address, job_id, "assign", _hex(receipt)))
            job = self.contracts.job(job_id)
        if job.status.final:
            self.state.update(job_id, phase=st.DONE, outcome=job.status.name.lower())
            return out
        if job.status != JobStatus.ASSIGNED:
            return out

        phase = rec.phase
        if phase == st.SEEN:
            drawn = self.address in self.contracts.assigned_nodes(job_id)
            phase = st.ASSIGNED if drawn else st.DONE
            self.state.update(job_id, phase=phase, outcome=None if drawn else "not drawn")
            if not drawn:
                return out
        if phase == st.ASSIGNED:
            if head > job.commit_deadline:
                self.state.update(job_id, phase=st.DONE, outcome="missed commit window")
                return out
            if not self.will_commit(job):
                return out
            rec = self._prepare(job)
            c = commitment(
                self.contracts.chain.chain_id,
                self.contracts.deployment.job_market,
                job_id,
                self.address,
                Digest(rec.digest),
                rec.salt,
            )
            receipt = self.contracts.commit(self.account, job_id, c)
            self.state.update(job_id, phase=st.COMMITTED)
            phase = st.COMMITTED
            out.append(Action(self.address, job_id, "commit", _hex(receipt), f"digest 0x{rec.digest.hex()[:12]}.."))
            job = self.contracts.job(job_id)
        if phase == st.COMMITTED:
            reveal_open = job.commits == job.n or head > job.commit_deadline
            if reveal_open and head <= job.reveal_deadline:
                rec = self.state.get(job_id)
                assert rec is not None and rec.output_key is not None
                digest, salt = self.reveal_values(rec)
                try:
                    receipt = self.contracts.reveal(self.account, job_id, digest, salt, bytes.fromhex(rec.output_key))
                except ContractRevert as e:
                    # A rejected reveal will not be accepted on a retry either: we are a no-show now.
                    self.state.update(job_id, phase=st.REVEALED, outcome=f"reveal rejected: {e.reason}")
                    return [*out, Action(self.address, job_id, "skip", detail=e.reason)]
                self.state.update(job_id, phase=st.REVEALED)
                out.append(Action(self.address, job_id, "reveal", _hex(receipt)))
                job = self.contracts.job(job_id)
        if job.reveals == job.n or self.contracts.chain.block_number() > job.reveal_deadline:
            receipt = self._send_racy(lambda: self.contracts.finalize(self.account, job_id))
            if receipt is not None:
                out.append(Action(self.address, job_id, "finalize", _hex(receipt)))
            final = self.contracts.job(job_id)
            self.state.update(job_id, phase=st.DONE, outcome=final.status.name.lower())
        return out

    def _prepare(self, job: JobView) -> st.JobRecord:
        """Run the job once and remember its digest and salt before anything is sent."""
        rec = self.state.get(job.job_id)
        assert rec is not None
        if rec.digest is not None:
            return rec
        result = self.execute(job)
        key = self.output_store.put(result.encode())
        self.state.update(job.job_id, digest=result.digest(), salt=new_salt(), output_key=key)
        return self.state.get(job.job_id)  # type: ignore[return-value]

    def _send_racy(self, send):  # noqa: ANN001, ANN202
        """Send a transaction that any party may send; losing the race is not an error."""
        try:
            return send()
        except ContractRevert as e:
            if e.reason in _RACES:
                return None
            raise

    def _maybe_withdraw(self) -> list[Action]:
        owed = self.contracts.credits(self.address)
        if owed == 0 or owed < self.withdraw_min_wei:
            return []
        receipt = self.contracts.withdraw(self.account)
        return [Action(self.address, 0, "withdraw", _hex(receipt), f"{owed} wei")]

    # ---- hooks (overridden by veriml.sim.faults) ----
    def execute(self, job: JobView) -> tasks.Output:
        """Run the model on the job's input; bad params or input give an error document all nodes agree on."""
        runner = self.runners[job.model_id]
        try:
            data = self.input_store.get(BlobKey(job.input_hash.hex()))
        except BlobNotFound:
            return tasks.unavailable(tasks.task_of(runner))
        except VerificationError:
            # A store serving wrong bytes is not the job's fault; try again next step.
            raise NetworkError(f"input blob {job.input_hash.hex()} came back corrupted") from None
        return tasks.execute(runner, data, job.params)

    def will_commit(self, job: JobView) -> bool:
        """Whether to take part in this job at all."""
        return True

    def reveal_values(self, rec: st.JobRecord) -> tuple[bytes, bytes]:
        """The (digest, salt) to reveal: exactly what was committed."""
        assert rec.digest is not None and rec.salt is not None
        return rec.digest, rec.salt


def _hex(receipt: object) -> str:
    return Web3.to_hex(receipt["transactionHash"])  # type: ignore[index]
