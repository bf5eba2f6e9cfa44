"""`veriml demo --scheme optimistic`: one executor per job, a watcher, and a bisection dispute settled on-chain.

Two staked executors serve the shipped integer digit classifier (`int-mlp`); one of them lies about one step
of each job it runs (chosen at random) and computes on from its lie. A watcher re-executes every posted
job. Jobs are submitted until the honest executor has had a job finalize after its challenge window and
the dishonest one has been challenged, bisected down to one step, and lost that step on-chain. Everything
is real: the contracts run on the in-process EVM and every payment moves escrowed coin.

`OptimisticNetwork` (the whole network in one process, stepped deterministically) is also what the tests
and benchmarks/optimistic_cost.py stand on.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from veriml.chain.backends import Chain, embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, deploy
from veriml.chain.optimistic import OptimisticConfig, OptimisticJobs, OptJobView, OptStatus, deploy_optimistic
from veriml.models.intmlp import IntModel, digits_split, encode_pixels, predict
from veriml.node.optimistic import Action, OptFault, OptimisticNode, OptimisticState
from veriml.verify.bisection import rounds_for
from veriml.verify.trace import padded_steps

ETH = 10**18
STATUS_NAMES = {
    OptStatus.FINALIZED: "verified",
    OptStatus.OVERTURNED: "overturned",
    OptStatus.REFUNDED: "refunded",
}
MAX_JOBS = 16  # the liar is drawn with probability 1/2 per job until caught: 2^-15 that it never is
DEMO_STAKE = 3 * ETH // 2  # one slash (50%) leaves 0.75 ETH, below the 1 ETH minimum: a caught liar is not drawn again


@dataclass
class OptimisticNetwork:
    """Chain, contracts, the registered integer models (`model` is the first), executors, watchers and a user,
    in one process."""

    chain: Chain
    contracts: Contracts
    opt: OptimisticJobs
    models: list[IntModel]
    executors: list[OptimisticNode]
    watchers: list[OptimisticNode]
    user: LocalAccount
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)
    _settled: set[int] = field(default_factory=set, repr=False)

    @classmethod
    def start(
        cls,
        executors: Sequence[OptFault] = (OptFault.HONEST,),
        watchers: Sequence[OptFault] = (OptFault.HONEST,),
        chain: Chain | None = None,
        config: DeployConfig | None = None,
        opt_config: OptimisticConfig | None = None,
        workdir: Path | None = None,
        stake_wei: int = 2 * ETH,
        models: Sequence[IntModel] | None = None,
    ) -> OptimisticNetwork:
        """Deploy everything, register the models (default: the shipped int-mlp), stake one executor per fault
        and start the watchers; every participant serves or watches every model."""
        tmp = None
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="veriml-opt-")
            workdir = Path(tmp.name)
        chain = chain or embedded_chain()
        acc = chain.accounts
        if len(executors) + len(watchers) + 2 > len(acc):
            raise ValueError("not enough dev accounts for that many participants")
        deployer, user = acc[0], acc[1]
        dep = deploy_optimistic(chain, deploy(chain, deployer, config), deployer, opt_config)
        contracts, opt = Contracts(chain, dep), OptimisticJobs(chain, dep)
        loaded = list(models) if models else [IntModel.load()]
        for m in loaded:
            man = m.manifest
            contracts.register_model(deployer, m.model_id, man.weights_root_bytes, man.policy, 0, man.price_wei)
        nodes = []
        for i, fault in enumerate([*executors, *watchers]):
            is_executor = i < len(executors)
            state = OptimisticState(workdir / f"opt{i}.sqlite")
            node = OptimisticNode(
                opt,
                acc[2 + i],
                loaded,
                state,
                executes=is_executor,
                watch_share=0.0 if is_executor else 1.0,
                fault=fault,
                seed=i,
            )
            if is_executor:
                node.register(contracts, stake_wei)
            nodes.append(node)
        return cls(chain, contracts, opt, loaded, nodes[: len(executors)], nodes[len(executors) :], user, tmp)

    @property
    def model(self) -> IntModel:
        return self.models[0]

    @property
    def nodes(self) -> list[OptimisticNode]:
        return [*self.executors, *self.watchers]

    def close(self) -> None:
        for n in self.nodes:
            n.state.close()
        self.chain.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> OptimisticNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- driving ----
    def submit(self, data: bytes, fee: int | None = None, model: IntModel | None = None) -> int:
        model = model or self.model
        job_id, _ = self.opt.submit(self.user, model.model_id, data, fee or model.manifest.price_wei)
        return job_id

    def tick(self) -> list[Action]:
        """Step every participant once; if nobody acted, let time pass up to the next deadline."""
        actions = [a for n in self.nodes for a in n.step()]
        if not any(a.what != "skip" for a in actions):
            self.chain.mine(self._blocks_to_next_deadline())
        return actions

    def _blocks_to_next_deadline(self) -> int:
        head = self.chain.block_number()
        waits = []
        for job_id in range(1, self.opt.next_job_id()):
            if job_id in self._settled:
                continue
            j, d = self.opt.job_and_dispute(job_id)
            if j.status == OptStatus.SUBMITTED:
                waits.append(j.submit_block + 1 - head)
            elif j.status in (OptStatus.ASSIGNED, OptStatus.POSTED):
                waits.append((d.deadline if d.open else j.deadline) + 1 - head)
            else:
                self._settled.add(job_id)
        return max(1, min(waits, default=1))

    def wait(self, job_id: int, between: Callable[[list[Action]], None] | None = None, max_ticks: int = 400) -> None:
        """Tick until the job is settled (and its payments withdrawn by the participants)."""
        for _ in range(max_ticks):
            actions = self.tick()
            if between is not None:
                between(actions)
            if self.opt.job(job_id).status.final:
                for _ in range(2):  # let participants withdraw what settlement credited them
                    self.tick()
                return
        raise TimeoutError(f"job {job_id} did not settle within {max_ticks} ticks")

    def run_job(
        self, data: bytes, between: Callable[[list[Action]], None] | None = None, model: IntModel | None = None
    ) -> dict:
        job_id = self.submit(data, model=model)
        self.wait(job_id, between)
        return job_report(self, job_id)


# ---- reports ----
def _tx(ev: Any) -> str:
    return "0x" + bytes(ev["transactionHash"]).hex()


def _dispute_report(net: OptimisticNetwork, j: OptJobView, challenged: Any, settled: Any, evs: dict) -> dict:
    """One dispute from its events: the bisection rounds, the step it narrowed to, who won, the check's gas."""
    a, b = challenged["blockNumber"], settled["blockNumber"]

    def within(name: str) -> list:
        return [e for e in evs[name] if a <= e["blockNumber"] <= b]

    check = within("StepChecked")
    gas = net.chain.w3.eth.get_transaction_receipt(check[0]["transactionHash"])["gasUsed"] if check else None
    rounds = []
    for m, r in zip(within("MidpointPosted"), within("Responded"), strict=False):
        rounds.append(
            {
                "round": r["args"]["round"],
                "mid": m["args"]["mid"],
                "executor_hash": "0x" + bytes(m["args"]["stateHash"]).hex(),
                "agree": r["args"]["agree"],
                "lo": r["args"]["lo"],
                "hi": r["args"]["hi"],
            }
        )
    return {
        "challenger": challenged["args"]["challenger"],
        "steps": j.steps,
        "rounds": settled["args"]["rounds"],
        "expected_rounds": rounds_for(j.steps),
        "step": settled["args"]["lo"],
        "winner": "executor" if settled["args"]["executorWon"] else "challenger",
        "reason": settled["args"]["reason"],
        "one_step_gas": gas,
        "bisection": rounds,
        "txs": {"challenge": _tx(challenged), "settle": _tx(settled)},
    }


def job_report(net: OptimisticNetwork, job_id: int) -> dict:
    """What happened to one job, from the contract's events: the JSON the demo writes for it."""
    j = net.opt.job(job_id)
    names = (
        "JobSubmitted",
        "ResultPosted",
        "Challenged",
        "MidpointPosted",
        "Responded",
        "StepChecked",
        "DisputeSettled",
        "Credited",
        "JobOverturned",
        "JobRefunded",
    )
    evs = {n: net.opt.events(n, j.submit_block, jobId=job_id) for n in names}
    (submitted,) = evs["JobSubmitted"]
    fee = submitted["args"]["fee"]
    posted = evs["ResultPosted"]
    claim = bytes(posted[0]["args"]["output"]) if posted else None
    stood = claim is not None and j.status == OptStatus.FINALIZED  # an overturned result is only a claim
    disputes = [
        _dispute_report(net, j, c, s, evs) for c, s in zip(evs["Challenged"], evs["DisputeSettled"], strict=False)
    ]
    refund = sum(e["args"]["amount"] for e in evs["Credited"] if e["args"]["account"] == j.user)
    missed = [e for e in evs["JobRefunded"] if e["args"]["reason"] == "executor did not post"]
    slashed_wei = 0
    if evs["JobOverturned"]:
        slashed_wei = evs["JobOverturned"][0]["args"]["slashed"]
    elif missed:
        slashed_wei = missed[0]["args"]["amount"] - fee
    return {
        "id": job_id,
        "model": next(m.manifest.name for m in net.models if m.model_id == j.model_id),
        "scheme": "optimistic",
        "status": STATUS_NAMES.get(j.status, j.status.name.lower()),
        "executor": j.executor,
        "output": output_int8(claim) if stood else None,
        "prediction": predict(claim) if stood else None,
        "posted_output": None if claim is None else output_int8(claim),
        "posted_prediction": None if claim is None else predict(claim),
        "output_digest": "0x" + j.result_digest.hex() if posted else None,
        "trace_root": "0x" + j.trace_root.hex() if posted else None,
        "steps": j.steps,
        "fee": fee,
        "fee_paid": fee - min(refund, fee),
        "refund": refund,
        "slashed": [j.executor] if slashed_wei else [],
        "slashed_wei": slashed_wei,
        "dispute": disputes[-1] if disputes else None,
        "disputes": disputes,
        "txs": {"submit": _tx(submitted), **({"post": _tx(posted[0])} if posted else {})},
    }


def output_int8(output: bytes) -> list[int]:
    return [b - 256 if b > 127 else b for b in output]


# ---- the demo ----
def eth(wei: int) -> str:
    return f"{wei / ETH:.4f}"


def short(addr: str) -> str:
    return f"{addr[:6]}..{addr[-4:]}"


def run_optimistic_demo(console: Console, json_path: Path | None = None) -> dict:
    """Run the optimistic demo on the embedded chain; print it with rich and return (and maybe write) the JSON."""
    console.print(
        Panel.fit(
            "[bold]veriml demo[/]: the optimistic scheme: one executor per job, a challenge window, bisection\n"
            "model: [cyan]int-mlp[/] (8x8 digits, int8 runtime, bit-exact on every machine and on-chain) · 2 staked "
            "executors (one [red]lies about one step[/] of each job it runs) · 1 watcher re-executing every job",
            border_style="blue",
        )
    )
    with console.status("deploying contracts, registering the model, staking 2 executors..."):
        net = OptimisticNetwork.start(
            [OptFault.HONEST, OptFault.TAMPERED_STEP], [OptFault.HONEST], stake_wei=DEMO_STAKE
        )
    with net:
        report = _demo(console, net)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {json_path}")
    return report


def _demo(console: Console, net: OptimisticNetwork) -> dict:
    c, opt, man = net.contracts, net.opt, net.model.manifest
    _, x_test, _, y_test = digits_split()
    float_acc = float((net.model.float_model().forward(x_test).argmax(1) == y_test).mean())
    int_acc = float((net.model.mlp.forward(x_test).argmax(1) == y_test).mean())
    console.print(f"OptimisticJobs {opt.address}\nNodeRegistry   {c.deployment.node_registry}")
    console.print(
        f"model [bold]{man.name}[/] id 0x{net.model.model_id.hex()[:16]}.. sizes {man.architecture['sizes']}, "
        f"{net.model.mlp.steps} steps per job (one neuron each), weights root {man.weights_root[:18]}..; "
        f"test accuracy float {float_acc:.4f}, integer {int_acc:.4f}"
    )
    roles = {n.address: ("honest executor" if n.honest else "lying executor") for n in net.executors}
    roles |= {n.address: "watcher" for n in net.watchers}
    stakes_before = {n.address: c.stake_of(n.address) for n in net.executors}
    balances_before = {a: c.balance(a) for a in [*roles, net.user.address]}

    jobs: list[dict] = []
    honest = {n.address for n in net.executors if n.honest}
    for k in range(MAX_JOBS):
        done_honest = any(j["status"] == "verified" and j["executor"] in honest for j in jobs)
        caught = any(j["status"] == "overturned" for j in jobs)
        if done_honest and caught:
            break
        i = k % len(x_test)
        with console.status(f"job {k + 1}: classifying test digit #{i} (label {y_test[i]})..."):
            report = net.run_job(encode_pixels(x_test[i]))
        report["label"] = int(y_test[i])
        liar = next((n for n in net.executors if n.address == report["executor"] and not n.honest), None)
        report["tampered_step"] = liar.tampered_step(net.opt.job(report["id"])) if liar else None
        jobs.append(report)
        _print_job(console, net, report, roles)

    user_owed = opt.credits(net.user.address)
    if user_owed:
        opt.withdraw(net.user)
    nodes = [
        {
            "address": a,
            "role": r,
            "stake_before": stakes_before.get(a),
            "stake_after": c.stake_of(a) if a in stakes_before else None,
            "balance_change_incl_gas": c.balance(a) - balances_before[a],
        }
        for a, r in roles.items()
    ]
    books = {**opt.totals(), "registry_balance": c.balance(c.deployment.node_registry), "stakes": c.total_staked()}
    user = {
        "address": net.user.address,
        "fees_escrowed": sum(j["fee"] for j in jobs),
        "fees_spent": sum(j["fee_paid"] for j in jobs),
        "refunded": sum(j["refund"] for j in jobs),
        "balance_change_incl_gas": c.balance(net.user.address) - balances_before[net.user.address],
    }
    _print_summary(console, nodes, books, jobs)
    return {
        "scheme": "optimistic",
        "model": {
            "name": man.name,
            "id": "0x" + net.model.model_id.hex(),
            "steps": net.model.mlp.steps,
            "float_accuracy": float_acc,
            "int_accuracy": int_acc,
        },
        "jobs": jobs,
        "nodes": nodes,
        "user": user,
        "books": books,
    }


def _print_job(console: Console, net: OptimisticNetwork, r: dict, roles: dict[str, str]) -> None:
    colour = {"verified": "green", "overturned": "red"}.get(r["status"], "yellow")
    who = f"executor {short(r['executor'])} ({roles[r['executor']]})"
    console.rule(f"job {r['id']} · {who} · [{colour}]{r['status']}[/]")
    console.print(
        f"  digit label {r['label']}; posted logits {r['posted_output']} -> class {r['posted_prediction']}; "
        f"{r['steps']} steps, trace root {(r['trace_root'] or '-')[:18]}.."
    )
    if r.get("tampered_step") is not None:
        k = r["tampered_step"]
        console.print(
            f"  [red]the executor lied about step {k - 1} -> {k}[/] ({_step_name(net, r['id'], k - 1)}) "
            "and computed on from its lie"
        )
    for d in r["disputes"]:
        padded = padded_steps(d["steps"])
        t = Table(title=f"dispute by {short(d['challenger'])}: bisection over states 0..{padded}", title_justify="left")
        for col in ("round", "range before", "midpoint", "executor's state hash", "watcher", "range after"):
            t.add_column(col)
        lo, hi = 0, padded
        for b in d["bisection"]:
            verdict = "[green]agree[/]" if b["agree"] else "[red]disagree[/]"
            t.add_row(
                str(b["round"]),
                f"[{lo}, {hi}]",
                str(b["mid"]),
                b["executor_hash"][:18] + "..",
                verdict,
                f"[{b['lo']}, {b['hi']}]",
            )
            lo, hi = b["lo"], b["hi"]
        console.print(t)
        winner = "[red]challenger[/]" if d["winner"] == "challenger" else "[green]executor[/]"
        gas = f"{d['one_step_gas']:,} gas" if d["one_step_gas"] else "no proof"
        console.print(
            f"  {d['rounds']} rounds (ceil(log2({d['steps']})) = {d['expected_rounds']}); {d['reason']} of step "
            f"{d['step']} -> {d['step'] + 1} ({_step_name(net, r['id'], d['step'])}): {gas}; winner {winner}"
        )
    if r["status"] == "overturned":
        stake = net.contracts.stake_of(r["executor"])
        note = (
            " (below the minimum: it is no longer drawn)"
            if stake < net.contracts.deployment.config.min_stake_wei
            else ""
        )
        console.print(
            f"  executor slashed {eth(r['slashed_wei'])} ETH -> the challenger (plus its bond back), stake now "
            f"{eth(stake)} ETH{note}; user refunded {eth(r['refund'])} ETH"
        )
    else:
        paid, refund = eth(r["fee_paid"]), eth(r["refund"])
        console.print(f"  fee {eth(r['fee'])} ETH: paid {paid} to the executor after the window, refunded {refund}")


def _step_name(net: OptimisticNetwork, job_id: int, index: int) -> str:
    """Which neuron a step computes, from the honest trace of the job."""
    watcher = net.watchers[0] if net.watchers else net.executors[0]
    s = watcher.truth(net.opt.job(job_id)).state_at(index)
    return "halted" if s.halted else f"layer {s.layer}, neuron {s.row}"


def _print_summary(console: Console, nodes: list[dict], books: dict, jobs: list[dict]) -> None:
    t = Table(title="participants after the run (ETH)", title_justify="left")
    for col in ("address", "role", "stake", "balance change (incl. gas)"):
        t.add_column(col)
    for n in nodes:
        stake = "-" if n["stake_before"] is None else f"{eth(n['stake_before'])} -> {eth(n['stake_after'])}"
        t.add_row(short(n["address"]), n["role"], stake, eth(n["balance_change_incl_gas"]))
    console.print(t)
    ok = books["balance"] == books["escrow"] + books["bonds"] + books["credits"]
    ok = ok and books["registry_balance"] == books["stakes"]
    console.print(
        f"books {'[green]balanced[/]' if ok else '[red]UNBALANCED[/]'}: OptimisticJobs {eth(books['balance'])} = "
        f"escrow {eth(books['escrow'])} + bonds {eth(books['bonds'])} + credits {eth(books['credits'])}; "
        f"registry {eth(books['registry_balance'])} = stakes {eth(books['stakes'])}"
    )
    verified = sum(j["status"] == "verified" for j in jobs)
    overturned = sum(j["status"] == "overturned" for j in jobs)
    console.print(f"[bold]{len(jobs)} jobs: {verified} verified after the window, {overturned} fraud(s) caught.[/]")
