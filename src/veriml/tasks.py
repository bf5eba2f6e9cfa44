"""What a job *is*, per model task: how a node turns (input, params) into an output document, and how a
client reads that document back.

Every task's output document has `encode() -> bytes` (what nodes publish) and `digest() -> Digest`
(what the policy compares on-chain). A job whose parameters or input are bad gets an error document,
the same on every honest node, so the quorum agrees on the refusal instead of failing to commit.
"""

from __future__ import annotations

import logging
from typing import Protocol

from veriml.errors import InvalidPrompt, UnknownModel
from veriml.jobspec import (
    ChatResult,
    EmbeddingsResult,
    ImageParams,
    ImageResult,
    TextParams,
    TextResult,
    bounded,
    check_embeddings_params,
)
from veriml.types import Digest
from veriml.verify.phash import DEFAULT_HASH


class Output(Protocol):
    """An output document."""

    error: str | None

    def encode(self) -> bytes: ...

    def digest(self) -> Digest: ...


class Runner(Protocol):
    """A loaded model: its manifest says which task it serves."""

    manifest: object


def task_of(runner: Runner) -> str:
    return runner.manifest.task  # type: ignore[attr-defined]


log = logging.getLogger(__name__)


def execute(runner: Runner, data: bytes, params: bytes) -> Output:
    """Run one job on `runner`; bad params or input become an error document, never an exception.

    A node must never die of a job: anything a job's bytes provoke (our bug or a library's) becomes a
    bounded error document naming only the exception's type, which honest nodes running the same code
    agree on; the message, which may quote user bytes or differ between machines, only goes to the log.
    """
    task = task_of(runner)
    try:
        out = _execute(runner, task, data, params)
        out.encode()  # an output that cannot be encoded must fail here, inside the guard
        return out
    except UnknownModel:
        raise  # a node serving a model of no known task is misconfigured, not a bad job
    except InvalidPrompt as e:
        return error_document(runner, task, f"invalid input: {e}")
    except Exception as e:  # noqa: BLE001 (the whole point: nothing a job does may kill the node)
        log.warning("job failed inside %s: %s: %s", task, type(e).__name__, str(e)[:500])
        return error_document(runner, task, f"job failed: {type(e).__name__}")


def error_document(runner: Runner, task: str, message: str) -> Output:
    """The bounded error document of `task`."""
    msg = bounded(message)
    if task == "image-generation":
        return ImageResult(error=msg, hash_kind=hash_kind(runner.manifest))
    if task == "chat":
        return ChatResult(error=msg)
    if task == "embeddings":
        return EmbeddingsResult(error=msg)
    return TextResult(error=msg)


def _execute(runner: Runner, task: str, data: bytes, params: bytes) -> Output:
    if task == "text-generation":
        try:
            p = TextParams.decode(params)
        except InvalidPrompt as e:
            return TextResult(error=bounded(f"invalid params: {e}"))
        try:
            out = runner.run(data, p.max_new_tokens, p.seed)  # type: ignore[attr-defined]
        except InvalidPrompt as e:
            return TextResult(error=bounded(f"invalid input: {e}"))
        return TextResult(tokens=out.tokens)
    if task == "image-generation":
        kind = hash_kind(runner.manifest)
        try:
            q = ImageParams.decode(params)
        except InvalidPrompt as e:
            return ImageResult(error=bounded(f"invalid params: {e}"), hash_kind=kind)
        try:
            img = runner.run(data, q.seed)  # type: ignore[attr-defined]
        except InvalidPrompt as e:
            return ImageResult(error=bounded(f"invalid input: {e}"), hash_kind=kind)
        return ImageResult(png=img.png, hash_kind=kind)
    if task == "chat":
        try:
            p = TextParams.decode(params)
        except InvalidPrompt as e:
            return ChatResult(error=bounded(f"invalid params: {e}"))
        out = runner.run(data, p.max_new_tokens, p.seed)  # type: ignore[attr-defined]
        return ChatResult(tokens=out.tokens, answer=out.text.decode("utf-8", "replace"))
    if task == "embeddings":
        try:
            check_embeddings_params(params)
        except InvalidPrompt as e:
            return EmbeddingsResult(error=bounded(f"invalid params: {e}"))
        emb = runner.run(data)  # type: ignore[attr-defined]
        return EmbeddingsResult.of(emb.vectors, runner.step)  # type: ignore[attr-defined]
    raise UnknownModel(f"no runner for task {task!r}")


def hash_kind(manifest: object) -> str:
    """The perceptual hash an image model's `phash` digests carry (its manifest's architecture says)."""
    return getattr(manifest, "architecture", {}).get("digest_hash", DEFAULT_HASH)


def tolerance_step(manifest: object) -> float:
    """The quantization step an embeddings model's `tolerance` digests use (its manifest's architecture)."""
    return float(getattr(manifest, "architecture", {}).get("tolerance_step", 1e-3))


def unavailable(task: str) -> Output:
    """The agreed answer when a job's input cannot be fetched from the store it names."""
    if task == "text-generation":
        return TextResult(error="input unavailable")
    if task == "image-generation":
        return ImageResult(error="input unavailable")
    if task == "chat":
        return ChatResult(error="input unavailable")
    if task == "embeddings":
        return EmbeddingsResult(error="input unavailable")
    raise UnknownModel(f"no output format for task {task!r}")


def decode(task: str, data: bytes, manifest: object | None = None) -> Output:
    """Parse a published output document of `task` (`manifest` fixes an image model's hash)."""
    if task == "text-generation":
        return TextResult.decode(data)
    if task == "image-generation":
        return ImageResult.decode(data, hash_kind(manifest))
    if task == "chat":
        return ChatResult.decode(data)
    if task == "embeddings":
        return EmbeddingsResult.decode(data, tolerance_step(manifest))
    raise UnknownModel(f"no output format for task {task!r}")
