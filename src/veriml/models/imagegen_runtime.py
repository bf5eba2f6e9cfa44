"""The runner for image-generation models: load a shipped `ShapeGenerator`, check its weights, draw images.

A node's reference run is pinned like the text runtime's (one thread, float32, PyTorch eager, one image
per forward pass). A `Variation` changes one of those knobs the way an honest operator might (more
threads, batching jobs, bfloat16 autocast, ONNX Runtime); the floats then move in their last bits or
more, and the `phash` policy is what lets such nodes still agree. `veriml.models.profile` measures how far.
"""

from __future__ import annotations

import copy
import functools
import io
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file

from veriml.errors import ConfigError, InvalidPrompt
from veriml.models import zoo
from veriml.models.imagegen import ImageGenConfig, ShapeGenerator, latent, to_uint8
from veriml.models.manifest import Manifest
from veriml.models.runtime import _RUN_LOCK  # thread settings are process-wide: share the text runtime's lock
from veriml.models.weights import state_dict_root
from veriml.types import ModelId
from veriml.verify.phash import DEFAULT_HASH, HASHES

RUNTIME = "veriml-imagegen-cpu/1"
ARCHITECTURE = "shape-field"
# A much narrower network trained on the same data: what a lazy node could run instead. Shipped next to
# the weights for the simulation (veriml.sim.faults.Cheat.CHEAP_MODEL); not part of the manifest.
CHEAP_FILE = "cheap.safetensors"
CHEAP = {"scene_width": 32, "field_width": 12, "fourier": 2}
DEFAULT_THRESHOLD = 4  # before profiling; `veriml.models.profile` writes the measured one


@dataclass(frozen=True)
class Variation:
    """How an honest node runs the model; `Variation()` is the pinned reference every knob is measured from."""

    threads: int = 1
    batch: int = 1
    dtype: Literal["float32", "bfloat16"] = "float32"
    backend: Literal["torch", "onnxruntime"] = "torch"

    def __post_init__(self) -> None:
        if self.threads < 1 or self.batch < 1:
            raise ValueError("threads and batch must be >= 1")
        if self.dtype not in ("float32", "bfloat16") or self.backend not in ("torch", "onnxruntime"):
            raise ValueError(f"unsupported variation {self}")
        if self.backend == "onnxruntime" and self.dtype != "float32":
            raise ValueError("ONNX Runtime runs the float32 graph only")

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.dtype}/threads={self.threads}/batch={self.batch}"


REFERENCE = Variation()
# The honest variations the profiler and the benchmark measure, each one knob away from the reference.
HONEST_VARIATIONS: dict[str, Variation] = {
    "threads 1 vs 2": Variation(threads=2),
    "batch 1 vs 8": Variation(batch=8),
    "float32 vs bfloat16 autocast": Variation(dtype="bfloat16"),
    "eager vs ONNX Runtime": Variation(backend="onnxruntime"),
}
# Those a threshold must absorb. This runtime computes in float32, so bfloat16 is measured but not admitted:
# it moves this model's pictures about as far as a cheaper model does (see docs/output-matching.md), and
# a threshold wide enough for it would let that cheat through.
ADMITTED: tuple[str, ...] = ("threads 1 vs 2", "batch 1 vs 8", "eager vs ONNX Runtime")


@dataclass(frozen=True)
class ImageOutput:
    """One generated image: its pixels (h, w, 3) uint8 and the PNG a node publishes."""

    pixels: np.ndarray = field(repr=False)
    png: bytes = field(repr=False)


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of (h, w, 3) uint8 pixels, with fixed settings so the same pixels give the same bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8), "RGB").save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the body with `n` torch threads and no autograd, restoring the thread count afterwards."""
    with _RUN_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.set_num_threads(before)


class ImageModel:
    """A verified, loaded image generator and its manifest; `run(label, seed)` is deterministic."""

    def __init__(self, manifest: Manifest, net: ShapeGenerator, directory: Path) -> None:
        self.manifest = manifest
        self.net = net
        self.config = net.config
        self.directory = directory
        self.model_id: ModelId = manifest.model_id()
        self.digest_hash: str = manifest.architecture.get("digest_hash", DEFAULT_HASH)
        self.variation = REFERENCE  # how `run` executes by default; see `with_variation`
        self._onnx: dict[int, object] = {}

    def __repr__(self) -> str:
        return f"ImageModel({self.manifest.name!r}, id=0x{self.model_id.hex()[:12]}.., {self.variation.label})"

    def with_variation(self, variation: Variation) -> ImageModel:
        """The same loaded model, run by default under another honest `variation` (shares weights and caches)."""
        other = copy.copy(self)
        other.variation = variation
        return other

    @classmethod
    def load(cls, name_or_dir: str | PathLike[str]) -> ImageModel:
        """Load a shipped model by name, or a model directory by path; cached per directory per process."""
        return _load_dir(str(zoo.resolve_dir(name_or_dir).resolve()))

    @property
    def classes(self) -> tuple[str, ...]:
        return self.config.classes

    def label_index(self, label: str | bytes | int) -> int:
        """The class index of a label (its name as text or UTF-8 bytes, or its index); InvalidPrompt if unknown."""
        if isinstance(label, int) and not isinstance(label, bool):
            if 0 <= label < len(self.classes):
                return label
        else:
            name = label.decode("utf-8", errors="replace") if isinstance(label, (bytes, bytearray)) else label
            if name in self.classes:
                return self.classes.index(name)
        raise InvalidPrompt(f"unknown class {label!r}; this model draws {', '.join(self.classes)}")

    def run(self, label: str | bytes | int, seed: int, variation: Variation | None = None) -> ImageOutput:
        """The image for (class, seed): PNG bytes and pixels."""
        if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= 2**64 - 1:
            raise InvalidPrompt(f"seed must be an integer in 0..2**64-1, got {seed!r}")
        v = variation or self.variation
        # A batching node computes this job alongside others: fill the batch with fixed neighbours.
        fill = list(range(1, v.batch))
        pixels = self.generate([self.label_index(label), *(0 for _ in fill)], [seed, *fill], v)[0]
        return ImageOutput(pixels, encode_png(pixels))

    def generate(
        self,
        labels: Sequence[int],
        seeds: Sequence[int],
        variation: Variation = REFERENCE,
        net: ShapeGenerator | None = None,
    ) -> np.ndarray:
        """Images for many (class index, seed) pairs, (n, h, w, 3) uint8, run `variation.batch` at a time."""
        if len(labels) != len(seeds):
            raise ValueError("labels and seeds must have the same length")
        z = torch.stack([latent(s, self.config) for s in seeds]) if seeds else torch.zeros(0, self.config.z_dim)
        y = torch.tensor(list(labels), dtype=torch.long)
        gen = net or self.net
        out = []
        with threads(variation.threads):
            for i in range(0, len(seeds), variation.batch):
                zb, yb = z[i : i + variation.batch], y[i : i + variation.batch]
                if variation.backend == "onnxruntime":
                    if net is not None:
                        raise ValueError("ONNX Runtime runs the shipped network only")
                    sess = self._session(variation.threads)
                    img = torch.from_numpy(sess.run(None, {"z": zb.numpy(), "labels": yb.numpy()})[0])  # type: ignore[attr-defined]
                elif variation.dtype == "bfloat16":
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        img = gen(zb, yb)
                else:
                    img = gen(zb, yb)
                out.append(to_uint8(img).numpy())
        n = self.config.image_size
        return np.concatenate(out) if out else np.zeros((0, n, n, 3), np.uint8)

    def cheap_net(self) -> ShapeGenerator:
        """The much narrower generator shipped next to the weights (what a lazy node runs instead)."""
        return _load_cheap(str(self.directory), self.config)

    def _session(self, n_threads: int) -> object:
        if n_threads not in self._onnx:
            self._onnx[n_threads] = onnx_session(self.net, n_threads)
        return self._onnx[n_threads]


def onnx_session(net: ShapeGenerator, n_threads: int) -> object:
    """An ONNX Runtime session over the network exported to ONNX (opset 17, dynamic batch)."""
    import onnxruntime as ort

    cfg = net.config
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's tracing notes are not ours to act on
        torch.onnx.export(
            net,
            (torch.zeros(1, cfg.z_dim), torch.zeros(1, dtype=torch.long)),
            buf,
            input_names=["z", "labels"],
            output_names=["image"],
            dynamic_axes={"z": {0: "batch"}, "labels": {0: "batch"}, "image": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = n_threads
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])


def config_of(m: Manifest, where: object) -> ImageGenConfig:
    arch = dict(m.architecture)
    if arch.pop("type", None) != ARCHITECTURE:
        raise ConfigError(f"{where}: architecture type must be {ARCHITECTURE!r}, got {m.architecture.get('type')!r}")
    if arch.pop("digest_hash", DEFAULT_HASH) not in HASHES:
        raise ConfigError(f"{where}: digest_hash must be one of {', '.join(HASHES)}")
    try:
        return ImageGenConfig(**arch)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where}: bad {ARCHITECTURE} architecture {m.architecture}: {e}") from e


def _build(cfg: ImageGenConfig, tensors: dict[str, torch.Tensor], where: object) -> ShapeGenerator:
    # Built on the meta device: no throwaway random init, and the global RNG is left untouched.
    with torch.device("meta"):
        model = ShapeGenerator(cfg)
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as e:
        raise ConfigError(f"{where}: weights do not fit the manifest's architecture: {e}") from e
    model.make_buffers()
    return model.eval().requires_grad_(False)


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (OSError, SafetensorError) as e:
        raise ConfigError(f"cannot read weights file {path}: {e}") from e


@functools.lru_cache(maxsize=16)
def _load_dir(directory: str) -> ImageModel:
    d = Path(directory)
    m = Manifest.load(d / zoo.MANIFEST_FILE)
    if m.runtime != RUNTIME:
        raise ConfigError(f"{d}: manifest runtime is {m.runtime!r}; this runtime is {RUNTIME!r}")
    if m.task != "image-generation":
        raise ConfigError(f"{d}: manifest task is {m.task!r}; ImageModel runs image-generation")
    cfg = config_of(m, d)
    wpath = d / m.weights_file
    tensors = _read(wpath)
    # Hash the very tensors we load (not a second read of the file), so what runs is what was checked.
    root = state_dict_root(tensors)
    if root != m.weights_root_bytes:
        raise ConfigError(f"{wpath}: weights root 0x{root.hex()} does not match the manifest's {m.weights_root}")
    return ImageModel(m, _build(cfg, tensors, wpath), d)


@functools.lru_cache(maxsize=4)
def _load_cheap(directory: str, cfg: ImageGenConfig) -> ShapeGenerator:
    path = Path(directory) / CHEAP_FILE
    return _build(ImageGenConfig(**{**cfg.__dict__, **CHEAP}), _read(path), path)
