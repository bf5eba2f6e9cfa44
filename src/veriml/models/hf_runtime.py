"""Runners for imported Hugging Face models: `ChatModel` (chat jobs) and `EmbeddingModel` (embeddings jobs).

Both load the converted weights from the cache (`hf_import.ensure_converted`), check them against the
manifest's weights root before the first run, and run pinned (one thread, no autograd; `runtime.pinned`),
so that honest nodes on the same kind of CPU produce identical token ids or floats.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch

from veriml.errors import ConfigError, InvalidPrompt
from veriml.jobspec import check_chat_messages, check_embedding_texts
from veriml.models import zoo
from veriml.models.hf import decode_tokens
from veriml.models.hf_import import HF_RUNTIME, ensure_converted
from veriml.models.manifest import Manifest
from veriml.models.runtime import TextOutput, check_new_tokens, check_seed, pinned
from veriml.types import ModelId


def _json_input(data: bytes, max_bytes: int) -> Any:
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidPrompt(f"input must be bytes, got {type(data).__name__}")
    if not data:
        raise InvalidPrompt("input is empty")
    if len(data) > max_bytes:
        raise InvalidPrompt(f"input is {len(data)} bytes; this model accepts at most {max_bytes}")
    try:
        return json.loads(bytes(data).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise InvalidPrompt(f"input is not UTF-8 JSON: {str(e)[:80]}") from None


def _check_manifest(m: Manifest, d: Path, task: str) -> None:
    if m.runtime != HF_RUNTIME:
        raise ConfigError(f"{d}: manifest runtime is {m.runtime!r}; this runtime is {HF_RUNTIME!r}")
    if m.task != task:
        raise ConfigError(f"{d}: manifest task is {m.task!r}, not {task!r}")


def _verified_dir(m: Manifest, d: Path, cache: Path | None) -> Path:
    from safetensors.torch import load_file

    from veriml.models.weights import state_dict_root

    out = ensure_converted(m, d, cache)
    root = state_dict_root(load_file(str(out / m.weights_file)))
    if root != m.weights_root_bytes:
        raise ConfigError(f"{out}: weights root 0x{root.hex()} does not match the manifest's {m.weights_root}")
    return out


class ChatModel:
    """A verified chat LLM: message list -> chat template -> greedy (or seeded) generation of token ids."""

    def __init__(self, manifest: Manifest, model: Any, tokenizer: Any, directory: Path) -> None:
        self.manifest = manifest
        self.model = model
        self.tokenizer = tokenizer
        self.directory = directory
        self.model_id: ModelId = manifest.model_id()
        self.context: int = int(getattr(model.config, "max_position_embeddings", 2048))
        eos = model.config.eos_token_id
        self.eos_ids = set(eos) if isinstance(eos, list) else {eos}

    def __repr__(self) -> str:
        return f"ChatModel({self.manifest.name!r}, id=0x{self.model_id.hex()[:12]}..)"

    @classmethod
    def load(cls, name_or_dir: str | PathLike[str], cache: Path | None = None) -> ChatModel:
        """Load a shipped or local chat model (cached per directory per process)."""
        return _load_chat(str(zoo.resolve_dir(name_or_dir).resolve()), cache)

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat-templated prompt's token ids (templated to text, then tokenized)."""
        # Why text first: with transformers 5.23, apply_chat_template(return_tensors="pt") returned no tensor.
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def run(self, data: bytes, max_new_tokens: int | None = None, seed: int | None = None) -> TextOutput:
        """Answer the chat in `data` (JSON message list): greedy when `seed` is None; stops at EOS."""
        m = self.manifest
        messages = check_chat_messages(_json_input(data, m.max_prompt_bytes))
        n = check_new_tokens(m.default_new_tokens if max_new_tokens is None else max_new_tokens, m.max_new_tokens)
        return self.generate(self.prompt_ids(messages), n, check_seed(seed))

    def generate(self, ids: list[int], n: int, seed: int | None = None, use_cache: bool = True) -> TextOutput:
        """Generate up to n tokens after `ids` (pinned; KV cache on unless `use_cache` is False)."""
        if len(ids) + n > self.context:
            raise InvalidPrompt(f"prompt of {len(ids)} tokens + {n} new exceeds the context of {self.context}")
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        out = decode_tokens(self.model, ids, n, gen, self.eos_ids, use_cache)
        return TextOutput(tokens=tuple(out), text=self.decode(out))

    def decode(self, tokens: list[int] | tuple[int, ...]) -> bytes:
        """The answer's text, special tokens (the closing <|im_end|>) left out."""
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True).encode("utf-8")


@dataclass(frozen=True)
class EmbeddingOutput:
    """Unit-length sentence embeddings, one row per input text (float32)."""

    vectors: np.ndarray


class EmbeddingModel:
    """A verified sentence-embedding encoder: texts -> mean-pooled, L2-normalized vectors."""

    def __init__(self, manifest: Manifest, model: Any, tokenizer: Any, directory: Path) -> None:
        self.manifest = manifest
        self.model = model
        self.tokenizer = tokenizer
        self.directory = directory
        self.model_id: ModelId = manifest.model_id()
        self.max_tokens = int(manifest.architecture.get("max_seq_length", 256))
        self.step = float(manifest.architecture["tolerance_step"])

    def __repr__(self) -> str:
        return f"EmbeddingModel({self.manifest.name!r}, id=0x{self.model_id.hex()[:12]}..)"

    @classmethod
    def load(cls, name_or_dir: str | PathLike[str], cache: Path | None = None) -> EmbeddingModel:
        """Load a shipped or local embedding model (cached per directory per process)."""
        return _load_embed(str(zoo.resolve_dir(name_or_dir).resolve()), cache)

    def run(self, data: bytes) -> EmbeddingOutput:
        """Embed the texts in `data` (a JSON list of strings), one at a time (no padding to vary the floats)."""
        return EmbeddingOutput(self.embed(check_embedding_texts(_json_input(data, self.manifest.max_prompt_bytes))))

    def embed(self, texts: list[str], batch: int = 1) -> np.ndarray:
        """(len(texts), dim) float32: mean over the attention mask, then L2-normalized (as sentence-transformers)."""
        rows = []
        with pinned():
            for i in range(0, len(texts), batch):
                enc = self.tokenizer(
                    texts[i : i + batch], padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt"
                )
                h = self.model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, p=2, dim=1).float())
        return torch.cat(rows).numpy()


def _load_pretrained(out: Path, causal: bool) -> tuple[Any, Any]:
    from transformers import AutoModel, AutoModelForCausalLM, AutoTokenizer

    auto = AutoModelForCausalLM if causal else AutoModel
    try:
        tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
        model = auto.from_pretrained(str(out), local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"cannot load the converted model in {out}: {str(e)[:300]}") from None
    return model.eval().requires_grad_(False), tok


@functools.lru_cache(maxsize=4)
def _load_chat(directory: str, cache: Path | None) -> ChatModel:
    d = Path(directory)
    m = Manifest.load(d / zoo.MANIFEST_FILE)
    _check_manifest(m, d, "chat")
    out = _verified_dir(m, d, cache)
    model, tok = _load_pretrained(out, causal=True)
    if tok.chat_template is None:
        raise ConfigError(f"{out}: the tokenizer has no chat template")
    return ChatModel(m, model, tok, out)


@functools.lru_cache(maxsize=4)
def _load_embed(directory: str, cache: Path | None) -> EmbeddingModel:
    d = Path(directory)
    m = Manifest.load(d / zoo.MANIFEST_FILE)
    _check_manifest(m, d, "embeddings")
    if "tolerance_step" not in m.architecture:
        raise ConfigError(f"{d}: an embeddings manifest needs architecture.tolerance_step")
    out = _verified_dir(m, d, cache)
    model, tok = _load_pretrained(out, causal=False)
    return EmbeddingModel(m, model, tok, out)
