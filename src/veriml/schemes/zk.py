"""The zk scheme: one drawn node proves the model's run with EZKL; the model's verifier contract checks it.

Contract `ZkJobs.sol`; wrapper `veriml.chain.zk`; EZKL work, registration and the client `veriml.zk`.
The node role here (the prover) follows ZkJobs, proves the jobs it is drawn for and keeps the other
provers to their deadlines (`expire`, which anyone may call, slashes a silent node and refunds the
user). Proving never blocks a step: it goes to a `ProverPool` (worker processes, a memory check, a proof
cache per (model, input)), and a later step submits the finished proof. Everything the role must not
forget is in its `SchemeState`: the phase, and in `data` the job's input, the saved proof's file and
what it cost, so a restarted prover picks its jobs up where it left them (it reuses a saved proof, or
proves again). Its three hooks (`will_prove`, `input_to_prove`, `doctor`) are what `veriml.sim.faults`
overrides to misbehave.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from veriml import schemes
from veriml.chain.zk import ZkConfig, ZkJobs, ZkJobStatus, ZkJobView
from veriml.errors import ConfigError
from veriml.node import state as st
from veriml.node.participant import Action, Role
from veriml.zk.field import argmax
from veriml.zk.proof import Proof
from veriml.zk.prover import ProveResult, ProverPool

log = logging.getLogger("veriml.node.zk")

# The prover's own phases (besides st.SEEN, st.ASSIGNED: drawn, and st.DONE).
PROVING = "proving"  # the proof was requested from the pool; waiting for it
PROVED = "proved"  # the proof is saved (data["proof_file"]); submitProof is next

POOL = "prover_pool"  # keys of RoleEnv.shared: the network's ProverPool ...
MODELS = "zk_models"  # ... and its zk models, by name (veriml.zk.register.ZkModel)


class ZkRole(Role):
    """A staked node serving zk models: assign, prove, submit the proof; expire other provers' late jobs."""

    honest = True

    def __init__(
        self, jobs: ZkJobs, account: LocalAccount, state: st.NodeState, models: Sequence[Any], pool: ProverPool
    ) -> None:
        super().__init__(jobs, account, state)
        self.jobs: ZkJobs = jobs
        self.models = {m.model_id: m for m in models}
        self.pool = pool

    def model_ids(self) -> list[bytes]:
        return list(self.models)

    def serves(self, submitted: Any) -> bool:
        return bytes(submitted["args"]["modelId"]) in self.models

    @property
    def busy(self) -> bool:
        """Whether a proof of ours is being computed (or waits for a worker)."""
        return any(r.phase == PROVING for r in self.state.open_jobs())

    def advance(self, job_id: int, head: int) -> list[Action]:
        rec = self.state.get(job_id)
        assert rec is not None
        job = self.jobs.job(job_id)
        out: list[Action] = []
        if job.status == ZkJobStatus.SUBMITTED and head > job.submit_block:
            out += self.racy(job_id, "assign", lambda: self.jobs.assign(self.account, job_id))
            job = self.jobs.job(job_id)
        if job.status.final:
            self.state.close_job(job_id, rec.outcome or job.status.name.lower())
            return out
        if job.status != ZkJobStatus.ASSIGNED:
            return out
        if job.node != self.address:
            # Not ours: keep the drawn node to its deadline.
            if head > job.deadline:
                out += self.racy(job_id, "expire", lambda: self.jobs.expire(self.account, job_id), f"node {job.node}")
            return out
        if head > job.deadline:
            self.state.close_job(job_id, "missed the proof deadline")
            return out
        if rec.phase == st.SEEN:
            self.state.update(job_id, phase=st.ASSIGNED)
        if not self.will_prove(job):
            return out
        return out + self._prove_and_submit(job)

    def _prove_and_submit(self, job: ZkJobView) -> list[Action]:
        job_id = job.job_id
        try:
            result = self._proof(job)
        except (ConfigError, RuntimeError, OSError) as e:
            # This machine could not prove it (memory, a broken worker, EZKL's own error): give up on the job;
            # the deadline will pass and the stake pays for it, which is the price of taking the job.
            log.error("%s job %s: proving failed: %s", self.address[:10], job_id, e)
            self.state.close_job(job_id, f"proving failed: {e}")
            return [self.skip(job_id, f"proving failed: {e}")]
        if result is None:
            if self.state.get(job_id).phase != PROVING:  # type: ignore[union-attr]
                self.state.update(job_id, phase=PROVING)
                return [Action(self.address, job_id, "prove", detail="proof started", scheme=self.scheme)]
            return []
        proof = self.doctor(result.proof)
        gas = self.jobs.proof_gas(job.model_id, proof.proof, proof.instances)
        receipt = self.jobs.submit_proof(self.account, job_id, proof.proof, proof.instances, gas=gas)
        self._moved = True
        tx, used = Web3.to_hex(receipt["transactionHash"]), int(receipt["gasUsed"])
        rejected = self.jobs.receipt_events("ProofRejected", receipt)
        outcome = f"rejected: {rejected[0]['args']['reason']}" if rejected else "verified"
        self.state.merge_data(
            job_id, proof_bytes=len(proof.proof), submit_gas=used, submitted_outputs=list(proof.outputs),
            txs={"submit_proof": tx},
        )  # fmt: skip
        self.state.close_job(job_id, outcome)
        detail = f"class {argmax(proof.outputs)}, {len(proof.proof)} B proof, {used} gas -> {outcome}"
        return [Action(self.address, job_id, "submit_proof", tx, detail, used, self.scheme)]

    def _proof(self, job: ZkJobView) -> ProveResult | None:
        """The job's proof: the one saved before a restart, else the pool's (None while it is computed)."""
        rec = self.state.get(job.job_id)
        assert rec is not None
        saved = rec.data.get("proof_file")
        if saved is not None and Path(saved).is_file():
            return ProveResult.from_json(json.loads(Path(saved).read_text()), cached=rec.data["cached"])
        target = self.input_to_prove(job, self.job_input(job))
        result = self.pool.request(job.model_id, self.models[job.model_id].circuit, target)
        if result is not None:
            self.state.merge_data(
                job.job_id, proof_file=str(self.pool.path_of(job.model_id, target)), cached=result.cached,
                prove_s=result.prove_s, witness_s=result.witness_s, worker_peak_rss=result.worker_peak_rss,
            )  # fmt: skip
            self.state.update(job.job_id, phase=PROVED)
        return result

    def job_input(self, job: ZkJobView) -> tuple[int, ...]:
        """The job's input instances, from its JobSubmitted event (read once, then kept in the state)."""
        rec = self.state.get(job.job_id)
        assert rec is not None
        if "input" not in rec.data:
            ev = self.jobs.events("JobSubmitted", job.submit_block, job.submit_block, jobId=job.job_id)
            if not ev:
                raise RuntimeError(f"zk job {job.job_id}: no JobSubmitted event at block {job.submit_block}")
            self.state.merge_data(job.job_id, input=[int(x) for x in ev[0]["args"]["input"]])
            rec = self.state.get(job.job_id)
            assert rec is not None
        return tuple(rec.data["input"])

    # ---- hooks (overridden by veriml.sim.faults) ----
    def will_prove(self, job: ZkJobView) -> bool:
        """Whether to do the job we were drawn for at all."""
        return True

    def input_to_prove(self, job: ZkJobView, felts: tuple[int, ...]) -> tuple[int, ...]:
        """The input to prove the model on: the job's."""
        return felts

    def doctor(self, proof: Proof) -> Proof:
        """The proof to submit: the one the pool made."""
        return proof


def role_for(jobs: ZkJobs, account: LocalAccount, state: st.NodeState, env: Any) -> ZkRole:
    """A prover serving the zk models of `env`. In a harness they and the prover pool come set up in
    `env.shared` (see `_setup`); a node process loads them here (the circuits' off-chain setup is cached;
    options `zk_cache_dir`, `prover_workers`) and proves in `env.workdir / "proofs"`."""
    from veriml.models import zoo

    shared = env.shared
    if MODELS not in shared:
        from veriml.zk.register import load_zk_model

        cache = env.options.get("zk_cache_dir")
        shared[MODELS] = {n: load_zk_model(n, cache) for n in env.models if _registers(zoo.manifest_of(n))}
    if POOL not in shared:
        shared[POOL] = ProverPool(Path(env.workdir) / "proofs", max_workers=env.options.get("prover_workers", 1))
    models = [m for name, m in shared[MODELS].items() if name in env.models]
    return ZkRole(jobs, account, state, models, shared[POOL])


def _registers(manifest: Any) -> bool:
    return "zk_settings_file" in manifest.architecture


def _setup(net: Any) -> None:
    """Register the network's zk models (their whole EZKL setup, cached, and their verifiers on-chain) and
    start the network's prover pool. Options (`net.scheme_options["zk"]`): `cache_dir`, `srs_path`,
    `console` (progress bars), `prover_workers`."""
    from veriml.models import zoo
    from veriml.zk.register import register_zk_model

    opts = net.scheme_options.get("zk", {})
    models = {}
    for name in net.model_names:
        if _registers(zoo.manifest_of(name)):
            models[name] = register_zk_model(
                net.chain, net.contracts.deployment, net.owner, name, opts.get("cache_dir"), opts.get("srs_path"),
                opts.get("console"),
            )  # fmt: skip
    net.shared[MODELS] = models
    # Each network gets its own proof cache, so a demo run proves for real every time.
    net.shared[POOL] = ProverPool(Path(net.workdir) / "proofs", max_workers=opts.get("prover_workers", 1))


def _client(contracts: Any, account: LocalAccount, shared: dict[str, Any] | None = None, **options: Any) -> Any:
    """A client of the (first) zk model in `shared` (a harness's), or of `options["model"]` (a ZkModel)."""
    from veriml.zk.client import ZkClient

    model = options.get("model") or next(iter((shared or {}).get(MODELS, {}).values()), None)
    if model is None:
        raise ConfigError("a zk client needs a registered zk model")
    return ZkClient(contracts.scheme("zk"), account, model)


SPEC = schemes.register(
    schemes.SchemeSpec(
        name="zk",
        summary="one drawn node proves its run with EZKL; the model's verifier contract checks the proof",
        artifact="ZkJobs",
        contract=ZkJobs,
        config=ZkConfig,
        constructor_args=lambda c, d: (c.prove_window_blocks, d.config.slash_bps, d.config.burn_bps),
        role=role_for,
        client=_client,
        faults=("honest", "forged-output", "tampered-proof", "replayed-proof", "no-show"),
        registers=_registers,
        setup=_setup,
    )
)
