"""Books of the optimistic scheme (issue 10.5): random sequences of user, executor, challenger, keeper and
operator actions on OptimisticJobs keep every wei accounted.

A Python model of the contract's rules (stakes, locks, escrowed fees, challenge bonds, credits, the burned
share of every slash, the bisection game and its one-step check, every window) predicts each step; after
every step the contract must hold exactly escrow + bonds + credits, the registry exactly the stakes, the
burn address exactly the burned shares the model computed, and the coin of every account involved plus
the gas it paid must not change. Refused calls (wrong caller, wrong bond, early or late, bad proofs) are
mined anyway: each must revert with the error the model predicts and move nothing but its sender's gas.
Every run ends by driving each open job to a final state, withdrawing every credit and checking the
contract is left holding 0 wei.

Operations (transactions, refused transactions and block-mining calls, counted as they run) go to stdout
and are asserted: the fast run does at least 300; `VERIML_CHAIN_EXAMPLES=N` runs N sequences instead of
the default; the slow tier (`-m slow`) runs at least 10,000.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field

import pytest
from eth_abi import encode
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from eth_tester.exceptions import TransactionFailed
from eth_utils import is_address
from eth_utils.abi import get_abi_output_types
from hexbytes import HexBytes
from hypothesis import HealthCheck, Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from web3 import Web3
from web3.exceptions import ContractLogicError

from veriml.chain.backends import Chain, embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, deploy
from veriml.chain.optimistic import OptimisticConfig, OptimisticJobs, deploy_optimistic
from veriml.chain.tx import revert_error, send
from veriml.verify.trace import State, Trace, initial_state, lie_at, step

from .conftest import ONE, ONE_ID, PRICE, SMALL, SMALL_ID

BURN_ADDRESS = "0x000000000000000000000000000000000000dEaD"  # JobEscrow.BURN_ADDRESS
GAS = 5_000_000  # explicit gas: a step the model says is valid is sent without a pre-flight call
STAKE = 2 * 10**18 + 6
BOND = 10**17 + 3  # odd amounts, so a rounding slip in any split shows as stray wei
# burn_bps > 0: every slash sends a share to the burn address, and the model must account for it
CONFIG = DeployConfig(min_stake_wei=10**18, unbond_delay_blocks=5, slash_bps=5_000, burn_bps=2_500)
OPT = OptimisticConfig(
    execute_window_blocks=6, challenge_window_blocks=8, round_window_blocks=4, challenge_bond_wei=BOND
)
MIN = CONFIG.min_stake_wei
MODELS = {bytes(SMALL_ID): SMALL, bytes(ONE_ID): ONE}
MODEL_IDS = sorted(MODELS)
PICK = st.integers(min_value=0, max_value=2**16)
# fees from the price up to above what a slash pays on, so the compensation cap for a missed post both
# binds and does not
EXTRA = st.one_of(st.integers(min_value=0, max_value=10**6), st.sampled_from([10**18, 3 * 10**18]))
EXEC = st.sampled_from(["honest", "honest", "lie", "lie", "lie", "no-post", "quit"])
CHALLENGE = st.sampled_from(["honest", "honest", "contrary", "silent", "no-prove"])
FAST_MIN_OPS = 300
SLOW_MIN_OPS = 10_000
OPS: Counter[str] = Counter()
REFUSED: Counter[str] = (
    Counter()
)  # refused operations by the error they got  # every operation of this module's runs, by kind


@dataclass
class Case:
    """One input to one model, with its true trace and traces that lie about one step."""

    model_id: bytes
    data: bytes
    truth: Trace
    lies: list[Trace]


def cases() -> list[Case]:
    out = []
    for mid in MODEL_IDS:
        mlp = MODELS[mid]
        width = len(mlp.rows[0].weights)
        for seed in range(3):
            data = bytes((17 * seed + 5 * i + 1) % 256 for i in range(width))
            truth = mlp.trace(data)
            ks = sorted({1, (truth.steps + 1) // 2, truth.steps})
            lies = [lie_at(mlp.book, data, k, delta) for k in ks for delta in (1, 101)]
            out.append(
                Case(
                    mid,
                    data,
                    truth,
                    [t for t in lies if t.result_digest != truth.result_digest or t.root != truth.root],
                )
            )
    return out


CASES = cases()


@dataclass
class NodeM:
    stake: int
    unbond_block: int = 0
    open_jobs: int = 0


@dataclass
class DisputeM:
    challenger: str
    style: str  # honest | contrary | silent (never responds) | no-prove (nobody proves the step)
    bond: int
    deadline: int
    lo: int
    hi: int
    turn: str  # executor | challenger | step
    h_lo: bytes = bytes(32)
    h_hi: bytes = bytes(32)
    h_mid: bytes = bytes(32)
    rounds: int = 0


@dataclass
class JobM:
    user: str
    case: Case
    fee: int
    submit_block: int
    behaviour: str  # honest | lie | no-post | quit (posts a lie, then never bisects)
    lie: int
    plan: list[tuple[int, str]]  # challengers still to come: (account pick, style)
    status: str = "submitted"  # submitted | assigned | posted | final
    final: str = ""
    frozen: list[tuple[str, int]] = field(default_factory=list)
    executor: str = ""
    deadline: int = 0
    claimed: Trace | None = None
    dispute: DisputeM | None = None
    challenged: set[str] = field(default_factory=set)


def checksummed(value):
    if isinstance(value, str) and is_address(value):
        return Web3.to_checksum_address(value)
    if isinstance(value, list | tuple):
        return type(value)(checksummed(v) for v in value)
    return value


def pick(options: list, i: int):
    """The i-th option (mod their number), or None when there is none (rules pick among what is valid
    now instead of using preconditions, as in tests/chain/test_invariants.py)."""
    return options[i % len(options)] if options else None


def draw_mirror(candidates: list[tuple[str, int]], n: int, seed: bytes) -> list[str]:
    """Python copy of StakeDraw.draw (as tests/chain/conftest.py)."""
    addrs, weights = [a for a, _ in candidates], [w for _, w in candidates]
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


def gas_cost(receipt) -> int:  # noqa: ANN001
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


@dataclass
class World:
    chain: Chain
    c: Contracts
    opt: OptimisticJobs
    accounts: list[LocalAccount]
    staked_slot: int  # NodeRegistry.totalStaked's storage slot


@pytest.fixture(scope="module")
def books_world() -> World:
    chain = embedded_chain()
    acc = chain.accounts
    dep = deploy_optimistic(chain, deploy(chain, acc[0], CONFIG), acc[0], OPT)
    c, opt = Contracts(chain, dep), OptimisticJobs(chain, dep)
    for mid, mlp in MODELS.items():
        c.register_model(acc[0], mid, mlp.weights_root, "exact", 0, PRICE)
    for i in (3, 4, 5):
        c.register_node(acc[i], STAKE, f"chain://executor-{i}", b"", MODEL_IDS)
    staked = [i for i in range(32) if int(chain._tester.get_storage_at(c.nodes.address, hex(i)), 16) == 3 * STAKE]
    assert len(staked) == 1, staked  # found by its value; every run's teardown checks it against the view
    return World(chain, c, opt, acc, staked[0])


class OptimisticBooks(RuleBasedStateMachine):
    world: World  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        w = self.world
        self.chain, self.c, self.opt, self.w3 = w.chain, w.c, w.opt, w.chain.w3
        self.market, self.registry = self.opt.contract, self.c.nodes
        self.tester = w.chain._tester
        self.snap = w.chain.snapshot()
        acc = w.accounts
        self.owner, self.keeper, self.outsider = acc[0], acc[2], acc[13]
        self.users = [acc[1], acc[12]]
        self.pool = [acc[i] for i in range(3, 8)]  # nodes now or later
        self.challengers = [acc[i] for i in range(8, 12)] + self.pool
        everyone = [self.owner, self.keeper, self.outsider, *self.users, *self.pool, *acc[8:12]]
        self.by_addr = {a.address: a for a in everyone}
        self.nodes: dict[str, NodeM] = {acc[i].address: NodeM(STAKE) for i in (3, 4, 5)}
        self.credits: dict[str, int] = dict.fromkeys(self.by_addr, 0)
        self.jobs: dict[int, JobM] = {}
        self.burned = 0
        self.next_job = self.read(self.market, "nextJobId")
        self.block = self.chain.block_number()
        self.gas_spent = 0
        self.holders = [*self.by_addr, self.market.address, self.registry.address, BURN_ADDRESS]
        self.balances = {a: self.bal(a) for a in self.holders}
        self.burn_start = self.balances[BURN_ADDRESS]
        self.touched: set[str] = set()
        self.dirty = True
        self.coin = sum(self.balances.values())
        assert self.read(self.market, "totalEscrow") == self.read(self.market, "totalBonds") == 0
        assert self.read(self.market, "totalCredits") == self.read(self.market, "totalBurned") == 0

    def teardown(self) -> None:
        try:
            self.views_agree()
            self.drain()
            self.views_agree()
        finally:
            self.chain.revert(self.snap)

    # ---- plumbing ----
    def read(self, contract, name: str, *args, single: bool = True):  # noqa: ANN001
        """A view call straight to eth-tester (web3's call path costs several times the EVM work)."""
        data = contract.encode_abi(name, args=list(args))
        raw = self.tester.call({"from": self.keeper.address, "to": contract.address, "data": data}, "latest")
        types = get_abi_output_types(contract.get_function_by_name(name).abi)
        out = checksummed(self.w3.codec.decode(types, HexBytes(raw)))
        return out[0] if single else out

    def bal(self, address: str) -> int:
        return int(self.tester.get_balance(address))

    def slot(self, address: str, index: int) -> int:
        return int(self.tester.get_storage_at(address, hex(index)), 16)

    def totals(self) -> tuple[int, int, int, int]:
        """totalEscrow, totalBonds, totalCredits, totalBurned read from storage (JobEscrow's slots 1..4, a
        view call costs ten times more); `views_agree` checks them against the ABI's views."""
        return tuple(self.slot(self.market.address, i) for i in (1, 2, 3, 4))

    def views_agree(self) -> None:
        names = ("totalEscrow", "totalBonds", "totalCredits", "totalBurned")
        assert self.totals() == tuple(self.read(self.market, n) for n in names)
        assert self.slot(self.registry.address, self.world.staked_slot) == self.read(self.registry, "totalStaked")

    def tx(self, fn, account: LocalAccount, value: int = 0, kind: str = "tx"):  # noqa: ANN001
        receipt = send(self.w3, fn, account, value=value, gas=GAS)
        self.gas_spent += gas_cost(receipt)
        self.touched.add(account.address)
        self.block = int(receipt["blockNumber"])
        self.dirty = True
        OPS[kind] += 1
        return receipt

    def refused(self, fn, account: LocalAccount, error: str, value: int = 0) -> None:  # noqa: ANN001
        """`fn` from `account` must revert with `error`: judged by a call in the next block, then mined
        anyway; it must fail on-chain and move no coin but its sender's gas."""
        try:
            fn.call({"from": account.address, "value": value}, block_identifier="pending")
        except (ContractLogicError, TransactionFailed) as e:
            got = revert_error(e)
        else:
            raise AssertionError(f"expected {error}, but the call went through")
        assert getattr(got, "error", got.reason) == error, (error, got.reason)
        self.mine_refused(fn.build_transaction, account, value, error)

    def mine_refused(self, build, account: LocalAccount, value: int, label: str) -> None:  # noqa: ANN001
        before = {a: self.bal(a) for a in (account.address, self.market.address, self.registry.address)}
        nonce = self.w3.eth.get_transaction_count(account.address, "pending")
        tx = build(
            {"from": account.address, "value": value, "gas": GAS, "nonce": nonce, "chainId": self.chain.chain_id}
        )
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        )
        assert receipt["status"] == 0, label
        gas = gas_cost(receipt)
        self.gas_spent += gas
        self.block = int(receipt["blockNumber"])
        self.dirty = True
        after = {a: self.bal(a) for a in before}
        assert after[account.address] == before[account.address] - gas, label
        assert after[self.market.address] == before[self.market.address], label
        assert after[self.registry.address] == before[self.registry.address], label
        self.balances[account.address] = after[account.address]
        OPS["refused"] += 1
        REFUSED[label] += 1
        event(f"refused: {label}")

    def mine_blocks(self, k: int) -> None:
        if k <= 0:
            return
        self.chain.mine(k)
        self.block += k
        OPS["mine"] += 1

    @property
    def next_block(self) -> int:
        return self.block + 1

    def acct(self, address: str) -> LocalAccount:
        return self.by_addr[address]

    def eligible(self) -> list[str]:
        return sorted(a for a, n in self.nodes.items() if n.unbond_block == 0 and n.stake >= MIN)

    def open_jobs(self, *statuses: str) -> list[int]:
        return sorted(i for i, j in self.jobs.items() if j.status in statuses)

    def slash(self, job: JobM) -> tuple[int, int]:
        """The model of JobEscrow._slash on the job's executor: (stake taken, what may be paid on)."""
        node = self.nodes[job.executor]
        taken = node.stake * CONFIG.slash_bps // 10_000
        burned = taken * CONFIG.burn_bps // 10_000
        node.stake -= taken
        self.burned += burned
        return taken, taken - burned

    def credit(self, address: str, amount: int) -> None:
        self.credits[address] = self.credits.get(address, 0) + amount

    def check_job(self, job_id: int) -> None:
        """The contract's view of one job and its dispute against the model."""
        job = self.jobs[job_id]
        j, d = self.read(self.market, "getJobAndDispute", job_id, single=False)
        status = {"submitted": 1, "assigned": 2, "posted": 3}.get(job.status) or {
            "finalized": 4,
            "overturned": 5,
            "refunded": 6,
        }[job.final]
        assert j[4] == status, (job_id, j[4], job.status, job.final)
        assert j[8] == job.fee
        if job.status in ("assigned", "posted"):
            assert (j[1], j[6]) == (job.executor, job.deadline), (job_id, j[1], j[6], job.executor, job.deadline)
        if job.claimed is not None:
            assert (bytes(j[9]), bytes(j[10]), j[7]) == (job.claimed.result_digest, job.claimed.root, job.claimed.steps)
        dm = job.dispute
        if dm is None:
            assert d[1] == 0, (job_id, d)
        else:
            turn = {"executor": 1, "challenger": 2, "step": 3}[dm.turn]
            assert (d[0], d[1], d[2], d[3], d[4], d[5], d[6]) == (
                dm.challenger,
                turn,
                dm.deadline,
                dm.lo,
                dm.hi,
                dm.rounds,
                dm.bond,
            ), (job_id, d, dm)
            assert (bytes(d[7]), bytes(d[8])) == (dm.h_lo, dm.h_hi)

    # ---- a job's phases, each by the model's rules ----
    def do_submit(self, i: int, x: int, extra: int, behaviour: str, lie: int, plan: list[tuple[int, str]]) -> None:
        user = pick(self.users, i)
        case = pick(CASES, x)
        fee = PRICE + extra
        fn = self.market.functions.submit(case.model_id, case.data)
        if not self.eligible():
            self.refused(fn, user, "TooFewNodes", value=fee)
            return
        receipt = self.tx(fn, user, value=fee, kind="submit")
        (frozen,) = self.opt.receipt_events("CandidatesFrozen", receipt)
        assert frozen["args"]["jobId"] == self.next_job
        job = JobM(user.address, case, fee, receipt["blockNumber"], behaviour, lie, plan)
        job.frozen = list(zip(frozen["args"]["candidates"], frozen["args"]["weights"], strict=True))
        assert sorted(a for a, _ in job.frozen) == self.eligible()
        assert all(self.nodes[a].stake == w for a, w in job.frozen)
        self.jobs[self.next_job] = job
        self.next_job += 1
        # assignment in the submission's own block is too early (the draw's seed is that block's hash):
        # eth-tester mines every transaction in a block of its own, so this one is judged by a call there
        cands, weights = [a for a, _ in job.frozen], [w for _, w in job.frozen]
        try:
            self.market.functions.assign(self.next_job - 1, cands, weights).call(
                {"from": self.keeper.address}, block_identifier="latest"
            )
        except (ContractLogicError, TransactionFailed) as e:
            assert getattr(revert_error(e), "error", "") == "AssignmentTooEarly"
        else:
            raise AssertionError("assigned in the submission's block")
        OPS["refused (call)"] += 1
        REFUSED["AssignmentTooEarly"] += 1

    def do_assign(self, job_id: int) -> None:
        job = self.jobs[job_id]
        live = [(a, w if a in self.nodes else 0) for a, w in job.frozen]
        expired = self.next_block > job.submit_block + 256
        cands, weights = [a for a, _ in job.frozen], [w for _, w in job.frozen]
        receipt = self.tx(self.market.functions.assign(job_id, cands, weights), self.keeper, kind="assign")
        if expired or not any(w for _, w in live):
            event("refunded: expired" if expired else "refunded: no candidate left")
            job.status, job.final = "final", "refunded"
            self.credit(job.user, job.fee)
        else:
            seed = keccak(
                encode(["bytes32", "uint256"], [bytes(self.w3.eth.get_block(job.submit_block)["hash"]), job_id])
            )
            (job.executor,) = draw_mirror(live, 1, seed)
            job.status, job.deadline = "assigned", receipt["blockNumber"] + OPT.execute_window_blocks
            self.nodes[job.executor].open_jobs += 1
        self.check_job(job_id)

    def do_post(self, job_id: int) -> None:
        job = self.jobs[job_id]
        case = job.case
        claimed = case.truth if job.behaviour == "honest" or not case.lies else pick(case.lies, job.lie)
        fn = self.market.functions.post(job_id, claimed.output, claimed.root, claimed.steps)
        receipt = self.tx(fn, self.acct(job.executor), kind="post")
        job.claimed, job.status = claimed, "posted"
        job.deadline = receipt["blockNumber"] + OPT.challenge_window_blocks
        self.check_job(job_id)

    def do_missed_post(self, job_id: int, caller: LocalAccount) -> None:
        job = self.jobs[job_id]
        self.tx(self.market.functions.missedPost(job_id), caller, kind="missedPost")
        job.status, job.final = "final", "refunded"
        self.nodes[job.executor].open_jobs -= 1
        _, paid_on = self.slash(job)
        paid = min(paid_on, job.fee)
        self.burned += paid_on - paid
        self.credit(job.user, job.fee + paid)
        event(f"executor missed its post, compensation {'capped at' if paid == job.fee else 'below'} the fee")
        self.check_job(job_id)

    def do_finalize(self, job_id: int, caller: LocalAccount) -> None:
        job = self.jobs[job_id]
        self.tx(self.market.functions.finalize(job_id), caller, kind="finalize")
        job.status, job.final = "final", "finalized"
        self.nodes[job.executor].open_jobs -= 1
        self.credit(job.executor, job.fee)
        event(f"finalized ({'honest' if job.claimed is job.case.truth else 'a lie stood'})")
        self.check_job(job_id)

    def do_challenge(self, job_id: int, challenger: LocalAccount, style: str) -> None:
        job = self.jobs[job_id]
        assert job.claimed is not None
        receipt = self.tx(self.market.functions.challenge(job_id), challenger, value=BOND, kind="challenge")
        hi = 1 << (job.claimed.steps - 1).bit_length()
        job.dispute = DisputeM(
            challenger.address,
            style,
            BOND,
            receipt["blockNumber"] + OPT.round_window_blocks,
            0,
            hi,
            "step" if hi == 1 else "executor",
            h_hi=job.claimed.result_digest,
        )
        job.challenged.add(challenger.address)
        self.check_job(job_id)

    def do_bisect(self, job_id: int) -> None:
        job = self.jobs[job_id]
        d, claimed = job.dispute, job.claimed
        mid = (d.lo + d.hi) // 2
        fn = self.market.functions.bisect(job_id, claimed.hash_at(mid), claimed.proof(mid))
        receipt = self.tx(fn, self.acct(job.executor), kind="bisect")
        d.h_mid, d.turn, d.deadline = (
            claimed.hash_at(mid),
            "challenger",
            receipt["blockNumber"] + OPT.round_window_blocks,
        )
        self.check_job(job_id)

    def do_respond(self, job_id: int) -> None:
        job = self.jobs[job_id]
        d = job.dispute
        mid = (d.lo + d.hi) // 2
        agree = job.case.truth.hash_at(mid) == d.h_mid
        if d.style == "contrary":
            agree = not agree
        receipt = self.tx(self.market.functions.respond(job_id, agree), self.acct(d.challenger), kind="respond")
        if agree:
            d.lo, d.h_lo = mid, d.h_mid
        else:
            d.hi, d.h_hi = mid, d.h_mid
        d.rounds += 1
        d.turn = "step" if d.hi - d.lo == 1 else "executor"
        d.deadline = receipt["blockNumber"] + OPT.round_window_blocks
        self.check_job(job_id)

    def step_args(self, job: JobM, state=None):  # noqa: ANN001
        """(state, row, weights proof) for the dispute's step: state lo of the executor's claim."""
        d, mlp = job.dispute, MODELS[job.case.model_id]
        s = job.claimed.state_at(d.lo) if state is None else state
        if s.halted:
            return s, (0, 0, 0, False, False, 0, 0, 0, b""), []
        row = mlp.book[(s.layer, s.row)]
        return s, row.as_tuple(), mlp.weights_proof(row.layer, row.row)

    def do_prove(self, job_id: int, caller: LocalAccount) -> None:
        job = self.jobs[job_id]
        d = job.dispute
        s, row, proof = self.step_args(job)
        if d.lo == 0:
            assert s == initial_state(job.case.data)
        executor_won = step(s, MODELS[job.case.model_id].book).hash == d.h_hi
        self.tx(self.market.functions.proveStep(job_id, s.encode(), row, proof), caller, kind="proveStep")
        self.settle(job_id, executor_won, "one-step check")

    def do_timeout(self, job_id: int, caller: LocalAccount) -> None:
        job = self.jobs[job_id]
        executor_silent = job.dispute.turn == "executor"
        self.tx(self.market.functions.timeout(job_id), caller, kind="timeout")
        self.settle(job_id, not executor_silent, f"{job.dispute.turn} turn timed out")

    def settle(self, job_id: int, executor_won: bool, how: str) -> None:
        job = self.jobs[job_id]
        d, job.dispute = job.dispute, None
        event(f"dispute: {'executor' if executor_won else 'challenger'} won by {how}")
        if how != "one-step check":
            pass  # a party that let its turn run out loses, whoever was right
        elif job.claimed is job.case.truth:
            assert executor_won, "an honest executor lost the one-step check"
        elif d.style == "honest" and job.claimed.result_digest != job.case.truth.result_digest:
            assert not executor_won, "an honest challenger lost the one-step check against a lie"
        if executor_won:
            job.deadline = max(job.deadline, self.block + OPT.challenge_window_blocks)
            self.credit(job.executor, d.bond)
        else:
            job.status, job.final = "final", "overturned"
            self.nodes[job.executor].open_jobs -= 1
            _, paid_on = self.slash(job)
            self.credit(d.challenger, d.bond + paid_on)
            self.credit(job.user, job.fee)
        self.check_job(job_id)

    def advance(self, job_id: int, caller: LocalAccount) -> None:
        """Take one job one phase further by its plan, mining up to a deadline when it must wait."""
        job = self.jobs[job_id]
        if job.status == "submitted":
            self.do_assign(job_id)
        elif job.status == "assigned":
            if job.behaviour != "no-post" and self.next_block <= job.deadline:
                self.do_post(job_id)
            elif self.next_block <= job.deadline:
                self.mine_blocks(job.deadline + 1 - self.next_block)
            else:
                self.do_missed_post(job_id, caller)
        elif job.dispute is None:
            ready = [
                (k, s) for k, s in job.plan if pick(self.challengers, k).address not in job.challenged | {job.executor}
            ]
            if ready and self.next_block <= job.deadline:
                job.plan.remove(ready[0])
                self.do_challenge(job_id, pick(self.challengers, ready[0][0]), ready[0][1])
            elif self.next_block <= job.deadline:
                self.mine_blocks(job.deadline + 1 - self.next_block)
            else:
                self.do_finalize(job_id, caller)
        else:
            d = job.dispute
            waits = (
                (d.turn == "executor" and job.behaviour == "quit")
                or (d.turn == "challenger" and d.style == "silent")
                or (d.turn == "step" and d.style == "no-prove")
            )
            if waits and self.next_block <= d.deadline:
                self.mine_blocks(d.deadline + 1 - self.next_block)
            elif self.next_block > d.deadline:
                self.do_timeout(job_id, caller)
            elif d.turn == "executor":
                self.do_bisect(job_id)
            elif d.turn == "challenger":
                self.do_respond(job_id)
            else:
                self.do_prove(job_id, caller)

    def drain(self) -> None:
        """Every open job to a final state, then every credit withdrawn: nothing may be left behind."""
        for _ in range(10_000):
            open_ids = self.open_jobs("submitted", "assigned", "posted")
            if not open_ids:
                break
            self.advance(open_ids[0], self.keeper)
        else:
            raise AssertionError("jobs did not settle")
        self.books()
        for a in sorted(a for a, v in self.credits.items() if v):
            self.do_withdraw(a)
        self.books()
        assert self.bal(self.market.address) == 0
        assert self.read(self.market, "totalEscrow") == self.read(self.market, "totalBonds") == 0
        assert self.read(self.market, "totalCredits") == 0
        for a, node in self.nodes.items():
            (view,) = self.read(self.registry, "getNode", a, single=False)
            assert (view[0], view[4], view[5]) == (node.stake, 0, True), a
        assert {a: self.bal(a) for a in self.holders} == self.balances  # nothing moved unseen

    def do_withdraw(self, address: str) -> None:
        before = self.bal(address)
        receipt = self.tx(self.market.functions.withdraw(), self.acct(address), kind="withdraw")
        assert self.bal(address) == before + self.credits[address] - gas_cost(receipt)
        self.credits[address] = 0

    # ---- rules ----
    @rule(
        i=PICK,
        caller=PICK,
        x=PICK,
        extra=EXTRA,
        behaviour=EXEC,
        lie=PICK,
        plan=st.lists(st.tuples(PICK, CHALLENGE), max_size=3),
        refuse=PICK,
    )
    def advance_a_job(self, i, caller, x, extra, behaviour, lie, plan, refuse) -> None:  # noqa: ANN001
        """One open job one phase further (a new job when none is open): repeated, whole lifecycles."""
        job_id = pick(self.open_jobs("submitted", "assigned", "posted"), i)
        if job_id is None:
            self.do_submit(i, x, extra, behaviour, lie, plan)
        else:
            self.advance(job_id, pick(list(self.by_addr.values()), caller))
        if refuse % 3 == 0:  # and, one time in three, something the jobs' phases now forbid is tried
            self.refusals(refuse)
            chosen = pick(self.specific, refuse // 3)
            if chosen is not None:
                chosen()

    # the same rule under two more names: Hypothesis picks rules uniformly, and whole lifecycles need most
    # steps to move a job on
    advance_another_job = advance_a_job
    advance_a_third_job = advance_a_job

    @rule(
        i=PICK,
        x=PICK,
        extra=EXTRA,
        behaviour=EXEC,
        lie=PICK,
        plan=st.lists(st.tuples(PICK, CHALLENGE), max_size=3),
    )
    def submit(self, i, x, extra, behaviour, lie, plan) -> None:  # noqa: ANN001
        self.do_submit(i, x, extra, behaviour, lie, plan)

    @rule(i=PICK, k=PICK, style=CHALLENGE)
    def challenge(self, i: int, k: int, style: str) -> None:
        """Anyone who may challenge a posted, undisputed job in its window does (out of the job's plan)."""
        jobs = [
            j
            for j in self.open_jobs("posted")
            if self.jobs[j].dispute is None and self.next_block <= self.jobs[j].deadline
        ]
        job_id = pick(jobs, i)
        if job_id is None:
            return
        job = self.jobs[job_id]
        who = pick([a for a in self.challengers if a.address not in job.challenged | {job.executor}], k)
        if who is not None:
            self.do_challenge(job_id, who, style)

    @rule(i=PICK, caller=PICK)
    def settle_a_window(self, i: int, caller: int) -> None:
        """A keeper (anyone) settles whatever is due: missed post, finalize or a timed-out turn."""
        who = pick(list(self.by_addr.values()), caller)
        due = []
        for j in self.open_jobs("assigned", "posted"):
            job = self.jobs[j]
            d = job.dispute
            if d is not None:
                if self.next_block > d.deadline:
                    due.append((j, self.do_timeout))
            elif self.next_block > job.deadline:
                due.append((j, self.do_missed_post if job.status == "assigned" else self.do_finalize))
        chosen = pick(due, i)
        if chosen is not None:
            chosen[1](chosen[0], who)

    @rule(k=st.sampled_from([1, 1, 2, 3, 4, 5, 8, 9] * 4 + [257]))
    def mine(self, k: int) -> None:
        self.mine_blocks(k)

    @rule(i=PICK)
    def withdraw(self, i: int) -> None:
        address = pick(sorted(a for a, v in self.credits.items() if v > 0), i)
        if address is not None:
            self.do_withdraw(address)

    @rule(i=PICK, extra=st.integers(min_value=0, max_value=2 * 10**18))
    def register_node(self, i: int, extra: int) -> None:
        acct = pick([a for a in self.pool if a.address not in self.nodes], i)
        if acct is not None:
            self.tx(
                self.registry.functions.register("http://node", b"", MODEL_IDS),
                acct,
                value=MIN + extra,
                kind="register",
            )
            self.nodes[acct.address] = NodeM(MIN + extra)

    @rule(i=PICK, amount=st.integers(min_value=1, max_value=10**18))
    def top_up(self, i: int, amount: int) -> None:
        address = pick(sorted(a for a, n in self.nodes.items() if n.unbond_block == 0), i)
        if address is not None:
            self.tx(self.registry.functions.topUp(), self.acct(address), value=amount, kind="topUp")
            self.nodes[address].stake += amount

    @rule(i=PICK)
    def request_unbond(self, i: int) -> None:
        address = pick(sorted(a for a, n in self.nodes.items() if n.unbond_block == 0 and n.open_jobs == 0), i)
        if address is not None and (len(self.eligible()) > 2 or i % 8 == 0):  # rarely the last ones
            receipt = self.tx(self.registry.functions.requestUnbond(), self.acct(address), kind="requestUnbond")
            self.nodes[address].unbond_block = receipt["blockNumber"] + CONFIG.unbond_delay_blocks

    @rule(i=PICK)
    def withdraw_stake(self, i: int) -> None:
        ready = [a for a, n in self.nodes.items() if 0 < n.unbond_block <= self.next_block and n.open_jobs == 0]
        address = pick(sorted(ready), i)
        if address is not None:
            before = self.bal(address)
            receipt = self.tx(self.registry.functions.withdrawStake(), self.acct(address), kind="withdrawStake")
            assert self.bal(address) == before + self.nodes.pop(address).stake - gas_cost(receipt)

    @rule(i=PICK, k=PICK)
    def refused_call(self, i: int, k: int) -> None:
        """Someone tries one of the things the rules forbid right now (picked among those that apply); each
        must be refused with the error the model predicts, and move nothing but the caller's gas."""
        options = self.refusals(k)
        # mostly what an open job's phase forbids (there are fewer of those, and they matter more)
        chosen = pick(self.specific if self.specific and i % 4 else options, i // 4)
        if chosen is not None:
            chosen()

    another_refused_call = refused_call
    a_third_refused_call = refused_call

    def refusals(self, k: int) -> list:
        """Every forbidden call that applies now, as thunks (k picks callers and variants)."""
        f, r, nb = self.market.functions, self.registry.functions, self.next_block
        everyone = list(self.by_addr.values())
        anyone = pick(everyone, k)
        posted = self.open_jobs("posted")
        assigned = self.open_jobs("assigned")
        undisputed = [j for j in posted if self.jobs[j].dispute is None]
        in_window = [j for j in undisputed if nb <= self.jobs[j].deadline]
        disputed = [j for j in posted if self.jobs[j].dispute is not None]
        live = [j for j in disputed if nb <= self.jobs[j].dispute.deadline]
        late = [j for j in disputed if nb > self.jobs[j].dispute.deadline and self.jobs[j].dispute.turn != "step"]
        at_step = [j for j in live if self.jobs[j].dispute.turn == "step"]
        out = []

        def add(condition, thunk) -> None:  # noqa: ANN001
            if condition:
                out.append(thunk)

        poor = sorted(a for a, v in self.credits.items() if v == 0)
        add(poor, lambda: self.refused(f.withdraw(), self.acct(pick(poor, k)), "NothingToWithdraw"))
        case = pick(CASES, k)
        user = pick(self.users, k)
        add(True, lambda: self.refused(f.submit(case.model_id, case.data), user, "FeeBelowPrice", value=PRICE - 1))
        add(True, lambda: self.refused(f.submit(case.model_id, b""), user, "InputSize", value=PRICE))
        add(True, lambda: self.refused(f.submit(keccak(b"no model"), b"\x01"), user, "UnknownModel", value=PRICE))
        first_specific = len(out)  # from here on: what the open jobs' phases forbid
        if (j := pick(self.open_jobs("submitted"), k)) is not None:
            cands, weights = [a for a, _ in self.jobs[j].frozen], [w + 1 for _, w in self.jobs[j].frozen]
            add(True, lambda: self.refused(f.assign(j, cands, weights), anyone, "CandidatesDiffer"))
        if (j1 := pick(assigned + posted, k)) is not None:
            fr = self.jobs[j1].frozen
            add(True, lambda: self.refused(f.assign(j1, [a for a, _ in fr], [w for _, w in fr]), anyone, "WrongStatus"))
        if (j2 := pick(assigned, k)) is not None:
            job2, t2 = self.jobs[j2], self.jobs[j2].case.truth
            other = pick([a for a in everyone if a.address != job2.executor], k)
            add(True, lambda: self.refused(f.post(j2, t2.output, t2.root, t2.steps), other, "NotExecutor"))
            if nb > job2.deadline:
                ex2 = self.acct(job2.executor)
                add(True, lambda: self.refused(f.post(j2, t2.output, t2.root, t2.steps), ex2, "PostWindowClosed"))
            else:
                add(True, lambda: self.refused(f.missedPost(j2), anyone, "PostWindowOpen"))
                add(
                    True,
                    lambda: self.refused(
                        f.post(j2, t2.output, bytes(32), t2.steps), self.acct(job2.executor), "ZeroTraceRoot"
                    ),
                )
                add(
                    True,
                    lambda: self.refused(
                        f.post(j2, t2.output, t2.root, 0), self.acct(job2.executor), "StepsOutOfRange"
                    ),
                )
            add(True, lambda: self.refused(f.timeout(j2), anyone, "NoDispute"))
            add(True, lambda: self.refused(f.finalize(j2), anyone, "WrongStatus"))
        if (j3 := pick(in_window, k)) is not None:
            job3 = self.jobs[j3]
            add(True, lambda: self.refused(f.finalize(j3), anyone, "ChallengeWindowOpen"))
            add(True, lambda: self.refused(f.challenge(j3), self.acct(job3.executor), "SelfChallenge", value=BOND))
            fresh = [a for a in self.challengers if a.address not in job3.challenged | {job3.executor}]
            if fresh:
                bond = BOND + (1 if k % 2 else -1)
                add(True, lambda: self.refused(f.challenge(j3), pick(fresh, k), "WrongBond", value=bond))
            if job3.challenged:
                again = self.acct(pick(sorted(job3.challenged), k))
                add(True, lambda: self.refused(f.challenge(j3), again, "AlreadyChallenged", value=BOND))
            add(True, lambda: self.refused(f.missedPost(j3), anyone, "WrongStatus"))
        if (j4 := pick([j for j in undisputed if nb > self.jobs[j].deadline], k)) is not None:
            add(True, lambda: self.refused(f.challenge(j4), self.outsider, "ChallengeWindowClosed", value=BOND))
        if (j5 := pick(undisputed, k)) is not None:
            add(True, lambda: self.refused(f.timeout(j5), anyone, "NoDispute"))
            add(True, lambda: self.refused(f.respond(j5, True), anyone, "NotYourTurn"))
        if (j6 := pick(disputed, k)) is not None:
            add(True, lambda: self.refused(f.finalize(j6), anyone, "DisputeOpen"))
            if nb <= self.jobs[j6].deadline:
                add(True, lambda: self.refused(f.challenge(j6), self.outsider, "DisputeOpen", value=BOND))
        if (j7 := pick(live, k)) is not None:
            job7 = self.jobs[j7]
            d7 = job7.dispute
            mid = (d7.lo + d7.hi) // 2
            h, proof = job7.claimed.hash_at(mid), job7.claimed.proof(mid)
            ex7, ch7 = self.acct(job7.executor), self.acct(d7.challenger)
            add(True, lambda: self.refused(f.timeout(j7), anyone, "TurnStillOpen"))
            if d7.turn == "executor":
                add(True, lambda: self.refused(f.bisect(j7, h, proof), ch7, "NotYourTurn"))
                add(True, lambda: self.refused(f.bisect(j7, keccak(b"another state"), proof), ex7, "BadTraceProof"))
                add(True, lambda: self.refused(f.respond(j7, True), ch7, "NotYourTurn"))
            else:
                add(True, lambda: self.refused(f.bisect(j7, h, proof), ex7, "NotYourTurn"))
            if d7.turn == "challenger":
                add(True, lambda: self.refused(f.respond(j7, bool(k % 2)), ex7, "NotYourTurn"))
                add(True, lambda: self.refused(f.respond(j7, bool(k % 2)), self.outsider, "NotYourTurn"))
            if d7.turn != "step":
                s7, row7, wp7 = self.step_args(job7)
                add(True, lambda: self.refused(f.proveStep(j7, s7.encode(), row7, wp7), anyone, "NotAtOneStep"))
        if (j8 := pick(at_step, k)) is not None:
            job8 = self.jobs[j8]
            d8 = job8.dispute
            if d8.lo == 0:  # an initial state, but of another input
                s8, row8, wp8 = self.step_args(job8, initial_state(bytes(b ^ 1 for b in job8.case.data)))
                add(True, lambda: self.refused(f.proveStep(j8, s8.encode(), row8, wp8), anyone, "NotInitialState"))
            else:  # state lo with its first value changed: not the agreed hash
                s = job8.claimed.state_at(d8.lo)
                x = bytes([(s.x[0] + 1) % 256]) + s.x[1:] if s.x else b"\x01"
                s8, row8, wp8 = self.step_args(job8, State(s.layer, s.row, x, s.y))
                add(True, lambda: self.refused(f.proveStep(j8, s8.encode(), row8, wp8), anyone, "StateMismatch"))
            s9, row9, _ = self.step_args(job8)
            mlp = MODELS[job8.case.model_id]
            others = [rw for rw in mlp.rows if (rw.layer, rw.row) != (s9.layer, s9.row)]
            if not s9.halted and others:  # the right row, with the proof of another row
                bad = pick(others, k)
                wp9 = mlp.weights_proof(bad.layer, bad.row)
                add(True, lambda: self.refused(f.proveStep(j8, s9.encode(), row9, wp9), anyone, "BadWeightsProof"))
        if (j10 := pick(late, k)) is not None:
            job10 = self.jobs[j10]
            d10 = job10.dispute
            mid10 = (d10.lo + d10.hi) // 2
            if d10.turn == "executor":
                h10, p10 = job10.claimed.hash_at(mid10), job10.claimed.proof(mid10)
                add(True, lambda: self.refused(f.bisect(j10, h10, p10), self.acct(job10.executor), "TurnTimedOut"))
            else:
                add(True, lambda: self.refused(f.respond(j10, True), self.acct(d10.challenger), "TurnTimedOut"))
        self.specific = out[first_specific:]
        add(True, lambda: self.refused_payment(anyone, 1 + k))
        if (a1 := pick(sorted(a for a, n in self.nodes.items() if n.open_jobs and not n.unbond_block), k)) is not None:
            add(True, lambda: self.refused(r.requestUnbond(), self.acct(a1), "OpenJobs"))
        if (a2 := pick(sorted(a for a, n in self.nodes.items() if n.unbond_block), k)) is not None:
            add(True, lambda: self.refused(r.topUp(), self.acct(a2), "Unbonding", value=1))
            add(True, lambda: self.refused(r.requestUnbond(), self.acct(a2), "AlreadyUnbonding"))
        if (a3 := pick(sorted(a for a, n in self.nodes.items() if n.unbond_block > nb), k)) is not None:
            add(True, lambda: self.refused(r.withdrawStake(), self.acct(a3), "UnbondingDelay"))
        if (a4 := pick(sorted(self.nodes), k)) is not None:
            add(
                True,
                lambda: self.refused(
                    r.register("http://again", b"", MODEL_IDS), self.acct(a4), "AlreadyRegistered", value=MIN
                ),
            )
            add(True, lambda: self.refused(r.slash(a4, 10_000), self.outsider, "NotScheme"))
            add(True, lambda: self.refused(r.lock(a4), anyone, "NotScheme"))
        if (a5 := pick([a for a in self.pool if a.address not in self.nodes], k)) is not None:
            add(
                True,
                lambda: self.refused(r.register("http://low", b"", MODEL_IDS), a5, "StakeBelowMinimum", value=MIN - 1),
            )
            add(True, lambda: self.refused(r.withdrawStake(), a5, "NotRegistered"))
        return out

    def refused_payment(self, sender: LocalAccount, value: int) -> None:
        """Coin sent straight to the market (not through a function) is refused."""
        plain = {"from": sender.address, "to": self.market.address, "value": value}
        try:
            self.w3.eth.call(plain, "pending")
        except (ContractLogicError, TransactionFailed) as e:
            assert getattr(revert_error(e), "error", "") == "DirectPaymentRefused"
        else:
            raise AssertionError("a plain payment to the market went through")

        def build(params):  # noqa: ANN001, ANN202
            return {**params, "to": self.market.address, "gasPrice": self.w3.eth.gas_price}

        self.mine_refused(build, sender, value, "DirectPaymentRefused")

    # ---- the books ----
    @invariant()
    def books(self) -> None:
        if not self.dirty:
            return  # no transaction since the last check: no contract state can have changed
        self.dirty = False
        m = self.market
        escrow, bonds, credits, burned = self.totals()
        assert self.bal(m.address) == escrow + bonds + credits
        assert escrow == sum(j.fee for j in self.jobs.values() if j.status != "final")
        assert bonds == sum(j.dispute.bond for j in self.jobs.values() if j.dispute is not None)
        assert credits == sum(self.credits.values())
        staked = self.slot(self.registry.address, self.world.staked_slot)
        assert self.bal(self.registry.address) == staked == sum(n.stake for n in self.nodes.values())
        assert burned == self.burned == self.bal(BURN_ADDRESS) - self.burn_start
        for a in self.touched | {m.address, self.registry.address, BURN_ADDRESS}:
            self.balances[a] = self.bal(a)
        self.touched.clear()
        assert sum(self.balances.values()) + self.gas_spent == self.coin


def run_books(world: World, examples: int, steps: int) -> int:
    """Run the machine; returns the operations it did (counted)."""
    OptimisticBooks.world = world
    start = Counter(OPS)
    run_state_machine_as_test(
        OptimisticBooks,
        settings=settings(
            max_examples=examples,
            stateful_step_count=steps,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            # block hashes are random on the embedded chain (see tests/chain/test_invariants.py): no replay
            phases=[Phase.explicit, Phase.generate],
            database=None,
        ),
    )
    ran = OPS - start
    print(f"optimistic books, refusals so far by error: {dict(sorted(REFUSED.items()))}")
    done = sum(ran.values())
    print(f"optimistic books: {examples} sequences x {steps} steps, {done} operations: {dict(sorted(ran.items()))}")
    return done


def test_optimistic_books_under_random_actions(books_world: World) -> None:
    """The fast run: batches of 3 sequences until at least FAST_MIN_OPS operations have run (or exactly
    VERIML_CHAIN_EXAMPLES sequences when that is set)."""
    if "VERIML_CHAIN_EXAMPLES" in os.environ:
        run_books(books_world, int(os.environ["VERIML_CHAIN_EXAMPLES"]), 50)
        return
    done = 0
    for _ in range(20):
        done += run_books(books_world, 3, 50)
        if done >= FAST_MIN_OPS:
            break
    print(f"optimistic books, fast run: {done} operations")
    assert done >= FAST_MIN_OPS, done


@pytest.mark.soak
def test_optimistic_books_long_run(books_world: World) -> None:
    """The soak tier (make test-soak): batches of 40 sequences until at least SLOW_MIN_OPS operations have run."""
    done = 0
    while done < SLOW_MIN_OPS:
        done += run_books(books_world, 40, 50)
    print(f"optimistic books, long run: {done} operations")
