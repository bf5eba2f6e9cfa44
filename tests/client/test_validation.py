"""Bad input to the SDK is refused with a specific error before any coin moves."""

from __future__ import annotations

import pytest

from veriml.errors import FeeTooLow, InvalidPrompt, InvalidQuorum, UnknownModel
from veriml.sim.network import LocalNetwork, NodeSpec


@pytest.fixture(scope="module")
def net():
    with LocalNetwork.start([NodeSpec() for _ in range(3)]) as n:
        yield n


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"model": "gpt-5"}, UnknownModel, "no shipped model named 'gpt-5'"),
        ({"model": "0xzz"}, UnknownModel, "not hex"),
        ({"model": "tiny-shapes"}, UnknownModel, "serves image-generation, not text-generation"),
        ({"prompt": ""}, InvalidPrompt, "prompt is empty"),
        ({"prompt": "   "}, InvalidPrompt, "prompt is empty"),
        ({"prompt": "x" * 513}, InvalidPrompt, "513 bytes; this model takes at most 512"),
        ({"quorum": 2}, InvalidQuorum, "odd"),
        ({"quorum": 0}, InvalidQuorum, "odd"),
        ({"quorum": 11}, InvalidQuorum, "1..9"),
        ({"max_new_tokens": 0}, InvalidPrompt, "max_new_tokens"),
        ({"max_new_tokens": 129}, InvalidPrompt, "max_new_tokens"),
        ({"seed": -1}, InvalidPrompt, "seed"),
        ({"fee": 1}, FeeTooLow, "below 3 x price"),
    ],
)
def test_bad_submissions_are_refused_and_cost_nothing(net, kwargs, error, message):
    args = {"model": "tiny-gpt", "prompt": "hello", "quorum": 3, **kwargs}
    before = net.contracts.balance(net.client.address)
    jobs_before = net.contracts.quorum.contract.functions.nextJobId().call()
    with pytest.raises(error, match=message):
        net.client.submit_text(**args)
    assert net.contracts.balance(net.client.address) == before
    assert net.contracts.quorum.contract.functions.nextJobId().call() == jobs_before


def test_more_nodes_than_registered_is_refused_by_the_contract(net):
    from veriml.errors import ContractRevert

    with pytest.raises(ContractRevert, match="TooFewNodes"):
        net.client.submit_text("tiny-gpt", "hello", 5)


def test_a_model_not_registered_on_this_chain_is_unknown(tmp_path):
    from veriml.chain.backends import embedded_chain
    from veriml.chain.contracts import Contracts
    from veriml.chain.deploy import deploy
    from veriml.client.sdk import Client
    from veriml.gateway.blobstore import LocalBlobStore

    chain = embedded_chain()
    client = Client(Contracts(chain, deploy(chain)), chain.accounts[1], LocalBlobStore(tmp_path))
    with pytest.raises(UnknownModel, match="not registered on this chain"):
        client.submit_text("tiny-gpt", "hello", 1)


def test_result_of_an_unsettled_job_is_refused(net):
    job_id, _ = net.client.submit_text("tiny-gpt", "hello", 1)
    with pytest.raises(ValueError, match="not settled"):
        net.client.result(job_id)
    net.client.wait(job_id, between=net.tick)


def test_an_output_that_does_not_match_the_digest_is_rejected(net):
    """A winner serving other bytes than it revealed cannot make the client accept them."""
    from veriml.errors import VerificationError
    from veriml.jobspec import TextResult

    job_id, _ = net.client.submit_text("tiny-gpt", "The for statement", 1, max_new_tokens=8)
    result = net.client.wait(job_id, between=net.tick)
    (winner,) = result.agree
    node = next(n for n in net.nodes if n.address == winner)
    # Overwrite the published blob's file with another (valid) output document.
    role = node.role("quorum")
    key = role.state.get(job_id).output_key
    role.output_store.path(key).write_bytes(TextResult(tokens=(65,) * 8).encode())
    with pytest.raises(VerificationError):
        net.client.result(job_id)
