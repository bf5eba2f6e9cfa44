"""The integer runtime: the shipped model, its accuracy against the float model, bit-exactness, golden outputs."""

from __future__ import annotations

import numpy as np
import pytest

from veriml.errors import ConfigError
from veriml.models import zoo
from veriml.models.intmlp import IntMLP, IntModel, digits_split, encode_pixels, predict
from veriml.models.weights import weights_root
from veriml.verify.trace import WeightRow, requantize, result_digest

# Outputs of the shipped model for the first test digits (labels 7, 6, 3), as bytes, and the trace roots.
# A change that alters them changes what every node computes: say so in the commit.
GOLDEN = [
    ("ebebdce7f7e9c825fc16", "1f5856fe061ff83581d905714be22a4e3197e255e173fad4bfcb32667a6ba6c6"),
    ("0bf2edd2e8fe3bc213bf", "8adcd0dbf5d49cd63ea0d209c8cdd83181b259b3fc987c24dcc2158c0413e20d"),
    ("d7d4033da80ec504f30d", "6091632eebc3b41006773e531df935e802fb63aa8e73f49eb989af4edac7ff30"),
]


@pytest.fixture(scope="module")
def model() -> IntModel:
    return IntModel.load()


@pytest.fixture(scope="module")
def split() -> tuple:
    return digits_split()


def test_shipped_model_is_in_the_zoo_and_its_root_is_the_usual_tensor_root(model: IntModel) -> None:
    assert "int-mlp" in zoo.list_models()
    assert model.manifest.policy == "exact" and model.manifest.policy_threshold == 0
    assert model.mlp.sizes == [64, 64, 32, 10] and model.mlp.steps == 106
    # The per-row tree the chain checks steps against is the ordinary per-tensor safetensors root.
    assert weights_root(model.directory / model.manifest.weights_file) == model.mlp.weights_root
    assert model.mlp.weights_root == model.manifest.weights_root_bytes


def test_integer_accuracy_matches_the_float_model(model: IntModel, split: tuple) -> None:
    _, x_test, _, y_test = split
    float_acc = (model.float_model().forward(x_test).argmax(1) == y_test).mean()
    int_acc = (model.mlp.forward(x_test).argmax(1) == y_test).mean()
    assert int_acc >= 0.95
    assert abs(float_acc - int_acc) <= 0.01


def test_golden_outputs(model: IntModel, split: tuple) -> None:
    _, x_test, _, y_test = split
    for i, (out, root) in enumerate(GOLDEN):
        data = encode_pixels(x_test[i])
        assert model.mlp.run(data).hex() == out
        t = model.mlp.trace(data)
        assert t.root.hex() == root and t.output.hex() == out
        assert predict(bytes.fromhex(out)) == y_test[i]


def test_vectorized_forward_equals_the_step_by_step_trace(model: IntModel, split: tuple) -> None:
    rng = np.random.default_rng(0)
    inputs = [encode_pixels(x) for x in split[1][:30]]
    inputs += [rng.integers(0, 256, 64, dtype=np.uint8).tobytes() for _ in range(10)]  # any int8 input
    for data in inputs:
        t = model.mlp.trace(data)
        assert t.output == model.mlp.run(data)
        assert t.steps == 106 and t.padded == 128 and t.result_digest == result_digest(t.output)


def test_random_models_agree_too() -> None:
    for seed, sizes in enumerate(([5, 7, 3], [16, 4], [2, 9, 9, 2])):
        mlp = IntMLP.random(sizes, seed=seed)
        rng = np.random.default_rng(seed)
        for _ in range(5):
            data = rng.integers(0, 256, sizes[0], dtype=np.uint8).tobytes()
            assert mlp.trace(data).output == mlp.run(data)


def test_wrong_input_length_halts_with_empty_output(model: IntModel) -> None:
    t = model.mlp.trace(b"\x01" * 63)
    assert t.output == b"" and t.steps == 1 and t.padded == 1
    assert model.mlp.run(b"\x01" * 65) == b"" and predict(b"") is None


@pytest.mark.parametrize(
    ("acc", "m", "shift", "relu", "expected"),
    [
        (3, 1, 1, False, 2),  # 1.5 rounds half up
        (-3, 1, 1, False, -1),  # -1.5 rounds half up too (arithmetic shift of -2)
        (-5, 1, 1, False, -2),  # -2.5 -> -2
        (10**6, 1, 0, False, 127),  # clamped
        (-(10**6), 1, 0, False, -128),
        (-(10**6), 1, 0, True, 0),  # ReLU after the clamp
        (1000, 3, 5, True, 94),  # (3000 + 16) >> 5
    ],
)
def test_requantize(acc: int, m: int, shift: int, relu: bool, expected: int) -> None:
    assert requantize(acc, m, shift, relu) == expected


def test_save_load_round_trip_and_validation(tmp_path) -> None:  # noqa: ANN001
    mlp = IntMLP.random([4, 3, 2], seed=1)
    mlp.save(tmp_path / "w.safetensors")
    back = IntMLP.load(tmp_path / "w.safetensors")
    assert back.rows == mlp.rows and back.weights_root == mlp.weights_root
    assert weights_root(tmp_path / "w.safetensors") == mlp.weights_root
    rows = list(mlp.rows)
    with pytest.raises(ValueError, match="rows 0..2"):
        IntMLP.from_rows(rows[1:])
    bad = WeightRow(1, 0, 2, True, False, 1, 1, 0, b"\x01\x02")  # layer 1 must take 3 inputs
    with pytest.raises(ValueError):
        IntMLP.from_rows([*rows[:3], bad, rows[4]])
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ConfigError):
        IntMLP.load(tmp_path / "junk.safetensors")


def test_encode_pixels_checks_range() -> None:
    assert encode_pixels(np.arange(64) % 17) == bytes(i % 17 for i in range(64))
    with pytest.raises(ValueError):
        encode_pixels([17] * 64)
    with pytest.raises(ValueError):
        encode_pixels([1] * 63)
