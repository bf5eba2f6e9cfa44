"""The scheme seam: a new scheme is one contract on JobEscrow plus one module, and it can open a sub-job
on another scheme (here: escalate to a quorum) and settle from its outcome."""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak

from veriml import schemes
from veriml.chain import reverts
from veriml.chain.backends import embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, deploy
from veriml.verify.commitment import commitment, new_salt

from .echo_scheme import SPEC, EchoStatus

PRICE = 10**15
MODEL = keccak(b"veriml/test/echo-model")
INPUT = keccak(b"veriml/test/echo-input")


@pytest.fixture(scope="module")
def net():
    schemes.register(SPEC)
    chain = embedded_chain()
    config = DeployConfig(unbond_delay_blocks=5).with_scheme("quorum", commit_window_blocks=4, reveal_window_blocks=4)
    c = Contracts(chain, deploy(chain, chain.accounts[0], config))
    c.register_model(chain.accounts[0], MODEL, keccak(b"w"), "exact", 0, PRICE)
    for a in chain.accounts[3:6]:
        c.register_node(a, 2 * 10**18, "http://127.0.0.1:1", b"", [MODEL])
    yield chain, c
    schemes.unregister("echo")
    chain.close()


def test_a_registered_scheme_deploys_with_the_others(net):
    chain, c = net
    assert list(c.deployment.schemes) == ["quorum", "optimistic", "zk", "echo"]
    assert schemes.names()[-1] == "echo"
    assert c.scheme("echo").total_escrow() == 0


def test_echo_job_pays_its_node(net):
    chain, c = net
    echo, user = c.scheme("echo"), chain.accounts[1]
    job_id, _ = echo.submit(user, MODEL, INPUT, PRICE)
    echo.assign(chain.accounts[2], job_id)
    job = echo.job(job_id)
    node = next(a for a in chain.accounts if a.address == job.node)
    with pytest.raises(reverts.NotTheNode):
        echo.echo(user, job_id, INPUT)
    echo.echo(node, job_id, INPUT)
    assert echo.job(job_id).status == EchoStatus.VERIFIED
    assert echo.outcome(job_id) == ("verified", INPUT)
    assert echo.credits(node.address) == PRICE
    t = echo.totals()
    assert t["balance"] == t["escrow"] + t["credits"]


def test_escalation_opens_a_quorum_sub_job_and_settles_from_its_outcome(net):
    chain, c = net
    echo, q, user, keeper = c.scheme("echo"), c.quorum, chain.accounts[1], chain.accounts[2]
    job_id, _ = echo.submit(user, MODEL, INPUT, 3 * PRICE)
    echo.assign(keeper, job_id)
    echo.escalate(keeper, job_id, 3)
    sub = echo.job(job_id).sub_job
    assert q.job(sub).user == echo.address and q.job(sub).fee == 3 * PRICE
    with pytest.raises(reverts.WrongStatus):  # the quorum has not settled yet
        echo.settle(keeper, job_id)
    q.assign(keeper, sub)
    digest = keccak(b"the answer")
    salts = {}
    for addr in q.assigned_nodes(sub):
        node = next(a for a in chain.accounts if a.address == addr)
        salts[addr] = (node, new_salt())
        q.commit(node, sub, commitment(chain.chain_id, q.address, sub, addr, digest, salts[addr][1]))
    for node, salt in salts.values():
        q.reveal(node, sub, digest, salt)
    q.finalize(keeper, sub)
    echo.settle(keeper, job_id)
    assert echo.outcome(job_id) == ("verified", digest)
    # The quorum spent the whole fee on its three nodes; nothing came back to refund.
    assert echo.credits(user.address) == 0
    for t in (echo.totals(), q.totals()):
        assert t["balance"] == t["escrow"] + t["bonds"] + t["credits"]
