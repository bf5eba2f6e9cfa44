"""Whole quorum jobs, settled on-chain and checked to the wei against veriml.verify.quorum."""

from __future__ import annotations

import pytest
from web3.logs import DISCARD

from veriml.schemes.quorum import JobStatus
from veriml.verify.quorum import settlement, tally

from .conftest import CONFIG, MODEL, PHASH_MODEL, PRICE, STAKE, Withhold, World, digest_of, gas_cost

RIGHT, WRONG, OTHER = digest_of("right"), digest_of("wrong"), digest_of("other")
HALF = STAKE * CONFIG.slash_bps // 10_000  # what one slash takes from a node at the base stake
assert HALF == 10**18 + 1  # odd on purpose: split between two winners it leaves 1 wei of dust


@pytest.mark.parametrize("n", [1, 3, 5])
def test_all_honest_is_verified_and_pays_each_winner_fee_over_n(world: World, n: int) -> None:
    fee = PRICE * n + 7  # 7 wei that do not divide evenly go back to the user
    user_before = world.balance(world.user.address)
    job_id, submit_receipt = world.c.quorum.submit(world.user, MODEL, b"\x01" * 32, b"seed=1", n, fee)
    world.c.quorum.assign(world.keeper, job_id)
    drawn = world.drawn(job_id)
    assert len({a.address for a in drawn}) == n
    reveals = world.play(job_id, [RIGHT] * n)
    result, each, refund = world.finalize_checked(job_id, reveals)

    assert result.majority and result.winners == tuple(range(n)) and result.slashed == ()
    assert (each, refund) == (fee // n, fee % n)
    assert world.c.quorum.job(job_id).result_digest == RIGHT
    for node in drawn:
        assert world.c.stake_of(node.address) == STAKE
        assert world.c.node(node.address).open_jobs == 0
        world.withdraw_checked(node, fee // n)
    w_receipt = world.c.quorum.withdraw(world.user) if refund else None
    spent = gas_cost(submit_receipt) + (gas_cost(w_receipt) if w_receipt else 0)
    assert world.balance(world.user.address) == user_before - fee + refund - spent
    assert world.balance(world.market) == world.c.quorum.total_escrow() + world.c.quorum.total_credits() == 0
    world.assert_accounting()


def test_one_dissenter_is_slashed_and_its_stake_shared(world: World) -> None:
    fee = PRICE * 3
    job_id = world.open_job(3, fee=fee)
    drawn = world.drawn(job_id)
    reveals = world.play(job_id, [RIGHT, WRONG, RIGHT])
    result, each, refund = world.finalize_checked(job_id, reveals)

    assert result.majority and result.winners == (0, 2) and result.slashed == (1,)
    assert each == fee // 3 + HALF // 2
    assert refund == fee - 2 * (fee // 3) + HALF % 2 == PRICE + 1  # one slot's fee back plus 1 wei of dust
    assert world.c.stake_of(drawn[1].address) == STAKE - HALF
    world.withdraw_checked(drawn[0], each)
    world.withdraw_checked(drawn[2], each)
    world.withdraw_checked(world.user, refund)
    with pytest.raises(Exception, match="NothingToWithdraw"):
        world.c.quorum.withdraw(drawn[1])


def test_no_show_that_never_commits_is_slashed(world: World) -> None:
    fee = PRICE * 3 + 1
    job_id = world.open_job(3, fee=fee)
    drawn = world.drawn(job_id)
    reveals = world.play(job_id, [None, RIGHT, RIGHT])
    assert world.c.quorum.slot(job_id, drawn[0].address).commitment == bytes(32)
    result, each, refund = world.finalize_checked(job_id, reveals)
    assert (result.winners, result.slashed) == ((1, 2), (0,))
    assert (each, refund) == (fee // 3 + HALF // 2, fee - 2 * (fee // 3) + 1)
    assert world.c.quorum.job(job_id).status == JobStatus.VERIFIED


def test_no_show_that_commits_but_never_reveals_is_slashed(world: World) -> None:
    job_id = world.open_job(3)
    drawn = world.drawn(job_id)
    reveals = world.play(job_id, [RIGHT, RIGHT, Withhold(RIGHT)])
    assert world.c.quorum.job(job_id).commits == 3 and world.c.quorum.job(job_id).reveals == 2
    world.mine_past_reveal(job_id)
    result, each, refund = world.finalize_checked(job_id, reveals)
    assert (result.winners, result.slashed) == ((0, 1), (2,))
    assert world.c.stake_of(drawn[2].address) == STAKE - HALF
    assert (each, refund) == (PRICE + HALF // 2, PRICE + 1)


def test_all_different_is_disputed_and_fully_refunded(world: World) -> None:
    fee = PRICE * 3 + 2
    job_id = world.open_job(3, fee=fee)
    reveals = world.play(job_id, [RIGHT, WRONG, OTHER])
    result, each, refund = world.finalize_checked(job_id, reveals)
    assert not result.majority and result.slashed == ()
    assert (each, refund) == (0, fee)
    for node in world.drawn(job_id):
        assert world.c.stake_of(node.address) == STAKE  # nobody can be shown wrong
        assert world.c.quorum.credits(node.address) == 0
    assert world.c.quorum.job(job_id).status == JobStatus.DISPUTED
    world.withdraw_checked(world.user, fee)


def test_everyone_silent_is_disputed_all_slashed_user_gets_fee_and_stakes(world: World) -> None:
    fee = PRICE * 3
    job_id = world.open_job(3, fee=fee)
    world.mine_past_reveal(job_id)
    result, each, refund = world.finalize_checked(job_id, [None, None, None])
    assert not result.majority and result.slashed == (0, 1, 2)
    # The user is compensated for the no-shows, but at most its fee: the rest of the slash is burned, so
    # nobody profits from making nodes miss a window (issue 10).
    assert refund == fee + fee
    for node in world.drawn(job_id):
        assert world.c.stake_of(node.address) == STAKE - HALF
    assert world.c.quorum.totals()["burned"] == 3 * HALF - fee
    world.withdraw_checked(world.user, fee + fee)


def test_split_without_majority_slashes_only_the_silent(world: World) -> None:
    job_id = world.open_job(5)
    reveals = world.play(job_id, [RIGHT, RIGHT, WRONG, WRONG, None])
    result, _, refund = world.finalize_checked(job_id, reveals)
    assert not result.majority and result.slashed == (4,)
    assert refund == PRICE * 5 + PRICE * 5  # compensation capped at the fee


def test_five_with_two_dissenters_and_a_withholder(world: World) -> None:
    job_id = world.open_job(5)
    reveals = world.play(job_id, [WRONG, RIGHT, OTHER, RIGHT, RIGHT])
    result, each, refund = world.finalize_checked(job_id, reveals)
    assert (result.winners, result.slashed) == ((1, 3, 4), (0, 2))
    assert each == PRICE + 2 * HALF // 3
    assert refund == 2 * PRICE + 2 * HALF - 3 * (2 * HALF // 3)


def _flip(digest: bytes, mask: int) -> bytes:
    return (int.from_bytes(digest, "big") ^ mask).to_bytes(32, "big")


@pytest.mark.parametrize(
    ("plan_masks", "center", "slashed"),
    [
        # 4 low bits off (and high bits, which phash ignores) matches; 5 bits off does not.
        ((0, 0b1111 | 0xFF << 200, 0b11111 << 8), 0, (2,)),
        # matching is not transitive: the middle digest is within 4 bits of both ends, which are 8 apart
        ((0b1111, 0, 0b1111 << 4), 1, ()),
    ],
    ids=["near-and-far", "non-transitive"],
)
def test_phash_policy_clusters_by_hamming_distance(
    world: World, plan_masks: tuple[int, ...], center: int, slashed: tuple[int, ...]
) -> None:
    """phash (threshold 4): the low 64 bits are compared by popcount of their XOR, the rest ignored."""
    for node in world.free[:3]:
        world.c.register_node(node, STAKE, "http://p", b"", [PHASH_MODEL])
    job_id = world.open_job(3, model=PHASH_MODEL)
    assert (world.c.quorum.job(job_id).policy, world.c.quorum.job(job_id).threshold) == ("phash", 4)
    plan = [_flip(RIGHT, m) for m in plan_masks]
    reveals = world.play(job_id, plan)
    result, _, _ = world.finalize_checked(job_id, reveals)
    assert result == tally(reveals, "phash", 4)
    assert result.majority and result.digest == plan[center]
    assert result.slashed == slashed


def test_too_few_nodes_at_assignment_is_refunded(world: World) -> None:
    fee = PRICE * 5 + 3
    job_id = world.submit(5, fee=fee)
    world.leave(world.nodes[2])  # between submit and assign: four of the five frozen candidates remain
    receipt = world.c.quorum.assign(world.keeper, job_id)
    assert world.c.quorum.job(job_id).status == JobStatus.REFUNDED
    assert world.c.quorum.assigned_nodes(job_id) == []
    (event,) = world.c.quorum.contract.events.JobRefunded().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["amount"], event["args"]["reason"]) == (fee, "too few nodes")
    assert world.c.quorum.total_escrow() == 0
    world.assert_accounting()
    world.withdraw_checked(world.user, fee)
    with pytest.raises(Exception, match="WrongStatus"):
        world.c.quorum.assign(world.keeper, job_id)


def test_randomness_expired_is_refunded(world: World) -> None:
    fee = PRICE * 3
    job_id = world.submit(3, fee=fee)
    world.chain.mine(257)
    receipt = world.c.quorum.assign(world.keeper, job_id)
    assert world.c.quorum.job(job_id).status == JobStatus.REFUNDED
    (event,) = world.c.quorum.contract.events.JobRefunded().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["reason"] == "assignment expired"
    for node in world.nodes:
        assert world.c.node(node.address).open_jobs == 0
    world.assert_accounting()
    world.withdraw_checked(world.user, fee)


def test_assignment_still_possible_256_blocks_after_submit(world: World) -> None:
    job_id = world.submit(3)
    submit_block = world.c.quorum.job(job_id).submit_block
    world.chain.mine(submit_block + 256 - world.next_block())
    receipt = world.c.quorum.assign(world.keeper, job_id)
    assert receipt["blockNumber"] == submit_block + 256
    assert world.c.quorum.job(job_id).status == JobStatus.ASSIGNED


def test_settlement_mirror_agrees_on_every_flow_shape() -> None:
    """Pure check of the mirror itself: credits always sum to fee + slashed stake."""
    for fee, n, winners, slashed in [
        (10, 3, 2, 7),
        (PRICE * 5 + 4, 5, 3, 3 * HALF),
        (9, 3, 0, 5),
        (0, 1, 1, 0),
    ]:
        each, refund = settlement(fee, n, winners, slashed)
        assert each * winners + refund == fee + slashed
        assert refund >= 0
