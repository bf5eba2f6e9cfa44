"""Scheduling the DT-FM scenarios: random placement, their search, ours; and the iteration time that follows.

On the five shipped scenarios (64 GPUs, GPT-3 XL in 8 stages of 8; `src/veriml/scheduling/scenarios/`):

(a) the communication cost, by DT-FM's cost model (`veriml.scheduling.cost`), of a random placement (the
    mean and best of `--random` uniform balanced partitions per seed), of their search (GCMA, population
    100, `veriml.scheduling.genetic`) and of ours (`veriml.scheduling.localsearch`), from the same seeds
    with the same search time each; and ours started from random partitions only, to show what its
    structured seeds contribute;
(b) the predicted iteration time (`veriml.scheduling.iteration`: compute plus the communication the
    pipeline cannot hide) as a ratio to case 0, at a range of achieved FLOP rates per GPU, and the
    fastest GPU at which the worldwide case stays within 2.3x of the data centre. For (b) each
    scenario's placement is the best by predicted time among ours from (a) and our structured seeds,
    since the cost model weights the pipeline's transfers as if nothing hid them.

    .venv/bin/python benchmarks/scheduler.py                 # 3 seeds x 5 s per search (~4 min on 2 cores)
    .venv/bin/python benchmarks/scheduler.py --time 60       # longer searches
    .venv/bin/python benchmarks/scheduler.py --quick         # 1 seed x 1 s, results to *_quick.*

Results: benchmarks/results/scheduler{,_quick}.{json,md}; plot docs/figures/scheduler.png (matplotlib).
The searches stop on wall time, so their evaluation counts, and so the costs, depend on the machine and
its load (recorded); each search's seed and evaluation count are kept.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from veriml.scheduling import Budget, Edges, evaluate, gcma, list_shipped, load, local_search
from veriml.scheduling.iteration import iteration_time
from veriml.scheduling.localsearch import seeds
from veriml.scheduling.search import as_partition, random_partition

RESULTS = Path(__file__).resolve().parent / "results"
FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
TFLOPS = [1, 2, 5, 10, 20, 50, 100, 200]  # achieved per GPU, for (b)
HEADLINE_RATIO = 2.3  # DT-FM: 1.7-2.3x slower end to end than a data centre


def part_a(names: list[str], seeds_: list[int], time_s: float, n_random: int) -> list[dict[str, Any]]:
    rows = []
    for name in names:
        s = load(name)
        e = Edges.of(s)
        for seed in seeds_:
            rng = np.random.default_rng(seed)
            rand = [evaluate(e, random_partition(rng, s.devices, s.workload.stages)).total for _ in range(n_random)]
            row: dict[str, Any] = {"scenario": name, "seed": seed, "random_mean": statistics.fmean(rand),
                                   "random_best": min(rand), "random_samples": n_random}  # fmt: skip
            methods = (("theirs", gcma), ("ours", local_search),
                       ("ours_unseeded", lambda *a, **k: local_search(*a, seeded=False, **k)))  # fmt: skip
            for label, search in methods:
                r = search(s, seed=seed, budget=Budget(time_s=time_s))
                row[label] = {
                    "total": r.cost.total, "dp": r.cost.dp, "pp_x2": 2 * r.cost.pp, "evaluations": r.evaluations,
                    "seconds": r.seconds, "partition": [list(g) for g in r.partition],
                    "time_to_best_s": r.history[-1][0] if r.history else None,
                    "history": [[round(t, 4), ev, b] for t, ev, b in r.history],
                }  # fmt: skip
            print(f"{name:20s} seed {seed}: random {row['random_mean']:8.3f} (best {row['random_best']:.3f})  "
                  f"theirs {row['theirs']['total']:8.3f} ({row['theirs']['evaluations']} evals)  "
                  f"ours {row['ours']['total']:8.3f} ({row['ours']['evaluations']} evals)  "
                  f"ours from random {row['ours_unseeded']['total']:8.3f}", flush=True)  # fmt: skip
            rows.append(row)
    return rows


def part_b(names: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    cands: dict[str, list] = {}
    for name in names:
        s = load(name)
        e = Edges.of(s)
        ours = [as_partition(np.array(r["ours"]["partition"])) for r in rows if r["scenario"] == name]
        cands[name] = ours + [as_partition(g) for g in seeds(e, s.workload.stages, s.workload.group_size)]

    def best(name: str, flops: float) -> tuple[float, Any, Any]:
        s = load(name)
        times = [(iteration_time(s, p, flops), p) for p in cands[name]]
        t, p = min(times, key=lambda x: x[0].total_s)
        return t.total_s, t, p

    base = names[0]
    table = []
    for tf in TFLOPS:
        b0 = best(base, tf * 1e12)[0]
        for name in names:
            total, t, p = best(name, tf * 1e12)
            table.append({"scenario": name, "tflops_per_gpu": tf, "iteration_s": total, "ratio_to_case0": total / b0,
                          "compute_s": t.compute_s, "pipeline_s": t.pipeline_s, "allreduce_s": t.allreduce_s,
                          "cost_model_total": evaluate(Edges.of(load(name)), p).total})  # fmt: skip
    # Fastest GPU at which the last (worldwide) case is within HEADLINE_RATIO of case 0 (ratio rises with speed).
    last = names[-1]

    def ratio(x: float) -> float:
        return best(last, x)[0] / best(base, x)[0]

    lo, hi = 1e11, 1e15
    if ratio(lo) > HEADLINE_RATIO:
        within = None
    else:
        for _ in range(40):
            mid = (lo * hi) ** 0.5
            lo, hi = (mid, hi) if ratio(mid) <= HEADLINE_RATIO else (lo, mid)
        within = lo
    return {"rows": table, "worldwide_within_2_3x_up_to_tflops": None if within is None else within / 1e12,
            "base": base, "worst": last}  # fmt: skip


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    out = [
        "# Scheduler: DT-FM's cost model on their five scenarios",
        "",
        f"{len(res['seeds'])} seeds, {res['time_s']:g} s per search, {res['random']} random placements per seed; "
        f"{m['cpus']} CPUs, Python {m['python']}, {m['date']}, load {m['load_1m_before']:.1f} -> "
        f"{m['load_1m_after']:.1f}. Cost in seconds per iteration (DP + 2 PP).",
        "",
        "## (a) Communication cost: mean over seeds (worst seed in brackets)",
        "",
        "| scenario | random mean | random best | theirs (GCMA) | ours | ours / theirs | evals theirs / ours "
        "| ours from random starts |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in res["scenarios"]:
        rs = [r for r in res["a"] if r["scenario"] == name]
        th = [r["theirs"]["total"] for r in rs]
        us = [r["ours"]["total"] for r in rs]
        ev_t = statistics.fmean(r["theirs"]["evaluations"] for r in rs)
        ev_o = statistics.fmean(r["ours"]["evaluations"] for r in rs)
        out.append(f"| {name} | {statistics.fmean(r['random_mean'] for r in rs):.3f} | "
                   f"{min(r['random_best'] for r in rs):.3f} | {statistics.fmean(th):.3f} ({max(th):.3f}) | "
                   f"{statistics.fmean(us):.3f} ({max(us):.3f}) | {statistics.fmean(us) / statistics.fmean(th):.3f} | "
                   f"{ev_t:.0f} / {ev_o:.0f} | "
                   f"{statistics.fmean(r['ours_unseeded']['total'] for r in rs):.3f} |")  # fmt: skip
    wins = sum(r["ours"]["total"] < r["theirs"]["total"] - 1e-9 for r in res["a"])
    ties = sum(abs(r["ours"]["total"] - r["theirs"]["total"]) <= 1e-9 for r in res["a"])
    out += ["", f"Per seed: ours lower in {wins}, equal in {ties}, higher in {len(res['a']) - wins - ties} "
            f"of {len(res['a'])} runs.", "", "## (b) Predicted iteration time, ratio to case 0", "",
            "| TFLOP/s per GPU | " + " | ".join(res["scenarios"]) + " |",
            "|---:|" + "---:|" * len(res["scenarios"])]  # fmt: skip
    b = res["b"]
    for tf in TFLOPS:
        rows = {r["scenario"]: r for r in b["rows"] if r["tflops_per_gpu"] == tf}
        out.append(f"| {tf} | " + " | ".join(f"{rows[n]['ratio_to_case0']:.2f} ({rows[n]['iteration_s']:.1f} s)"
                                             for n in res["scenarios"]) + " |")  # fmt: skip
    w = b["worldwide_within_2_3x_up_to_tflops"]
    out += ["", f"Worldwide within {HEADLINE_RATIO}x of the data centre for GPUs achieving up to "
            f"{'never' if w is None else f'{w:.1f} TFLOP/s'} (achieved, fp16, per GPU; a V100's peak is 125). "
            "Iteration = GPipe forward and backward passes (32 micro-batches of one 2048-token sequence per "
            "pipeline, 6 N T FLOPs), transfers beside compute, then the unoverlapped all-reduce.", ""]  # fmt: skip
    return "\n".join(out)


def plot(res: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    names = res["scenarios"]
    fig, (ax1, ax3, ax2) = plt.subplots(1, 3, figsize=(17, 4.8))
    x = np.arange(len(names))
    for i, (label, key) in enumerate((("random (mean)", "random_mean"), ("DT-FM GCMA", "theirs"), ("ours", "ours"))):
        vals = [statistics.fmean(r[key] if key == "random_mean" else r[key]["total"] for r in res["a"]
                                 if r["scenario"] == n) for n in names]  # fmt: skip
        ax1.bar(x + (i - 1) * 0.27, vals, 0.27, label=label)
    ax1.set_xticks(x, [n.split("_", 1)[1] for n in names], rotation=20)
    ax1.set_ylabel("communication cost, s / iteration (DT-FM model)")
    ax1.set_title(f"(a) same seeds, {res['time_s']:g} s per search")
    ax1.legend()
    for n, color in zip(names[1:], ("C0", "C1", "C2", "C3"), strict=False):
        for r in (r for r in res["a"] if r["scenario"] == n and r["seed"] == res["seeds"][0]):
            for method, ls in (("theirs", "--"), ("ours", "-")):
                h = r[method]["history"]
                ts = [max(t, 1e-4) for t, _, _ in h] + [r[method]["seconds"]]
                ax3.step(ts, [b for _, _, b in h] + [h[-1][2]], where="post", color=color, ls=ls,
                         label=f"{n.split('_', 1)[1]} {'DT-FM' if method == 'theirs' else 'ours'}")  # fmt: skip
    ax3.set_xscale("log")
    ax3.set_xlabel("search time, s (log)")
    ax3.set_ylabel("best cost so far, s / iteration")
    ax3.set_title(f"best so far, seed {res['seeds'][0]} (dashed: DT-FM GCMA)")
    ax3.legend(fontsize=7, ncol=2)
    for n in names:
        rows = [r for r in res["b"]["rows"] if r["scenario"] == n]
        ax2.plot([r["tflops_per_gpu"] for r in rows], [r["ratio_to_case0"] for r in rows], marker="o",
                 label=n.split("_", 1)[1])  # fmt: skip
    ax2.axhline(HEADLINE_RATIO, color="grey", ls="--", lw=1, label=f"{HEADLINE_RATIO}x (DT-FM headline)")
    ax2.set_xscale("log")
    ax2.set_xlabel("achieved TFLOP/s per GPU")
    ax2.set_ylabel("predicted iteration time / data centre")
    ax2.set_title("(b) GPT-3 XL, 64 GPUs, 8 x 8")
    ax2.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--time", type=float, default=5.0, help="seconds per search")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--random", type=int, default=100, help="random placements per seed")
    ap.add_argument("--quick", action="store_true", help="1 seed, 1 s per search, 20 random; *_quick outputs")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--suffix", default="", help="appended to the output names, e.g. _60s")
    args = ap.parse_args()
    if args.quick:
        args.time, args.seeds, args.random = 1.0, [0], 20
    t0, load_before = time.time(), os.getloadavg()[0]
    names = list_shipped()
    a = part_a(names, args.seeds, args.time, args.random)
    res = {
        "scenarios": names, "seeds": args.seeds, "time_s": args.time, "random": args.random, "a": a,
        "b": part_b(names, a), "quick": args.quick, "seconds": time.time() - t0,
        "machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "python": platform.python_version(), "numpy": np.__version__,
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "load_1m_before": load_before, "load_1m_after": os.getloadavg()[0]},
    }  # fmt: skip
    suffix = ("_quick" if args.quick else "") + args.suffix
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"scheduler{suffix}.json").write_text(json.dumps(res, indent=1) + "\n")
    md = markdown(res)
    (args.out / f"scheduler{suffix}.md").write_text(md)
    plot(res, (args.out if args.quick or args.suffix else FIGURES) / f"scheduler{suffix}.png")
    print(md)
    print(f"wrote {args.out / f'scheduler{suffix}.json'} and .md in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
