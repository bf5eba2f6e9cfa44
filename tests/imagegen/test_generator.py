"""The shipped `tiny-shapes` generator: deterministic per (class, seed), checked weights, honest variations
close, golden perceptual hashes pinned."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from veriml.errors import ConfigError, InvalidPrompt
from veriml.jobspec import PNG_SIGNATURE, ImageParams, ImageResult
from veriml.models import zoo
from veriml.models.imagegen import ImageGenConfig, ShapeGenerator, latent
from veriml.models.imagegen_runtime import HONEST_VARIATIONS, ImageModel, Variation, encode_png
from veriml.verify.phash import hamming, image_hash, open_image

# The reference run's pHash of (class k, seed k): a change that moves them (new weights, another kernel path)
# must say so. Compared within the model's threshold, since the policy promises no more than that.
GOLDEN = {
    "circle": 0xB9B9C6C4C4372738,
    "ring": 0xB6BEC1C14ECE3131,
    "square": 0x8A9964E6939B4DE4,
    "triangle": 0xF6669999243333CC,
    "hexagon": 0xCFCF3034349333C9,
    "star": 0xC63939C738C1C736,
    "cross": 0xA4649B94A47B5B6A,
    "crescent": 0xEB12946B9A356D92,
}


@pytest.fixture(scope="module")
def model() -> ImageModel:
    return ImageModel.load("tiny-shapes")


def test_manifest_and_size(model: ImageModel) -> None:
    m = model.manifest
    assert (m.task, m.policy, m.runtime) == ("image-generation", "phash", "veriml-imagegen-cpu/1")
    assert model.digest_hash in ("ahash", "dhash", "phash") and 0 < m.policy_threshold <= 8
    assert list(model.classes) == list(GOLDEN)
    size = (zoo.model_dir("tiny-shapes") / m.weights_file).stat().st_size
    assert size < 4 * 2**20 and model.net.num_params() < 1_000_000


def test_golden_hashes(model: ImageModel) -> None:
    t = model.manifest.policy_threshold
    for k, (label, expected) in enumerate(GOLDEN.items()):
        out = model.run(label, k)
        assert hamming(image_hash(out.png, "phash"), expected) <= t, label


def test_a_job_is_deterministic_and_seeds_and_classes_matter(model: ImageModel) -> None:
    a, b = model.run("star", 3), model.run(b"star", 3)
    assert a.png == b.png and a.png.startswith(PNG_SIGNATURE)
    assert open_image(a.png).size == (64, 64) and a.pixels.shape == (64, 64, 3)
    assert model.run("star", 4).png != a.png and model.run("ring", 3).png != a.png
    before = torch.random.get_rng_state()
    model.run("star", 5)
    assert torch.equal(torch.random.get_rng_state(), before)  # the global RNG is left alone
    assert torch.equal(latent(2**64 - 1, model.config), latent(2**64 - 1, model.config))


def test_bad_labels_and_seeds_are_refused(model: ImageModel) -> None:
    with pytest.raises(InvalidPrompt, match="unknown class"):
        model.run("dragon", 1)
    for seed in (-1, 2**64, True, 1.5):
        with pytest.raises(InvalidPrompt, match="seed"):
            model.run("star", seed)  # type: ignore[arg-type]
    with pytest.raises(InvalidPrompt):
        ImageParams.decode(b'{"seed": "1"}')
    assert ImageParams.decode(b"") == ImageParams(0) and ImageParams.decode(ImageParams(9).encode()).seed == 9


def test_output_documents_round_trip(model: ImageModel) -> None:
    out = model.run("cross", 2)
    doc = ImageResult(png=out.png, hash_kind="phash")
    again = ImageResult.decode(doc.encode(), "phash")
    assert again == doc and again.digest() == doc.digest() and "64x64 PNG" in again.text
    err = ImageResult(error="input unavailable")
    assert ImageResult.decode(err.encode()).error == "input unavailable"
    with pytest.raises(ValueError):
        ImageResult.decode(b'{"tokens": []}')


@pytest.mark.parametrize("name", list(HONEST_VARIATIONS))
def test_honest_variations_draw_the_same_picture(model: ImageModel, name: str) -> None:
    labels, seeds = [0, 3, 5, 7], [11, 12, 13, 14]
    ref = model.generate(labels, seeds).astype(np.int16)
    other = model.generate(labels, seeds, HONEST_VARIATIONS[name]).astype(np.int16)
    # float32 variations move a pixel by at most one level; bfloat16 moves edges (see docs/output-matching.md)
    limit = 1 if HONEST_VARIATIONS[name].dtype == "float32" else 128
    assert np.abs(ref - other).max() <= limit
    assert np.abs(ref - other).mean() < 2


def test_a_variation_is_a_view_of_the_same_loaded_model(model: ImageModel) -> None:
    onnx = model.with_variation(Variation(backend="onnxruntime"))
    assert onnx.net is model.net and onnx.model_id == model.model_id
    assert abs(image_hash(onnx.run("ring", 1).png) ^ image_hash(model.run("ring", 1).png)).bit_count() <= 2
    with pytest.raises(ValueError):
        Variation(backend="onnxruntime", dtype="bfloat16")


def test_tampered_weights_are_refused(tmp_path) -> None:  # noqa: ANN001
    d = tmp_path / "tiny-shapes"
    shutil.copytree(zoo.model_dir("tiny-shapes"), d)
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(d / "model.safetensors"))
    tensors["field_out.bias"] = tensors["field_out.bias"] + 1e-3
    save_file(tensors, str(d / "model.safetensors"))
    with pytest.raises(ConfigError, match="does not match the manifest"):
        ImageModel.load(d)


def test_config_validation_and_encode_png() -> None:
    with pytest.raises(ValueError):
        ImageGenConfig(classes=("only",))
    g = ShapeGenerator(ImageGenConfig(image_size=16))
    assert g(torch.zeros(2, 12), torch.tensor([0, 1])).shape == (2, 3, 16, 16)
    px = np.zeros((4, 4, 3), np.uint8)
    assert np.array_equal(np.asarray(Image.open(__import__("io").BytesIO(encode_png(px)))), px)
