"""Executors and watchers (`OptimisticRole`s on the one harness) playing the optimistic scheme by themselves:
honest jobs finalize, lies are challenged and lost, frivolous or silent parties lose, and nodes killed
mid-dispute pick up where they stopped."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from veriml.chain.optimistic import OptStatus, Turn
from veriml.demo_optimistic import (
    executor_spec,
    executors,
    int_models,
    job_report,
    jobs_of,
    role,
    run_job,
    start_network,
    wait,
    watcher_spec,
)
from veriml.models.intmlp import IntModel, encode_pixels
from veriml.node.participant import Participant, RoleEnv
from veriml.node.state import NodeState
from veriml.schemes.optimistic import DISPUTED, OptimisticRole
from veriml.sim.faults import Fault, faulty_role
from veriml.sim.network import LocalNetwork, NodeSpec, build_node

from .conftest import CONFIG, OPT_CONFIG, SMALL, TEST_DIGITS, write_int_model

SMALL_INPUT = bytes([3, 1, 4, 1])


@pytest.fixture(scope="module")
def base_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNetwork]:
    """The shipped model (7-round disputes) and SMALL (5 steps, 3 rounds: cheaper where rounds do not matter);
    one executor and two watchers."""
    small = tmp_path_factory.mktemp("small")
    write_int_model(SMALL, small, "small")
    with start_network(
        [Fault.HONEST],
        [Fault.HONEST, Fault.HONEST],
        models=("int-mlp", str(small)),
        config=CONFIG.with_scheme("optimistic", **dataclasses.asdict(OPT_CONFIG)),
        workdir=tmp_path_factory.mktemp("optnet"),
    ) as net:
        yield net


def small(net: LocalNetwork) -> IntModel:
    return int_models(net)[1]


def node(net: LocalNetwork, account: object, spec: NodeSpec, path: Path) -> Participant:
    """A participant (a new process, in effect) for `account`, its state in the SQLite file `path`."""
    env = RoleEnv(net.model_names, None, None, path.parent, net.loaded, options=dict(spec.options))
    return build_node(net.contracts, account, NodeState(path), spec, env)


def cast(
    net: LocalNetwork,
    workdir: Path,
    executor: Fault,
    watchers: list[Fault],
    share: float = 1.0,
    seed: int = 0,
) -> None:
    """Give the network's accounts fresh participants (new SQLite files) behaving as told: the first account
    executes, the next ones watch."""
    accounts = [n.account for n in net.nodes]
    specs = [executor_spec(executor, seed=seed), *(watcher_spec(f, share) for f in watchers)]
    names = ["e", *(f"w{i}" for i in range(len(watchers)))]
    net.nodes = [
        node(net, a, spec, workdir / f"{name}.sqlite") for a, spec, name in zip(accounts, specs, names, strict=False)
    ]


@pytest.fixture
def net(base_net: LocalNetwork, tmp_path: Path) -> Iterator[LocalNetwork]:
    snap = base_net.chain.snapshot()
    saved = base_net.nodes
    try:
        yield base_net
    finally:
        for n in base_net.nodes:
            if n not in saved:
                n.state.close()
        base_net.nodes = saved
        base_net.chain.revert(snap)


def books_ok(net: LocalNetwork) -> bool:
    t = jobs_of(net).totals()
    return t["balance"] == t["escrow"] + t["bonds"] + t["credits"]


def test_honest_job_finalizes_after_the_window(net: LocalNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, Fault.HONEST, [Fault.HONEST])
    r = run_job(net, encode_pixels(TEST_DIGITS[0]))
    assert r["status"] == "verified" and r["dispute"] is None and r["prediction"] == 7
    assert r["output"] == r["posted_output"] and r["fee_paid"] == r["fee"] and r["refund"] == 0
    assert jobs_of(net).credits(executors(net)[0].address) == 0  # it withdrew its fee
    assert books_ok(net)


def test_frivolous_watcher_loses_its_bond(net: LocalNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, Fault.HONEST, [Fault.FRIVOLOUS])
    r = run_job(net, SMALL_INPUT, model=small(net))
    assert r["status"] == "verified" and r["dispute"]["winner"] == "executor" and r["dispute"]["rounds"] == 3
    assert r["dispute"]["reason"] == "one-step check"  # the executor proved its step itself
    assert bytes(v % 256 for v in r["output"]) == SMALL.run(SMALL_INPUT)
    assert books_ok(net)


def test_executor_silent_in_the_dispute_loses_by_timeout(net: LocalNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, Fault.SILENT, [Fault.FRIVOLOUS])  # posts honestly, then never answers a dispute
    r = run_job(net, SMALL_INPUT, model=small(net))
    assert r["status"] == "overturned" and r["dispute"]["reason"] == "executor timed out"
    assert r["dispute"]["rounds"] == 0


def test_silent_challenger_cannot_shield_a_lie(net: LocalNetwork, tmp_path: Path) -> None:
    """A challenger that goes quiet (say, the liar's own sock puppet) loses its bond; the window reopens and an
    honest watcher still catches the lie."""
    cast(net, tmp_path, Fault.TAMPERED_STEP, [Fault.SILENT, Fault.HONEST])
    r = run_job(net, SMALL_INPUT, model=small(net))
    first, second = r["disputes"]
    assert first["challenger"] == net.nodes[1].address and first["reason"] == "challenger timed out"
    assert second["challenger"] == net.nodes[2].address and second["winner"] == "challenger"
    assert r["status"] == "overturned"
    assert books_ok(net)


def test_executor_that_never_posts_is_slashed(net: LocalNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, Fault.NO_POST, [Fault.HONEST])
    r = run_job(net, SMALL_INPUT, model=small(net))
    assert r["status"] == "refunded" and r["slashed_wei"] > 0
    assert r["refund"] == r["fee"] + min(r["slashed_wei"], r["fee"])  # compensation capped at the fee


def test_unwatched_lies_stand(net: LocalNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, Fault.TAMPERED_STEP, [Fault.HONEST], share=0.0)
    r = run_job(net, SMALL_INPUT, model=small(net))
    assert r["status"] == "verified" and r["dispute"] is None  # why watch_share must be high enough


def test_watch_share_picks_a_stable_fraction(base_net: LocalNetwork) -> None:
    account = base_net.nodes[1].account
    watcher = OptimisticRole(
        jobs_of(base_net), account, NodeState(":memory:"), int_models(base_net), executes=False, watch_share=0.3
    )
    picks = [watcher.watches(i) for i in range(2000)]
    assert 0.25 < sum(picks) / len(picks) < 0.35
    assert picks == [watcher.watches(i) for i in range(2000)]  # the same after a restart
    assert watcher.model_ids() == []  # a watcher stakes nothing


def test_roles_come_from_the_registry_with_their_options(base_net: LocalNetwork) -> None:
    e, w1, w2 = (role(n) for n in base_net.nodes)
    assert (e.executes, e.watch_share) == (True, 0.0) and e.model_ids() == [m.model_id for m in int_models(base_net)]
    assert (w1.executes, w1.watch_share, w2.executes) == (False, 1.0, False)
    assert all(r.honest and type(r) is OptimisticRole for r in (e, w1, w2))


def test_faults_wrap_the_role_from_outside(base_net: LocalNetwork) -> None:
    def fresh() -> OptimisticRole:
        return OptimisticRole(jobs_of(base_net), base_net.nodes[0].account, NodeState(":memory:"))

    honest = fresh()
    assert faulty_role(honest, Fault.HONEST) is honest and type(honest) is OptimisticRole
    liar = faulty_role(fresh(), Fault.TAMPERED_STEP, seed=3)
    assert isinstance(liar, OptimisticRole) and not liar.honest and liar.seed == 3
    with pytest.raises(ValueError, match="no fault 'wrong-output'"):
        faulty_role(fresh(), Fault.WRONG_OUTPUT)  # a quorum fault


@pytest.mark.parametrize("when", ["mid-bisection", "at-the-one-step-proof"])
def test_executor_and_watcher_killed_mid_dispute_resume_and_finish(
    net: LocalNetwork, tmp_path: Path, when: str
) -> None:
    """Both parties of a dispute die (mid-bisection, or with only the challenger's one-step proof left); new
    participants on the same SQLite files resume it, the liar tells the same lie, and the lie is caught."""
    cast(net, tmp_path, Fault.TAMPERED_STEP, [Fault.HONEST], seed=9)
    opt = jobs_of(net)
    job_id = net.client.submit(int_models(net)[0], encode_pixels(TEST_DIGITS[7]))
    for _ in range(80):
        net.tick()
        d = opt.dispute(job_id)
        if (d.rounds >= 3) if when == "mid-bisection" else (d.turn == Turn.STEP):
            break
    d = opt.dispute(job_id)
    if when == "mid-bisection":
        assert d.turn in (Turn.EXECUTOR, Turn.CHALLENGER) and d.rounds >= 3
    else:
        assert d.turn == Turn.STEP and d.rounds == 7 and d.hi == d.lo + 1
    before = [(n.state.scope("optimistic").last_block, n.state.scope("optimistic").get(job_id)) for n in net.nodes]
    assert all(rec is not None and rec.phase == DISPUTED for _, rec in before)
    assert before[1][1].data == {"challenged": True}
    for n in net.nodes:
        n.state.close()  # killed
    cast(net, tmp_path, Fault.TAMPERED_STEP, [Fault.HONEST], seed=9)  # new processes, same files
    after = [(n.state.scope("optimistic").last_block, n.state.scope("optimistic").get(job_id)) for n in net.nodes]
    assert after == before
    assert [[r.job_id for r in role(n).state.open_jobs()] for n in net.nodes] == [[job_id], [job_id]]
    actions: list = []
    wait(net, job_id, between=actions.extend)
    assert [a for a in actions if a.what == "skip"] == []  # the restarted liar told the same lie
    assert "challenge" not in {a.what for a in actions}  # the watcher remembered it had challenged
    r = job_report(net, job_id)
    d = r["dispute"]
    assert r["status"] == "overturned" and r["output"] is None and r["refund"] == r["fee"]
    assert len(r["disputes"]) == 1
    assert d["winner"] == "challenger" and d["rounds"] == d["expected_rounds"] == 7 and d["steps"] == 106
    assert d["reason"] == "one-step check" and 0 < d["one_step_gas"] < 300_000
    liar = executors(net)[0]
    assert d["step"] + 1 == role(liar).tampered_step(opt.job(job_id))
    assert r["slashed"] == [liar.address] and r["slashed_wei"] > 0
    assert opt.job(job_id).status == OptStatus.OVERTURNED
    assert role(net.nodes[1]).state.outcomes() == {job_id: "overturned"}
    assert role(liar).state.outcomes() == {job_id: "overturned"}
    assert opt.credits(net.nodes[1].address) == 0  # the challenger withdrew its reward and bond
    assert books_ok(net)
