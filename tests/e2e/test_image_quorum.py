"""Image quorum jobs on the embedded chain: perceptual-hash grouping in QuorumJobs, and real nodes that run
`tiny-shapes` under different honest variations agreeing while a cheater is slashed."""

from __future__ import annotations

import pytest
from web3.logs import DISCARD

from veriml.jobspec import ImageParams, ImageResult
from veriml.models.imagegen_runtime import ImageModel, Variation
from veriml.schemes.quorum import JobStatus
from veriml.sim.faults import Cheat, Fault
from veriml.sim.network import IMAGE_MODEL, LocalNetwork, NodeSpec
from veriml.verify.commitment import commitment, new_salt
from veriml.verify.digest import hamming64
from veriml.verify.phash import image_hash
from veriml.verify.quorum import tally

FAR = (1 << 64) - 1


@pytest.fixture(scope="module")
def image_net():
    with LocalNetwork.start([NodeSpec() for _ in range(5)], models=(IMAGE_MODEL,)) as net:
        yield net


@pytest.fixture
def clean(image_net):
    snap = image_net.chain.snapshot()
    try:
        yield image_net
    finally:
        image_net.chain.revert(snap)


def h(bits: int, tag: int = 0) -> bytes:
    """A phash digest carrying `bits` (the 24 tag bytes differ per node, as real ones do)."""
    return tag.to_bytes(24, "big") + bits.to_bytes(8, "big")


def play(net: LocalNetwork, n: int, hashes: list[int]) -> tuple[object, list[bytes], list[str]]:
    """Submit an image job, then have its drawn nodes commit and reveal the given hashes, and finalize."""
    c, user = net.contracts, net.client.account
    model_id = net.models[0].model_id
    key = net.client.input_store.put(b"star")
    job_id, _ = c.quorum.submit(
        user, model_id, bytes.fromhex(key), ImageParams(1).encode(), n, n * c.model(model_id).price
    )
    c.quorum.assign(user, job_id)
    drawn = c.quorum.assigned_nodes(job_id)
    accounts = {a.address: a for a in net.chain.accounts}
    reveals, salts = [h(x, i + 1) for i, x in enumerate(hashes)], [new_salt() for _ in hashes]
    for node, d, s in zip(drawn, reveals, salts, strict=True):
        c.quorum.commit(
            accounts[node], job_id, commitment(net.chain.chain_id, c.deployment.schemes["quorum"], job_id, node, d, s)
        )
    for node, d, s in zip(drawn, reveals, salts, strict=True):
        c.quorum.reveal(accounts[node], job_id, d, s, bytes(32))
    receipt = c.quorum.finalize(user, job_id)
    (event,) = c.quorum.contract.events.JobFinalized().process_receipt(receipt, errors=DISCARD)
    return event["args"], reveals, drawn


@pytest.mark.parametrize(
    ("hashes", "verified", "slashed"),
    [
        ([0, 0b1111, 0b11111 << 20], True, (2,)),  # t bits off matches, t + 1 does not
        ([0b1111, 0, 0b1111 << 4], True, ()),  # not transitive: the middle one is within t of both ends
        ([0, 0, 0b111, FAR, FAR ^ 0b11], True, (3, 4)),  # 3-2 of five: the two far ones are slashed
        ([0, 1, FAR, FAR ^ 1, 0xFF << 30], False, ()),  # 2-2-1 of five: no strict majority, disputed
        ([0, FAR, 0xFFFF_FFFF], False, ()),  # all different: disputed
    ],
    ids=["boundary", "non-transitive", "3-2", "tie-2-2-1", "all-different"],
)
def test_jobmarket_groups_phash_reveals_by_hamming_distance(clean, hashes, verified, slashed):
    t = clean.models[0].manifest.policy_threshold
    assert t == 4  # the scenarios are written for the shipped threshold
    args, reveals, drawn = play(clean, len(hashes), hashes)
    expected = tally(reveals, "phash", t)
    assert expected.majority is verified
    assert args["status"] == (JobStatus.VERIFIED if verified else JobStatus.DISPUTED)
    assert list(args["slashed"]) == [drawn[i] for i in expected.slashed] == [drawn[i] for i in slashed]
    assert list(args["winners"]) == [drawn[i] for i in expected.winners]
    if verified:
        assert bytes(args["digest"]) == expected.digest


def test_honest_nodes_on_different_variations_agree_by_perceptual_hash():
    specs = [NodeSpec(), NodeSpec(variation=Variation(backend="onnxruntime")), NodeSpec(variation=Variation(batch=8))]
    with LocalNetwork.start(specs, models=(IMAGE_MODEL,)) as net:
        result = net.run_image_job("star", 6, quorum=3)
        assert result.model == IMAGE_MODEL and result.status == "verified"
        assert result.slashed == () and len(result.agree) == 3
        ref = ImageModel.load(IMAGE_MODEL).run("star", 6)
        doc = ImageResult.decode(result.document, "phash")
        # The client checked the fetched picture against the agreed digest by the policy, not by bytes.
        assert hamming64(doc.digest(), bytes.fromhex(result.output_digest[2:])) <= 4
        assert abs(image_hash(doc.png) ^ image_hash(ref.png)).bit_count() <= 4
        roles = [n.role("quorum") for n in net.nodes]
        published = {r.output_store.get(r.state.get(result.job_id).output_key) for r in roles}
        assert ref.png in published  # each node published its own PNG


@pytest.mark.parametrize("cheat", [Cheat.CHEAP_MODEL, Cheat.OTHER_SEED, Cheat.COPY])
def test_an_image_cheater_in_a_quorum_of_three_is_slashed(cheat):
    specs = [
        NodeSpec(),
        NodeSpec(variation=Variation(backend="onnxruntime")),
        NodeSpec(Fault.WRONG_OUTPUT, cheat=cheat),
    ]
    with LocalNetwork.start(specs, models=(IMAGE_MODEL,)) as net:
        cheater = net.nodes[2]
        stake = net.contracts.stake_of(cheater.address)
        result = net.run_image_job("star", 6, quorum=3)
        assert result.status == "verified"
        assert result.slashed == (cheater.address,)
        assert net.contracts.stake_of(cheater.address) < stake


def test_an_unknown_class_is_agreed_invalid_not_punished(image_net):
    c, client = image_net.contracts, image_net.client
    model_id = image_net.models[0].model_id
    key = client.input_store.put(b"dragon")
    job_id, _ = c.quorum.submit(client.account, model_id, bytes.fromhex(key), b"{}", 3, 3 * c.model(model_id).price)
    result = client.wait(job_id, between=image_net.tick)
    assert result.status == "verified" and result.error.startswith("invalid input: unknown class")
    assert result.slashed == ()
