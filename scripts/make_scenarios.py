"""Write the five DT-FM scheduling scenarios to src/veriml/scheduling/scenarios/*.json.

Figures are those of DT-FM's `scheduler/heuristic_evolutionary_solver/config.py` (Yuan et al. 2022,
"Decentralized Training of Foundation Models in Heterogeneous Environments"): latency in ms, bandwidth
in Gbit/s, and per case the activation and gradient volumes (their `send_activation_size` and
`send_gradient_size`, in GB, taken here as 1e9 bytes because their cost is 8 * GB / Gbps seconds).
What we add, and say so in each file's `assumed` list:
- device numbers are shuffled with a fixed seed, so a placement cannot lean on region order;
- the workload's batch shape (tokens per iteration, sequence length, micro-batch) used only by the
  end-to-end prediction, not by the cost model.

    .venv/bin/python scripts/make_scenarios.py   # rewrites the files; the same seed gives the same bytes
"""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np

from veriml.scheduling.scenario import SCENARIO_DIR, Workload, make, to_dict

SEED = 2022
N = 64
SOURCE = "DS3Lab/DT-FM scheduler/heuristic_evolutionary_solver/config.py (Yuan et al. 2022)"

# (latency ms, bandwidth Gbit/s) between AWS regions, from DT-FM's config.py.
WORLD = {
    ("Oregon", "Virginia"): (67, 0.79), ("Oregon", "Ohio"): (49, 1.10), ("Oregon", "Tokyo"): (96, 0.523),
    ("Oregon", "Seoul"): (124, 0.46), ("Oregon", "London"): (136, 0.42), ("Oregon", "Frankfurt"): (143, 0.404),
    ("Oregon", "Ireland"): (124, 0.482), ("Virginia", "Ohio"): (11, 1.12), ("Virginia", "Tokyo"): (143, 0.524),
    ("Virginia", "Seoul"): (172, 0.500), ("Virginia", "London"): (76, 1.16), ("Virginia", "Frankfurt"): (90, 1.02),
    ("Virginia", "Ireland"): (67, 1.05), ("Ohio", "Tokyo"): (130, 0.694), ("Ohio", "Seoul"): (159, 0.529),
    ("Ohio", "London"): (86, 1.05), ("Ohio", "Frankfurt"): (99, 0.799), ("Ohio", "Ireland"): (77, 1.14),
    ("Tokyo", "Seoul"): (34, 1.10), ("Tokyo", "London"): (210, 0.366), ("Tokyo", "Frankfurt"): (223, 0.36),
    ("Tokyo", "Ireland"): (199, 0.465), ("Seoul", "London"): (238, 0.342), ("Seoul", "Frankfurt"): (235, 0.358),
    ("Seoul", "Ireland"): (228, 0.335), ("London", "Frankfurt"): (14, 1.14), ("London", "Ireland"): (12, 1.09),
    ("Frankfurt", "Ireland"): (24, 1.08),
}  # fmt: skip
REGIONAL = {
    ("Virginia", "Oregon"): (67, 1.15), ("Virginia", "California"): (59, 1.05), ("Virginia", "Ohio"): (11, 1.12),
    ("Oregon", "California"): (12, 1.25), ("Oregon", "Ohio"): (49, 1.10), ("California", "Ohio"): (52, 1.02),
}  # fmt: skip


def workload(act_gb: float, grad_gb: float) -> Workload:
    return Workload(model="GPT-3 XL", params=1.3e9, layers=24, stages=8, group_size=8,
                    activation_bytes=act_gb * 1e9, gradient_bytes=grad_gb * 1e9)  # fmt: skip


def by_region(regions: list[str], inside: tuple[float, float], table: dict) -> tuple[np.ndarray, np.ndarray]:
    lat, bw = np.zeros((N, N)), np.zeros((N, N))
    for i, j in np.ndindex(N, N):
        r, s = regions[i], regions[j]
        lat[i, j], bw[i, j] = inside if r == s else table.get((r, s)) or table[(s, r)]
    return lat, bw


def cases() -> list[tuple[str, list[str], np.ndarray, np.ndarray, Workload, str]]:
    out = []
    # 0: on-demand data centre, 8 instances of 8 GPUs: 100 Gbit/s inside an instance, 3.125 across, no latency.
    regions = [f"instance_{i // 8}" for i in range(N)]
    lat, bw = np.zeros((N, N)), np.full((N, N), 3.125)
    for i, j in np.ndindex(N, N):
        if regions[i] == regions[j]:
            bw[i, j] = 100.0
    out.append(("case0_datacenter", regions, lat, bw, workload(288 / 1024, 1.0),
                "on-demand data centre: 8 instances x 8 GPUs, 100 Gbit/s inside, 3.125 Gbit/s across, 0 ms"))
    # 1: spot: 8 instances of 4 GPUs (100 Gbit/s inside) and 32 standalone GPUs, 1.25 Gbit/s otherwise, 0 ms.
    regions = [f"spot_instance_{i // 4}" if i < 32 else f"standalone_{i}" for i in range(N)]
    lat, bw = np.zeros((N, N)), np.full((N, N), 1.25)
    for i, j in np.ndindex(N, N):
        if regions[i] == regions[j] and i < 32:
            bw[i, j] = 100.0
    out.append(("case1_spot", regions, lat, bw, workload(288 / 1024, 1.0),
                "spot data centre: 8 instances x 4 GPUs at 100 Gbit/s inside, 32 standalone GPUs, 1.25 Gbit/s across"))
    # 2: two universities, 32 GPUs in Ohio and 32 in Virginia.
    regions = ["Ohio" if i < 32 else "Virginia" for i in range(N)]
    lat, bw = by_region(regions, (1, 5.0), {("Ohio", "Virginia"): (11, 1.12)})
    out.append(("case2_universities", regions, lat, bw, workload(288 / 1024, 1.0),
                "two universities, 32 + 32 GPUs: 5 Gbit/s and 1 ms inside, 1.12 Gbit/s and 11 ms across"))
    # 3: regional, 4 x 16 over Virginia, Oregon, California, Ohio.
    regions = [("Virginia", "Oregon", "California", "Ohio")[i // 16] for i in range(N)]
    lat, bw = by_region(regions, (5, 2.0), REGIONAL)
    out.append(("case3_regional", regions, lat, bw, workload(0.4, 0.7),
                "regional, 4 x 16 GPUs in US regions: 2 Gbit/s and 5 ms inside, 1.02-1.25 Gbit/s and 11-67 ms across"))
    # 4: worldwide, 8 x 8 over eight cities.
    cities = ("Oregon", "Virginia", "Ohio", "Tokyo", "Seoul", "London", "Frankfurt", "Ireland")
    regions = [cities[i // 8] for i in range(N)]
    lat, bw = by_region(regions, (5, 2.0), WORLD)
    out.append(("case4_worldwide", regions, lat, bw, workload(0.5, 0.9),
                "worldwide, 8 x 8 GPUs over 8 cities: 2 Gbit/s and 5 ms inside, "
                "0.335-1.16 Gbit/s and 11-238 ms across"))
    return out


def main() -> None:
    rng = np.random.default_rng(SEED)
    SCENARIO_DIR.mkdir(parents=True, exist_ok=True)
    for name, regions, lat, bw, w, desc in cases():
        assert all(lat[i, j] == lat[j, i] and bw[i, j] == bw[j, i] for i, j in combinations(range(N), 2))
        perm = rng.permutation(N)  # device k of the file is device perm[k] of the region-ordered layout
        s = make(name, lat[np.ix_(perm, perm)], bw[np.ix_(perm, perm)], w, tuple(regions[p] for p in perm), desc,
                 source=SOURCE, seed=SEED, assumed=[
                     f"device numbers shuffled with numpy default_rng({SEED}) so region order carries no hint",
                     "activation_bytes/gradient_bytes are DT-FM's per-case send sizes (GB read as 1e9 bytes)",
                     "tokens_per_iteration, sequence_length, micro_batch_sequences: ours, for the end-to-end "
                     "prediction only (0.5M-token batch as in DT-FM, 2048-token sequences, micro-batch 1)",
                     "diagonal entries are never used by the cost model",
                 ])  # fmt: skip
        (SCENARIO_DIR / f"{name}.json").write_text(json.dumps(to_dict(s), separators=(",", ":")) + "\n")
        print(f"wrote {SCENARIO_DIR / (name + '.json')}")


if __name__ == "__main__":
    main()
