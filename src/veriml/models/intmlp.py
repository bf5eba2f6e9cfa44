"""The integer reference runtime for the optimistic scheme: a quantized MLP that is bit-exact everywhere.

The truth of a job is the integer execution: int8 inputs, weights and activations, int32 accumulation, and
a fixed requantization `clamp((acc * M + 2^(s-1)) >> s, -128, 127)` with one integer multiplier `M` and
shift `s` per layer, then ReLU on hidden layers (`veriml.verify.trace.requantize`). Nothing here touches a
float, so every machine (and the chain, in `Int8Step.sol`) computes the same bytes. The float model it was
quantized from (`FloatMLP`) is kept for measuring what quantization costs in accuracy.

The shipped model (`zoo/int-mlp`, made by scripts/train_int_mlp.py) classifies scikit-learn's 8x8 digits:
its input is the 64 pixel values (0..16) as bytes, its output the 10 int8 logits, the class their first
argmax. Its weights file holds one U8 tensor per output neuron (`veriml.verify.trace.WeightRow`), so the
manifest's weights root, computed like any model's (`veriml.models.weights`), commits to every step's
weights and the chain can check them one row at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from os import PathLike
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from veriml.errors import ConfigError, UnknownModel
from veriml.models import zoo
from veriml.models.manifest import Manifest
from veriml.types import ModelId
from veriml.verify.merkle import MerkleTree
from veriml.verify.trace import Trace, WeightRow, row_book, run_trace

RUNTIME = "veriml-int-mlp/1"
ARCHITECTURE = "int-mlp"
FLOAT_WEIGHTS_FILE = "float.safetensors"
MULTIPLIER_BITS = 16  # requantization multipliers are chosen in [2^15, 2^16)


@dataclass(frozen=True)
class IntLayer:
    """One quantized layer: int8 weights [out, in], int32 bias [out], requantization and activation."""

    weights: np.ndarray
    bias: np.ndarray
    multiplier: int
    shift: int
    relu: bool

    def rows(self, layer: int, last: bool) -> list[WeightRow]:
        out = self.weights.shape[0]
        return [
            WeightRow(
                layer,
                j,
                out,
                last,
                self.relu,
                self.multiplier,
                self.shift,
                int(self.bias[j]),
                self.weights[j].astype(np.int8).tobytes(),
            )
            for j in range(out)
        ]


@dataclass(frozen=True)
class IntMLP:
    """A stack of `IntLayer`s; `forward` is the vectorized twin of stepping a `Trace`."""

    layers: tuple[IntLayer, ...]

    @property
    def sizes(self) -> list[int]:
        return [self.layers[0].weights.shape[1], *(layer.weights.shape[0] for layer in self.layers)]

    @cached_property
    def rows(self) -> tuple[WeightRow, ...]:
        """Every step's weights, in execution order."""
        n = len(self.layers)
        return tuple(r for i, layer in enumerate(self.layers) for r in layer.rows(i, i == n - 1))

    @cached_property
    def book(self) -> dict[tuple[int, int], WeightRow]:
        return row_book(self.rows)

    @cached_property
    def weights_tree(self) -> tuple[list[str], MerkleTree]:
        """Row tensor names in leaf order (sorted, as safetensors files are committed) and the tree."""
        rows = sorted(self.rows, key=lambda r: r.name)
        return [r.name for r in rows], MerkleTree.from_leaves([r.leaf for r in rows])

    @property
    def weights_root(self) -> bytes:
        return self.weights_tree[1].root

    def weights_proof(self, layer: int, row: int) -> list[bytes]:
        """Merkle proof of step `(layer, row)`'s weights against `weights_root`."""
        names, tree = self.weights_tree
        return tree.proof(names.index(f"row.{layer}.{row}"))

    @property
    def steps(self) -> int:
        return len(self.rows)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """int8 outputs for a batch of int8 inputs [B, in] (any integer dtype), all in int64 arithmetic."""
        h = np.asarray(x, dtype=np.int64)
        for layer in self.layers:
            acc = h @ layer.weights.astype(np.int64).T + layer.bias.astype(np.int64)
            rounding = 1 << (layer.shift - 1) if layer.shift > 0 else 0
            h = np.clip((acc * layer.multiplier + rounding) >> layer.shift, -128, 127)
            if layer.relu:
                h = np.maximum(h, 0)
        return h

    def run(self, data: bytes) -> bytes:
        """The output bytes for one input (empty when the input has the wrong length, as the trace says)."""
        if len(data) != self.sizes[0]:
            return b""
        return self.forward(np.frombuffer(data, dtype=np.int8)[None, :])[0].astype(np.int8).tobytes()

    def trace(self, data: bytes, length: int | None = None) -> Trace:
        return run_trace(data, self.book, length)

    # ---- files ----
    def save(self, path: str | PathLike[str]) -> None:
        """One U8 tensor per row: the form whose weights root the chain checks steps against."""
        save_file({r.name: np.frombuffer(r.raw(), dtype=np.uint8) for r in self.rows}, str(path))

    @classmethod
    def load(cls, path: str | PathLike[str]) -> IntMLP:
        try:
            tensors = load_file(str(path))
        except (OSError, SafetensorError) as e:
            raise ConfigError(f"cannot read integer weights {path}: {e}") from e
        try:
            return cls.from_rows([WeightRow.from_raw(name, t.tobytes()) for name, t in tensors.items()])
        except ValueError as e:
            raise ConfigError(f"{path}: {e}") from None

    @classmethod
    def from_rows(cls, rows: Sequence[WeightRow]) -> IntMLP:
        """Assemble layers from rows, checking they form a well-shaped stack."""
        by_layer: dict[int, list[WeightRow]] = {}
        for r in rows:
            by_layer.setdefault(r.layer, []).append(r)
        if sorted(by_layer) != list(range(len(by_layer))) or not by_layer:
            raise ValueError("layers must be numbered 0..n-1")
        layers = []
        fan_in = None
        for i in range(len(by_layer)):
            lr = sorted(by_layer[i], key=lambda r: r.row)
            first = lr[0]
            if [r.row for r in lr] != list(range(first.rows)):
                raise ValueError(f"layer {i} must have rows 0..{first.rows - 1}")
            same = {(r.rows, r.last, r.relu, r.multiplier, r.shift, len(r.weights)) for r in lr}
            if len(same) != 1 or first.last != (i == len(by_layer) - 1):
                raise ValueError(f"layer {i}: rows disagree on the layer's shape or requantization")
            if fan_in is not None and len(first.weights) != fan_in:
                raise ValueError(f"layer {i} takes {len(first.weights)} inputs, the previous layer gives {fan_in}")
            fan_in = first.rows
            w = np.stack([np.frombuffer(r.weights, dtype=np.int8) for r in lr])
            b = np.array([r.bias for r in lr], dtype=np.int64)
            layers.append(IntLayer(w, b, first.multiplier, first.shift, first.relu))
        return cls(tuple(layers))

    @classmethod
    def random(cls, sizes: Sequence[int], seed: int = 0, shift: int = 12) -> IntMLP:
        """A synthetic model (for benchmarks and tests): random int8 weights, ReLU hidden layers."""
        rng = np.random.default_rng(seed)
        layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:], strict=False)):
            w = rng.integers(-128, 128, size=(n_out, n_in)).astype(np.int8)
            b = rng.integers(-(2**12), 2**12, size=n_out).astype(np.int64)
            mult = max(1, int(2 ** (shift + 7) / (128 * 32 * math.sqrt(n_in))))
            layers.append(IntLayer(w, b, mult, shift, i < len(sizes) - 2))
        return cls(tuple(layers))


def predict(output: bytes) -> int | None:
    """The class of an output: the index of its first largest logit (None for an empty output)."""
    if not output:
        return None
    return int(np.argmax(np.frombuffer(output, dtype=np.int8)))


# ---- the float model and its quantization ----
@dataclass(frozen=True)
class FloatMLP:
    """The float model the integer one was made from: Linear layers with ReLU between them, input pixels / 16."""

    weights: tuple[np.ndarray, ...]  # [out, in] float32
    biases: tuple[np.ndarray, ...]

    def forward(self, pixels: np.ndarray, upto: int | None = None) -> np.ndarray:
        """Logits (or the activations after layer `upto`) for pixel values 0..16, in float64."""
        h = np.asarray(pixels, dtype=np.float64) / 16.0
        n = len(self.weights) if upto is None else upto + 1
        for i in range(n):
            h = h @ self.weights[i].astype(np.float64).T + self.biases[i]
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h

    def save(self, path: str | PathLike[str]) -> None:
        tensors = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            tensors[f"fc{i}.weight"] = np.ascontiguousarray(w, dtype=np.float32)
            tensors[f"fc{i}.bias"] = np.ascontiguousarray(b, dtype=np.float32)
        save_file(tensors, str(path))

    @classmethod
    def load(cls, path: str | PathLike[str]) -> FloatMLP:
        t = load_file(str(path))
        n = len(t) // 2
        return cls(tuple(t[f"fc{i}.weight"] for i in range(n)), tuple(t[f"fc{i}.bias"] for i in range(n)))


def _multiplier(ratio: float) -> tuple[int, int]:
    """(M, s) with M / 2^s ~= ratio and M in [2^15, 2^16)."""
    shift = MULTIPLIER_BITS - 1 - math.floor(math.log2(ratio))
    m = round(ratio * 2**shift)
    if m >= 2**MULTIPLIER_BITS:
        m, shift = round(ratio * 2 ** (shift - 1)), shift - 1
    if not 1 <= shift <= 62:
        raise ValueError(f"requantization ratio {ratio} needs shift {shift}, outside 1..62")
    return m, shift


def quantize(model: FloatMLP, calibration: np.ndarray, percentile: float = 99.99) -> IntMLP:
    """Post-training quantization: symmetric per-layer int8 weights (scale max|W|/127), activation scales
    from the `percentile` of each layer's float outputs on `calibration` pixels, int32 biases, and one
    (multiplier, shift) per layer for the accumulator -> int8 rescaling."""
    s_in = 1.0 / 16.0  # input bytes are the raw pixels, which the float model sees divided by 16
    layers = []
    n = len(model.weights)
    for i in range(n):
        w = model.weights[i].astype(np.float64)
        s_w = float(np.abs(w).max()) / 127.0
        wq = np.clip(np.round(w / s_w), -127, 127).astype(np.int8)
        bq = np.round(model.biases[i].astype(np.float64) / (s_in * s_w)).astype(np.int64)
        out = model.forward(calibration, upto=i)
        s_out = float(np.percentile(np.abs(out), percentile)) / 127.0
        m, shift = _multiplier(s_in * s_w / s_out)
        layers.append(IntLayer(wq, bq, m, shift, i < n - 1))
        s_in = s_out
    return IntMLP(tuple(layers))


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as (x_train, x_test, y_train, y_test): pixels 0..16, a stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = d.data.astype(np.int64)
    return train_test_split(x, d.target.astype(np.int64), test_size=0.2, random_state=seed, stratify=d.target)


def encode_pixels(pixels: Sequence[int] | np.ndarray) -> bytes:
    """A digit image as the job input: its 64 pixel values (0..16) as bytes, row-major."""
    values = [int(v) for v in np.asarray(pixels).reshape(-1)]
    if len(values) != 64 or any(not 0 <= v <= 16 for v in values):
        raise ValueError("a digit is 64 pixel values in 0..16")
    return bytes(values)


# ---- the shipped model ----
@dataclass(frozen=True)
class IntModel:
    """A loaded integer model and its manifest; the weights are checked against the manifest's root."""

    manifest: Manifest
    mlp: IntMLP
    directory: Path

    @property
    def model_id(self) -> ModelId:
        return self.manifest.model_id()

    @classmethod
    def load(cls, name_or_dir: str | PathLike[str] = "int-mlp") -> IntModel:
        if isinstance(name_or_dir, str) and name_or_dir in zoo.list_models():
            d = zoo.model_dir(name_or_dir)
        else:
            d = Path(name_or_dir)
            if not (d / zoo.MANIFEST_FILE).is_file():
                raise UnknownModel(f"no integer model at {name_or_dir!r}")
        m = Manifest.load(d / zoo.MANIFEST_FILE)
        if m.runtime != RUNTIME or m.architecture.get("type") != ARCHITECTURE:
            raise ConfigError(f"{d}: runtime {m.runtime} / {m.architecture.get('type')} is not {RUNTIME}")
        mlp = IntMLP.load(d / m.weights_file)
        if mlp.weights_root != m.weights_root_bytes:
            raise ConfigError(f"{d}: weights do not match the manifest's weights root")
        if mlp.sizes != m.architecture.get("sizes"):
            raise ConfigError(f"{d}: weights have sizes {mlp.sizes}, the manifest says {m.architecture.get('sizes')}")
        return cls(m, mlp, d)

    def float_model(self) -> FloatMLP:
        return FloatMLP.load(self.directory / FLOAT_WEIGHTS_FILE)
