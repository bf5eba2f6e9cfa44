"""One training step as a static graph of reproducible operators, and its trace commitment (Verde, arXiv
2502.19405, section 3: the graph of a step is committed as a Merkle tree of (inputs, operator, output)).

A `Program` lists the step's **sources** (the state tensors of the checkpoint it starts from, the dataset
tensors and the batch indices) and then its **nodes**, in execution order; each node applies one operator of
`OPS` to earlier values and names its output. The same program, built from the job's config and the step
number, is what the solver runs, what a verifier replays and what a dispute bisects.

Every value has a digest: `tensor_digest(name, t)` is the leaf `veriml.models.weights` gives a tensor of
that name in a safetensors file, so a source's digest is its leaf in the checkpoint's (or dataset's) weights
root and needs nothing new to be proved. A step's **trace** is one `Record` per source and per node:
`(index, op digest, inputs digest, output digest)`, hashed into a leaf that binds its position; its Merkle
root (`veriml.verify.merkle`, OpenZeppelin-compatible) is the step's commitment.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from eth_hash.auto import keccak
from torch import Tensor

from veriml.models.weights import tensor_leaf_data
from veriml.training import repops
from veriml.verify.merkle import MerkleTree, leaf_hash

# The operators a program may use, by name. Tensor arguments first (the node's inputs), then keyword attrs.
OPS: dict[str, Callable[..., Tensor]] = {
    "gather": repops.gather,
    "linear": repops.linear,
    "relu": repops.relu,
    "relu_grad": repops.relu_grad,
    "mul": torch.mul,
    "dropout_mask": repops.dropout_mask,
    "ce_loss": repops.ce_loss,
    "ce_grad": repops.ce_grad,
    "matmul": repops.matmul,
    "matmul_tn": lambda a, b: repops.matmul(a.t(), b),
    "sum_rows": lambda g: repops.tree_sum(g, 0),
    "lerp_state": repops.lerp_state,
    "sgd_apply": repops.sgd_apply,
    "scale": repops.scale,
    "adam_apply": repops.adam_apply,
    # the transformer block's
    "add": repops.add,
    "to_tokens": repops.to_tokens,
    "tile_rows": repops.tile_rows,
    "mean_tokens": repops.mean_tokens,
    "unpool_tokens": repops.unpool_tokens,
    "sum_over_batch": repops.sum_over_batch,
    "layernorm": repops.layernorm,
    "layernorm_grad_x": repops.layernorm_grad_x,
    "layernorm_grad_w": repops.layernorm_grad_w,
    "attn_probs": repops.attn_probs,
    "attn_apply": repops.attn_apply,
    "attn_grad_p": repops.attn_grad_p,
    "attn_grad_v": repops.attn_grad_v,
    "attn_grad_scores": repops.attn_grad_scores,
    "attn_grad_q": repops.attn_grad_q,
    "attn_grad_k": repops.attn_grad_k,
}

_DTYPES = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32"}
EMPTY = keccak(b"")


def tensor_digest(name: str, t: Tensor) -> bytes:
    """The leaf of tensor `name` in a weights root (`veriml.models.weights`): keccak(keccak(name|dtype|shape|raw))."""
    if sys.byteorder != "little":
        raise RuntimeError("tensor digests need a little-endian machine")
    raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return leaf_hash(tensor_leaf_data(name, _DTYPES[t.dtype], tuple(t.shape), raw))


@dataclass(frozen=True)
class Node:
    """`output = OPS[op](*inputs, **attrs)`."""

    op: str
    inputs: tuple[str, ...]
    output: str
    attrs: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"unknown operator {self.op!r}")

    @cached_property
    def spec(self) -> bytes:
        """Digest of what the node does: operator, attrs (repr, exact for floats), input and output names."""
        return keccak(repr((self.op, self.attrs, self.inputs, self.output)).encode())

    def apply(self, args: Sequence[Tensor]) -> Tensor:
        return OPS[self.op](*args, **dict(self.attrs))


def source_spec(name: str) -> bytes:
    return keccak(repr(("source", name)).encode())


@dataclass(frozen=True)
class Program:
    """A step: the names of its sources, then its nodes in execution order."""

    sources: tuple[str, ...]
    nodes: tuple[Node, ...]

    def __post_init__(self) -> None:
        seen = set(self.sources)
        for n in self.nodes:
            missing = [i for i in n.inputs if i not in seen]
            if missing or n.output in seen:
                raise ValueError(f"node {n.output!r}: inputs {missing} undefined or output defined twice")
            seen.add(n.output)

    def __len__(self) -> int:
        return len(self.sources) + len(self.nodes)

    def name_at(self, index: int) -> str:
        """The value record `index` names (sources first, then node outputs)."""
        s = len(self.sources)
        return self.sources[index] if index < s else self.nodes[index - s].output

    def producer(self) -> dict[str, int]:
        """Record index of each value name."""
        return {self.name_at(i): i for i in range(len(self))}


CHUNK = 16  # elements per leaf of a value's chunk tree (64 bytes of float32)


def chunk_leaves(t: Tensor) -> list[bytes]:
    """Leaves of a value's chunk tree: leaf_hash(uint64 c | raw bytes of elements 16c .. 16c + 15)."""
    raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    step = CHUNK * t.element_size()
    return [leaf_hash(struct.pack(">Q", c) + raw[o : o + step]) for c, o in enumerate(range(0, max(len(raw), 1), step))]


def chunk_tree(t: Tensor) -> MerkleTree:
    return MerkleTree.from_leaves(chunk_leaves(t))


def value_chunks(name: str, t: Tensor) -> bytes:
    """The chunk root a record carries. Dataset tensors (`data.*`) carry none (EMPTY): only `gather` reads
    them, which has no element-level check, and chunking the whole dataset in every trace would dominate it."""
    return EMPTY if name.startswith("data.") else chunk_tree(t).root


@dataclass(frozen=True)
class Record:
    """One trace entry: position, what was done, a digest of its inputs' digests, the output's digest, and the
    root of the output's chunk tree (what the element-level narrowing descends; `veriml.training.element`)."""

    index: int
    op: bytes
    inputs: bytes
    output: bytes
    chunks: bytes = EMPTY

    @property
    def leaf(self) -> bytes:
        return leaf_hash(struct.pack(">Q", self.index) + self.op + self.inputs + self.output + self.chunks)


ROOT_SPEC = keccak(b"state_root")


def root_record(index: int, next_digests: Sequence[bytes], root: bytes) -> Record:
    """A step trace's last record: the weights root of the next state, from the digests of its `next:` values
    (in state-name order), so the trace ends in the checkpoint root that the step bisection compared."""
    return Record(index, ROOT_SPEC, inputs_digest(next_digests), root)


def inputs_digest(digests: Sequence[bytes]) -> bytes:
    return keccak(b"".join(digests)) if digests else EMPTY


@dataclass(frozen=True)
class StepTrace:
    """The records of one executed step and their Merkle tree."""

    records: tuple[Record, ...]
    tree: MerkleTree = field(repr=False)

    @classmethod
    def of(cls, records: Sequence[Record]) -> StepTrace:
        return cls(tuple(records), MerkleTree.from_leaves([r.leaf for r in records]))

    @property
    def root(self) -> bytes:
        return self.tree.root

    def with_last(self, record: Record) -> StepTrace:
        """The same trace with its last record replaced (what a party claiming another end state shows)."""
        return StepTrace.of([*self.records[:-1], record])


Tamper = Callable[[int, Tensor], Tensor]


def execute(
    program: Program, sources: Mapping[str, Tensor], trace: bool = False, tamper: Tamper | None = None
) -> tuple[dict[str, Tensor], StepTrace | None]:
    """Run the program on its sources; with `trace`, also record every value's digest.

    `tamper(index, value)` may replace the value of record `index` (fault injection: later nodes use it)."""
    values: dict[str, Tensor] = {}
    digests: dict[str, bytes] = {}
    records: list[Record] = []
    for i, name in enumerate(program.sources):
        t = sources[name]
        if tamper is not None:
            t = tamper(i, t)
        values[name] = t
        if trace:
            digests[name] = tensor_digest(name, t)
            records.append(Record(i, source_spec(name), EMPTY, digests[name], value_chunks(name, t)))
    s = len(program.sources)
    for j, node in enumerate(program.nodes):
        out = node.apply([values[n] for n in node.inputs])
        if tamper is not None:
            out = tamper(s + j, out)
        values[node.output] = out
        if trace:
            digests[node.output] = tensor_digest(node.output, out)
            ins = inputs_digest([digests[n] for n in node.inputs])
            records.append(Record(s + j, node.spec, ins, digests[node.output], value_chunks(node.output, out)))
    return values, (StepTrace.of(records) if trace else None)
