"""Stateful property test: random sequences of operator, user and keeper actions keep every coin accounted.

A Python model tracks stakes, open jobs, escrowed fees and credits; after each step the contracts must
agree with it, the market must hold exactly escrow + credits, the registry exactly the stakes, and the
coin held by every account involved plus the gas they paid must never change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test

from veriml.chain.contracts import JobStatus
from veriml.chain.tx import send
from veriml.verify.commitment import commitment
from veriml.verify.quorum import settlement, tally

from .conftest import CONFIG, INPUT, MODEL, PRICE, STAKE, World, digest_of, draw_mirror, gas_cost, seed_of

GAS = 3_000_000  # explicit: skips estimation, so a step costs one execution; every step here is valid
MIN = CONFIG.min_stake_wei
PICK = st.integers(min_value=0, max_value=2**16)
WRONG = [digest_of("wrong-a"), digest_of("wrong-b")]


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
    drawn: list[str] = field(default_factory=list)
    commit_deadline: int = 0
    reveal_deadline: int = 0
    commits: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    withheld: set[str] = field(default_factory=set)
    reveals: dict[str, bytes] = field(default_factory=dict)


def pick(options: list, i: int):
    return options[i % len(options)]


class MarketMachine(RuleBasedStateMachine):
    world: World  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        w = self.world
        self.w, self.c, self.w3 = w, w.c, w.w3
        self.snap = w.chain.snapshot()
        self.users = [w.user, w.owner]
        self.keeper = w.keeper
        self.pool: list[LocalAccount] = list(w.nodes) + list(w.free[:4])
        self.by_addr = {a.address: a for a in self.users + [self.keeper] + self.pool}
        self.nodes: dict[str, NodeM] = {n.address: NodeM(self.c.stake_of(n.address)) for n in w.nodes}
        self.credits: dict[str, int] = dict.fromkeys(self.by_addr, 0)
        self.jobs: dict[int, JobM] = {}
        self.next_job = self.c.market.functions.nextJobId().call()
        self.gas_spent = 0
        self.block = w.chain.block_number()
        self.coin = self.total_coin()
        assert self.c.total_escrow() == 0 and self.c.total_credits() == 0

    def teardown(self) -> None:
        try:
            for a in self.by_addr:  # the per-account view, once per run: it is the slow one
                assert self.c.credits(a) == self.credits[a], a
                stake = self.nodes[a].stake if a in self.nodes else 0
                assert self.c.stake_of(a) == stake, a
                assert self.c.node(a).open_jobs == (self.nodes[a].open_jobs if a in self.nodes else 0), a
        finally:
            self.w.chain.revert(self.snap)

    # ---- helpers ----
    def tx(self, fn, account: LocalAccount, value: int = 0):
        receipt = send(self.w3, fn, account, value=value, gas=GAS)
        self.gas_spent += gas_cost(receipt)
        self.block = int(receipt["blockNumber"])
        return receipt

    @property
    def next_block(self) -> int:
        return self.block + 1

    def total_coin(self) -> int:
        addrs = list(self.by_addr) + [self.w.market, self.w.registry]
        return sum(self.c.balance(a) for a in addrs)

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
            if a not in self.jobs[i].commits
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

    # ---- operators ----
    @precondition(lambda self: any(a.address not in self.nodes for a in self.pool))
    @rule(i=PICK, extra=st.integers(min_value=0, max_value=2 * 10**18))
    def register_node(self, i: int, extra: int) -> None:
        acct = pick([a for a in self.pool if a.address not in self.nodes], i)
        self.tx(self.c.nodes.functions.register("http://node", b"", [MODEL]), acct, value=MIN + extra)
        self.nodes[acct.address] = NodeM(MIN + extra)

    @precondition(lambda self: any(n.unbond_block == 0 for n in self.nodes.values()))
    @rule(i=PICK, amount=st.integers(min_value=1, max_value=10**18))
    def top_up(self, i: int, amount: int) -> None:
        addr = pick(sorted(a for a, n in self.nodes.items() if n.unbond_block == 0), i)
        self.tx(self.c.nodes.functions.topUp(), self.by_addr[addr], value=amount)
        self.nodes[addr].stake += amount

    @precondition(lambda self: any(n.unbond_block == 0 and n.open_jobs == 0 for n in self.nodes.values()))
    @rule(i=PICK)
    def request_unbond(self, i: int) -> None:
        addr = pick(sorted(a for a, n in self.nodes.items() if n.unbond_block == 0 and n.open_jobs == 0), i)
        receipt = self.tx(self.c.nodes.functions.requestUnbond(), self.by_addr[addr])
        self.nodes[addr].unbond_block = receipt["blockNumber"] + CONFIG.unbond_delay_blocks

    @precondition(lambda self: any(0 < n.unbond_block <= self.next_block for n in self.nodes.values()))
    @rule(i=PICK)
    def withdraw_stake(self, i: int) -> None:
        addr = pick(sorted(a for a, n in self.nodes.items() if 0 < n.unbond_block <= self.next_block), i)
        assert self.nodes[addr].open_jobs == 0
        before = self.c.balance(addr)
        receipt = self.tx(self.c.nodes.functions.withdrawStake(), self.by_addr[addr])
        stake = self.nodes.pop(addr).stake
        assert self.c.balance(addr) == before + stake - gas_cost(receipt)

    # ---- users ----
    @rule(i=PICK, n=st.sampled_from([1, 3, 5]), extra=st.integers(min_value=0, max_value=10**6))
    def submit(self, i: int, n: int, extra: int) -> None:
        if len(self.eligible()) < n:
            return  # the contract would refuse ("too few nodes"); the revert tests cover that
        user = pick(self.users, i)
        fee = PRICE * n + extra
        fn = self.c.market.functions.submit(MODEL, INPUT, b"", 0, n)
        receipt = self.tx(fn, user, value=fee)
        self.jobs[self.next_job] = JobM(user.address, n, fee, receipt["blockNumber"])
        self.next_job += 1

    @precondition(lambda self: any(a in self.credits and c > 0 for a, c in self.credits.items()))
    @rule(i=PICK)
    def withdraw(self, i: int) -> None:
        addr = pick(sorted(a for a, c in self.credits.items() if c > 0), i)
        before = self.c.balance(addr)
        receipt = self.tx(self.c.market.functions.withdraw(), self.by_addr[addr])
        assert self.c.balance(addr) == before + self.credits[addr] - gas_cost(receipt)
        self.credits[addr] = 0

    # ---- keeper and chain ----
    @rule(k=st.sampled_from([1, 1, 2, 3, 4, 6, 8, 8, 8, 257]))
    def mine(self, k: int) -> None:
        self.w.chain.mine(k)
        self.block += k

    @precondition(lambda self: bool(self.jobs_in("submitted")))
    @rule(i=PICK)
    def assign(self, i: int) -> None:
        job_id = pick(self.jobs_in("submitted"), i)
        job = self.jobs[job_id]
        self.w.chain.mine(1)  # never the submission block
        self.block += 1
        candidates = self.c.candidates(MODEL)
        assert sorted(a for a, _ in candidates) == self.eligible()
        assert all(self.nodes[a].stake == w for a, w in candidates)
        expired = self.next_block > job.submit_block + 256
        receipt = self.tx(self.c.market.functions.assign(job_id), self.keeper)
        view = self.c.job(job_id)
        if expired or len(candidates) < job.n:
            assert view.status == JobStatus.REFUNDED
            job.status = "final"
            self.credits[job.user] += job.fee
            return
        assert view.status == JobStatus.ASSIGNED
        job.drawn = self.c.assigned_nodes(job_id)
        assert job.drawn == draw_mirror(candidates, job.n, seed_of(self.w3, job.submit_block, job_id))
        job.status = "assigned"
        job.commit_deadline, job.reveal_deadline = view.commit_deadline, view.reveal_deadline
        assert job.commit_deadline == receipt["blockNumber"] + CONFIG.commit_window_blocks
        for a in job.drawn:
            self.nodes[a].open_jobs += 1

    # ---- nodes ----
    @precondition(lambda self: bool(self.committable()))
    @rule(i=PICK, behaviour=st.sampled_from(["honest", "honest", "wrong-a", "wrong-b", "withhold"]), salt=PICK)
    def commit(self, i: int, behaviour: str, salt: int) -> None:
        job_id, addr = pick(self.committable(), i)
        job = self.jobs[job_id]
        digest = {"wrong-a": WRONG[0], "wrong-b": WRONG[1]}.get(behaviour, digest_of(job_id))
        salt_bytes = salt.to_bytes(32, "big")
        cm = commitment(self.w.chain.chain_id, self.w.market, job_id, addr, digest, salt_bytes)
        self.tx(self.c.market.functions.commit(job_id, cm), self.by_addr[addr])
        job.commits[addr] = (digest, salt_bytes)
        if behaviour == "withhold":
            job.withheld.add(addr)

    @precondition(lambda self: bool(self.revealable()))
    @rule(i=PICK)
    def reveal(self, i: int) -> None:
        job_id, addr = pick(self.revealable(), i)
        job = self.jobs[job_id]
        digest, salt = job.commits[addr]
        self.tx(self.c.market.functions.reveal(job_id, digest, salt), self.by_addr[addr])
        job.reveals[addr] = digest

    @precondition(lambda self: bool(self.finalizable()))
    @rule(i=PICK)
    def finalize(self, i: int) -> None:
        job_id = pick(self.finalizable(), i)
        job = self.jobs[job_id]
        result = tally([job.reveals.get(a) for a in job.drawn], "exact", 0)
        slashed = {job.drawn[k]: self.nodes[job.drawn[k]].stake * CONFIG.slash_bps // 10_000 for k in result.slashed}
        each, refund = settlement(job.fee, job.n, len(result.winners), sum(slashed.values()))
        self.tx(self.c.market.functions.finalize(job_id), self.keeper)
        job.status = "final"
        for a in job.drawn:
            self.nodes[a].open_jobs -= 1
            self.nodes[a].stake -= slashed.get(a, 0)
        for k in result.winners:
            self.credits[job.drawn[k]] += each
        self.credits[job.user] += refund
        view = self.c.job(job_id)
        assert view.status == (JobStatus.VERIFIED if result.majority else JobStatus.DISPUTED)
        for a in set(job.drawn) | {job.user}:
            assert self.c.credits(a) == self.credits[a], a
        for a in job.drawn:
            assert self.c.stake_of(a) == self.nodes[a].stake, a

    # ---- the books ----
    @invariant()
    def books_balance(self) -> None:
        escrow, credits, staked = self.c.total_escrow(), self.c.total_credits(), self.c.total_staked()
        assert self.c.balance(self.w.market) == escrow + credits
        assert escrow == sum(j.fee for j in self.jobs.values() if j.status != "final")
        assert credits == sum(self.credits.values())
        assert self.c.balance(self.w.registry) == staked == sum(n.stake for n in self.nodes.values())

    @invariant()
    def no_coin_disappears(self) -> None:
        assert self.total_coin() + self.gas_spent == self.coin


def test_market_books_under_random_actions(world: World) -> None:
    MarketMachine.world = world
    run_state_machine_as_test(
        MarketMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


def test_model_starts_from_the_base_world(world: World) -> None:
    """The machine's starting point: five nodes at STAKE, no jobs, no credits."""
    assert sorted(world.c.stake_of(n.address) for n in world.nodes) == [STAKE] * 5
    assert world.c.total_escrow() == world.c.total_credits() == 0
