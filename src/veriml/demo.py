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
from veriml.models.imagegen_runtime import Variation
from veriml.sim.faults import Cheat, Fault
from veriml.sim.network import ETH, IMAGE_MODEL, LocalNetwork, NodeSpec
from veriml.verify.digest import hamming64

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
# The n=5 job goes first: it draws every node while all five are eligible (a node slashed below the
# minimum stake is no longer drawn, after which only four remain).
JOBS = ((5, PROMPTS[3]), (3, PROMPTS[0]), (3, PROMPTS[1]), (3, PROMPTS[2]))
MAX_EXTRA_JOBS = 8
MAX_NEW_TOKENS = 40
# The image job, after the text jobs: a class label and a seed, quorum of three. Only nodes 0-2 serve the
# image model, so the cheater (node 2) is drawn; node 1 runs it on ONNX Runtime, so honest pictures differ
# in their floats and agree by perceptual hash, not by bytes.
IMAGE_JOB = ("star", 6, 3)
IMAGE_CHEAT = Cheat.CHEAP_MODEL


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
    text_only = ("tiny-gpt",)
    specs = [
        NodeSpec(),
        NodeSpec(variation=Variation(backend="onnxruntime")),
        NodeSpec(fault=Fault.WRONG_OUTPUT, cheat=IMAGE_CHEAT),
        NodeSpec(models=text_only),
        NodeSpec(models=text_only),
    ]
    console.print(
        Panel.fit(
            "[bold]veriml demo[/]: verified text and image generation on untrusted nodes\n"
            f"chain: [cyan]{backend}[/] EVM · 5 staked nodes (node 2 is [red]dishonest[/]: it answers without "
            "running the model) · quorum commit-reveal, majority wins, dissenters slashed",
            border_style="blue",
        )
    )
    chain: Chain = anvil_chain() if backend == "anvil" else embedded_chain()
    with console.status("deploying contracts, registering the model and staking 5 nodes..."):
        net = LocalNetwork.start(specs, models=("tiny-gpt", IMAGE_MODEL), chain=chain)
    with net:
        c = net.contracts
        d = c.deployment
        man = net.models[0].manifest
        console.print(
            f"QuorumJobs     {d.schemes['quorum']}\nNodeRegistry  {d.node_registry}\nModelRegistry {d.model_registry}"
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
        results.append(_run_image_job(console, net, *IMAGE_JOB))
        for _ in range(3):  # let nodes withdraw what the last settlement credited them
            net.tick()
        refunded = net.client.withdraw()

        nodes = []
        for node in net.nodes:
            earned = sum(e["args"]["amount"] for e in c.quorum.events("Credited", 0, account=node.address))
            from_fees = sum(r.fee // r.n for r in results if node.address in r.agree)
            nodes.append(
                {
                    "address": node.address,
                    "honest": node.honest,
                    "stake_before": stake_before[node.address],
                    "stake_after": c.stake_of(node.address),
                    "earned": earned,
                    "earned_fees": from_fees,
                    "earned_from_slashes": earned - from_fees,
                    "jobs_drawn": sum(node.address in r.assigned for r in results),
                    "times_slashed": sum(node.address in r.slashed for r in results),
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
            "market_balance": c.quorum.balance(),
            "escrow": c.quorum.total_escrow(),
            "credits": c.quorum.total_credits(),
            "registry_balance": c.balance(d.node_registry),
            "stakes": c.total_staked(),
            "burned": c.quorum.total_burned(),
            "burn_bps": d.config.burn_bps,
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
    for col in ("node", "address", "stake (ETH)", "behaviour"):
        t.add_column(col)
    for i, node in enumerate(net.nodes):
        behaviour = "[green]honest[/]" if node.honest else f"[red]{node.role('quorum').fault.value}[/]"  # type: ignore[attr-defined]
        t.add_row(f"#{i}", short(node.address), eth(stakes[node.address]), behaviour)
    console.print(t)


def _run_job(console: Console, net: LocalNetwork, prompt: str, n: int) -> JobResult:
    job_id, _ = net.client.submit_text("tiny-gpt", prompt, n, max_new_tokens=MAX_NEW_TOKENS)
    result = _follow(console, net, job_id, n)
    _print_job(console, net, result)
    console.print(f"  [bold]prompt[/]: {prompt!r}")
    if result.output is not None:
        console.print(f"  [bold]verified output[/]: {result.output!r}")
        console.print(
            f"  digest {result.output_digest[:18]}.. agreed by {len(result.agree)}/{n}; output re-hashed by the client"
        )
    _print_money(console, result)
    return result


def _run_image_job(console: Console, net: LocalNetwork, label: str, seed: int, n: int) -> JobResult:
    c = net.contracts
    image_model = next(m for m in net.models if m.manifest.name == IMAGE_MODEL)
    man = image_model.manifest
    console.print(
        f"model [bold]{man.name}[/] id 0x{image_model.model_id.hex()[:16]}.. policy {man.policy} "
        f"({image_model.digest_hash}, Hamming <= {man.policy_threshold}), served by nodes #0-#2; "
        "#1 runs it on ONNX Runtime"
    )
    cheat = next(node for node in net.nodes if not node.honest)
    minimum = c.deployment.config.min_stake_wei
    if c.stake_of(cheat.address) < minimum:
        # Slashed below the minimum in the text jobs, it would no longer be drawn: its operator tops up.
        top_up = minimum - c.stake_of(cheat.address)
        c.top_up(cheat.account, top_up)
        console.print(f"  [yellow]the dishonest node tops its stake back up by {eth(top_up)} ETH to be drawn again[/]")
    job_id, _ = net.client.submit_image(IMAGE_MODEL, label, seed, n)
    result = _follow(console, net, job_id, n)
    _print_job(console, net, result)
    console.print(f"  [bold]prompt[/]: class {label!r}, seed {seed}; the dishonest node plays {IMAGE_CHEAT.value}")
    if result.output_digest is not None:
        agreed = bytes.fromhex(result.output_digest[2:])
        index = {node.address: i for i, node in enumerate(net.nodes)}
        for e in c.quorum.events("Revealed", 0, jobId=job_id):
            d = bytes(e["args"]["digest"])
            console.print(
                f"  node #{index[e['args']['node']]} revealed {image_model.digest_hash} {d[-8:].hex()}: "
                f"{hamming64(d, agreed)} bits from the agreed one"
            )
    if result.output is not None:
        console.print(f"  [bold]verified output[/]: {result.output}")
        console.print(
            f"  fetched from a winner; its {image_model.digest_hash} is within {man.policy_threshold} bits of the "
            "agreed digest (checked by the client)"
        )
    _print_money(console, result)
    return result


def _follow(console: Console, net: LocalNetwork, job_id: int, n: int) -> JobResult:
    c = net.contracts
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]job[/] {task.fields[job]} n={task.fields[n]}"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("submitted", total=2 * n + 2, job=job_id, n=n)

        def between() -> None:
            net.tick()
            j = c.quorum.job(job_id)
            done = (j.status.value >= 2) + j.commits + j.reveals + j.status.final
            progress.update(
                task,
                completed=done,
                description=f"{j.status.name.lower()}: {j.commits}/{n} committed, {j.reveals}/{n} revealed",
            )

        return net.client.wait(job_id, between=between)


def _print_job(console: Console, net: LocalNetwork, result: JobResult) -> None:
    index = {node.address: i for i, node in enumerate(net.nodes)}
    colour = {"verified": "green", "disputed": "yellow", "refunded": "yellow"}[result.status]
    t = Table(
        title=f"job {result.job_id} · {result.model} · quorum n={result.n} · [{colour}]{result.status}[/]",
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


def _print_money(console: Console, result: JobResult) -> None:
    console.print(f"  fee escrowed {eth(result.fee)} ETH: paid {eth(result.fee_paid)}, refunded {eth(result.refund)}")
    console.print(
        f"  txs: submit {result.txs.get('submit', '-')[:14]}.. assign {result.txs.get('assign', '-')[:14]}.. "
        f"finalize {result.txs.get('finalize', '-')[:14]}.."
    )


def _print_summary(console: Console, report: DemoReport) -> None:
    t = Table(title="nodes after the run (ETH; bounty = share of slashed stake)", title_justify="left")
    for col in ("node", "role", "drawn", "caught", "stake", "fees", "bounty"):
        t.add_column(col, justify="left" if col in ("node", "role", "stake") else "right", no_wrap=True)
    for i, n in enumerate(report.nodes):
        before, after = n["stake_before"] / ETH, n["stake_after"] / ETH
        t.add_row(
            f"#{i} {short(n['address'])}",
            "[green]honest[/]" if n["honest"] else "[red]cheat[/]",
            str(n["jobs_drawn"]),
            f"[red]{n['times_slashed']}[/]" if n["times_slashed"] else "0",
            f"{before:.2f}->[red]{after:.2f}[/]" if after < before else f"{before:.2f}->{after:.2f}",
            f"{n['earned_fees'] / ETH:.4f}",
            f"{n['earned_from_slashes'] / ETH:.4f}",
        )
    console.print(t)
    u = report.user
    console.print(
        f"user {short(u['address'])}: escrowed {eth(u['fees_escrowed'])} ETH in fees, spent {eth(u['fees_spent'])}, "
        f"refunded {eth(u['refunded'])}"
    )
    b = report.books
    ok = b["market_balance"] == b["escrow"] + b["credits"] and b["registry_balance"] == b["stakes"]
    console.print(
        f"books {'[green]balanced[/]' if ok else '[red]UNBALANCED[/]'}: market {eth(b['market_balance'])} "
        f"= escrow {eth(b['escrow'])} + credits {eth(b['credits'])}; "
        f"registry {eth(b['registry_balance'])} = stakes {eth(b['stakes'])}"
    )
    if b["burned"]:
        console.print(
            f"burned {eth(b['burned'])} ETH of slashed stake ({b['burn_bps'] / 100:g}% of every slash, and any "
            "compensation above a user's fee), so exposing yourself through a second account never pays"
        )
    verified = sum(r.status == "verified" for r in report.jobs)
    caught = sum(1 for r in report.jobs for n in report.nodes if not n["honest"] and n["address"] in r.slashed)
    console.print(
        f"[bold]{verified}/{len(report.jobs)} jobs verified; the dishonest node was caught {caught} time(s).[/]"
    )
