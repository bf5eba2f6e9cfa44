"""Merkle commitments to a safetensors weights file: one leaf per tensor, so one layer can be proved alone.

Leaf data for a tensor is `name \\0 dtype \\0 shape \\0 raw`, where dtype is the safetensors dtype
string ("F32", "BF16", ...), shape is comma-separated decimal dims ("" for a scalar) and raw is the
tensor's little-endian bytes exactly as stored. Leaves are sorted by tensor name and combined with
`veriml.verify.merkle`, so a proof for one tensor verifies with OpenZeppelin's `MerkleProof` against the
manifest's weights root.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from os import PathLike

import torch
from safetensors import SafetensorError, safe_open

from veriml.errors import ConfigError
from veriml.verify.merkle import MerkleTree, leaf_hash, merkle_root

StrPath = str | PathLike[str]


def tensor_leaf_data(name: str, dtype: str, shape: list[int] | tuple[int, ...], raw: bytes) -> bytes:
    """The bytes a tensor's leaf commits to (before `leaf_hash`)."""
    dims = ",".join(str(int(d)) for d in shape)
    return b"\x00".join((name.encode("utf-8"), dtype.encode("ascii"), dims.encode("ascii"), raw))


def _raw_bytes(t: torch.Tensor) -> bytes:
    # safetensors stores little-endian; torch hands back native order, which is the same on the machines
    # we support. Refuse rather than commit to byte-swapped data elsewhere.
    if sys.byteorder != "little":
        raise ConfigError("weights commitments need a little-endian machine")
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def tensor_leaves(path: StrPath) -> list[tuple[str, bytes]]:
    """`(name, leaf)` for every tensor in the file, sorted by name; the leaf is already `leaf_hash`ed."""
    try:
        with safe_open(str(path), framework="pt") as f:
            out = []
            for name in sorted(f.keys()):
                sl = f.get_slice(name)
                raw = _raw_bytes(f.get_tensor(name))
                out.append((name, leaf_hash(tensor_leaf_data(name, sl.get_dtype(), sl.get_shape(), raw))))
    except (OSError, SafetensorError) as e:  # missing file, or not a safetensors file
        raise ConfigError(f"cannot read weights file {path}: {e}") from e
    if not out:
        raise ConfigError(f"weights file {path} holds no tensors")
    return out


# torch dtype -> the safetensors dtype string, so in-memory tensors hash exactly as they would once saved.
_ST_DTYPES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint64: "U64",
    torch.uint32: "U32",
    torch.uint16: "U16",
    torch.uint8: "U8",
    torch.bool: "BOOL",
    torch.float8_e4m3fn: "F8_E4M3",
    torch.float8_e5m2: "F8_E5M2",
}


def state_dict_root(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """The root `weights_root` would give for a file holding exactly these tensors."""
    if not tensors:
        raise ConfigError("cannot commit to an empty set of tensors")
    leaves = []
    for name in sorted(tensors):
        t = tensors[name]
        if t.dtype not in _ST_DTYPES:
            raise ConfigError(f"tensor {name!r} has dtype {t.dtype}, which safetensors cannot store")
        leaves.append(leaf_hash(tensor_leaf_data(name, _ST_DTYPES[t.dtype], tuple(t.shape), _raw_bytes(t))))
    return merkle_root(leaves)


def weights_tree(path: StrPath) -> tuple[list[str], MerkleTree]:
    """Tensor names (leaf order) and the Merkle tree over their leaves."""
    leaves = tensor_leaves(path)
    return [n for n, _ in leaves], MerkleTree.from_leaves([h for _, h in leaves])


def tensor_proof(path: StrPath, name: str) -> tuple[bytes, list[bytes]]:
    """`(leaf, proof)` showing that tensor `name` is in the file's weights root."""
    names, tree = weights_tree(path)
    if name not in names:
        raise ConfigError(f"no tensor named {name!r} in {path}")
    i = names.index(name)
    return tree.levels[0][i], tree.proof(i)


def weights_root(path: StrPath) -> bytes:
    """The 32-byte Merkle root committing to every tensor in a safetensors file."""
    return merkle_root([h for _, h in tensor_leaves(path)])
