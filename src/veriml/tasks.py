"""What a job *is*, per model task: how a node turns (input, params) into an output document, and how a
client reads that document back.

Every task's output document has `encode() -> bytes` (what nodes publish) and `digest() -> Digest`
(what the policy compares on-chain). A job whose parameters or input are bad gets an error document,
the same on every honest node, so the quorum agrees on the refusal instead of failing to commit.
"""

from __future__ import annotations

from typing import Protocol

from veriml.errors import InvalidPrompt, UnknownModel
from veriml.jobspec import ImageParams, ImageResult, TextParams, TextResult
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


def execute(runner: Runner, data: bytes, params: bytes) -> Output:
    """Run one job on `runner`; bad params or input become an error document, never an exception."""
    task = task_of(runner)
    if task == "text-generation":
        try:
            p = TextParams.decode(params)
        except InvalidPrompt as e:
            return TextResult(error=f"invalid params: {e}")
        try:
            out = runner.run(data, p.max_new_tokens, p.seed)  # type: ignore[attr-defined]
        except InvalidPrompt as e:
            return TextResult(error=f"invalid input: {e}")
        return TextResult(tokens=out.tokens)
    if task == "image-generation":
        kind = hash_kind(runner.manifest)
        try:
            q = ImageParams.decode(params)
        except InvalidPrompt as e:
            return ImageResult(error=f"invalid params: {e}", hash_kind=kind)
        try:
            img = runner.run(data, q.seed)  # type: ignore[attr-defined]
        except InvalidPrompt as e:
            return ImageResult(error=f"invalid input: {e}", hash_kind=kind)
        return ImageResult(png=img.png, hash_kind=kind)
    raise UnknownModel(f"no runner for task {task!r}")


def hash_kind(manifest: object) -> str:
    """The perceptual hash an image model's `phash` digests carry (its manifest's architecture says)."""
    return getattr(manifest, "architecture", {}).get("digest_hash", DEFAULT_HASH)


def unavailable(task: str) -> Output:
    """The agreed answer when a job's input cannot be fetched from the store it names."""
    if task == "text-generation":
        return TextResult(error="input unavailable")
    if task == "image-generation":
        return ImageResult(error="input unavailable")
    raise UnknownModel(f"no output format for task {task!r}")


def decode(task: str, data: bytes, manifest: object | None = None) -> Output:
    """Parse a published output document of `task` (`manifest` fixes an image model's hash)."""
    if task == "text-generation":
        return TextResult.decode(data)
    if task == "image-generation":
        return ImageResult.decode(data, hash_kind(manifest))
    raise UnknownModel(f"no output format for task {task!r}")
