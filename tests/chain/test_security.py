"""Attacks on the market: reentrancy, commitment replay and copying, draw bias, griefing, forced coin."""

from __future__ import annotations

from collections import Counter

import pytest
from eth_hash.auto import keccak

from veriml.chain.deploy import deploy_contract
from veriml.chain.tx import send, send_raw
from veriml.errors import ContractRevert
from veriml.schemes.quorum import JobStatus
from veriml.verify.commitment import commitment, new_salt

from .conftest import CONFIG, INPUT, MODEL, PRICE, STAKE, World, digest_of, draw_mirror, gas_cost, seed_of

RIGHT, WRONG = digest_of("right"), digest_of("wrong")
HALF = STAKE * CONFIG.slash_bps // 10_000


def assert_reverts(fn, reason: str) -> None:
    with pytest.raises(ContractRevert) as exc:
        fn()
    assert exc.value.error == reason, exc.value.reason


# ---- reentrancy ----


@pytest.mark.parametrize("route", ["too-few-nodes", "all-silent"])
def test_reentrant_user_is_paid_exactly_once(world: World, route: str) -> None:
    attacker = world.bind("ReentrantUser", deploy_contract(world.chain, world.user, "ReentrantUser", world.market))
    n = 5 if route == "too-few-nodes" else 3
    fee = PRICE * n + 1
    send(world.w3, attacker.functions.submit(MODEL, INPUT, n), world.user, value=fee)
    job_id = world.c.quorum.contract.functions.nextJobId().call() - 1
    assert world.c.quorum.job(job_id).user == attacker.address
    if route == "too-few-nodes":
        world.leave(world.nodes[0])
        world.c.quorum.assign(world.keeper, job_id)
        assert world.c.quorum.job(job_id).status == JobStatus.REFUNDED
        owed = fee
    else:
        world.c.quorum.assign(world.keeper, job_id)
        world.mine_past_reveal(job_id)
        world.c.quorum.finalize(world.keeper, job_id)
        assert world.c.quorum.job(job_id).status == JobStatus.DISPUTED
        owed = fee + fee  # no-show compensation is capped at the fee
    assert world.c.quorum.credits(attacker.address) == owed
    market_before, credits_before = world.balance(world.market), world.c.quorum.total_credits()

    send(world.w3, attacker.functions.withdraw(), world.user)

    assert attacker.functions.reentryAttempts().call() == 1  # receive() did try to withdraw again
    assert attacker.functions.reentrySucceeded().call() is False
    assert world.balance(attacker.address) == owed
    assert world.balance(world.market) == market_before - owed
    assert world.c.quorum.credits(attacker.address) == 0
    assert world.c.quorum.total_credits() == credits_before - owed
    world.assert_accounting()
    assert_reverts(lambda: send(world.w3, attacker.functions.withdraw(), world.user), "NothingToWithdraw")


# ---- commitments: replay, copying, binding ----


def test_commitment_for_job_a_cannot_be_revealed_on_job_b(world: World) -> None:
    job_a, job_b = world.open_job(5), world.open_job(5)  # five nodes: everyone is drawn for both
    node = world.nodes[0]
    salt = new_salt()
    replayed = world.commit(job_a, node, RIGHT, salt)  # valid on A
    world.c.quorum.commit(node, job_b, replayed)  # the same bytes posted on B
    world.mine_past_commit(job_b)  # both commit windows closed: reveals are open on A and B
    assert_reverts(lambda: world.c.quorum.reveal(node, job_b, RIGHT, salt), "RevealMismatch")
    world.c.quorum.reveal(node, job_a, RIGHT, salt)  # where it belongs it opens fine
    assert world.c.quorum.slot(job_a, node.address).revealed and not world.c.quorum.slot(job_b, node.address).revealed


def test_copying_a_victims_reveal_fails(world: World) -> None:
    """The copier posts the victim's commitment as its own, then replays the victim's (digest, salt)."""
    job_id = world.open_job(3)
    victim, copier, third = world.drawn(job_id)
    victim_commitment = world.commit(job_id, victim, RIGHT)
    world.c.quorum.commit(copier, job_id, victim_commitment)
    world.commit(job_id, third, RIGHT)
    world.reveal(job_id, victim)
    digest, salt = world.salts[(job_id, victim.address)]
    assert_reverts(lambda: world.c.quorum.reveal(copier, job_id, digest, salt), "RevealMismatch")
    world.reveal(job_id, third)
    result, each, _ = world.finalize_checked(job_id, [RIGHT, None, RIGHT])
    assert result.slashed == (1,)  # the copier is a no-show, and slashed as one
    assert each == PRICE + HALF // 2


def test_no_commit_after_a_reveal_can_be_seen(world: World) -> None:
    """Reveals open only when every commit is in or the commit window has closed, so a late node never
    gets to commit with a revealed digest in hand."""
    job_id = world.open_job(3)
    a, b, late = world.drawn(job_id)
    world.commit(job_id, a, RIGHT)
    world.commit(job_id, b, RIGHT)
    assert_reverts(lambda: world.reveal(job_id, a), "CommitPhaseOpen")
    assert world.c.quorum.job(job_id).reveals == 0
    world.mine_past_commit(job_id)
    world.reveal(job_id, a)
    assert_reverts(lambda: world.commit(job_id, late, RIGHT), "CommitWindowClosed")


@pytest.mark.parametrize("bound_to", ["chain-id", "market", "job", "node"])
def test_commitment_is_bound_to_chain_market_job_and_node(world: World, bound_to: str) -> None:
    job_id = world.open_job(3)
    node, other, third = world.drawn(job_id)
    salt = new_salt()
    fields = {"chain_id": world.chain.chain_id, "market": world.market, "job_id": job_id, "node": node.address}
    wrong = {
        "chain-id": ("chain_id", world.chain.chain_id + 1),
        "market": ("market", world.registry),
        "job": ("job_id", job_id + 1),
        "node": ("node", other.address),
    }[bound_to]
    fields[wrong[0]] = wrong[1]
    world.c.quorum.commit(node, job_id, commitment(digest=RIGHT, salt=salt, **fields))
    world.commit(job_id, other, RIGHT)
    world.commit(job_id, third, RIGHT)
    assert_reverts(lambda: world.c.quorum.reveal(node, job_id, RIGHT, salt), "RevealMismatch")


# ---- assignment ----


def test_draw_matches_its_mirror(world: World) -> None:
    for extra, node in zip([0, 3 * 10**18, 7, 10**19], world.nodes, strict=False):
        if extra:
            world.c.top_up(node, extra)
    for n in (1, 3, 5):
        job_id = world.submit(n)
        frozen = list(zip(*world.c.quorum.frozen_candidates(job_id), strict=True))
        assert frozen == world.c.candidates(MODEL)
        world.c.quorum.assign(world.keeper, job_id)
        seed = seed_of(world.w3, world.c.quorum.job(job_id).submit_block, job_id)
        assert world.c.quorum.assigned_nodes(job_id) == draw_mirror(frozen, n, seed)


def test_draw_is_distinct_and_weighted_by_stake(world: World) -> None:
    """Six nodes on a fresh model, three staking 8 ETH and three 1 ETH. Over 16 single draws and 6 draws
    of three, heavy nodes are expected in ~29.3 of 34 slots; fewer than 20 has odds of 3e-6 (the bound is
    loose because the seeds come from real block hashes)."""
    model = keccak(b"veriml/test/weighted")
    world.c.register_model(world.owner, model, keccak(b"w"), "exact", 0, 1)
    heavy, light = world.free[:3], world.free[3:6]
    for node in heavy:
        world.c.register_node(node, 8 * 10**18, "http://h", b"", [model])
    for node in light:
        world.c.register_node(node, 10**18, "http://l", b"", [model])
    jobs = [(world.submit(1, model=model), 1) for _ in range(16)]
    jobs += [(world.submit(3, model=model), 3) for _ in range(6)]
    counts: Counter[str] = Counter()
    for job_id, n in jobs:
        world.c.quorum.assign(world.keeper, job_id)
        drawn = world.c.quorum.assigned_nodes(job_id)
        assert len(drawn) == n == len(set(drawn))
        counts.update(drawn)
    heavy_draws = sum(counts[a.address] for a in heavy)
    light_draws = sum(counts[a.address] for a in light)
    assert heavy_draws + light_draws == 16 + 6 * 3
    assert heavy_draws >= 20 > light_draws, counts
    for node in heavy + light:
        assert world.c.node(node.address).open_jobs == counts[node.address]


def test_draw_cannot_be_steered_after_the_seed_is_public(world: World) -> None:
    """Two colluding nodes of five look for a top-up that would put both into a quorum of three.

    BlockhashRandomness.seed(jobId, submitBlock) is public once the submission block is mined. Were the
    draw made over the registry's live stakes, a top-up of a few wei found off-chain would steer it (the
    search below finds one for ~30% of amounts) and hand the colluders the majority. The market draws
    from the candidates and stakes frozen at submission, so the top-up changes nothing.
    """
    colluders = {world.nodes[0].address, world.nodes[1].address}
    job_id = world.submit(3)
    seed = seed_of(world.w3, world.c.quorum.job(job_id).submit_block, job_id)
    frozen = list(zip(*world.c.quorum.frozen_candidates(job_id), strict=True))
    honest_draw = draw_mirror(frozen, 3, seed)
    for extra in range(1, 10_000):
        ground = [(a, w + extra if a == world.nodes[0].address else w) for a, w in frozen]
        steered = draw_mirror(ground, 3, seed)
        if colluders <= set(steered) and set(steered) != set(honest_draw):
            break
    else:  # pragma: no cover - ~30% of amounts would steer a live draw
        pytest.fail("no steering amount found")
    world.c.top_up(world.nodes[0], extra)
    assert world.c.candidates(MODEL) != frozen  # the live list did change
    world.c.quorum.assign(world.nodes[0], job_id)
    assert world.c.quorum.assigned_nodes(job_id) == honest_draw


def test_unbonding_after_submission_does_not_escape_the_draw(world: World) -> None:
    """Requesting to unbond after a job froze its candidates does not take a node out of that job's draw
    (it is still registered), and once drawn it is locked until the job settles."""
    job_id = world.submit(5)  # all five nodes must be drawn
    for node in world.nodes[:2]:
        world.c.request_unbond(node)
    world.c.quorum.assign(world.keeper, job_id)
    assert sorted(world.c.quorum.assigned_nodes(job_id)) == sorted(n.address for n in world.nodes)
    reveals = world.play(job_id, [RIGHT] * 5)
    world.chain.mine(CONFIG.unbond_delay_blocks)  # the delay is over, but the node is locked
    assert_reverts(lambda: world.c.withdraw_stake(world.nodes[0]), "OpenJobs")
    world.finalize_checked(job_id, reveals)
    world.c.withdraw_stake(world.nodes[0])  # free to go once the job is settled
    assert not world.c.node(world.nodes[0].address).registered


# ---- griefing and locking ----


def test_no_show_is_slashed_and_user_refunded_without_majority(world: World) -> None:
    fee = PRICE * 3
    job_id = world.open_job(3, fee=fee)
    drawn = world.drawn(job_id)
    reveals = world.play(job_id, [RIGHT, WRONG, None])
    result, _, refund = world.finalize_checked(job_id, reveals)
    assert not result.majority and result.slashed == (2,)
    assert refund == fee + fee  # compensation for the no-show, capped at the fee (the rest is burned)
    assert [world.c.stake_of(a.address) for a in drawn] == [STAKE, STAKE, STAKE - HALF]
    world.withdraw_checked(world.user, fee + fee)


def test_assigned_node_is_locked_until_finalize_then_can_leave(world: World) -> None:
    job_id = world.open_job(3)
    drawn = world.drawn(job_id)
    for node in drawn:
        assert_reverts(lambda n=node: world.c.request_unbond(n), "OpenJobs")
    reveals = world.play(job_id, [RIGHT] * 3)
    world.finalize_checked(job_id, reveals)
    leaver = drawn[0]
    assert world.c.node(leaver.address).open_jobs == 0
    world.withdraw_checked(leaver, PRICE)
    r1 = world.c.request_unbond(leaver)
    world.chain.mine(world.c.node(leaver.address).unbond_block - world.chain.block_number())
    before, staked = world.balance(leaver.address), world.c.total_staked()
    r2 = world.c.withdraw_stake(leaver)
    assert world.balance(leaver.address) == before + STAKE - gas_cost(r2)
    assert world.c.total_staked() == staked - STAKE
    assert world.c.node(leaver.address).registered is False
    assert r2["blockNumber"] - r1["blockNumber"] >= CONFIG.unbond_delay_blocks
    world.assert_accounting()


def test_forced_coin_does_not_disturb_the_books(world: World) -> None:
    """selfdestruct can push coin past receive(); the books use totals, not the balance, so every claim is
    still paid in full and the surplus just stays (the balance invariant is >=, not ==, in general)."""
    job_id = world.open_job(3)
    world.play(job_id, [RIGHT] * 3)
    init_code = b"\x73" + bytes.fromhex(world.market[2:]) + b"\xff"  # PUSH20 market; SELFDESTRUCT
    tx = {
        "from": world.user.address, "value": 777, "data": init_code, "gas": 100_000,
        "nonce": world.w3.eth.get_transaction_count(world.user.address), "chainId": world.chain.chain_id,
        "maxFeePerGas": 10**10, "maxPriorityFeePerGas": 1,
    }  # fmt: skip
    send_raw(world.w3, tx, world.user)
    assert world.balance(world.market) == world.c.quorum.total_escrow() + world.c.quorum.total_credits() + 777
    world.c.quorum.finalize(world.keeper, job_id)
    for node in world.drawn(job_id):
        before = world.balance(node.address)
        receipt = world.c.quorum.withdraw(node)
        assert world.balance(node.address) == before + PRICE - gas_cost(receipt)
    assert world.c.quorum.total_escrow() == world.c.quorum.total_credits() == 0
    assert world.balance(world.market) == 777
