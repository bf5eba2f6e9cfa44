"""Reproducible training operators: float32 kernels whose every rounding is fixed by the tensor shapes alone,
so an honest solver and an honest verifier get bit-identical results whatever torch's thread count or the
CPU's vector width (RepOps, Verde: arXiv 2502.19405, section 4).

Why the results are order-fixed. IEEE 754 makes each single operation (+, -, *, /, sqrt) return the
correctly rounded result of its exact inputs, so an *elementwise* op gives the same bits on every element
however the work is split between threads or SIMD lanes. What breaks reproducibility is a *reduction*
(a sum, a matmul) whose association order depends on blocking, threading or the BLAS kernel, and fused or
approximate kernels (FMA contraction, vectorized `exp` from a math library). So this module:

- builds every reduction from elementwise adds in a fixed pairwise tree (`tree_sum`): element i of the
  first half plus element i of the second half, the odd last one carried, level by level; the tree depends
  only on the reduced length;
- computes a matmul as elementwise products followed by `tree_sum` over the inner dimension (never BLAS);
- never uses a fused kernel: `a * b + c` is two kernels (eager torch does not fuse), and the only ops used
  are mul, add, sub, div by a same-shaped tensor, max, comparisons, where, gather, frexp, nextafter, and
  integer bit construction of 2^n, which are exact or correctly rounded;
- takes sqrt from `rep_sqrt`, which corrects torch's (not correctly rounded: 1 result in 6 is 1 ulp off on
  this CPU build) with an exact float64 midpoint test;
- computes `exp` and `log` itself (`rep_exp`, `rep_log`: range reduction and a polynomial of those ops),
  since torch's vectorized and scalar `exp` need not agree to the last bit;
- takes constants as float32 tensors broadcast to the operand's shape, so no kernel turns a division by a
  scalar into a multiplication by its reciprocal.

What this does not cover: denormals flushed to zero (torch leaves FTZ off on CPU unless
`torch.set_flush_denormal(True)`), and a torch whose elementwise kernels stop being correctly rounded. The
price is memory and speed: a matmul materializes its M x K x N products (see benchmarks/repro_training.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

F32 = torch.float32


def const(value: float, like: Tensor) -> Tensor:
    """`value` rounded to float32, broadcast to `like`'s shape (materialized, so no scalar fast path)."""
    return torch.full_like(like, float(torch.tensor(value, dtype=F32)), dtype=F32)


def tree_sum(x: Tensor, dim: int) -> Tensor:
    """Sum over `dim` in a fixed pairwise tree: halves added elementwise, the odd last slice carried."""
    p = x.movedim(dim, 0)
    while p.shape[0] > 1:
        n = p.shape[0]
        h = n // 2
        s = p[:h] + p[h : 2 * h]
        p = torch.cat([s, p[2 * h :]]) if n % 2 else s
    return p[0]


def tree_max(x: Tensor, dim: int) -> Tensor:
    """Max over `dim` by the same pairwise tree (max is exact in any order; this keeps to elementwise ops)."""
    p = x.movedim(dim, 0)
    while p.shape[0] > 1:
        n = p.shape[0]
        h = n // 2
        s = torch.maximum(p[:h], p[h : 2 * h])
        p = torch.cat([s, p[2 * h :]]) if n % 2 else s
    return p[0]


CHUNK = 1 << 18  # products materialized at once (1 MiB of float32): a cache-sized block


def matmul(a: Tensor, b: Tensor) -> Tensor:
    """a [M, K] @ b [K, N]: products elementwise, then `tree_sum` over K. Large products are done in blocks
    of output columns; each output element's tree over K is the same either way, so the bits are too."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"matmul shapes {tuple(a.shape)} @ {tuple(b.shape)}")
    m, k = a.shape
    n = b.shape[1]
    cols = max(1, CHUNK // max(1, m * k))
    if cols * 4 >= n:
        return tree_sum(a.unsqueeze(2) * b.unsqueeze(0), 1)
    parts = [tree_sum(a.unsqueeze(2) * b[:, j : j + cols].unsqueeze(0), 1) for j in range(0, n, cols)]
    return torch.cat(parts, 1)


def linear(x: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """nn.Linear's x @ w^T + b, with w [out, in]."""
    return matmul(x, w.t()) + b.unsqueeze(0).expand(x.shape[0], -1)


def relu(z: Tensor) -> Tensor:
    return torch.where(z > 0, z, torch.zeros_like(z))


def relu_grad(g: Tensor, z: Tensor) -> Tensor:
    """The gradient through ReLU: g where z > 0, else 0 (torch's convention at 0)."""
    return torch.where(z > 0, g, torch.zeros_like(g))


# exp: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite: ln2 split so n * LN2_HI is exact for |n| < 2^8),
# exp(r) by its degree-7 Taylor polynomial in Horner form (error below 2^-23 on that range), times 2^n.
_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125  # 15 significant bits
_LN2_LO = 1.4286068203094172e-06
_EXP_COEFFS = [1.0 / math.factorial(k) for k in range(7, -1, -1)]


def pow2(n: Tensor) -> Tensor:
    """2^n for integer-valued float32 n in [-126, 127], built from its exponent bits (exact)."""
    return ((n.to(torch.int32) + 127) << 23).view(F32)


def rep_exp(x: Tensor) -> Tensor:
    """exp(x) in float32 from exactly rounded ops only; inputs clamped to [-87, 88] (the normal range)."""
    x = torch.clamp(x, -87.0, 88.0)
    n = torch.round(x * const(_LOG2E, x))
    r = (x - n * const(_LN2_HI, x)) - n * const(_LN2_LO, x)
    p = const(_EXP_COEFFS[0], x)
    for c in _EXP_COEFFS[1:]:
        p = p * r + const(c, x)
    return p * pow2(n)


_SQRT_HALF = 0.7071067811865476
_LN2 = 0.6931471805599453


def rep_log(x: Tensor) -> Tensor:
    """log(x) for x > 0 (smaller values clamped to 1e-30): x = m 2^e with m in [sqrt(1/2), sqrt(2)), then
    log m = 2 atanh(s), s = (m - 1) / (m + 1), by its odd series to s^11 (|s| < 0.172)."""
    x = torch.clamp(x, min=1e-30)
    m, e = torch.frexp(x)  # m in [0.5, 1)
    small = m < const(_SQRT_HALF, m)
    m = torch.where(small, m + m, m)
    e = torch.where(small, e - 1, e).to(F32)
    one = const(1.0, m)
    s = (m - one) / (m + one)
    s2 = s * s
    p = const(1.0 / 11, s)
    for k in (9, 7, 5, 3):
        p = p * s2 + const(1.0 / k, s)
    p = p * s2 + one
    return (s + s) * p + e * const(_LN2, e)


def softmax(z: Tensor) -> Tensor:
    """Row softmax: exp(z - max) / its `tree_sum`."""
    m = tree_max(z, 1).unsqueeze(1).expand_as(z)
    e = rep_exp(z - m)
    s = tree_sum(e, 1).unsqueeze(1).expand_as(e)
    return e / s


def ce_loss(z: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of logits z [B, C] against labels y [B], as a 1-element tensor."""
    p = softmax(z).gather(1, y.unsqueeze(1)).squeeze(1)
    nll = -rep_log(p)
    return (tree_sum(nll, 0) * torch.tensor(1.0 / z.shape[0], dtype=F32)).reshape(1)


def ce_grad(z: Tensor, y: Tensor) -> Tensor:
    """d(mean cross-entropy)/dz = (softmax(z) - onehot(y)) / B."""
    p = softmax(z)
    onehot = torch.zeros_like(p).scatter(1, y.unsqueeze(1), 1.0)
    return (p - onehot) * const(1.0 / z.shape[0], p)


def dropout_mask(seed: int, step: int, layer: int, rows: int, cols: int, p: float) -> Tensor:
    """Inverted-dropout mask: 0 with probability p, else 1 / (1 - p); drawn from the counter-based RNG."""
    from veriml.training.rng import Stream, uniform_f32

    u = torch.from_numpy(uniform_f32(seed, Stream.DROPOUT, (step, layer), rows * cols)).reshape(rows, cols)
    keep = const(1.0 / (1.0 - p), u)
    return torch.where(u >= const(p, u), keep, torch.zeros_like(u))


def lerp_state(s: Tensor, g: Tensor, beta: float, gain: float) -> Tensor:
    """beta * s + gain * g (momentum: gain 1; Adam's moments: gain 1 - beta)."""
    return s * const(beta, s) + g * const(gain, g)


def sgd_apply(w: Tensor, v: Tensor, lr: float) -> Tensor:
    """w - lr * v (torch.optim.SGD with momentum, dampening 0, no Nesterov)."""
    return w - v * const(lr, v)


def scale(x: Tensor, factor: float) -> Tensor:
    """x * factor (Adam's running beta^t)."""
    return x * const(factor, x)


def rep_sqrt(x: Tensor) -> Tensor:
    """Correctly rounded float32 sqrt of x >= 0. torch 2.13's CPU `sqrt` is not: about 1 float32 result in 6
    is 1 ulp off (so is float64; measured in tests/training/test_repops.py). So: start from it, then move to
    the neighbour while x is outside the square of the midpoints around the candidate. A midpoint has 25
    significant bits, so its square (50 bits) is exact in float64 and the test is exact; each round moves
    one ulp and torch is within one, so two rounds suffice."""
    y = torch.sqrt(x)
    xd = x.double()
    down, up = torch.full_like(y, -math.inf), torch.full_like(y, math.inf)
    for _ in range(2):
        below, above = torch.nextafter(y, down), torch.nextafter(y, up)
        lo = (y.double() + below.double()) * 0.5
        hi = (y.double() + above.double()) * 0.5
        y = torch.where(xd < lo * lo, below, torch.where(xd > hi * hi, above, y))
    return torch.where(x == 0, x, y)


def adam_apply(w: Tensor, m: Tensor, v: Tensor, b1t: Tensor, b2t: Tensor, lr: float, eps: float) -> Tensor:
    """torch.optim.Adam's update with b1t = beta1^t and b2t = beta2^t carried in the state:
    w - lr * (m / (1 - b1t)) / (sqrt(v / (1 - b2t)) + eps)."""
    one = const(1.0, w)
    bc1 = one - b1t.expand_as(w)
    bc2 = one - b2t.expand_as(w)
    denom = rep_sqrt(v / bc2) + const(eps, w)
    return w - (m / bc1) / denom * const(lr, w)


def gather(t: Tensor, idx: Tensor) -> Tensor:
    """Rows `idx` of `t` (a copy; exact)."""
    return t.index_select(0, idx)


# ---- the transformer block's operators (veriml.training.block); rows are (batch, token) pairs ----
def bmm(a: Tensor, b: Tensor) -> Tensor:
    """Batched a [B, M, K] @ b [B, K, N] with the same products-then-`tree_sum` order as `matmul`."""
    if a.dim() != 3 or b.dim() != 3 or a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ValueError(f"bmm shapes {tuple(a.shape)} @ {tuple(b.shape)}")
    return tree_sum(a.unsqueeze(3) * b.unsqueeze(1), 2)


def add(a: Tensor, b: Tensor) -> Tensor:
    return a + b


def to_tokens(x: Tensor, tokens: int) -> Tensor:
    """[B, T * f] -> [B * T, f] (a view, copied)."""
    return x.reshape(x.shape[0] * tokens, -1).clone()


def tile_rows(pos: Tensor, batch: int) -> Tensor:
    """[T, d] -> [B * T, d]: the position table under every example."""
    return pos.repeat(batch, 1)


def mean_tokens(h: Tensor, tokens: int) -> Tensor:
    """[B * T, d] -> [B, d]: the mean over each example's tokens (tree sum times 1/T)."""
    s = tree_sum(h.reshape(-1, tokens, h.shape[1]), 1)
    return s * const(1.0 / tokens, s)


def unpool_tokens(g: Tensor, tokens: int) -> Tensor:
    """The gradient of `mean_tokens`: each example's row times 1/T, under each of its tokens."""
    return (g * const(1.0 / tokens, g)).repeat_interleave(tokens, dim=0)


def sum_over_batch(g: Tensor, tokens: int) -> Tensor:
    """[B * T, d] -> [T, d]: per position, the tree sum over examples (the position table's gradient)."""
    return tree_sum(g.reshape(-1, tokens, g.shape[1]), 0)


def _ln_parts(x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    d = x.shape[1]
    mu = (tree_sum(x, 1) * const(1.0 / d, x[:, 0])).unsqueeze(1).expand_as(x)
    xc = x - mu
    var = tree_sum(xc * xc, 1) * const(1.0 / d, x[:, 0])
    rstd = const(1.0, var) / rep_sqrt(var + const(eps, var))
    return xc * rstd.unsqueeze(1).expand_as(x), rstd


def layernorm(x: Tensor, w: Tensor, b: Tensor, eps: float = 1e-5) -> Tensor:
    """nn.LayerNorm over the last dim: (x - mean) / sqrt(var + eps) * w + b (biased variance)."""
    xhat, _ = _ln_parts(x, eps)
    return xhat * w.unsqueeze(0).expand_as(x) + b.unsqueeze(0).expand_as(x)


def layernorm_grad_x(x: Tensor, w: Tensor, dy: Tensor, eps: float = 1e-5) -> Tensor:
    """dL/dx of `layernorm`: rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * w."""
    xhat, rstd = _ln_parts(x, eps)
    d = x.shape[1]
    g = dy * w.unsqueeze(0).expand_as(dy)
    inv = const(1.0 / d, x[:, 0])
    m1 = (tree_sum(g, 1) * inv).unsqueeze(1).expand_as(g)
    m2 = (tree_sum(g * xhat, 1) * inv).unsqueeze(1).expand_as(g)
    return (g - m1 - xhat * m2) * rstd.unsqueeze(1).expand_as(g)


def layernorm_grad_w(x: Tensor, dy: Tensor, eps: float = 1e-5) -> Tensor:
    """dL/dw of `layernorm`: the tree sum over rows of dy * xhat."""
    xhat, _ = _ln_parts(x, eps)
    return tree_sum(dy * xhat, 0)


def _heads(t: Tensor, tokens: int) -> Tensor:
    return t.reshape(-1, tokens, t.shape[1])


def attn_probs(q: Tensor, k: Tensor, tokens: int) -> Tensor:
    """softmax(q k^T / sqrt(d)) per example: [B * T, d] x2 -> [B * T, T] (row i: token i's attention)."""
    s = bmm(_heads(q, tokens), _heads(k, tokens).transpose(1, 2)).reshape(-1, tokens)
    return softmax(s * const(1.0 / math.sqrt(q.shape[1]), s))


def attn_apply(p: Tensor, v: Tensor, tokens: int) -> Tensor:
    """p v per example: [B * T, T], [B * T, d] -> [B * T, d]."""
    return bmm(_heads(p, tokens), _heads(v, tokens)).reshape(-1, v.shape[1])


def attn_grad_p(do: Tensor, v: Tensor, tokens: int) -> Tensor:
    """dL/dp = do v^T per example."""
    return bmm(_heads(do, tokens), _heads(v, tokens).transpose(1, 2)).reshape(-1, tokens)


def attn_grad_v(p: Tensor, do: Tensor, tokens: int) -> Tensor:
    """dL/dv = p^T do per example."""
    return bmm(_heads(p, tokens).transpose(1, 2), _heads(do, tokens)).reshape(-1, do.shape[1])


def attn_grad_scores(p: Tensor, dp: Tensor, d: int) -> Tensor:
    """dL/d(q k^T), through the softmax and the 1/sqrt(d) scale: p * (dp - rowsum(dp * p)) / sqrt(d)."""
    r = tree_sum(dp * p, 1).unsqueeze(1).expand_as(p)
    ds = p * (dp - r)
    return ds * const(1.0 / math.sqrt(d), ds)


def attn_grad_q(ds: Tensor, k: Tensor, tokens: int) -> Tensor:
    """dL/dq = ds k per example."""
    return bmm(_heads(ds, tokens), _heads(k, tokens)).reshape(-1, k.shape[1])


def attn_grad_k(ds: Tensor, q: Tensor, tokens: int) -> Tensor:
    """dL/dk = ds^T q per example."""
    return bmm(_heads(ds, tokens).transpose(1, 2), _heads(q, tokens)).reshape(-1, q.shape[1])
