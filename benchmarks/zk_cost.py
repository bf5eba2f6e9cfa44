"""What proving costs: EZKL on digit MLPs of growing size, against a plain run of the same model.

For each model size the script exports an ONNX MLP (the shipped `digits-mlp`, then wider ones trained for a
few epochs on the same data), calibrates EZKL settings at the scales the shipped model uses, and measures:
plain inference (onnxruntime, one image, one thread), circuit rows and logrows, setup time (compile, SRS,
keys), witness time, prove time, off-chain verify time, key and proof sizes, the peak memory of setup and
of proving (each in a fresh child process, so the figure is that step's own high-water mark), and on the
embedded chain the verifier's runtime size and the gas of one `verifyProof`. It then compares input
visibilities for the shipped model (public, the one ZkJobs uses; Poseidon-hashed; private), runs one whole
ZkJobs job for the gas of each step, and extrapolates prove time over logrows to the largest model that
proves within 5 minutes here.

    .venv/bin/python benchmarks/zk_cost.py            # 3 sizes + visibilities + a ZkJobs job (~10 min, 2 cores)
    .venv/bin/python benchmarks/zk_cost.py --quick    # shipped model only (~1 min)

Results: benchmarks/results/zk_cost.{json,md} (`--quick`: zk_cost_quick.*). The SRS is generated locally
(`ezkl.gen_srs`), which is fine for measuring and NOT trustless.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from veriml.models import zoo
from veriml.zk import digits
from veriml.zk.circuit import CircuitSpec, ezkl_version, make_settings
from veriml.zk.prover import peak_rss

RESULTS = Path(__file__).resolve().parent / "results"
SIZES: dict[str, tuple[int, ...] | None] = {
    "64-16-10 (shipped)": None,
    "64-128-128-10": (128, 128),
    "64-512-512-10": (512, 512),
}
VISIBILITIES = {
    "public input (ZkJobs)": CircuitSpec(),
    "hashed input (Poseidon)": CircuitSpec(input_visibility="hashed"),
    "private input": CircuitSpec(input_visibility="private"),
}
BUDGET_S = 300.0
MACHINE_MEMORY = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# ---- children: one step each, so peak memory is that step's own ----


def child(mode: str, d: Path) -> dict[str, Any]:
    from veriml.zk.circuit import gen_witness, prove, setup_circuit, verify_offchain

    steps: dict[str, float] = {}
    last = time.perf_counter()

    def lap(name: str, _cached: bool) -> None:
        nonlocal last
        now = time.perf_counter()
        steps[name] = now - last
        last = now

    circuit = setup_circuit(d / "model.onnx", d / "settings.json", d / "cache", on_step=lap)
    out: dict[str, Any] = {}
    if mode == "setup":
        out = {
            "setup_s": steps,
            "pk_bytes": circuit.pk.stat().st_size,
            "vk_bytes": circuit.vk.stat().st_size,
            "srs_bytes": circuit.srs.stat().st_size,
        }
    else:
        felts = json.loads((d / "input.json").read_text())
        witness_s, prove_s, prove_cpu_s, verify_s = [], [], [], []
        repeats = 3 if circuit.logrows <= 15 else 1
        for _ in range(3):
            t = time.perf_counter()
            w = gen_witness(circuit, felts, d / "run")
            witness_s.append(time.perf_counter() - t)
        for _ in range(repeats):
            t, c = time.perf_counter(), time.process_time()
            prove(circuit, w, d / "proof.json")
            prove_s.append(time.perf_counter() - t)
            prove_cpu_s.append(time.process_time() - c)
        for _ in range(3):
            t = time.perf_counter()
            assert verify_offchain(circuit, d / "proof.json")
            verify_s.append(time.perf_counter() - t)
        proof = json.loads((d / "proof.json").read_text())
        out = {
            "witness_s": statistics.median(witness_s),
            "prove_s": statistics.median(prove_s),
            "prove_runs": prove_s,
            "prove_cpu_s": statistics.median(prove_cpu_s),
            "verify_offchain_s": statistics.median(verify_s),
            "proof_bytes": (len(proof["hex_proof"]) - 2) // 2,
            "instances": sum(len(g) for g in proof["instances"]),
        }
    out["peak_rss_bytes"] = peak_rss()
    return out


def run_child(mode: str, d: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(d)], capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child {mode} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---- the parent ----


def prepare(d: Path, hidden: tuple[int, ...] | None, spec: CircuitSpec, split: digits.DigitsSplit) -> dict:
    """ONNX + calibrated settings + one input in `d`; returns the model's size figures."""
    import torch

    d.mkdir(parents=True, exist_ok=True)
    if hidden is None:
        shutil.copyfile(zoo.model_dir("digits-mlp") / "model.onnx", d / "model.onnx")
        layers = zoo.manifest("digits-mlp").architecture["layers"]
    else:
        torch.set_num_threads(1)
        model = digits.train_mlp(hidden, split, epochs=60)
        digits.export_onnx(model, d / "model.onnx")
        layers = [digits.N_PIXELS, *hidden, digits.N_CLASSES]
    if hidden is None and spec == CircuitSpec():
        shutil.copyfile(zoo.model_dir("digits-mlp") / "settings.json", d / "settings.json")
        settings = json.loads((d / "settings.json").read_text())
    else:
        cal = [digits.pixels_to_floats(x) for x in split.x_train[:50]] + [[1.0] * 64, [0.0] * 64]
        settings = make_settings(d / "model.onnx", d / "settings.json", spec, cal)
    pixels = [int(p) for p in split.x_test[0]]
    (d / "input.json").write_text(json.dumps(digits.encode_input(pixels, settings["model_input_scales"][0])))
    params = sum(a * b + b for a, b in zip(layers[:-1], layers[1:], strict=True))
    return {
        "layers": layers,
        "params": params,
        "rows": settings["num_rows"],
        "logrows": settings["run_args"]["logrows"],
        "pixels": pixels,
    }


def plain_inference_s(onnx_path: Path, pixels: list[int], runs: int = 300) -> float:
    sess = digits.onnx_session(onnx_path)
    x = np.asarray([digits.pixels_to_floats(pixels)], dtype=np.float32)
    for _ in range(20):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def onchain(d: Path) -> dict[str, Any]:
    """Compile the verifier, deploy it on the embedded chain and verify the child's proof in a transaction."""
    from veriml.chain.backends import embedded_chain
    from veriml.chain.tx import send
    from veriml.chain.zk import deploy_bytecode
    from veriml.zk.circuit import setup_circuit
    from veriml.zk.proof import Proof
    from veriml.zk.verifier import build_verifier

    circuit = setup_circuit(d / "model.onnx", d / "settings.json", d / "cache")
    t = time.perf_counter()
    build = build_verifier(circuit, d / "cache")
    verifier_build_s = time.perf_counter() - t
    chain = embedded_chain()
    owner = chain.accounts[0]
    receipt = deploy_bytecode(chain, owner, build.abi, build.bytecode)
    v = chain.w3.eth.contract(address=receipt["contractAddress"], abi=build.abi)
    proof = Proof.from_ezkl(d / "proof.json", circuit.n_inputs)
    fn = v.functions.verifyProof(proof.proof, list(proof.instances))
    assert fn.call() is True
    tx = send(chain.w3, fn, owner)
    calldata = proof.verifier_calldata()
    intrinsic = 21_000 + sum(16 if b else 4 for b in calldata)
    return {
        "verifier_runtime_bytes": build.runtime_bytes,
        "verifier_build_s": verifier_build_s,
        "deploy_gas": int(receipt["gasUsed"]),
        "verify_tx_gas": int(tx["gasUsed"]),
        "verify_exec_gas": int(tx["gasUsed"]) - intrinsic,
        "calldata_bytes": len(calldata),
    }


def measure(name: str, d: Path, hidden: tuple[int, ...] | None, spec: CircuitSpec, split, console) -> dict:  # noqa: ANN001
    console.print(f"[bold]{name}[/]: preparing")
    row: dict[str, Any] = {"name": name, **prepare(d, hidden, spec, split)}
    row["visibility"] = {"input": spec.input_visibility, "params": spec.param_visibility, "output": "public"}
    row["plain_infer_s"] = plain_inference_s(d / "model.onnx", row.pop("pixels"))
    console.print(f"  {row['params']:,} params, {row['rows']:,} rows, 2^{row['logrows']}: setup")
    row.update(run_child("setup", d))
    row["setup_peak_rss_bytes"] = row.pop("peak_rss_bytes")
    console.print("  witness, prove, verify")
    row.update(run_child("prove", d))
    row["prove_peak_rss_bytes"] = row.pop("peak_rss_bytes")
    console.print("  verifier on-chain")
    row.update(onchain(d))
    row["prove_over_infer"] = row["prove_s"] / row["plain_infer_s"]
    console.print(
        f"  prove {row['prove_s']:.2f}s ({row['prove_over_infer']:,.0f}x plain), verify gas {row['verify_tx_gas']:,}, "
        f"pk {row['pk_bytes'] / 2**20:.0f} MiB, peak {row['prove_peak_rss_bytes'] / 2**20:.0f} MiB"
    )
    return row


def zkjobs_job(cache: Path) -> dict[str, Any]:
    """One digit job through ZkJobs (honest node): gas of every transaction."""
    from veriml.demo_zk import start_network
    from veriml.sim.network import NodeSpec

    split = digits.load_split()
    with start_network([NodeSpec(schemes=("zk",))], cache_dir=cache) as net:
        r = net.client.run_digit([int(p) for p in split.x_test[0]], between=net.tick)
        w3 = net.chain.w3
        gas = {k: int(w3.eth.get_transaction_receipt(v)["gasUsed"]) for k, v in r.txs.items() if v}
        net.tick()
        wd = net.client.jobs.events("Withdrawn", 0)
        if wd:
            gas["node_withdraw"] = int(w3.eth.get_transaction_receipt(wd[-1]["transactionHash"])["gasUsed"])
        rec = net.nodes[0].role("zk").state.get(r.job_id)
        return {
            "status": r.status,
            "gas": gas,
            "gas_per_job": sum(gas.values()),
            "prove_s": rec.data.get("prove_s") if rec else None,
            "verify_gas_budget": net.client.model.verify_gas,
        }


def extrapolate(rows: list[dict]) -> dict[str, Any]:
    """Prove time and peak memory grow about geometrically with logrows (FFTs and MSMs over 2^logrows
    points). Fit each as 2^(a*logrows + b) through the two largest measured sizes (the small ones are
    dominated by fixed costs, so they would flatter the slope) and find the largest logrows whose predicted
    prove time is within the budget and whose memory fits in 80% of this machine's. Time is predicted two
    ways: the measured wall time (on this shared box, under others' load) and the prover's CPU time, what an
    otherwise idle machine would take with no credit for parallelism (the prover used under one core's worth
    of CPU per wall second here, so CPU time is a conservative idle-machine figure)."""
    pts = sorted(rows, key=lambda r: r["logrows"])[-2:]
    (k1, k2) = (pts[0]["logrows"], pts[1]["logrows"])

    def fit(key: str, scale: float = 1.0) -> tuple[float, float]:
        y1, y2 = math.log2(pts[0][key] * scale), math.log2(pts[1][key] * scale)
        a = (y2 - y1) / (k2 - k1)
        return a, y2 - a * k2

    fits = {
        "wall": fit("prove_s"),
        "idle": fit("prove_cpu_s"),
        "memory": fit("prove_peak_rss_bytes"),
    }
    rows_per_param = statistics.median(r["rows"] / r["params"] for r in rows)
    preds = []
    for k in range(k2 + 1, 24):
        params = int(0.9 * 2**k / rows_per_param)  # ~90% of the rows usable
        w = int((-75 + math.sqrt(75**2 + 4 * params)) / 2)  # 64-w-w-10 has w^2 + 75w + 10 parameters
        pred = {name: 2 ** (a * k + b) for name, (a, b) in fits.items()}
        preds.append(
            {
                "logrows": k,
                "prove_s_wall": pred["wall"],
                "prove_s_idle": pred["idle"],
                "peak_bytes": pred["memory"],
                "params": params,
                "mlp": f"64-{w}-{w}-10",
            }
        )

    def largest(key: str) -> dict | None:
        ok = [p for p in preds if p[key] <= BUDGET_S and p["peak_bytes"] <= 0.8 * MACHINE_MEMORY]
        if not ok and pts[1]["prove_s"] <= BUDGET_S:
            return {"logrows": k2, key: pts[1]["prove_s"], "params": pts[1]["params"], "mlp": pts[1]["name"]}
        return ok[-1] if ok else None

    return {
        "from_sizes": [p["name"] for p in pts],
        "slope_log2_per_logrow": {name: a for name, (a, _) in fits.items()},
        "rows_per_param": rows_per_param,
        "predictions": preds,
        "largest_within_budget_wall": largest("prove_s_wall"),
        "largest_within_budget_idle": largest("prove_s_idle"),
        "budget_s": BUDGET_S,
        "measured": False,
    }


def machine(load_before: float) -> dict:
    info = Path("/proc/cpuinfo")
    names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")]
    return {
        "cpu_count": os.cpu_count(),
        "cpu": names[0] if names else platform.machine(),
        "memory_bytes": MACHINE_MEMORY,
        "python": platform.python_version(),
        "ezkl": ezkl_version(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_1m_before": load_before,
        "load_1m_after": os.getloadavg()[0],
    }


def mib(b: float) -> str:
    return f"{b / 2**20:,.1f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# zk cost",
        "",
        f"`benchmarks/zk_cost.py`: EZKL {m['ezkl']}, {m['cpu']}, {m['cpu_count']} CPUs, "
        f"{m['memory_bytes'] / 2**30:.0f} GiB (load {m['load_1m_before']:.1f} before, {m['load_1m_after']:.1f} after), "
        f"Python {m['python']}, {m['date']}. Local SRS (`gen_srs`): measured, NOT trustless.",
        "",
        "**By model size** (input public, weights fixed, output public; scales 2^7; decomposition base 1024 x 3)",
        "",
        "| model | params | rows | logrows | plain infer ms | witness ms | prove s | prove CPU s | prove/infer "
        "| verify off-chain ms "
        "| verify gas (tx) | pk MiB | vk KiB | proof B | setup s | peak setup MiB | peak prove MiB | verifier B |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["sizes"]:
        lines.append(
            f"| {r['name']} | {r['params']:,} | {r['rows']:,} | {r['logrows']} | {r['plain_infer_s'] * 1e3:.3f} "
            f"| {r['witness_s'] * 1e3:.1f} | {r['prove_s']:.2f} | {r.get('prove_cpu_s', float('nan')):.2f} "
            f"| {r['prove_over_infer']:,.0f}x | "
            f"{r['verify_offchain_s'] * 1e3:.1f} | {r['verify_tx_gas']:,} | {mib(r['pk_bytes'])} | "
            f"{r['vk_bytes'] / 1024:.1f} | {r['proof_bytes']:,} | {sum(r['setup_s'].values()):.1f} | "
            f"{mib(r['setup_peak_rss_bytes'])} | {mib(r['prove_peak_rss_bytes'])} | {r['verifier_runtime_bytes']:,} |"
        )
    if report.get("visibility"):
        lines += [
            "",
            "**Input visibility, shipped model** (how a proof can be bound to a job's input)",
            "",
            "| input | logrows | instances | prove s | verify gas (tx) | pk MiB | verifier B | binds the job? |",
            "|---|---|---|---|---|---|---|---|",
        ]
        binds = {
            "public": "yes: ZkJobs hashes the input instances",
            "hashed": "only via a Poseidon hash the job must carry",
            "private": "no",
        }
        for r in report["visibility"]:
            lines.append(
                f"| {r['name']} | {r['logrows']} | {r['instances']} | {r['prove_s']:.2f} | {r['verify_tx_gas']:,} | "
                f"{mib(r['pk_bytes'])} | {r['verifier_runtime_bytes']:,} | {binds[r['visibility']['input']]} |"
            )
    if report.get("zkjobs"):
        z = report["zkjobs"]
        lines += ["", "**One ZkJobs job, shipped model** (gas per transaction)", ""]
        lines.append("| " + " | ".join(z["gas"]) + " | per job |")
        lines.append("|" + "---|" * (len(z["gas"]) + 1))
        lines.append("| " + " | ".join(f"{g:,}" for g in z["gas"].values()) + f" | {z['gas_per_job']:,} |")
    if report.get("extrapolation"):
        e = report["extrapolation"]
        sl = e["slope_log2_per_logrow"]
        lines += [
            "",
            f"**Largest model within {e['budget_s']:.0f} s** (extrapolated, not measured: fitted as 2^(a*logrows+b) "
            f"through {' and '.join(e['from_sizes'])}; time x{2 ** sl['wall']:.2f} (wall) / x{2 ** sl['idle']:.2f} "
            f"(CPU) and peak memory x{2 ** sl['memory']:.2f} per extra logrow; {e['rows_per_param']:.2f} rows per "
            "parameter. `wall`: as measured on this shared box; `idle`: the prover's CPU time, i.e. an idle "
            "machine with no credit for using both cores)",
            "",
            "| logrows | prove s (wall) | prove s (idle) | peak GiB | params | e.g. |",
            "|---|---|---|---|---|---|",
        ]
        for p in e["predictions"]:
            gib = p["peak_bytes"] / 2**30
            lines.append(
                f"| {p['logrows']} | {p['prove_s_wall']:,.0f} | {p['prove_s_idle']:,.0f} | {gib:.1f} | "
                f"{p['params']:,} | {p['mlp']} |"
            )
        for key, label in (("wall", "under this run's load"), ("idle", "on an idle machine (CPU time)")):
            best = e[f"largest_within_budget_{key}"]
            if best:
                lines += [
                    "",
                    f"Largest within budget {label}: logrows {best['logrows']}, about {best['params']:,} parameters "
                    f"(e.g. {best['mlp']}), predicted {best[f'prove_s_{key}']:.0f} s.",
                ]
    lines += [
        "",
        "`plain infer`: onnxruntime, one image, one thread, median of 300. `witness`/`prove`/`verify off-chain`: "
        "EZKL, median of 3 (prove: 1 run from 2^16 rows up). `verify gas (tx)`: one `verifyProof` transaction on "
        "the embedded chain, calldata included. `peak`: the child process's max RSS during setup (SRS + keys) or "
        "proving. `verifier B`: runtime bytecode (EIP-170 limit 24,576).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the shipped model only")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--child", nargs=2, metavar=("MODE", "DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--keep", type=Path, help="work in this directory and keep it (keys can be large)")
    ap.add_argument("--regen", type=Path, help="rewrite the Markdown from this JSON report and exit")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0
    if args.regen:
        report = json.loads(args.regen.read_text())
        report["extrapolation"] = extrapolate(report["sizes"]) if len(report["sizes"]) > 1 else None
        args.regen.write_text(json.dumps(report, indent=2) + "\n")
        args.regen.with_suffix(".md").write_text(markdown(report))
        return 0

    from rich.console import Console

    console = Console()
    load_before = os.getloadavg()[0]
    split = digits.load_split()
    work = args.keep or Path(tempfile.mkdtemp(prefix="veriml-zk-bench-"))
    try:
        sizes = list(SIZES.items())[:1] if args.quick else list(SIZES.items())
        rows = [
            measure(name, work / f"size{i}", hidden, CircuitSpec(), split, console)
            for i, (name, hidden) in enumerate(sizes)
        ]
        vis = []
        if not args.quick:
            for i, (name, spec) in enumerate(VISIBILITIES.items()):
                vis.append(rows[0] if i == 0 else measure(name, work / f"vis{i}", None, spec, split, console))
                vis[-1] = {**vis[-1], "name": name}
        console.print("[bold]one ZkJobs job[/]")
        job = zkjobs_job(work / "size0" / "cache")
        report = {
            "machine": machine(load_before),
            "sizes": rows,
            "visibility": vis,
            "zkjobs": job,
            "extrapolation": extrapolate(rows) if len(rows) > 1 else None,
        }
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    stem = "zk_cost_quick" if args.quick else "zk_cost"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(report))
    console.print(markdown(report))
    console.print(f"wrote {args.out / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
