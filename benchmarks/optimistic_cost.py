"""What the optimistic scheme costs: gas per transaction and per dispute round, the one-step check against
layer size, the largest layer one block can check, and an undisputed job's wall time against a plain run.

1. **A dispute on the shipped model** (`int-mlp`, 106 steps, 7 rounds): gas of submit, assign, post,
   challenge, every bisect and respond, the one-step check (`proveStep`) at steps in each layer, finalize.
2. **Against the number of steps**: synthetic MLPs 16 -> w -> 10 with 16..1024 steps; a full dispute each
   (lie at the last step): post, challenge, mean bisect and respond, rounds, the check, the whole dispute.
3. **Against layer size**: the one-step check alone (`OptStepHarness`: state hash, weights proof,
   recomputation, as `proveStep` runs it) for fan-ins 64..2^17, at a layer's first row (no outputs yet) and
   at the last row of a square layer (n - 1 outputs carried in the state); plus the fixed overhead of
   `proveStep` around it (the dispute bookkeeping, slashing and credits, measured on the shipped model).
4. **The largest layer within a 30M-gas block**: a binary search over the fan-in of a square layer's last
   row, harness gas plus that overhead, measured (not extrapolated).
5. **Wall time**: K undisputed jobs end to end in one process (submit, assign, the executor's traced run and
   post, a watcher's re-execution, the window mined through, finalize) against one plain integer run
   (`IntMLP.run`) and the step-by-step traced run, timed just before each job.

    .venv/bin/python benchmarks/optimistic_cost.py            # K=5 (about 2 minutes)
    .venv/bin/python benchmarks/optimistic_cost.py --quick    # K=2, fewer sizes; writes *_quick.* (git-ignored)

Gas is a property of the contracts and the EVM rules, so the large checks run on anvil when it is installed
(py-evm takes seconds per million gas); both follow the same fork rules. Results go to
benchmarks/results/optimistic_cost.json and .md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table
from web3.exceptions import Web3RPCError

from veriml.chain.artifacts import load_artifact
from veriml.chain.backends import Chain, anvil_chain, embedded_chain, find_anvil
from veriml.chain.deploy import DeployConfig, deploy_contract
from veriml.chain.optimistic import OptimisticConfig, Turn
from veriml.chain.tx import send
from veriml.demo_optimistic import executors, jobs_of, run_job, start_network, watchers
from veriml.errors import ChainUnavailable
from veriml.models.intmlp import IntMLP, IntModel, digits_split, encode_pixels
from veriml.models.manifest import Manifest
from veriml.sim.faults import Fault
from veriml.sim.network import LocalNetwork
from veriml.verify.trace import State, WeightRow, lie_at

RESULTS = Path(__file__).resolve().parent / "results"
BLOCK_LIMIT = 30_000_000
TX_GAS = 59_000_000  # below the local chains' 60M block limit, so a check that needs more than 30M still runs
# 1% slashes, so the one executor stays eligible through every dispute (gas does not depend on the amount)
CONFIG = OptimisticConfig(execute_window_blocks=5, challenge_window_blocks=5, round_window_blocks=5)
DEPLOY_CONFIG = DeployConfig(slash_bps=100).with_scheme("optimistic", **dataclasses.asdict(CONFIG))


def _gas(receipt: object) -> int:
    return int(receipt["gasUsed"])  # type: ignore[index]


# ---- 1 and 2: disputes through the real contract ----
def dispute_gas(net: LocalNetwork, model: IntModel, data: bytes, lie_step: int) -> dict:
    """Open a job, post a trace lying at `lie_step`, and play the dispute by hand; gas of every transaction."""
    opt = jobs_of(net)
    user, executor, challenger = net.client.account, executors(net)[0].account, watchers(net)[0].account
    g: dict = {}
    job_id, r = opt.submit(user, model.model_id, data, model.manifest.price_wei)
    g["submit"] = _gas(r)
    net.chain.mine(1)
    g["assign"] = _gas(opt.assign(user, job_id))
    truth = model.mlp.trace(data)
    claimed = lie_at(model.mlp.book, data, lie_step, 77)
    g["post"] = _gas(opt.post(executor, job_id, claimed.output, claimed.root, claimed.steps))
    g["challenge"] = _gas(opt.challenge(challenger, job_id))
    g["bisect"], g["respond"] = [], []
    while (d := opt.dispute(job_id)).turn in (Turn.EXECUTOR, Turn.CHALLENGER):
        if d.turn == Turn.EXECUTOR:
            g["bisect"].append(_gas(opt.bisect(executor, job_id, claimed.hash_at(d.mid), claimed.proof(d.mid))))
        else:
            g["respond"].append(_gas(opt.respond(challenger, job_id, truth.hash_at(d.mid) == d.h_mid)))
    d = opt.dispute(job_id)
    s = truth.state_at(d.lo)
    row = None if s.halted else model.mlp.book[(s.layer, s.row)]
    proof = [] if row is None else model.mlp.weights_proof(row.layer, row.row)
    g["prove_step"] = _gas(opt.prove_step(challenger, job_id, s.encode(), row, proof, gas=TX_GAS))
    g["step"], g["rounds"], g["steps"] = d.lo, len(g["respond"]), truth.steps
    g["state_bytes"] = len(s.encode())
    g["dispute_total"] = g["challenge"] + sum(g["bisect"]) + sum(g["respond"]) + g["prove_step"]
    return g


def synthetic_model(mlp: IntMLP, directory: Path, name: str) -> IntModel:
    directory.mkdir(parents=True, exist_ok=True)
    mlp.save(directory / "model.safetensors")
    Manifest(
        name=name,
        task="image-classification",
        architecture={"type": "int-mlp", "sizes": mlp.sizes},
        weights_file="model.safetensors",
        weights_root="0x" + mlp.weights_root.hex(),
        runtime="veriml-int-mlp/1",
        policy="exact",
        policy_threshold=0,
        price_wei=10**15,
    ).save(directory / "manifest.json")
    return IntModel.load(directory)


def bench_disputes(workdir: Path, widths: list[int], console: Console) -> tuple[dict, list[dict], int]:
    """Disputes on the shipped model (a lie in each layer) and on synthetic models of growing depth in steps;
    returns them and the gas of finalizing an undisputed job."""
    shipped = IntModel.load()
    models = [synthetic_model(IntMLP.random([16, w, 10], seed=w), workdir / f"w{w}", f"mlp-16-{w}-10") for w in widths]
    with start_network(
        [Fault.HONEST],
        [Fault.HONEST],
        config=DEPLOY_CONFIG,
        models=("int-mlp", *(str(m.directory) for m in models)),
        workdir=workdir / "net",
    ) as net:
        digit = encode_pixels(digits_split()[1][0])
        shipped_rows = {}
        # one lie per layer of the shipped model (and one in the padding), so the check runs in each layer
        for label, step in (
            ("layer 0, row 0 (input check)", 1),
            ("layer 0, row 40", 41),
            ("layer 1, row 20", 85),
            ("layer 2, row 9 (halts)", 106),
            ("padding (halted)", 120),
        ):
            shipped_rows[label] = dispute_gas(net, shipped, digit, step)
            console.print(f"  shipped model, lie at step {step} ({label}): check {shipped_rows[label]['prove_step']:,}")
        rows = []
        for w, m in zip(widths, models, strict=True):
            g = dispute_gas(net, m, bytes(range(16)), m.mlp.steps)
            rows.append({"width": w, **g})
            console.print(f"  16-{w}-10: {g['steps']} steps, {g['rounds']} rounds, dispute {g['dispute_total']:,} gas")
        job_id = run_job(net, digit)["id"]
        opt = jobs_of(net)
        (fin,) = opt.events("JobFinalized", opt.job(job_id).submit_block, jobId=job_id)
        finalize = _gas(net.chain.w3.eth.get_transaction_receipt(fin["transactionHash"]))
    return shipped_rows, rows, finalize


# ---- 3 and 4: the one-step check against layer size ----
class Harness:
    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        address = deploy_contract(chain, chain.accounts[0], "OptStepHarness")
        self.contract = chain.w3.eth.contract(address=address, abi=load_artifact("OptStepHarness").abi)

    def gas(self, fan_in: int, outputs: int, seed: int = 0) -> int:
        """Gas of one check: fan-in `fan_in`, `outputs` values already in the state (the last row of an
        `outputs + 1`-row layer when outputs > 0)."""
        rng = np.random.default_rng(seed)
        x = rng.integers(-128, 128, fan_in).astype(np.int8).tobytes()
        w = rng.integers(-128, 128, fan_in).astype(np.int8).tobytes()
        y = rng.integers(-128, 128, outputs).astype(np.int8).tobytes()
        row = WeightRow(1, outputs, outputs + 1, False, True, 40_000, 24, 12_345, w)
        s = State(1, outputs, x, y)
        fn = self.contract.functions.check(s.encode(), row.as_tuple(), row.leaf, [])
        return _gas(send(self.chain.w3, fn, self.chain.accounts[0], gas=TX_GAS))


MAX_ROWS = 65_535  # a state's row index is a uint16: no layer has more outputs


def bench_layers(harness: Harness, sizes: list[int], console: Console) -> list[dict]:
    rows = []
    for n in sizes:
        first = harness.gas(n, 0)
        last = harness.gas(n, n - 1) if n <= MAX_ROWS else None
        rows.append({"fan_in": n, "first_row": first, "square_last_row": last, "per_input": round(first / n, 1)})
        sq = f"last row of {n}x{n} {last:>11,}" if last else "(no square layer: rows are uint16)"
        console.print(f"  fan-in {n:>7,}: first row {first:>11,} gas, {sq}")
    return rows


def _search(fits: Callable[[int], bool], lo: int, hi: int) -> tuple[int, int]:
    """(largest n that fits, smallest tried that does not), to within 1/256 of n; lo must fit."""
    while fits(hi):
        lo, hi = hi, hi * 2
    while hi - lo > max(32, lo // 256):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo, hi


def _amount(gas: int | None) -> str:
    return "more than the node accepts in one request" if gas is None else f"{gas:,}"


def largest_layers(harness: Harness, overhead: int, console: Console) -> dict:
    """What one 30M-gas block can check (proveStep = harness + its overhead), found by measuring: the largest
    fan-in of any step (first row: nothing carried), and the largest square layer (its last row carries
    n - 1 outputs), which the uint16 row index caps at 65,535."""
    gas: dict[tuple[int, int], int | None] = {}

    def check(n: int, outputs: int) -> float:
        if (n, outputs) not in gas:
            try:
                gas[(n, outputs)] = harness.gas(n, outputs) + overhead
            except Web3RPCError:  # the node refused a request this big (anvil: past about 1 MB of calldata)
                gas[(n, outputs)] = None
        return gas[(n, outputs)] or float("inf")

    fan_in, fan_in_next = _search(lambda n: check(n, 0) <= BLOCK_LIMIT, 1024, 1 << 18)
    if check(MAX_ROWS, MAX_ROWS - 1) <= BLOCK_LIMIT:
        square, square_next = MAX_ROWS, None
    else:
        square, square_next = _search(lambda n: check(n, n - 1) <= BLOCK_LIMIT, 1024, 1 << 14)
    out = {
        "overhead": overhead,
        "max_fan_in": fan_in,
        "max_fan_in_gas": gas[(fan_in, 0)],
        "fan_in_next": fan_in_next,
        "fan_in_next_gas": gas[(fan_in_next, 0)],
        "max_square": square,
        "max_square_gas": gas[(square, square - 1)],
        "square_limited_by_row_index": square_next is None,
    }
    console.print(
        f"  within {BLOCK_LIMIT:,} gas: fan-in up to {fan_in:,} ({out['max_fan_in_gas']:,} gas; {fan_in_next:,} "
        f"needs {_amount(out['fan_in_next_gas'])}); square layers up to {square:,} x {square:,} "
        f"({out['max_square_gas']:,} gas{', the uint16 row-index limit' if square_next is None else ''})"
    )
    return out


# ---- 5: wall time ----
def bench_wall(k: int, console: Console) -> dict:
    model = IntModel.load()
    digits = [encode_pixels(x) for x in digits_split()[1][: k + 1]]
    with start_network([Fault.HONEST], [Fault.HONEST], config=DEPLOY_CONFIG) as net:
        run_job(net, digits[-1])  # warm-up
        jobs = []
        for data in digits[:k]:
            t0 = time.perf_counter()
            for _ in range(100):
                model.mlp.run(data)
            plain = (time.perf_counter() - t0) / 100
            t0 = time.perf_counter()
            for _ in range(10):
                model.mlp.trace(data).root  # noqa: B018 - the states, their hashes and the Merkle tree
            traced = (time.perf_counter() - t0) / 10
            t0 = time.perf_counter()
            r = run_job(net, data)
            wall = time.perf_counter() - t0
            assert r["status"] == "verified"
            jobs.append({"plain_s": plain, "traced_s": traced, "job_s": wall})
    med = {key: statistics.median(j[key] for j in jobs) for key in ("plain_s", "traced_s", "job_s")}
    out = {
        "jobs": jobs,
        **med,
        "ratio_job_to_plain": med["job_s"] / med["plain_s"],
        "ratio_traced_to_plain": med["traced_s"] / med["plain_s"],
        "ratio_job_to_traced": med["job_s"] / med["traced_s"],
    }
    console.print(
        f"  plain run {med['plain_s'] * 1e6:.0f} us, traced run {med['traced_s'] * 1e3:.2f} ms, undisputed job "
        f"{med['job_s']:.2f} s: {out['ratio_job_to_plain']:,.0f}x a plain run"
    )
    return out


# ---- report ----
def machine(load_before: float) -> dict:
    import torch

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_1m_before": load_before,
        "load_1m_after": os.getloadavg()[0],
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def markdown(r: dict) -> str:
    s = r["shipped"]
    first = next(iter(s.values()))
    lines = [
        "# Optimistic scheme: cost",
        "",
        f"`benchmarks/optimistic_cost.py`{' --quick' if r['quick'] else ''}; {r['machine']['cpus']} CPUs (load "
        f"{r['machine']['load_1m_before']:.1f} before, {r['machine']['load_1m_after']:.1f} after), Python "
        f"{r['machine']['python']}, {r['machine']['date']}. Large checks on {r['layer_backend']}.",
        "",
        "**Shipped model (int-mlp 64-64-32-10: 106 steps, 7 rounds), gas per transaction**",
        "",
        "| submit | assign | post | challenge | bisect (mean) | respond (mean) | finalize |",
        "|---|---|---|---|---|---|---|",
        f"| {first['submit']:,} | {first['assign']:,} | {first['post']:,} | {first['challenge']:,} | "
        f"{statistics.mean(first['bisect']):,.0f} | {statistics.mean(first['respond']):,.0f} | "
        f"{r['finalize_gas']:,} |",
        "",
        "| lie at | disputed step | state bytes | one-step check | whole dispute |",
        "|---|---|---|---|---|",
    ]
    for label, g in s.items():
        lines.append(
            f"| {label} | {g['step']} -> {g['step'] + 1} | {g['state_bytes']} | {g['prove_step']:,} | "
            f"{g['dispute_total']:,} |"
        )
    lines += [
        "",
        "**Against the number of steps** (16 -> w -> 10, lie at the last step; a round is one bisect and one "
        "respond; the check grows with the last layer's fan-in w, not with the steps)",
        "",
        "| steps | rounds | post | bisect (mean) | respond (mean) | one-step check | whole dispute |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in r["by_steps"]:
        lines.append(
            f"| {g['steps']} | {g['rounds']} | {g['post']:,} | {statistics.mean(g['bisect']):,.0f} | "
            f"{statistics.mean(g['respond']):,.0f} | {g['prove_step']:,} | {g['dispute_total']:,} |"
        )
    lines += [
        "",
        "**One-step check against layer size** (harness: state hash + weights proof + recomputation, as a tx)",
        "",
        "| fan-in n | first row | last row of n x n | gas per input |",
        "|---|---|---|---|",
    ]
    for g in r["by_layer"]:
        last = f"{g['square_last_row']:,}" if g["square_last_row"] else "- (over 65,535 rows)"
        lines.append(f"| {g['fan_in']:,} | {g['first_row']:,} | {last} | {g['per_input']} |")
    big, w = r["largest"], r["wall"]
    lines += [
        "",
        f"`proveStep` adds {big['overhead']:,} gas around the check (dispute bookkeeping, slashing, credits).",
    ]
    if "max_fan_in" in big:
        limit = " (the uint16 row index caps layers there)" if big["square_limited_by_row_index"] else ""
        lines += [
            "",
            f"**Within a {BLOCK_LIMIT // 10**6}M-gas block** (measured, check + overhead): a step with fan-in up to "
            f"**{big['max_fan_in']:,}** ({big['max_fan_in_gas']:,} gas; {big['fan_in_next']:,} needs "
            f"{_amount(big['fan_in_next_gas'])}); square layers up to **{big['max_square']:,} x "
            f"{big['max_square']:,}** ({big['max_square_gas']:,} gas at their last row){limit}. A step's calldata is "
            "about 2 x fan-in bytes (the state and the weights row), so past a fan-in of about 64K it no longer fits "
            "the 128 KB per transaction that geth's pool accepts: on a public chain that is the tighter bound.",
        ]
    lines += [
        "",
        f"**Wall time** (median of {len(w['jobs'])}): plain integer run {w['plain_s'] * 1e6:.0f} us, traced run "
        f"(106 states hashed, Merkle tree) {w['traced_s'] * 1e3:.2f} ms, undisputed job end to end "
        f"{w['job_s']:.2f} s = {w['ratio_job_to_plain']:,.0f}x a plain run ({w['ratio_job_to_traced']:,.0f}x the "
        "traced run). The job's time is the chain: its transactions on py-evm, polling, and the watcher's "
        "re-execution; blocks are mined at once, so a real chain adds the challenge window "
        f"({CONFIG.challenge_window_blocks} blocks here) in block time.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="K=2 and fewer sizes; writes optimistic_cost_quick.*")
    ap.add_argument("--jobs", type=int, default=None, help="undisputed jobs to time (default 5, quick 2)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    a = ap.parse_args()
    console = Console()
    load_before = os.getloadavg()[0]
    k = a.jobs or (2 if a.quick else 5)
    widths = [6, 22, 54, 118] if a.quick else [6, 22, 54, 118, 246, 502, 1014]
    sizes = [64, 1024, 16384] if a.quick else [64, 256, 1024, 4096, 16384, 65535, 131072, 262144]

    with tempfile.TemporaryDirectory(prefix="veriml-optbench-") as tmp:
        console.print("[bold]disputes[/] (embedded chain)")
        shipped, by_steps, finalize_gas = bench_disputes(Path(tmp), widths, console)
    console.print("[bold]one-step check against layer size[/]")
    try:
        chain, backend = anvil_chain(), "anvil"
        find_anvil()
    except ChainUnavailable:
        chain, backend = embedded_chain(), "embedded (py-evm)"
    with chain:
        harness = Harness(chain)
        by_layer = bench_layers(harness, sizes, console)
        # proveStep's overhead: the shipped check at layer 1 minus the harness on the same shape (fan-in 64,
        # 20 outputs so far), both as transactions.
        overhead = shipped["layer 1, row 20"]["prove_step"] - harness.gas(64, 20)
        largest = largest_layers(harness, overhead, console) if not a.quick else {"overhead": overhead}
    console.print("[bold]wall time[/]")
    wall = bench_wall(k, console)
    report = {
        "quick": a.quick,
        "layer_backend": backend,
        "shipped": shipped,
        "finalize_gas": finalize_gas,
        "by_steps": by_steps,
        "by_layer": by_layer,
        "largest": largest,
        "wall": wall,
        "machine": machine(load_before),
    }
    stem = "optimistic_cost_quick" if a.quick else "optimistic_cost"
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (a.out / f"{stem}.md").write_text(markdown(report))
    t = Table(title="optimistic scheme")
    t.add_column("figure")
    t.add_column("value")
    t.add_row("one-step check (shipped, layer 1)", f"{shipped['layer 1, row 20']['prove_step']:,} gas")
    if "max_fan_in" in largest:
        t.add_row("largest fan-in in 30M gas", f"{largest['max_fan_in']:,}")
        t.add_row("largest square layer in 30M gas", f"{largest['max_square']:,} x {largest['max_square']:,}")
    t.add_row("undisputed job / plain run", f"{wall['ratio_job_to_plain']:,.0f}x")
    console.print(t)
    console.print(f"wrote {a.out / stem}.json and .md")


if __name__ == "__main__":
    main()
