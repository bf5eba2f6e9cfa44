"""QuorumJobs: every revert path of submit, assign, commit, reveal, finalize and withdraw, with its reason."""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak
from eth_tester.exceptions import TransactionFailed
from web3 import Web3
from web3.logs import DISCARD

from veriml.chain.deploy import deploy_contract
from veriml.chain.tx import call, revert_reason, send, send_raw
from veriml.errors import ContractRevert
from veriml.schemes.quorum import JobStatus
from veriml.verify.commitment import commitment, new_salt

from .conftest import CONFIG, INPUT, LONELY_MODEL, MODEL, PRICE, World, digest_of

D = digest_of("right")


def assert_reverts(fn, reason: str) -> None:
    with pytest.raises(ContractRevert) as exc:
        fn()
    assert exc.value.error == reason, exc.value.reason


def submit_raw(w: World, *, model=MODEL, input_hash=INPUT, params=b"", n=3, fee=None):
    fn = w.c.quorum.contract.functions.submit(model, input_hash, params, n)
    return send(w.w3, fn, w.user, value=PRICE * 3 if fee is None else fee)


# ---- submit ----


def test_submit_escrows_the_fee(world: World) -> None:
    escrow, market = world.c.quorum.total_escrow(), world.balance(world.market)
    params = b"\x07" * 1024  # exactly the maximum
    job_id, receipt = world.c.quorum.submit(world.user, MODEL, INPUT, params, 3, PRICE * 3 + 11)
    job = world.c.quorum.job(job_id)
    assert (job.user, job.model_id, job.input_hash, job.n, job.fee, job.params) == (
        world.user.address,
        MODEL,
        INPUT,
        3,
        PRICE * 3 + 11,
        params,
    )
    assert (job.status, job.scheme, job.policy, job.submit_block) == (
        JobStatus.SUBMITTED,
        "quorum",
        "exact",
        receipt["blockNumber"],
    )
    assert world.c.quorum.total_escrow() == escrow + PRICE * 3 + 11
    assert world.balance(world.market) == market + PRICE * 3 + 11
    world.assert_accounting()


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"n": 0, "fee": 0}, "QuorumSize"),
        ({"n": 2}, "QuorumSize"),
        ({"n": 4, "fee": PRICE * 4}, "QuorumSize"),
        ({"n": 11, "fee": PRICE * 11}, "QuorumSize"),
        ({"n": 255, "fee": PRICE * 255}, "QuorumSize"),
        ({"input_hash": bytes(32)}, "EmptyInputHash"),
        ({"params": b"\x00" * 1025}, "ParamsTooLong"),
        ({"model": keccak(b"nope")}, "UnknownModel"),
        ({"fee": PRICE * 3 - 1}, "FeeBelowPrice"),
        ({"fee": 0}, "FeeBelowPrice"),
        ({"model": LONELY_MODEL}, "TooFewNodes"),
        ({"n": 7, "fee": PRICE * 7}, "TooFewNodes"),  # five nodes serve MODEL
        ({"n": 9, "fee": PRICE * 9}, "TooFewNodes"),  # 9 passes the quorum rule
    ],
    ids=[
        "n-0",
        "n-2",
        "n-4",
        "n-11",
        "n-255",
        "empty-input",
        "params-1025",
        "unknown-model",
        "fee-1-short",
        "fee-0",
        "no-nodes",
        "n-7",
        "n-9",
    ],
)
def test_submit_reverts(world: World, kwargs: dict, reason: str) -> None:
    escrow, next_id = world.c.quorum.total_escrow(), world.c.quorum.contract.functions.nextJobId().call()
    assert_reverts(lambda: submit_raw(world, **kwargs), reason)
    assert world.c.quorum.total_escrow() == escrow
    assert world.c.quorum.contract.functions.nextJobId().call() == next_id


def test_unknown_job_view_reverts(world: World) -> None:
    assert_reverts(lambda: world.c.quorum.job(0), "UnknownJob")
    assert_reverts(lambda: world.c.quorum.job(10**9), "UnknownJob")
    assert world.c.quorum.assigned_nodes(10**9) == []


# ---- assign ----


def test_assign_in_the_submission_block_reverts(world: World) -> None:
    job_id = world.submit(3)
    cands, weights = world.c.quorum.frozen_candidates(job_id)  # the next job freezes the same list
    # A call evaluated in the submission block itself...
    with pytest.raises(ContractRevert) as exc:
        call(world.c.quorum.contract.functions.assign(job_id, cands, weights))
    assert exc.value.error == "AssignmentTooEarly"
    # ...and a real transaction mined in the same block as the submit.
    w3 = world.w3
    tester = world.chain._tester
    tester.disable_auto_mine_transactions()
    try:
        txs = []
        for fn, acct, value in [
            (world.c.quorum.contract.functions.submit(MODEL, INPUT, b"", 3), world.user, 3 * PRICE),
            (world.c.quorum.contract.functions.assign(job_id + 1, cands, weights), world.keeper, 0),
        ]:
            tx = fn.build_transaction(
                {
                    "from": acct.address,
                    "value": value,
                    "gas": 3_000_000,
                    "nonce": w3.eth.get_transaction_count(acct.address, "pending"),
                }
            )
            txs.append(w3.eth.send_raw_transaction(acct.sign_transaction(tx).raw_transaction))
        world.chain.mine(1)
    finally:
        tester.enable_auto_mine_transactions()
    submitted, assigned = (w3.eth.get_transaction_receipt(h) for h in txs)
    assert submitted["blockNumber"] == assigned["blockNumber"]
    assert (submitted["status"], assigned["status"]) == (1, 0)
    assert world.c.quorum.job(job_id + 1).status == JobStatus.SUBMITTED
    # a block later it goes through
    world.c.quorum.assign(world.keeper, job_id + 1)
    assert world.c.quorum.job(job_id + 1).status == JobStatus.ASSIGNED


def test_assign_twice_reverts(world: World) -> None:
    job_id = world.open_job(3)
    assert_reverts(lambda: world.c.quorum.assign(world.keeper, job_id), "WrongStatus")


def test_assign_unknown_job_reverts(world: World) -> None:
    fn = world.c.quorum.contract.functions.assign(10**6, [], [])
    assert_reverts(lambda: send(world.w3, fn, world.keeper), "WrongStatus")


def test_submit_freezes_the_candidates(world: World) -> None:
    job_id, receipt = world.c.quorum.submit(world.user, MODEL, INPUT, b"", 3, 3 * PRICE)
    (event,) = world.c.quorum.contract.events.CandidatesFrozen().process_receipt(receipt, errors=DISCARD)
    assert event["args"]["jobId"] == job_id
    frozen = list(zip(event["args"]["candidates"], event["args"]["weights"], strict=True))
    assert frozen == world.c.candidates(MODEL)
    assert world.c.quorum.frozen_candidates(job_id) == ([a for a, _ in frozen], [w for _, w in frozen])


@pytest.mark.parametrize("tamper", ["weight", "drop", "add", "order", "empty"])
def test_assign_with_other_candidates_reverts(world: World, tamper: str) -> None:
    job_id = world.submit(3)
    world.chain.mine(1)
    cands, weights = world.c.quorum.frozen_candidates(job_id)
    cands, weights = {
        "weight": (cands, [weights[0] + 1, *weights[1:]]),
        "drop": (cands[1:], weights[1:]),
        "add": ([*cands, world.free[0].address], [*weights, 10**18]),
        "order": (cands[::-1], weights[::-1]),
        "empty": ([], []),
    }[tamper]
    fn = world.c.quorum.contract.functions.assign(job_id, cands, weights)
    assert_reverts(lambda: send(world.w3, fn, world.keeper), "CandidatesDiffer")
    assert world.c.quorum.job(job_id).status == JobStatus.SUBMITTED


def test_assign_sets_deadlines_and_locks(world: World) -> None:
    job_id = world.submit(3)
    receipt = world.c.quorum.assign(world.keeper, job_id)
    job = world.c.quorum.job(job_id)
    assert job.commit_deadline == receipt["blockNumber"] + CONFIG.schemes["quorum"]["commit_window_blocks"]
    assert job.reveal_deadline == job.commit_deadline + CONFIG.schemes["quorum"]["reveal_window_blocks"]
    drawn = world.c.quorum.assigned_nodes(job_id)
    assert len(set(drawn)) == 3
    for a in drawn:
        assert world.c.quorum.slot(job_id, a).assigned
        assert world.c.node(a).open_jobs == 1
    (event,) = world.c.quorum.contract.events.JobAssigned().process_receipt(receipt, errors=DISCARD)
    assert list(event["args"]["nodes"]) == drawn


# ---- commit ----


@pytest.fixture
def job3(world: World) -> int:
    """A job with three drawn nodes, nobody committed yet."""
    return world.open_job(3)


def outsider(w: World, job_id: int):
    drawn = set(w.c.quorum.assigned_nodes(job_id))
    return next(n for n in w.nodes if n.address not in drawn)


def test_commit_by_unassigned_node_reverts(world: World, job3: int) -> None:
    for acct in (outsider(world, job3), world.user, world.keeper):
        assert_reverts(lambda a=acct: world.commit(job3, a, D), "NotAssigned")


def test_commit_on_unassigned_job_reverts(world: World) -> None:
    job_id = world.submit(3)
    assert_reverts(lambda: world.commit(job_id, world.nodes[0], D), "WrongStatus")
    assert_reverts(lambda: world.commit(10**6, world.nodes[0], D), "WrongStatus")


def test_double_commit_reverts(world: World, job3: int) -> None:
    node = world.drawn(job3)[0]
    first = world.commit(job3, node, D)
    assert_reverts(lambda: world.commit(job3, node, digest_of("other")), "AlreadyCommitted")
    assert world.c.quorum.slot(job3, node.address).commitment == first
    assert world.c.quorum.job(job3).commits == 1


def test_zero_commitment_reverts(world: World, job3: int) -> None:
    node = world.drawn(job3)[0]
    assert_reverts(lambda: world.c.quorum.commit(node, job3, bytes(32)), "ZeroCommitment")


def test_commit_after_the_window_reverts(world: World, job3: int) -> None:
    node = world.drawn(job3)[0]
    deadline = world.c.quorum.job(job3).commit_deadline
    world.chain.mine(deadline - world.next_block())
    world.commit(job3, node, D)  # lands exactly in the last block of the window
    late = world.drawn(job3)[1]  # the very next block is past the window
    assert_reverts(lambda: world.commit(job3, late, D), "CommitWindowClosed")


# ---- reveal ----


def test_reveal_before_all_commits_while_window_open_reverts(world: World, job3: int) -> None:
    a, b, _ = world.drawn(job3)
    world.commit(job3, a, D)
    world.commit(job3, b, D)
    assert_reverts(lambda: world.reveal(job3, a), "CommitPhaseOpen")
    world.mine_past_commit(job3)
    world.reveal(job3, a)  # the window has closed, so reveals open without the third commit
    assert world.c.quorum.slot(job3, a.address).revealed


def test_reveal_without_commit_reverts(world: World, job3: int) -> None:
    a, b, c = world.drawn(job3)
    world.commit(job3, a, D)
    world.commit(job3, b, D)
    world.mine_past_commit(job3)
    assert_reverts(lambda: world.c.quorum.reveal(c, job3, D, new_salt()), "NoCommit")
    assert_reverts(
        lambda: world.c.quorum.reveal(outsider(world, job3), job3, D, new_salt()),
        "NotAssigned",
    )


def test_reveal_not_matching_commit_reverts(world: World, job3: int) -> None:
    drawn = world.drawn(job3)
    for node in drawn:
        world.commit(job3, node, D)
    node = drawn[0]
    digest, salt = world.salts[(job3, node.address)]
    for bad_digest, bad_salt in [(digest_of("wrong"), salt), (digest, new_salt()), (bytes(32), salt)]:
        assert_reverts(
            lambda d=bad_digest, s=bad_salt: world.c.quorum.reveal(node, job3, d, s),
            "RevealMismatch",
        )
    world.reveal(job3, node)
    assert world.c.quorum.slot(job3, node.address).digest == D


def test_reveal_publishes_the_output_key(world: World, job3: int) -> None:
    """outputKey says where to fetch the output; it is not part of the commitment."""
    drawn = world.drawn(job3)
    for node in drawn:
        world.commit(job3, node, D)
    digest, salt = world.salts[(job3, drawn[0].address)]
    key = keccak(b"output document")
    receipt = world.c.quorum.reveal(drawn[0], job3, digest, salt, key)
    (event,) = world.c.quorum.contract.events.Revealed().process_receipt(receipt, errors=DISCARD)
    assert (event["args"]["node"], event["args"]["digest"], event["args"]["outputKey"]) == (
        drawn[0].address,
        D,
        key,
    )
    world.reveal(job3, drawn[1])  # the default key (zero) is accepted as well
    assert world.c.quorum.job(job3).reveals == 2


def test_double_reveal_reverts(world: World, job3: int) -> None:
    drawn = world.drawn(job3)
    for node in drawn:
        world.commit(job3, node, D)
    world.reveal(job3, drawn[0])
    assert_reverts(lambda: world.reveal(job3, drawn[0]), "AlreadyRevealed")
    assert world.c.quorum.job(job3).reveals == 1


def test_late_reveal_reverts(world: World, job3: int) -> None:
    drawn = world.drawn(job3)
    for node in drawn:
        world.commit(job3, node, D)
    deadline = world.c.quorum.job(job3).reveal_deadline
    world.chain.mine(deadline - world.next_block())
    world.reveal(job3, drawn[0])  # the last block of the window; the next one is past it
    assert_reverts(lambda: world.reveal(job3, drawn[1]), "RevealWindowClosed")


# ---- finalize ----


def test_finalize_too_early_reverts(world: World, job3: int) -> None:
    assert_reverts(lambda: world.c.quorum.finalize(world.keeper, job3), "RevealPhaseOpen")
    drawn = world.drawn(job3)
    for node in drawn:
        world.commit(job3, node, D)
    world.reveal(job3, drawn[0])
    world.reveal(job3, drawn[1])
    assert_reverts(lambda: world.c.quorum.finalize(world.keeper, job3), "RevealPhaseOpen")
    world.chain.mine(world.c.quorum.job(job3).reveal_deadline - world.next_block())
    # still the last reveal block: not yet
    assert_reverts(lambda: world.c.quorum.finalize(world.keeper, job3), "RevealPhaseOpen")
    world.chain.mine(1)
    world.c.quorum.finalize(world.keeper, job3)
    assert world.c.quorum.job(job3).status == JobStatus.VERIFIED


def test_finalize_twice_reverts(world: World, job3: int) -> None:
    drawn = world.drawn(job3)
    for node in drawn:
        world.commit(job3, node, D)
    for node in drawn:
        world.reveal(job3, node)
    world.c.quorum.finalize(world.keeper, job3)  # every reveal is in: no need to wait
    assert_reverts(lambda: world.c.quorum.finalize(world.keeper, job3), "WrongStatus")
    assert_reverts(lambda: world.commit(job3, drawn[0], D), "WrongStatus")
    assert_reverts(lambda: world.reveal(job3, drawn[0]), "WrongStatus")


def test_finalize_unassigned_job_reverts(world: World) -> None:
    job_id = world.submit(3)
    assert_reverts(lambda: world.c.quorum.finalize(world.keeper, job_id), "WrongStatus")


# ---- money in and out ----


def test_withdraw_with_nothing_reverts(world: World) -> None:
    assert_reverts(lambda: world.c.quorum.withdraw(world.user), "NothingToWithdraw")


def test_direct_payment_to_market_is_refused(world: World) -> None:
    w3, market = world.w3, Web3.to_checksum_address(world.market)
    before = world.balance(world.market)
    with pytest.raises(TransactionFailed) as exc:  # a plain call shows the reason
        w3.eth.call({"from": world.user.address, "to": market, "value": 12345})
    assert revert_reason(exc.value).startswith("DirectPaymentRefused")
    tx = {
        "from": world.user.address,
        "to": market,
        "value": 12345,
        "gas": 100_000,
        "nonce": w3.eth.get_transaction_count(world.user.address),
        "chainId": world.chain.chain_id,
        "maxFeePerGas": 10**10,
        "maxPriorityFeePerGas": 1,
    }
    with pytest.raises(ContractRevert):
        send_raw(w3, tx, world.user)
    assert world.balance(world.market) == before
    world.assert_accounting()


# ---- constructors ----


@pytest.mark.parametrize(
    ("windows_bps", "reason"),
    [
        ((0, 5, 100, 0), "ZeroWindow"),
        ((5, 0, 100, 0), "ZeroWindow"),
        ((5, 5, 10_001, 0), "BpsAbove10000"),
        ((5, 5, 100, 10_001), "BpsAbove10000"),
    ],
)
def test_market_constructor_reverts(world: World, windows_bps: tuple, reason: str) -> None:
    d = world.deployment
    with pytest.raises(ContractRevert, match=reason):
        deploy_contract(
            world.chain,
            world.owner,
            "QuorumJobs",
            d.model_registry,
            d.node_registry,
            d.randomness,
            *windows_bps,
        )


def test_deploy_contract_translates_constructor_reverts(world: World) -> None:
    """A constructor revert comes back as ContractRevert with its reason, not eth-tester's exception."""
    with pytest.raises(ContractRevert) as exc:
        deploy_contract(world.chain, world.owner, "NodeRegistry", world.deployment.model_registry, 0, 5)
    assert exc.value.error == "ZeroMinStake"


def test_commitment_mirror_matches_contract(world: World, job3: int) -> None:
    node, salt = world.drawn(job3)[0], new_salt()
    on_chain = world.c.quorum.contract.functions.commitmentOf(job3, node.address, D, salt).call()
    assert on_chain == commitment(world.chain.chain_id, world.market, job3, node.address, D, salt)
