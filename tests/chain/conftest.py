"""Chain-tier fixtures: one embedded chain per session, snapshotted and reverted around each test.

The base state is the deployed contracts, one `exact` model (MODEL) served by five equally staked
nodes, a `phash` model (PHASH_MODEL) served by nobody, and a model nobody serves (LONELY_MODEL).
Accounts: 0 deploys and owns the models, 1 is the user, 2 the keeper who calls assign/finalize, 3..7
are the serving nodes, 8..23 are free for a test to use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from veriml.chain.artifacts import load_artifact
from veriml.chain.backends import Chain, embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, Deployment, deploy
from veriml.schemes.quorum import JobStatus
from veriml.verify.commitment import commitment, new_salt
from veriml.verify.digest import exact_digest
from veriml.verify.quorum import Tally, distributable, settlement, tally

PRICE = 10**15  # wei per node per job
# Odd half of an even stake: slashing 50% of STAKE gives 10**18 + 1, so two winners leave 1 wei of dust.
STAKE = 2 * 10**18 + 2
# No burn here, so the wei-exact expectations below read simply; tests/chain/test_slash_rules.py covers the burn.
CONFIG = DeployConfig(min_stake_wei=10**18, unbond_delay_blocks=5, slash_bps=5_000, burn_bps=0).with_scheme(
    "quorum", commit_window_blocks=6, reveal_window_blocks=6
)
MODEL = keccak(b"veriml/test/model-exact")
PHASH_MODEL = keccak(b"veriml/test/model-phash")
LONELY_MODEL = keccak(b"veriml/test/model-unserved")
WEIGHTS_ROOT = keccak(b"veriml/test/weights")
INPUT = keccak(b"veriml/test/input")
NODE_SLOTS = range(3, 8)
FREE_SLOTS = range(8, 24)


def gas_cost(receipt: Any) -> int:
    """Wei an account paid for a mined transaction."""
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def digest_of(label: str | int) -> bytes:
    return exact_digest(f"output-{label}".encode())


def draw_mirror(candidates: list[tuple[str, int]], n: int, seed: bytes) -> list[str]:
    """Python copy of StakeDraw.draw: n picks without replacement, each weighted by stake."""
    addrs = [a for a, _ in candidates]
    weights = [w for _, w in candidates]
    total, drawn = sum(weights), []
    for k in range(n):
        r = int.from_bytes(keccak(encode(["bytes32", "uint256"], [seed, k])), "big") % total
        acc = 0
        for i, w in enumerate(weights):
            if w == 0:
                continue
            acc += w
            if r < acc:
                drawn.append(addrs[i])
                total -= w
                weights[i] = 0
                break
    return drawn


def seed_of(w3: Web3, submit_block: int, job_id: int) -> bytes:
    """BlockhashRandomness.seed: keccak(abi.encode(blockhash(submitBlock), jobId))."""
    block_hash = bytes(w3.eth.get_block(submit_block)["hash"])
    return keccak(encode(["bytes32", "uint256"], [block_hash, job_id]))


@dataclass(frozen=True)
class Withhold:
    """In a `World.play` plan: a node that commits `digest` but never reveals it."""

    digest: bytes


@dataclass
class World:
    """The deployed contracts plus helpers that drive a quorum job step by step."""

    chain: Chain
    deployment: Deployment
    c: Contracts
    owner: LocalAccount
    user: LocalAccount
    keeper: LocalAccount
    nodes: list[LocalAccount]
    free: list[LocalAccount]
    salts: dict[tuple[int, str], tuple[bytes, bytes]] = field(default_factory=dict)

    # ---- accessors ----
    @property
    def w3(self) -> Web3:
        return self.chain.w3

    @property
    def market(self) -> str:
        return self.deployment.schemes["quorum"]

    @property
    def registry(self) -> str:
        return self.deployment.node_registry

    def account(self, address: str) -> LocalAccount:
        for a in self.chain.accounts:
            if a.address == Web3.to_checksum_address(address):
                return a
        raise KeyError(address)

    def bind(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_artifact(name).abi)

    def balance(self, address: str) -> int:
        return self.c.balance(address)

    def next_block(self) -> int:
        """The block the next transaction will be mined in (eth-tester mines one block per transaction)."""
        return self.chain.block_number() + 1

    def leave(self, node: LocalAccount) -> None:
        """Unbond and withdraw the whole stake. Within one job's 256-block assignment horizon only because
        CONFIG's unbond delay (5) is short; deploy's default delay (300) rules that out."""
        self.c.request_unbond(node)
        self.chain.mine(CONFIG.unbond_delay_blocks)
        self.c.withdraw_stake(node)

    # ---- job steps ----
    def submit(self, n: int, fee: int | None = None, user: LocalAccount | None = None, model: bytes = MODEL) -> int:
        job_id, _ = self.c.quorum.submit(user or self.user, model, INPUT, b"", n, PRICE * n if fee is None else fee)
        return job_id

    def open_job(self, n: int, fee: int | None = None, user: LocalAccount | None = None, model: bytes = MODEL) -> int:
        """Submit, then assign in the next block."""
        job_id = self.submit(n, fee, user, model)
        self.c.quorum.assign(self.keeper, job_id)
        assert self.c.quorum.job(job_id).status == JobStatus.ASSIGNED
        return job_id

    def drawn(self, job_id: int) -> list[LocalAccount]:
        return [self.account(a) for a in self.c.quorum.assigned_nodes(job_id)]

    def commit(self, job_id: int, node: LocalAccount, digest: bytes, salt: bytes | None = None) -> bytes:
        salt = salt or new_salt()
        cm = commitment(self.chain.chain_id, self.market, job_id, node.address, digest, salt)
        self.c.quorum.commit(node, job_id, cm)
        self.salts[(job_id, node.address)] = (digest, salt)
        return cm

    def reveal(self, job_id: int, node: LocalAccount) -> None:
        digest, salt = self.salts[(job_id, node.address)]
        self.c.quorum.reveal(node, job_id, digest, salt)

    # Both leave the head at the deadline, so the next transaction is the first one past it.
    def mine_past_commit(self, job_id: int) -> None:
        self.chain.mine(max(0, self.c.quorum.job(job_id).commit_deadline - self.chain.block_number()))

    def mine_past_reveal(self, job_id: int) -> None:
        self.chain.mine(max(0, self.c.quorum.job(job_id).reveal_deadline - self.chain.block_number()))

    def play(self, job_id: int, plan: list[bytes | Withhold | None]) -> list[bytes | None]:
        """Drive the drawn nodes in order: a digest is committed and revealed, `Withhold(d)` commits d and
        never reveals, None never commits. Returns the reveals in drawn order (None: not revealed)."""
        drawn = self.drawn(job_id)
        assert len(plan) == len(drawn)
        for node, p in zip(drawn, plan, strict=True):
            if p is not None:
                self.commit(job_id, node, p.digest if isinstance(p, Withhold) else p)
        if None in plan:
            self.mine_past_commit(job_id)  # reveals open once every commit is in or the window has closed
        reveals: list[bytes | None] = []
        for node, p in zip(drawn, plan, strict=True):
            if isinstance(p, bytes):
                self.reveal(job_id, node)
            reveals.append(p if isinstance(p, bytes) else None)
        return reveals

    def finalize_checked(self, job_id: int, reveals: list[bytes | None]) -> tuple[Tally, int, int]:
        """Finalize and check the contract's settlement against veriml.verify.quorum to the wei.

        Returns (tally, each winner's credit, the user's refund)."""
        job = self.c.quorum.job(job_id)
        drawn = self.drawn(job_id)
        if job.reveals < job.n:
            self.mine_past_reveal(job_id)
        expected = tally(reveals, job.policy, job.threshold)
        stakes = {a.address: self.c.stake_of(a.address) for a in drawn}
        slashed = {drawn[i].address: stakes[drawn[i].address] * CONFIG.slash_bps // 10_000 for i in expected.slashed}
        paid_on = sum(distributable(v, CONFIG.burn_bps) for v in slashed.values())
        each, refund = settlement(job.fee, job.n, len(expected.winners), paid_on)
        involved = {a.address for a in drawn} | {job.user}
        credits = {a: self.c.quorum.credits(a) for a in involved}
        staked, escrow, total_credits = (
            self.c.total_staked(),
            self.c.quorum.total_escrow(),
            self.c.quorum.total_credits(),
        )

        receipt = self.c.quorum.finalize(self.keeper, job_id)

        after = self.c.quorum.job(job_id)
        assert after.status == (JobStatus.VERIFIED if expected.majority else JobStatus.DISPUTED)
        assert after.result_digest == (expected.digest if expected.majority else bytes(32))
        winners = {drawn[i].address for i in expected.winners}
        for a in involved:
            gain = (each if a in winners else 0) + (refund if a == job.user else 0)
            assert self.c.quorum.credits(a) == credits[a] + gain, a
        for a in drawn:
            assert self.c.stake_of(a.address) == stakes[a.address] - slashed.get(a.address, 0)
            assert self.c.node(a.address).open_jobs == 0
        assert self.c.total_staked() == staked - sum(slashed.values())
        assert self.c.quorum.total_escrow() == escrow - job.fee
        assert self.c.quorum.total_credits() == total_credits + each * len(expected.winners) + refund
        (event,) = self.c.quorum.contract.events.JobFinalized().process_receipt(receipt, errors=DISCARD)
        assert list(event["args"]["winners"]) == [drawn[i].address for i in expected.winners]
        assert list(event["args"]["slashed"]) == [drawn[i].address for i in expected.slashed]
        assert event["args"]["refund"] == refund
        self.assert_accounting()
        return expected, each, refund

    def withdraw_checked(self, account: LocalAccount, expected: int) -> None:
        """Withdraw `account`'s credit and check it arrives to the wei."""
        assert self.c.quorum.credits(account.address) == expected
        before = self.balance(account.address)
        receipt = self.c.quorum.withdraw(account)
        assert self.balance(account.address) == before + expected - gas_cost(receipt)
        assert self.c.quorum.credits(account.address) == 0
        self.assert_accounting()

    def assert_accounting(self) -> None:
        """The market holds exactly escrow + credits; the registry holds exactly the stakes."""
        assert self.balance(self.market) == self.c.quorum.total_escrow() + self.c.quorum.total_credits()
        assert self.balance(self.registry) == self.c.total_staked()


@pytest.fixture(scope="session")
def base_world() -> World:
    chain = embedded_chain()
    acc = chain.accounts
    deployment = deploy(chain, acc[0], CONFIG)
    c = Contracts(chain, deployment)
    c.register_model(acc[0], MODEL, WEIGHTS_ROOT, "exact", 0, PRICE)
    c.register_model(acc[0], PHASH_MODEL, WEIGHTS_ROOT, "phash", 4, PRICE)
    c.register_model(acc[0], LONELY_MODEL, WEIGHTS_ROOT, "exact", 0, PRICE)
    nodes = [acc[i] for i in NODE_SLOTS]
    for i, node in enumerate(nodes):
        c.register_node(node, STAKE, f"http://127.0.0.1:{9000 + i}", b"", [MODEL])
    return World(chain, deployment, c, acc[0], acc[1], acc[2], nodes, [acc[i] for i in FREE_SLOTS])


@pytest.fixture
def world(base_world: World) -> Iterator[World]:
    """The base world; every change a test makes is reverted afterwards."""
    snap = base_world.chain.snapshot()
    try:
        yield base_world
    finally:
        base_world.chain.revert(snap)
        base_world.salts.clear()
