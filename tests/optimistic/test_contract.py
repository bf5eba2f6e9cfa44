"""OptimisticJobs on the embedded chain: escrow, posting, the challenge window, bisection disputes settled by
the one-step check, timeouts on each side, no re-opening, and books that always balance."""

from __future__ import annotations

import hashlib
import math
import random

import pytest
from eth_hash.auto import keccak

from veriml.chain.optimistic import OptStatus, Turn
from veriml.chain.tx import transfer
from veriml.errors import ContractRevert
from veriml.verify.trace import State, Trace, lie_at

from .conftest import BOND, CONFIG, ONE_ID, OPT_CONFIG, PRICE, SMALL, SMALL_ID, STAKE, OptWorld

SLASHED = STAKE * CONFIG.slash_bps // 10_000


def settled(world: OptWorld, job_id: int) -> dict:
    (ev,) = world.opt.events("DisputeSettled", world.opt.job(job_id).submit_block, jobId=job_id)[-1:]
    return dict(ev["args"])


def fraud(world: OptWorld, k: int, delta: int = 77, model_id: bytes | None = None) -> tuple[int, Trace, Trace]:
    """Post a trace that lies at step k; returns (job, claimed, truth)."""
    job_id = world.open_job(model_id=model_id)
    j = world.opt.job(job_id)
    data, mlp = world.input_of(job_id), world.mlp(j.model_id)
    truth, claimed = mlp.trace(data), lie_at(mlp.book, data, k, delta)
    assert claimed.result_digest != truth.result_digest
    world.post(job_id, claimed)
    return job_id, claimed, truth


# ---- submit, assign, post ----


def test_submit_escrows_and_publishes_the_input(world: OptWorld) -> None:
    data = world.digit(3)
    job_id, _ = world.opt.submit(world.user, world.model.model_id, data, 3 * PRICE)
    j = world.opt.job(job_id)
    assert j.status == OptStatus.SUBMITTED and j.fee == 3 * PRICE and j.input_hash == hashlib.sha256(data).digest()
    assert world.input_of(job_id) == data
    assert world.opt.totals()["escrow"] == 3 * PRICE
    world.assert_books()


@pytest.mark.parametrize(
    ("input_", "model", "fee", "reason"),
    [
        (b"", None, PRICE, "InputSize"),
        (b"\x01" * 4097, None, PRICE, "InputSize"),
        (b"\x01", keccak(b"nope"), PRICE, "UnknownModel"),
        (b"\x01", None, PRICE - 1, "FeeBelowPrice"),
        (b"\x01", "tokens", PRICE, "PolicyMustBeExact"),
        (b"\x01", "unserved", PRICE, "TooFewNodes"),
    ],
)
def test_submit_reverts(world: OptWorld, input_: bytes, model: object, fee: int, reason: str) -> None:
    model_id = world.model.model_id
    if model in ("tokens", "unserved"):
        model_id = keccak(str(model).encode())
        world.c.register_model(world.owner, model_id, keccak(b"w"), "tokens" if model == "tokens" else "exact", 0, 1)
    elif model is not None:
        model_id = model
    with pytest.raises(ContractRevert, match=reason):
        world.opt.submit(world.user, model_id, input_, fee)


def test_assign_in_the_next_block_locks_the_executor(world: OptWorld) -> None:
    job_id, _ = world.opt.submit(world.user, world.model.model_id, world.digit(), PRICE)
    # With automining, the assign transaction lands in the block after the submission: the first allowed.
    world.opt.assign(world.keeper, job_id)
    assert world.chain.block_number() == world.opt.job(job_id).submit_block + 1
    j = world.opt.job(job_id)
    assert j.status == OptStatus.ASSIGNED and j.executor == world.executor.address
    assert j.deadline == world.chain.block_number() + OPT_CONFIG.execute_window_blocks
    assert world.c.node(world.executor.address).open_jobs == 1
    with pytest.raises(ContractRevert, match="WrongStatus"):
        world.opt.assign(world.keeper, job_id)


def test_post_rules(world: OptWorld) -> None:
    job_id = world.open_job()
    t = world.model.mlp.trace(world.digit())
    for sender, args, reason in [
        (world.keeper, (t.output, t.root, t.steps), "NotYourTurn|NotExecutor"),
        (world.executor, (b"\x01" * 1025, t.root, t.steps), "OutputTooLong"),
        (world.executor, (t.output, t.root, 0), "StepsOutOfRange"),
        (world.executor, (t.output, t.root, 2**24 + 1), "StepsOutOfRange"),
        (world.executor, (t.output, b"\x00" * 32, t.steps), "ZeroTraceRoot"),
    ]:
        with pytest.raises(ContractRevert, match=reason):
            world.opt.post(sender, job_id, *args)
    world.post(job_id, t)
    j = world.opt.job(job_id)
    assert j.status == OptStatus.POSTED and j.result_digest == t.result_digest and j.trace_root == t.root
    with pytest.raises(ContractRevert, match="WrongStatus"):
        world.post(job_id, t)


def test_executor_that_never_posts_is_slashed_and_the_user_refunded(world: OptWorld) -> None:
    job_id = world.open_job()
    with pytest.raises(ContractRevert, match="PostWindowOpen"):
        world.opt.missed_post(world.keeper, job_id)
    world.mine_past(world.opt.job(job_id).deadline)
    t = world.model.mlp.trace(world.digit())
    with pytest.raises(ContractRevert, match="PostWindowClosed"):
        world.post(job_id, t)
    world.opt.missed_post(world.keeper, job_id)
    assert world.status(job_id) == OptStatus.REFUNDED
    assert world.opt.credits(world.user.address) == PRICE + PRICE  # compensation capped at the fee; the rest burned
    assert world.c.stake_of(world.executor.address) == STAKE - SLASHED
    assert world.c.node(world.executor.address).open_jobs == 0
    world.assert_books()


def test_unchallenged_result_finalizes_after_the_window(world: OptWorld) -> None:
    job_id, _, _ = world.posted_job()
    with pytest.raises(ContractRevert, match="ChallengeWindowOpen"):
        world.opt.finalize(world.keeper, job_id)
    world.mine_past(world.opt.job(job_id).deadline)
    with pytest.raises(ContractRevert, match="ChallengeWindowClosed"):
        world.opt.challenge(world.challengers[0], job_id)
    world.opt.finalize(world.keeper, job_id)
    assert world.status(job_id) == OptStatus.FINALIZED
    assert world.opt.credits(world.executor.address) == PRICE
    assert world.c.node(world.executor.address).open_jobs == 0
    with pytest.raises(ContractRevert, match="WrongStatus"):
        world.opt.finalize(world.keeper, job_id)
    world.assert_books()


# ---- disputes won by the challenger ----


@pytest.mark.parametrize(
    ("model", "k"), [("small", 1), ("small", 3), ("small", 5), ("shipped", 106), ("shipped", "random")]
)
def test_a_lie_at_any_step_is_caught_on_chain(world: OptWorld, model: str, k: int | str) -> None:
    """First, middle, last and a random step (the pure tests cover every step of both models many times)."""
    model_id = SMALL_ID if model == "small" else world.model.model_id
    steps = world.mlp(model_id).steps
    step = random.Random(2024).randint(2, steps - 1) if k == "random" else k
    job_id, claimed, truth = fraud(world, step, model_id=model_id)
    challenger = world.challengers[0]
    world.opt.challenge(challenger, job_id)
    assert world.opt.totals()["bonds"] == BOND
    world.play(job_id, claimed, truth, challenger)
    d = world.opt.dispute(job_id)
    rounds = math.ceil(math.log2(steps))
    assert d.turn == Turn.STEP and (d.lo, d.hi) == (step - 1, step) and d.rounds == rounds
    receipt = world.prove(job_id, truth, challenger)
    assert receipt["gasUsed"] < 300_000
    ev = settled(world, job_id)
    assert (ev["executorWon"], ev["lo"], ev["rounds"], ev["reason"]) == (False, step - 1, rounds, "one-step check")
    assert world.status(job_id) == OptStatus.OVERTURNED
    assert world.opt.credits(challenger.address) == BOND + SLASHED
    assert world.opt.credits(world.user.address) == PRICE
    assert world.c.stake_of(world.executor.address) == STAKE - SLASHED
    assert world.c.node(world.executor.address).open_jobs == 0
    world.assert_books()


def test_lie_in_the_padding_of_a_small_model(world: OptWorld) -> None:
    job_id, claimed, truth = fraud(world, 7, model_id=SMALL_ID)  # 5 real steps, lie at state 7 of 0..8
    world.opt.challenge(world.challengers[0], job_id)
    world.play(job_id, claimed, truth, world.challengers[0])
    d = world.opt.dispute(job_id)
    assert (d.lo, d.hi, d.rounds) == (6, 7, 3) and truth.states[6].halted
    world.prove(job_id, truth, world.keeper)  # anyone may submit the proof
    assert world.status(job_id) == OptStatus.OVERTURNED
    world.assert_books()


def test_one_step_job_goes_straight_to_the_check(world: OptWorld) -> None:
    job_id, claimed, truth = fraud(world, 1, model_id=ONE_ID)
    world.opt.challenge(world.challengers[0], job_id)
    d = world.opt.dispute(job_id)
    assert (d.turn, d.lo, d.hi) == (Turn.STEP, 0, 1)
    # state 0 is checked against the job's input, not against any hash the executor gave
    wrong_input = State(0, 0, b"\x09\x09\x09")
    with pytest.raises(ContractRevert, match="NotInitialState"):
        world.opt.prove_step(world.keeper, job_id, wrong_input.encode(), world.mlp(ONE_ID).rows[0], [])
    world.prove(job_id, truth, world.challengers[0])
    assert settled(world, job_id)["rounds"] == 0 and world.status(job_id) == OptStatus.OVERTURNED


def test_malformed_input_must_halt_with_an_empty_output(world: OptWorld) -> None:
    """A 10-byte input to the 64-input model: the truth is an empty output after one step."""
    data = b"\x03" * 10
    job_id = world.open_job(data=data)
    truth = world.model.mlp.trace(data)
    assert truth.output == b"" and truth.steps == 1
    liar_trace = Trace((State(0, 0, data), State(0xFFFF, 0, b"\x07")), 1)
    world.post(job_id, liar_trace)
    world.opt.challenge(world.challengers[1], job_id)
    world.prove(job_id, truth, world.challengers[1])
    assert world.status(job_id) == OptStatus.OVERTURNED


# ---- disputes won by the executor ----


def test_honest_executor_beats_a_frivolous_challenger_and_the_window_reopens(world: OptWorld) -> None:
    job_id, claimed, truth = world.posted_job(model_id=SMALL_ID)
    first, second = world.challengers[0], world.challengers[1]
    world.opt.challenge(first, job_id)
    with pytest.raises(ContractRevert, match="DisputeOpen"):
        world.opt.challenge(second, job_id)
    with pytest.raises(ContractRevert, match="DisputeOpen"):
        world.opt.finalize(world.keeper, job_id)
    rng = random.Random(3)
    world.play(job_id, claimed, truth, first, answer=lambda mid, h: rng.random() < 0.5)
    world.prove(job_id, claimed, first)  # even the challenger's own proof shows the executor right
    ev = settled(world, job_id)
    assert ev["executorWon"] and ev["rounds"] == 3 == math.ceil(math.log2(SMALL.steps))
    assert world.status(job_id) == OptStatus.POSTED
    assert world.opt.credits(world.executor.address) == BOND
    assert world.opt.job(job_id).deadline == world.chain.block_number() + OPT_CONFIG.challenge_window_blocks
    # a settled dispute cannot be re-opened by its challenger, nor replayed
    with pytest.raises(ContractRevert, match="AlreadyChallenged"):
        world.opt.challenge(first, job_id)
    with pytest.raises(ContractRevert, match="NotYourTurn"):
        world.opt.respond(first, job_id, False)
    with pytest.raises(ContractRevert, match="NoDispute"):
        world.opt.timeout(world.keeper, job_id)
    # others may still challenge (and lose again), then the job finalizes
    world.opt.challenge(second, job_id)
    world.play(job_id, claimed, truth, second)
    world.prove(job_id, claimed, world.executor)
    world.mine_past(world.opt.job(job_id).deadline)
    world.opt.finalize(world.keeper, job_id)
    assert world.status(job_id) == OptStatus.FINALIZED
    assert world.opt.credits(world.executor.address) == 2 * BOND + PRICE
    assert world.c.stake_of(world.executor.address) == STAKE
    world.assert_books()


def test_challenge_rules(world: OptWorld) -> None:
    job_id, _, _ = world.posted_job()
    with pytest.raises(ContractRevert, match="WrongBond"):
        world.opt.challenge(world.challengers[0], job_id, bond=BOND - 1)
    with pytest.raises(ContractRevert, match="SelfChallenge"):
        world.opt.challenge(world.executor, job_id)
    unposted = world.open_job()
    with pytest.raises(ContractRevert, match="WrongStatus"):
        world.opt.challenge(world.challengers[0], unposted)


# ---- timeouts ----


def test_silent_executor_loses(world: OptWorld) -> None:
    job_id, _, _ = fraud(world, 40)
    world.opt.challenge(world.challengers[0], job_id)
    with pytest.raises(ContractRevert, match="TurnStillOpen"):
        world.opt.timeout(world.keeper, job_id)
    world.mine_past(world.opt.dispute(job_id).deadline)
    claimed = world.model.mlp.trace(world.digit())
    with pytest.raises(ContractRevert, match="TurnTimedOut"):
        world.opt.bisect(world.executor, job_id, claimed.hash_at(64), claimed.proof(64))
    world.opt.timeout(world.keeper, job_id)
    ev = settled(world, job_id)
    assert (ev["executorWon"], ev["reason"]) == (False, "executor timed out")
    assert world.status(job_id) == OptStatus.OVERTURNED
    assert world.opt.credits(world.challengers[0].address) == BOND + SLASHED
    world.assert_books()


def test_silent_challenger_loses(world: OptWorld) -> None:
    job_id, claimed, _ = fraud(world, 40)
    challenger = world.challengers[0]
    world.opt.challenge(challenger, job_id)
    world.opt.bisect(world.executor, job_id, claimed.hash_at(64), claimed.proof(64))
    world.mine_past(world.opt.dispute(job_id).deadline)
    with pytest.raises(ContractRevert, match="TurnTimedOut"):
        world.opt.respond(challenger, job_id, False)
    world.opt.timeout(world.executor, job_id)
    ev = settled(world, job_id)
    assert (ev["executorWon"], ev["reason"]) == (True, "challenger timed out")
    assert world.status(job_id) == OptStatus.POSTED  # the lie stands unless someone else challenges in time
    assert world.opt.credits(world.executor.address) == BOND
    world.assert_books()


def test_unproven_step_goes_to_the_executor(world: OptWorld) -> None:
    job_id, claimed, truth = fraud(world, 3, model_id=SMALL_ID)
    world.opt.challenge(world.challengers[2], job_id)
    world.play(job_id, claimed, truth, world.challengers[2])
    world.mine_past(world.opt.dispute(job_id).deadline)
    with pytest.raises(ContractRevert, match="TurnTimedOut"):
        world.prove(job_id, truth, world.challengers[2])
    world.opt.timeout(world.keeper, job_id)
    assert settled(world, job_id)["reason"] == "challenger timed out"
    world.assert_books()


# ---- wrong moves ----


def test_moves_out_of_turn_or_by_others_revert(world: OptWorld) -> None:
    job_id, claimed, truth = fraud(world, 3, model_id=SMALL_ID)
    challenger = world.challengers[0]
    with pytest.raises(ContractRevert, match="NotYourTurn"):
        world.opt.bisect(world.executor, job_id, claimed.hash_at(4), claimed.proof(4))
    world.opt.challenge(challenger, job_id)
    with pytest.raises(ContractRevert, match="NotYourTurn"):
        world.opt.respond(challenger, job_id, True)
    with pytest.raises(ContractRevert, match="NotYourTurn|NotExecutor"):
        world.opt.bisect(challenger, job_id, claimed.hash_at(4), claimed.proof(4))
    with pytest.raises(ContractRevert, match="BadTraceProof"):
        world.opt.bisect(world.executor, job_id, claimed.hash_at(3), claimed.proof(3))  # another index
    with pytest.raises(ContractRevert, match="NotAtOneStep"):
        world.prove(job_id, truth, challenger)
    world.opt.bisect(world.executor, job_id, claimed.hash_at(4), claimed.proof(4))
    with pytest.raises(ContractRevert, match="NotYourTurn"):
        world.opt.respond(world.keeper, job_id, False)
    world.play(job_id, claimed, truth, challenger)
    d = world.opt.dispute(job_id)
    wrong = truth.state_at(d.lo + 1)  # not the agreed state lo
    mlp = SMALL
    with pytest.raises(ContractRevert, match="StateMismatch"):
        world.opt.prove_step(
            challenger,
            job_id,
            wrong.encode(),
            mlp.book[(wrong.layer, wrong.row)],
            mlp.weights_proof(wrong.layer, wrong.row),
        )
    s = truth.state_at(d.lo)
    row = mlp.book[(s.layer, s.row)]
    with pytest.raises(ContractRevert, match="BadWeightsProof"):
        other = next(r for r in mlp.rows if r != row)
        world.opt.prove_step(challenger, job_id, s.encode(), row, mlp.weights_proof(other.layer, other.row))
    world.prove(job_id, truth, challenger)
    # settled: nothing can be replayed, and the job cannot be challenged again
    for attempt in (
        lambda: world.opt.challenge(world.challengers[1], job_id),
        lambda: world.prove(job_id, truth, challenger),
        lambda: world.opt.timeout(world.keeper, job_id),
        lambda: world.opt.respond(challenger, job_id, True),
    ):
        with pytest.raises(ContractRevert):
            attempt()
    world.assert_books()


def test_direct_payments_are_refused(world: OptWorld) -> None:
    with pytest.raises(ContractRevert):
        transfer(world.chain.w3, world.user, world.opt.address, 1)


# ---- money ----


def test_everyone_withdraws_exactly_what_they_are_owed(world: OptWorld) -> None:
    honest_job, _, _ = world.posted_job(model_id=SMALL_ID)
    lie_job, claimed, truth = fraud(world, 2, model_id=SMALL_ID)
    world.opt.challenge(world.challengers[0], lie_job)
    world.play(lie_job, claimed, truth, world.challengers[0])
    world.prove(lie_job, truth, world.challengers[0])
    world.mine_past(world.opt.job(honest_job).deadline)
    world.opt.finalize(world.executor, honest_job)
    owed = {a.address: world.opt.credits(a.address) for a in (world.user, world.executor, world.challengers[0])}
    assert owed == {
        world.user.address: PRICE,
        world.executor.address: PRICE,
        world.challengers[0].address: BOND + SLASHED,
    }
    for account in (world.user, world.executor, world.challengers[0]):
        before = world.c.balance(account.address)
        r = world.opt.withdraw(account)
        assert (
            world.c.balance(account.address) == before + owed[account.address] - r["gasUsed"] * r["effectiveGasPrice"]
        )
        world.assert_books()
    assert world.opt.totals() == {"escrow": 0, "bonds": 0, "credits": 0, "burned": 0, "balance": 0}
    with pytest.raises(ContractRevert, match="NothingToWithdraw"):
        world.opt.withdraw(world.user)
