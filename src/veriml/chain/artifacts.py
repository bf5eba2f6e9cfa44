"""Compiled contract artifacts shipped inside the package (written by `make contracts`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from veriml.errors import ConfigError

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"


@dataclass(frozen=True)
class Artifact:
    """ABI and creation bytecode of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    source_sha256: str


@cache
def load_artifact(name: str) -> Artifact:
    """The artifact for contract `name`; ConfigError if it was never compiled."""
    path = ARTIFACTS_DIR / f"{name}.json"
    if not path.exists():
        raise ConfigError(f"no compiled artifact for {name} in {ARTIFACTS_DIR} (run: make contracts)")
    data = json.loads(path.read_text())
    return Artifact(name=name, abi=data["abi"], bytecode=data["bytecode"], source_sha256=data["sourceSha256"])
