"""`veriml demo`: a network of five staked nodes, one of them dishonest, serving verified text jobs.

Everything is real: the contracts run on an EVM (py-evm in process by default), the nodes run the shipped
PyTorch model, and every settlement moves escrowed coin. The demo keeps submitting jobs until the
dishonest node has been drawn and caught, then prints what each party paid and earned.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from veriml.chain.backends import Chain, anvil_chain, embedded_chain
from veriml.client.sdk import JobResult
from veriml.sim.faults import Fault
from veriml.sim.network import ETH, LocalNetwork, NodeSpec

PROMPTS = (
    "The for statement",
    "A class definition",
    "Exceptions are raised",
    "The import statement",
    "Boolean operations",
    "The with statement",
    "Comparisons",
    "Lambda expressions",
)
JOBS = ((3, PROMPTS[0]), (3, PROMPTS[1]), (3, PROMPTS[2]), (5, PROMPTS[3]))
MAX_EXTRA_JOBS = 8
MAX_NEW_TOKENS = 40


@dataclass(frozen=True)
class DemoReport:
    jobs: list[JobResult]
    nodes: list[dict]
    user: dict
    books: dict

    def to_json(self) -> dict:
        return {
            "jobs": [j.to_json() for j in self.jobs],
            "nodes": self.nodes,
            "user": self.user,
            "books": self.books,
        }


def eth(wei: int) -> str:
    return f"{wei / ETH:.4f}"


def short(addr: str) -> str:
    return f"{addr[:6]}..{addr[-4:]}"


def run_demo(console: Console, json_path: Path | None = None, backend: str = "embedded") -> DemoReport:
    specs = [NodeSpec(), NodeSpec(), NodeSpec(fault=Fault.WRONG_OUTPUT), NodeSpec(), NodeSpec()]
    console.print(
        Panel.fit(
            "[bold]veriml demo[/]: verified text generation on untrusted nodes\n"
            f"chain: [cyan]{backend}[/] EVM · 5 staked nodes (node 2 is [red]dishonest[/]: it answers without "
            "running the model) · quorum commit-reveal, majority wins, dissenters slashed",
            border_style="blue",
        )
    )
    chain: Chain = anvil_chain() if backend == "anvil" else embedded_chain()
    with console.status("deploying contracts, registering the model and staking 5 nodes..."):
        net = LocalNetwork.start(specs, chain=chain)
    with net:
        c = net.contracts
        d = c.deployment
        man = net.models[0].manifest
        console.print(
            f"contracts: JobMarket {d.job_market}  NodeRegistry {d.node_registry}  ModelRegistry {d.model_registry}"
        )
        console.print(
            f"model [bold]{man.name}[/] id 0x{net.models[0].model_id.hex()[:16]}.. weights root "
            f"{man.weights_root[:18]}.. policy {man.policy}, price {eth(man.price_wei)} ETH per node per job"
        )
        stake_before = {n.address: c.stake_of(n.address) for n in net.nodes}
        user_balance_before = c.balance(net.client.address)
        _print_nodes(console, net, stake_before)

        results: list[JobResult] = []
        dishonest = {n.address for n in net.nodes if not n.honest}
        queue = list(JOBS)
        extra = 0
        while queue:
            n, prompt = queue.pop(0)
            results.append(_run_job(console, net, prompt, n))
            caught = any(set(r.slashed) & dishonest for r in results if r.status == "verified")
            if not queue and not caught and extra < MAX_EXTRA_JOBS:
                console.print("[yellow]the dishonest node has not been drawn yet: submitting another job[/]")
                queue.append((3, PROMPTS[(4 + extra) % len(PROMPTS)]))
                extra += 1
        for _ in range(3):  # let nodes withdraw what the last settlement credited them
            net.tick()
        refunded = net.client.withdraw()

        nodes = []
        for node in net.nodes:
            earned = sum(e["args"]["amount"] for e in c.market_events("Credited", 0, account=node.address))
            nodes.append(
                {
                    "address": node.address,
                    "honest": node.honest,
                    "stake_before": stake_before[node.address],
                    "stake_after": c.stake_of(node.address),
                    "earned": earned,
                }
            )
        fees = sum(r.fee for r in results)
        refunds = sum(r.refund for r in results)
        user = {
            "address": net.client.address,
            "fees_escrowed": fees,
            "fees_spent": fees - refunds,
            "refunded": refunds,
            "withdrawn_at_end": refunded,
            "balance_change_incl_gas": c.balance(net.client.address) - user_balance_before,
        }
        books = {
            "market_balance": c.balance(d.job_market),
            "escrow": c.total_escrow(),
            "credits": c.total_credits(),
            "registry_balance": c.balance(d.node_registry),
            "stakes": c.total_staked(),
        }
        report = DemoReport(results, nodes, user, books)
        _print_summary(console, report)
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
            console.print(f"wrote {json_path}")
        return report


def _print_nodes(console: Console, net: LocalNetwork, stakes: dict[str, int]) -> None:
    t = Table(title="staked nodes", title_justify="left")
    for col in ("#", "address", "stake (ETH)", "behaviour", "endpoint"):
        t.add_column(col)
    for i, node in enumerate(net.nodes):
        behaviour = "[green]honest[/]" if node.honest else f"[red]{node.fault.value}[/]"  # type: ignore[attr-defined]
        t.add_row(
            str(i),
            node.address,
            eth(stakes[node.address]),
            behaviour,
            net.contracts.node(node.address).endpoint[-40:],
        )
    console.print(t)


def _run_job(console: Console, net: LocalNetwork, prompt: str, n: int) -> JobResult:
    c = net.contracts
    index = {node.address: i for i, node in enumerate(net.nodes)}
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]job[/] {task.fields[job]} n={task.fields[n]}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        job_id, _ = net.client.submit_text("tiny-gpt", prompt, n, max_new_tokens=MAX_NEW_TOKENS)
        task = progress.add_task("submitted", total=2 * n + 2, job=job_id, n=n)

        def between() -> None:
            net.tick()
            j = c.job(job_id)
            done = (j.status.value >= 2) + j.commits + j.reveals + j.status.final
            progress.update(
                task,
                completed=done,
                description=f"{j.status.name.lower()}: {j.commits}/{n} committed, {j.reveals}/{n} revealed",
            )

        result = net.client.wait(job_id, between=between)
    colour = {"verified": "green", "disputed": "yellow", "refunded": "yellow"}[result.status]
    t = Table(
        title=f"job {job_id} · quorum n={n} · [{colour}]{result.status}[/]",
        title_justify="left",
        show_lines=False,
    )
    for col in ("node", "drawn", "committed", "revealed", "agreed", "slashed"):
        t.add_column(col)
    for addr in result.assigned:
        mark = lambda ok: "[green]yes[/]" if ok else "[dim]no[/]"  # noqa: E731
        slashed = "[red]SLASHED[/]" if addr in result.slashed else ""
        t.add_row(
            f"#{index[addr]} {short(addr)}",
            "yes",
            mark(addr in result.committed),
            mark(addr in result.revealed),
            mark(addr in result.agree),
            slashed,
        )
    console.print(t)
    console.print(f"  [bold]prompt[/]: {prompt!r}")
    if result.output is not None:
        console.print(f"  [bold]verified output[/]: {result.output!r}")
        console.print(
            f"  digest {result.output_digest} agreed by {len(result.agree)}/{n}; fetched from a winner and re-hashed"
        )
    console.print(
        f"  fee escrowed {eth(result.fee)} ETH, paid {eth(result.fee_paid)}, refunded {eth(result.refund)}"
        f" · submit tx {result.txs.get('submit', '')[:18]}.. finalize tx {result.txs.get('finalize', '-')[:18]}.."
    )
    return result


def _print_summary(console: Console, report: DemoReport) -> None:
    t = Table(title="nodes after the run", title_justify="left")
    for col in ("address", "behaviour", "stake before", "stake after", "earned (ETH)"):
        t.add_column(col, justify="right" if col != "address" else "left")
    for n in report.nodes:
        delta = n["stake_after"] - n["stake_before"]
        after = eth(n["stake_after"]) + (f" [red]({eth(delta)})[/]" if delta else "")
        t.add_row(
            n["address"],
            "[green]honest[/]" if n["honest"] else "[red]dishonest[/]",
            eth(n["stake_before"]),
            after,
            eth(n["earned"]),
        )
    console.print(t)
    u = report.user
    console.print(
        f"user {u['address']}: escrowed {eth(u['fees_escrowed'])} ETH in fees, spent {eth(u['fees_spent'])}, "
        f"refunded {eth(u['refunded'])} (incl. slashed stake passed on)"
    )
    b = report.books
    ok = b["market_balance"] == b["escrow"] + b["credits"] and b["registry_balance"] == b["stakes"]
    console.print(
        f"books: market holds {eth(b['market_balance'])} = escrow {eth(b['escrow'])} + unwithdrawn credits "
        f"{eth(b['credits'])}; registry holds {eth(b['registry_balance'])} = stakes {eth(b['stakes'])} "
        + ("[green]balanced[/]" if ok else "[red]UNBALANCED[/]")
    )
    verified = sum(r.status == "verified" for r in report.jobs)
    caught = sum(1 for r in report.jobs for n in report.nodes if not n["honest"] and n["address"] in r.slashed)
    console.print(
        f"[bold]{verified}/{len(report.jobs)} jobs verified; the dishonest node was caught {caught} time(s).[/]"
    )
