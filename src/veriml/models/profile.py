"""`veriml profile MODEL`: measure how far honest runs of an image model drift apart, and set its threshold.

The profiling stage of decentralized training protocols, applied to inference: run the model's honest
variations (threads, batch size, bfloat16 autocast, ONNX Runtime; `imagegen_runtime.HONEST_VARIATIONS`)
on a fixed set of jobs, hash every picture with the model's perceptual hash, and take the Hamming distance
of each to the pinned reference run. The policy threshold is the largest distance seen among the admitted
variations (`imagegen_runtime.ADMITTED`: bfloat16 is measured and reported, not admitted) plus a stated
margin (bits), because a finite sample under-estimates the largest honest distance there is.

Writing the threshold changes the manifest, and so the model id (keccak of the manifest): the report
gives both ids, the cached model is dropped, and the model must be registered again under the new id.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from os import PathLike
from typing import Any

import numpy as np

from veriml.errors import ConfigError
from veriml.models import imagegen_runtime as rt
from veriml.models import zoo
from veriml.verify.phash import HASHES, distances, hashes

DEFAULT_SAMPLES = 256
DEFAULT_MARGIN = 2  # bits above the worst honest distance seen


@dataclass(frozen=True)
class VariationProfile:
    """Distances (bits) between one honest variation's pictures and the reference's, over the sample."""

    name: str
    variation: str
    max_distance: int
    mean_distance: float
    histogram: dict[int, int]  # distance -> number of jobs
    pixels_identical: float  # share of jobs whose pictures are byte-identical to the reference's
    max_pixel_diff: int  # largest difference of one channel of one pixel (0..255)
    admitted: bool  # whether the threshold must absorb it


@dataclass(frozen=True)
class ProfileReport:
    """What `profile_model` measured and what it wrote."""

    model: str
    hash: str
    samples: int
    margin: int
    variations: list[VariationProfile]
    max_distance: int  # over the admitted variations
    threshold: int
    threshold_all: int  # what admitting every variation (bfloat16 too) would take
    old_threshold: int
    old_model_id: str
    new_model_id: str
    written: bool
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id_changed(self) -> bool:
        return self.old_model_id != self.new_model_id

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        for v in d["variations"]:
            v["histogram"] = {str(k): c for k, c in v["histogram"].items()}
        return d


def sample_jobs(model: rt.ImageModel, n: int, first_seed: int = 10_000) -> tuple[list[int], list[int]]:
    """A fixed, class-balanced set of n (class index, seed) jobs."""
    k = len(model.classes)
    return [i % k for i in range(n)], [first_seed + i for i in range(n)]


def variation_pictures(
    model: rt.ImageModel, labels: list[int], seeds: list[int]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The reference pictures and each honest variation's pictures of the same jobs."""
    ref = model.generate(labels, seeds, rt.REFERENCE)
    return ref, {name: model.generate(labels, seeds, v) for name, v in rt.HONEST_VARIATIONS.items()}


def derive_threshold(max_distance: int, margin: int) -> int:
    """The policy threshold: worst honest distance plus the margin, within 0..64."""
    if margin < 0:
        raise ValueError("margin must be >= 0")
    return min(64, max_distance + margin)


def measure(ref: np.ndarray, pics: dict[str, np.ndarray], kind: str) -> list[VariationProfile]:
    """Each variation's distances (by hash `kind`) to the reference pictures of the same jobs."""
    ref_hashes = hashes(ref, kind)
    out = []
    for name, other in pics.items():
        d = distances(ref_hashes, hashes(other, kind))
        values, counts = np.unique(d, return_counts=True)
        same = (ref.reshape(len(ref), -1) == other.reshape(len(other), -1)).all(axis=1)
        out.append(
            VariationProfile(
                name=name,
                variation=rt.HONEST_VARIATIONS[name].label if name in rt.HONEST_VARIATIONS else name,
                max_distance=int(d.max(initial=0)),
                mean_distance=float(d.mean()) if len(d) else 0.0,
                histogram={int(v): int(c) for v, c in zip(values, counts, strict=True)},
                pixels_identical=float(same.mean()) if len(same) else 1.0,
                max_pixel_diff=int(np.abs(ref.astype(np.int16) - other.astype(np.int16)).max(initial=0)),
                admitted=name in rt.ADMITTED,
            )
        )
    return out


def profile_model(
    name_or_dir: str | PathLike[str],
    samples: int = DEFAULT_SAMPLES,
    margin: int = DEFAULT_MARGIN,
    hash_kind: str | None = None,
    write: bool = True,
) -> ProfileReport:
    """Profile an image model's honest variations and (if `write`) record hash and threshold in its manifest."""
    model = rt.ImageModel.load(name_or_dir)
    m = model.manifest
    if m.policy != "phash":
        raise ConfigError(f"{m.name}: only phash models have a threshold to profile (policy {m.policy})")
    kind = hash_kind or model.digest_hash
    if kind not in HASHES:
        raise ConfigError(f"unknown perceptual hash {kind!r}; one of {', '.join(HASHES)}")
    if samples < 1:
        raise ValueError("samples must be >= 1")
    labels, seeds = sample_jobs(model, samples)
    profiles = measure(*variation_pictures(model, labels, seeds), kind)
    worst = max(p.max_distance for p in profiles if p.admitted)
    threshold = derive_threshold(worst, margin)
    new = replace(m, policy_threshold=threshold, architecture={**m.architecture, "digest_hash": kind})
    report = ProfileReport(
        model=m.name,
        hash=kind,
        samples=samples,
        margin=margin,
        variations=profiles,
        max_distance=worst,
        threshold=threshold,
        threshold_all=derive_threshold(max(p.max_distance for p in profiles), margin),
        old_threshold=m.policy_threshold,
        old_model_id="0x" + m.model_id().hex(),
        new_model_id="0x" + new.model_id().hex(),
        written=write and new != m,
    )
    if report.written:
        new.save(model.directory / zoo.MANIFEST_FILE)
        # The cached model carries the old manifest (and id): drop it so the next load sees the new one.
        rt._load_dir.cache_clear()
    return report


def profile_command(model: str, console: Any, samples: int = DEFAULT_SAMPLES, margin: int = DEFAULT_MARGIN) -> None:
    """What `veriml profile MODEL` prints: the distance table, the threshold, and the model id change."""
    from rich.table import Table

    if zoo.resolve_dir(model) and zoo.manifest_of(model).policy == "tolerance":
        rep = profile_embeddings(model)
        for v in rep["variations"]:
            console.print(
                f"{v['name']:<18} admitted={v['admitted']!s:<5} max |diff| {v['max_abs']:.3g}  "
                f"identical {v['identical']:.0%}  digests equal at the step {v['digests_equal_at_step']:.0%}"
            )
        console.print(
            f"step = 2 x {rep['worst_admitted_mean_abs']:.3g} x {rep['largest_job_elements']} / {rep['risk_target']} "
            f"= [bold]{rep['step']}[/]; other-text digest collisions {rep['other_text_digest_collisions']}; "
            f"model id {rep['old_model_id'][:18]}.. -> {rep['new_model_id'][:18]}.."
        )
        return
    r = profile_model(model, samples=samples, margin=margin)
    t = Table(title=f"{r.model}: {r.hash} distance to the pinned reference over {r.samples} jobs")
    for col in ("variation", "admitted", "max bits", "mean bits", "histogram", "identical PNGs", "max pixel diff"):
        t.add_column(col)
    for v in r.variations:
        hist = " ".join(f"{d}:{c}" for d, c in sorted(v.histogram.items()))
        t.add_row(
            v.name,
            "yes" if v.admitted else "[yellow]no[/]",
            str(v.max_distance),
            f"{v.mean_distance:.3f}",
            hist,
            f"{v.pixels_identical:.0%}",
            str(v.max_pixel_diff),
        )
    console.print(t)
    console.print(
        f"threshold = worst admitted distance {r.max_distance} + margin {r.margin} = [bold]{r.threshold}[/] "
        f"(admitting every variation would take {r.threshold_all})"
    )
    if r.written and r.id_changed:
        console.print(
            f"[yellow]manifest updated (threshold {r.old_threshold} -> {r.threshold}); model id "
            f"{r.old_model_id[:18]}.. -> {r.new_model_id[:18]}..: register it again under the new id[/]"
        )
    else:
        console.print(f"manifest unchanged; model id {r.new_model_id[:18]}..")


# ---- tolerance models (embeddings) ----

EMBED_PROFILE_TEXTS = tuple(
    f"{subject} {verb} {obj}."
    for subject in ("The cat", "A young engineer", "Our small town", "The old ship")
    for verb in ("watched", "ignored", "rebuilt")
    for obj in ("the river at dawn", "a long list of numbers", "every winter storm")
)
RISK_TARGET = 0.01  # accepted chance that two honest nodes' digests of the largest job land on different grids


@dataclass(frozen=True)
class EmbeddingVariation:
    """How far one honest variation's vectors are from the pinned reference (max over all elements)."""

    name: str
    max_abs: float
    mean_abs: float
    identical: float  # share of elements bitwise equal to the reference
    admitted: bool
    digests_equal_at_step: float = 0.0  # share of texts whose 1-text digest equals the reference's


def _embed_variant(model, texts: list[str], threads: int, batch: int, dtype=None, bf16: bool = False):  # noqa: ANN001, ANN202
    import torch

    net = model.model if dtype is None else __import__("copy").deepcopy(model.model).to(dtype)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows = []
    try:
        with torch.inference_mode():
            for i in range(0, len(texts), batch):
                enc = model.tokenizer(
                    texts[i : i + batch],
                    padding=True,
                    truncation=True,
                    max_length=model.max_tokens,
                    return_tensors="pt",
                )
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    h = net(**enc).last_hidden_state
                h = h.to(dtype or torch.float32)
                mask = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                pooled = (h * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, p=2, dim=1))
    finally:
        torch.set_num_threads(before)
    return torch.cat(rows).double().numpy()


def profile_embeddings(
    name_or_dir: str | PathLike[str], write: bool = True, texts: tuple[str, ...] = EMBED_PROFILE_TEXTS
) -> dict[str, Any]:
    """Profile an embeddings model and derive its tolerance step (written into the manifest if `write`).

    Honest variations: 2 threads, batches of 4 and 12 with padding (admitted: a node may run either), and
    float64 (admitted: it measures float32's own rounding error, which bounds how far any correct float32
    kernel, e.g. another CPU's, can land from ours). bfloat16 autocast is measured, not admitted.

    Two digests differ when some element's two values straddle a grid line; element i does so with
    probability about |a_i - b_i| / step, so the chance for a job is about sum_i |a_i - b_i| / step. The step
    is therefore 2 (two nodes, each as far from exact as float64 shows) x the worst admitted *mean* absolute
    difference x the elements of the largest job (16 texts x dim) / RISK_TARGET. Using the max instead
    (`tolerance.boundary_risk`'s bound) would need a grid so coarse that other texts collide.
    """
    import numpy as np

    from veriml.jobspec import MAX_TEXTS
    from veriml.models.hf_runtime import EmbeddingModel, _load_embed
    from veriml.verify.tolerance import boundary_risk, tolerance_digest

    model = EmbeddingModel.load(name_or_dir)
    m = model.manifest
    if m.policy != "tolerance":
        raise ConfigError(f"{m.name}: policy is {m.policy}, not tolerance")
    import torch

    ref = model.embed(list(texts)).astype(np.float64)
    runs = {
        "threads-2": (_embed_variant(model, list(texts), 2, 1), True),
        "batch-4": (_embed_variant(model, list(texts), 1, 4), True),
        "batch-12": (_embed_variant(model, list(texts), 1, 12), True),
        "float64": (_embed_variant(model, list(texts), 1, 1, dtype=torch.float64), True),
        "bfloat16-autocast": (_embed_variant(model, list(texts), 1, 1, bf16=True), False),
    }
    dim = ref.shape[1]
    worst = max(float(np.abs(v - ref).max()) for v, ok in runs.values() if ok)
    worst_mean = max(float(np.abs(v - ref).mean()) for v, ok in runs.values() if ok)
    n_max = MAX_TEXTS * dim
    step = float(f"{max(worst_mean, 1e-10) * 2 * n_max / RISK_TARGET:.2g}")
    out = []
    for name, (v, ok) in runs.items():
        d = np.abs(v - ref)
        same = [
            tolerance_digest(v[i : i + 1].astype(np.float32), step)
            == tolerance_digest(ref[i : i + 1].astype(np.float32), step)
            for i in range(len(texts))
        ]
        out.append(
            EmbeddingVariation(name, float(d.max()), float(d.mean()), float((d == 0).mean()), ok, float(np.mean(same)))
        )
    # How far apart different texts are on that grid: a cheat answering another text must not match.
    other = model.embed([texts[(i + 1) % len(texts)] for i in range(len(texts))]).astype(np.float64)
    cheat_min_abs = float(np.abs(other - ref).max(axis=1).min())
    f32 = lambda a: a.astype(np.float32)  # noqa: E731
    collisions = [
        tolerance_digest(f32(ref[i : i + 1]), step) == tolerance_digest(f32(ref[j : j + 1]), step)
        for i in range(len(texts))
        for j in range(len(texts))
        if i != j
    ]
    new = replace(m, architecture={**m.architecture, "tolerance_step": step})
    report = {
        "model": m.name,
        "texts": len(texts),
        "dim": dim,
        "variations": [asdict(v) for v in out],
        "worst_admitted_max_abs": worst,
        "worst_admitted_mean_abs": worst_mean,
        "other_text_digest_collisions": f"{sum(collisions)}/{len(collisions)}",
        "largest_job_elements": n_max,
        "risk_target": RISK_TARGET,
        "step": step,
        "expected_disagreement_largest_job": 2 * worst_mean * n_max / step,
        "max_bound_risk_largest_job": boundary_risk(n_max, 2 * worst, step),
        "other_text_min_max_abs": cheat_min_abs,
        "old_model_id": "0x" + m.model_id().hex(),
        "new_model_id": "0x" + new.model_id().hex(),
        "written": write and new != m,
    }
    if report["written"]:
        new.save(zoo.resolve_dir(name_or_dir) / zoo.MANIFEST_FILE)
        _load_embed.cache_clear()
    return report
