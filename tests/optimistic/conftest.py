"""Optimistic-scheme fixtures: one embedded chain per session, snapshotted and reverted around each test.

The base state: the core contracts plus OptimisticJobs, the shipped `int-mlp` model (106 steps) and two
synthetic integer models (SMALL: 5 steps, bisected over 8; ONE: a single step), all served by one staked
executor, so every job draws it. Accounts: 0 deploys and owns the models, 1 is the user, 2 the keeper, 3
the executor, 4..9 challengers; 10..23 are free.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak

from veriml.chain.backends import Chain, embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, Deployment, deploy
from veriml.chain.optimistic import OptimisticConfig, OptimisticJobs, OptStatus, Turn, deploy_optimistic
from veriml.models.intmlp import ARCHITECTURE, RUNTIME, IntMLP, IntModel, digits_split, encode_pixels
from veriml.models.manifest import Manifest
from veriml.types import ModelId
from veriml.verify.trace import Trace

STAKE = 2 * 10**18
BOND = 10**17
# No burn here, so the wei-exact expectations read simply (tests/chain/test_slash_rules.py covers the burn).
CONFIG = DeployConfig(min_stake_wei=10**18, unbond_delay_blocks=5, slash_bps=5_000, burn_bps=0).with_scheme(
    "quorum", commit_window_blocks=6, reveal_window_blocks=6
)
OPT_CONFIG = OptimisticConfig(
    execute_window_blocks=6, challenge_window_blocks=8, round_window_blocks=4, challenge_bond_wei=BOND
)
SMALL = IntMLP.random([4, 3, 2], seed=7)  # 5 steps
ONE = IntMLP.random([3, 1], seed=8)  # 1 step
SMALL_ID = ModelId(keccak(b"veriml/test/opt-small"))
ONE_ID = ModelId(keccak(b"veriml/test/opt-one"))
PRICE = 10**15


@dataclass
class OptWorld:
    chain: Chain
    deployment: Deployment
    c: Contracts
    opt: OptimisticJobs
    model: IntModel
    owner: LocalAccount
    user: LocalAccount
    keeper: LocalAccount
    executor: LocalAccount
    challengers: list[LocalAccount]
    free: list[LocalAccount]

    def mlp(self, model_id: bytes) -> IntMLP:
        return {SMALL_ID: SMALL, ONE_ID: ONE}.get(bytes(model_id), self.model.mlp)

    def digit(self, i: int = 0) -> bytes:
        return encode_pixels(TEST_DIGITS[i])

    def open_job(self, data: bytes | None = None, model_id: bytes | None = None, fee: int | None = None) -> int:
        """Submit and assign (from the next block); the only executor is drawn."""
        model_id = model_id or self.model.model_id
        if data is None:
            data = (
                self.digit()
                if model_id == self.model.model_id
                else bytes(range(len(self.mlp(model_id).rows[0].weights)))
            )
        job_id, _ = self.opt.submit(self.user, model_id, data, PRICE if fee is None else fee)
        self.chain.mine(1)
        self.opt.assign(self.keeper, job_id)
        assert self.opt.job(job_id).executor == self.executor.address
        return job_id

    def post(self, job_id: int, trace: Trace) -> None:
        self.opt.post(self.executor, job_id, trace.output, trace.root, trace.steps)

    def posted_job(self, trace_of=None, **kwargs) -> tuple[int, Trace, Trace]:  # noqa: ANN001, ANN003
        """Open a job and post `trace_of(truth)` (default: the truth); returns (job, claimed, truth)."""
        job_id = self.open_job(**kwargs)
        j = self.opt.job(job_id)
        truth = self.mlp(j.model_id).trace(self.input_of(job_id))
        claimed = trace_of(truth) if trace_of else truth
        self.post(job_id, claimed)
        return job_id, claimed, truth

    def input_of(self, job_id: int) -> bytes:
        j = self.opt.job(job_id)
        (ev,) = self.opt.events("JobSubmitted", j.submit_block, j.submit_block, jobId=job_id)
        return bytes(ev["args"]["input"])

    def play(self, job_id: int, claimed: Trace, truth: Trace, challenger: LocalAccount, answer=None) -> None:  # noqa: ANN001
        """Bisect until one step remains: the executor reveals from `claimed`, the challenger answers from
        `truth` (or by `answer(mid, hash)`)."""
        while (d := self.opt.dispute(job_id)).turn in (Turn.EXECUTOR, Turn.CHALLENGER):
            if d.turn == Turn.EXECUTOR:
                self.opt.bisect(self.executor, job_id, claimed.hash_at(d.mid), claimed.proof(d.mid))
            else:
                agree = answer(d.mid, d.h_mid) if answer else truth.hash_at(d.mid) == d.h_mid
                self.opt.respond(challenger, job_id, agree)

    def prove(self, job_id: int, trace: Trace, sender: LocalAccount) -> dict:
        """Submit the one-step proof for the dispute's step, taking state lo from `trace`."""
        d = self.opt.dispute(job_id)
        mlp = self.mlp(self.opt.job(job_id).model_id)
        s = trace.state_at(d.lo)
        row = None if s.halted else mlp.book[(s.layer, s.row)]
        proof = [] if row is None else mlp.weights_proof(row.layer, row.row)
        return self.opt.prove_step(sender, job_id, s.encode(), row, proof)

    def mine_past(self, block: int) -> None:
        self.chain.mine(max(0, block - self.chain.block_number()) + 1)

    def assert_books(self) -> None:
        t = self.opt.totals()
        assert t["balance"] == t["escrow"] + t["bonds"] + t["credits"], t
        assert self.c.balance(self.deployment.node_registry) == self.c.total_staked()

    def status(self, job_id: int) -> OptStatus:
        return self.opt.job(job_id).status


def write_int_model(mlp: IntMLP, directory: Path, name: str) -> IntModel:
    """A synthetic integer model as a loadable model directory (weights + manifest)."""
    directory.mkdir(parents=True, exist_ok=True)
    mlp.save(directory / "model.safetensors")
    Manifest(
        name=name,
        task="image-classification",
        architecture={"type": ARCHITECTURE, "sizes": mlp.sizes},
        weights_file="model.safetensors",
        weights_root="0x" + mlp.weights_root.hex(),
        runtime=RUNTIME,
        policy="exact",
        policy_threshold=0,
        price_wei=PRICE,
    ).save(directory / "manifest.json")
    return IntModel.load(directory)


_, _X_TEST, _, _ = digits_split()
TEST_DIGITS = _X_TEST[:40]


@pytest.fixture(scope="session")
def base_world() -> OptWorld:
    chain = embedded_chain()
    acc = chain.accounts
    dep = deploy_optimistic(chain, deploy(chain, acc[0], CONFIG), acc[0], OPT_CONFIG)
    c, opt = Contracts(chain, dep), OptimisticJobs(chain, dep)
    model = IntModel.load()
    c.register_model(acc[0], model.model_id, model.manifest.weights_root_bytes, "exact", 0, PRICE)
    c.register_model(acc[0], SMALL_ID, SMALL.weights_root, "exact", 0, PRICE)
    c.register_model(acc[0], ONE_ID, ONE.weights_root, "exact", 0, PRICE)
    c.register_node(acc[3], STAKE, "chain://executor", b"", [model.model_id, SMALL_ID, ONE_ID])
    return OptWorld(chain, dep, c, opt, model, acc[0], acc[1], acc[2], acc[3], acc[4:10], acc[10:])


@pytest.fixture
def world(base_world: OptWorld) -> Iterator[OptWorld]:
    """The base world; every change a test makes is reverted afterwards."""
    snap = base_world.chain.snapshot()
    try:
        yield base_world
    finally:
        base_world.chain.revert(snap)
