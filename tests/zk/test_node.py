"""Prover nodes end to end: an in-process zk network (chain, ZkJobs, registered circuit, one node, client),
the node driven by `step()`, proofs in the worker pool. Every fault ends with the node slashed and the user
refunded; an honest node is paid; proofs are cached per (model, input)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from veriml.errors import ConfigError
from veriml.node.zk import ZkFault
from veriml.zk import digits
from veriml.zk.network import LocalZkNetwork, ZkNodeSpec
from veriml.zk.prover import ProverPool

GOLDEN = json.loads((Path(__file__).parent / "golden_digits.json").read_text())["images"]


@pytest.fixture(scope="module")
def net(zk_cache: Path) -> Iterator[LocalZkNetwork]:
    with LocalZkNetwork.start([ZkNodeSpec()], cache_dir=zk_cache) as n:
        yield n


@pytest.fixture
def fresh(net: LocalZkNetwork) -> Iterator[LocalZkNetwork]:
    """The module's network rolled back after each test; the node forgets what it saw since."""
    snap = net.chain.snapshot()
    node = net.nodes[0]
    saved = (node.last_block, dict(node.records))
    try:
        yield net
    finally:
        net.chain.revert(snap)
        node.last_block, node.records = saved[0], saved[1]
        node.fault, node.honest = ZkFault.HONEST, True


def set_fault(net: LocalZkNetwork, fault: ZkFault) -> None:
    net.nodes[0].fault = fault
    net.nodes[0].honest = fault is ZkFault.HONEST


def test_an_honest_node_proves_and_is_paid(fresh: LocalZkNetwork) -> None:
    net = fresh
    node = net.nodes[0]
    case = GOLDEN["0"]
    result = net.run_digit(case["pixels"])
    assert result.status == "verified" and result.node == node.address
    assert result.label == case["class"] == case["label"]
    assert [round(v * 128) for v in result.logits] == case["outputs"]
    rec = node.records[result.job_id]
    assert rec.prove is not None and rec.prove.prove_s > 0 and rec.proof_bytes > 1000
    assert rec.submit_gas < 1_000_000
    net.tick()  # the node withdraws its fee
    assert net.jobs.credits(node.address) == 0
    earned = sum(e["args"]["amount"] for e in net.jobs.events("Credited", 0, account=node.address))
    assert earned == result.fee
    assert net.jobs.balance() == net.jobs.total_escrow() + net.jobs.total_credits()


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (ZkFault.FORGED_OUTPUT, "invalid proof"),
        (ZkFault.TAMPERED_PROOF, "invalid proof"),
        (ZkFault.REPLAYED_PROOF, "proof is about another input"),
        (ZkFault.NO_SHOW, "no proof before the deadline"),
    ],
)
def test_every_fault_is_slashed_and_refunded(fresh: LocalZkNetwork, fault: ZkFault, reason: str) -> None:
    net = fresh
    set_fault(net, fault)
    node = net.nodes[0]
    stake = net.contracts.stake_of(node.address)
    result = net.run_digit(GOLDEN["1"]["pixels"])
    assert result.status == ("expired" if fault is ZkFault.NO_SHOW else "rejected")
    assert result.reason == reason
    assert result.label is None and result.output is None
    assert result.slashed == stake // 2
    assert net.contracts.stake_of(node.address) == stake - stake // 2
    assert result.refund == result.fee + result.slashed
    assert net.jobs.credits(net.client.address) == result.refund
    assert net.client.withdraw() == result.refund
    assert net.jobs.balance() == net.jobs.total_escrow() + net.jobs.total_credits()


def test_proofs_are_cached_per_model_and_input(fresh: LocalZkNetwork) -> None:
    net = fresh
    node = net.nodes[0]
    first = net.run_digit(GOLDEN["2"]["pixels"])
    second = net.run_digit(GOLDEN["2"]["pixels"])
    assert first.status == second.status == "verified"
    assert node.records[first.job_id].prove.cached is False
    assert node.records[second.job_id].prove.cached is True
    assert node.records[second.job_id].prove.proof == node.records[first.job_id].prove.proof


def test_the_client_refuses_bad_inputs_before_paying(fresh: LocalZkNetwork) -> None:
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
