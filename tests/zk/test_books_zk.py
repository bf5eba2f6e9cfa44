"""Books of the zk scheme (issue 10.5): random sequences of user, node, keeper and operator actions on ZkJobs
keep every wei accounted.

A Python model of the contract's rules (stakes, locks, escrowed fees, credits, the burned share of every
slash, the user's compensation capped at its fee, the prove window) predicts each step; after every step
ZkJobs must hold exactly escrow + credits, the registry exactly the stakes, the burn address exactly the
burned shares the model computed, and the coin of every account involved plus the gas it paid must not
change. Proofs are never made here: the machine submits the session's real EZKL proofs (tests/zk/conftest.py
`proofs`: digits-mlp on two inputs, the variant circuit on one) and their tampered, forged, misdirected
and truncated variants, so every verdict comes from the real verifier contracts. Refused calls are mined
anyway: each must revert with the error the model predicts and move nothing but its sender's gas. Every
run ends by settling each open job, withdrawing every credit and checking ZkJobs holds 0 wei.

Operations (transactions, refused transactions and block-mining calls, counted as they run) go to stdout
and are asserted: the fast run does at least 300; `VERIML_CHAIN_EXAMPLES=N` runs N sequences instead;
the slow tier (`-m slow`) runs at least 10,000.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

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
from veriml.chain.tx import revert_error, send
from veriml.chain.zk import ZkConfig, ZkJobs, deploy_zk
from veriml.sim.faults import forge_outputs
from veriml.zk.field import words_hash
from veriml.zk.proof import Proof
from veriml.zk.register import ZkModel, register_zk_model

from .conftest import Proofs, quick_gas_estimate

BURN_ADDRESS = "0x000000000000000000000000000000000000dEaD"  # JobEscrow.BURN_ADDRESS
GAS = 5_000_000  # explicit gas for every call but a proof (which gets ZkJobs.proof_gas)
STAKE = 2 * 10**18 + 6
CONFIG = DeployConfig(min_stake_wei=10**18, unbond_delay_blocks=5, slash_bps=5_000, burn_bps=2_500)  # burn > 0
ZK = ZkConfig(prove_window_blocks=6)
MIN = CONFIG.min_stake_wei
PICK = st.integers(min_value=0, max_value=2**16)
# fees from the price up to above what a slash pays on, so the compensation cap binds and does not
EXTRA = st.one_of(st.integers(min_value=0, max_value=10**6), st.sampled_from([10**18, 3 * 10**18]))
# what the drawn node sends: the right proof, or one of the wrong ones, or nothing
BEHAVIOUR = st.sampled_from(
    ["valid", "valid", "valid", "tampered", "forged", "other-input", "other-model", "instances", "no-show"]
)
FAST_MIN_OPS = 300
SLOW_MIN_OPS = 10_000
OPS: Counter[str] = Counter()
REFUSED: Counter[str] = Counter()  # refused operations by the error they got


@dataclass
class NodeM:
    stake: int
    unbond_block: int = 0
    open_jobs: int = 0


@dataclass
class JobM:
    user: str
    model: str  # "m" (digits-mlp) | "v" (its variant)
    input: str  # "a" | "b"
    fee: int
    submit_block: int
    behaviour: str
    status: str = "submitted"  # submitted | assigned | final
    final: str = ""  # verified | rejected | expired | refunded
    frozen: list[tuple[str, int]] = field(default_factory=list)
    node: str = ""
    deadline: int = 0


def checksummed(value):
    if isinstance(value, str) and is_address(value):
        return Web3.to_checksum_address(value)
    if isinstance(value, list | tuple):
        return type(value)(checksummed(v) for v in value)
    return value


def pick(options: list, i: int):
    """The i-th option (mod their number), or None (as tests/chain/test_invariants.py)."""
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
    jobs: ZkJobs
    models: dict[str, ZkModel]
    inputs: dict[str, list[int]]
    genuine: dict[tuple[str, str], Proof]  # (model, input) -> its real proof
    accounts: list[LocalAccount]
    staked_slot: int


@pytest.fixture(scope="module")
def books_world(
    zk_cache: Path, variant_dir: Path, proofs: Proofs, digits_model: ZkModel, variant_model: ZkModel
) -> World:
    """A chain of its own (the shared zk world burns nothing): burn_bps > 0, both circuits, three nodes."""
    chain = embedded_chain()
    chain._tester.backend.chain.gas_estimator = quick_gas_estimate  # type: ignore[union-attr]
    acc = chain.accounts
    dep = deploy_zk(chain, deploy(chain, acc[0], CONFIG), acc[0], ZK)
    m = register_zk_model(chain, dep, acc[0], "digits-mlp", zk_cache)
    v = register_zk_model(chain, dep, acc[0], variant_dir, zk_cache)
    c = Contracts(chain, dep)
    for i in (3, 4, 5):
        c.register_node(acc[i], STAKE, f"zk://node{i}", b"", [m.model_id, v.model_id])
    staked = [i for i in range(32) if int(chain._tester.get_storage_at(c.nodes.address, hex(i)), 16) == 3 * STAKE]
    assert len(staked) == 1, staked  # found by its value; every run's teardown checks it against the view
    genuine = {("m", "a"): proofs.a, ("m", "b"): proofs.b, ("v", "a"): proofs.variant_a}
    inputs = {"a": list(proofs.input_a), "b": list(proofs.input_b)}
    return World(chain, c, ZkJobs(chain, dep), {"m": m, "v": v}, inputs, genuine, acc, staked[0])


class ZkBooks(RuleBasedStateMachine):
    world: World  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        w = self.world
        self.chain, self.c, self.zk, self.w3 = w.chain, w.c, w.jobs, w.chain.w3
        self.market, self.registry = self.zk.contract, self.c.nodes
        self.tester = w.chain._tester
        self.snap = w.chain.snapshot()
        acc = w.accounts
        self.owner, self.keeper, self.outsider = acc[0], acc[2], acc[13]
        self.users = [acc[1], acc[12]]
        self.pool = [acc[i] for i in range(3, 8)]
        everyone = [self.owner, self.keeper, self.outsider, *self.users, *self.pool]
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
        self.model_ids = {k: bytes(m.model_id) for k, m in w.models.items()}
        self.price = {k: m.manifest.price_wei for k, m in w.models.items()}
        self.circuits = {k: self.read(self.market, "getCircuit", mid) for k, mid in self.model_ids.items()}
        assert self.totals() == (0, 0, 0, 0)

    def teardown(self) -> None:
        try:
            self.views_agree()
            self.drain()
            self.views_agree()
        finally:
            self.chain.revert(self.snap)

    # ---- plumbing ----
    def read(self, contract, name: str, *args, single: bool = True):  # noqa: ANN001
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
        """totalEscrow, totalBonds, totalCredits, totalBurned from storage (JobEscrow's slots 1..4; a view
        call costs ten times more); `views_agree` checks them against the ABI's views."""
        return tuple(self.slot(self.market.address, i) for i in (1, 2, 3, 4))

    def views_agree(self) -> None:
        names = ("totalEscrow", "totalBonds", "totalCredits", "totalBurned")
        assert self.totals() == tuple(self.read(self.market, n) for n in names)
        assert self.slot(self.registry.address, self.world.staked_slot) == self.read(self.registry, "totalStaked")

    def tx(self, fn, account: LocalAccount, value: int = 0, kind: str = "tx", gas: int = GAS):  # noqa: ANN001
        receipt = send(self.w3, fn, account, value=value, gas=gas)
        self.gas_spent += gas_cost(receipt)
        self.touched.add(account.address)
        self.block = int(receipt["blockNumber"])
        self.dirty = True
        OPS[kind] += 1
        return receipt

    def refused(self, fn, account: LocalAccount, error: str, value: int = 0, gas: int = GAS) -> None:  # noqa: ANN001
        """`fn` must revert with `error`: judged by a call in the next block, then mined anyway; it must fail
        on-chain and move no coin but its sender's gas."""
        try:
            fn.call({"from": account.address, "value": value, "gas": gas}, block_identifier="pending")
        except (ContractLogicError, TransactionFailed) as e:
            got = revert_error(e)
        else:
            raise AssertionError(f"expected {error}, but the call went through")
        assert getattr(got, "error", got.reason) == error, (error, got.reason)
        self.mine_refused(fn.build_transaction, account, value, error, gas)

    def mine_refused(self, build, account: LocalAccount, value: int, label: str, gas: int = GAS) -> None:  # noqa: ANN001
        before = {a: self.bal(a) for a in (account.address, self.market.address, self.registry.address)}
        nonce = self.w3.eth.get_transaction_count(account.address, "pending")
        tx = build(
            {"from": account.address, "value": value, "gas": gas, "nonce": nonce, "chainId": self.chain.chain_id}
        )
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        )
        assert receipt["status"] == 0, label
        cost = gas_cost(receipt)
        self.gas_spent += cost
        self.block = int(receipt["blockNumber"])
        self.dirty = True
        after = {a: self.bal(a) for a in before}
        assert after[account.address] == before[account.address] - cost, label
        assert after[self.market.address] == before[self.market.address], label
        assert after[self.registry.address] == before[self.registry.address], label
        self.balances[account.address] = after[account.address]
        OPS["refused"] += 1
        REFUSED[label] += 1
        event(f"refused: {label}")

    def mine_blocks(self, k: int) -> None:
        if k > 0:
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

    def credit(self, address: str, amount: int) -> None:
        self.credits[address] = self.credits.get(address, 0) + amount

    def check_job(self, job_id: int) -> None:
        job = self.jobs[job_id]
        j = self.read(self.market, "getJob", job_id)
        status = {"submitted": 1, "assigned": 2}.get(job.status) or {
            "verified": 3, "rejected": 4, "expired": 5, "refunded": 6
        }[job.final]  # fmt: skip
        assert j[3] == status, (job_id, j[3], job.status, job.final)
        assert j[7] == job.fee
        if job.node:
            assert (j[4], j[6]) == (job.node, job.deadline)

    def proof_for(self, job: JobM, behaviour: str) -> tuple[Proof, tuple[int, ...], str]:
        """What the node sends for `behaviour`: (proof, instances, the reason ZkJobs must give, "" for a
        valid proof). None when the behaviour has nothing to send for this job (then it does not prove)."""
        g = self.world.genuine
        own = g.get((job.model, job.input))
        other_input = "b" if job.input == "a" else "a"
        if behaviour == "valid" and own is not None:
            return own, own.instances, ""
        if behaviour == "tampered" and own is not None:
            p = own.with_flipped_bit(byte=200, bit=3)
            return p, p.instances, "invalid proof"
        if behaviour == "forged" and own is not None:
            p = own.with_outputs(forge_outputs(own.outputs))
            return p, p.instances, "invalid proof"
        if behaviour == "instances" and own is not None:
            return own, own.instances[:-1], "wrong number of instances"
        if behaviour == "other-input":
            p = g.get((job.model, other_input)) or g[("m", other_input)]
            return p, p.instances, "proof is about another input"
        if behaviour == "other-model":  # another circuit's proof about this very input
            p = g.get(("v" if job.model == "m" else "m", job.input))
            if p is not None:
                return p, p.instances, "invalid proof"
        return None

    # ---- a job's phases ----
    def do_submit(self, i: int, which: int, extra: int, behaviour: str) -> None:
        user = pick(self.users, i)
        model, inp = pick([("m", "a"), ("m", "b"), ("v", "a"), ("v", "b")], which)
        fee = self.price[model] + extra
        fn = self.market.functions.submit(self.model_ids[model], self.world.inputs[inp])
        if not self.eligible():
            self.refused(fn, user, "TooFewNodes", value=fee)
            return
        receipt = self.tx(fn, user, value=fee, kind="submit")
        (frozen,) = self.zk.receipt_events("CandidatesFrozen", receipt)
        assert frozen["args"]["jobId"] == self.next_job
        (sub,) = self.zk.receipt_events("JobSubmitted", receipt)
        assert bytes(sub["args"]["inputHash"]) == words_hash(self.world.inputs[inp])
        job = JobM(user.address, model, inp, fee, receipt["blockNumber"], behaviour)
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
        self.check_job(self.next_job - 1)

    def do_assign(self, job_id: int, caller: LocalAccount) -> None:
        job = self.jobs[job_id]
        live = [(a, w if a in self.nodes else 0) for a, w in job.frozen]
        expired = self.next_block > job.submit_block + 256
        cands, weights = [a for a, _ in job.frozen], [w for _, w in job.frozen]
        receipt = self.tx(self.market.functions.assign(job_id, cands, weights), caller, kind="assign")
        if expired or not any(w for _, w in live):
            event("refunded: expired" if expired else "refunded: no candidate left")
            job.status, job.final = "final", "refunded"
            self.credit(job.user, job.fee)
        else:
            block_hash = bytes(self.w3.eth.get_block(job.submit_block)["hash"])
            (job.node,) = draw_mirror(live, 1, keccak(encode(["bytes32", "uint256"], [block_hash, job_id])))
            job.status, job.deadline = "assigned", receipt["blockNumber"] + ZK.prove_window_blocks
            self.nodes[job.node].open_jobs += 1
        self.check_job(job_id)

    def slash_and_refund(self, job: JobM) -> None:
        """The model of a rejected or expired job: slash (part burned), refund the fee, compensate at most
        the fee (the rest burned too)."""
        node = self.nodes[job.node]
        node.open_jobs -= 1
        taken = node.stake * CONFIG.slash_bps // 10_000
        node.stake -= taken
        paid_on = taken - taken * CONFIG.burn_bps // 10_000
        paid = min(paid_on, job.fee)
        self.burned += taken - paid
        self.credit(job.user, job.fee + paid)
        event("compensation capped at the fee" if paid == job.fee else "compensation below the fee")

    def do_prove(self, job_id: int, behaviour: str) -> None:
        job = self.jobs[job_id]
        sent = self.proof_for(job, behaviour)
        assert sent is not None
        proof, instances, reason = sent
        gas = self.zk.proof_gas(self.model_ids[job.model], proof.proof, instances)
        fn = self.market.functions.submitProof(job_id, proof.proof, list(instances))
        receipt = self.tx(fn, self.acct(job.node), kind=f"proof ({behaviour})", gas=gas)
        job.status = "final"
        if reason == "":
            (ev,) = self.zk.receipt_events("ProofAccepted", receipt)
            assert bytes(ev["args"]["outputHash"]) == proof.output_hash
            job.final = "verified"
            self.nodes[job.node].open_jobs -= 1
            self.credit(job.node, job.fee)
        else:
            (ev,) = self.zk.receipt_events("ProofRejected", receipt)
            assert ev["args"]["reason"] == reason, (ev["args"]["reason"], reason)
            job.final = "rejected"
            self.slash_and_refund(job)
        event(f"proof: {behaviour}")
        self.check_job(job_id)

    def do_expire(self, job_id: int, caller: LocalAccount) -> None:
        job = self.jobs[job_id]
        self.tx(self.market.functions.expire(job_id), caller, kind="expire")
        job.status, job.final = "final", "expired"
        self.slash_and_refund(job)
        self.check_job(job_id)

    def advance(self, job_id: int, caller: LocalAccount) -> None:
        job = self.jobs[job_id]
        if job.status == "submitted":
            self.do_assign(job_id, caller)
        elif self.next_block <= job.deadline and self.proof_for(job, job.behaviour) is not None:
            self.do_prove(job_id, job.behaviour)
        elif self.next_block <= job.deadline:
            self.mine_blocks(job.deadline + 1 - self.next_block)  # a no-show: wait out the window
        else:
            self.do_expire(job_id, caller)

    def do_withdraw(self, address: str) -> None:
        before = self.bal(address)
        receipt = self.tx(self.market.functions.withdraw(), self.acct(address), kind="withdraw")
        assert self.bal(address) == before + self.credits[address] - gas_cost(receipt)
        self.credits[address] = 0

    def drain(self) -> None:
        for _ in range(10_000):
            open_ids = self.open_jobs("submitted", "assigned")
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
        assert self.totals() == (0, 0, 0, self.burned)
        for a, node in self.nodes.items():
            (view,) = self.read(self.registry, "getNode", a, single=False)
            assert (view[0], view[4], view[5]) == (node.stake, 0, True), a
        assert {a: self.bal(a) for a in self.holders} == self.balances  # nothing moved unseen

    # ---- rules ----
    @rule(i=PICK, caller=PICK, which=PICK, extra=EXTRA, behaviour=BEHAVIOUR, refuse=PICK)
    def advance_a_job(self, i: int, caller: int, which: int, extra: int, behaviour: str, refuse: int) -> None:
        """One open job one phase further (a new job when none is open)."""
        job_id = pick(self.open_jobs("submitted", "assigned"), i)
        if job_id is None:
            self.do_submit(i, which, extra, behaviour)
        else:
            self.advance(job_id, pick(list(self.by_addr.values()), caller))
        if refuse % 3 == 0:  # and, one time in three, something the jobs' phases now forbid is tried
            self.refusals(refuse)
            chosen = pick(self.specific, refuse // 3)
            if chosen is not None:
                chosen()

    advance_another_job = advance_a_job  # Hypothesis picks rules uniformly: weight the lifecycle

    @rule(i=PICK, which=PICK, extra=EXTRA, behaviour=BEHAVIOUR)
    def submit(self, i: int, which: int, extra: int, behaviour: str) -> None:
        self.do_submit(i, which, extra, behaviour)

    @rule(i=PICK, behaviour=BEHAVIOUR)
    def prove(self, i: int, behaviour: str) -> None:
        """An assigned node in its window sends a proof of any kind (not necessarily its plan)."""
        ready = [j for j in self.open_jobs("assigned") if self.next_block <= self.jobs[j].deadline]
        job_id = pick(ready, i)
        if job_id is not None and self.proof_for(self.jobs[job_id], behaviour) is not None:
            self.do_prove(job_id, behaviour)

    @rule(i=PICK, caller=PICK)
    def expire(self, i: int, caller: int) -> None:
        job_id = pick([j for j in self.open_jobs("assigned") if self.next_block > self.jobs[j].deadline], i)
        if job_id is not None:
            self.do_expire(job_id, pick(list(self.by_addr.values()), caller))

    @rule(k=st.sampled_from([1, 1, 2, 3, 4, 6, 7] * 4 + [257]))
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
            fn = self.registry.functions.register("zk://node", b"", sorted(self.model_ids.values()))
            self.tx(fn, acct, value=MIN + extra, kind="register")
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
        """Someone tries one of the things the rules forbid right now (picked among those that apply)."""
        options = self.refusals(k)
        # mostly what an open job's phase forbids (there are fewer of those, and they matter more)
        chosen = pick(self.specific if self.specific and i % 4 else options, i // 4)
        if chosen is not None:
            chosen()

    another_refused_call = refused_call
    a_third_refused_call = refused_call

    def refusals(self, k: int) -> list:
        f, r, nb = self.market.functions, self.registry.functions, self.next_block
        everyone = list(self.by_addr.values())
        anyone = pick(everyone, k)
        user = pick(self.users, k)
        model = pick(["m", "v"], k)
        mid, inp, price = self.model_ids[model], self.world.inputs[pick(["a", "b"], k)], self.price[model]
        g = self.world.genuine[("m", "a")]
        assigned = self.open_jobs("assigned")
        out = []
        poor = sorted(a for a, v in self.credits.items() if v == 0)
        if poor:
            out.append(lambda: self.refused(f.withdraw(), self.acct(pick(poor, k)), "NothingToWithdraw"))
        out.append(lambda: self.refused(f.submit(mid, inp), user, "FeeBelowPrice", value=price - 1))
        out.append(lambda: self.refused(f.submit(mid, inp[:-1]), user, "WrongInputLength", value=price))
        bad = list(inp)
        bad[k % len(bad)] = self.circuits[model][6] + 1  # above the circuit's inputMax
        out.append(lambda: self.refused(f.submit(mid, bad), user, "InputOutOfRange", value=price))
        out.append(lambda: self.refused(f.submit(keccak(b"no circuit"), inp), user, "NoCircuit", value=price))
        out.append(lambda: self.refused(f.expire(self.next_job + k % 3), anyone, "WrongStatus"))
        circuit = self.circuits[model]
        again = f.registerCircuit(mid, circuit[0], bytes(circuit[2]), circuit[3], circuit[4], circuit[5], circuit[6])
        out.append(lambda: self.refused(again, self.owner, "CircuitAlreadyRegistered"))
        out.append(lambda: self.refused(again, self.outsider, "NotModelOwner"))
        first_specific = len(out)  # from here on: what the open jobs' phases forbid
        if (j := pick(self.open_jobs("submitted"), k)) is not None:
            cands, weights = [a for a, _ in self.jobs[j].frozen], [w + 1 for _, w in self.jobs[j].frozen]
            out.append(lambda: self.refused(f.assign(j, cands, weights), anyone, "CandidatesDiffer"))
            out.append(lambda: self.refused(f.expire(j), anyone, "WrongStatus"))
            p0 = g
            out.append(lambda: self.refused(f.submitProof(j, p0.proof, list(p0.instances)), anyone, "WrongStatus"))
        if (j1 := pick(assigned + self.open_jobs("final"), k)) is not None:
            fr = self.jobs[j1].frozen
            out.append(
                lambda: self.refused(f.assign(j1, [a for a, _ in fr], [w for _, w in fr]), anyone, "WrongStatus")
            )
        if (j2 := pick(assigned, k)) is not None:
            job2 = self.jobs[j2]
            p2 = self.world.genuine.get((job2.model, job2.input), g)
            args = (j2, p2.proof, list(p2.instances))
            verify_gas = self.circuits[job2.model][5]  # below what the contract demands (1/64 and settling)
            other = pick([a for a in everyone if a.address != job2.node], k)
            out.append(lambda: self.refused(f.submitProof(*args), other, "NotAssignedNode"))
            if nb > job2.deadline:
                out.append(lambda: self.refused(f.submitProof(*args), self.acct(job2.node), "ProofDeadlinePassed"))
            else:
                out.append(lambda: self.refused(f.expire(j2), anyone, "ProveWindowOpen"))
                # too little gas to run the verifier: refused before judging (the node keeps its stake)
                out.append(
                    lambda: self.refused(
                        f.submitProof(*args), self.acct(job2.node), "NotEnoughGasToVerify", gas=verify_gas
                    )
                )
        if (j3 := pick(self.open_jobs("final"), k)) is not None:
            job3 = self.jobs[j3]
            p3 = self.world.genuine.get((job3.model, job3.input), g)
            node3 = self.acct(job3.node) if job3.node else anyone
            out.append(lambda: self.refused(f.submitProof(j3, p3.proof, list(p3.instances)), node3, "WrongStatus"))
            out.append(lambda: self.refused(f.expire(j3), anyone, "WrongStatus"))
        self.specific = out[first_specific:]
        out.append(lambda: self.refused_payment(anyone, 1 + k))
        if (a1 := pick(sorted(a for a, n in self.nodes.items() if n.open_jobs and not n.unbond_block), k)) is not None:
            out.append(lambda: self.refused(r.requestUnbond(), self.acct(a1), "OpenJobs"))
        if (a2 := pick(sorted(a for a, n in self.nodes.items() if n.unbond_block), k)) is not None:
            out.append(lambda: self.refused(r.topUp(), self.acct(a2), "Unbonding", value=1))
            out.append(lambda: self.refused(r.requestUnbond(), self.acct(a2), "AlreadyUnbonding"))
        if (a3 := pick(sorted(a for a, n in self.nodes.items() if n.unbond_block > nb), k)) is not None:
            out.append(lambda: self.refused(r.withdrawStake(), self.acct(a3), "UnbondingDelay"))
        if (a4 := pick(sorted(self.nodes), k)) is not None:
            out.append(lambda: self.refused(r.slash(a4, 10_000), self.outsider, "NotScheme"))
            out.append(lambda: self.refused(r.unlock(a4), anyone, "NotScheme"))
        if (a5 := pick([a for a in self.pool if a.address not in self.nodes], k)) is not None:
            fn5 = r.register("zk://low", b"", [mid])
            out.append(lambda: self.refused(fn5, a5, "StakeBelowMinimum", value=MIN - 1))
            out.append(lambda: self.refused(r.withdrawStake(), a5, "NotRegistered"))
        return out

    def refused_payment(self, sender: LocalAccount, value: int) -> None:
        """Coin sent straight to ZkJobs (not through a function) is refused."""
        plain = {"from": sender.address, "to": self.market.address, "value": value}
        try:
            self.w3.eth.call(plain, "pending")
        except (ContractLogicError, TransactionFailed) as e:
            assert getattr(revert_error(e), "error", "") == "DirectPaymentRefused"
        else:
            raise AssertionError("a plain payment to ZkJobs went through")

        def build(params):  # noqa: ANN001, ANN202
            return {**params, "to": self.market.address, "gasPrice": self.w3.eth.gas_price}

        self.mine_refused(build, sender, value, "DirectPaymentRefused")

    # ---- the books ----
    @invariant()
    def books(self) -> None:
        if not self.dirty:
            return  # no transaction since the last check: no contract state can have changed
        self.dirty = False
        escrow, bonds, credits, burned = self.totals()
        assert self.bal(self.market.address) == escrow + credits
        assert bonds == 0
        assert escrow == sum(j.fee for j in self.jobs.values() if j.status != "final")
        assert credits == sum(self.credits.values())
        staked = self.slot(self.registry.address, self.world.staked_slot)
        assert self.bal(self.registry.address) == staked == sum(n.stake for n in self.nodes.values())
        assert burned == self.burned == self.bal(BURN_ADDRESS) - self.burn_start
        for a in self.touched | {self.market.address, self.registry.address, BURN_ADDRESS}:
            self.balances[a] = self.bal(a)
        self.touched.clear()
        assert sum(self.balances.values()) + self.gas_spent == self.coin


def run_books(world: World, examples: int, steps: int) -> int:
    """Run the machine; returns the operations it did (counted)."""
    ZkBooks.world = world
    start = Counter(OPS)
    run_state_machine_as_test(
        ZkBooks,
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
    print(f"zk books, refusals so far by error: {dict(sorted(REFUSED.items()))}")
    done = sum(ran.values())
    print(f"zk books: {examples} sequences x {steps} steps, {done} operations: {dict(sorted(ran.items()))}")
    return done


def test_zk_books_under_random_actions(books_world: World) -> None:
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
    print(f"zk books, fast run: {done} operations")
    assert done >= FAST_MIN_OPS, done


@pytest.mark.soak
def test_zk_books_long_run(books_world: World) -> None:
    """The soak tier (make test-soak): batches of 40 sequences until at least SLOW_MIN_OPS operations have run."""
    done = 0
    while done < SLOW_MIN_OPS:
        done += run_books(books_world, 40, 50)
    print(f"zk books, long run: {done} operations")
