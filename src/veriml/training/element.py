"""The third narrowing level of a training dispute: inside the disputed operator, down to one chunk of 16
output elements, recomputed from the few input elements it depends on with scalar float32 arithmetic.

Each trace record carries the root of its value's chunk tree (`graph.chunk_leaves`: leaf c holds elements
16c..16c+15). Once `dispute` has found the first differing record, `first_difference` over the two parties'
chunk trees finds the first differing chunk (ceil(log2 chunks) rounds). The chunk referee takes each party's
chunk with its proof against that party's record, and the input elements the chunk needs, each in a chunk
proved against an input record both parties committed. It recomputes the 16 elements and rules for the
party whose chunk they match.

The recomputation (`element_value`) uses numpy float32 *scalars*, one IEEE operation at a time, in the same
order as `repops`: the pairwise tree over K for a dot product, the same constant roundings. It gives the
tensor kernels' bits (tests/training/test_element.py checks every element of every supported operator of a
step). A float32 soft-float contract could follow the same order to referee an element on-chain; the cost
per element is O(K) for a dot product and O(1) for an elementwise op.

Supported: the linear algebra (linear, matmul, matmul_tn, sum_rows) and the elementwise and optimizer ops.
Row-coupled ops (softmax, cross-entropy, layernorm, attention, gather) go to the operator-level referee.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from veriml.training.graph import CHUNK, Node, Record, chunk_tree
from veriml.verify.merkle import MerkleTree, leaf_hash, verify_proof
from veriml.verify.pinpoint import Pinpoint, first_difference

F = np.float32
ELEMENTWISE = {"relu", "relu_grad", "mul", "add", "lerp_state", "sgd_apply", "scale", "adam_apply"}
DOTS = {"linear", "matmul", "matmul_tn", "sum_rows"}


def supports(node: Node) -> bool:
    return node.op in ELEMENTWISE or node.op in DOTS


def _tree(vals: list[np.float32]) -> np.float32:
    """`repops.tree_sum` on a list of scalars: halves added pairwise, the odd last one carried."""
    p = list(vals)
    while len(p) > 1:
        h = len(p) // 2
        s = [F(p[i] + p[h + i]) for i in range(h)]
        p = s + p[2 * h :] if len(p) % 2 else s
    return p[0]


def _c(x: float) -> np.float32:
    return F(x)


def needs(node: Node, shapes: Sequence[tuple[int, ...]], e: int) -> list[tuple[int, int]]:
    """(input position, flat index) of every input element that output element `e` depends on."""
    op = node.op
    if op in ELEMENTWISE:
        return [(k, e if math.prod(sh) > 1 else 0) for k, sh in enumerate(shapes)]
    if op == "linear":  # x [M, K], w [N, K], b [N] -> [M, N]
        (_, k), (n, _) = shapes[0], shapes[1]
        i, j = divmod(e, n)
        return [(0, i * k + t) for t in range(k)] + [(1, j * k + t) for t in range(k)] + [(2, j)]
    if op == "matmul":  # a [M, K], b [K, N]
        (_, k), (_, n) = shapes[0], shapes[1]
        i, j = divmod(e, n)
        return [(0, i * k + t) for t in range(k)] + [(1, t * n + j) for t in range(k)]
    if op == "matmul_tn":  # a [B, M], b [B, N] -> a^T b [M, N]
        (b, m), (_, n) = shapes[0], shapes[1]
        i, j = divmod(e, n)
        return [(0, t * m + i) for t in range(b)] + [(1, t * n + j) for t in range(b)]
    if op == "sum_rows":  # g [B, N] -> [N]
        b, n = shapes[0]
        return [(0, t * n + e) for t in range(b)]
    raise ValueError(f"operator {op} has no element-level check")


def element_value(
    node: Node, shapes: Sequence[tuple[int, ...]], e: int, get: Mapping[tuple[int, int], float]
) -> np.float32:
    """Output element `e` of `node` from the input elements `needs` lists (`get[(pos, flat)]`), as a float32
    scalar computed in `repops`' order."""
    a = dict(node.attrs)
    v = [F(get[key]) for key in needs(node, shapes, e)]
    op = node.op
    if op == "relu":
        return v[0] if v[0] > 0 else F(0)
    if op == "relu_grad":
        return v[0] if v[1] > 0 else F(0)
    if op == "mul":
        return F(v[0] * v[1])
    if op == "add":
        return F(v[0] + v[1])
    if op == "lerp_state":
        return F(F(v[0] * _c(a["beta"])) + F(v[1] * _c(a["gain"])))
    if op == "sgd_apply":
        return F(v[0] - F(v[1] * _c(a["lr"])))
    if op == "scale":
        return F(v[0] * _c(a["factor"]))
    if op == "adam_apply":
        w, m, s, b1t, b2t = v
        one = F(1)
        denom = F(F(np.sqrt(F(s / F(one - b2t)))) + _c(a["eps"]))
        return F(w - F(F(F(m / F(one - b1t)) / denom) * _c(a["lr"])))
    if op == "linear":
        k = shapes[0][1]
        return F(_tree([F(v[t] * v[k + t]) for t in range(k)]) + v[2 * k])
    if op in ("matmul", "matmul_tn"):
        k = len(v) // 2
        return _tree([F(v[t] * v[k + t]) for t in range(k)])
    if op == "sum_rows":
        return _tree(v)
    raise ValueError(f"operator {op} has no element-level check")


# ---- the chunk referee ----
def chunk_leaf(c: int, raw: bytes) -> bytes:
    """The chunk tree's leaf c (`graph.chunk_leaves`)."""
    return leaf_hash(struct.pack(">Q", c) + raw)


@dataclass(frozen=True, eq=False)
class ChunkClaim:
    """A party's disputed chunk: its raw bytes, proved against the chunk root in its record."""

    record: Record
    raw: bytes
    proof: Sequence[bytes]


@dataclass(frozen=True, eq=False)
class InputChunk:
    """One chunk of input `pos`, proved against that input's record (which both parties committed)."""

    pos: int
    chunk: int
    raw: bytes
    proof: Sequence[bytes] = field(repr=False)


@dataclass(frozen=True)
class ChunkRuling:
    winner: str  # "a", "b" or "neither"
    chunk: int
    reason: str


def chunk_referee(
    node: Node,
    shapes: Sequence[tuple[int, ...]],
    out_numel: int,
    chunk: int,
    a: ChunkClaim,
    b: ChunkClaim,
    input_records: Sequence[Record],
    evidence: Sequence[InputChunk],
) -> ChunkRuling:
    """Recompute output chunk `chunk` of `node` from proved input chunks; rule for the party it matches.

    `input_records[pos]` are the (agreed) records of the node's inputs; float32 values only."""
    get: dict[tuple[int, int], float] = {}
    for ev in evidence:
        if not verify_proof(ev.proof, input_records[ev.pos].chunks, chunk_leaf(ev.chunk, ev.raw)):
            return ChunkRuling("neither", chunk, f"input {ev.pos} chunk {ev.chunk} is not in its record")
        vals = np.frombuffer(ev.raw, dtype="<f4")
        for k, x in enumerate(vals):
            get[(ev.pos, ev.chunk * CHUNK + k)] = x
    lo, hi = chunk * CHUNK, min((chunk + 1) * CHUNK, out_numel)
    try:
        truth = np.array([element_value(node, shapes, e, get) for e in range(lo, hi)], dtype="<f4").tobytes()
    except KeyError as missing:
        return ChunkRuling("neither", chunk, f"input element {missing} was not handed over")
    ok = {}
    for side, claim in (("a", a), ("b", b)):
        ok[side] = verify_proof(claim.proof, claim.record.chunks, chunk_leaf(chunk, claim.raw)) and claim.raw == truth
    if ok["a"] == ok["b"]:
        return ChunkRuling("neither", chunk, "both chunks are right" if ok["a"] else "neither chunk is right")
    winner = "a" if ok["a"] else "b"
    return ChunkRuling(winner, chunk, f"recomputed elements {lo}..{hi - 1}: they match {winner}")


def input_evidence(
    node: Node, values: Sequence[np.ndarray], chunk: int, out_numel: int, trees: Sequence[MerkleTree]
) -> list[InputChunk]:
    """The input chunks output chunk `chunk` needs, from the (honest) input arrays and their chunk trees."""
    shapes = [tuple(x.shape) for x in values]
    wanted = sorted({(pos, flat // CHUNK) for e in range(chunk * CHUNK, min((chunk + 1) * CHUNK, out_numel))
                     for pos, flat in needs(node, shapes, e)})  # fmt: skip
    out = []
    for pos, c in wanted:
        flat = np.ascontiguousarray(values[pos], dtype="<f4").reshape(-1)
        raw = flat[c * CHUNK : (c + 1) * CHUNK].tobytes()
        out.append(InputChunk(pos, c, raw, trees[pos].proof(c)))
    return out


def settle_chunk(
    node: Node,
    inputs: Sequence[np.ndarray],
    out_a: np.ndarray,
    out_b: np.ndarray,
    rec_a: Record,
    rec_b: Record,
    input_records: Sequence[Record],
) -> tuple[Pinpoint, ChunkRuling]:
    """Play the element level: descend the parties' chunk trees of the disputed output to the first differing
    chunk, gather the input chunks it needs (from the honest inputs, which both parties committed), and rule.
    Returns (the pinpoint, the ruling)."""
    ta, tb = chunk_tree(torch.from_numpy(out_a)), chunk_tree(torch.from_numpy(out_b))
    where = first_difference(ta, tb)
    c = where.index

    def claim(rec: Record, out: np.ndarray, tree: MerkleTree) -> ChunkClaim:
        flat = np.ascontiguousarray(out, dtype="<f4").reshape(-1)
        return ChunkClaim(rec, flat[c * CHUNK : (c + 1) * CHUNK].tobytes(), tree.proof(c))

    trees = [chunk_tree(torch.from_numpy(np.ascontiguousarray(x))) for x in inputs]
    evidence = input_evidence(node, inputs, c, out_a.size, trees)
    shapes = [tuple(x.shape) for x in inputs]
    ruling = chunk_referee(node, shapes, out_a.size, c, claim(rec_a, out_a, ta), claim(rec_b, out_b, tb),
                           input_records, evidence)  # fmt: skip
    return where, ruling
