"""Dishonest node behaviours, as data: a `Fault` picks which hook of `NodeDaemon` misbehaves.

- WRONG_OUTPUT: skips the model and commits a cheap made-up answer (the lazy or malicious worker). On an
  image job it plays its `Cheat` (OTHER_SEED unless told otherwise).
- NO_SHOW: is drawn but never commits (griefing, or simply offline).
- BAD_REVEAL: commits honestly, then reveals a digest that does not match its commitment.

A `Cheat` is how a lazy node fakes a picture (`cheat_pixels` draws it, for nodes and benchmarks alike):

- OTHER_SEED: a picture of the right class from another seed (a cache of stock pictures);
- OTHER_CLASS: the right seed, another class;
- CHEAP_MODEL: the right job on a much narrower network trained on the same data (`CHEAP_FILE`);
- NOISE / JPEG: the right picture with Gaussian noise, or re-encoded as a lossy JPEG;
- COPY: the output of another job (the node's previous picture, or a stock one).
"""

from __future__ import annotations

import io
from enum import Enum

import numpy as np
from PIL import Image

from veriml import tasks
from veriml.chain.contracts import JobView
from veriml.errors import BlobNotFound, InvalidPrompt, VerificationError
from veriml.jobspec import ImageParams, ImageResult, TextParams, TextResult
from veriml.node.daemon import NodeDaemon
from veriml.node.state import JobRecord
from veriml.types import BlobKey
from veriml.verify.digest import tokens_digest

NOISE_SIGMA = 8.0  # grey levels (of 255): visible grain, same picture
JPEG_QUALITY = 50


class Fault(Enum):
    HONEST = "honest"
    WRONG_OUTPUT = "wrong-output"
    NO_SHOW = "no-show"
    BAD_REVEAL = "bad-reveal"


class Cheat(Enum):
    OTHER_SEED = "other-seed"
    OTHER_CLASS = "other-class"
    CHEAP_MODEL = "cheap-model"
    NOISE = "noise"
    JPEG = "jpeg"
    COPY = "copy"


def cheat_pixels(
    model,  # noqa: ANN001 (an ImageModel; imported lazily so that this module does not need torch)
    label: int,
    seed: int,
    cheat: Cheat,
    copied: np.ndarray | None = None,
    strength: float | None = None,
) -> np.ndarray:
    """The (h, w, 3) uint8 picture a node playing `cheat` returns for job (label, seed).

    `copied` is the other job's picture for COPY (a stock picture, class 0 seed 0, if None); `strength`
    overrides NOISE's sigma (grey levels) or JPEG's quality.
    """
    if cheat is Cheat.OTHER_SEED:
        return model.generate([label], [(seed + 1) % 2**64])[0]
    if cheat is Cheat.OTHER_CLASS:
        return model.generate([(label + 1) % len(model.classes)], [seed])[0]
    if cheat is Cheat.CHEAP_MODEL:
        return model.generate([label], [seed], net=model.cheap_net())[0]
    if cheat is Cheat.COPY:
        return copied if copied is not None else model.generate([0], [0])[0]
    right = model.generate([label], [seed])[0]
    if cheat is Cheat.NOISE:
        sigma = NOISE_SIGMA if strength is None else strength
        noise = np.random.default_rng(seed).normal(0.0, sigma, right.shape)
        return np.clip(np.round(right + noise), 0, 255).astype(np.uint8)
    if cheat is Cheat.JPEG:
        buf = io.BytesIO()
        Image.fromarray(right).save(buf, format="JPEG", quality=int(strength or JPEG_QUALITY))
        return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    raise ValueError(f"unknown cheat {cheat!r}")


class FaultyNode(NodeDaemon):
    """A node that misbehaves as its `fault` (and, on image jobs, its `cheat`) says; otherwise ordinary."""

    def __init__(self, *args: object, fault: Fault, cheat: Cheat | None = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fault = fault
        self.cheat = cheat
        self.honest = fault is Fault.HONEST and cheat is None
        self._last_picture: dict[bytes, np.ndarray] = {}  # per model: what COPY hands in next

    def execute(self, job: JobView) -> tasks.Output:
        runner = self.runners[job.model_id]
        if tasks.task_of(runner) == "image-generation":
            if self.cheat is not None or self.fault is Fault.WRONG_OUTPUT:
                return self._cheat_image(job, runner, self.cheat or Cheat.OTHER_SEED)
            out = super().execute(job)
            self._remember(job, out)
            return out
        if self.fault is Fault.WRONG_OUTPUT:
            # Answer without running the model: repeat one byte as many times as asked.
            try:
                n = TextParams.decode(job.params).max_new_tokens or 48
            except InvalidPrompt:
                n = 48
            return TextResult(tokens=(ord("?"),) * n)
        return super().execute(job)

    def _cheat_image(self, job: JobView, runner, cheat: Cheat) -> tasks.Output:  # noqa: ANN001
        try:
            data = self.input_store.get(BlobKey(job.input_hash.hex()))
            label, seed = runner.label_index(data), ImageParams.decode(job.params).seed
        except (BlobNotFound, VerificationError, InvalidPrompt):
            return super().execute(job)  # nothing to fake: give the agreed refusal
        from veriml.models.imagegen_runtime import encode_png

        pixels = cheat_pixels(runner, label, seed, cheat, copied=self._last_picture.get(job.model_id))
        self._last_picture[job.model_id] = pixels
        return ImageResult(png=encode_png(pixels), hash_kind=runner.digest_hash)

    def _remember(self, job: JobView, out: tasks.Output) -> None:
        if isinstance(out, ImageResult) and out.error is None:
            self._last_picture[job.model_id] = np.asarray(Image.open(io.BytesIO(out.png)).convert("RGB"))

    def will_commit(self, job: JobView) -> bool:
        return self.fault is not Fault.NO_SHOW

    def reveal_values(self, rec: JobRecord) -> tuple[bytes, bytes]:
        digest, salt = super().reveal_values(rec)
        if self.fault is Fault.BAD_REVEAL:
            return tokens_digest([0]), salt
        return digest, salt
