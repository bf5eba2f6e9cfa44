"""Dishonest node behaviours, as data: one `Fault` enum for every scheme, applied to a real node role from
outside (`faulty_role`), so the production node carries no misbehaviour of its own.

Quorum (`QuorumRole`):
- WRONG_OUTPUT: skips the model and commits a cheap made-up answer (the lazy or malicious worker). On an
  image job it plays its `Cheat` (OTHER_SEED unless told otherwise).
- NO_SHOW: is drawn but never commits (griefing, or simply offline).
- BAD_REVEAL: commits honestly, then reveals a digest that does not match its commitment.

Optimistic (`OptimisticRole`): TAMPERED_STEP (lies about one step of its trace and computes on from the
lie), NO_POST (never posts), SILENT (never plays its dispute turns), FRIVOLOUS (a watcher that challenges
correct results and disagrees with every midpoint).

Audit (`AuditRole`, `veriml.schemes.audit`): WRONG_OUTPUT (a lazy executor: a cheap made-up answer when
executing, honest when auditing), NO_SHOW (an executor that never commits), LYING_AUDITOR (executes honestly,
but commits a made-up answer whenever it audits).

zk (`ZkRole`): FORGED_OUTPUT (proves, then claims another class), TAMPERED_PROOF (flips a bit of a valid
proof), REPLAYED_PROOF (a valid proof of another input), NO_SHOW.

A `Cheat` is how a lazy node fakes a picture (`cheat_pixels` draws it, for nodes and benchmarks alike):

- OTHER_SEED: a picture of the right class from another seed (a cache of stock pictures);
- OTHER_CLASS: the right seed, another class;
- CHEAP_MODEL: the right job on a much narrower network trained on the same data (`CHEAP_FILE`);
- NOISE / JPEG: the right picture with Gaussian noise, or re-encoded as a lossy JPEG;
- COPY: the output of another job (the node's previous picture, or a stock one).
"""

from __future__ import annotations

import io
import random
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from veriml import schemes
from veriml.errors import InvalidPrompt, UserInputError
from veriml.jobspec import ImageParams, ImageResult, TextParams, TextResult
from veriml.node.participant import Role
from veriml.node.state import JobRecord
from veriml.schemes.quorum import JobView
from veriml.verify.digest import tokens_digest
from veriml.verify.trace import Trace, lie_at
from veriml.zk.field import felt_from_int, int_from_felt

if TYPE_CHECKING:
    from veriml.chain.optimistic import DisputeView, OptJobView
    from veriml.chain.zk import ZkJobView
    from veriml.models.intmlp import IntMLP
    from veriml.zk.proof import Proof

NOISE_SIGMA = 8.0  # grey levels (of 255): visible grain, same picture
JPEG_QUALITY = 50


class Fault(Enum):
    HONEST = "honest"
    WRONG_OUTPUT = "wrong-output"
    NO_SHOW = "no-show"
    BAD_REVEAL = "bad-reveal"
    TAMPERED_STEP = "tampered-step"
    NO_POST = "no-post"
    SILENT = "silent"
    FRIVOLOUS = "frivolous"
    FORGED_OUTPUT = "forged-output"
    TAMPERED_PROOF = "tampered-proof"
    REPLAYED_PROOF = "replayed-proof"
    LYING_AUDITOR = "lying-auditor"


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


def faulty_role(role: Role, fault: Fault | str, cheat: Cheat | None = None, seed: int = 0) -> Role:
    """`role` (a real node role of any scheme) made to misbehave as `fault` says; HONEST returns it as is.

    The role's class is swapped for a subclass that overrides its hooks; nothing else about it changes."""
    fault = Fault(fault)
    spec = schemes.get(role.scheme)
    if fault.value not in spec.faults:
        raise ValueError(f"the {role.scheme} scheme has no fault {fault.value!r}; it has {', '.join(spec.faults)}")
    if fault is Fault.HONEST and cheat is None:
        return role
    wrapper = _WRAPPERS[role.scheme]
    role.__class__ = type(f"Faulty{type(role).__name__}", (wrapper, type(role)), {})
    role.fault, role.cheat, role.seed = fault, cheat, seed  # type: ignore[attr-defined]
    role.honest = False  # type: ignore[attr-defined]
    wrapper.setup(role)  # type: ignore[attr-defined]
    return role


class FaultyQuorum:
    """Mixin over `QuorumRole`: misbehave as `fault` (and, on image jobs, `cheat`) says."""

    fault: Fault
    cheat: Cheat | None

    def setup(self) -> None:
        self._last_picture: dict[bytes, np.ndarray] = {}  # per model: what COPY hands in next

    def execute(self, job: JobView):  # noqa: ANN201
        from veriml import tasks

        runner = self.runners[job.model_id]  # type: ignore[attr-defined]
        if tasks.task_of(runner) == "image-generation":
            if self.cheat is not None or self.fault is Fault.WRONG_OUTPUT:
                return self._cheat_image(job, runner, self.cheat or Cheat.OTHER_SEED)
            out = super().execute(job)  # type: ignore[misc]
            self._remember(job, out)
            return out
        if self.fault is Fault.WRONG_OUTPUT:
            # Answer without running the model: repeat one byte as many times as asked.
            try:
                n = TextParams.decode(job.params).max_new_tokens or 48
            except UserInputError:
                n = 48
            return TextResult(tokens=(ord("?"),) * n)
        return super().execute(job)  # type: ignore[misc]

    def _cheat_image(self, job: JobView, runner, cheat: Cheat):  # noqa: ANN001, ANN202
        data = self.fetch_input(job)  # type: ignore[attr-defined]
        try:
            if data is None:
                raise InvalidPrompt("input unavailable")
            label, seed = runner.label_index(data), ImageParams.decode(job.params).seed
        except UserInputError:
            return super().execute(job)  # type: ignore[misc]  # nothing to fake: give the agreed refusal
        from veriml.models.imagegen_runtime import encode_png

        pixels = cheat_pixels(runner, label, seed, cheat, copied=self._last_picture.get(job.model_id))
        self._last_picture[job.model_id] = pixels
        return ImageResult(png=encode_png(pixels), hash_kind=runner.digest_hash)

    def _remember(self, job: JobView, out) -> None:  # noqa: ANN001
        if isinstance(out, ImageResult) and out.error is None:
            self._last_picture[job.model_id] = np.asarray(Image.open(io.BytesIO(out.png)).convert("RGB"))

    def will_commit(self, job: JobView) -> bool:
        return self.fault is not Fault.NO_SHOW

    def reveal_values(self, rec: JobRecord) -> tuple[bytes, bytes]:
        digest, salt = super().reveal_values(rec)  # type: ignore[misc]
        if self.fault is Fault.BAD_REVEAL:
            return tokens_digest([0]), salt
        return digest, salt


class FaultyOptimistic:
    """Mixin over `OptimisticRole` (`veriml.schemes.optimistic`): misbehave as `fault` says. A TAMPERED_STEP
    executor's lie is drawn from its seed and the job id, so it tells the same lie after a restart."""

    fault: Fault
    seed: int

    def setup(self) -> None:
        pass

    def claimed(self, j: OptJobView) -> Trace:
        if self.fault is not Fault.TAMPERED_STEP:
            return super().claimed(j)  # type: ignore[misc]
        key = (j.job_id, "claim")
        traces = self._traces  # type: ignore[attr-defined]
        if key not in traces:
            rng = random.Random(f"{self.seed}:{j.job_id}")
            mlp = self.models[j.model_id].mlp  # type: ignore[attr-defined]
            traces[key] = tampered_trace(mlp, self.input_of(j), rng)  # type: ignore[attr-defined]
        return traces[key]

    def tampered_step(self, j: OptJobView) -> int | None:
        if self.fault is not Fault.TAMPERED_STEP:
            return None
        claim, truth = self.claimed(j), self.truth(j)  # type: ignore[attr-defined]
        return next(i for i in range(len(truth.states)) if claim.hashes[i] != truth.hashes[i])

    def will_post(self, j: OptJobView) -> bool:
        return self.fault is not Fault.NO_POST

    def plays_turn(self, j: OptJobView, d: DisputeView) -> bool:
        return self.fault is not Fault.SILENT

    def wants_challenge(self, j: OptJobView, wrong: bool) -> bool:
        return wrong or self.fault is Fault.FRIVOLOUS

    def agrees(self, j: OptJobView, d: DisputeView, truth: Trace) -> bool:
        return self.fault is not Fault.FRIVOLOUS and super().agrees(j, d, truth)  # type: ignore[misc]

    def proves_step(self, j: OptJobView, d: DisputeView) -> bool:
        return self.fault is not Fault.FRIVOLOUS


def tampered_trace(mlp: IntMLP, data: bytes, rng: random.Random) -> Trace:
    """The trace of an executor that lies about the output of one step chosen at random (adding a random
    non-zero amount to the int8 it computed) and computes honestly on from its lie. Draws again in the rare
    case that the lie does not change the result, since a lie that does not would not be a fraud."""
    honest = mlp.trace(data)
    for _ in range(64):
        t = lie_at(mlp.book, data, rng.randint(1, honest.steps), rng.randint(1, 255))
        if t.result_digest != honest.result_digest:
            return t
    raise RuntimeError("could not find a step whose tampering changes the result")


class FaultyZk:
    """Mixin over `ZkRole` (`veriml.schemes.zk`): misbehave as `fault` says."""

    fault: Fault

    def setup(self) -> None:
        pass

    def will_prove(self, job: ZkJobView) -> bool:
        return self.fault is not Fault.NO_SHOW

    def input_to_prove(self, job: ZkJobView, felts: tuple[int, ...]) -> tuple[int, ...]:
        if self.fault is not Fault.REPLAYED_PROOF:
            return super().input_to_prove(job, felts)  # type: ignore[misc]
        # A valid proof, but of another input: all zeros (or all max if the job's input is all zeros).
        other = tuple(0 for _ in felts)
        if other == felts:
            bound = self.jobs.circuit(job.model_id).input_max  # type: ignore[attr-defined]
            other = tuple(bound for _ in felts)
        return other

    def doctor(self, proof: Proof) -> Proof:
        if self.fault is Fault.TAMPERED_PROOF:
            return proof.with_flipped_bit()
        if self.fault is Fault.FORGED_OUTPUT:
            return proof.with_outputs(forge_outputs(proof.outputs))
        return super().doctor(proof)  # type: ignore[misc]


def forge_outputs(outputs: Sequence[int]) -> tuple[int, ...]:
    """Logits that pick another class: the winner's and the runner-up's values swapped (the runner-up
    bumped by one on a tie; a single output is just bumped)."""
    vals = [int_from_felt(o) for o in outputs]
    if len(vals) == 1:
        return (felt_from_int(vals[0] + 1),)
    top, second = sorted(range(len(vals)), key=lambda i: (-vals[i], i))[:2]
    if vals[top] == vals[second]:
        vals[second] += 1
    else:
        vals[top], vals[second] = vals[second], vals[top]
    return tuple(felt_from_int(v) for v in vals)


class FaultyAudit:
    """Mixin over `AuditRole` (`veriml.schemes.audit`): a lazy or absent executor, or a lying auditor."""

    fault: Fault

    def setup(self) -> None:
        pass

    def execute(self, job, as_auditor: bool):  # noqa: ANN001, ANN201
        lazy = self.fault is Fault.WRONG_OUTPUT and not as_auditor
        lies = self.fault is Fault.LYING_AUDITOR and as_auditor
        if not (lazy or lies):
            return super().execute(job, as_auditor)  # type: ignore[misc]
        try:
            n = TextParams.decode(job.params).max_new_tokens or 48
        except UserInputError:
            n = 48
        return TextResult(tokens=(ord("?" if lazy else "!"),) * n)

    def will_commit(self, job, as_auditor: bool) -> bool:  # noqa: ANN001
        return as_auditor or self.fault is not Fault.NO_SHOW


_WRAPPERS: dict[str, type] = {
    "quorum": FaultyQuorum, "optimistic": FaultyOptimistic, "zk": FaultyZk, "audit": FaultyAudit,
}  # fmt: skip
