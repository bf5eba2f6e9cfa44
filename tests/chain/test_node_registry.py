"""NodeRegistry: staking, unbonding and the scheme-only powers, each revert with its exact reason."""

from __future__ import annotations

import pytest
from eth_hash.auto import keccak

from veriml.chain.tx import send
from veriml.errors import ContractRevert

from .conftest import CONFIG, LONELY_MODEL, MODEL, PHASH_MODEL, STAKE, WEIGHTS_ROOT, World, gas_cost

MIN = CONFIG.min_stake_wei


def assert_reverts(fn, reason: str) -> None:
    with pytest.raises(ContractRevert) as exc:
        fn()
    assert exc.value.error == reason, exc.value.reason


# ---- register ----


def test_register_records_node_and_stake(world: World) -> None:
    acct = world.free[0]
    staked = world.c.total_staked()
    world.c.register_node(acct, MIN, "http://n", b"\x01" * 128, [MODEL, LONELY_MODEL])
    n = world.c.node(acct.address)
    assert (n.stake, n.endpoint, n.pubkey, n.unbond_block, n.open_jobs, n.registered) == (
        MIN,
        "http://n",
        b"\x01" * 128,
        0,
        0,
        True,
    )
    assert world.c.total_staked() == staked + MIN
    assert (acct.address, MIN) in world.c.candidates(MODEL)
    assert world.c.candidates(LONELY_MODEL) == [(acct.address, MIN)]
    assert list(world.c.nodes.functions.servedModels(acct.address).call()) == [MODEL, LONELY_MODEL]
    world.assert_accounting()


@pytest.mark.parametrize(
    ("stake", "endpoint", "pubkey", "models", "reason"),
    [
        (MIN - 1, "http://n", b"", [MODEL], "StakeBelowMinimum"),
        (0, "http://n", b"", [MODEL], "StakeBelowMinimum"),
        (MIN, "", b"", [MODEL], "EndpointLength"),
        (MIN, "x" * 257, b"", [MODEL], "EndpointLength"),
        (MIN, "http://n", b"\x01" * 129, [MODEL], "PubkeyTooLong"),
        (MIN, "http://n", b"", [], "ModelCount"),
        (MIN, "http://n", b"", [MODEL] * 17, "ModelCount"),
        (MIN, "http://n", b"", [keccak(b"nope")], "UnknownModel"),
        (MIN, "http://n", b"", [MODEL, keccak(b"nope")], "UnknownModel"),
        (MIN, "http://n", b"", [MODEL, PHASH_MODEL, MODEL], "DuplicateModel"),
    ],
    ids=[
        "below-min",
        "zero",
        "empty-endpoint",
        "long-endpoint",
        "long-pubkey",
        "no-models",
        "17-models",
        "unknown-model",
        "unknown-second-model",
        "duplicate-model",
    ],
)
def test_register_reverts(world: World, stake: int, endpoint: str, pubkey: bytes, models: list, reason: str) -> None:
    acct = world.free[0]
    assert_reverts(lambda: world.c.register_node(acct, stake, endpoint, pubkey, models), reason)
    assert not world.c.node(acct.address).registered


def test_register_twice_reverts(world: World) -> None:
    node = world.nodes[0]
    assert_reverts(
        lambda: world.c.register_node(node, MIN, "http://n", b"", [LONELY_MODEL]),
        "AlreadyRegistered",
    )


def test_register_accepts_boundaries(world: World) -> None:
    """256-byte endpoint, 128-byte key, exactly 16 models and exactly the minimum stake are all fine."""
    ids = [keccak(f"veriml/test/m{i}".encode()) for i in range(16)]
    for m in ids:
        world.c.register_model(world.owner, m, WEIGHTS_ROOT, "exact", 0, 1)
    acct = world.free[0]
    world.c.register_node(acct, MIN, "x" * 256, b"\x02" * 128, ids)
    assert world.c.node(acct.address).registered
    assert list(world.c.nodes.functions.servedModels(acct.address).call()) == ids


# ---- top up ----


def test_top_up_adds_stake(world: World) -> None:
    node = world.nodes[0]
    staked = world.c.total_staked()
    world.c.top_up(node, 5)
    assert world.c.stake_of(node.address) == STAKE + 5
    assert world.c.total_staked() == staked + 5
    world.assert_accounting()


def test_top_up_unregistered_reverts(world: World) -> None:
    assert_reverts(lambda: world.c.top_up(world.free[0], MIN), "NotRegistered")


def test_top_up_zero_reverts(world: World) -> None:
    assert_reverts(lambda: world.c.top_up(world.nodes[0], 0), "ZeroTopUp")


def test_top_up_while_unbonding_reverts(world: World) -> None:
    world.c.request_unbond(world.nodes[0])
    assert_reverts(lambda: world.c.top_up(world.nodes[0], 1), "Unbonding")


# ---- unbond and withdraw ----


def test_unbond_then_withdraw_pays_the_whole_stake(world: World) -> None:
    node = world.nodes[1]
    r1 = world.c.request_unbond(node)
    unbond_block = world.c.node(node.address).unbond_block
    assert unbond_block == r1["blockNumber"] + CONFIG.unbond_delay_blocks
    assert node.address not in [a for a, _ in world.c.candidates(MODEL)]
    world.chain.mine(unbond_block - world.next_block())  # the withdrawal lands exactly in unbond_block
    before, staked = world.balance(node.address), world.c.total_staked()
    r2 = world.c.withdraw_stake(node)
    assert r2["blockNumber"] == unbond_block
    assert world.balance(node.address) == before + STAKE - gas_cost(r2)
    assert world.c.total_staked() == staked - STAKE
    assert not world.c.node(node.address).registered
    # swap-and-pop removal keeps the others serving the model
    servers = list(world.c.nodes.functions.servers(MODEL).call())
    assert sorted(servers) == sorted(n.address for n in world.nodes if n is not node)
    world.assert_accounting()
    # and the address may register afresh
    world.c.register_node(node, MIN, "http://again", b"", [LONELY_MODEL])
    assert world.c.node(node.address).stake == MIN


def test_unbond_twice_reverts(world: World) -> None:
    world.c.request_unbond(world.nodes[0])
    assert_reverts(lambda: world.c.request_unbond(world.nodes[0]), "AlreadyUnbonding")


def test_unbond_unregistered_reverts(world: World) -> None:
    assert_reverts(lambda: world.c.request_unbond(world.free[0]), "NotRegistered")


def test_unbond_while_assigned_reverts(world: World) -> None:
    job_id = world.open_job(5)  # all five nodes drawn
    for node in world.nodes:
        assert world.c.node(node.address).open_jobs == 1
        assert_reverts(lambda n=node: world.c.request_unbond(n), "OpenJobs")
    assert world.c.quorum.job(job_id).n == 5


def test_withdraw_before_delay_reverts(world: World) -> None:
    node = world.nodes[0]
    world.c.request_unbond(node)
    world.chain.mine(CONFIG.unbond_delay_blocks - 2)  # the next block is unbond_block - 1
    assert world.next_block() == world.c.node(node.address).unbond_block - 1
    assert_reverts(lambda: world.c.withdraw_stake(node), "UnbondingDelay")


def test_withdraw_without_request_reverts(world: World) -> None:
    assert_reverts(lambda: world.c.withdraw_stake(world.nodes[0]), "UnbondNotRequested")


def test_withdraw_unregistered_reverts(world: World) -> None:
    assert_reverts(lambda: world.c.withdraw_stake(world.free[0]), "NotRegistered")


# ---- scheme powers ----


@pytest.mark.parametrize("call", ["lock", "unlock", "slash"])
def test_scheme_functions_refuse_other_callers(world: World, call: str) -> None:
    fns = world.c.nodes.functions
    target = world.nodes[0].address
    fn = {"lock": fns.lock(target), "unlock": fns.unlock(target), "slash": fns.slash(target, 10_000)}[call]
    for caller in (world.user, world.nodes[0], world.owner):  # even the owner is not a scheme
        assert_reverts(lambda c=caller: send(world.w3, fn, c), "NotScheme")
    assert world.c.stake_of(target) == STAKE


def test_set_scheme_by_non_owner_reverts(world: World) -> None:
    """Ownable's custom error (OwnableUnauthorizedAccount) carries no reason string; it must still revert."""
    fn = world.c.nodes.functions.setScheme(world.user.address, True)
    with pytest.raises(ContractRevert):
        send(world.w3, fn, world.user)
    assert not world.c.nodes.functions.isScheme(world.user.address).call()


def test_custom_error_revert_has_a_readable_reason(world: World) -> None:
    """OpenZeppelin's Ownable reverts with OwnableUnauthorizedAccount(address) (selector 0x118cdaa7)."""
    fn = world.c.nodes.functions.setScheme(world.user.address, True)
    with pytest.raises(ContractRevert) as exc:
        send(world.w3, fn, world.user)
    assert not exc.value.reason.startswith("b'")
    assert "OwnableUnauthorizedAccount" in exc.value.reason or "0x118cdaa7" in exc.value.reason


def test_set_scheme_zero_reverts(world: World) -> None:
    fn = world.c.nodes.functions.setScheme("0x" + "00" * 20, True)
    assert_reverts(lambda: send(world.w3, fn, world.owner), "ZeroScheme")


def test_an_authorised_scheme_locks_unlocks_and_slashes(world: World) -> None:
    scheme, node = world.free[0], world.nodes[0]
    fns = world.c.nodes.functions
    send(world.w3, fns.setScheme(scheme.address, True), world.owner)
    assert_reverts(lambda: send(world.w3, fns.unlock(node.address), scheme), "NotLocked")
    assert_reverts(lambda: send(world.w3, fns.lock(world.free[1].address), scheme), "NotRegistered")
    assert_reverts(lambda: send(world.w3, fns.slash(node.address, 10_001), scheme), "BpsAbove10000")
    send(world.w3, fns.lock(node.address), scheme)
    assert_reverts(lambda: world.c.request_unbond(node), "OpenJobs")
    send(world.w3, fns.unlock(node.address), scheme)
    before = world.balance(scheme.address)
    r = send(world.w3, fns.slash(node.address, 2_500), scheme)
    taken = STAKE * 2_500 // 10_000
    assert world.balance(scheme.address) == before + taken - gas_cost(r)
    assert world.c.stake_of(node.address) == STAKE - taken
    world.assert_accounting()
    # revoking the scheme takes its powers away again
    send(world.w3, fns.setScheme(scheme.address, False), world.owner)
    assert_reverts(lambda: send(world.w3, fns.lock(node.address), scheme), "NotScheme")


def test_node_slashed_below_minimum_is_no_longer_drawn(world: World) -> None:
    scheme, node = world.free[0], world.nodes[0]
    send(world.w3, world.c.nodes.functions.setScheme(scheme.address, True), world.owner)
    send(world.w3, world.c.nodes.functions.slash(node.address, 6_000), scheme)
    assert world.c.stake_of(node.address) < MIN
    assert node.address not in [a for a, _ in world.c.candidates(MODEL)]
    world.c.top_up(node, MIN)  # topping back up makes it eligible again
    assert node.address in [a for a, _ in world.c.candidates(MODEL)]
