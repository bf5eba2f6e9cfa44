"""The one participant loop every node runs, whatever schemes it takes part in.

A node is a `Participant`: one account, one `NodeState`, and one `Role` per scheme (the quorum member,
the optimistic executor/watcher, the zk prover, ...; each defined by its scheme module under
`veriml.schemes`). `step()` does one pass: for every role, discover newly submitted jobs from its
contract's events, advance every open job, and withdraw what the contract credits us. It returns what it
did, so the demo and tests can drive several in-process nodes deterministically; `run()` loops it for a
node process.

A node never dies of a job: an exception while handling one job (a revert, a bad input, a bug, a full
disk) is logged and recorded as a `skip`, and the loop goes on with the next job and the next step.
Dishonest behaviour is not here: `veriml.sim.faults` wraps roles from outside.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from veriml.chain import reverts
from veriml.chain.contracts import Contracts
from veriml.chain.scheme_contract import SchemeContract
from veriml.errors import ContractRevert, NetworkError
from veriml.node.state import NodeState, SchemeState

log = logging.getLogger("veriml.node")

MAX_DETAIL = 300  # characters of an error kept in an Action (user bytes can reach error messages)


@dataclass(frozen=True)
class Action:
    """One thing a node did in a step (for logs, the demo and tests)."""

    node: str
    job_id: int
    what: str  # assign | commit | reveal | finalize | post | challenge | bisect | ... | withdraw | skip
    tx: str | None = None
    detail: str = ""
    gas: int | None = None
    scheme: str = ""


@dataclass(frozen=True)
class RoleEnv:
    """What a role needs from its surroundings, the same in the harness and in a node process."""

    models: tuple[str, ...]  # model names the node serves (each role takes those of its scheme)
    input_store: Any
    output_store: Any
    workdir: Path
    loaded: dict[str, Any]  # name -> loaded model, shared between nodes of one network
    variation: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)  # per-network resources (a prover pool)


class Role:
    """One scheme's part of a node. Subclasses implement `serves` and `advance`."""

    def __init__(self, jobs: SchemeContract, account: LocalAccount, state: NodeState) -> None:
        self.jobs = jobs
        self.account = account
        self.state: SchemeState = state.scope(jobs.SCHEME)
        self._moved = True  # something may have credited us: check (always after a restart)

    @property
    def scheme(self) -> str:
        return self.jobs.SCHEME

    @property
    def address(self) -> str:
        return self.account.address

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address[:10]}..)"

    # ---- to implement ----
    def model_ids(self) -> list[bytes]:
        """The models this role serves as a staked node (registered in the NodeRegistry); [] if none."""
        return []

    def serves(self, submitted: Any) -> bool:
        """Whether to follow a job, from its JobSubmitted event."""
        raise NotImplementedError

    def advance(self, job_id: int, head: int) -> list[Action]:
        """Move one followed job on; close it in `self.state` once there is nothing more to do."""
        raise NotImplementedError

    @property
    def busy(self) -> bool:
        """Whether work is running outside the chain (a proof in a worker), so time should not be skipped."""
        return False

    # ---- helpers for roles ----
    def act(self, job_id: int, what: str, send: Callable[[], Any], detail: str = "") -> Action:
        """Send a transaction and describe it."""
        receipt = send()
        self._moved = True
        return Action(
            self.address, job_id, what, Web3.to_hex(receipt["transactionHash"]), detail, int(receipt["gasUsed"]),
            self.scheme,
        )  # fmt: skip

    def racy(self, job_id: int, what: str, send: Callable[[], Any], detail: str = "") -> list[Action]:
        """Send a transaction any party may send (assign, finalize, timeout, ...); losing the race to another
        party (the job is no longer in the status the call needs) is not an error."""
        try:
            return [self.act(job_id, what, send, detail)]
        except reverts.WrongStatus:
            return []

    def skip(self, job_id: int, why: str) -> Action:
        return Action(self.address, job_id, "skip", detail=why[:MAX_DETAIL], scheme=self.scheme)

    # ---- the loop's part ----
    def discover(self, head: int) -> None:
        start = self.state.last_block + 1
        if start > head:
            return
        for ev in self.jobs.events("JobSubmitted", start, head):
            if self.serves(ev):
                self.state.add(int(ev["args"]["jobId"]))
        self.state.last_block = head

    def step(self, head: int) -> list[Action]:
        self.discover(head)
        actions: list[Action] = []
        followed = self.state.open_jobs()
        for rec in followed:
            actions += self.guarded(rec.job_id, head)
        if len(self.state.open_jobs()) < len(followed):
            self._moved = True  # a job closed: another party's finalize may have credited us
        if self._moved:
            self._moved = False
            owed = self.jobs.credits(self.address)
            if owed > 0:
                actions.append(self.act(0, "withdraw", lambda: self.jobs.withdraw(self.account), f"{owed} wei"))
        return actions

    def guarded(self, job_id: int, head: int) -> list[Action]:
        """`advance`, turning any failure into a logged `skip`: no job can stop the node."""
        try:
            return self.advance(job_id, head)
        except ContractRevert as e:
            # The chain refused: our view was stale (a window closed under us). The next step re-reads.
            log.warning("%s %s job %s: %s", self.address[:10], self.scheme, job_id, e.reason[:MAX_DETAIL])
            return [self.skip(job_id, e.reason)]
        except NetworkError:
            raise  # the chain or a blob service is unreachable: the whole step is retried
        except Exception as e:  # noqa: BLE001 - a job must never take the node down
            log.exception("%s %s job %s failed", self.address[:10], self.scheme, job_id)
            return [self.skip(job_id, f"{type(e).__name__}: {e}")]


class Participant:
    """One node: an account, its state and its roles, stepped together."""

    def __init__(self, contracts: Contracts, account: LocalAccount, state: NodeState, roles: Sequence[Role]) -> None:
        self.contracts = contracts
        self.account = account
        self.state = state
        self.roles = list(roles)

    @property
    def address(self) -> str:
        return self.account.address

    def __repr__(self) -> str:
        return f"Participant({self.address[:10]}.., {', '.join(r.scheme for r in self.roles)})"

    def role(self, scheme: str) -> Role:
        return next(r for r in self.roles if r.scheme == scheme)

    @property
    def honest(self) -> bool:
        return all(getattr(r, "honest", True) for r in self.roles)

    @property
    def busy(self) -> bool:
        return any(r.busy for r in self.roles)

    def register(self, stake: int, endpoint: str, pubkey: bytes = b"") -> bool:
        """Stake and announce every role's models, unless already registered; True if it registered now."""
        model_ids = list(dict.fromkeys(m for r in self.roles for m in r.model_ids()))
        if not model_ids or self.contracts.node(self.address).registered:
            return False
        self.contracts.register_node(self.account, stake, endpoint, pubkey, model_ids)
        return True

    def step(self) -> list[Action]:
        head = self.contracts.chain.block_number()
        return [a for r in self.roles for a in r.step(head)]

    def run(self, stop: threading.Event, poll_interval: float = 0.5) -> None:
        """Step until `stop` is set; a step the network failed is retried next time."""
        while not stop.is_set():
            try:
                for a in self.step():
                    log.info("%s %s job %s %s %s", a.node[:10], a.scheme, a.job_id, a.what, a.detail)
            except NetworkError as e:
                log.warning("%s: step failed, retrying: %s", self.address[:10], e)
            except Exception:  # noqa: BLE001 - discovery or withdrawal failed; never exit the loop for it
                log.exception("%s: step failed, retrying", self.address[:10])
            stop.wait(poll_interval)
