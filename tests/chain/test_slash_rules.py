"""Who may profit from a slash (docs/architecture.md), on the real contracts at the default burn share:
winners and challengers who exposed a fault are paid the slash less its burned share; a node that arranges
its own exposure through a second account loses money; a user's no-show compensation is capped at its fee;
an "input unavailable" vote is never slashed; a free model cannot be registered."""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak

from veriml.chain import reverts
from veriml.chain.backends import embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, deploy
from veriml.chain.optimistic import OptimisticJobs
from veriml.verify.commitment import commitment, new_salt
from veriml.verify.quorum import INPUT_UNAVAILABLE, distributable

PRICE = 10**15
STAKE = 2 * 10**18
MODEL = keccak(b"veriml/test/slash-model")
INPUT = keccak(b"veriml/test/slash-input")
CONFIG = DeployConfig(unbond_delay_blocks=5).with_scheme("quorum", commit_window_blocks=4, reveal_window_blocks=4)


@pytest.fixture(scope="module")
def base():
    chain = embedded_chain()
    c = Contracts(chain, deploy(chain, chain.accounts[0], CONFIG))
    c.register_model(chain.accounts[0], MODEL, keccak(b"w"), "exact", 0, PRICE)
    for a in chain.accounts[3:6]:
        c.register_node(a, STAKE, "http://127.0.0.1:1", b"", [MODEL])
    yield chain, c
    chain.close()


@pytest.fixture
def net(base):
    chain, _ = base
    snap = chain.snapshot()
    yield base
    chain.revert(snap)


def _account(chain, address):
    return next(a for a in chain.accounts if a.address == address)


def _quorum_job(chain, c, votes):
    """A quorum-3 job where the drawn nodes reveal `votes` in draw order (None: never commits)."""
    q, user, keeper = c.quorum, chain.accounts[1], chain.accounts[2]
    job_id, _ = q.submit(user, MODEL, INPUT, b"", 3, 3 * PRICE)
    q.assign(keeper, job_id)
    drawn = [_account(chain, a) for a in q.assigned_nodes(job_id)]
    salts = {}
    for node, digest in zip(drawn, votes, strict=True):
        if digest is not None:
            salts[node.address] = new_salt()
            q.commit(
                node, job_id, commitment(chain.chain_id, q.address, job_id, node.address, digest, salts[node.address])
            )
    if None in votes:
        chain.mine(CONFIG.schemes["quorum"]["commit_window_blocks"] + 1)
    for node, digest in zip(drawn, votes, strict=True):
        if digest is not None:
            q.reveal(node, job_id, digest, salts[node.address])
    if None in votes:
        chain.mine(CONFIG.schemes["quorum"]["reveal_window_blocks"] + 1)
    q.finalize(keeper, job_id)
    return job_id, drawn


def test_winners_share_the_slash_less_its_burned_share(net):
    chain, c = net
    right, wrong = keccak(b"right"), keccak(b"wrong")
    job_id, drawn = _quorum_job(chain, c, [right, right, wrong])
    slash = STAKE * CONFIG.slash_bps // 10_000
    paid_on = distributable(slash, CONFIG.burn_bps)
    q = c.quorum
    assert c.stake_of(drawn[2].address) == STAKE - slash
    assert q.credits(drawn[0].address) == PRICE + paid_on // 2
    assert q.totals()["burned"] == slash - paid_on > 0
    assert c.balance(q.BURN if hasattr(q, "BURN") else "0x000000000000000000000000000000000000dEaD") >= slash - paid_on
    t = q.totals()
    assert t["balance"] == t["escrow"] + t["credits"]


def test_an_input_unavailable_vote_is_never_slashed(net):
    """Attack B (issue 10): the submitter publishes its input late, after the first node found none."""
    chain, c = net
    right = keccak(b"right")
    job_id, drawn = _quorum_job(chain, c, [INPUT_UNAVAILABLE, right, right])
    q = c.quorum
    assert q.job(job_id).status.name == "VERIFIED"
    assert c.stake_of(drawn[0].address) == STAKE  # abstained: not slashed
    assert q.credits(drawn[0].address) == 0  # and not paid


def test_no_show_compensation_is_capped_at_the_fee(net):
    """A submitter who can make its nodes miss the window gets its fee back, not their stake."""
    chain, c = net
    job_id, drawn = _quorum_job(chain, c, [None, None, None])
    q = c.quorum
    assert q.job(job_id).status.name == "DISPUTED"
    assert q.credits(chain.accounts[1].address) == 3 * PRICE + 3 * PRICE
    slash = STAKE * CONFIG.slash_bps // 10_000
    assert q.totals()["burned"] == 3 * slash - 3 * PRICE


def test_a_self_challenge_through_a_second_account_loses_money(net):
    """Attack C (issue 10): an executor posts a wrong result, challenges it from a puppet account and stays
    silent; the puppet wins by timeout. Executor + puppet together lose the burned share of the slash."""
    chain, c = net
    opt: OptimisticJobs = c.scheme("optimistic")
    model = keccak(b"veriml/test/slash-int-model")
    c.register_model(chain.accounts[0], model, keccak(b"w2"), "exact", 0, PRICE)
    executor, puppet, user, keeper = chain.accounts[6], chain.accounts[7], chain.accounts[1], chain.accounts[2]
    c.register_node(executor, STAKE, "http://127.0.0.1:2", b"", [model])
    job_id, _ = opt.submit(user, model, b"\x01\x02", PRICE)
    opt.assign(keeper, job_id)
    assert opt.job(job_id).executor == executor.address
    before = c.stake_of(executor.address) + opt.credits(executor.address) + chain.w3.eth.get_balance(puppet.address)
    opt.post(executor, job_id, b"\x07", keccak(b"a wrong trace"), 5)
    receipt = opt.challenge(puppet, job_id)
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    chain.mine(20)
    opt.timeout(keeper, job_id)  # the executor stayed silent
    w = opt.withdraw(puppet)
    gas += w["gasUsed"] * w["effectiveGasPrice"]
    after = c.stake_of(executor.address) + opt.credits(executor.address) + chain.w3.eth.get_balance(puppet.address)
    slash = STAKE * CONFIG.slash_bps // 10_000
    assert before - after - gas == slash - distributable(slash, CONFIG.burn_bps) > 0
    assert opt.credits(user.address) == PRICE  # the user is refunded


def test_a_free_model_cannot_be_registered(net):
    chain, c = net
    with pytest.raises(reverts.ZeroPrice):
        c.register_model(chain.accounts[0], keccak(b"free"), keccak(b"w"), "exact", 0, 0)
