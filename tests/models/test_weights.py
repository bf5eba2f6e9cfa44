"""Weights commitments: one Merkle leaf per tensor, pure over the safetensors file's contents."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from veriml.errors import ConfigError
from veriml.models.weights import (
    state_dict_root,
    tensor_leaf_data,
    tensor_leaves,
    tensor_proof,
    weights_root,
    weights_tree,
)
from veriml.verify.merkle import leaf_hash, verify_proof


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "h.0.weight": torch.randn(4, 3, generator=g),
        "h.0.bias": torch.randn(3, generator=g),
        "emb": torch.randn(5, 2, generator=g).to(torch.bfloat16),
        "count": torch.tensor(7, dtype=torch.int64),
        "z.mask": torch.tensor([True, False]),
    }


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    p = tmp_path / "w.safetensors"
    save_file(_tensors(), str(p))
    return p


def test_leaf_data_layout() -> None:
    assert tensor_leaf_data("a.b", "F32", (2, 3), b"xy") == b"a.b\x00F32\x002,3\x00xy"
    assert tensor_leaf_data("s", "I64", (), b"") == b"s\x00I64\x00\x00"


def test_root_is_32_bytes_and_matches_in_memory_root(weights: Path) -> None:
    root = weights_root(weights)
    assert len(root) == 32
    assert root == weights_root(weights)
    assert root == state_dict_root(_tensors())
    assert root == state_dict_root(load_file(str(weights)))


def test_leaves_sorted_by_name_and_hash_the_stored_bytes(weights: Path) -> None:
    leaves = tensor_leaves(weights)
    names = [n for n, _ in leaves]
    assert names == sorted(_tensors())
    w = _tensors()["h.0.weight"]
    data = tensor_leaf_data("h.0.weight", "F32", (4, 3), w.numpy().astype("<f4").tobytes())
    assert dict(leaves)["h.0.weight"] == leaf_hash(data)


def test_insertion_order_does_not_matter(tmp_path: Path, weights: Path) -> None:
    p = tmp_path / "reversed.safetensors"
    save_file(dict(reversed(list(_tensors().items()))), str(p))
    assert weights_root(p) == weights_root(weights)


def test_root_changes_when_one_tensor_byte_changes(weights: Path) -> None:
    before = weights_root(weights)
    raw = bytearray(weights.read_bytes())
    raw[-1] ^= 0x01  # the last byte of the file belongs to some tensor's data
    weights.write_bytes(bytes(raw))
    assert weights_root(weights) != before


def test_root_changes_with_a_name_or_shape(tmp_path: Path, weights: Path) -> None:
    t = _tensors()
    t["h.0.weights"] = t.pop("h.0.weight")
    assert state_dict_root(t) != weights_root(weights)
    t = _tensors()
    t["h.0.weight"] = t["h.0.weight"].reshape(3, 4)
    assert state_dict_root(t) != weights_root(weights)


def test_every_tensor_has_a_verifying_proof(weights: Path) -> None:
    root = weights_root(weights)
    names, tree = weights_tree(weights)
    assert tree.root == root
    for i, name in enumerate(names):
        assert verify_proof(tree.proof(i), root, tree.levels[0][i])
        leaf, proof = tensor_proof(weights, name)
        assert verify_proof(proof, root, leaf)
    leaf, proof = tensor_proof(weights, "emb")
    assert not verify_proof(proof, root, leaf_hash(b"forged"))
    with pytest.raises(ConfigError, match="no tensor"):
        tensor_proof(weights, "missing")


def test_unreadable_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        weights_root(tmp_path / "absent.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="cannot read"):
        weights_root(junk)
