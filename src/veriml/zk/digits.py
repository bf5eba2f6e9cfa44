"""The provable classifier: an MLP over scikit-learn's 8x8 handwritten digits, from data to ONNX.

A digit image is 64 pixel intensities, integers 0..16. The network sees pixel / 16, a value in [0, 1]
that is exact in fixed point at any input scale >= 4, so the field elements a client posts with a job
are exactly what the circuit computes on (pixel << (scale - 4)). torch is imported lazily: reading the
data and encoding inputs need only NumPy and scikit-learn.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from veriml.zk.field import quantize

if TYPE_CHECKING:  # pragma: no cover
    import torch

N_PIXELS = 64
N_CLASSES = 10
PIXEL_MAX = 16
SPLIT_SEED = 0
TEST_FRACTION = 0.25
ONNX_OPSET = 18  # tract, inside EZKL, is tested up to opset 18


@dataclass(frozen=True)
class DigitsSplit:
    """The fixed train/test split every script and test uses (stratified, seed 0)."""

    x_train: np.ndarray  # (n, 64) int pixels 0..16
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_split() -> DigitsSplit:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y)
    return DigitsSplit(xtr, ytr, xte, yte)


def check_pixels(pixels: Sequence[int]) -> list[int]:
    """64 integers in 0..16, or ValueError."""
    px = [int(p) for p in pixels]
    if len(px) != N_PIXELS or any(p != q for p, q in zip(px, pixels, strict=True)):
        raise ValueError(f"a digit is {N_PIXELS} integer pixels")
    if any(not 0 <= p <= PIXEL_MAX for p in px):
        raise ValueError(f"pixels must be in 0..{PIXEL_MAX}")
    return px


def pixels_to_floats(pixels: Sequence[int]) -> list[float]:
    """What the network takes: pixel / 16."""
    return [p / PIXEL_MAX for p in check_pixels(pixels)]


def encode_input(pixels: Sequence[int], input_scale: int) -> list[int]:
    """The job's input instances: pixel / 16 in fixed point at the circuit's input scale."""
    from fractions import Fraction

    return quantize([Fraction(p, PIXEL_MAX) for p in check_pixels(pixels)], input_scale)


def input_max(input_scale: int) -> int:
    """The largest input instance a valid digit produces (pixel 16): the bound `ZkJobs` enforces."""
    return encode_input([PIXEL_MAX] * N_PIXELS, input_scale)[0]


def render(pixels: Sequence[int]) -> list[str]:
    """The digit as 8 lines of shaded blocks, for terminals."""
    shades = " .:-=+*#%@"
    px = check_pixels(pixels)
    return ["".join(shades[min(9, p * 10 // 17)] * 2 for p in px[r * 8 : r * 8 + 8]) for r in range(8)]


# ---- the network (torch) ----


def build_mlp(hidden: Sequence[int]) -> torch.nn.Module:
    """64 -> hidden... -> 10 with ReLU between layers."""
    import torch

    layers: list[torch.nn.Module] = []
    width = N_PIXELS
    for h in hidden:
        layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
        width = h
    layers.append(torch.nn.Linear(width, N_CLASSES))
    return torch.nn.Sequential(*layers)


def train_mlp(
    hidden: Sequence[int], split: DigitsSplit, epochs: int = 400, lr: float = 1e-2, seed: int = 0
) -> torch.nn.Module:
    """Full-batch Adam on the training split; deterministic for a seed on one CPU thread."""
    import torch

    torch.manual_seed(seed)
    model = build_mlp(hidden)
    x = torch.tensor(split.x_train / PIXEL_MAX, dtype=torch.float32)
    y = torch.tensor(split.y_train)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    for _ in range(epochs):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return model.eval().requires_grad_(False)


def float_predictions(model: torch.nn.Module, pixels: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.tensor(pixels / PIXEL_MAX, dtype=torch.float32)).argmax(1).numpy()


def export_onnx(model: torch.nn.Module, path: Path) -> None:
    """ONNX with one input `input` (1, 64) and one output `logits` (1, 10), by torch's TorchScript exporter.

    torch 2.13's default (dynamo) exporter needs onnxscript, which is not installed; the TorchScript one
    works offline and yields a plain Gemm/Relu graph."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(
            model,
            (torch.zeros(1, N_PIXELS),),
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            input_names=["input"],
            output_names=["logits"],
        )


def onnx_logits(onnx_path: Path, pixels: Sequence[int]) -> list[float]:
    """Plain float inference with onnxruntime on one digit (no circuit)."""
    sess = onnx_session(onnx_path)
    x = np.asarray([pixels_to_floats(pixels)], dtype=np.float32)
    return [float(v) for v in sess.run(None, {"input": x})[0][0]]


_SESSIONS: dict[str, Any] = {}


def onnx_session(onnx_path: Path) -> Any:
    import onnxruntime as ort

    key = str(Path(onnx_path).resolve())
    if key not in _SESSIONS:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        _SESSIONS[key] = ort.InferenceSession(key, opts, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]
