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
