"""What verification by quorum costs: a job's wall time against one plain model run, and its gas.

For n = 1, 3, 5 on each chain backend, K quorum jobs are driven from submit to settled by the in-process
`LocalNetwork` (submit -> assign -> n commits -> n reveals -> finalize -> output fetched and checked).
Before each job the same prompt is run once through the bare model, so every ratio compares two timings
taken seconds apart in one process. The n nodes run one after another, so the time outside the model is
the job's wall time minus the n model runs, which are timed exactly by wrapping the shared runner's `run`.

    .venv/bin/python benchmarks/quorum_overhead.py                # K=5, embedded and anvil
    .venv/bin/python benchmarks/quorum_overhead.py --quick        # K=2, embedded only (< 1 minute)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from web3 import Web3

from veriml.chain.backends import Chain, anvil_chain, embedded_chain
from veriml.models.runtime import TextModel
from veriml.sim.network import LocalNetwork, NodeSpec

MODEL = "tiny-gpt"
PROMPT = "The for statement"
NEW_TOKENS = 32
NODES = 5
QUORUMS = (1, 3, 5)
STEPS = ("submit", "assign", "commit", "reveal", "finalize")
BACKENDS: dict[str, Callable[[], Chain]] = {"embedded": embedded_chain, "anvil": anvil_chain}
RESULTS = Path(__file__).resolve().parent / "results"


class ModelClock:
    """Shadows a loaded model's `run` with a wrapper that records how long each call took."""

    def __init__(self, model: TextModel) -> None:
        self.model, self.inner, self.calls = model, model.run, []
        model.run = self._run  # type: ignore[method-assign]  # instance attribute; the nodes share it

    def _run(self, *args: object, **kwargs: object) -> object:
        """Call the real `run` and record its duration."""
        start = time.perf_counter()
        try:
            return self.inner(*args, **kwargs)  # type: ignore[arg-type]
        finally:
            self.calls.append(time.perf_counter() - start)

    def plain(self) -> float:
        """Seconds for one bare model run of the benchmark prompt (not recorded as a node's call)."""
        start = time.perf_counter()
        self.inner(PROMPT.encode(), NEW_TOKENS)
        return time.perf_counter() - start

    def restore(self) -> None:
        """Put the class's `run` back."""
        del self.model.run


def pct(xs: list[float], q: float) -> float:
    """The q-quantile of xs, interpolating linearly between order statistics."""
    s = sorted(xs)
    i = (len(s) - 1) * q
    lo = int(i)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (i - lo)


def job_gas(net: LocalNetwork, job_id: int, txs: dict[str, str]) -> dict[str, list[int]]:
    """Gas used by each of the job's transactions, by step (commit and reveal have n each)."""
    start = net.contracts.quorum.job(job_id).submit_block
    hashes = {step: [txs[step]] for step in ("submit", "assign", "finalize")}
    for step, event in (("commit", "Committed"), ("reveal", "Revealed")):
        evs = net.contracts.quorum.events(event, start, jobId=job_id)
        hashes[step] = [Web3.to_hex(e["transactionHash"]) for e in evs]
    receipt = net.chain.w3.eth.get_transaction_receipt
    return {step: [int(receipt(h)["gasUsed"]) for h in hashes[step]] for step in STEPS}


def run_job(net: LocalNetwork, clock: ModelClock, n: int) -> dict:
    """One bare model run, then one quorum job driven to settlement; returns the job's measurements."""
    plain = clock.plain()
    first_call, head = len(clock.calls), net.chain.block_number()
    start = time.perf_counter()
    job_id, _ = net.client.submit_text(MODEL, PROMPT, n, max_new_tokens=NEW_TOKENS)
    result = net.client.wait(job_id, between=net.tick)
    wall = time.perf_counter() - start
    calls = clock.calls[first_call:]
    if result.status != "verified" or len(calls) != n:
        raise RuntimeError(f"job {job_id}: {result.status} after {len(calls)} model runs (expected {n})")
    blocks = range(head + 1, net.chain.block_number() + 1)
    window_txs = sum(len(net.chain.w3.eth.get_block(b)["transactions"]) for b in blocks)
    gas = job_gas(net, job_id, result.txs)
    return {"wall": wall, "plain": plain, "model": sum(calls), "gas": gas, "window_txs": window_txs}


def summarize(jobs: list[dict], n: int) -> dict:
    """Median/p90 timings, ratios, the share outside the model, tx count and gas per step for one n."""
    wall = [j["wall"] for j in jobs]
    plain = pct([j["plain"] for j in jobs], 0.5)
    ratios = [j["wall"] / j["plain"] for j in jobs]
    outside = [1 - j["model"] / j["wall"] for j in jobs]
    gas = {s: int(pct([g for j in jobs for g in j["gas"][s]], 0.5)) for s in STEPS}
    totals = [sum(sum(v) for v in j["gas"].values()) for j in jobs]
    return {
        "n": n, "jobs": len(jobs),
        "job_s": {"median": pct(wall, 0.5), "p90": pct(wall, 0.9)},
        "plain_model_s": plain,
        "model_in_job_s": pct([j["model"] for j in jobs], 0.5),
        "ratio": {"median": pct(ratios, 0.5), "p90": pct(ratios, 0.9)},
        "outside_model_share": pct(outside, 0.5),
        "outside_model_share_est": 1 - n * plain / pct(wall, 0.5),
        "txs_protocol": sum(len(v) for v in jobs[0]["gas"].values()),
        "txs_in_window": int(pct([j["window_txs"] for j in jobs], 0.5)),
        "gas_per_tx": gas,
        "gas_per_job": int(pct(totals, 0.5)),
        "raw": [{k: v for k, v in j.items() if k != "gas"} for j in jobs],
    }  # fmt: skip


def bench_backend(name: str, k: int, console: Console) -> dict[str, dict]:
    """Start a 5-node network on one backend and measure K jobs (after one warm-up) for each n."""
    out = {}
    with LocalNetwork.start([NodeSpec()] * NODES, models=(MODEL,), chain=BACKENDS[name]()) as net:
        clock = ModelClock(net.models[0])
        try:
            for n in QUORUMS:
                run_job(net, clock, n)  # warm-up, not measured: caches, first-written storage
                out[str(n)] = summarize([run_job(net, clock, n) for _ in range(k)], n)
                job, ratio = out[str(n)]["job_s"]["median"], out[str(n)]["ratio"]["median"]
                console.log(f"{name} n={n}: job {job:.3f}s, {ratio:.1f}x a plain model run")
        finally:
            clock.restore()
    return out


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo where there is one, else the machine type."""
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.machine()


def machine(load_before: float) -> dict:
    """What the numbers were measured on, with the 1-minute load average before and after (others' work)."""
    return {
        "cpu_count": os.cpu_count(), "cpu": cpu_name(),
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads_in_model": 1, "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_1m_before": load_before, "load_1m_after": os.getloadavg()[0],
    }  # fmt: skip


def tables(results: dict) -> dict[str, tuple[list[str], list[list[str]]]]:
    """Headers and formatted rows of the time and gas tables (shared by the console and Markdown)."""
    time_rows, gas_rows = [], []
    for backend, by_n in results.items():
        for s in by_n.values():
            job, ratio, g = s["job_s"], s["ratio"], s["gas_per_tx"]
            time_rows.append([
                backend, str(s["n"]), f"{job['median']:.3f}", f"{job['p90']:.3f}",
                f"{s['plain_model_s']:.3f}", f"{ratio['median']:.1f}x", f"{ratio['p90']:.1f}x",
                f"{s['outside_model_share']:.1%}", str(s["txs_protocol"]),
            ])  # fmt: skip
            gas_rows.append([backend, str(s["n"]), *(f"{g[st]:,}" for st in STEPS), f"{s['gas_per_job']:,}"])
    time_head = ["backend", "n", "job s", "job p90", "model s", "ratio", "ratio p90", "outside", "txs"]
    gas_head = ["backend", "n", *STEPS, "per job"]
    gas_title = "Gas (median per tx; commit and reveal: n each)"
    return {"Time": (time_head, time_rows), gas_title: (gas_head, gas_rows)}


def markdown(report: dict) -> str:
    """The results as a short Markdown note: a line on the set-up, then the time and gas tables."""
    m, c = report["machine"], report["config"]
    lines = [
        "# Quorum overhead",
        "",
        f"`benchmarks/quorum_overhead.py`: {c['jobs']} jobs per row after one warm-up; `{c['model']}`, "
        f"{c['max_new_tokens']} new tokens, {c['nodes']} nodes in one process. {m['cpu']}, "
        f"{m['cpu_count']} CPUs (load {m['load_1m_before']:.1f} before, {m['load_1m_after']:.1f} after), "
        f"Python {m['python']}, torch {m['torch']}, {m['date']}.",
    ]
    for title, (head, body) in tables(report["results"]).items():
        lines += ["", f"**{title}**", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
    lines += [
        "",
        "`job s`: wall time from submit to settled, median (and p90) over the jobs. `ratio`: that over",
        "one plain model run of the same prompt timed just before the job. `outside`: share of the job's",
        "wall time not spent in its n model runs (the nodes run one after another). `txs`: submit, assign,",
        "n commits, n reveals, finalize (node withdrawals not counted). `per job`: their gas summed.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    """Parse flags, run the benchmark, print the table and save JSON and Markdown."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=5, help="measured jobs per backend and n (default 5)")
    p.add_argument("--backends", default="embedded,anvil", help="comma-separated: embedded,anvil")
    p.add_argument("--quick", action="store_true", help="K=2, embedded only; saved as *_quick.*")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON and Markdown results")
    a = p.parse_args()
    k, backends = (2, ["embedded"]) if a.quick else (a.jobs, a.backends.split(","))
    if k < 1 or not set(backends) <= set(BACKENDS):
        p.error(f"--jobs must be >= 1 and --backends a subset of {','.join(BACKENDS)}")
    console, load_before = Console(), os.getloadavg()[0]
    results = {b: bench_backend(b, k, console) for b in backends}
    config = {"model": MODEL, "prompt": PROMPT, "max_new_tokens": NEW_TOKENS, "nodes": NODES, "jobs": k}
    report = {"machine": machine(load_before), "config": config, "results": results}
    for title, (head, body) in tables(results).items():
        table = Table(title=f"{title} - {k} jobs each")
        for h in head:
            table.add_column(h, justify="left" if h == "backend" else "right")
        for r in body:
            table.add_row(*r)
        console.print(table)
    stem = "quorum_overhead_quick" if a.quick else "quorum_overhead"
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (a.out / f"{stem}.md").write_text(markdown(report))
    console.print(f"wrote {a.out / stem}.json and .md")


if __name__ == "__main__":
    main()
