"""A scheduling scenario: devices, their pairwise network, and the workload to place on them.

Units, in memory: latency in seconds, bandwidth in bytes per second, message sizes in bytes.
On disk (the JSON files under `scenarios/`) latency is in milliseconds and bandwidth in Gbit/s
(1e9 bits per second), the units of DT-FM's `config.py` (Yuan et al. 2022), so the files can be
read against the paper.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from veriml.errors import ConfigError

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
GBPS = 1e9 / 8  # bytes per second in one Gbit/s


@dataclass(frozen=True)
class Workload:
    """What is placed: a model cut into `stages` pipeline stages, each replicated `group_size` times."""

    model: str
    params: float  # parameters of the whole model
    layers: int
    stages: int
    group_size: int  # data-parallel replicas of each stage = devices per group
    activation_bytes: float  # c_act: activations one pipeline sends across one stage boundary per iteration
    gradient_bytes: float  # c_grad: gradients of one stage, all-reduced across its group per iteration
    tokens_per_iteration: float = 524_288.0  # global batch, tokens (256 sequences of 2048)
    sequence_length: int = 2048
    micro_batch_sequences: int = 1


@dataclass(frozen=True, eq=False)
class Scenario:
    """Devices 0..n-1, the symmetric latency matrix A (s) and bandwidth matrix B (bytes/s), and a workload."""

    name: str
    latency_s: np.ndarray
    bandwidth_bps: np.ndarray  # bytes per second (not bits)
    workload: Workload
    regions: tuple[str, ...] = ()
    description: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.latency_s.shape[0]
        if self.latency_s.shape != (n, n) or self.bandwidth_bps.shape != (n, n):
            raise ConfigError(f"scenario {self.name!r}: latency and bandwidth must be n x n, got "
                              f"{self.latency_s.shape} and {self.bandwidth_bps.shape}")  # fmt: skip
        w = self.workload
        if w.stages * w.group_size != n:
            raise ConfigError(f"scenario {self.name!r}: {w.stages} stages x {w.group_size} replicas != {n} devices")
        off = ~np.eye(n, dtype=bool)
        if np.any(self.bandwidth_bps[off] <= 0) or np.any(self.latency_s < 0):
            raise ConfigError(f"scenario {self.name!r}: bandwidth must be > 0 and latency >= 0 between devices")
        if self.regions and len(self.regions) != n:
            raise ConfigError(f"scenario {self.name!r}: {len(self.regions)} region labels for {n} devices")

    @property
    def devices(self) -> int:
        return int(self.latency_s.shape[0])


def from_dict(d: dict[str, Any]) -> Scenario:
    """Build a scenario from its JSON form (latency in ms, bandwidth in Gbit/s)."""
    try:
        w = Workload(**d["workload"])
        lat = np.asarray(d["latency_ms"], dtype=float) / 1e3
        bw = np.asarray(d["bandwidth_gbps"], dtype=float) * GBPS
        regions = tuple(d.get("regions", ()))
        name = str(d["name"])
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"malformed scenario: {e}") from e
    meta = {k: v for k, v in d.items() if k not in ("name", "workload", "latency_ms", "bandwidth_gbps", "regions")}
    return Scenario(name, lat, bw, w, regions, str(d.get("description", "")), meta)


def to_dict(s: Scenario) -> dict[str, Any]:
    """The JSON form of a scenario (latency in ms, bandwidth in Gbit/s), rounded to what the sources state."""
    return {
        "name": s.name,
        "description": s.description,
        **s.meta,
        "workload": s.workload.__dict__,
        "regions": list(s.regions),
        "latency_ms": np.round(s.latency_s * 1e3, 6).tolist(),
        "bandwidth_gbps": np.round(s.bandwidth_bps / GBPS, 6).tolist(),
    }


def load(path_or_name: str | Path) -> Scenario:
    """Load a scenario from a JSON file, or a shipped one by name (`worldwide`, `4`, `case4_worldwide`, ...)."""
    p = Path(path_or_name)
    if not p.exists():
        p = shipped(str(path_or_name))
    try:
        return from_dict(json.loads(p.read_text()))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read scenario {p}: {e}") from e


def shipped(name: str) -> Path:
    """The path of a shipped scenario file, matched by case number or a part of its name."""
    files = sorted(SCENARIO_DIR.glob("*.json"))
    for f in files:
        if f.stem == name or f.stem.startswith(f"case{name}_") or f.stem.split("_", 1)[-1] == name:
            return f
    raise ConfigError(f"no scenario file or shipped scenario {name!r} (shipped: {', '.join(f.stem for f in files)})")


def list_shipped() -> list[str]:
    """Names of the shipped scenarios, in case order."""
    return [f.stem for f in sorted(SCENARIO_DIR.glob("*.json"))]


def make(
    name: str,
    latency_ms: np.ndarray,
    bandwidth_gbps: np.ndarray,
    workload: Workload,
    regions: tuple[str, ...] = (),
    description: str = "",
    **meta: Any,
) -> Scenario:
    """Build a scenario from matrices in the on-disk units (ms, Gbit/s)."""
    return Scenario(name, np.asarray(latency_ms, float) / 1e3, np.asarray(bandwidth_gbps, float) * GBPS,
                    workload, regions, description, dict(meta))  # fmt: skip
