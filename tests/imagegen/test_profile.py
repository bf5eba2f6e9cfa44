"""The profiler: honest variations measured, threshold = worst admitted distance + margin, manifest and id."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from rich.console import Console

from veriml.errors import ConfigError
from veriml.models import zoo
from veriml.models.imagegen_runtime import ADMITTED, HONEST_VARIATIONS, ImageModel
from veriml.models.manifest import Manifest
from veriml.models.profile import derive_threshold, measure, profile_command, profile_model


@pytest.fixture
def model_copy(tmp_path):
    d = tmp_path / "tiny-shapes"
    shutil.copytree(zoo.model_dir("tiny-shapes"), d)
    return d


def test_derive_threshold() -> None:
    assert derive_threshold(0, 2) == 2 and derive_threshold(63, 2) == 64
    with pytest.raises(ValueError):
        derive_threshold(1, -1)


def test_measure_counts_distances_per_variation() -> None:
    ref = np.zeros((3, 8, 8, 3), np.uint8)
    ref[:, :4] = 200
    moved = ref.copy()
    moved[2] = 255 - moved[2]  # one job's picture inverted: 64 bits off in aHash
    (same, inverted) = measure(ref, {"threads 1 vs 2": ref.copy(), "float32 vs bfloat16 autocast": moved}, "ahash")
    assert (same.max_distance, same.pixels_identical, same.admitted) == (0, 1.0, True)
    assert inverted.histogram == {0: 2, 64: 1} and inverted.max_pixel_diff == 255 and not inverted.admitted


def test_profile_writes_the_threshold_and_says_the_model_id_changed(model_copy) -> None:
    before = Manifest.load(model_copy / "manifest.json")
    r = profile_model(model_copy, samples=8, margin=5, hash_kind="ahash")
    assert {v.name for v in r.variations} == set(HONEST_VARIATIONS)
    assert r.max_distance == max(v.max_distance for v in r.variations if v.name in ADMITTED)
    assert r.threshold == r.max_distance + 5 and r.threshold_all >= r.threshold
    assert r.written and r.id_changed and r.old_model_id == "0x" + before.model_id().hex()
    after = Manifest.load(model_copy / "manifest.json")
    assert after.policy_threshold == r.threshold and after.architecture["digest_hash"] == "ahash"
    assert "0x" + after.model_id().hex() == r.new_model_id
    # The loader's cache was dropped: the model now loads under its new id.
    assert "0x" + ImageModel.load(model_copy).model_id.hex() == r.new_model_id
    # Profiling again with the same settings changes nothing.
    again = profile_model(model_copy, samples=8, margin=5, hash_kind="ahash")
    assert not again.written and not again.id_changed


def test_the_shipped_threshold_is_what_the_profiler_derives() -> None:
    m = zoo.manifest("tiny-shapes")
    r = profile_model("tiny-shapes", samples=32, write=False)
    assert r.hash == m.architecture["digest_hash"] and not r.written
    assert r.threshold <= m.policy_threshold  # 32 jobs see no more than the 256 the shipped value came from


def test_profile_command_prints_the_table(model_copy) -> None:
    console = Console(file=io.StringIO(), width=200)
    profile_command(str(model_copy), console, samples=4, margin=3)
    text = console.file.getvalue()
    assert "threshold = worst admitted distance" in text and "bfloat16" in text


def test_only_phash_models_are_profiled() -> None:
    with pytest.raises(ConfigError):
        profile_model(zoo.model_dir("tiny-gpt"))
