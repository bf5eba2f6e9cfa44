"""The optimistic scheme: one executor posts a traced result; watchers challenge it down to one step.

Contract `OptimisticJobs.sol` (+ `Int8Step.sol`, the on-chain one-step check); wrapper
`veriml.chain.optimistic`; the dispute game's pure rules `veriml.verify.bisection` and `veriml.verify.trace`.

The node role here (`OptimisticRole`) plays both parts. As an **executor** (a staked node serving the
model; option `executes`, default on) it assigns jobs, posts the output with its trace root when drawn,
answers bisection rounds from its trace, and finalizes after the challenge window. As a **watcher** (any
funded address; option `watch_share`, the share of posted jobs it re-executes, default all, chosen by a
hash of its address and the job so the choice survives a restart) it challenges a result whose final
state differs from its own, answers agree/disagree from its own trace, and submits the one-step proof.
Either party calls `timeout` when the other lets its turn lapse.

What must survive a restart is in the node's `SchemeState`: the event cursor, each followed job's phase
(seen, assigned, posted, disputed, done) and its `data` (`challenged` once this address has challenged
it). Traces are recomputed from the input on-chain. The hooks (`claimed`, `will_post`, `plays_turn`,
`wants_challenge`, `agrees`, `proves_step`) are what `veriml.sim.faults` overrides to misbehave.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

from veriml import schemes
from veriml.chain import reverts
from veriml.chain.optimistic import DisputeView, OptimisticConfig, OptimisticJobs, OptJobView, OptStatus, Turn
from veriml.node import state as st
from veriml.node.participant import Action, Role
from veriml.types import JobId
from veriml.verify.bisection import one_step_winner, should_challenge
from veriml.verify.trace import State, Trace

if TYPE_CHECKING:
    from veriml.models.intmlp import IntModel

POSTED = "posted"  # the result is posted and no dispute is open: the challenge window (or its end)
DISPUTED = "disputed"  # a dispute is open (ours to play if we are a party)

# Reverts that only mean another party got there first.
_RACES = (reverts.WrongStatus, reverts.NoDispute, reverts.NotAtOneStep)


def _phase(j: OptJobView, d: DisputeView) -> str:
    """A job's phase as the node records it."""
    if j.status.final:
        return st.DONE
    if j.status == OptStatus.SUBMITTED:
        return st.SEEN
    if j.status == OptStatus.ASSIGNED:
        return st.ASSIGNED
    return DISPUTED if d.open else POSTED


class OptimisticRole(Role):
    """An executor, a watcher, or both, for the integer models it knows."""

    honest = True

    def __init__(
        self,
        jobs: OptimisticJobs,
        account: LocalAccount,
        state: st.NodeState,
        models: Sequence[IntModel] = (),
        *,
        executes: bool = True,
        watch_share: float = 1.0,
    ) -> None:
        if not 0.0 <= watch_share <= 1.0:
            raise ValueError("watch_share must be in [0, 1]")
        super().__init__(jobs, account, state)
        self.jobs: OptimisticJobs = jobs
        self.models = {m.model_id: m for m in models}
        self.executes = executes
        self.watch_share = watch_share
        # Caches only: all of it is recomputed from the chain after a restart.
        self._inputs: dict[int, bytes] = {}
        self._traces: dict[tuple[int, str], Trace] = {}

    def model_ids(self) -> list[bytes]:
        return list(self.models) if self.executes else []

    def serves(self, submitted: Any) -> bool:
        args = submitted["args"]
        if bytes(args["modelId"]) not in self.models:
            return False
        self._inputs[int(args["jobId"])] = bytes(args["input"])
        return True

    def racy(self, job_id: int, what: str, send: Callable[[], Any], detail: str = "") -> list[Action]:
        try:
            return [self.act(job_id, what, send, detail)]
        except _RACES:
            return []

    # ---- one job ----
    def advance(self, job_id: int, head: int) -> list[Action]:
        rec = self.state.get(job_id)
        assert rec is not None
        j, d = self.jobs.job_and_dispute(job_id)
        phase = _phase(j, d)
        if phase != rec.phase:
            if rec.phase == DISPUTED:
                self._moved = True  # a dispute ended: it may have credited us
            if phase == st.DONE:
                self.state.close_job(job_id, j.status.name.lower())
                self._forget(job_id)
                return []
            self.state.update(job_id, phase=phase)
        me = self.address
        if j.status == OptStatus.SUBMITTED:
            if self.executes and head > j.submit_block:
                return self.racy(job_id, "assign", lambda: self.jobs.assign(self.account, job_id))
            return []
        if j.status == OptStatus.ASSIGNED:
            if j.executor == me and head <= j.deadline and self.will_post(j):
                t = self.claimed(j)
                detail = f"output {t.output.hex()}, {t.steps} steps, trace root 0x{t.root.hex()[:12]}.."
                post = lambda: self.jobs.post(self.account, job_id, t.output, t.root, t.steps)  # noqa: E731
                return [self.act(job_id, "post", post, detail)]
            if head > j.deadline and j.executor != me:
                return self.racy(job_id, "missed-post", lambda: self.jobs.missed_post(self.account, job_id))
            return []
        if d.open:
            return self._play(j, d, head)
        if head > j.deadline:
            if j.executor == me:
                return self.racy(job_id, "finalize", lambda: self.jobs.finalize(self.account, job_id))
            return []
        if j.executor == me or not self.watches(job_id) or rec.data.get("challenged"):
            return []
        wrong = should_challenge(j.result_digest, self.truth(j), j.steps)
        if not self.wants_challenge(j, wrong):
            return []
        if self.jobs.has_challenged(job_id, me):  # sent before a crash: a job can be challenged once per address
            self.state.merge_data(job_id, challenged=True)
            return []
        why = "result differs from re-execution" if wrong else "frivolous"
        action = self.act(job_id, "challenge", lambda: self.jobs.challenge(self.account, job_id), why)
        # Only once it went through: a lost race (a dispute already open) is retried when it closes.
        self.state.merge_data(job_id, challenged=True)
        return [action]

    # ---- disputes ----
    def _play(self, j: OptJobView, d: DisputeView, head: int) -> list[Action]:
        """Take our turn in a dispute, or end it when the other side let its turn lapse."""
        me, job_id = self.address, j.job_id
        if me not in (j.executor, d.challenger):
            return []
        # The turns in which silence loses the dispute for us; past the deadline of any other, we win it.
        ours = (Turn.EXECUTOR,) if me == j.executor else (Turn.CHALLENGER, Turn.STEP)
        if head > d.deadline:
            if d.turn in ours:
                return []
            return self.racy(job_id, "timeout", lambda: self.jobs.timeout(self.account, job_id))
        if not self.plays_turn(j, d):
            return []
        if me == j.executor:
            claim = self.claimed(j)
            if d.turn == Turn.EXECUTOR:
                h, proof = claim.hash_at(d.mid), claim.proof(d.mid)
                detail = f"round {d.rounds + 1}: state {d.mid} of [{d.lo}, {d.hi}] is 0x{h.hex()[:12]}.."
                return [self.act(job_id, "bisect", lambda: self.jobs.bisect(self.account, job_id, h, proof), detail)]
            if d.turn == Turn.STEP and self._step_wins(j, d, claim.state_at(d.lo), "executor"):
                return self._prove(j, d, claim.state_at(d.lo))
            return []
        truth = self.truth(j)
        if d.turn == Turn.CHALLENGER:
            agree = self.agrees(j, d, truth)
            detail = f"round {d.rounds + 1}: {'agree' if agree else 'disagree'} with state {d.mid}"
            return [self.act(job_id, "respond", lambda: self.jobs.respond(self.account, job_id, agree), detail)]
        if d.turn == Turn.STEP and self.proves_step(j, d):
            return self._prove(j, d, truth.state_at(d.lo))
        return []

    def _step_wins(self, j: OptJobView, d: DisputeView, state: State, side: str) -> bool:
        return one_step_winner(state, self.models[j.model_id].mlp.book, d.h_hi) == side

    def _prove(self, j: OptJobView, d: DisputeView, state: State) -> list[Action]:
        mlp = self.models[j.model_id].mlp
        row = None if state.halted else mlp.book[(state.layer, state.row)]
        proof = [] if row is None else mlp.weights_proof(row.layer, row.row)
        where = "halted" if row is None else f"layer {row.layer} row {row.row}"
        detail = f"step {d.lo} -> {d.hi} ({where})"
        return self.racy(
            j.job_id, "prove", lambda: self.jobs.prove_step(self.account, j.job_id, state.encode(), row, proof), detail
        )

    # ---- traces ----
    def input_of(self, j: OptJobView) -> bytes:
        if j.job_id not in self._inputs:
            (ev,) = self.jobs.events("JobSubmitted", j.submit_block, j.submit_block, jobId=j.job_id)
            self._inputs[j.job_id] = bytes(ev["args"]["input"])
        return self._inputs[j.job_id]

    def truth(self, j: OptJobView) -> Trace:
        """The honest trace of the job (cached)."""
        key = (j.job_id, "truth")
        if key not in self._traces:
            self._traces[key] = self.models[j.model_id].mlp.trace(self.input_of(j))
        return self._traces[key]

    def _forget(self, job_id: int) -> None:
        """Drop what a settled job cached in memory."""
        self._inputs.pop(job_id, None)
        for key in [k for k in self._traces if k[0] == job_id]:
            del self._traces[key]

    def watches(self, job_id: int) -> bool:
        """Whether this address re-executes job `job_id` (a stable `watch_share` of all jobs)."""
        if self.watch_share <= 0:
            return False
        h = int.from_bytes(keccak(bytes.fromhex(self.address[2:]) + job_id.to_bytes(32, "big")), "big")
        return h % 10_000 < round(self.watch_share * 10_000)

    # ---- hooks (overridden by veriml.sim.faults) ----
    def claimed(self, j: OptJobView) -> Trace:
        """The trace this node posts and defends as executor: the truth."""
        return self.truth(j)

    def will_post(self, j: OptJobView) -> bool:
        """Whether to post when drawn."""
        return True

    def plays_turn(self, j: OptJobView, d: DisputeView) -> bool:
        """Whether to play our turns in a dispute (timing out a silent opponent is always done)."""
        return True

    def wants_challenge(self, j: OptJobView, wrong: bool) -> bool:
        """Whether to challenge a posted result, given whether it differs from our re-execution."""
        return wrong

    def agrees(self, j: OptJobView, d: DisputeView, truth: Trace) -> bool:
        """As challenger: whether the executor's state at the midpoint is ours."""
        return truth.hash_at(d.mid) == d.h_mid

    def proves_step(self, j: OptJobView, d: DisputeView) -> bool:
        """As challenger: whether to submit the one-step proof when the dispute is down to one step."""
        return True

    def tampered_step(self, j: OptJobView) -> int | None:
        """The first state this node's posted trace gets wrong (its lie is step i - 1 -> i); None when honest."""
        return None


def role_for(jobs: OptimisticJobs, account: LocalAccount, state: st.NodeState, env: Any) -> OptimisticRole:
    """An optimistic role for the integer models among `env.models` (shipped names or model directories).

    Options (`env.options`): `executes` (stake and execute, default True), `watch_share` (the share of
    posted jobs to re-execute and challenge if wrong, 0..1, default 1)."""
    from veriml.models import zoo
    from veriml.models.intmlp import ARCHITECTURE, IntModel

    models = []
    for name in env.models:
        if zoo.manifest_of(name).architecture.get("type") != ARCHITECTURE:
            continue
        if name not in env.loaded:
            env.loaded[name] = IntModel.load(name)
        models.append(env.loaded[name])
    options = env.options
    return OptimisticRole(
        jobs,
        account,
        state,
        models,
        executes=bool(options.get("executes", True)),
        watch_share=float(options.get("watch_share", 1.0)),
    )


class OptimisticClient:
    """A user of the optimistic scheme: submit an input for an integer model, wait for the job to settle."""

    def __init__(self, contracts: Any, account: LocalAccount) -> None:
        self.contracts = contracts
        self.account = account
        self.jobs: OptimisticJobs = contracts.scheme("optimistic")

    @property
    def address(self) -> str:
        return self.account.address

    def submit(self, model: Any, data: bytes, fee: int | None = None) -> JobId:
        """Escrow the fee (default the model's price) and submit `data` for `model` (an `IntModel`, or a
        shipped model's name or a model directory); returns the job id."""
        if not hasattr(model, "manifest"):
            from veriml.models.intmlp import IntModel

            model = IntModel.load(model)
        job_id, _ = self.jobs.submit(
            self.account, model.model_id, data, model.manifest.price_wei if fee is None else fee
        )
        return job_id

    def wait(
        self, job_id: int, timeout: float = 120.0, between: Callable[[], object] | None = None, poll: float = 0.2
    ) -> OptJobView:
        """Wait until the job is settled and return it; `between` runs every round (the harness steps its
        in-process nodes there)."""
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

    def result(self, job_id: int) -> dict[str, Any]:
        """A settled (or open) job as the user sees it, from the chain: status (verified, overturned,
        refunded, or still open), executor, the posted output as int8 logits and its class (`prediction`,
        None unless the result stood), refund and the settling transactions."""
        from veriml.models.intmlp import predict

        j = self.jobs.job(job_id)
        posted = self.jobs.events("ResultPosted", j.submit_block, jobId=job_id)
        claim = bytes(posted[0]["args"]["output"]) if posted else None
        stood = claim is not None and j.status == OptStatus.FINALIZED
        credited = self.jobs.events("Credited", j.submit_block, jobId=job_id, account=j.user)
        refunded = self.jobs.events("JobRefunded", j.submit_block, jobId=job_id)
        overturned = self.jobs.events("JobOverturned", j.submit_block, jobId=job_id)
        reason = None
        if overturned:
            reason = "a watcher challenged the result and won the one-step check on-chain; the executor was slashed"
        elif refunded:
            reason = refunded[0]["args"]["reason"]
        status = {OptStatus.FINALIZED: "verified"}.get(j.status, j.status.name.lower())
        txs = {n: "0x" + bytes(e[0]["transactionHash"]).hex() for n, e in (("post", posted), ("refund", refunded)) if e}
        return {
            "id": job_id,
            "scheme": "optimistic",
            "status": status,
            "executor": j.executor,
            "output": [b - 256 if b > 127 else b for b in claim] if stood and claim is not None else None,
            "prediction": predict(claim) if stood and claim is not None else None,
            "steps": j.steps,
            "fee": j.fee,
            "refund": sum(int(e["args"]["amount"]) for e in credited),
            "reason": reason,
            "txs": txs,
        }


def _client(contracts: Any, account: LocalAccount, **_: Any) -> OptimisticClient:
    return OptimisticClient(contracts, account)


SPEC = schemes.register(
    schemes.SchemeSpec(
        name="optimistic",
        summary="one executor posts output + trace root; a watcher may bisect a dispute to one on-chain step",
        artifact="OptimisticJobs",
        contract=OptimisticJobs,
        config=OptimisticConfig,
        constructor_args=lambda c, d: (
            c.execute_window_blocks,
            c.challenge_window_blocks,
            c.round_window_blocks,
            c.challenge_bond_wei,
            d.config.slash_bps,
            d.config.burn_bps,
        ),  # fmt: skip
        role=role_for,
        client=_client,
        faults=("honest", "tampered-step", "no-post", "silent", "frivolous"),
    )
)
