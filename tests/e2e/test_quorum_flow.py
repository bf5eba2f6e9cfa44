"""Quorum jobs end to end on the embedded chain: real contracts, real model, real settlement."""

from __future__ import annotations

import pytest

from veriml.jobspec import TextResult
from veriml.models.runtime import TextModel
from veriml.sim.faults import Fault
from veriml.verify.digest import tokens_digest

from .conftest import fresh_network

H = Fault.HONEST


def books_balanced(net) -> bool:  # noqa: ANN001
    c, d = net.contracts, net.contracts.deployment
    return (
        c.balance(d.job_market) == c.total_escrow() + c.total_credits()
        and c.balance(d.node_registry) == c.total_staked()
    )


@pytest.mark.parametrize("n", [1, 3, 5])
def test_honest_quorum_returns_the_models_own_output(honest_net, n):
    prompt = "The for statement"
    result = honest_net.run_text_job(prompt, quorum=n, max_new_tokens=24)
    expected = TextModel.load("tiny-gpt").run(prompt.encode(), 24)
    assert result.status == "verified"
    assert result.output == TextResult(tokens=expected.tokens).text
    assert result.output_digest == "0x" + tokens_digest(expected.tokens).hex()
    assert len(result.agree) == n and result.slashed == ()
    assert result.fee_paid == result.fee and result.refund == 0
    assert books_balanced(honest_net)


def test_seeded_sampling_is_verified_and_differs_from_greedy(honest_net):
    greedy = honest_net.run_text_job("Boolean operations", quorum=3, max_new_tokens=24)
    sampled = honest_net.run_text_job("Boolean operations", quorum=3, max_new_tokens=24, seed=7)
    again = honest_net.run_text_job("Boolean operations", quorum=3, max_new_tokens=24, seed=7)
    assert greedy.status == sampled.status == again.status == "verified"
    assert sampled.output == again.output != greedy.output


@pytest.mark.parametrize("fault", [Fault.WRONG_OUTPUT, Fault.NO_SHOW, Fault.BAD_REVEAL])
def test_a_faulty_node_in_a_quorum_of_three_is_slashed(fault):
    with fresh_network(H, H, fault) as net:
        cheat = net.nodes[2]
        stake = net.contracts.stake_of(cheat.address)
        result = net.run_text_job("Comparisons", quorum=3, max_new_tokens=16)
        assert result.status == "verified"
        assert result.slashed == (cheat.address,)
        assert set(result.agree) == {net.nodes[0].address, net.nodes[1].address}
        slash = stake * net.contracts.deployment.config.slash_bps // 10_000
        assert net.contracts.stake_of(cheat.address) == stake - slash
        # The slashed stake went to the two winners (and any dust to the user).
        assert result.refund == result.fee - 2 * (result.fee // 3) + slash % 2
        if fault is Fault.NO_SHOW:
            assert cheat.address not in result.committed
        if fault is Fault.BAD_REVEAL:
            assert cheat.address in result.committed and cheat.address not in result.revealed
        for _ in range(2):
            net.tick()  # nodes withdraw their credits
        assert net.contracts.credits(net.nodes[0].address) == 0
        assert books_balanced(net)


def test_two_colluding_cheaters_with_the_same_lazy_answer_win_a_quorum_of_three():
    """The known limit of majority voting: it is only as good as the honest majority among the drawn."""
    with fresh_network(H, Fault.WRONG_OUTPUT, Fault.WRONG_OUTPUT) as net:
        result = net.run_text_job("Comparisons", quorum=3, max_new_tokens=8)
        assert result.status == "verified" and result.output == "?" * 8
        assert result.slashed == (net.nodes[0].address,)


def test_a_job_whose_input_was_never_uploaded_is_agreed_unavailable(honest_net):
    c, client = honest_net.contracts, honest_net.client
    model_id = honest_net.models[0].model_id
    price = c.model(model_id).price
    job_id, _ = c.submit(client.account, model_id, b"\x42" * 32, b"{}", 3, 3 * price)
    result = client.wait(job_id, between=honest_net.tick)
    assert result.status == "verified" and result.error == "input unavailable" and result.output == ""
    assert result.slashed == ()


def test_malformed_params_are_agreed_invalid_not_punished(honest_net):
    c, client = honest_net.contracts, honest_net.client
    key = client.input_store.put(b"hello")
    model_id = honest_net.models[0].model_id
    job_id, _ = c.submit(client.account, model_id, bytes.fromhex(key), b"not json", 3, 3 * c.model(model_id).price)
    result = client.wait(job_id, between=honest_net.tick)
    assert result.status == "verified" and result.error.startswith("invalid params")
    assert result.slashed == ()


def test_all_nodes_silent_refunds_the_user_with_their_slashed_stake():
    with fresh_network(Fault.NO_SHOW, Fault.NO_SHOW, Fault.NO_SHOW) as net:
        result = net.run_text_job("Comparisons", quorum=3)
        assert result.status == "disputed"
        assert set(result.slashed) == {n.address for n in net.nodes}
        slash_each = 2 * 10**18 * net.contracts.deployment.config.slash_bps // 10_000
        assert result.refund == result.fee + 3 * slash_each
        assert books_balanced(net)


def test_stake_is_locked_while_assigned_and_withdrawable_after(honest_net):
    from veriml.errors import ContractRevert

    net = honest_net
    job_id, _ = net.client.submit_text("tiny-gpt", "Lambda expressions", 5, max_new_tokens=8)
    net.chain.mine(1)
    net.contracts.assign(net.client.account, job_id)
    node = net.nodes[0]
    with pytest.raises(ContractRevert, match="assigned to an open job"):
        net.contracts.request_unbond(node.account)
    net.client.wait(job_id, between=net.tick)
    snap = net.chain.snapshot()
    try:
        net.contracts.request_unbond(node.account)
        net.chain.mine(net.contracts.deployment.config.unbond_delay_blocks)
        before = net.contracts.balance(node.address)
        stake = net.contracts.stake_of(node.address)
        receipt = net.contracts.withdraw_stake(node.account)
        gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert net.contracts.balance(node.address) == before + stake - gas
    finally:
        net.chain.revert(snap)
