"""Hugging Face causal language models, loaded from a local directory only and run like `TextModel`.

Nodes must run exactly the weights a manifest names, so nothing here resolves a hub name or downloads:
fetch a checkpoint yourself (e.g. `hf download <repo> --local-dir DIR`) and pass DIR.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import torch

from veriml.errors import ConfigError, InvalidPrompt
from veriml.models.runtime import TextOutput, check_new_tokens, check_prompt, check_seed, pinned

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


class HFTextModel:
    """A local Hugging Face causal LM (and its tokenizer, if the checkpoint has one)."""

    def __init__(self, model: Any, tokenizer: Any | None, directory: Path) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.directory = directory
        cfg = model.config
        self.context: int | None = getattr(cfg, "max_position_embeddings", None) or getattr(cfg, "n_positions", None)

    def __repr__(self) -> str:
        return f"HFTextModel({str(self.directory)!r}, {type(self.model).__name__})"

    def _encode(self, prompt: bytes) -> list[int]:
        if self.tokenizer is None:
            return list(prompt)  # byte-level checkpoint: bytes are token ids
        try:
            text = prompt.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidPrompt(f"prompt is not valid UTF-8: {e}") from e
        ids = list(self.tokenizer.encode(text))
        if not ids:
            raise InvalidPrompt("prompt encodes to no tokens")
        return ids

    def _decode(self, tokens: list[int]) -> bytes:
        if self.tokenizer is None:
            return bytes(tokens)
        return self.tokenizer.decode(tokens).encode("utf-8")

    def run(self, prompt: bytes, max_new_tokens: int, seed: int | None = None) -> TextOutput:
        """Continue `prompt`: greedy when `seed` is None, else sampling seeded by `seed`; stops at EOS."""
        ids = self._encode(check_prompt(prompt, None))
        n = check_new_tokens(max_new_tokens, self.context or 2**31)
        if self.context is not None and len(ids) + n > self.context:
            raise InvalidPrompt(f"prompt of {len(ids)} tokens + {n} new exceeds the context of {self.context}")
        seed = check_seed(seed)
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        eos = getattr(self.model.config, "eos_token_id", None)
        eos_ids = set(eos) if isinstance(eos, list) else {eos}
        out = decode_tokens(self.model, ids, n, gen, eos_ids)
        return TextOutput(tokens=tuple(out), text=self._decode(out))


def decode_tokens(
    model: Any, ids: list[int], n: int, gen: torch.Generator | None, eos_ids: set[int], use_cache: bool = True
) -> list[int]:
    """Up to `n` token ids after `ids` from a Hugging Face causal LM, greedy when `gen` is None (else sampled
    with it), stopping after an id in `eos_ids`; pinned to one thread. Without the KV cache every step
    re-runs the whole sequence (an honest variation the agreement study measures)."""
    out: list[int] = []
    with pinned():
        res = model(input_ids=torch.tensor([ids]), use_cache=use_cache)
        while True:
            logits = res.logits[0, -1].float()
            if gen is None:
                nxt = int(torch.argmax(logits))
            else:
                nxt = int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=gen))
            out.append(nxt)
            if len(out) == n or nxt in eos_ids:
                return out
            if use_cache:
                res = model(input_ids=torch.tensor([[nxt]]), past_key_values=res.past_key_values, use_cache=True)
            else:
                res = model(input_ids=torch.tensor([ids + out]), use_cache=False)


def load_hf_causal_lm(local_dir: str | PathLike[str]) -> HFTextModel:
    """Load a causal LM checkpoint from `local_dir`; never contacts the hub."""
    d = Path(local_dir)
    if not d.is_dir():
        raise ConfigError(
            f"{str(local_dir)!r} is not an existing directory; veriml loads Hugging Face models from a local "
            "checkpoint directory only and never downloads (download it yourself and pass its path)"
        )
    if not (d / "config.json").is_file():
        raise ConfigError(f"{d} is not a Hugging Face checkpoint: it has no config.json")
    # Imported here: transformers takes seconds to import and most of veriml never needs it.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True)
    except (OSError, ValueError, KeyError) as e:
        raise ConfigError(f"cannot load a causal LM from {d}: {e}") from e
    tokenizer = None
    if any((d / f).is_file() for f in _TOKENIZER_FILES):
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"cannot load the tokenizer in {d}: {e}") from e
    elif model.config.vocab_size != 256:
        raise ConfigError(
            f"{d} has no tokenizer and a vocabulary of {model.config.vocab_size}; "
            "only byte-level checkpoints (vocab_size 256) can run without one"
        )
    model.eval().requires_grad_(False)
    return HFTextModel(model, tokenizer, d)
