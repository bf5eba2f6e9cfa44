"""The torch side of fingerprints: capture final-norm hidden states while generating, and validate by one prefill.

The hidden state fingerprinted for output token i is the one its logits came from: position P-1+i of the
prompt + output sequence (P = prompt length). A generator gets them from a forward hook on the model's final
norm (one forward per token: the prefill, then one per decoded token); a validator gets all of them from one
forward over prompt + output[:-1]. The last output token shapes no hidden state, so a greedy job's claimed
tokens are also checked against the validator's own argmax at each position (that is what catches an edit of
the final token). The fingerprint math lives in `veriml.verify.fingerprint`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from veriml.errors import InvalidPrompt
from veriml.models.runtime import TextOutput, pinned
from veriml.verify.fingerprint import ChunkCheck, Thresholds, check, fingerprint


def final_norm(model: Any) -> torch.nn.Module:
    """The final normalisation layer of a Llama-style causal LM (`model.model.norm`)."""
    norm = getattr(getattr(model, "model", None), "norm", None)
    if not isinstance(norm, torch.nn.Module):
        raise ValueError(f"{type(model).__name__} has no final norm at .model.norm to fingerprint")
    return norm


@contextmanager
def last_positions(model: Any) -> Iterator[list[np.ndarray]]:
    """Collect, for each forward while the block runs, the final norm's output at the last position."""
    rows: list[np.ndarray] = []

    def hook(_module: Any, _args: Any, out: torch.Tensor) -> None:
        rows.append(out[0, -1].float().numpy().copy())

    handle = final_norm(model).register_forward_hook(hook)
    try:
        yield rows
    finally:
        handle.remove()


@dataclass(frozen=True)
class FingerprintedOutput:
    """A generation with its fingerprint (and the hidden states it was made from, for studies)."""

    output: TextOutput
    fingerprint: bytes
    hidden: np.ndarray


def generate(chat: Any, ids: list[int], n: int, seed: int | None = None, use_cache: bool = True) -> FingerprintedOutput:
    """Generate with `chat` (a `ChatModel`) and fingerprint the decode hidden states."""
    with last_positions(chat.model) as rows:
        out = chat.generate(ids, n, seed, use_cache=use_cache)
    hidden = np.stack(rows[: len(out.tokens)])
    return FingerprintedOutput(out, fingerprint(hidden), hidden)


def prefill_states(model: Any, ids: list[int], tokens: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """One forward over prompt + output[:-1]: the final-norm states and argmax ids at the output's positions."""
    if not ids or not tokens:
        raise InvalidPrompt("a fingerprint check needs a non-empty prompt and output")
    seq = list(ids) + list(tokens[:-1])
    captured: list[torch.Tensor] = []
    handle = final_norm(model).register_forward_hook(lambda _m, _a, out: captured.append(out[0]))
    try:
        with pinned():
            logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0]
    finally:
        handle.remove()
    p = len(ids)
    hidden = captured[0][p - 1 :].float().numpy()
    return hidden, logits[p - 1 :].argmax(-1).numpy()


@dataclass(frozen=True)
class Validation:
    """A validator's verdict and what it rests on."""

    accepted: bool
    fingerprint_ok: bool
    tokens_ok: bool
    chunks: tuple[ChunkCheck, ...]


def validate(
    model: Any,
    ids: list[int],
    tokens: list[int],
    fp: bytes,
    greedy: bool = True,
    thresholds: Thresholds = Thresholds(),
) -> Validation:
    """Check a claimed output + fingerprint with one prefill; a greedy job's tokens must also be the argmax."""
    hidden, argmax = prefill_states(model, ids, tokens)
    try:
        fp_ok, chunks = check(fp, hidden, thresholds)
    except ValueError:
        fp_ok, chunks = False, []  # malformed fingerprint bytes from an untrusted generator are a rejection
    tokens_ok = (not greedy) or bool(np.array_equal(argmax, np.asarray(tokens)))
    return Validation(fp_ok and tokens_ok, fp_ok, tokens_ok, tuple(chunks))
