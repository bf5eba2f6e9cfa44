"""A one-block transformer classifier on the reproducible operators, as a step `Program`.

Each example's `sizes[0]` features are read as `tokens` tokens (an 8x8 digit: 8 rows of 8 pixels). Pre-norm
block, one attention head:

    h0 = emb(tokens) + pos;  h1 = h0 + o(attn(ln1(h0)));  h2 = h1 + ff2(relu(ff1(ln2(h1))))
    logits = head(mean over tokens of h2)

The backward pass is written out node by node (no autograd), so each of its operators has a fixed rounding
order and a place in the step's trace.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from veriml.training import repops
from veriml.training.graph import Node, Program
from veriml.training.mlp import ONES, ZEROS, TrainConfig, optimizer_nodes, state_names

LINEARS = ("emb", "q", "k", "v", "o", "ff1", "ff2", "head")


def _dims(cfg: TrainConfig) -> dict[str, tuple[int, int]]:
    """(out, in) of every linear layer."""
    d, f, c = cfg.d_model, cfg.d_ff, cfg.sizes[-1]
    td = cfg.sizes[0] // cfg.tokens
    return {"emb": (d, td), "q": (d, d), "k": (d, d), "v": (d, d), "o": (d, d), "ff1": (f, d), "ff2": (d, f),
            "head": (c, d)}  # fmt: skip


def block_param_specs(cfg: TrainConfig) -> list[tuple[str, tuple[int, ...], int]]:
    dims = _dims(cfg)
    out: list[tuple[str, tuple[int, ...], int]] = []
    for name in LINEARS:
        fo, fi = dims[name]
        out += [(f"{name}.weight", (fo, fi), fi), (f"{name}.bias", (fo,), fi)]
    d = cfg.d_model
    out.append(("pos", (cfg.tokens, d), d))
    for ln in ("ln1", "ln2"):
        out += [(f"{ln}.weight", (d,), ONES), (f"{ln}.bias", (d,), ZEROS)]
    return out


def block_program(cfg: TrainConfig, step: int) -> Program:
    T, d = cfg.tokens, cfg.d_model
    tk = (("tokens", T),)
    n: list[Node] = []

    def add(op: str, ins: tuple[str, ...], out: str, attrs: tuple = ()) -> None:
        n.append(Node(op, ins, out, attrs))

    def lin(x: str, layer: str, out: str) -> None:
        add("linear", (x, f"{layer}.weight", f"{layer}.bias"), out)

    def lin_grads(g: str, x: str, layer: str) -> None:
        add("matmul_tn", (g, x), f"grad:{layer}.weight")
        add("sum_rows", (g,), f"grad:{layer}.bias")

    # forward
    add("gather", ("data.x", "indices"), "x")
    add("gather", ("data.y", "indices"), "y")
    add("to_tokens", ("x",), "tok", tk)
    lin("tok", "emb", "e")
    add("tile_rows", ("pos",), "posb", (("batch", cfg.batch),))
    add("add", ("e", "posb"), "h0")
    add("layernorm", ("h0", "ln1.weight", "ln1.bias"), "n1")
    for layer in ("q", "k", "v"):
        lin("n1", layer, layer)
    add("attn_probs", ("q", "k"), "p", tk)
    add("attn_apply", ("p", "v"), "att", tk)
    lin("att", "o", "a")
    add("add", ("h0", "a"), "h1")
    add("layernorm", ("h1", "ln2.weight", "ln2.bias"), "n2")
    lin("n2", "ff1", "f1")
    add("relu", ("f1",), "r")
    lin("r", "ff2", "f2")
    add("add", ("h1", "f2"), "h2")
    add("mean_tokens", ("h2",), "pooled", tk)
    lin("pooled", "head", "z")
    add("ce_loss", ("z", "y"), "loss")
    # backward
    add("ce_grad", ("z", "y"), "dz")
    lin_grads("dz", "pooled", "head")
    add("matmul", ("dz", "head.weight"), "dpooled")
    add("unpool_tokens", ("dpooled",), "dh2", tk)
    lin_grads("dh2", "r", "ff2")
    add("matmul", ("dh2", "ff2.weight"), "dr")
    add("relu_grad", ("dr", "f1"), "df1")
    lin_grads("df1", "n2", "ff1")
    add("matmul", ("df1", "ff1.weight"), "dn2")
    add("layernorm_grad_x", ("h1", "ln2.weight", "dn2"), "dh1_ln")
    add("layernorm_grad_w", ("h1", "dn2"), "grad:ln2.weight")
    add("sum_rows", ("dn2",), "grad:ln2.bias")
    add("add", ("dh2", "dh1_ln"), "dh1")
    lin_grads("dh1", "att", "o")
    add("matmul", ("dh1", "o.weight"), "datt")
    add("attn_grad_p", ("datt", "v"), "dp", tk)
    add("attn_grad_v", ("p", "datt"), "dv", tk)
    add("attn_grad_scores", ("p", "dp"), "ds", (("d", d),))
    add("attn_grad_q", ("ds", "k"), "dq", tk)
    add("attn_grad_k", ("ds", "q"), "dk", tk)
    for layer in ("q", "k", "v"):
        lin_grads(f"d{layer}", "n1", layer)
        add("matmul", (f"d{layer}", f"{layer}.weight"), f"dn1_{layer}")
    add("add", ("dn1_q", "dn1_k"), "dn1_qk")
    add("add", ("dn1_qk", "dn1_v"), "dn1")
    add("layernorm_grad_x", ("h0", "ln1.weight", "dn1"), "dh0_ln")
    add("layernorm_grad_w", ("h0", "dn1"), "grad:ln1.weight")
    add("sum_rows", ("dn1",), "grad:ln1.bias")
    add("add", ("dh1", "dh0_ln"), "dh0")
    add("sum_over_batch", ("dh0",), "grad:pos", tk)
    lin_grads("dh0", "tok", "emb")
    n += optimizer_nodes(cfg)
    return Program((*state_names(cfg), "data.x", "data.y", "indices"), tuple(n))


def block_logits(cfg: TrainConfig, state: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """The forward pass alone, for predictions."""
    T = cfg.tokens
    s = state

    def lin(h: Tensor, layer: str) -> Tensor:
        return repops.linear(h, s[f"{layer}.weight"], s[f"{layer}.bias"])

    h0 = lin(repops.to_tokens(x, T), "emb") + repops.tile_rows(s["pos"], x.shape[0])
    n1 = repops.layernorm(h0, s["ln1.weight"], s["ln1.bias"])
    p = repops.attn_probs(lin(n1, "q"), lin(n1, "k"), T)
    h1 = h0 + lin(repops.attn_apply(p, lin(n1, "v"), T), "o")
    n2 = repops.layernorm(h1, s["ln2.weight"], s["ln2.bias"])
    h2 = h1 + lin(repops.relu(lin(n2, "ff1")), "ff2")
    return lin(repops.mean_tokens(h2, T), "head")
