"""Stateful property test: random sequences of operator, user and keeper actions keep every coin accounted.

A Python model tracks stakes, open jobs, escrowed fees and credits; after each step the contracts must
agree with it, the market must hold exactly escrow + credits, the registry exactly the stakes, and the
coin held by every account involved plus the gas they paid must never change.
VERIML_CHAIN_EXAMPLES=200 runs more sequences than the default 25 (a longer local soak).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_utils import is_address
from eth_utils.abi import get_abi_output_types
from hexbytes import HexBytes
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from web3 import Web3
from web3.logs import DISCARD

from veriml.chain.tx import send
from veriml.schemes.quorum import JobStatus
from veriml.verify.commitment import commitment
from veriml.verify.quorum import settlement, tally

from .conftest import CONFIG, INPUT, MODEL, PRICE, STAKE, World, digest_of, draw_mirror, gas_cost, seed_of

BURN_ADDRESS = "0x000000000000000000000000000000000000dEaD"  # JobEscrow.BURN_ADDRESS

GAS = 3_000_000  # explicit gas: send() skips its pre-flight call (each step here is valid by the model)
MIN = CONFIG.min_stake_wei
PICK = st.integers(min_value=0, max_value=2**16)
WRONG = [digest_of("wrong-a"), digest_of("wrong-b")]
BEHAVIOUR = st.sampled_from(["honest", "honest", "honest", "wrong-a", "wrong-b", "withhold", "silent"])


@dataclass
class NodeM:
    stake: int
    unbond_block: int = 0
    open_jobs: int = 0


@dataclass
class JobM:
    user: str
    n: int
    fee: int
    submit_block: int
    status: str = "submitted"  # submitted | assigned | final
    frozen: list[tuple[str, int]] = field(default_factory=list)  # candidates and stakes at submission
    drawn: list[str] = field(default_factory=list)
    commit_deadline: int = 0
    reveal_deadline: int = 0
    commits: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    withheld: set[str] = field(default_factory=set)  # committed, will never reveal
    silent: set[str] = field(default_factory=set)  # will never commit
    reveals: dict[str, bytes] = field(default_factory=dict)


def checksummed(value):
    """eth-abi decodes addresses in lower case; web3 (and our model) use EIP-55."""
    if isinstance(value, str) and is_address(value):
        return Web3.to_checksum_address(value)
    if isinstance(value, list | tuple):
        return type(value)(checksummed(v) for v in value)
    return value


def pick(options: list, i: int):
    """The i-th option (mod their number), or None when there is none.

    Rules pick among what is valid now instead of using preconditions: which nodes a job draws comes from
    random block hashes, so a precondition could change between a sequence's first run and its replay,
    and Hypothesis rejects data generation that depends on outside state. Without preconditions every
    rule draws the same arguments on every run, and one with nothing to act on does nothing."""
    return options[i % len(options)] if options else None


class MarketMachine(RuleBasedStateMachine):
    world: World  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        w = self.world
        self.w, self.c, self.w3 = w, w.c, w.w3
        self.tester = w.chain._tester
        self.snap = w.chain.snapshot()
        self.users = [w.user, w.owner]
        self.keeper = w.keeper
        self.pool: list[LocalAccount] = list(w.nodes) + list(w.free[:4])
        self.by_addr = {a.address: a for a in self.users + [self.keeper] + self.pool}
        self.nodes: dict[str, NodeM] = {n.address: NodeM(STAKE) for n in w.nodes}
        self.credits: dict[str, int] = dict.fromkeys(self.by_addr, 0)
        self.jobs: dict[int, JobM] = {}
        self.next_job = self.read(self.c.quorum.contract, "nextJobId")
        self.gas_spent = 0
        self.block = w.chain.block_number()
        # Coin held by every account and contract involved, re-read only where a step can move it (the
        # sender, the market, the registry): any other movement shows as coin missing from the total.
        self.holders = [*self.by_addr, w.market, w.registry, BURN_ADDRESS]
        self.balances = {a: self.c.balance(a) for a in self.holders}
        self.touched: set[str] = set()
        self.coin = sum(self.balances.values())
        assert self.read(self.c.quorum.contract, "totalEscrow") == self.c.quorum.total_escrow() == 0
        assert self.read(self.c.quorum.contract, "totalCredits") == self.c.quorum.total_credits() == 0
        assert self.read(self.c.nodes, "totalStaked") == self.c.total_staked() == 5 * STAKE

    def teardown(self) -> None:
        try:
            assert {a: self.c.balance(a) for a in self.holders} == self.balances  # nothing moved unseen
            for a in self.by_addr:  # the per-account view once per run (the books are checked every step)
                assert self.read(self.c.quorum.contract, "credits", a) == self.credits[a], a
                node = self.nodes.get(a, NodeM(0))
                (view,) = self.read(self.c.nodes, "getNode", a, single=False)
                assert (view[0], view[4], view[5]) == (node.stake, node.open_jobs, a in self.nodes), a
        finally:
            self.w.chain.revert(self.snap)

    # ---- helpers ----
    def read(self, contract, name: str, *args, single: bool = True):
        """A view call straight to eth-tester: the invariants read after every step, and web3's call
        path costs several times the EVM work here (the typed wrappers are covered by the other tests)."""
        data = contract.encode_abi(name, args=list(args))
        raw = self.tester.call({"from": self.keeper.address, "to": contract.address, "data": data}, "latest")
        types = get_abi_output_types(contract.get_function_by_name(name).abi)
        out = checksummed(self.w3.codec.decode(types, HexBytes(raw)))
        return out[0] if single else out

    def tx(self, fn, account: LocalAccount, value: int = 0):
        receipt = send(self.w3, fn, account, value=value, gas=GAS)
        self.gas_spent += gas_cost(receipt)
        self.touched.add(account.address)
        self.block = int(receipt["blockNumber"])
        return receipt

    @property
    def next_block(self) -> int:
        return self.block + 1

    def eligible(self) -> list[str]:
        return sorted(a for a, n in self.nodes.items() if n.unbond_block == 0 and n.stake >= MIN)

    def jobs_in(self, status: str) -> list[int]:
        return sorted(i for i, j in self.jobs.items() if j.status == status)

    def committable(self) -> list[tuple[int, str]]:
        return [
            (i, a)
            for i in self.jobs_in("assigned")
            if self.next_block <= self.jobs[i].commit_deadline
            for a in self.jobs[i].drawn
            if a not in self.jobs[i].commits and a not in self.jobs[i].silent
        ]

    def revealable(self) -> list[tuple[int, str]]:
        out = []
        for i in self.jobs_in("assigned"):
            j = self.jobs[i]
            is_open = len(j.commits) == j.n or self.next_block > j.commit_deadline
            if is_open and self.next_block <= j.reveal_deadline:
                out += [(i, a) for a in j.drawn if a in j.commits and a not in j.reveals and a not in j.withheld]
        return out

    def finalizable(self) -> list[int]:
        return [
            i
            for i in self.jobs_in("assigned")
            if len(self.jobs[i].reveals) == self.jobs[i].n or self.next_block > self.jobs[i].reveal_deadline
        ]

    # ---- a job's lifecycle, one phase per call ----
    def do_assign(self, job_id: int) -> None:
        job = self.jobs[job_id]
        if self.next_block <= job.submit_block:
            self.mine(1)  # assignment needs a block after the submission's
        # the draw is over the candidates frozen at submission; one that has left since weighs nothing
        live = [(a, w if a in self.nodes else 0) for a, w in job.frozen]
        expired = self.next_block > job.submit_block + 256
        cands, weights = [a for a, _ in job.frozen], [w for _, w in job.frozen]
        receipt = self.tx(self.c.quorum.contract.functions.assign(job_id, cands, weights), self.keeper)
        view = self.c.quorum.job(job_id)  # the typed view, once per assignment
        if expired or sum(1 for _, w in live if w) < job.n:
            event("refunded: expired" if expired else "refunded: too few nodes")
            assert view.status == JobStatus.REFUNDED
            job.status = "final"
            self.credits[job.user] += job.fee
            return
        assert view.status == JobStatus.ASSIGNED
        job.drawn = list(self.read(self.c.quorum.contract, "assignedNodes", job_id))
        assert job.drawn == draw_mirror(live, job.n, seed_of(self.w3, job.submit_block, job_id))
        job.status = "assigned"
        job.commit_deadline, job.reveal_deadline = view.commit_deadline, view.reveal_deadline
        assert job.commit_deadline == receipt["blockNumber"] + CONFIG.schemes["quorum"]["commit_window_blocks"]
        for a in job.drawn:
            self.nodes[a].open_jobs += 1

    def do_commit(self, job_id: int, count: int, plan: list[str]) -> None:
        """Up to `count` nodes that have not acted yet act by `plan`: commit the right digest, one of two
        wrong ones, commit and never reveal ("withhold"), or never commit ("silent")."""
        job = self.jobs[job_id]
        waiting = [a for a in job.drawn if a not in job.commits and a not in job.silent]
        for addr, behaviour in list(zip(waiting, plan, strict=False))[:count]:
            if self.next_block > job.commit_deadline:
                break  # each commit takes a block; the window may close on the way
            if behaviour == "silent":
                job.silent.add(addr)
                continue
            digest = {"wrong-a": WRONG[0], "wrong-b": WRONG[1]}.get(behaviour, digest_of(job_id))
            salt = keccak(f"salt-{job_id}-{addr}".encode())
            cm = commitment(self.w.chain.chain_id, self.w.market, job_id, addr, digest, salt)
            self.tx(self.c.quorum.contract.functions.commit(job_id, cm), self.by_addr[addr])
            job.commits[addr] = (digest, salt)
            if behaviour == "withhold":
                job.withheld.add(addr)

    def do_reveal(self, job_id: int, count: int) -> None:
        job = self.jobs[job_id]
        for _ in range(count):
            ready = [a for j, a in self.revealable() if j == job_id]  # re-checked: each reveal takes a block
            if not ready:
                break
            digest, salt = job.commits[ready[0]]
            fn = self.c.quorum.contract.functions.reveal(job_id, digest, salt, keccak(b"output" + digest))
            self.tx(fn, self.by_addr[ready[0]])
            job.reveals[ready[0]] = digest

    def do_finalize(self, job_id: int) -> None:
        job = self.jobs[job_id]
        result = tally([job.reveals.get(a) for a in job.drawn], "exact", 0)
        slashed = {job.drawn[k]: self.nodes[job.drawn[k]].stake * CONFIG.slash_bps // 10_000 for k in result.slashed}
        each, refund = settlement(job.fee, job.n, len(result.winners), sum(slashed.values()))
        self.tx(self.c.quorum.contract.functions.finalize(job_id), self.keeper)
        job.status = "final"
        for a in job.drawn:
            self.nodes[a].open_jobs -= 1
            self.nodes[a].stake -= slashed.get(a, 0)
        for k in result.winners:
            self.credits[job.drawn[k]] += each
        self.credits[job.user] += refund
        (view,) = self.read(self.c.quorum.contract, "getJob", job_id, single=False)
        event(f"finalized: {'verified' if result.majority else 'disputed'}, {len(result.slashed)} slashed")
        assert view[4] == (JobStatus.VERIFIED if result.majority else JobStatus.DISPUTED)
        for a in set(job.drawn) | {job.user}:
            assert self.read(self.c.quorum.contract, "credits", a) == self.credits[a], a
        for a in job.drawn:
            assert self.read(self.c.nodes, "stakeOf", a) == self.nodes[a].stake, a

    @rule(
        i=PICK,
        n=st.sampled_from([3, 1, 5]),
        count=st.integers(min_value=1, max_value=5),
        plan=st.lists(BEHAVIOUR, min_size=5, max_size=5),
    )
    def advance_a_job(self, i: int, n: int, count: int, plan: list[str]) -> None:
        """Take one open job through its next phase (submit if there is none, assign, commit, reveal,
        finalize), mining up to the phase's block when it must wait. Random single steps rarely finish a
        job within 30 steps; repeated, this one runs whole lifecycles."""
        job_id = pick(sorted(j for j, job in self.jobs.items() if job.status != "final"), i)
        if job_id is None:
            self.submit(i, n, 0)
            return
        job = self.jobs[job_id]
        if job.status == "submitted":
            self.do_assign(job_id)
        elif any(j == job_id for j, _ in self.committable()):
            self.do_commit(job_id, count, plan)
        elif any(j == job_id for j, _ in self.revealable()):
            self.do_reveal(job_id, count)
        elif job_id in self.finalizable():
            self.do_finalize(job_id)
        elif self.next_block <= job.commit_deadline:
            self.mine(job.commit_deadline + 1 - self.next_block)  # silent nodes: wait out the commit window
        else:
            self.mine(job.reveal_deadline + 1 - self.next_block)  # withheld reveals: wait out the window

    # ---- single steps ----
    @rule(i=PICK)
    def assign(self, i: int) -> None:
        job_id = pick(self.jobs_in("submitted"), i)
        if job_id is not None:
            self.do_assign(job_id)

    @rule(i=PICK, count=st.integers(min_value=1, max_value=5), plan=st.lists(BEHAVIOUR, min_size=5, max_size=5))
    def commit(self, i: int, count: int, plan: list[str]) -> None:
        job_id = pick(sorted({j for j, _ in self.committable()}), i)
        if job_id is not None:
            self.do_commit(job_id, count, plan)

    @rule(i=PICK, count=st.integers(min_value=1, max_value=5))
    def reveal(self, i: int, count: int) -> None:
        job_id = pick(sorted({j for j, _ in self.revealable()}), i)
        if job_id is not None:
            self.do_reveal(job_id, count)

    @rule(i=PICK)
    def finalize(self, i: int) -> None:
        job_id = pick(self.finalizable(), i)
        if job_id is not None:
            self.do_finalize(job_id)

    # 257 blocks expire every unassigned job's randomness; rare, since mining that many is slow here
    @rule(k=st.sampled_from([1, 1, 2, 2, 3, 4, 6, 8, 8, 8, 8, 8] * 2 + [257]))
    def mine(self, k: int) -> None:
        self.w.chain.mine(k)
        self.block += k

    # ---- users ----
    @rule(i=PICK, n=st.sampled_from([1, 3, 5]), extra=st.integers(min_value=0, max_value=10**6))
    def submit(self, i: int, n: int, extra: int) -> None:
        n = min(n, len(self.eligible()) - (1 - len(self.eligible()) % 2))  # odd and <= eligible nodes
        if n < 1:
            return  # with no eligible node the contract refuses ("TooFewNodes"); the revert tests cover it
        user = pick(self.users, i)
        fee = PRICE * n + extra
        fn = self.c.quorum.contract.functions.submit(MODEL, INPUT, b"", n)
        receipt = self.tx(fn, user, value=fee)
        (frozen,) = self.c.quorum.contract.events.CandidatesFrozen().process_receipt(receipt, errors=DISCARD)
        assert frozen["args"]["jobId"] == self.next_job
        job = JobM(user.address, n, fee, receipt["blockNumber"])
        job.frozen = list(zip(frozen["args"]["candidates"], frozen["args"]["weights"], strict=True))
        assert sorted(a for a, _ in job.frozen) == self.eligible()
        assert all(self.nodes[a].stake == w for a, w in job.frozen)
        self.jobs[self.next_job] = job
        self.next_job += 1

    @rule(i=PICK)
    def withdraw(self, i: int) -> None:
        addr = pick(sorted(a for a, c in self.credits.items() if c > 0), i)
        if addr is None:
            return
        before = self.c.balance(addr)
        receipt = self.tx(self.c.quorum.contract.functions.withdraw(), self.by_addr[addr])
        assert self.c.balance(addr) == before + self.credits[addr] - gas_cost(receipt)
        self.credits[addr] = 0

    # ---- operators ----
    @rule(i=PICK, extra=st.integers(min_value=0, max_value=2 * 10**18))
    def register_node(self, i: int, extra: int) -> None:
        acct = pick([a for a in self.pool if a.address not in self.nodes], i)
        if acct is None:
            return
        self.tx(self.c.nodes.functions.register("http://node", b"", [MODEL]), acct, value=MIN + extra)
        self.nodes[acct.address] = NodeM(MIN + extra)

    @rule(i=PICK, amount=st.integers(min_value=1, max_value=10**18))
    def top_up(self, i: int, amount: int) -> None:
        addr = pick(sorted(a for a, n in self.nodes.items() if n.unbond_block == 0), i)
        if addr is None:
            return
        self.tx(self.c.nodes.functions.topUp(), self.by_addr[addr], value=amount)
        self.nodes[addr].stake += amount

    @rule(i=PICK)
    def request_unbond(self, i: int) -> None:
        addr = pick(sorted(a for a, n in self.nodes.items() if n.unbond_block == 0 and n.open_jobs == 0), i)
        if addr is None:
            return
        receipt = self.tx(self.c.nodes.functions.requestUnbond(), self.by_addr[addr])
        self.nodes[addr].unbond_block = receipt["blockNumber"] + CONFIG.unbond_delay_blocks

    @rule(i=PICK)
    def withdraw_stake(self, i: int) -> None:
        # an unbonding node can still be drawn for jobs submitted before it asked (frozen candidates)
        ready = [a for a, n in self.nodes.items() if 0 < n.unbond_block <= self.next_block and n.open_jobs == 0]
        addr = pick(sorted(ready), i)
        if addr is None:
            return
        before = self.c.balance(addr)
        receipt = self.tx(self.c.nodes.functions.withdrawStake(), self.by_addr[addr])
        stake = self.nodes.pop(addr).stake
        event("stake withdrawn")
        assert self.c.balance(addr) == before + stake - gas_cost(receipt)

    # ---- the books ----
    @invariant()
    def books_balance(self) -> None:
        escrow, credits = (
            self.read(self.c.quorum.contract, "totalEscrow"),
            self.read(self.c.quorum.contract, "totalCredits"),
        )
        staked = self.read(self.c.nodes, "totalStaked")
        assert self.c.balance(self.w.market) == escrow + credits
        assert escrow == sum(j.fee for j in self.jobs.values() if j.status != "final")
        assert credits == sum(self.credits.values())
        assert self.c.balance(self.w.registry) == staked == sum(n.stake for n in self.nodes.values())
        # no coin appears or disappears: what the accounts and contracts hold changes only by gas paid
        # (burned coin is sent to BURN_ADDRESS, which counts as an account here)
        for a in self.touched | {self.w.market, self.w.registry, BURN_ADDRESS}:
            self.balances[a] = self.c.balance(a)
        self.touched.clear()
        assert sum(self.balances.values()) + self.gas_spent == self.coin


def test_market_books_under_random_actions(world: World) -> None:
    MarketMachine.world = world
    run_state_machine_as_test(
        MarketMachine,
        settings=settings(
            max_examples=int(os.environ.get("VERIML_CHAIN_EXAMPLES", 25)),
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            # The embedded chain's block hashes are random (eth-tester draws each block's mix_hash from
            # os.urandom), so replaying a sequence need not redo its draws: shrinking and the example
            # database would chase different chains. A failure prints its whole (<= 30 step) sequence.
            phases=[Phase.explicit, Phase.generate],
            database=None,
        ),
    )


def test_model_starts_from_the_base_world(world: World) -> None:
    """The machine's starting point: five nodes at STAKE, no jobs, no credits."""
    assert sorted(world.c.stake_of(n.address) for n in world.nodes) == [STAKE] * 5
    assert world.c.quorum.total_escrow() == world.c.quorum.total_credits() == 0
