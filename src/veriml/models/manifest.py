"""A model's manifest: everything that fixes its outputs, hashed to the `modelId` registered on-chain.

The id is keccak256 of the canonical JSON (sorted keys, no whitespace, UTF-8), so two nodes that agree on the
id agree on the architecture, the weights (by Merkle root), the runtime version, the output policy, the price
and the generation limits, including the default length used when a job does not name one.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import MISSING, asdict, dataclass, field, fields
from os import PathLike
from pathlib import Path
from typing import Any, get_args

from eth_hash.auto import keccak

from veriml.errors import ConfigError
from veriml.types import ModelId, Policy

TASKS = ("text-generation", "image-classification", "image-generation", "chat", "embeddings")
POLICIES: tuple[str, ...] = get_args(Policy)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ROOT = re.compile(r"^0x[0-9a-f]{64}$")
_RUNTIME = re.compile(r"^[a-z0-9][a-z0-9._-]*/[0-9][0-9A-Za-z.]*$")


def _check_json(value: Any, where: str) -> None:
    # Only plain JSON values, so canonical_json is a function of the manifest and nothing else.
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"manifest {where} keys must be strings, got {k!r}")
            _check_json(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"manifest {where} must be finite, got {value!r}")
    elif not (value is None or isinstance(value, (str, int, bool))):
        raise ConfigError(f"manifest {where} must be a JSON value, got {type(value).__name__}")


def _check_int(value: Any, name: str, lo: int, hi: int | None = None) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"manifest {name} must be an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in {lo}..{hi}"
        raise ConfigError(f"manifest {name} must be {bound}, got {value}")


@dataclass(frozen=True)
class Manifest:
    """The content-addressed description of one model; `model_id()` is what the registry stores."""

    name: str
    task: str
    architecture: dict[str, Any] = field(hash=False)  # a dict cannot be hashed; the other fields suffice
    weights_file: str
    weights_root: str  # 0x + 64 lowercase hex: `veriml.models.weights.weights_root` of weights_file
    runtime: str  # "<runtime>/<version>"; a runtime refuses manifests written for another
    policy: Policy
    policy_threshold: int
    price_wei: int  # per node per job
    max_prompt_bytes: int = 512
    max_new_tokens: int = 128
    default_new_tokens: int = 48  # used when a job names no length; part of the id because it moves outputs

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(f"manifest name must match {_NAME.pattern}, got {self.name!r}")
        if self.task not in TASKS:
            raise ConfigError(f"manifest task must be one of {', '.join(TASKS)}; got {self.task!r}")
        if not isinstance(self.architecture, dict):
            raise ConfigError("manifest architecture must be a JSON object")
        _check_json(self.architecture, "architecture")
        wf = self.weights_file
        if not isinstance(wf, str) or not wf or "/" in wf or "\\" in wf or wf in (".", ".."):
            raise ConfigError(f"manifest weights_file must be a bare file name next to the manifest, got {wf!r}")
        if not isinstance(self.weights_root, str) or not _ROOT.match(self.weights_root):
            raise ConfigError(f"manifest weights_root must be 0x + 64 lowercase hex, got {self.weights_root!r}")
        if not isinstance(self.runtime, str) or not _RUNTIME.match(self.runtime):
            raise ConfigError(f"manifest runtime must look like 'name/version', got {self.runtime!r}")
        if self.policy not in POLICIES:
            raise ConfigError(f"manifest policy must be one of {', '.join(POLICIES)}; got {self.policy!r}")
        _check_int(self.policy_threshold, "policy_threshold", 0)
        _check_int(self.price_wei, "price_wei", 0, 2**256 - 1)
        _check_int(self.max_prompt_bytes, "max_prompt_bytes", 1)
        _check_int(self.max_new_tokens, "max_new_tokens", 1)
        _check_int(self.default_new_tokens, "default_new_tokens", 1, self.max_new_tokens)
        # Keep a private deep copy, so editing the caller's dict later cannot change this manifest's id.
        object.__setattr__(self, "architecture", json.loads(json.dumps(self.architecture)))

    def to_dict(self) -> dict[str, Any]:
        """The manifest as plain JSON-ready data (a deep copy)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        """Build and validate a manifest from parsed JSON; unknown or missing keys are errors."""
        if not isinstance(d, dict):
            raise ConfigError("manifest must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"manifest has unknown keys: {', '.join(unknown)}")
        missing = sorted(f.name for f in fields(cls) if f.default is MISSING and f.name not in d)
        if missing:
            raise ConfigError(f"manifest is missing keys: {', '.join(missing)}")
        return cls(**d)

    def canonical_json(self) -> bytes:
        """Sorted keys, no whitespace, UTF-8: the exact bytes `model_id` hashes."""
        return json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode("utf-8")

    def model_id(self) -> ModelId:
        """keccak256 of `canonical_json()`, as registered on-chain."""
        return ModelId(keccak(self.canonical_json()))

    @property
    def weights_root_bytes(self) -> bytes:
        """`weights_root` as 32 raw bytes."""
        return bytes.fromhex(self.weights_root[2:])

    @classmethod
    def load(cls, path: str | PathLike[str]) -> Manifest:
        """Read and validate a manifest.json."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read manifest {path}: {e}") from e
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"manifest {path} is not valid JSON: {e}") from e
        try:
            return cls.from_dict(data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def save(self, path: str | PathLike[str]) -> None:
        """Write the manifest as indented, key-sorted JSON (the id does not depend on the layout)."""
        text = json.dumps(self.to_dict(), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
        Path(path).write_text(text + "\n", encoding="utf-8")
