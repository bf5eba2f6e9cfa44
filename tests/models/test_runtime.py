"""The node runtime: input validation, weights checks on load, caching and bitwise-reproducible runs."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from veriml.errors import ConfigError, InvalidPrompt, UnknownModel
from veriml.models import zoo
from veriml.models.manifest import Manifest
from veriml.models.runtime import TextModel, TextOutput, pinned


@pytest.fixture(scope="module")
def tm() -> TextModel:
    return TextModel.load("tiny-gpt")


def test_load_is_cached_per_directory(tm: TextModel) -> None:
    assert TextModel.load("tiny-gpt") is tm
    assert TextModel.load(zoo.model_dir("tiny-gpt")) is tm
    assert tm.model_id == zoo.manifest("tiny-gpt").model_id()


def test_unknown_model() -> None:
    with pytest.raises(UnknownModel, match="tiny-gpt"):
        TextModel.load("no-such-model")


@pytest.mark.parametrize(
    ("prompt", "kwargs", "message"),
    [
        (b"", {}, "empty"),
        (b"x" * 513, {}, "513 bytes"),
        ("text", {}, "not str"),
        (None, {}, "must be bytes"),
        (b"ok", {"max_new_tokens": 0}, "max_new_tokens"),
        (b"ok", {"max_new_tokens": 129}, "max_new_tokens"),
        (b"ok", {"max_new_tokens": True}, "max_new_tokens"),
        (b"ok", {"max_new_tokens": 2.0}, "max_new_tokens"),
        (b"ok", {"seed": -1}, "seed"),
        (b"ok", {"seed": 2**64}, "seed"),
    ],
)
def test_invalid_inputs(tm: TextModel, prompt: object, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidPrompt, match=message):
        tm.run(prompt, **kwargs)  # type: ignore[arg-type]


def test_limits_are_inclusive(tm: TextModel) -> None:
    assert len(tm.run(b"x" * 512, max_new_tokens=1).tokens) == 1
    assert len(tm.run(b"x", max_new_tokens=128).tokens) == 128


def test_output_shape_and_default_length(tm: TextModel) -> None:
    out = tm.run(b"The ")
    assert isinstance(out, TextOutput)
    assert len(out.tokens) == tm.manifest.default_new_tokens == 48
    assert out.text == bytes(out.tokens)


def test_runs_are_bitwise_identical_across_runs_and_thread_settings(tm: TextModel) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        a = tm.run(b"Class definitions ", 32)
        logits_a = _last_logits(tm, b"Class definitions ")
        torch.set_num_threads(2)
        b = tm.run(b"Class definitions ", 32)
        logits_b = _last_logits(tm, b"Class definitions ")
        assert torch.get_num_threads() == 2  # restored after each run
    finally:
        torch.set_num_threads(before)
    assert a == b == tm.run(b"Class definitions ", 32)
    assert torch.equal(logits_a, logits_b)


def _last_logits(tm: TextModel, prompt: bytes) -> torch.Tensor:
    with pinned():
        logits, _ = tm.model(torch.tensor([list(prompt)]))
    return logits.clone()


def test_seeded_runs(tm: TextModel) -> None:
    a = tm.run(b"The ", 24, seed=7)
    assert a == tm.run(b"The ", 24, seed=7)
    assert a != tm.run(b"The ", 24, seed=8)


def _copy_model(tmp_path: Path) -> Path:
    d = tmp_path / "tiny-gpt-copy"
    shutil.copytree(zoo.model_dir("tiny-gpt"), d)
    return d


def test_load_from_a_directory(tmp_path: Path, tm: TextModel) -> None:
    other = TextModel.load(_copy_model(tmp_path))
    assert other is not tm and other.model_id == tm.model_id
    assert other.run(b"def ", 8) == tm.run(b"def ", 8)


def test_tampered_weights_are_refused(tmp_path: Path) -> None:
    d = _copy_model(tmp_path)
    w = d / "model.safetensors"
    raw = bytearray(w.read_bytes())
    raw[-1] ^= 0x01
    w.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="does not match"):
        TextModel.load(d)


def test_other_runtimes_are_refused(tmp_path: Path) -> None:
    d = _copy_model(tmp_path)
    m = Manifest.load(d / "manifest.json").to_dict()
    Manifest.from_dict({**m, "runtime": "other-runtime/1"}).save(d / "manifest.json")
    with pytest.raises(ConfigError, match="runtime"):
        TextModel.load(d)


def test_concurrent_runs_agree(tm: TextModel) -> None:
    # The demo's in-process nodes share one model and may run it from several threads at once.
    want = tm.run(b"The ", 16)
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda _: tm.run(b"The ", 16), range(8)))
    assert got == [want] * 8
