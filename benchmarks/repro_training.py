"""What verified training costs on the reproducible runtime: its speed against plain PyTorch, whether either
reproduces across thread counts and vector ISAs, the proof-of-learning verifier's cost as a fraction of
training, and a dispute's rounds and referee cost.

1. **Speed**: MLPs and the one-block transformer on scikit-learn's digits, SGD-momentum and Adam, one
   thread. Per model, blocks of steps of the reproducible runtime (`veriml.training`) and of plain PyTorch
   (nn.Linear + autograd + torch.optim, same init and batches) alternate, so load from other processes falls
   on both; the figure is the median step time of each and their ratio, measured in this one run.
2. **Reproducibility**: the same short runs in fresh processes with 1 and 2 threads and with
   ATEN_CPU_CAPABILITY=default (scalar kernels); sha256 of the final checkpoint file of each.
3. **Proof of learning**: MLP 64-256-10, 3 epochs with a checkpoint every k steps; the verifier
   (`verify_pol`, Q largest intervals per epoch) timed against the training run; also the step fraction Q k / S
   and the part of the verifier's time spent hashing every checkpoint to check the commitment (it must: the
   largest-change rule reads every checkpoint). Then detection: a solver skipping one step in a fraction of
   its intervals, caught by the largest-change rule, by random intervals, or both, over several trials.
4. **Dispute**: over one k-step segment with a lie planted at one operator: rounds to the step, to the
   record and to the chunk of 16 elements, and the referee's wall time (one operator) against one step.

    .venv/bin/python benchmarks/repro_training.py           # about 2 minutes on 2 busy cores
    .venv/bin/python benchmarks/repro_training.py --quick   # writes repro_training_quick.* (git-ignored)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from quorum_overhead import cpu_name  # noqa: E402

from veriml.training.checkpoint import Checkpoint, PolLog, state_sha256  # noqa: E402
from veriml.training.data import digits, steps_per_epoch  # noqa: E402
from veriml.training.dispute import HONEST, Party, dispute, open_case, referee  # noqa: E402
from veriml.training.graph import CHUNK, execute  # noqa: E402
from veriml.training.mlp import TrainConfig, init_state, schedule, step_program, step_sources, train_step  # noqa: E402
from veriml.training.plain import plain_model  # noqa: E402
from veriml.training.pol import verify_pol  # noqa: E402
from veriml.training.trainer import Cheat, CheatKind, train  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = [  # (name, TrainConfig fields)
    ("mlp 64-64-10", {"sizes": (64, 64, 10), "batch": 32}),
    ("mlp 64-256-10", {"sizes": (64, 256, 10), "batch": 64}),
    ("mlp 64-256-256-10", {"sizes": (64, 256, 256, 10), "batch": 64}),
    ("block 8x8 tokens, d 32, ff 64", {"arch": "block", "sizes": (64, 10), "batch": 32}),
]


def _lr(opt: str) -> float:
    return 0.05 if opt == "sgd" else 0.003


# ---- 1. speed ----
def speed(name: str, cfg: TrainConfig, data, blocks: int, per_block: int) -> dict:
    """Median seconds per step of each runtime over alternating blocks, and the ratio."""
    state = init_state(cfg)
    model = plain_model(cfg)
    opt = (torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum) if cfg.optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps))  # fmt: skip
    loss_fn = torch.nn.CrossEntropyLoss()
    rep_t, plain_t, step = [], [], 0
    batches = [schedule(cfg, data, s) for s in range(blocks * per_block)]  # the same batches, drawn untimed
    for _ in range(blocks):
        t = time.perf_counter()
        for i in range(per_block):
            state = train_step(cfg, state, data, step + i, indices=batches[step + i])[0]
        rep_t.append((time.perf_counter() - t) / per_block)
        t = time.perf_counter()
        for i in range(per_block):
            idx = batches[step + i]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(data.x[idx]), data.y[idx]).backward()
            opt.step()
        plain_t.append((time.perf_counter() - t) / per_block)
        step += per_block
    rep, plain = statistics.median(rep_t), statistics.median(plain_t)
    return {"model": name, "optimizer": cfg.optimizer, "batch": cfg.batch,
            "reproducible_step_ms": round(rep * 1e3, 3), "plain_step_ms": round(plain * 1e3, 3),
            "ratio": round(rep / plain, 2), "blocks": blocks, "steps_per_block": per_block}  # fmt: skip


# ---- 2. reproducibility, in fresh processes ----
def probe(threads: int) -> dict:
    from veriml.training.plain import plain_train

    torch.set_num_threads(threads)
    data, _ = digits()
    out = {"threads": torch.get_num_threads(), "isa": torch.backends.cpu.get_cpu_capability()}
    for opt in ("sgd", "adam"):
        cfg = TrainConfig(sizes=(64, 256, 10), optimizer=opt, lr=_lr(opt), batch=64)
        out[f"reproducible_{opt}"] = state_sha256(train(cfg, data, 20, 20).checkpoints[-1].state)
        out[f"plain_{opt}"] = state_sha256(plain_train(cfg, data, 20))
    block = TrainConfig(arch="block", sizes=(64, 10), batch=32, optimizer="adam", lr=0.003)
    out["reproducible_block_adam"] = state_sha256(train(block, data, 10, 10).checkpoints[-1].state)
    out["plain_block_adam"] = state_sha256(plain_train(block, data, 10))
    return out


def reproducibility() -> dict:
    runs = []
    for threads, isa in ((1, None), (2, None), (1, "default"), (2, "default")):
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if isa is not None:
            env["ATEN_CPU_CAPABILITY"] = isa
        r = subprocess.run([sys.executable, __file__, "--probe", str(threads)], env=env, capture_output=True,
                           text=True, check=True, timeout=600)  # fmt: skip
        runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
    keys = [k for k in runs[0] if k.startswith(("reproducible_", "plain_"))]
    same = {k: len({r[k] for r in runs}) == 1 for k in keys}
    distinct = {k: len({r[k] for r in runs}) for k in keys}
    what = "MLP 64-256-10, batch 64, 20 steps; block (adam), batch 32, 10 steps; final checkpoint sha256"
    return {"runs": runs, "identical_across_runs": same, "distinct_hashes": distinct, "what": what}


# ---- 3. proof of learning ----
def pol_cost(data, every: int, qs: list[int], epochs: int) -> list[dict]:
    cfg = TrainConfig(sizes=(64, 256, 10), batch=32)
    spe = steps_per_epoch(len(data), cfg.batch)
    steps = epochs * spe
    t = time.perf_counter()
    log = train(cfg, data, steps, every)
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    commitment = log.commitment  # the solver hashes every checkpoint once to commit
    commit_s = time.perf_counter() - t
    out = []
    for q in qs:
        fresh = PolLog(log.every, tuple(Checkpoint(c.step, c.state) for c in log.checkpoints), log.indices)
        t = time.perf_counter()
        v = verify_pol(cfg, data, fresh, commitment, q=q)
        verify_s = time.perf_counter() - t
        fresh = PolLog(log.every, tuple(Checkpoint(c.step, c.state) for c in log.checkpoints), log.indices)
        t = time.perf_counter()
        assert fresh.commitment == commitment
        hash_s = time.perf_counter() - t
        out.append({"k": every, "Q": q, "steps_per_epoch": spe, "steps": steps, "accepted": v.accepted,
                    "max_distance": max((c.distance for c in v.checked), default=0.0),
                    "steps_replayed": v.steps_replayed, "step_fraction": round(v.cost_fraction, 4),
                    "Qk_over_S": round(q * every / spe, 4), "train_s": round(train_s, 3),
                    "commit_s": round(commit_s, 3), "verify_s": round(verify_s, 3),
                    "time_fraction": round(verify_s / train_s, 4),
                    "time_fraction_with_commit": round(verify_s / (train_s + commit_s), 4),
                    "of_which_hashing_every_checkpoint_s": round(hash_s, 3),
                    "checkpoints": len(log.checkpoints)})  # fmt: skip
    return out


# ---- 3b. detection against the fraction of faked intervals ----
def detection(data, trials: int) -> list[dict]:
    """A solver that skips one step in a fraction of its intervals (the cheat that moves the weights least);
    how often the verifier catches it, by the largest-change rule alone and with one random interval too."""
    import numpy as np

    cfg = TrainConfig(sizes=(64, 64, 10), batch=32)
    every, spe = 4, steps_per_epoch(len(data), cfg.batch)
    steps = 2 * spe
    n_int = -(-steps // every)
    out = []
    for fraction in (1 / n_int, 0.1, 0.25):
        k = max(1, round(fraction * n_int))
        policies = {"largest Q=1": (1, 0), "largest Q=1 + 1 random": (1, 1), "2 random per epoch": (0, 2)}
        caught = dict.fromkeys(policies, 0)
        for trial in range(trials):
            rng = np.random.default_rng(trial)
            faked = sorted(rng.choice(n_int, k, replace=False))
            cheats = [Cheat(CheatKind.SKIP, int(i) * every + 1) for i in faked if int(i) * every + 1 < steps]
            log = train(cfg, data, steps, every, cheat=cheats)
            for name, (q, r) in policies.items():
                v = verify_pol(cfg, data, log, log.commitment, q=q, random=r, seed=1000 + trial)
                caught[name] += not v.accepted
        # what uniform sampling of r intervals per epoch should give (Monte Carlo over the same design)
        mc = np.random.default_rng(99)
        per_epoch = n_int // 2
        expected = {}
        for name, (q, r) in policies.items():
            if q == 0:
                hits = 0
                for _ in range(20000):
                    f = set(mc.choice(n_int, k, replace=False).tolist())
                    sel = {int(x) + e * per_epoch for e in range(2) for x in mc.choice(per_epoch, r, replace=False)}
                    hits += bool(f & sel)
                expected[name] = round(hits / 20000, 3)
        out.append({"faked_intervals": k, "intervals": n_int, "fraction": round(k / n_int, 3), "trials": trials,
                    "detection": {name: round(c / trials, 3) for name, c in caught.items()},
                    "expected_if_uniform": expected})  # fmt: skip
    return out


# ---- 4. dispute ----
def program_value_numel(cfg: TrainConfig, data, index: int) -> int:
    program = step_program(cfg, 0)
    values = execute(program, step_sources(init_state(cfg), data, schedule(cfg, data, 0)))[0]
    return values[program.name_at(index)].numel()


def dispute_cost(data, every: int) -> dict:
    cfg = TrainConfig(sizes=(64, 256, 10), batch=64)
    start = Checkpoint(0, init_state(cfg))
    lie_step = every // 2
    program = step_program(cfg, lie_step)
    index = program.producer()["grad:l0.weight"]
    t = time.perf_counter()
    out = dispute(cfg, data, start, every, Party(lie=(lie_step, index, 1e-4)), HONEST)
    dispute_s = time.perf_counter() - t
    assert out is not None
    state = init_state(cfg)  # time the referee alone, on a step-0 case of the same operator
    honest = train_step(cfg, state, data, 0, trace=True)[2]
    liar = train_step(cfg, state, data, 0, trace=True, tamper=lambda i, x: x + 1e-4 if i == index else x)[2]
    case = open_case(cfg, data, state, 0, liar, honest, index)
    t = time.perf_counter()
    for _ in range(5):
        ruling = referee(case)
    referee_s = (time.perf_counter() - t) / 5
    t = time.perf_counter()
    for s in range(5):
        state = train_step(cfg, state, data, s)[0]
    step_s = (time.perf_counter() - t) / 5
    return {"model": "64-256-10", "segment_steps": every, "lie": f"step {lie_step}, record {index} (grad:l0.weight)",
            "found_step": out.step.index, "step_rounds": out.step.rounds, "found_record": out.record.index,
            "record_rounds": out.record.rounds, "records_per_step": len(program) + 1, "winner": out.ruling.winner,
            "chunk_rounds": out.chunk.rounds if out.chunk else None,
            "chunks_in_value": -(-program_value_numel(cfg, data, index) // CHUNK),
            "chunk_winner": out.chunk_ruling.winner if out.chunk_ruling else None,
            "honest_side": "b", "referee_ruling_on_case": ruling.winner,
            "referee_s": round(referee_s, 4),  # includes re-deriving the output's chunk root (Python keccak)
            "train_step_s": round(step_s, 4), "referee_over_step": round(referee_s / step_s, 3),
            "whole_dispute_s": round(dispute_s, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--probe", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe is not None:
        print(json.dumps(probe(args.probe)))
        return
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    data, _ = digits()
    blocks, per_block = (3, 5) if args.quick else (5, 20)
    rows = []
    for name, fields in [MODELS[0], MODELS[3]] if args.quick else MODELS:
        for opt in ("sgd", "adam"):
            cfg = TrainConfig(**fields, optimizer=opt, lr=_lr(opt))
            rows.append(speed(name, cfg, data, blocks, per_block))
            print(json.dumps(rows[-1]), flush=True)
    repro = reproducibility()
    print(json.dumps(repro["identical_across_runs"]), flush=True)
    epochs = 1 if args.quick else 3
    pol = pol_cost(data, 4, [1, 2], epochs) + ([] if args.quick else pol_cost(data, 11, [1, 2], epochs))
    for r in pol:
        print(json.dumps(r), flush=True)
    det = detection(data, 3 if args.quick else 40)
    for r in det:
        print(json.dumps(r), flush=True)
    disp = dispute_cost(data, 8)
    print(json.dumps(disp), flush=True)
    result = {"speed": rows, "reproducibility": repro, "pol": pol, "detection": det, "dispute": disp,
              "machine": {"cpu_count": os.cpu_count(), "cpu": cpu_name(), "platform": platform.platform(),
                          "python": platform.python_version(), "torch": torch.__version__, "torch_threads": 1,
                          "date": datetime.now(UTC).isoformat(timespec="seconds"),
                          "load_1m_before": load_before, "load_1m_after": os.getloadavg()[0]}}  # fmt: skip
    name = "repro_training_quick" if args.quick else "repro_training"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = ["# Reproducible training runtime (`benchmarks/repro_training.py`)", "",
             f"1 thread, {cpu_name()}, load {load_before:.1f} -> {result['machine']['load_1m_after']:.1f}.", "",
             "| model | optimizer | batch | reproducible ms/step | plain PyTorch ms/step | ratio |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['model']} | {r['optimizer']} | {r['batch']} | {r['reproducible_step_ms']} | "
                     f"{r['plain_step_ms']} | {r['ratio']} |")  # fmt: skip
    lines += ["", "Final checkpoint identical across 1/2 threads x AVX512/scalar kernels: "
              + ", ".join(f"{k}: {v}" for k, v in repro["identical_across_runs"].items()), "",
              "| k | Q | S | replayed/total steps | Qk/S | verify / train | verify / (train + commit) | accepted |",
              "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in pol:
        lines.append(f"| {r['k']} | {r['Q']} | {r['steps_per_epoch']} | {r['step_fraction']} | {r['Qk_over_S']} | "
                     f"{r['time_fraction']} | {r['time_fraction_with_commit']} | {r['accepted']} |")  # fmt: skip
    lines += ["", "Detection of a solver skipping one step in a fraction of its intervals (MLP 64-64-10, k = 4, "
              "2 epochs):", "", "| faked intervals | fraction | " + " | ".join(det[0]["detection"]) + " |",
              "|---|---|" + "---|" * len(det[0]["detection"])]  # fmt: skip
    for r in det:
        lines.append(f"| {r['faked_intervals']} of {r['intervals']} | {r['fraction']} | "
                     + " | ".join(str(x) for x in r["detection"].values()) + " |")  # fmt: skip
    lines += ["", f"Dispute over {disp['segment_steps']} steps: step found in {disp['step_rounds']} rounds, record "
              f"{disp['found_record']} of {disp['records_per_step']} in {disp['record_rounds']} rounds, winner "
              f"{disp['winner']} (honest: b); then chunk of 16 elements (of {disp['chunks_in_value']}) in "
              f"{disp['chunk_rounds']} rounds, winner {disp['chunk_winner']}; referee {disp['referee_s']} s = "
              f"{disp['referee_over_step']} of a step.",
              ""]  # fmt: skip
    (RESULTS / f"{name}.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
