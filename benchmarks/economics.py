"""The economic simulator's table: every adversary's expected gain per job in every scheme, and the knobs that
deter it.

For each (scheme, adversary) at the defaults (`Market()` with the worst collusion share the issue allows,
r = 1/3): the Monte Carlo gain over honesty with its 95% interval, the closed form beside it, and the smallest
audit p (audit), quorum n (quorum) or watcher re-execution rate (optimistic) that makes the gain negative.
Then the slash-routing attacks of issue 10 (self-challenge, self-griefing submitter) and the smallest burn
share that makes each unprofitable over a grid of gas costs and watcher rates.

    .venv/bin/python benchmarks/economics.py              # 1,000,000 jobs per cell (seconds)
    .venv/bin/python benchmarks/economics.py --jobs 100000

Results go to benchmarks/results/economics.json and .md.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from veriml.sim import economics as e
from veriml.sim.params import P_GRID_BPS, choose

RESULTS = Path(__file__).resolve().parent / "results"
GAS_GRID = (0.001, 0.0085, 0.02)  # ETH per dispute: cheap L2, the measured 0.0085, a busy L1
WATCH_GRID = (0.01, 0.05, 0.2, 0.5)


def smallest_knob(scheme: e.Scheme, adversary: e.Adversary, m: e.Market) -> str:
    """The scheme's own knob at which this adversary's gain first turns negative, as text ('-' if none)."""
    if scheme == "audit":
        for bps in P_GRID_BPS:
            if e.gain(scheme, adversary, m.with_(audit_p=bps / 10_000)) < 0:
                return f"p = {bps} bps"
        return "none up to p = 1"
    if scheme == "quorum":
        for n in range(1, 16, 2):
            if e.gain(scheme, adversary, m.with_(quorum_n=n)) < 0:
                return f"n = {n}"
        return "none up to n = 15"
    if scheme == "optimistic":
        for bps in P_GRID_BPS:
            if e.gain(scheme, adversary, m.with_(watch_p=bps / 10_000)) < 0:
                return f"watch p = {bps} bps"
        return "none up to watch p = 1"
    return "always (proof checked)" if e.gain(scheme, adversary, m) < 0 else "never"


def adversary_table(m: e.Market, jobs: int, seed: int) -> list[dict]:
    rows = []
    for scheme in e.SCHEMES:
        for adversary in e.ADVERSARIES:
            if not e.applicable(scheme, adversary):
                continue
            est = e.simulate(scheme, adversary, m, jobs=jobs, seed=seed)
            exact = e.gain(scheme, adversary, m)
            rows.append(
                {
                    "scheme": scheme,
                    "adversary": adversary,
                    "mc_mean": est.mean,
                    "mc_lo": est.lo,
                    "mc_hi": est.hi,
                    "closed_form": exact,
                    "closed_form_in_interval": est.contains(exact),
                    "deterred_at": smallest_knob(scheme, adversary, m),
                }
            )
    return rows


def burn_table(m: e.Market) -> list[dict]:
    rows = []
    for gas in GAS_GRID:
        for watch in WATCH_GRID:
            mm = m.with_(dispute_gas=gas, watch_p=watch, watchers=1)
            rows.append(
                {"attack": "self_challenge", "gas": gas, "watch_p": watch, "min_burn": e.min_burn("self_challenge", mm)}
            )
        for puppets in (0, 1, 2):
            rows.append(
                {
                    "attack": "self_grief",
                    "gas": gas,
                    "puppets": puppets,
                    "min_burn": e.min_burn("self_grief", m.with_(dispute_gas=gas), puppets=puppets),
                }
            )
    return rows


def markdown(report: dict) -> str:
    cfg = report["config"]
    out = [
        "# Economic simulator",
        "",
        f"{cfg['jobs']:,} Monte Carlo jobs per cell, seed {cfg['seed']}, {report['seconds']:.2f} s in all on "
        f"{report['machine']['python']} / {report['machine']['platform']}. Defaults: fee {cfg['market']['fee']} ETH, "
        f"compute {cfg['market']['compute']} ETH, stake {cfg['market']['stake']} ETH, slash "
        f"{cfg['market']['slash_bps']} bps, burn {cfg['market']['burn_bps']} bps, r = 1/3, audit p = "
        f"{cfg['market']['audit_p']}, k = {cfg['market']['audit_k']}, quorum n = {cfg['market']['quorum_n']}, "
        f"{cfg['market']['watchers']} watchers at {cfg['market']['watch_p']}. Gain = expected profit per job over "
        "an honest node's, ETH (negative: the deviation loses money).",
        "",
        "| scheme | adversary | MC gain | 95% interval | closed form | in interval | deterred at |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["adversaries"]:
        out.append(
            f"| {r['scheme']} | {r['adversary']} | {r['mc_mean']:.6g} | [{r['mc_lo']:.6g}, {r['mc_hi']:.6g}] | "
            f"{r['closed_form']:.6g} | {'yes' if r['closed_form_in_interval'] else 'no'} | {r['deterred_at']} |"
        )
    out += ["", "## Smallest burn share that makes the slash-routing attacks lose", ""]
    out += ["| attack | dispute gas (ETH) | watch p / puppets | min burn |", "|---|---|---|---|"]
    for r in report["burn"]:
        knob = f"watch p {r['watch_p']}" if r["attack"] == "self_challenge" else f"{r['puppets']} puppets"
        out.append(f"| {r['attack']} | {r['gas']} | {knob} | {r['min_burn']:.4f} |")
    ch = report["params_choice"]
    out += [
        "",
        f"`veriml params` at the defaults (r = 1/3): audit p = {ch['audit_p']}, k = {ch['audit_k']}, stake "
        f"{ch['stake']} ETH, slash {ch['slash_bps']} bps, quorum n = {ch['quorum_n']}; audit margin "
        f"{ch['audit_margin']:.6g} ETH per job; {ch['audit_overhead']:.4f} executions per job.",
        "",
    ]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args()
    console = Console()
    m = e.Market(collusion=1 / 3)
    t0 = time.perf_counter()
    adversaries = adversary_table(m, a.jobs, a.seed)
    seconds = time.perf_counter() - t0
    burn = burn_table(m)
    c = choose(m)
    report = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "config": {"jobs": a.jobs, "seed": a.seed, "market": {k: v for k, v in vars(m).items()}},
        "seconds": seconds,
        "adversaries": adversaries,
        "burn": burn,
        "params_choice": {
            "audit_p": c.market.audit_p,
            "audit_k": c.market.audit_k,
            "stake": c.market.stake,
            "slash_bps": c.market.slash_bps,
            "quorum_n": c.market.quorum_n,
            "audit_margin": c.margin("audit"),
            "audit_overhead": c.audit_overhead,
        },
    }
    t = Table(title=f"gain over honesty, ETH per job ({a.jobs:,} jobs per cell, {seconds:.2f} s)")
    for col in ("scheme", "adversary", "MC", "95% interval", "closed form", "deterred at"):
        t.add_column(col)
    for r in adversaries:
        t.add_row(
            r["scheme"],
            r["adversary"],
            f"{r['mc_mean']:.6g}",
            f"[{r['mc_lo']:.6g}, {r['mc_hi']:.6g}]",
            f"{r['closed_form']:.6g}",
            r["deterred_at"],
        )
    console.print(t)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "economics.json").write_text(json.dumps(report, indent=2) + "\n")
    (a.out / "economics.md").write_text(markdown(report))
    console.print(f"wrote {a.out / 'economics.json'} and .md")


if __name__ == "__main__":
    main()
