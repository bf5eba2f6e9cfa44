"""The deterministic runner nodes use: load a shipped (or local) TinyGPT, check its weights, run prompts.

Every node that runs the same job must produce the same token ids, so a run is pinned: no autograd, one
intra-op thread (see `pinned`), a local RNG for sampling, and the weights checked against the manifest's
Merkle root before the first run.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from veriml.errors import ConfigError, InvalidPrompt
from veriml.models import zoo
from veriml.models.manifest import Manifest
from veriml.models.tiny_gpt import GPTConfig, TinyGPT, generate
from veriml.models.weights import state_dict_root
from veriml.types import ModelId

RUNTIME = "veriml-torch-cpu/1"
ARCHITECTURE = "tiny-gpt"
MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed's range; nodes reduce wider on-chain seeds first

# Thread settings are process-wide, so runs that pin them must not interleave (the demo runs several
# in-process nodes on one shared model).
_RUN_LOCK = threading.RLock()


@dataclass(frozen=True)
class TextOutput:
    """What a text model produced: the new token ids and their bytes."""

    tokens: tuple[int, ...]
    text: bytes


@contextmanager
def pinned() -> Iterator[None]:
    """Run the body with one torch thread and no autograd, restoring the thread count afterwards."""
    # Why one thread: with several threads, MKL/oneDNN split the reductions inside matmul, softmax and
    # layer norm into per-thread partial sums whose number and order depend on the thread count; float
    # addition is not associative, so the last bits of the logits (and now and then an argmax) would depend
    # on how many cores a node has. One thread fixes the order. Nodes whose CPUs pick different kernels
    # (AVX2 vs AVX-512) can still differ in the last bits: the `tokens` policy compares ids, not logits.
    with _RUN_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                yield
        finally:
            torch.set_num_threads(before)


def check_prompt(prompt: bytes, max_bytes: int | None) -> bytes:
    """The prompt as bytes, or `InvalidPrompt` saying what is wrong with it."""
    if isinstance(prompt, str):
        raise InvalidPrompt("prompt must be bytes, not str; encode text as UTF-8 first")
    if not isinstance(prompt, (bytes, bytearray, memoryview)):
        raise InvalidPrompt(f"prompt must be bytes, got {type(prompt).__name__}")
    data = bytes(prompt)
    if not data:
        raise InvalidPrompt("prompt is empty")
    if max_bytes is not None and len(data) > max_bytes:
        raise InvalidPrompt(f"prompt is {len(data)} bytes; this model accepts at most {max_bytes}")
    return data


def check_new_tokens(n: int, limit: int) -> int:
    """`n` if it is an integer in 1..limit, else `InvalidPrompt`."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise InvalidPrompt(f"max_new_tokens must be an integer, got {n!r}")
    if not 1 <= n <= limit:
        raise InvalidPrompt(f"max_new_tokens must be in 1..{limit}, got {n}")
    return n


def check_seed(seed: int | None) -> int | None:
    """`seed` if it is None or an integer in 0..MAX_SEED, else `InvalidPrompt`."""
    if seed is None:
        return None
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise InvalidPrompt(f"seed must be an integer in 0..2**64-1, got {seed!r}")
    return seed


class TextModel:
    """A verified, loaded TinyGPT and its manifest; `run` is deterministic for a given prompt and seed."""

    def __init__(self, manifest: Manifest, model: TinyGPT, directory: Path) -> None:
        self.manifest = manifest
        self.model = model
        self.directory = directory
        self.model_id: ModelId = manifest.model_id()

    def __repr__(self) -> str:
        return f"TextModel({self.manifest.name!r}, id=0x{self.model_id.hex()[:12]}..)"

    @classmethod
    def load(cls, name_or_dir: str | PathLike[str]) -> TextModel:
        """Load a shipped model by name, or a model directory by path; cached per directory per process."""
        return _load_dir(str(zoo.resolve_dir(name_or_dir).resolve()))

    def run(self, prompt: bytes, max_new_tokens: int | None = None, seed: int | None = None) -> TextOutput:
        """Continue `prompt`: greedy when `seed` is None, else sampling seeded by `seed`."""
        m = self.manifest
        data = check_prompt(prompt, m.max_prompt_bytes)
        n = check_new_tokens(m.default_new_tokens if max_new_tokens is None else max_new_tokens, m.max_new_tokens)
        seed = check_seed(seed)
        with pinned():
            tokens = tuple(generate(self.model, data, n, seed=seed))
        return TextOutput(tokens=tokens, text=bytes(tokens))


# Keyed by resolved directory: the demo's in-process nodes share one model instead of loading it five
# times. A file edited after loading is not seen until the process restarts (or cache_clear()).
@functools.lru_cache(maxsize=16)
def _load_dir(directory: str) -> TextModel:
    d = Path(directory)
    m = Manifest.load(d / zoo.MANIFEST_FILE)
    if m.runtime != RUNTIME:
        raise ConfigError(f"{d}: manifest runtime is {m.runtime!r}; this runtime is {RUNTIME!r}")
    if m.task != "text-generation":
        raise ConfigError(f"{d}: manifest task is {m.task!r}; TextModel runs text-generation")
    arch = dict(m.architecture)
    if arch.pop("type", None) != ARCHITECTURE:
        raise ConfigError(f"{d}: architecture type must be {ARCHITECTURE!r}, got {m.architecture.get('type')!r}")
    try:
        cfg = GPTConfig(**arch)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{d}: bad tiny-gpt architecture {m.architecture}: {e}") from e
    wpath = d / m.weights_file
    try:
        tensors = load_file(str(wpath))
    except (OSError, SafetensorError) as e:
        raise ConfigError(f"cannot read weights file {wpath}: {e}") from e
    # Hash the very tensors we load (not a second read of the file), so what runs is what was checked.
    root = state_dict_root(tensors)
    if root != m.weights_root_bytes:
        raise ConfigError(f"{wpath}: weights root 0x{root.hex()} does not match the manifest's {m.weights_root}")
    # Built on the meta device: no throwaway random init, and the global RNG is left untouched.
    with torch.device("meta"):
        model = TinyGPT(cfg)
    try:
        model.load_state_dict(tensors, strict=True, assign=True)
    except RuntimeError as e:
        raise ConfigError(f"{wpath}: weights do not fit the manifest's architecture: {e}") from e
    model.eval().requires_grad_(False)
    return TextModel(m, model, d)
