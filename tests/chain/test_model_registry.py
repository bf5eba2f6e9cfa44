"""ModelRegistry: registration rules and price changes, each revert with its exact reason."""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak

from veriml.chain.tx import send
from veriml.errors import ContractRevert

from .conftest import MODEL, PRICE, WEIGHTS_ROOT, World

NEW = keccak(b"veriml/test/new-model")


def register_raw(w: World, model_id: bytes, root: bytes, policy: int, threshold: int, account=None):
    fn = w.c.models.functions.register(model_id, root, policy, threshold, PRICE)
    return send(w.w3, fn, account or w.owner)


def test_register_records_the_model(world: World) -> None:
    count = world.c.models.functions.modelCount().call()
    world.c.register_model(world.free[0], NEW, WEIGHTS_ROOT, "tolerance", 12, 7)
    m = world.c.model(NEW)
    assert (m.owner, m.weights_root, m.policy, m.threshold, m.price) == (
        world.free[0].address,
        WEIGHTS_ROOT,
        "tolerance",
        12,
        7,
    )
    assert world.c.model_exists(NEW)
    assert world.c.models.functions.modelCount().call() == count + 1
    assert world.c.models.functions.modelIds(count).call() == NEW


@pytest.mark.parametrize(
    ("model_id", "root", "policy", "threshold", "reason"),
    [
        (bytes(32), WEIGHTS_ROOT, 0, 0, "ZeroModelId"),
        (NEW, bytes(32), 0, 0, "ZeroWeightsRoot"),
        (MODEL, WEIGHTS_ROOT, 0, 0, "ModelExists"),
        (NEW, WEIGHTS_ROOT, 4, 0, "UnknownPolicy"),
        (NEW, WEIGHTS_ROOT, 255, 0, "UnknownPolicy"),
        (NEW, WEIGHTS_ROOT, 2, 65, "PhashThresholdAbove64"),
        (NEW, WEIGHTS_ROOT, 0, 1, "ThresholdNotAllowed"),
        (NEW, WEIGHTS_ROOT, 1, 3, "ThresholdNotAllowed"),
    ],
    ids=[
        "zero-id",
        "zero-root",
        "duplicate",
        "policy-4",
        "policy-255",
        "phash-65",
        "exact-threshold",
        "tokens-threshold",
    ],
)
def test_register_reverts(world: World, model_id: bytes, root: bytes, policy: int, threshold: int, reason: str) -> None:
    with pytest.raises(ContractRevert) as exc:
        register_raw(world, model_id, root, policy, threshold)
    assert exc.value.error == reason, exc.value.reason
    if model_id != MODEL:
        assert not world.c.model_exists(model_id)


@pytest.mark.parametrize(("policy", "threshold"), [(2, 64), (2, 0), (3, 2**32 - 1), (0, 0), (1, 0)])
def test_register_accepts_boundaries(world: World, policy: int, threshold: int) -> None:
    register_raw(world, NEW, WEIGHTS_ROOT, policy, threshold)
    assert world.c.model(NEW).threshold == threshold


def test_set_price_by_owner(world: World) -> None:
    receipt = send(world.w3, world.c.models.functions.setPrice(MODEL, 3 * PRICE), world.owner)
    (event,) = world.c.models.events.PriceChanged().process_receipt(receipt)
    assert event["args"]["price"] == 3 * PRICE
    assert world.c.model(MODEL).price == 3 * PRICE


def test_set_price_by_non_owner_reverts(world: World) -> None:
    with pytest.raises(ContractRevert) as exc:
        send(world.w3, world.c.models.functions.setPrice(MODEL, 1), world.user)
    assert exc.value.error == "NotModelOwner"
    assert world.c.model(MODEL).price == PRICE


def test_set_price_of_unknown_model_reverts(world: World) -> None:
    with pytest.raises(ContractRevert) as exc:
        send(world.w3, world.c.models.functions.setPrice(NEW, 1), world.owner)
    assert exc.value.error == "UnknownModel"


def test_get_unknown_model_reverts(world: World) -> None:
    with pytest.raises(ContractRevert) as exc:
        world.c.model(NEW)
    assert exc.value.error == "UnknownModel"
    assert not world.c.model_exists(NEW)
