"""zk-tier fixtures: the EZKL setup once per session (content-hash cached), then one embedded chain with
ZkJobs, two registered circuits and three staked nodes, snapshotted and reverted around each test.

Accounts: 0 deploys and owns the models, 1 is the user, 2 is a bystander (keeper), 3..5 are the nodes.
MODEL is the shipped digits-mlp; VARIANT is the same network with one bias nudged (another circuit of the
same shape, with its own verifier), used to show a proof only verifies against its own model's verifier.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth.vm.spoof import SpoofTransaction
from eth_account.signers.local import LocalAccount

from veriml.chain.backends import Chain, embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, Deployment, deploy
from veriml.chain.zk import ZkConfig, ZkJobs, ZkJobStatus, deploy_zk
from veriml.models import zoo
from veriml.models.manifest import Manifest
from veriml.zk import digits
from veriml.zk.circuit import sha256_file
from veriml.zk.proof import Proof
from veriml.zk.prover import prove_once
from veriml.zk.register import ZkModel, load_zk_model, register_zk_model

STAKE = 2 * 10**18 + 2
# No burn here, so the wei-exact expectations read simply (tests/chain/test_slash_rules.py covers the burn).
CONFIG = DeployConfig(min_stake_wei=10**18, unbond_delay_blocks=5, slash_bps=5_000, burn_bps=0).with_scheme(
    "quorum", commit_window_blocks=6, reveal_window_blocks=6
)
ZK_CONFIG = ZkConfig(prove_window_blocks=6)
NODE_SLOTS = range(3, 6)


@pytest.fixture(scope="session")
def zk_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zk-cache")


@pytest.fixture(scope="session")
def digits_model(zk_cache: Path) -> ZkModel:
    return load_zk_model("digits-mlp", zk_cache)


def make_variant(directory: Path) -> Path:
    """A copy of digits-mlp with the first output bias nudged: same shape, another circuit."""
    import onnx
    from onnx import numpy_helper

    src = zoo.model_dir("digits-mlp")
    directory.mkdir(parents=True, exist_ok=True)
    for f in ("model.safetensors", "settings.json"):
        shutil.copyfile(src / f, directory / f)
    model = onnx.load(str(src / "model.onnx"))
    for init in model.graph.initializer:
        if init.name == "2.bias":
            arr = numpy_helper.to_array(init).copy()
            arr[0] += 0.5
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
    onnx.save(model, str(directory / "model.onnx"))
    man = zoo.manifest("digits-mlp").to_dict()
    man["name"] = "digits-mlp-variant"
    man["architecture"]["onnx_sha256"] = sha256_file(directory / "model.onnx")
    Manifest.from_dict(man).save(directory / "manifest.json")
    return directory


@pytest.fixture(scope="session")
def variant_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_variant(tmp_path_factory.mktemp("variant") / "digits-mlp-variant")


@pytest.fixture(scope="session")
def variant_model(zk_cache: Path, variant_dir: Path) -> ZkModel:
    return load_zk_model(variant_dir, zk_cache)


@pytest.fixture(scope="session")
def split() -> digits.DigitsSplit:
    return digits.load_split()


def pixels(split: digits.DigitsSplit, i: int) -> list[int]:
    return [int(p) for p in split.x_test[i]]


@dataclass(frozen=True)
class Proofs:
    a: Proof  # digits-mlp on test image 0
    b: Proof  # digits-mlp on test image 1
    variant_a: Proof  # the variant on test image 0
    input_a: list[int]
    input_b: list[int]


@pytest.fixture(scope="session")
def proofs(digits_model: ZkModel, variant_model: ZkModel, split: digits.DigitsSplit, tmp_path_factory) -> Proofs:
    work = tmp_path_factory.mktemp("proofs")
    scale = digits_model.circuit.input_scale
    fa = digits.encode_input(pixels(split, 0), scale)
    fb = digits.encode_input(pixels(split, 1), scale)
    pa = Proof.from_json(prove_once(digits_model.circuit, fa, work / "a")["proof"])
    pb = Proof.from_json(prove_once(digits_model.circuit, fb, work / "b")["proof"])
    pv = Proof.from_json(prove_once(variant_model.circuit, fa, work / "v")["proof"])
    return Proofs(pa, pb, pv, fa, fb)


def quick_gas_estimate(state: Any, transaction: Any) -> int:
    """One execution at the block limit instead of py-evm's binary search (as in tests/chain)."""
    snapshot = state.snapshot()
    try:
        computation = state.apply_transaction(SpoofTransaction(transaction, gas=state.gas_limit, gas_price=0))
        if computation.is_error:
            raise computation.error
        used = transaction.intrinsic_gas + computation.get_gas_used()
    finally:
        state.revert(snapshot)
    return min(state.gas_limit, 2 * used + 50_000)


@dataclass
class ZkWorld:
    chain: Chain
    deployment: Deployment
    c: Contracts
    jobs: ZkJobs
    model: ZkModel
    variant: ZkModel
    owner: LocalAccount
    user: LocalAccount
    keeper: LocalAccount
    nodes: list[LocalAccount]
    stake: int = STAKE
    slash: int = STAKE * CONFIG.slash_bps // 10_000
    prove_window: int = ZK_CONFIG.prove_window_blocks

    def account(self, address: str) -> LocalAccount:
        return next(a for a in self.chain.accounts if a.address == address)

    def open_job(
        self, felts: list[int], model: ZkModel | None = None, fee: int | None = None
    ) -> tuple[int, LocalAccount]:
        """Submit as the user, assign from the next block; returns (job id, the drawn node's account)."""
        m = model or self.model
        job_id, _ = self.jobs.submit(self.user, m.model_id, felts, m.manifest.price_wei if fee is None else fee)
        self.chain.mine(1)  # calls run at the head block: assignment needs a block after the submission
        self.jobs.assign(self.keeper, job_id)
        job = self.jobs.job(job_id)
        assert job.status == ZkJobStatus.ASSIGNED
        return job_id, self.account(job.node)

    def assert_books(self) -> None:
        """ZkJobs holds exactly escrow + credits; the registry holds exactly the stakes."""
        assert self.jobs.balance() == self.jobs.total_escrow() + self.jobs.total_credits()
        assert self.c.balance(self.deployment.node_registry) == self.c.total_staked()


@pytest.fixture(scope="session")
def base_zk_world(zk_cache: Path, digits_model: ZkModel, variant_model: ZkModel, variant_dir: Path) -> ZkWorld:
    chain = embedded_chain()
    chain._tester.backend.chain.gas_estimator = quick_gas_estimate  # type: ignore[union-attr]
    acc = chain.accounts
    deployment = deploy_zk(chain, deploy(chain, acc[0], CONFIG), acc[0], ZK_CONFIG)
    model = register_zk_model(chain, deployment, acc[0], "digits-mlp", zk_cache)
    variant = register_zk_model(chain, deployment, acc[0], variant_dir, zk_cache)
    c = Contracts(chain, deployment)
    nodes = [acc[i] for i in NODE_SLOTS]
    for i, node in enumerate(nodes):
        c.register_node(node, STAKE, f"zk://node{i}", b"", [model.model_id, variant.model_id])
    return ZkWorld(chain, deployment, c, ZkJobs(chain, deployment), model, variant, acc[0], acc[1], acc[2], nodes)


@pytest.fixture
def zk(base_zk_world: ZkWorld) -> Iterator[ZkWorld]:
    snap = base_zk_world.chain.snapshot()
    try:
        yield base_zk_world
    finally:
        base_zk_world.chain.revert(snap)


def golden_path() -> Path:
    return Path(__file__).parent / "golden_digits.json"


def load_golden() -> dict:
    return json.loads(golden_path().read_text())
