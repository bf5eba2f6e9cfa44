"""A nanoGPT-style byte-level GPT: every byte is a token, so no tokenizer has to be shipped or agreed on.

After Karpathy's nanoGPT (github.com/karpathy/nanoGPT), itself GPT-2 (Radford et al., 2019): pre-LayerNorm
blocks, learned absolute positions, GELU MLP, output head tied to the token embedding. Attention is written
out (no fused kernel) so the arithmetic is the same plain ops on every build, and there is no dropout at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

# Per-layer (keys, values), each (batch, n_head, seq, head_dim): what earlier positions contribute.
KVCache = list[tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class GPTConfig:
    """Shape of a TinyGPT; stored in the model's manifest as its architecture."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 192
    block_size: int = 128
    vocab_size: int = 256

    def __post_init__(self) -> None:
        for field in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"GPTConfig.{field} must be positive")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention that can extend a key/value cache."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        b, t, c = x.shape
        q, k, v = self.c_attn(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        if past is not None:
            k = torch.cat((past[0], k), dim=2)
            v = torch.cat((past[1], v), dim=2)
        s = k.size(2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        if t > 1:
            # Query i sits at absolute position s - t + i and may see keys 0 ..= s - t + i.
            allowed = torch.ones(t, s, dtype=torch.bool, device=x.device).tril(diagonal=s - t)
            att = att.masked_fill(~allowed, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).reshape(b, t, c)), (k, v)


class Block(nn.Module):
    """One pre-LayerNorm transformer block: attention then a 4x GELU MLP, each residual."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        )

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        a, kv = self.attn(self.ln_1(x), past)
        x = x + a
        return x + self.mlp(self.ln_2(x)), kv


class TinyGPT(nn.Module):
    """Byte-level GPT; `forward` returns logits for every position and the extended KV cache."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.apply(self._init_weights)
        # GPT-2's scaled init of the residual projections keeps the residual stream's variance in check.
        for name, p in self.named_parameters():
            if name.endswith(("attn.c_proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        """Number of parameters (the tied head is counted once)."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx: Tensor, cache: KVCache | None = None) -> tuple[Tensor, KVCache]:
        start = 0 if cache is None else cache[0][0].size(2)
        t = idx.size(1)
        if start + t > self.config.block_size:
            raise ValueError(f"sequence of {start + t} exceeds block_size {self.config.block_size}")
        pos = torch.arange(start, start + t, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        new_cache: KVCache = []
        for i, block in enumerate(self.h):
            x, kv = block(x, None if cache is None else cache[i])
            new_cache.append(kv)
        # Tied head: no separate lm_head tensor, so the weights file holds each array once.
        return F.linear(self.ln_f(x), self.wte.weight), new_cache


def _pick(logits: Tensor, gen: torch.Generator | None, temperature: float) -> int:
    if gen is None:
        return int(torch.argmax(logits))  # ties go to the lowest id, on every machine
    probs = F.softmax(logits / temperature, dim=-1)
    return int(torch.multinomial(probs, 1, generator=gen))


def generate(
    model: TinyGPT, prompt: bytes, max_new_tokens: int, seed: int | None = None, temperature: float = 1.0
) -> list[int]:
    """New token ids after `prompt`: greedy when `seed` is None, else seeded sampling at `temperature`."""
    if not prompt:
        raise ValueError("prompt must not be empty")
    if max_new_tokens < 0:
        raise ValueError("max_new_tokens must be >= 0")
    if temperature <= 0:
        raise ValueError("temperature must be > 0")
    # A local generator: the global RNG stays untouched and concurrent callers cannot perturb each other.
    gen = None if seed is None else torch.Generator().manual_seed(seed)
    bs = model.config.block_size
    ids = list(prompt)
    out: list[int] = []
    with torch.inference_mode():
        window = ids[-bs:]  # nanoGPT crops the context to the last block_size tokens
        logits, cache = model(torch.tensor([window]))
        while len(out) < max_new_tokens:
            nxt = _pick(logits[0, -1], gen, temperature)
            out.append(nxt)
            ids.append(nxt)
            if len(out) == max_new_tokens:
                break
            if len(window) < bs:
                window.append(nxt)
                logits, cache = model(torch.tensor([[nxt]]), cache)
            else:
                # Positions are absolute, so a sliding window must be recomputed, not shifted.
                window = ids[-bs:]
                logits, cache = model(torch.tensor([window]))
    return out
