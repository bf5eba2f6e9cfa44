"""Executors and watchers playing the optimistic scheme by themselves: honest jobs finalize, lies are
challenged and lost, frivolous or silent parties lose, and a restarted node picks up where it stopped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from veriml.chain.optimistic import OptStatus, Turn
from veriml.demo_optimistic import OptimisticNetwork, job_report
from veriml.models.intmlp import IntModel, encode_pixels
from veriml.node.optimistic import OptFault, OptimisticNode, OptimisticState

from .conftest import OPT_CONFIG, SMALL, TEST_DIGITS, write_int_model

SMALL_INPUT = bytes([3, 1, 4, 1])


@pytest.fixture(scope="module")
def base_net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OptimisticNetwork]:
    """The shipped model (7-round disputes) and SMALL (5 steps, 3 rounds: cheaper where rounds do not matter)."""
    small = write_int_model(SMALL, tmp_path_factory.mktemp("small"), "small")
    with OptimisticNetwork.start(
        [OptFault.HONEST],
        [OptFault.HONEST, OptFault.HONEST],
        opt_config=OPT_CONFIG,
        models=[IntModel.load(), small],
        workdir=tmp_path_factory.mktemp("optnet"),
    ) as net:
        yield net


def small(net: OptimisticNetwork) -> IntModel:
    return net.models[1]


def cast(
    net: OptimisticNetwork,
    workdir: Path,
    executor: OptFault,
    watchers: list[OptFault],
    share: float = 1.0,
    seed: int = 0,
) -> None:
    """Give the network's accounts fresh participants (new SQLite files) behaving as told."""
    accounts = [n.account for n in net.nodes]
    net.executors = [
        OptimisticNode(
            net.opt,
            accounts[0],
            net.models,
            OptimisticState(workdir / "e.sqlite"),
            fault=executor,
            seed=seed,
            watch_share=0.0,
        )
    ]
    net.watchers = [
        OptimisticNode(
            net.opt,
            accounts[1 + i],
            net.models,
            OptimisticState(workdir / f"w{i}.sqlite"),
            executes=False,
            watch_share=share,
            fault=f,
        )
        for i, f in enumerate(watchers)
    ]


@pytest.fixture
def net(base_net: OptimisticNetwork, tmp_path: Path) -> Iterator[OptimisticNetwork]:
    snap = base_net.chain.snapshot()
    saved = (base_net.executors, base_net.watchers)
    try:
        yield base_net
    finally:
        for n in base_net.nodes:
            n.state.close()
        base_net.executors, base_net.watchers = saved
        base_net.chain.revert(snap)


def books_ok(net: OptimisticNetwork) -> bool:
    t = net.opt.totals()
    return t["balance"] == t["escrow"] + t["bonds"] + t["credits"]


def test_honest_job_finalizes_after_the_window(net: OptimisticNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, OptFault.HONEST, [OptFault.HONEST])
    r = net.run_job(encode_pixels(TEST_DIGITS[0]))
    assert r["status"] == "verified" and r["dispute"] is None and r["prediction"] == 7
    assert r["output"] == r["posted_output"] and r["fee_paid"] == r["fee"] and r["refund"] == 0
    assert net.opt.credits(net.executors[0].address) == 0  # it withdrew its fee
    assert books_ok(net)


def test_frivolous_watcher_loses_its_bond(net: OptimisticNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, OptFault.HONEST, [OptFault.FRIVOLOUS])
    r = net.run_job(SMALL_INPUT, model=small(net))
    assert r["status"] == "verified" and r["dispute"]["winner"] == "executor" and r["dispute"]["rounds"] == 3
    assert r["dispute"]["reason"] == "one-step check"  # the executor proved its step itself
    assert bytes(v % 256 for v in r["output"]) == SMALL.run(SMALL_INPUT)
    assert books_ok(net)


def test_executor_silent_in_the_dispute_loses_by_timeout(net: OptimisticNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, OptFault.HONEST, [OptFault.FRIVOLOUS])
    net.executors[0].fault = OptFault.SILENT  # posts honestly, then never answers a dispute
    r = net.run_job(SMALL_INPUT, model=small(net))
    assert r["status"] == "overturned" and r["dispute"]["reason"] == "executor timed out"
    assert r["dispute"]["rounds"] == 0


def test_silent_challenger_cannot_shield_a_lie(net: OptimisticNetwork, tmp_path: Path) -> None:
    """A challenger that goes quiet (say, the liar's own sock puppet) loses its bond; the window reopens and an
    honest watcher still catches the lie."""
    cast(net, tmp_path, OptFault.TAMPERED_STEP, [OptFault.SILENT, OptFault.HONEST])
    r = net.run_job(SMALL_INPUT, model=small(net))
    first, second = r["disputes"]
    assert first["challenger"] == net.watchers[0].address and first["reason"] == "challenger timed out"
    assert second["challenger"] == net.watchers[1].address and second["winner"] == "challenger"
    assert r["status"] == "overturned"
    assert books_ok(net)


def test_executor_that_never_posts_is_slashed(net: OptimisticNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, OptFault.NO_POST, [OptFault.HONEST])
    r = net.run_job(SMALL_INPUT, model=small(net))
    assert r["status"] == "refunded" and r["refund"] == r["fee"] + r["slashed_wei"] and r["slashed_wei"] > 0


def test_unwatched_lies_stand(net: OptimisticNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, OptFault.TAMPERED_STEP, [OptFault.HONEST], share=0.0)
    r = net.run_job(SMALL_INPUT, model=small(net))
    assert r["status"] == "verified" and r["dispute"] is None  # why watch_share must be high enough


def test_watch_share_picks_a_stable_fraction(base_net: OptimisticNetwork, tmp_path: Path) -> None:
    node = OptimisticNode(
        base_net.opt,
        base_net.watchers[0].account,
        base_net.models,
        OptimisticState(":memory:"),
        executes=False,
        watch_share=0.3,
    )
    picks = [node._watches(i) for i in range(2000)]
    assert 0.25 < sum(picks) / len(picks) < 0.35
    assert picks == [node._watches(i) for i in range(2000)]  # the same after a restart


def test_lying_executor_loses_even_across_a_restart(net: OptimisticNetwork, tmp_path: Path) -> None:
    cast(net, tmp_path, OptFault.TAMPERED_STEP, [OptFault.HONEST], seed=9)
    job_id = net.submit(encode_pixels(TEST_DIGITS[7]))
    for _ in range(60):
        net.tick()
        if net.opt.dispute(job_id).rounds >= 3:
            break
    d = net.opt.dispute(job_id)
    assert d.turn in (Turn.EXECUTOR, Turn.CHALLENGER) and d.rounds >= 3
    cursors = [n.state.last_block for n in net.nodes]
    for n in net.nodes:
        n.state.close()
    cast(net, tmp_path, OptFault.TAMPERED_STEP, [OptFault.HONEST], seed=9)  # new processes, same files
    assert [n.state.last_block for n in net.nodes] == cursors
    assert net.executors[0].state.open_jobs() == [job_id]
    skips = []
    net.wait(job_id, between=lambda actions: skips.extend(a for a in actions if a.what == "skip"))
    assert skips == []  # the restarted liar told the same lie, proved against its posted trace root
    r = job_report(net, job_id)
    d = r["dispute"]
    assert r["status"] == "overturned" and r["output"] is None and r["refund"] == r["fee"]
    assert d["winner"] == "challenger" and d["rounds"] == d["expected_rounds"] == 7 and d["steps"] == 106
    assert d["reason"] == "one-step check" and 0 < d["one_step_gas"] < 300_000
    assert d["step"] + 1 == net.executors[0].tampered_step(net.opt.job(job_id))
    assert r["slashed"] == [net.executors[0].address] and r["slashed_wei"] > 0
    assert net.opt.job(job_id).status == OptStatus.OVERTURNED
    assert net.watchers[0].state.outcomes() == {job_id: "overturned"}
    assert books_ok(net)
