"""A tiny class-conditioned image generator: (class, seed) -> latent -> 64x64 RGB picture of a shape.

The image counterpart of `tiny_gpt`: small enough to run on any CPU in milliseconds, real enough that
threads, batch size, bfloat16 and another backend move its floats (which is what the `phash` policy is
for). It is a structured neural renderer, so that it trains in minutes on two CPU cores:

- a *scene* MLP maps (latent, class embedding) to a pose (centre, rotation, size), two colours and a
  background light direction;
- a *shape field*, a class-conditioned coordinate MLP on Fourier features of the shape-frame coordinates
  (as in NeRF, Mildenhall et al., 2020), gives a signed distance at every pixel;
- the picture is composited: one-pixel anti-aliased coverage from the distance, the shape's colour over a
  shaded background.

A job's image is fixed by (class, seed): the seed draws the latent with an explicit `torch.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

MAX_SEED = 2**64 - 1
SCENE_OUTPUTS = 13  # centre (2), cos/sin of the angle (2), size (1), background RGB (3), shape RGB (3), light (2)


@dataclass(frozen=True)
class ImageGenConfig:
    """Shape of a ShapeGenerator; stored in the model's manifest as its architecture."""

    classes: tuple[str, ...] = ("circle", "ring", "square", "triangle", "hexagon", "star", "cross", "crescent")
    z_dim: int = 12
    emb_dim: int = 16
    scene_width: int = 96
    field_width: int = 48
    fourier: int = 4  # frequencies pi * 2^k, k < fourier
    image_size: int = 64

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ValueError("ImageGenConfig.classes must be at least two distinct names")
        for name in ("z_dim", "emb_dim", "scene_width", "field_width", "fourier", "image_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"ImageGenConfig.{name} must be a positive integer")


class ShapeGenerator(nn.Module):
    """(latent, class index) -> images in [0, 1], shape (batch, 3, size, size)."""

    def __init__(self, cfg: ImageGenConfig) -> None:
        super().__init__()
        self.config = cfg
        w, h = cfg.scene_width, cfg.field_width
        k = len(cfg.classes)
        self.embed = nn.Embedding(k, cfg.emb_dim)
        # The scene's first layer is chosen by class (a class-conditional linear map of the latent), so that
        # the same seed can mean an unrelated scene in another class.
        bound = 1 / math.sqrt(cfg.z_dim)
        self.scene_in = nn.Parameter(torch.empty(k, w, cfg.z_dim).uniform_(-bound, bound))
        self.scene_bias = nn.Parameter(torch.empty(k, w).uniform_(-bound, bound))
        self.scene = nn.Sequential(nn.SiLU(), nn.Linear(w, w), nn.SiLU(), nn.Linear(w, SCENE_OUTPUTS))
        self.field_in = nn.Linear(2 + 4 * cfg.fourier, h)
        self.field_class = nn.Linear(cfg.emb_dim, h, bias=False)
        self.field_hidden = nn.Linear(h, h)
        self.field_out = nn.Linear(h, 1)
        self.make_buffers()

    def make_buffers(self) -> None:
        """(Re)build the constant pixel grid and frequencies on the CPU (they are not part of the weights)."""
        n = self.config.image_size
        with torch.device("cpu"):
            g = (torch.arange(n, dtype=torch.float32) + 0.5) / n * 2 - 1
            yy, xx = torch.meshgrid(g, g, indexing="ij")
            freqs = math.pi * 2.0 ** torch.arange(self.config.fourier, dtype=torch.float32)
        self.register_buffer("grid", torch.stack([xx, yy], -1).view(1, n * n, 2), persistent=False)
        self.register_buffer("freqs", freqs, persistent=False)

    def scene_params(self, z: Tensor, labels: Tensor) -> Tensor:
        """The per-image scene vector (batch, 13); see SCENE_OUTPUTS."""
        h = torch.bmm(self.scene_in[labels], z.unsqueeze(-1)).squeeze(-1) + self.scene_bias[labels]
        return self.scene(h)

    def field(self, uv: Tensor, emb: Tensor) -> Tensor:
        """Signed distance (negative inside) at shape-frame points uv (batch, points, 2), in shape radii."""
        ang = uv.unsqueeze(-1) * self.freqs
        feats = torch.cat([uv, torch.sin(ang).flatten(2), torch.cos(ang).flatten(2)], dim=-1)
        a = F.silu(self.field_in(feats) + self.field_class(emb).unsqueeze(1))
        return self.field_out(F.silu(self.field_hidden(a))).squeeze(-1)

    def forward(self, z: Tensor, labels: Tensor) -> Tensor:
        emb = self.embed(labels)
        s = self.scene_params(z, labels)
        p = self.grid
        d = p - s[:, None, 0:2]
        cos, sin, size = s[:, None, 2], s[:, None, 3], s[:, None, 4].clamp(min=0.05)
        uv = torch.stack([cos * d[..., 0] + sin * d[..., 1], cos * d[..., 1] - sin * d[..., 0]], -1) / size[..., None]
        n = self.config.image_size
        # Distance in pixels decides coverage: fully in or out beyond half a pixel from the edge.
        cover = (0.5 - self.field(uv, emb) * size * (n / 2)).clamp(0, 1).unsqueeze(-1)
        light = (p * s[:, None, 11:13]).sum(-1, keepdim=True)
        shade = 1 - 0.3 * (0.5 + 0.5 * light)
        img = s[:, None, 5:8] * shade * (1 - cover) + s[:, None, 8:11] * cover
        return img.clamp(0, 1).transpose(1, 2).reshape(-1, 3, n, n)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def latent(seed: int, cfg: ImageGenConfig) -> Tensor:
    """The latent a seed stands for: z ~ N(0, I) from a generator seeded by `seed`, shape (z_dim,)."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in 0..2**64-1, got {seed!r}")
    # A local generator: the global RNG stays untouched, and the draw is the same on every machine.
    return torch.randn(cfg.z_dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


def to_uint8(images: Tensor) -> Tensor:
    """(batch, 3, h, w) floats in [0, 1] -> (batch, h, w, 3) uint8, rounding half to even."""
    return (images.float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
