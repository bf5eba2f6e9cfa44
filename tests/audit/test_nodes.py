"""Real AuditRole nodes on LocalNetwork (tiny-gpt): honest jobs, a lazy executor, a no-show executor and a
lying auditor, with the faults of `veriml.sim.faults` applied from outside."""

from __future__ import annotations

import pytest

from veriml import schemes
from veriml.chain.deploy import DeployConfig
from veriml.schemes import audit
from veriml.schemes.audit import AuditStatus
from veriml.sim.faults import Fault
from veriml.sim.network import ETH, LocalNetwork, NodeSpec


@pytest.fixture(autouse=True)
def registered():
    schemes.register(audit.SPEC)
    yield
    schemes.unregister("audit")


def _start(specs: list[NodeSpec], audit_bps: int) -> LocalNetwork:
    config = DeployConfig(unbond_delay_blocks=300).with_scheme(
        "audit", commit_window_blocks=4, reveal_window_blocks=4, audit_bps=audit_bps
    )
    return LocalNetwork.start(specs, config=config, client_scheme="audit")


def _run(net: LocalNetwork, prompt: str = "The with statement") -> audit.AuditJobView:
    job_id = net.client.submit_text("tiny-gpt", prompt, max_new_tokens=6)
    return net.client.wait(job_id, between=net.tick, timeout=120)


def _spec(fault: Fault = Fault.HONEST, stake: int = 4 * ETH) -> NodeSpec:
    return NodeSpec(fault=fault, stake_wei=stake, schemes=("audit",))


def _books(net: LocalNetwork) -> None:
    jobs = net.contracts.scheme("audit")
    net.tick()  # the nodes see their jobs settled and withdraw
    t = jobs.totals()
    assert t["balance"] == t["escrow"] + t["bonds"] + t["credits"]
    # Every job here has settled: what is left in the escrow is the audit pool, and every node withdrew.
    assert all(jobs.job(i).status.final for i in range(1, jobs.next_job_id()))
    assert t["escrow"] == jobs.audit_pool()
    assert all(jobs.credits(n.address) == 0 for n in net.nodes)


def test_unaudited_honest_jobs_settle_and_pay_the_executor():
    with _start([_spec(), _spec(), _spec()], audit_bps=0) as net:
        jobs = net.contracts.scheme("audit")
        j = _run(net)
        assert j.status == AuditStatus.VERIFIED and not j.audited
        assert jobs.outcome(j.job_id)[0] == "verified"
        paid = jobs.events("Credited", j.submit_block, jobId=j.job_id, account=j.executor)
        assert sum(e["args"]["amount"] for e in paid) == j.price
        _books(net)


def test_forced_audit_of_honest_nodes_verifies():
    with _start([_spec(), _spec(), _spec()], audit_bps=10_000) as net:
        j = _run(net)
        assert j.status == AuditStatus.VERIFIED and j.audited
        _books(net)


def test_lazy_executor_is_caught_by_an_audit_and_slashed():
    # The lazy node holds most of the stake, so it is almost always the one drawn to execute.
    with _start([_spec(Fault.WRONG_OUTPUT, 40 * ETH), _spec(), _spec()], audit_bps=10_000) as net:
        lazy = net.nodes[0].address
        for i in range(6):
            j = _run(net, f"prompt {i}")
            if j.executor == lazy:
                break
        assert j.executor == lazy and j.audited
        assert j.status == AuditStatus.VERIFIED  # the two auditors' answer stands
        assert net.contracts.stake_of(lazy) == 20 * ETH
        user = net.client.address
        refunds = net.contracts.scheme("audit").events("Credited", j.submit_block, jobId=j.job_id, account=user)
        assert sum(e["args"]["amount"] for e in refunds) >= j.price
        _books(net)


def test_lying_auditor_is_slashed():
    # The liar holds little stake, so it is almost never the executor: it audits.
    with _start([_spec(Fault.LYING_AUDITOR, 2 * ETH), _spec(stake=20 * ETH), _spec(stake=20 * ETH)], 10_000) as net:
        liar = net.nodes[0].address
        for i in range(6):
            j = _run(net, f"prompt {i}")
            if j.executor != liar:
                break
        assert j.executor != liar and j.status == AuditStatus.VERIFIED
        assert net.contracts.stake_of(liar) == ETH
        _books(net)


def test_no_show_executor_is_slashed_and_the_user_compensated():
    with _start([_spec(Fault.NO_SHOW, 40 * ETH), _spec(), _spec()], audit_bps=0) as net:
        absent = net.nodes[0].address
        for i in range(6):
            j = _run(net, f"prompt {i}")
            if j.executor == absent:
                break
        assert j.executor == absent and j.status == AuditStatus.FAILED
        assert net.contracts.stake_of(absent) == 20 * ETH
        user = net.client.address
        back = net.contracts.scheme("audit").events("Credited", j.submit_block, jobId=j.job_id, account=user)
        assert sum(e["args"]["amount"] for e in back) == 2 * j.fee  # fee + compensation capped at the fee
        _books(net)


def test_an_auditor_restarted_after_its_commit_reveals_what_it_committed():
    from veriml.node.participant import RoleEnv
    from veriml.node.state import NodeState
    from veriml.sim.network import build_node

    with _start([_spec(), _spec(), _spec()], audit_bps=10_000) as net:
        jobs = net.contracts.scheme("audit")
        job_id = net.client.submit_text("tiny-gpt", "The with statement", max_new_tokens=6)
        for _ in range(30):
            net.tick()
            if jobs.job(job_id).status == AuditStatus.AUDITING and jobs.job(job_id).commits >= 1:
                break
        auditors = jobs.auditors_of(job_id)
        i, victim = next(
            (i, n)
            for i, n in enumerate(net.nodes)
            if n.address in auditors and jobs.slot(job_id, n.address).commitment != bytes(32)
        )
        rec = victim.role("audit").state.get(job_id)
        assert rec.phase == audit.AUDIT_COMMITTED and rec.salt is not None
        role = victim.role("audit")
        victim.state.close()
        env = RoleEnv(("tiny-gpt",), role.input_store, role.output_store, net.workdir / f"node{i}", net.loaded)
        state = NodeState(net.workdir / f"node{i}" / "state.sqlite")
        net.nodes[i] = build_node(net.contracts, victim.account, state, _spec(), env)
        assert net.nodes[i].role("audit").state.get(job_id).salt == rec.salt
        j = net.client.wait(job_id, between=net.tick, timeout=120)
        assert j.status == AuditStatus.VERIFIED and jobs.slot(job_id, victim.address).revealed
        _books(net)


def test_audit_roles_refuse_faults_of_other_schemes():
    from veriml.sim.faults import faulty_role

    with _start([_spec()], audit_bps=0) as net:
        with pytest.raises(ValueError, match="no fault"):
            faulty_role(net.nodes[0].role("audit"), Fault.TAMPERED_STEP)


def test_a_withheld_input_fails_the_job_without_stopping_the_nodes():
    from eth_hash.auto import keccak

    from veriml.models import zoo

    with _start([_spec(), _spec(), _spec()], audit_bps=0) as net:
        jobs = net.contracts.scheme("audit")
        model = zoo.manifest("tiny-gpt").model_id()
        job_id, _ = jobs.submit(net.client.account, model, keccak(b"never published"))
        skips = []
        for _ in range(40):
            skips += [a for a in net.tick() if a.what == "skip"]
            if jobs.job(job_id).status.final:
                break
        assert jobs.job(job_id).status == AuditStatus.FAILED
        assert any("input not available" in a.detail for a in skips)
        # The nodes go on serving: the next job settles.
        assert _run(net).status == AuditStatus.VERIFIED
        _books(net)
