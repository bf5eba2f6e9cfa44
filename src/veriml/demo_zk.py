"""`veriml demo --scheme zk`: digits classified by untrusted nodes, each answer proven and checked on-chain.

Everything is real: the EZKL circuit of the shipped `digits-mlp`, a Halo2 verifier compiled from it and
deployed on the EVM (py-evm in process), and ZkJobs escrowing each fee. Three nodes stake; one of them
forges its answers (it proves honestly, then claims another class). Jobs are submitted until that node
has been drawn and caught; then the demo prints what each party paid and earned.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.columns import Columns
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from veriml.chain.zk import ZkJobStatus
from veriml.node.participant import Participant
from veriml.node.state import JobRecord
from veriml.sim.faults import Fault
from veriml.sim.network import ETH, LocalNetwork, NodeSpec
from veriml.zk import digits
from veriml.zk.circuit import LOCAL_SRS_WARNING
from veriml.zk.client import ZkJobResult
from veriml.zk.field import argmax

ZK = ("zk",)
# The forger stakes more, so it is drawn early (about half the jobs until it is caught and slashed).
SPECS = (NodeSpec(schemes=ZK), NodeSpec(schemes=ZK), NodeSpec(Fault.FORGED_OUTPUT, stake_wei=4 * ETH, schemes=ZK))
MODEL = "digits-mlp"
FIRST_JOBS = 3
MAX_JOBS = 12
TEST_IMAGES = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)


def eth(wei: int) -> str:
    return f"{wei / ETH:.4f}"


def short(addr: str | None) -> str:
    return "-" if addr is None else f"{addr[:6]}..{addr[-4:]}"


def run_zk_demo(
    console: Console, json_path: Path | None = None, cache_dir: Path | None = None, srs_path: Path | None = None
) -> dict:
    """Run the zk demo on the embedded chain; returns (and with `json_path`, writes) the report."""
    console.print(
        Panel.fit(
            "[bold]veriml demo --scheme zk[/]: proven digit classification on untrusted nodes\n"
            "chain: [cyan]embedded[/] EVM · model [bold]digits-mlp[/] (EZKL circuit, Halo2 verifier on-chain) · "
            f"{len(SPECS)} staked nodes, node 2 is [red]dishonest[/] (proves, then forges the class it reports)\n"
            "one node per job, drawn by stake; a valid proof is paid, anything else is slashed and refunded",
            border_style="blue",
        )
    )
    if srs_path is None:
        console.print(f"[bold red]WARNING:[/] {LOCAL_SRS_WARNING}")
    console.print("[bold]setting up the circuit and registering it on-chain[/] (cached by content hash)")
    split = digits.load_split()
    with start_network(list(SPECS), cache_dir=cache_dir, srs_path=srs_path, console=console) as net:
        c, jobs, zm = net.contracts, net.client.jobs, net.client.model
        d = jobs.deployment
        console.print(
            f"ZkJobs        {jobs.address}\nNodeRegistry  {d.node_registry}\nModelRegistry {d.model_registry}\n"
            f"verifier      {zm.verifier_address} ({zm.verifier.runtime_bytes} bytes runtime, "
            f"vk sha256 {zm.circuit.vk_sha256[:16]}..)"
        )
        console.print(
            f"model [bold]{zm.name}[/] id 0x{zm.model_id.hex()[:16]}.. · circuit 2^{zm.circuit.logrows} rows, "
            f"{zm.circuit.n_inputs} public inputs + {zm.circuit.n_outputs} public outputs · price "
            f"{eth(zm.manifest.price_wei)} ETH per job"
        )
        stake_before = {n.address: c.stake_of(n.address) for n in net.nodes}
        user_before = c.balance(net.client.address)
        _print_nodes(console, net, stake_before)

        results: list[tuple[ZkJobResult, dict]] = []
        for k, idx in enumerate(TEST_IMAGES[:MAX_JOBS]):
            caught = any(r.status == "rejected" for r, _ in results)
            verified = any(r.status == "verified" for r, _ in results)
            if k >= FIRST_JOBS and caught and verified:
                break
            if k >= FIRST_JOBS:
                console.print("[yellow]the dishonest node has not been caught yet: submitting another job[/]")
            pixels = [int(p) for p in split.x_test[idx]]
            results.append(_run_job(console, net, pixels, int(split.y_test[idx])))

        for _ in range(2):  # let the nodes withdraw what the last settlement credited them
            net.tick()
        refunded = net.client.withdraw()
        report = _report(net, results, stake_before, user_before, refunded)
        _print_summary(console, report)
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report, indent=2) + "\n")
            console.print(f"wrote {json_path}")
        return report


def start_network(specs: list[NodeSpec], model: str = MODEL, **options: object) -> LocalNetwork:
    """A local network of zk provers (`specs`, each with schemes=("zk",)) serving `model`, its user a zk
    client. `options` go to the zk setup: cache_dir, srs_path, console (progress of the registration)."""
    return LocalNetwork.start(specs, models=(model,), client_scheme="zk", scheme_options={"zk": options})


def behaviour(node: Participant) -> Fault:
    """What the node's prover does (HONEST unless `veriml.sim.faults` made it misbehave)."""
    return getattr(node.role("zk"), "fault", Fault.HONEST)


def record(node: Participant | None, job_id: int) -> JobRecord | None:
    """What the node's prover remembers of a job (its `data`: proof file, prove_s, submit_gas, ...)."""
    return None if node is None else node.role("zk").state.get(job_id)


def _print_nodes(console: Console, net: LocalNetwork, stakes: dict[str, int]) -> None:
    t = Table(title="staked prover nodes", title_justify="left")
    for col in ("node", "address", "stake (ETH)", "behaviour"):
        t.add_column(col)
    for i, node in enumerate(net.nodes):
        behaviour_ = "[green]honest[/]" if node.honest else f"[red]{behaviour(node).value}[/]"
        t.add_row(f"#{i}", short(node.address), eth(stakes[node.address]), behaviour_)
    console.print(t)


def _run_job(console: Console, net: LocalNetwork, pixels: list[int], true_label: int) -> tuple[ZkJobResult, dict]:
    index = {node.address: i for i, node in enumerate(net.nodes)}
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]zk job[/] {task.fields[job]}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        job_id = net.client.submit_digit(pixels)
        task = progress.add_task("submitted", total=3, job=job_id)

        def between() -> None:
            net.tick()
            j = net.client.jobs.job(job_id)
            node = net.node_of(j.node)
            proving = node is not None and node.busy
            what = "proving" if proving else j.status.name.lower()
            done = {ZkJobStatus.SUBMITTED: 0, ZkJobStatus.ASSIGNED: 1 + proving}.get(j.status, 3)
            progress.update(task, completed=done, description=f"{what} (node #{index.get(j.node, '?')})")

        result = net.client.wait(job_id, between=between)
    node = net.node_of(result.node)
    rec = record(node, job_id)
    data = rec.data if rec is not None else {}
    zk = {
        "prove_s": round(data["prove_s"], 3) if "prove_s" in data else None,
        "witness_s": round(data["witness_s"], 4) if "witness_s" in data else None,
        "verify_gas": data.get("submit_gas"),
        "proof_bytes": data.get("proof_bytes"),
    }
    colour = {"verified": "green", "rejected": "red", "expired": "red", "refunded": "yellow"}[result.status]
    t = Table(title=f"zk job {job_id} · [{colour}]{result.status}[/]", title_justify="left", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    who = f"#{index.get(result.node, '?')} {short(result.node)}"
    t.add_row("node", who + ("" if node is None or node.honest else " [red](dishonest)[/]"))
    t.add_row("true digit", str(true_label))
    if result.label is not None:
        ok = "[green]correct[/]" if result.label == true_label else "[yellow]model error[/]"
        t.add_row("proven class", f"[bold]{result.label}[/] ({ok}); logits re-hashed against the on-chain output hash")
    else:
        claimed = _claimed_label(rec)
        t.add_row("claimed class", f"{claimed} [red]rejected: {result.reason}[/]")
        t.add_row("slashed", f"[red]{eth(result.slashed)} ETH[/] of the node's stake")
    t.add_row("proof", f"{zk['proof_bytes']} bytes, proved in {zk['prove_s']} s")
    t.add_row("on-chain", f"submitProof {zk['verify_gas']:,} gas (Halo2 verifier + settlement)")
    t.add_row("fee", f"escrowed {eth(result.fee)} ETH, paid {eth(result.fee_paid)}, refunded {eth(result.refund)}")
    console.print(Columns([Panel(Text("\n".join(digits.render(pixels))), title="input", expand=False), t]))
    return result, {"true_label": true_label, "zk": zk}


def _claimed_label(rec: JobRecord | None) -> str:
    if rec is None or rec.data.get("submitted_outputs") is None:
        return "-"
    return str(argmax(rec.data["submitted_outputs"]))


def _report(
    net: LocalNetwork,
    results: list[tuple[ZkJobResult, dict]],
    stakes: dict[str, int],
    user_before: int,
    withdrawn: int,
) -> dict:
    c, jobs = net.contracts, net.client.jobs
    nodes = []
    for node in net.nodes:
        earned = sum(e["args"]["amount"] for e in jobs.events("Credited", 0, account=node.address))
        nodes.append(
            {
                "address": node.address,
                "honest": node.honest,
                "behaviour": behaviour(node).value,
                "stake_before": stakes[node.address],
                "stake_after": c.stake_of(node.address),
                "earned": earned,
                "jobs_drawn": sum(r.node == node.address for r, _ in results),
                "times_slashed": sum(r.node == node.address and r.slashed > 0 for r, _ in results),
            }
        )
    fees = sum(r.fee for r, _ in results)
    paid = sum(r.fee_paid for r, _ in results)
    refunds = sum(r.refund for r, _ in results)
    return {
        "scheme": "zk",
        "model": net.client.model.record(),
        "srs_local_not_trustless": net.client.model.circuit.srs_local,
        "jobs": [{**r.to_json(), **extra} for r, extra in results],
        "nodes": nodes,
        "user": {
            "address": net.client.address,
            "fees_escrowed": fees,
            "fees_spent": paid,
            "refunded_incl_slashed_stake": refunds,
            "withdrawn_at_end": withdrawn,
            "balance_change_incl_gas": c.balance(net.client.address) - user_before,
        },
        "books": {
            "zk_jobs_balance": jobs.balance(),
            "escrow": jobs.total_escrow(),
            "credits": jobs.total_credits(),
            "registry_balance": c.balance(jobs.deployment.node_registry),
            "stakes": c.total_staked(),
        },
    }


def _print_summary(console: Console, report: dict) -> None:
    t = Table(title="nodes after the run (ETH)", title_justify="left")
    for col in ("node", "role", "drawn", "caught", "stake", "earned"):
        t.add_column(col, justify="left" if col in ("node", "role", "stake") else "right", no_wrap=True)
    for i, n in enumerate(report["nodes"]):
        before, after = n["stake_before"] / ETH, n["stake_after"] / ETH
        t.add_row(
            f"#{i} {short(n['address'])}",
            "[green]honest[/]" if n["honest"] else "[red]cheat[/]",
            str(n["jobs_drawn"]),
            f"[red]{n['times_slashed']}[/]" if n["times_slashed"] else "0",
            f"{before:.2f}->[red]{after:.2f}[/]" if after < before else f"{before:.2f}->{after:.2f}",
            eth(n["earned"]),
        )
    console.print(t)
    u = report["user"]
    console.print(
        f"user {short(u['address'])}: escrowed {eth(u['fees_escrowed'])} ETH in fees, spent {eth(u['fees_spent'])}, "
        f"got back {eth(u['refunded_incl_slashed_stake'])} (refunds + slashed stake)"
    )
    b = report["books"]
    ok = b["zk_jobs_balance"] == b["escrow"] + b["credits"] and b["registry_balance"] == b["stakes"]
    console.print(
        f"books {'[green]balanced[/]' if ok else '[red]UNBALANCED[/]'}: ZkJobs {eth(b['zk_jobs_balance'])} "
        f"= escrow {eth(b['escrow'])} + credits {eth(b['credits'])}; "
        f"registry {eth(b['registry_balance'])} = stakes {eth(b['stakes'])}"
    )
    verified = sum(j["status"] == "verified" for j in report["jobs"])
    rejected = sum(j["status"] == "rejected" for j in report["jobs"])
    console.print(
        f"[bold]{verified}/{len(report['jobs'])} jobs proven and verified on-chain; "
        f"{rejected} forged answer(s) rejected, the node slashed and the user refunded.[/]"
    )
    if report["srs_local_not_trustless"]:
        console.print("[bold red]reminder:[/] the SRS was generated locally: these proofs are NOT trustless.")
