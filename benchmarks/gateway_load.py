"""The gateway under load on the devnet: many concurrent chat requests, each verified or refunded.

`Devnet.start` brings up anvil, the blob service, the node processes and the gateway (each its own
process, as `veriml devnet up` does). Then R chat requests are sent at once from C `openai` clients
(`AsyncOpenAI`, one event loop, no retries, an Idempotency-Key each) and each one's latency and
`veriml` report are recorded. Afterwards the books are checked against the gateway's database and the
chain: every request is settled or failed (none lost), each has its own job (none answered twice),
every job the gateway's account submitted belongs to exactly one request, and the key was charged
exactly what the chain took.

The bound: one model execution of a benchmark job, timed in this process on the job's own input and
parameters (`tasks.execute`, the call a node makes), gives what the nodes' compute alone allows,
`nodes / (n x t_exec)` jobs per second; with fewer cores than nodes the processes share the cores, so
`min(nodes, cores) / (n x t_exec)` is reported beside it. The ratio is the measured throughput over
each bound (goal: >= 80% of the nominal one).

    .venv/bin/python benchmarks/gateway_load.py                         # 200 requests from 20 clients
    .venv/bin/python benchmarks/gateway_load.py --requests 40 --clients 8   # a quick check (~1 min)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from openai import APIStatusError, AsyncOpenAI
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quorum_overhead import machine, pct  # noqa: E402 - the benchmarks' shared machine record

from veriml import tasks  # noqa: E402
from veriml.chain.backends import dev_accounts  # noqa: E402
from veriml.chain.contracts import Contracts  # noqa: E402
from veriml.devnet import GATEWAY_ACCOUNT, Devnet  # noqa: E402
from veriml.gateway.blobstore import HttpBlobStore  # noqa: E402
from veriml.models.runners import load_runner  # noqa: E402
from veriml.types import BlobKey  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
PROMPT = "The for statement"


async def one(client: AsyncOpenAI, i: int, args: argparse.Namespace, run: str) -> dict:
    """Send request i; its latency and outcome (the veriml report, or the error the gateway answered)."""
    start = time.monotonic()
    try:
        r = await client.chat.completions.create(
            model=args.model,
            messages=[{"role": "user", "content": f"{PROMPT} #{i}"}],
            max_tokens=args.max_tokens,
            extra_body={"veriml": {"scheme": "quorum", "n": args.n}},
            extra_headers={"Idempotency-Key": f"{run}-{i}"},
        )
        v = r.veriml  # type: ignore[attr-defined]
        out = {"status": v["status"], "request_id": v.get("request_id"), "job_id": v.get("job_id"), "http": 200}
    except APIStatusError as e:
        try:  # e.body is only the inner error object; the report sits beside it
            v = e.response.json().get("veriml") or {}
        except ValueError:
            v = {}
        out = {"status": v.get("status", "error"), "request_id": v.get("request_id"), "job_id": v.get("job_id"),
               "http": e.status_code, "error": str(e)[:300]}  # fmt: skip
    except Exception as e:  # noqa: BLE001 - a dropped connection is a result to record, not a crash
        out = {"status": "transport-error", "request_id": None, "job_id": None, "http": None, "error": repr(e)[:300]}
    out.update(i=i, start=start, end=time.monotonic())
    return out


async def load(url: str, key: str, args: argparse.Namespace, run: str) -> list[dict]:
    """All requests at once, request i from client i % clients."""
    clients = [
        AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=900.0) for _ in range(args.clients)
    ]
    try:
        return await asyncio.gather(*(one(clients[i % args.clients], i, args, run) for i in range(args.requests)))
    finally:
        for c in clients:
            await c.close()


def exec_time(net: Devnet, job_id: int, model: str, reps: int) -> tuple[list[float], list[float]]:
    """Wall and CPU seconds (all threads) of one model execution of job `job_id`'s input, `reps` times."""
    contracts = Contracts(net.chain, net.deployment)
    job = contracts.quorum.job(job_id)
    data = HttpBlobStore(net.blob_url).get(BlobKey(job.input_hash.hex()))
    runner = load_runner(model)
    tasks.execute(runner, data, job.params)  # warm-up
    times, cpu = [], []
    for _ in range(reps):
        t, c = time.perf_counter(), time.process_time()
        tasks.execute(runner, data, job.params)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return times, cpu


def cpu_seconds(net: Devnet) -> dict[str, float]:
    """CPU seconds (user + system) used so far by each devnet process, this one included (the clients)."""
    procs = {name: p.pid for name, p in zip(net.names, net.procs, strict=True)}
    if net.chain._process is not None:
        procs["anvil"] = net.chain._process.pid
    procs["clients (this process)"] = os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in procs.items():
        try:  # /proc/PID/stat fields 14 and 15 (after the command in parentheses): utime, stime in ticks
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[name] = (int(fields[11]) + int(fields[12])) / tick
        except FileNotFoundError:
            out[name] = float("nan")
    return out


def check_books(net: Devnet, outcomes: list[dict], key_id: str) -> dict:
    """Every request settled or failed exactly once, matched against the gateway's DB and the chain."""
    db = sqlite3.connect(f"file:{net.directory / 'gateway.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    rows = db.execute("SELECT * FROM requests WHERE key_id = ?", (key_id,)).fetchall()
    key = db.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
    db.close()
    contracts = Contracts(net.chain, net.deployment)
    gw = dev_accounts()[GATEWAY_ACCOUNT].address
    submitted = [e for e in contracts.quorum.events("JobSubmitted", 0, net.chain.block_number())
                 if e["args"]["user"] == gw]  # fmt: skip
    chain_jobs = {int(e["args"]["jobId"]) for e in submitted}
    by_state: dict[str, int] = {}
    for r in rows:
        by_state[r["state"]] = by_state.get(r["state"], 0) + 1
    job_ids = [int(r["job_id"]) for r in rows if r["job_id"] is not None]
    final = {}
    for j in job_ids:
        final[j] = contracts.quorum.job(j).status.name.lower()
    fee_paid = sum(int(json.loads(r["result"]).get("fee_paid", 0)) for r in rows if r["result"])
    answered_ids = [o["request_id"] for o in outcomes if o["request_id"]]
    return {
        "requests_in_db": len(rows),
        "states": by_state,
        "lost": sum(r["state"] not in ("settled", "failed") for r in rows),
        "jobs_distinct": len(set(job_ids)) == len(job_ids),
        "jobs_of_gateway_on_chain": len(chain_jobs),
        "every_chain_job_has_one_request": chain_jobs == set(job_ids),
        "chain_status": {s: list(final.values()).count(s) for s in sorted(set(final.values()))},
        "answers_distinct": len(set(answered_ids)) == len(answered_ids),
        "key_spent_wei": key["spent"],
        "key_reserved_wei": key["reserved"],
        "fee_paid_wei": str(fee_paid),
        "key_charged_what_chain_took": int(key["spent"]) == fee_paid and int(key["reserved"]) == 0,
    }


def timeline(net: Devnet, job_ids: list[int]) -> dict:
    """Median seconds between a job's chain events (from block timestamps), to see where time goes."""
    w3 = net.chain.w3
    contracts = Contracts(net.chain, net.deployment)
    stamps: dict[int, float] = {}

    def at(block: int) -> float:
        if block not in stamps:
            stamps[block] = float(w3.eth.get_block(block)["timestamp"])
        return stamps[block]

    events: dict[int, dict[str, list[int]]] = {}
    head = net.chain.block_number()
    for name in ("JobSubmitted", "JobAssigned", "Committed", "Revealed", "JobFinalized"):
        try:
            evs = contracts.quorum.events(name, 0, head)
        except Exception:  # noqa: BLE001 - an event this market does not have
            continue
        for e in evs:
            j = int(e["args"]["jobId"])
            if j in job_ids:
                events.setdefault(j, {}).setdefault(name, []).append(int(e["blockNumber"]))
    steps = {"submit->assign": ("JobSubmitted", "JobAssigned", min), "assign->last commit": ("JobAssigned",
             "Committed", max), "last commit->last reveal": ("Committed", "Revealed", max),
             "last reveal->finalize": ("Revealed", "JobFinalized", max)}  # fmt: skip
    out = {}
    for label, (a, b, pick) in steps.items():
        gaps = [at(pick(ev[b])) - at(max(ev[a])) for ev in events.values() if a in ev and b in ev]
        if gaps:
            out[label] = {"median_s": statistics.median(gaps), "blocks_median": statistics.median(
                [pick(ev[b]) - max(ev[a]) for ev in events.values() if a in ev and b in ev])}  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--n", type=int, default=3, help="quorum size of every job")
    ap.add_argument("--model", default="tiny-gpt")
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--window-blocks", type=int, default=2000,
                    help="commit/reveal windows: must cover the blocks (one per transaction) a backlog takes")
    ap.add_argument("--exec-reps", type=int, default=20, help="timed model executions for the bound")
    ap.add_argument("--out", type=Path, default=None, help="results file (default: results/gateway_load.json)")
    args = ap.parse_args()
    small = args.requests < 200 or args.clients < 20
    out = args.out or RESULTS / ("gateway_load_quick.json" if small else "gateway_load.json")
    console = Console()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="veriml-load-") as tmp, Devnet.start(
        Path(tmp), nodes=args.nodes, models=(args.model,), log=console.print, window_blocks=args.window_blocks
    ) as net:
        assert net.gateway_url is not None and net.api_key is not None
        key_id = net.api_key.split("_")[1]
        # One request first: warms every process and gives a real job to time the model on.
        warm = asyncio.run(load(net.gateway_url, net.api_key, argparse.Namespace(**{**vars(args), "requests": 1,
                                                                                   "clients": 1}), "warm"))  # fmt: skip
        assert warm[0]["status"] == "verified", warm
        t_exec, cpu_exec = exec_time(net, warm[0]["job_id"], args.model, args.exec_reps)
        console.print(f"one model execution: median {statistics.median(t_exec) * 1000:.1f} ms; sending "
                      f"{args.requests} requests from {args.clients} clients")  # fmt: skip
        cpu0, t0 = cpu_seconds(net), time.monotonic()
        outcomes = asyncio.run(load(net.gateway_url, net.api_key, args, "load"))
        wall = time.monotonic() - t0
        cpu = {k: v - cpu0[k] for k, v in cpu_seconds(net).items()}
        books = check_books(net, [*warm, *outcomes], key_id)
        jobs = [o["job_id"] for o in outcomes if o["job_id"] is not None]
        stages = timeline(net, jobs)
        blocks = net.chain.block_number()
    lat = [o["end"] - o["start"] for o in outcomes]
    status = {s: sum(o["status"] == s for o in outcomes) for s in sorted({o["status"] for o in outcomes})}
    done = sum(o["status"] in ("verified", "refunded") for o in outcomes)
    t = statistics.median(t_exec)
    cores = os.cpu_count() or 1
    bound = args.nodes / (args.n * t)
    bound_cores = min(args.nodes, cores) / (args.n * t)
    throughput = done / wall
    report = {
        "config": {k: getattr(args, k) for k in ("requests", "clients", "nodes", "n", "model", "max_tokens",
                                                "window_blocks")},
        "machine": machine(load_before),
        "results": {
            "outcomes": status,
            "every_request_verified_or_refunded": done == args.requests,
            "wall_s": wall,
            "latency_s": {"p50": pct(lat, 0.5), "p95": pct(lat, 0.95), "max": max(lat), "min": min(lat)},
            "throughput_jobs_per_s": throughput,
            "model_exec_s": {"median": t, "p90": pct(t_exec, 0.9), "reps": len(t_exec),
                             "cpu_median": statistics.median(cpu_exec)},  # fmt: skip
            "compute_bound_jobs_per_s": bound,
            "compute_bound_on_cores_jobs_per_s": bound_cores,
            "ratio_to_compute_bound": throughput / bound,
            "ratio_to_compute_bound_on_cores": throughput / bound_cores,
            "stages": stages,
            # Who used the CPU during the load (seconds): with fewer cores than processes, this is the budget.
            "cpu_s": cpu,
            "cpu_s_total": sum(cpu.values()),
            "model_cpu_s_estimate": args.requests * args.n * statistics.median(cpu_exec),
            "blocks_at_end": blocks,
            **got_bound(sum(cpu.values()) / wall, args.n, statistics.median(cpu_exec), throughput),
            "books": books,
        },
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    table = Table(title=title(report))
    for col in ("figure", "value"):
        table.add_column(col)
    for a, b in figures(report):
        table.add_row(a, b)
    console.print(table)
    console.print(f"wrote {out} and {out.with_suffix('.md').name}")


def got_bound(cores_got: float, n: int, cpu_t: float, throughput: float) -> dict:
    """The bound on the CPU the devnet really got (the box is shared): cores_got / (n x CPU s per execution)."""
    bound = cores_got / (n * cpu_t)
    return {"cores_got": cores_got, "compute_bound_on_cores_got_jobs_per_s": bound,
            "ratio_to_compute_bound_on_cores_got": throughput / bound}  # fmt: skip


def title(report: dict) -> str:
    c = report["config"]
    return (f"gateway load: {c['requests']} chat requests from {c['clients']} clients, {c['nodes']} nodes, "
            f"n = {c['n']}, {c['model']} ({c['max_tokens']} tokens)")  # fmt: skip


def figures(report: dict) -> list[tuple[str, str]]:
    """The figures as (label, value) rows, for the console and the Markdown note alike."""
    r, c = report["results"], report["config"]
    books, cpu, t = r["books"], r["cpu_s"], r["model_exec_s"]["median"]
    once = books["lost"] == 0 and books["jobs_distinct"] and books["answers_distinct"]
    return [
        ("outcomes", ", ".join(f"{k} {v}" for k, v in r["outcomes"].items())),
        ("none lost, none answered twice", str(once and books["every_chain_job_has_one_request"])),
        ("key charged what the chain took", str(books["key_charged_what_chain_took"])),
        ("latency p50 / p95", f"{r['latency_s']['p50']:.1f} s / {r['latency_s']['p95']:.1f} s"),
        ("throughput", f"{r['throughput_jobs_per_s']:.2f} jobs/s over {r['wall_s']:.1f} s"),
        ("one model execution (t)", f"{t * 1000:.1f} ms ({r['model_exec_s']['cpu_median'] * 1000:.1f} ms CPU)"),
        ("compute bound: nodes / (n t)", f"{r['compute_bound_jobs_per_s']:.1f} jobs/s "
                                         f"(ratio {r['ratio_to_compute_bound']:.1%})"),  # fmt: skip
        (f"on {report['machine']['cpu_count']} cores: min(nodes, cores) / (n t)",
         f"{r['compute_bound_on_cores_jobs_per_s']:.1f} jobs/s (ratio {r['ratio_to_compute_bound_on_cores']:.1%})"),
        ("CPU s during the load", ", ".join(f"{k} {v:.1f}" for k, v in sorted(cpu.items(), key=lambda x: -x[1]))),
        ("cores the devnet got", f"{r['cores_got']:.2f}"),
        ("bound on them: cores / (n x CPU t)", f"{r['compute_bound_on_cores_got_jobs_per_s']:.2f} jobs/s "
                                               f"(ratio {r['ratio_to_compute_bound_on_cores_got']:.1%})"),  # fmt: skip
        ("model compute in that CPU (est.)", f"{r['model_cpu_s_estimate']:.1f} s of {r['cpu_s_total']:.1f} s "
                                             f"({r['model_cpu_s_estimate'] / r['cpu_s_total']:.0%})"),  # fmt: skip
        *((f"stage {k} (median)", f"{v['median_s']:.1f} s, {v['blocks_median']} blocks")
          for k, v in r["stages"].items()),
        ("windows (commit, reveal)", f"{c['window_blocks']} blocks each"),
    ]  # fmt: skip


def markdown(report: dict) -> str:
    """The results as a short Markdown note: the set-up, then the figures."""
    m = report["machine"]
    lines = [
        "# Gateway load",
        "",
        f"`benchmarks/gateway_load.py`: {title(report).removeprefix('gateway load: ')}, all sent at once "
        f"through the `openai` client to the devnet's gateway. {m['cpu']}, {m['cpu_count']} CPUs shared with "
        f"other work (load {m['load_1m_before']:.1f} before, {m['load_1m_after']:.1f} after), "
        f"Python {m['python']}, torch {m['torch']}, {m['date']}.",
        "",
        "| figure | value |",
        "|---|---|",
        *(f"| {a} | {b} |" for a, b in figures(report)),
        "",
        "Stage times come from block timestamps (1 s resolution). The compute bound counts only the model:",
        "each job is n executions, spread over the nodes. See `benchmarks/README.md` for what limits it here.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
