"""Provers end to end: an in-process network (chain, every scheme, a registered circuit, one zk node, a zk
client), the node a `Participant` with a `ZkRole` driven by `tick()`, proofs in the worker pool. Every fault
ends with the node slashed and the user refunded; an honest node is paid; proofs are cached per (model,
input); a prover killed mid-job resumes from its SQLite state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest

from veriml.demo_zk import start_network
from veriml.errors import ConfigError
from veriml.node import state as st
from veriml.node.participant import Participant, RoleEnv
from veriml.node.state import NodeState
from veriml.schemes import zk as zk_scheme
from veriml.sim.faults import Fault
from veriml.sim.network import LocalNetwork, NodeSpec, build_node
from veriml.zk import digits
from veriml.zk.prover import ProverPool

GOLDEN = json.loads((Path(__file__).parent / "golden_digits.json").read_text())["images"]
_STATES = count()


@pytest.fixture(scope="module")
def net(zk_cache: Path) -> Iterator[LocalNetwork]:
    with start_network([NodeSpec(schemes=("zk",))], cache_dir=zk_cache) as n:
        yield n


def prover(
    net: LocalNetwork, fault: Fault = Fault.HONEST, state: Path | None = None, shared: dict | None = None
) -> Participant:
    """Node 0 as a new process would build it: its role from the scheme's spec, made to play `fault`, its
    state opened from `state` (a fresh database if None), the network's prover pool unless `shared` says."""
    account = net.nodes[0].account
    net.nodes[0].state.close()  # the old node is gone (closing twice is harmless)
    path = state or net.workdir / "node0" / f"state-{next(_STATES)}.sqlite"
    env = RoleEnv(
        net.model_names, None, None, net.workdir / "node0", net.loaded,
        options={"zk_cache_dir": net.scheme_options["zk"]["cache_dir"]},
        shared=net.shared if shared is None else shared,
    )  # fmt: skip
    node = build_node(net.contracts, account, NodeState(path), NodeSpec(fault, schemes=("zk",)), env)
    net.nodes[0] = node
    return node


@pytest.fixture
def fresh(net: LocalNetwork) -> Iterator[LocalNetwork]:
    """The module's network rolled back after each test; node 0 starts each test with a fresh state."""
    snap = net.chain.snapshot()
    prover(net)
    try:
        yield net
    finally:
        net.chain.revert(snap)
        net.nodes[0].state.close()
        for pool in {id(r.pool): r.pool for n in net.nodes for r in n.roles}.values():
            if pool is not net.shared[zk_scheme.POOL]:
                pool.close()


def run_digit(net: LocalNetwork, pixels: list[int]):  # noqa: ANN201
    return net.client.run_digit(pixels, between=net.tick)


def test_an_honest_node_proves_and_is_paid(fresh: LocalNetwork) -> None:
    net = fresh
    node = net.nodes[0]
    case = GOLDEN["0"]
    result = run_digit(net, case["pixels"])
    assert result.status == "verified" and result.node == node.address
    assert result.label == case["class"] == case["label"]
    assert [round(v * 128) for v in result.logits] == case["outputs"]
    rec = node.role("zk").state.get(result.job_id)
    assert rec.phase == st.DONE and rec.outcome == "verified"
    assert rec.data["prove_s"] > 0 and rec.data["proof_bytes"] > 1000
    assert rec.data["submit_gas"] < 1_000_000
    jobs = net.client.jobs
    net.tick()  # the node withdraws its fee
    assert jobs.credits(node.address) == 0
    earned = sum(e["args"]["amount"] for e in jobs.events("Credited", 0, account=node.address))
    assert earned == result.fee
    assert jobs.balance() == jobs.total_escrow() + jobs.total_credits()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (Fault.FORGED_OUTPUT, "invalid proof"),
        (Fault.TAMPERED_PROOF, "invalid proof"),
        (Fault.REPLAYED_PROOF, "proof is about another input"),
        (Fault.NO_SHOW, "no proof before the deadline"),
    ],
)
def test_every_fault_is_slashed_and_refunded(fresh: LocalNetwork, fault: Fault, reason: str) -> None:
    net = fresh
    node = prover(net, fault)
    assert not node.honest and node.role("zk").fault is fault
    jobs = net.client.jobs
    stake = net.contracts.stake_of(node.address)
    result = run_digit(net, GOLDEN["1"]["pixels"])
    assert result.status == ("expired" if fault is Fault.NO_SHOW else "rejected")
    assert result.reason == reason
    assert result.label is None and result.output is None
    assert result.slashed == stake // 2
    assert net.contracts.stake_of(node.address) == stake - stake // 2
    assert result.refund == 2 * result.fee  # the fee back, plus compensation capped at the fee
    assert jobs.credits(net.client.address) == result.refund
    assert net.client.withdraw() == result.refund
    assert jobs.balance() == jobs.total_escrow() + jobs.total_credits()


def test_proofs_are_cached_per_model_and_input(fresh: LocalNetwork) -> None:
    net = fresh
    state = net.nodes[0].role("zk").state
    first = run_digit(net, GOLDEN["2"]["pixels"])
    second = run_digit(net, GOLDEN["2"]["pixels"])
    assert first.status == second.status == "verified"
    a, b = state.get(first.job_id).data, state.get(second.job_id).data
    assert a["cached"] is False and b["cached"] is True
    assert a["proof_file"] == b["proof_file"]


def test_a_prover_killed_after_assignment_resumes_from_its_state(fresh: LocalNetwork) -> None:
    """Killed once its proof is under way, the node comes back as a new process would (a new Participant,
    its state reopened from SQLite, its models loaded again, a new prover pool on its proof directory): it
    proves again, and its proof is accepted."""
    net = fresh
    path = net.workdir / "node0" / "restart.sqlite"
    victim = prover(net, state=path, shared={})  # a process of its own: its own pool, in node0/proofs
    pool = victim.role("zk").pool
    assert pool is not net.shared[zk_scheme.POOL]
    job_id = net.client.submit_digit(GOLDEN["3"]["pixels"])
    net.chain.mine(1)
    actions = victim.step()
    assert [a.what for a in actions if a.what != "withdraw"] == ["assign", "prove"]
    rec = victim.role("zk").state.get(job_id)
    assert rec.phase == zk_scheme.PROVING and net.client.jobs.job(job_id).node == victim.address
    seen_up_to = victim.role("zk").state.last_block
    pool.close()  # the process dies: the proof in flight is lost with it
    assert not pool.path_of(net.client.model.model_id, rec.data["input"]).exists()

    reborn = prover(net, state=path, shared={})
    resumed = reborn.role("zk").state.get(job_id)
    assert resumed.phase == zk_scheme.PROVING and resumed.data["input"] == rec.data["input"]
    assert reborn.role("zk").state.last_block == seen_up_to
    result = net.client.wait(job_id, between=net.tick)
    assert result.status == "verified" and result.node == reborn.address
    assert result.label == GOLDEN["3"]["class"]
    done = reborn.role("zk").state.get(job_id)
    assert done.outcome == "verified" and done.data["cached"] is False
    reborn.role("zk").pool.close()


def test_a_prover_killed_with_its_proof_saved_submits_it(fresh: LocalNetwork) -> None:
    """The proof is saved, the node dies before sending it: the restarted node sends the saved proof
    without proving again."""
    net = fresh
    path = net.workdir / "node0" / "saved.sqlite"
    victim = prover(net, state=path)
    job_id = net.client.submit_digit(GOLDEN["4"]["pixels"])
    net.chain.mine(1)
    victim.step()  # assigns and asks the network's pool for the proof
    role = victim.role("zk")
    job = net.client.jobs.job(job_id)
    felts = role.job_input(job)
    role.pool.prove(job.model_id, role.models[job.model_id].circuit, felts)  # the proof finishes ...
    assert role._proof(job) is not None  # ... the node records it ...
    assert role.state.get(job_id).phase == zk_scheme.PROVED
    # ... and dies before submitProof.

    reborn = prover(net, state=path, shared={})  # a pool of its own, which has never seen this proof
    actions = reborn.step()
    assert [a.what for a in actions if a.what != "withdraw"] == ["submit_proof"]
    own = reborn.role("zk").pool
    assert not own.busy and not own.path_of(job.model_id, felts).exists()
    assert reborn.role("zk").state.get(job_id).outcome == "verified"
    assert net.client.result(job_id).status == "verified"
    own.close()


def test_the_client_refuses_bad_inputs_before_paying(fresh: LocalNetwork) -> None:
    from veriml.errors import FeeTooLow, UserInputError

    with pytest.raises(UserInputError):
        fresh.client.submit_digit([17] * 64)
    with pytest.raises(UserInputError):
        fresh.client.submit([0] * 63)
    with pytest.raises(FeeTooLow):
        fresh.client.submit_digit([0] * 64, fee=1)


def test_the_pool_waits_for_memory(digits_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    felts = digits.encode_input([3] * 64, 7)
    with ProverPool(tmp_path, meminfo=lambda: 10 * 2**20) as pool:
        assert pool.request(digits_model.model_id, digits_model.circuit, felts) is None
        assert pool.busy == 0  # not started: not enough memory
    monkeypatch.setattr("veriml.zk.prover.total_memory", lambda: 2**20)
    with ProverPool(tmp_path) as pool, pytest.raises(ConfigError, match="needs about"):
        pool.request(digits_model.model_id, digits_model.circuit, felts)


def test_the_pool_proves_in_a_worker_and_caches(digits_model, tmp_path: Path) -> None:  # noqa: ANN001
    felts = digits.encode_input([5] * 64, 7)
    with ProverPool(tmp_path, max_workers=1) as pool:
        assert pool.request(digits_model.model_id, digits_model.circuit, felts) is None  # started
        assert pool.busy == 1
        res = pool.prove(digits_model.model_id, digits_model.circuit, felts)
        assert not res.cached and res.proof.inputs == tuple(felts)
        assert pool.busy == 0
        again = pool.request(digits_model.model_id, digits_model.circuit, felts)
        assert again is not None and again.cached and again.proof == res.proof
