"""The typed wrappers at block edges: a send's pre-flight check must judge the block the transaction lands in.

On the embedded chain every transaction is mined in its own block, head + 1. `veriml.chain.tx.send`
simulates the call first to surface reverts with their reason; the contracts' rules depend on
block.number (assignment from the block after submission, commit/reveal deadlines, the unbond delay), so
the simulation must see block.number == head + 1. (It once ran at the head, one block early: assign
right after submit was refused, and a late commit was signed, mined and failed without its reason.)
"""

from __future__ import annotations

import pytest
from eth_tester.exceptions import TransactionFailed
from web3.exceptions import ContractLogicError

from veriml.errors import ContractRevert
from veriml.schemes.quorum import JobStatus

from .conftest import CONFIG, World, digest_of

D = digest_of("edge")


def test_assign_in_the_block_right_after_submit(world: World) -> None:
    job_id = world.submit(3)
    receipt = world.c.quorum.assign(world.keeper, job_id)
    assert receipt["blockNumber"] == world.c.quorum.job(job_id).submit_block + 1
    assert world.c.quorum.job(job_id).status == JobStatus.ASSIGNED


def test_commit_in_the_last_block_of_the_window(world: World) -> None:
    job_id = world.open_job(3)
    world.chain.mine(world.c.quorum.job(job_id).commit_deadline - world.next_block())
    receipt = world.c.quorum.commit(world.drawn(job_id)[0], job_id, b"\x01" * 32)
    assert receipt["blockNumber"] == world.c.quorum.job(job_id).commit_deadline


def test_late_commit_is_refused_with_its_reason_and_costs_nothing(world: World) -> None:
    """One block after the window: refused before signing, with the contract's reason, and no gas paid."""
    job_id = world.open_job(3)
    node = world.drawn(job_id)[0]
    world.chain.mine(world.c.quorum.job(job_id).commit_deadline - world.chain.block_number())
    before, head = world.balance(node.address), world.chain.block_number()
    with pytest.raises(ContractRevert) as exc:
        world.commit(job_id, node, D)
    assert exc.value.error == "CommitWindowClosed"
    assert world.balance(node.address) == before
    assert world.chain.block_number() == head  # nothing was mined


def test_finalize_in_the_first_block_after_the_reveal_window(world: World) -> None:
    job_id = world.open_job(3)
    world.chain.mine(world.c.quorum.job(job_id).reveal_deadline - world.chain.block_number())
    assert world.next_block() == world.c.quorum.job(job_id).reveal_deadline + 1
    with pytest.raises((ContractLogicError, TransactionFailed)):  # not in the last reveal block itself...
        world.c.quorum.contract.functions.finalize(job_id).call(block_identifier="latest")
    world.c.quorum.finalize(world.keeper, job_id)  # ...but in the one after it
    assert world.c.quorum.job(job_id).status == JobStatus.DISPUTED


def test_withdraw_stake_in_the_unbond_block(world: World) -> None:
    node = world.nodes[0]
    world.c.request_unbond(node)
    world.chain.mine(CONFIG.unbond_delay_blocks - 1)  # the next block is unbond_block
    assert world.next_block() == world.c.node(node.address).unbond_block
    world.c.withdraw_stake(node)
    assert not world.c.node(node.address).registered


def test_a_lost_race_reports_the_winning_rule_not_just_a_failure(world: World) -> None:
    """A transaction that passed its pre-flight but lost a race on-chain (another party assigned the job
    first) is replayed on the state its block left behind, so the caller learns why it failed."""
    from veriml.chain.tx import send_raw

    job_id = world.submit(3)
    world.chain.mine(1)
    cands, weights = world.c.quorum.frozen_candidates(job_id)
    late = world.c.quorum.contract.functions.assign(job_id, cands, weights).build_transaction(
        {
            "from": world.user.address,
            "gas": 2_000_000,
            "nonce": world.w3.eth.get_transaction_count(world.user.address),
            "chainId": world.w3.eth.chain_id,
        }
    )
    world.c.quorum.assign(world.keeper, job_id)  # the keeper wins the race
    with pytest.raises(ContractRevert) as exc:
        send_raw(world.w3, late, world.user)
    assert exc.value.error == "WrongStatus"
    assert exc.value.tx is not None
