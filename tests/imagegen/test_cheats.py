"""The image cheats a lazy node can play (`veriml.sim.faults.Cheat`), and how far each lands."""

from __future__ import annotations

import numpy as np
import pytest

from veriml.models.imagegen_runtime import ImageModel
from veriml.sim.faults import Cheat, cheat_pixels
from veriml.verify.phash import hamming, image_hash


@pytest.fixture(scope="module")
def model() -> ImageModel:
    return ImageModel.load("tiny-shapes")


@pytest.mark.parametrize("cheat", list(Cheat))
def test_every_cheat_gives_a_picture_and_is_deterministic(model: ImageModel, cheat: Cheat) -> None:
    a = cheat_pixels(model, 5, 6, cheat)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, cheat_pixels(model, 5, 6, cheat))


def test_substitutions_land_far_and_perturbations_near(model: ImageModel) -> None:
    right = image_hash(model.generate([5], [6])[0])
    far = {c: hamming(right, image_hash(cheat_pixels(model, 5, 6, c))) for c in Cheat}
    t = model.manifest.policy_threshold
    for c in (Cheat.OTHER_SEED, Cheat.OTHER_CLASS, Cheat.CHEAP_MODEL, Cheat.COPY):
        assert far[c] > t, c
    # Noise and JPEG keep the right picture: a perceptual hash is built to see them as the same.
    assert far[Cheat.NOISE] <= 3 * t and far[Cheat.JPEG] <= 3 * t


def test_copy_hands_in_the_other_jobs_picture(model: ImageModel) -> None:
    other = model.generate([1], [99])[0]
    assert np.array_equal(cheat_pixels(model, 5, 6, Cheat.COPY, copied=other), other)
    strong = cheat_pixels(model, 5, 6, Cheat.NOISE, strength=64)
    assert np.abs(strong.astype(int) - model.generate([5], [6])[0]).mean() > 20
