"""`veriml demo --scheme optimistic`: one executor per job, a watcher, and a bisection dispute settled on-chain.

Two staked executors serve the shipped integer digit classifier (`int-mlp`); one of them lies about one step
of each job it runs (chosen at random) and computes on from its lie. A watcher re-executes every posted
job. Jobs are submitted until the honest executor has had a job finalize after its challenge window and
the dishonest one has been challenged, bisected down to one step, and lost that step on-chain. Everything
is real: the contracts run on the in-process EVM and every payment moves escrowed coin.

The network is the one harness, `veriml.sim.network.LocalNetwork`, with optimistic nodes (`start_network`);
the helpers here (`run_job`, `wait`, `job_report`) are also what the tests and benchmarks/optimistic_cost.py
stand on.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from veriml.chain.deploy import DeployConfig
from veriml.chain.optimistic import OptimisticJobs, OptJobView, OptStatus
from veriml.models.intmlp import IntModel, digits_split, encode_pixels, predict
from veriml.node.participant import Action, Participant
from veriml.schemes.optimistic import OptimisticRole
from veriml.sim.faults import Fault
from veriml.sim.network import ETH, LocalNetwork, NodeSpec
from veriml.verify.bisection import rounds_for
from veriml.verify.trace import padded_steps

OPT = ("optimistic",)
STATUS_NAMES = {
    OptStatus.FINALIZED: "verified",
    OptStatus.OVERTURNED: "overturned",
    OptStatus.REFUNDED: "refunded",
}
MAX_JOBS = 16  # the liar is drawn with probability 1/2 per job until caught: 2^-15 that it never is
DEMO_STAKE = 3 * ETH // 2  # one slash (50%) leaves 0.75 ETH, below the 1 ETH minimum: a caught liar is not drawn again


# ---- the network ----
def executor_spec(fault: Fault = Fault.HONEST, stake_wei: int = 2 * ETH, seed: int = 0) -> NodeSpec:
    """A staked executor (it watches no one else's jobs)."""
    return NodeSpec(fault, stake_wei, schemes=OPT, options={"watch_share": 0.0}, seed=seed)


def watcher_spec(fault: Fault = Fault.HONEST, watch_share: float = 1.0) -> NodeSpec:
    """An unstaked watcher re-executing `watch_share` of the posted jobs."""
    return NodeSpec(fault, schemes=OPT, options={"executes": False, "watch_share": watch_share})


def start_network(
    executors: Sequence[Fault] = (Fault.HONEST,),
    watchers: Sequence[Fault] = (Fault.HONEST,),
    *,
    models: Sequence[str] = ("int-mlp",),
    config: DeployConfig | None = None,
    stake_wei: int = 2 * ETH,
    workdir: Path | None = None,
) -> LocalNetwork:
    """A local network of executors (one per fault, staked, seeded by their index among the nodes) and
    watchers (one per fault) serving the integer `models` (shipped names or model directories), its user an
    optimistic client. Accounts: 0 deploys, 1 is the user, 2.. the executors then the watchers."""
    specs = [executor_spec(f, stake_wei, seed=i) for i, f in enumerate(executors)]
    specs += [watcher_spec(f) for f in watchers]
    return LocalNetwork.start(specs, models=tuple(models), config=config, workdir=workdir, client_scheme="optimistic")


def role(node: Participant) -> OptimisticRole:
    return node.role("optimistic")  # type: ignore[return-value]


def executors(net: LocalNetwork) -> list[Participant]:
    return [n for n in net.nodes if role(n).executes]


def watchers(net: LocalNetwork) -> list[Participant]:
    return [n for n in net.nodes if not role(n).executes]


def jobs_of(net: LocalNetwork) -> OptimisticJobs:
    return net.contracts.scheme("optimistic")


def int_models(net: LocalNetwork) -> list[IntModel]:
    """The network's integer models, in the order it was started with."""
    return [m for n in net.model_names if isinstance(m := net.loaded.get(n), IntModel)]


def wait(
    net: LocalNetwork, job_id: int, between: Callable[[list[Action]], None] | None = None, max_ticks: int = 400
) -> None:
    """Tick until the job is settled (and its payments withdrawn by the participants); `between` sees each
    tick's actions."""
    opt = jobs_of(net)
    for _ in range(max_ticks):
        actions = net.tick()
        if between is not None:
            between(actions)
        if opt.job(job_id).status.final:
            for _ in range(2):  # let participants withdraw what settlement credited them
                net.tick()
            return
    raise TimeoutError(f"job {job_id} did not settle within {max_ticks} ticks")


def run_job(
    net: LocalNetwork,
    data: bytes,
    between: Callable[[list[Action]], None] | None = None,
    model: IntModel | None = None,
) -> dict:
    """Submit `data` (for `model`, default the network's first integer model) as the user, drive the network
    until the job settles, and report it."""
    job_id = net.client.submit(model or int_models(net)[0], data)
    wait(net, job_id, between)
    return job_report(net, job_id)


# ---- reports ----
def _tx(ev: Any) -> str:
    return "0x" + bytes(ev["transactionHash"]).hex()


def _dispute_report(net: LocalNetwork, j: OptJobView, challenged: Any, settled: Any, evs: dict) -> dict:
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


def job_report(net: LocalNetwork, job_id: int) -> dict:
    """What happened to one job, from the contract's events: the JSON the demo writes for it."""
    opt = jobs_of(net)
    j = opt.job(job_id)
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
        "Burned",
    )
    evs = {n: opt.events(n, j.submit_block, jobId=job_id) for n in names}
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
        # The user's compensation (at most its fee) plus the burned rest.
        slashed_wei = refund - fee + sum(e["args"]["amount"] for e in evs["Burned"])
    return {
        "id": job_id,
        "model": next(m.manifest.name for m in int_models(net) if m.model_id == j.model_id),
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
        "burned_wei": sum(e["args"]["amount"] for e in evs["Burned"]),
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
        net = start_network([Fault.HONEST, Fault.TAMPERED_STEP], [Fault.HONEST], stake_wei=DEMO_STAKE)
    with net:
        report = _demo(console, net)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"wrote {json_path}")
    return report


def _demo(console: Console, net: LocalNetwork) -> dict:
    c, opt, model, user = net.contracts, jobs_of(net), int_models(net)[0], net.client.account
    man = model.manifest
    _, x_test, _, y_test = digits_split()
    float_acc = float((model.float_model().forward(x_test).argmax(1) == y_test).mean())
    int_acc = float((model.mlp.forward(x_test).argmax(1) == y_test).mean())
    console.print(f"OptimisticJobs {opt.address}\nNodeRegistry   {c.deployment.node_registry}")
    console.print(
        f"model [bold]{man.name}[/] id 0x{model.model_id.hex()[:16]}.. sizes {man.architecture['sizes']}, "
        f"{model.mlp.steps} steps per job (one neuron each), weights root {man.weights_root[:18]}..; "
        f"test accuracy float {float_acc:.4f}, integer {int_acc:.4f}"
    )
    roles = {n.address: ("honest executor" if n.honest else "lying executor") for n in executors(net)}
    roles |= {n.address: "watcher" for n in watchers(net)}
    stakes_before = {n.address: c.stake_of(n.address) for n in executors(net)}
    balances_before = {a: c.balance(a) for a in [*roles, user.address]}

    jobs: list[dict] = []
    honest = {n.address for n in executors(net) if n.honest}
    for k in range(MAX_JOBS):
        done_honest = any(j["status"] == "verified" and j["executor"] in honest for j in jobs)
        caught = any(j["status"] == "overturned" for j in jobs)
        if done_honest and caught:
            break
        i = k % len(x_test)
        with console.status(f"job {k + 1}: classifying test digit #{i} (label {y_test[i]})..."):
            report = run_job(net, encode_pixels(x_test[i]))
        report["label"] = int(y_test[i])
        liar = next((n for n in executors(net) if n.address == report["executor"] and not n.honest), None)
        report["tampered_step"] = role(liar).tampered_step(opt.job(report["id"])) if liar else None
        jobs.append(report)
        _print_job(console, net, report, roles)

    user_owed = opt.credits(user.address)
    if user_owed:
        opt.withdraw(user)
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
        "address": user.address,
        "fees_escrowed": sum(j["fee"] for j in jobs),
        "fees_spent": sum(j["fee_paid"] for j in jobs),
        "refunded": sum(j["refund"] for j in jobs),
        "balance_change_incl_gas": c.balance(user.address) - balances_before[user.address],
    }
    _print_summary(console, nodes, books, jobs)
    return {
        "scheme": "optimistic",
        "model": {
            "name": man.name,
            "id": "0x" + model.model_id.hex(),
            "steps": model.mlp.steps,
            "float_accuracy": float_acc,
            "int_accuracy": int_acc,
        },
        "jobs": jobs,
        "nodes": nodes,
        "user": user,
        "books": books,
    }


def _print_job(console: Console, net: LocalNetwork, r: dict, roles: dict[str, str]) -> None:
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
            f"  executor slashed {eth(r['slashed_wei'])} ETH ({eth(r['burned_wei'])} burned, the rest to the "
            f"challenger, plus its bond back), stake now {eth(stake)} ETH{note}; user refunded {eth(r['refund'])} ETH"
        )
    else:
        paid, refund = eth(r["fee_paid"]), eth(r["refund"])
        console.print(f"  fee {eth(r['fee'])} ETH: paid {paid} to the executor after the window, refunded {refund}")


def _step_name(net: LocalNetwork, job_id: int, index: int) -> str:
    """Which neuron a step computes, from the honest trace of the job."""
    s = role(net.nodes[0]).truth(jobs_of(net).job(job_id)).state_at(index)
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
