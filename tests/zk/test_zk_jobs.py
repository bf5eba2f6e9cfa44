"""ZkJobs on the embedded chain with real EZKL proofs and verifiers: every way a proof can be wrong ends with
the node slashed and the user refunded, a valid proof pays, and the books always balance."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from web3.logs import DISCARD

from veriml.chain import reverts
from veriml.chain.tx import revert_error
from veriml.chain.zk import ZkJobStatus
from veriml.errors import ContractRevert
from veriml.sim.faults import forge_outputs
from veriml.zk.field import FIELD_MODULUS, words_hash
from veriml.zk.proof import Proof

if TYPE_CHECKING:
    from tests.zk.conftest import Proofs, ZkWorld


def submit(zk: ZkWorld, node, job_id: int, proof: Proof, instances=None):  # noqa: ANN001, ANN201
    """Send as a node does: with a gas limit from the circuit, no simulation first (one verifier run)."""
    inst = proof.instances if instances is None else instances
    gas = zk.jobs.proof_gas(zk.jobs.job(job_id).model_id, proof.proof, inst)
    return zk.jobs.submit_proof(node, job_id, proof.proof, inst, gas=gas)


def submit_simulated(zk: ZkWorld, node, job_id: int, proof: Proof):  # noqa: ANN001, ANN201
    """Send after a simulation, so a revert comes back with its reason."""
    return zk.jobs.submit_proof(node, job_id, proof.proof, proof.instances)


def assert_rejected(zk: ZkWorld, job_id: int, node, receipt, reason: str) -> None:  # noqa: ANN001
    """The node lost zk.slash of its stake, the user got its fee back plus compensation capped at the fee (the
    rest of the slash is burned), the node is unlocked, the books balance."""
    job = zk.jobs.job(job_id)
    assert job.status == ZkJobStatus.REJECTED
    (ev,) = zk.jobs.contract.events.ProofRejected().process_receipt(receipt, errors=DISCARD)
    assert ev["args"]["reason"] == reason
    assert ev["args"]["slashed"] == zk.slash and ev["args"]["refund"] == job.fee + min(job.fee, zk.slash)
    assert zk.c.stake_of(node.address) == zk.stake - zk.slash
    assert zk.jobs.credits(zk.user.address) == job.fee + min(job.fee, zk.slash)
    assert zk.jobs.total_burned() == zk.slash - min(job.fee, zk.slash)
    assert zk.jobs.credits(node.address) == 0
    assert zk.c.node(node.address).open_jobs == 0
    assert zk.jobs.total_escrow() == 0
    zk.assert_books()


def test_valid_proof_pays_the_node(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, node = zk.open_job(proofs.input_a)
    assert zk.c.node(node.address).open_jobs == 1
    receipt = submit(zk, node, job_id, proofs.a)
    job = zk.jobs.job(job_id)
    assert job.status == ZkJobStatus.VERIFIED
    assert job.output_hash == words_hash(proofs.a.outputs) == proofs.a.output_hash
    (ev,) = zk.jobs.contract.events.ProofAccepted().process_receipt(receipt, errors=DISCARD)
    assert tuple(ev["args"]["output"]) == proofs.a.outputs
    assert zk.jobs.credits(node.address) == job.fee
    assert zk.c.stake_of(node.address) == zk.stake
    assert zk.c.node(node.address).open_jobs == 0
    assert receipt["gasUsed"] < 1_000_000
    zk.assert_books()
    before = zk.c.balance(node.address)
    r = zk.jobs.withdraw(node)
    assert zk.c.balance(node.address) == before + job.fee - r["gasUsed"] * r["effectiveGasPrice"]
    zk.assert_books()


def test_the_job_input_hash_is_keccak_of_the_input_words(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, _ = zk.open_job(proofs.input_a)
    expected = words_hash(proofs.input_a)
    assert zk.jobs.job(job_id).input_hash == expected == zk.jobs.input_hash_of(proofs.input_a)
    assert proofs.a.input_hash == expected


def test_tampered_proof_is_slashed_and_refunded(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, node = zk.open_job(proofs.input_a)
    receipt = submit(zk, node, job_id, proofs.a.with_flipped_bit(byte=200, bit=3))
    assert_rejected(zk, job_id, node, receipt, "invalid proof")


def test_tampered_output_is_slashed_and_refunded(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, node = zk.open_job(proofs.input_a)
    forged = proofs.a.with_outputs(forge_outputs(proofs.a.outputs))
    receipt = submit(zk, node, job_id, forged)
    assert_rejected(zk, job_id, node, receipt, "invalid proof")


def test_a_single_changed_output_value_is_rejected(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, node = zk.open_job(proofs.input_a)
    outs = list(proofs.a.outputs)
    outs[-1] = (outs[-1] + 1) % FIELD_MODULUS
    receipt = submit(zk, node, job_id, proofs.a.with_outputs(tuple(outs)))
    assert_rejected(zk, job_id, node, receipt, "invalid proof")


def test_a_proof_of_another_jobs_input_is_slashed(zk: ZkWorld, proofs: Proofs) -> None:
    # Job B is settled honestly; its (valid) proof is then replayed on job A, whose input differs.
    job_b, node_b = zk.open_job(proofs.input_b)
    submit(zk, node_b, job_b, proofs.b)
    assert zk.jobs.job(job_b).status == ZkJobStatus.VERIFIED
    job_a, node_a = zk.open_job(proofs.input_a)
    stake = zk.c.stake_of(node_a.address)
    receipt = submit(zk, node_a, job_a, proofs.b)
    job = zk.jobs.job(job_a)
    assert job.status == ZkJobStatus.REJECTED
    (ev,) = zk.jobs.contract.events.ProofRejected().process_receipt(receipt, errors=DISCARD)
    assert ev["args"]["reason"] == "proof is about another input"
    assert zk.c.stake_of(node_a.address) == stake - stake * zk.slash // zk.stake
    zk.assert_books()


def test_a_proof_of_another_models_circuit_is_slashed(zk: ZkWorld, proofs: Proofs) -> None:
    # The variant's proof is valid for the variant (its own verifier accepts it) ...
    job_v, node_v = zk.open_job(proofs.input_a, model=zk.variant)
    submit(zk, node_v, job_v, proofs.variant_a)
    assert zk.jobs.job(job_v).status == ZkJobStatus.VERIFIED
    # ... but a digits-mlp job is checked by digits-mlp's verifier, which rejects it: same input, other model.
    job_id, node = zk.open_job(proofs.input_a)
    assert proofs.variant_a.inputs == proofs.a.inputs and proofs.variant_a.outputs != proofs.a.outputs
    receipt = submit(zk, node, job_id, proofs.variant_a)
    (ev,) = zk.jobs.contract.events.ProofRejected().process_receipt(receipt, errors=DISCARD)
    assert ev["args"]["reason"] == "invalid proof"
    assert zk.jobs.job(job_id).status == ZkJobStatus.REJECTED
    zk.assert_books()


def test_wrong_number_of_instances_is_slashed(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, node = zk.open_job(proofs.input_a)
    receipt = submit(zk, node, job_id, proofs.a, instances=proofs.a.instances[:-1])
    assert_rejected(zk, job_id, node, receipt, "wrong number of instances")


def test_missed_deadline_slashes_and_refunds(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, node = zk.open_job(proofs.input_a)
    with pytest.raises(ContractRevert, match="ProveWindowOpen"):
        zk.jobs.expire(zk.keeper, job_id)
    zk.chain.mine(zk.jobs.job(job_id).deadline + 1 - zk.chain.block_number())
    with pytest.raises(ContractRevert, match="ProofDeadlinePassed"):
        submit_simulated(zk, node, job_id, proofs.a)
    receipt = zk.jobs.expire(zk.keeper, job_id)  # anyone may
    job = zk.jobs.job(job_id)
    assert job.status == ZkJobStatus.EXPIRED
    (ev,) = zk.jobs.contract.events.JobExpired().process_receipt(receipt, errors=DISCARD)
    assert ev["args"]["slashed"] == zk.slash and ev["args"]["refund"] == 2 * job.fee  # compensation capped
    assert zk.jobs.credits(zk.user.address) == 2 * job.fee
    assert zk.jobs.credits(zk.keeper.address) == 0
    assert zk.c.node(node.address).open_jobs == 0
    with pytest.raises(ContractRevert, match="WrongStatus"):
        zk.jobs.expire(zk.keeper, job_id)
    zk.assert_books()


def test_only_the_assigned_node_may_submit(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, node = zk.open_job(proofs.input_a)
    other = next(n for n in zk.nodes if n.address != node.address)
    with pytest.raises(ContractRevert, match="NotAssignedNode"):
        submit_simulated(zk, other, job_id, proofs.a)
    submit(zk, node, job_id, proofs.a)
    with pytest.raises(ContractRevert, match="WrongStatus"):
        submit_simulated(zk, node, job_id, proofs.a)


def test_too_little_gas_reverts_instead_of_slashing(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, node = zk.open_job(proofs.input_a)
    fn = zk.jobs.contract.functions.submitProof(job_id, proofs.a.proof, list(proofs.a.instances))
    with pytest.raises(reverts.NotEnoughGasToVerify):
        try:
            fn.call({"from": node.address, "gas": 400_000})
        except Exception as e:  # noqa: BLE001 - eth-tester's error type, decoded by name
            raise revert_error(e) from None
    with pytest.raises(ContractRevert):
        zk.jobs.submit_proof(node, job_id, proofs.a.proof, proofs.a.instances, gas=400_000)
    assert zk.jobs.job(job_id).status == ZkJobStatus.ASSIGNED
    assert zk.c.stake_of(node.address) == zk.stake
    submit(zk, node, job_id, proofs.a)
    assert zk.jobs.job(job_id).status == ZkJobStatus.VERIFIED


def test_submit_validates_the_input(zk: ZkWorld, proofs: Proofs) -> None:
    m = zk.model
    price = m.manifest.price_wei
    with pytest.raises(ContractRevert, match="WrongInputLength"):
        zk.jobs.submit(zk.user, m.model_id, proofs.input_a[:-1], price)
    too_big = list(proofs.input_a)
    too_big[5] = m.input_max + 1
    with pytest.raises(ContractRevert, match="InputOutOfRange"):
        zk.jobs.submit(zk.user, m.model_id, too_big, price)
    with pytest.raises(ContractRevert, match="FeeBelowPrice"):
        zk.jobs.submit(zk.user, m.model_id, proofs.input_a, price - 1)
    with pytest.raises(ContractRevert, match="NoCircuit"):
        zk.jobs.submit(zk.user, b"\x01" * 32, proofs.input_a, price)
    edge = [m.input_max] * len(proofs.input_a)
    job_id, _ = zk.jobs.submit(zk.user, m.model_id, edge, price)
    assert zk.jobs.job(job_id).status == ZkJobStatus.SUBMITTED
    zk.assert_books()


def test_assignment_waits_a_block_and_expires(zk: ZkWorld, proofs: Proofs) -> None:
    job_id, _ = zk.jobs.submit(zk.user, zk.model.model_id, proofs.input_a, zk.model.manifest.price_wei)
    zk.chain.mine(257)
    zk.jobs.assign(zk.keeper, job_id)
    job = zk.jobs.job(job_id)
    assert job.status == ZkJobStatus.REFUNDED
    assert zk.jobs.credits(zk.user.address) == job.fee
    with pytest.raises(ContractRevert, match="WrongStatus"):
        zk.jobs.assign(zk.keeper, job_id)
    zk.assert_books()


def test_the_draw_spreads_over_staked_nodes_and_locks_them(zk: ZkWorld, proofs: Proofs) -> None:
    drawn = [zk.open_job(proofs.input_a)[1].address for _ in range(8)]
    assert set(drawn) <= {n.address for n in zk.nodes}
    assert len(set(drawn)) >= 2
    for n in zk.nodes:
        assert zk.c.node(n.address).open_jobs == drawn.count(n.address)
        if drawn.count(n.address):
            with pytest.raises(ContractRevert, match="OpenJobs"):
                zk.c.request_unbond(n)


def test_circuit_registration_is_owner_only_and_once(zk: ZkWorld) -> None:
    m = zk.model
    c = zk.jobs.circuit(m.model_id)
    assert c.verifier == m.verifier_address
    assert c.vk_hash == bytes.fromhex(m.circuit.vk_sha256)
    assert c.verifier_code_hash == m.verifier.runtime_keccak
    assert (c.n_inputs, c.n_outputs, c.input_max) == (64, 10, m.input_max)
    with pytest.raises(ContractRevert, match="CircuitAlreadyRegistered"):
        zk.jobs.register_circuit(zk.owner, m.model_id, c.verifier, c.vk_hash, 64, 10, c.verify_gas, c.input_max)
    # A new model registered by the owner: a stranger cannot bind its verifier; no-code verifiers are refused.
    new_id = b"\x42" * 32
    zk.c.register_model(zk.owner, new_id, b"\x01" * 32, "exact", 0, 10**15)
    with pytest.raises(ContractRevert, match="NotModelOwner"):
        zk.jobs.register_circuit(zk.user, new_id, c.verifier, c.vk_hash, 64, 10, c.verify_gas, c.input_max)
    with pytest.raises(ContractRevert, match="VerifierHasNoCode"):
        zk.jobs.register_circuit(zk.owner, new_id, zk.user.address, c.vk_hash, 64, 10, c.verify_gas, c.input_max)
    with pytest.raises(ContractRevert, match="InputBoundOutsideField"):
        zk.jobs.register_circuit(zk.owner, new_id, c.verifier, c.vk_hash, 64, 10, c.verify_gas, FIELD_MODULUS)
    with pytest.raises(ContractRevert, match="NoCircuit"):
        zk.jobs.circuit(new_id)


def test_direct_payments_are_refused(zk: ZkWorld) -> None:
    from veriml.chain.tx import transfer

    with pytest.raises(ContractRevert):
        transfer(zk.chain.w3, zk.user, zk.jobs.address, 10**15)


def test_coin_is_conserved_across_every_outcome(zk: ZkWorld, proofs: Proofs) -> None:
    """Verified, rejected, expired and refunded jobs, then everyone withdraws: what the user and nodes paid
    plus gas equals what they received, to the wei; the contracts end holding exactly the stakes."""
    w3 = zk.chain.w3
    people = [zk.user, zk.keeper, *zk.nodes]
    before = {a.address: w3.eth.get_balance(a.address) for a in people}
    gas: dict[str, int] = {a.address: 0 for a in people}

    def paid(receipt, who) -> None:  # noqa: ANN001
        gas[who.address] += receipt["gasUsed"] * receipt["effectiveGasPrice"]

    fees = 0
    price = zk.model.manifest.price_wei
    # verified
    j1, r = zk.jobs.submit(zk.user, zk.model.model_id, proofs.input_a, price)
    paid(r, zk.user)
    zk.chain.mine(1)
    paid(zk.jobs.assign(zk.keeper, j1), zk.keeper)
    n1 = zk.account(zk.jobs.job(j1).node)
    paid(submit(zk, n1, j1, proofs.a), n1)
    # rejected
    j2, r = zk.jobs.submit(zk.user, zk.model.model_id, proofs.input_b, 3 * price)
    paid(r, zk.user)
    zk.chain.mine(1)
    paid(zk.jobs.assign(zk.keeper, j2), zk.keeper)
    n2 = zk.account(zk.jobs.job(j2).node)
    stake_before = zk.c.stake_of(n2.address)
    paid(submit(zk, n2, j2, proofs.a), n2)
    slash_j2 = stake_before - zk.c.stake_of(n2.address)
    # expired
    j3, r = zk.jobs.submit(zk.user, zk.model.model_id, proofs.input_a, price)
    paid(r, zk.user)
    zk.chain.mine(1)
    paid(zk.jobs.assign(zk.keeper, j3), zk.keeper)
    n3 = zk.jobs.job(j3).node
    stake_before = zk.c.stake_of(n3)
    zk.chain.mine(zk.prove_window + 1)
    paid(zk.jobs.expire(zk.keeper, j3), zk.keeper)
    slash_j3 = stake_before - zk.c.stake_of(n3)
    # refunded (randomness expired)
    j4, r = zk.jobs.submit(zk.user, zk.model.model_id, proofs.input_a, price)
    paid(r, zk.user)
    zk.chain.mine(257)
    paid(zk.jobs.assign(zk.keeper, j4), zk.keeper)
    fees = price + 3 * price + price + price
    zk.assert_books()
    for a in people:
        if zk.jobs.credits(a.address):
            paid(zk.jobs.withdraw(a), a)
    assert zk.jobs.total_escrow() == zk.jobs.total_credits() == zk.jobs.balance() == 0
    zk.assert_books()
    slashed = sum(zk.stake - zk.c.stake_of(n.address) for n in zk.nodes)
    # Each slash takes slash_bps of the node's stake at the time; the same node may be drawn twice.
    assert slashed == slash_j2 + slash_j3 and slash_j2 == zk.slash
    assert slash_j3 == (zk.slash if n3 != n2.address else (zk.stake - zk.slash) // 2)
    delta = {a.address: w3.eth.get_balance(a.address) - before[a.address] + gas[a.address] for a in people}
    # The user is compensated for each failed job up to the fee it paid; the rest of each slash is burned.
    comp2, comp3 = min(3 * price, slash_j2), min(price, slash_j3)
    assert delta[zk.user.address] == -fees + (3 * price + comp2) + (price + comp3) + price
    assert delta[n1.address] == price
    assert delta[zk.keeper.address] == 0
    assert zk.jobs.total_burned() == slashed - comp2 - comp3
    assert sum(delta.values()) + zk.jobs.total_burned() == slashed  # every slashed wei reached the user or the burn
    assert zk.c.total_staked() == 3 * zk.stake - slashed
