"""Optimistic-scheme participants: executors post traced results, watchers re-execute and dispute them.

One `OptimisticNode` can play both roles. As an **executor** (a staked node serving the model) it assigns
jobs, posts the output with its trace root when drawn, answers bisection rounds from its trace, and
finalizes after the challenge window. As a **watcher** (any funded address) it re-executes a share of the
posted jobs (`watch_share`; chosen by a hash of its address and the job, so the choice survives a restart),
challenges a result whose final state differs from its own, answers agree/disagree from its own trace,
and submits the one-step proof. Either party calls `timeout` when the other lets its turn lapse.

`step()` does one pass and returns what it did, like `NodeDaemon.step`. What must survive a restart (the
event cursor, the jobs followed and how they ended) is in SQLite (`OptimisticState`); traces are recomputed
from the input on-chain, and a dishonest executor's tampering is drawn from its seed and the job id, so it
tells the same lie after a restart.

Dishonest behaviour is data (`OptFault`): a TAMPERED_STEP executor changes the output of one step chosen at
random and computes on from there; NO_POST never posts; SILENT never plays its dispute turns; a FRIVOLOUS
watcher challenges correct results and disagrees with every midpoint.
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
from web3 import Web3

from veriml.chain.contracts import Contracts
from veriml.chain.optimistic import DisputeView, OptimisticJobs, OptJobView, OptStatus, Turn
from veriml.errors import ContractRevert
from veriml.models.intmlp import IntMLP, IntModel
from veriml.node.loop import register_once, run_steps
from veriml.verify.bisection import one_step_winner, should_challenge
from veriml.verify.trace import State, Trace, run_trace

log = logging.getLogger("veriml.node.optimistic")

# Reverts that only mean another party got there first.
_RACES = (
    "OptimisticJobs: job not awaiting assignment",
    "OptimisticJobs: job not awaiting a result",
    "OptimisticJobs: job not posted",
    "OptimisticJobs: no dispute open",
    "OptimisticJobs: dispute not at one step",
)


class OptFault(Enum):
    HONEST = "honest"
    TAMPERED_STEP = "tampered-step"
    NO_POST = "no-post"
    SILENT = "silent"
    FRIVOLOUS = "frivolous"


@dataclass(frozen=True)
class Action:
    """One thing a participant did in a step (for logs, the demo and tests)."""

    node: str
    job_id: int
    what: str  # assign | post | challenge | bisect | respond | prove | timeout | missed-post | finalize | ...
    tx: str | None = None
    detail: str = ""
    gas: int | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS opt_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS opt_jobs (job_id INTEGER PRIMARY KEY, done INTEGER NOT NULL, outcome TEXT, updated REAL);
"""


class OptimisticState:
    """SQLite memory of one participant: the event cursor and the jobs it follows (`:memory:` for throwaways)."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        # WAL without an fsync per commit: a crash may lose the last cursor move, which only means scanning
        # a few blocks of events again; the database itself stays consistent.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @property
    def last_block(self) -> int:
        row = self._db.execute("SELECT value FROM opt_meta WHERE key = 'last_block'").fetchone()
        return int(row[0]) if row else -1

    @last_block.setter
    def last_block(self, block: int) -> None:
        if block == self.last_block:
            return
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO opt_meta (key, value) VALUES ('last_block', ?)", (str(block),))

    def follow(self, job_id: int) -> None:
        """Start following a job (no-op if already followed)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO opt_jobs VALUES (?, 0, NULL, ?)", (job_id, time.time()))

    def close_job(self, job_id: int, outcome: str) -> None:
        with self._lock:
            sql = "UPDATE opt_jobs SET done = 1, outcome = ?, updated = ? WHERE job_id = ?"
            self._db.execute(sql, (outcome, time.time(), job_id))

    def open_jobs(self) -> list[int]:
        return [r[0] for r in self._db.execute("SELECT job_id FROM opt_jobs WHERE done = 0 ORDER BY job_id")]

    def outcomes(self) -> dict[int, str | None]:
        return dict(self._db.execute("SELECT job_id, outcome FROM opt_jobs ORDER BY job_id").fetchall())


class OptimisticNode:
    """An executor, a watcher, or both, for the integer models it knows."""

    def __init__(
        self,
        opt: OptimisticJobs,
        account: LocalAccount,
        models: list[IntModel],
        state: OptimisticState,
        *,
        executes: bool = True,
        watch_share: float = 1.0,
        fault: OptFault = OptFault.HONEST,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= watch_share <= 1.0:
            raise ValueError("watch_share must be in [0, 1]")
        self.opt = opt
        self.account = account
        self.models = {m.model_id: m for m in models}
        self.state = state
        self.executes = executes
        self.watch_share = watch_share
        self.fault = fault
        self.seed = seed
        self._inputs: dict[int, bytes] = {}
        self._traces: dict[tuple[int, str], Trace] = {}
        self._seen: dict[int, tuple] = {}  # what each followed job looked like at the last step
        self._moved = True  # something may have credited us: check (always after a restart)
        self._challenged: set[int] = set()

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def honest(self) -> bool:
        return self.fault is OptFault.HONEST

    def __repr__(self) -> str:
        return f"OptimisticNode({self.address[:10]}.., {self.fault.value})"

    def register(self, contracts: Contracts, stake: int, endpoint: str = "chain://optimistic") -> bool:
        """Stake as an executor of the known models, unless already registered; True if it registered now."""
        return register_once(contracts, self.account, stake, endpoint, b"", list(self.models))

    # ---- the loop ----
    def run(self, stop: threading.Event, poll_interval: float = 0.5) -> None:
        """Step until `stop` is set; errors in one step are logged and the next step retries."""
        run_steps(self.step, self.address, stop, poll_interval)

    def step(self) -> list[Action]:
        """Discover new jobs, advance every open one, and withdraw credits."""
        head = self.opt.chain.block_number()
        self._discover(head)
        actions: list[Action] = []
        for job_id in self.state.open_jobs():
            try:
                actions += self._advance(job_id, head)
            except ContractRevert as e:
                log.warning("%s job %s: %s", self.address[:10], job_id, e.reason)
                actions.append(Action(self.address, job_id, "skip", detail=e.reason))
        # Credits only change when a job we follow settles or ends a dispute (or before a restart): ask only then.
        if self._moved:
            self._moved = False
            owed = self.opt.credits(self.address)
            if owed > 0:
                actions.append(self._act(0, "withdraw", lambda: self.opt.withdraw(self.account), f"{owed} wei"))
        return actions

    def _discover(self, head: int) -> None:
        start = self.state.last_block + 1
        if start > head:
            return
        for ev in self.opt.events("JobSubmitted", start, head):
            if bytes(ev["args"]["modelId"]) in self.models:
                self._inputs[ev["args"]["jobId"]] = bytes(ev["args"]["input"])
                self.state.follow(ev["args"]["jobId"])
        self.state.last_block = head

    def _advance(self, job_id: int, head: int) -> list[Action]:
        j, d = self.opt.job_and_dispute(job_id)
        before = self._seen.get(job_id)
        self._seen[job_id] = (j.status, d.open)
        if before is not None and ((before[1] and not d.open) or (j.status.final and not before[0].final)):
            self._moved = True  # a dispute or the job settled: it may have credited us
        me = self.address
        if j.status.final:
            self.state.close_job(job_id, j.status.name.lower())
            self._forget(job_id)
            return []
        if j.status == OptStatus.SUBMITTED:
            if self.executes and head > j.submit_block:
                return self._racy(job_id, "assign", lambda: self.opt.assign(self.account, job_id))
            return []
        if j.status == OptStatus.ASSIGNED:
            if j.executor == me and head <= j.deadline and self.fault is not OptFault.NO_POST:
                t = self.claimed(j)
                detail = f"output {t.output.hex()}, {t.steps} steps, trace root 0x{t.root.hex()[:12]}.."
                post = lambda: self.opt.post(self.account, job_id, t.output, t.root, t.steps)  # noqa: E731
                return [self._act(job_id, "post", post, detail)]
            if head > j.deadline and j.executor != me:
                return self._racy(job_id, "missed-post", lambda: self.opt.missed_post(self.account, job_id))
            return []
        if d.open:
            return self._play(j, d, head)
        if head > j.deadline:
            if j.executor == me:
                return self._racy(job_id, "finalize", lambda: self.opt.finalize(self.account, job_id))
            return []
        if j.executor == me or not self._watches(job_id):
            return []
        wrong = should_challenge(j.result_digest, self.truth(j), j.steps)
        if not (wrong or self.fault is OptFault.FRIVOLOUS) or job_id in self._challenged:
            return []
        if self.opt.has_challenged(job_id, me):  # before a restart; a job can be challenged once per address
            self._challenged.add(job_id)
            return []
        why = "result differs from re-execution" if wrong else "frivolous"
        action = self._act(job_id, "challenge", lambda: self.opt.challenge(self.account, job_id), why)
        self._challenged.add(job_id)  # only once it went through: a lost race (dispute open) is retried later
        return [action]

    # ---- disputes ----
    def _play(self, j: OptJobView, d: DisputeView, head: int) -> list[Action]:
        """Take our turn in a dispute, or end it when the other side let its turn lapse."""
        me, job_id = self.address, j.job_id
        if me not in (j.executor, d.challenger):
            return []
        # The turns in which silence loses the dispute for us; past the deadline of any other, we win it.
        ours = (Turn.EXECUTOR,) if me == j.executor else (Turn.CHALLENGER, Turn.STEP)
        if head > d.deadline:
            if d.turn in ours:
                return []
            return self._racy(job_id, "timeout", lambda: self.opt.timeout(self.account, job_id))
        if self.fault is OptFault.SILENT:
            return []
        if me == j.executor:
            claim = self.claimed(j)
            if d.turn == Turn.EXECUTOR:
                h, proof = claim.hash_at(d.mid), claim.proof(d.mid)
                detail = f"round {d.rounds + 1}: state {d.mid} of [{d.lo}, {d.hi}] is 0x{h.hex()[:12]}.."
                return [self._act(job_id, "bisect", lambda: self.opt.bisect(self.account, job_id, h, proof), detail)]
            if d.turn == Turn.STEP and self._step_wins(j, d, claim.state_at(d.lo), "executor"):
                return self._prove(j, d, claim.state_at(d.lo))
            return []
        truth = self.truth(j)
        if d.turn == Turn.CHALLENGER:
            agree = self.fault is not OptFault.FRIVOLOUS and truth.hash_at(d.mid) == d.h_mid
            detail = f"round {d.rounds + 1}: {'agree' if agree else 'disagree'} with state {d.mid}"
            return [self._act(job_id, "respond", lambda: self.opt.respond(self.account, job_id, agree), detail)]
        if d.turn == Turn.STEP and self.fault is not OptFault.FRIVOLOUS:
            return self._prove(j, d, truth.state_at(d.lo))
        return []

    def _step_wins(self, j: OptJobView, d: DisputeView, state: State, side: str) -> bool:
        return one_step_winner(state, self.models[j.model_id].mlp.book, d.h_hi) == side

    def _prove(self, j: OptJobView, d: DisputeView, state: State) -> list[Action]:
        mlp = self.models[j.model_id].mlp
        row = None if state.halted else mlp.book[(state.layer, state.row)]
        proof = [] if row is None else mlp.weights_proof(row.layer, row.row)
        where = "halted" if row is None else f"layer {row.layer} row {row.row}"
        detail = f"step {d.lo} -> {d.hi} ({where})"
        return self._racy(
            j.job_id, "prove", lambda: self.opt.prove_step(self.account, j.job_id, state.encode(), row, proof), detail
        )

    # ---- traces ----
    def input_of(self, j: OptJobView) -> bytes:
        if j.job_id not in self._inputs:
            (ev,) = self.opt.events("JobSubmitted", j.submit_block, j.submit_block, jobId=j.job_id)
            self._inputs[j.job_id] = bytes(ev["args"]["input"])
        return self._inputs[j.job_id]

    def truth(self, j: OptJobView) -> Trace:
        """The honest trace of the job (cached)."""
        key = (j.job_id, "truth")
        if key not in self._traces:
            self._traces[key] = self.models[j.model_id].mlp.trace(self.input_of(j))
        return self._traces[key]

    def claimed(self, j: OptJobView) -> Trace:
        """The trace this node posts as executor: the truth, or for TAMPERED_STEP a lie about one step."""
        if self.fault is not OptFault.TAMPERED_STEP:
            return self.truth(j)
        key = (j.job_id, "claim")
        if key not in self._traces:
            rng = random.Random(f"{self.seed}:{j.job_id}")
            self._traces[key] = tampered_trace(self.models[j.model_id], self.input_of(j), rng)
        return self._traces[key]

    def _forget(self, job_id: int) -> None:
        """Drop what a settled job cached in memory."""
        self._inputs.pop(job_id, None)
        self._seen.pop(job_id, None)
        for key in [k for k in self._traces if k[0] == job_id]:
            del self._traces[key]

    def tampered_step(self, j: OptJobView) -> int | None:
        """The first state this node's trace gets wrong (its lie is step i - 1 -> i); None when honest."""
        if self.fault is not OptFault.TAMPERED_STEP:
            return None
        claim, truth = self.claimed(j), self.truth(j)
        return next(i for i in range(len(truth.states)) if claim.hashes[i] != truth.hashes[i])

    # ---- helpers ----
    def _watches(self, job_id: int) -> bool:
        if self.watch_share <= 0:
            return False
        h = int.from_bytes(keccak(bytes.fromhex(self.address[2:]) + job_id.to_bytes(32, "big")), "big")
        return h % 10_000 < round(self.watch_share * 10_000)

    def _act(self, job_id: int, what: str, send: Callable[[], object], detail: str = "") -> Action:
        receipt: dict = send()  # type: ignore[assignment]
        return Action(self.address, job_id, what, Web3.to_hex(receipt["transactionHash"]), detail, receipt["gasUsed"])

    def _racy(self, job_id: int, what: str, send: Callable[[], object], detail: str = "") -> list[Action]:
        """Send a transaction that another party may send first; losing that race is not an error."""
        try:
            return [self._act(job_id, what, send, detail)]
        except ContractRevert as e:
            if e.reason in _RACES:
                return []
            raise


def tampered_trace(model: IntModel, data: bytes, rng: random.Random) -> Trace:
    """The trace of an executor that lies about the output of one step chosen at random (adding a random
    non-zero amount to the int8 it computed) and computes honestly on from its lie. Draws again in the rare
    case that the lie does not change the result, since a lie that does not would not be a fraud."""
    honest = model.mlp.trace(data)
    for _ in range(64):
        t = lie_at(model.mlp, data, rng.randint(1, honest.steps), rng.randint(1, 255))
        if t.result_digest != honest.result_digest:
            return t
    raise RuntimeError("could not find a step whose tampering changes the result")


def lie_at(mlp: IntMLP, data: bytes, k: int, delta: int) -> Trace:
    """The trace whose state `k` has the value written by step k - 1 -> k shifted by `delta` (mod 256), and
    every later state computed honestly from it."""

    def tamper(i: int, s: State) -> State:
        return _bump(s, delta) if i == k else s

    return run_trace(data, mlp.book, tamper=tamper)


def _bump(s: State, delta: int) -> State:
    """`s` with the last value a step wrote (the end of y, or of x after a layer change) shifted by delta."""

    def shift(b: bytes) -> bytes:
        return b[:-1] + bytes([(b[-1] + delta) % 256])

    if s.y:
        return State(s.layer, s.row, s.x, shift(s.y))
    return State(s.layer, s.row, shift(s.x), s.y)
