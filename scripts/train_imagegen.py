"""Train the shipped `tiny-shapes` image generator on CPU and write its weights and manifest.

The data are made here, procedurally (no download): eight classes of anti-aliased shapes, drawn from
signed distance functions, at a place, size and angle, in colours and under a light direction that are
smooth functions of a 12-dimensional standard normal latent (mixed by a fixed signed permutation per
class, so one seed means unrelated scenes in different classes). Because every picture's latent is known,
`veriml.models.imagegen.ShapeGenerator` is fitted directly: its scene MLP to the scene a latent stands
for, its shape field to each class's signed distance, then both end to end on whole pictures. A much
narrower network is trained the same way: the "cheaper model" a lazy node could run instead
(`veriml.sim.faults.Cheat.CHEAP_MODEL`). Seeded, one thread, about 3.5 minutes on this 2-core machine.
Run from the repo root:

    .venv/bin/python scripts/train_imagegen.py
"""

from __future__ import annotations

import argparse
import hashlib
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from scipy.special import ndtr

from veriml.models.imagegen import ImageGenConfig, ShapeGenerator
from veriml.models.imagegen_runtime import (
    ARCHITECTURE,
    CHEAP,
    CHEAP_FILE,
    DEFAULT_HASH,
    DEFAULT_THRESHOLD,
    RUNTIME,
    ImageModel,
)
from veriml.models.manifest import Manifest
from veriml.models.weights import weights_root
from veriml.models.zoo import MANIFEST_FILE, ZOO_DIR

SIZE = 64


# ---- data ----
def _box(px: np.ndarray, py: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    qx, qy = np.abs(px) - bx, np.abs(py) - by
    return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)


def _ngon(px: np.ndarray, py: np.ndarray, r: np.ndarray, n: int) -> np.ndarray:
    # Distance to the nearest edge line of a regular n-gon of circumradius r (exact inside, close outside).
    sector = 2 * math.pi / n
    a = np.mod(np.arctan2(py, px), sector) - sector / 2
    return np.hypot(px, py) * np.cos(a) - r * math.cos(math.pi / n)


def sdf(cls: str, px: np.ndarray, py: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Signed distance (negative inside) of a class's shape of size r centred at the origin."""
    d = np.hypot(px, py)
    if cls == "circle":
        return d - r
    if cls == "ring":
        return np.abs(d - 0.75 * r) - 0.25 * r
    if cls == "square":
        return _ngon(px, py, r, 4)
    if cls == "triangle":
        return _ngon(px, py, r, 3)
    if cls == "hexagon":
        return _ngon(px, py, r, 6)
    if cls == "star":
        return d - r * (0.68 + 0.32 * np.cos(5 * np.arctan2(py, px)))
    if cls == "cross":
        return np.minimum(_box(px, py, r, 0.3 * r), _box(px, py, 0.3 * r, r))
    if cls == "crescent":
        return np.maximum(d - r, -(np.hypot(px - 0.45 * r, py) - 0.8 * r))
    raise ValueError(f"unknown shape class {cls!r}")


# ---- the scenes a latent stands for ----
def class_mixing(k: int, z_dim: int) -> np.ndarray:
    """A signed permutation, fixed per class, applied to the latent before it is read as a scene.

    So the same seed draws an unrelated scene for another class, as a text-to-image model's noise does
    for another prompt, instead of the same scene with another shape in it.
    """
    rng = np.random.default_rng(10_000 + k)
    return np.eye(z_dim)[rng.permutation(z_dim)] * rng.choice([-1.0, 1.0], z_dim)[:, None]


def scene_targets(z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The scene vector (see `imagegen.SCENE_OUTPUTS`) that latent z (n, 12) stands for in each class.

    Each factor is a smooth function of one or two coordinates of the class-mixed z ~ N(0, I), so the
    scene MLP has a well-defined target and a seed's picture is a fixed function of its latent.
    """
    z = np.einsum("nij,nj->ni", np.stack([class_mixing(int(k), z.shape[1]) for k in labels]), z)
    u = ndtr(z)  # standard normal -> uniform(0, 1), per coordinate
    theta = 2 * math.pi * u[:, 3]
    bg = 0.1 + 0.8 * u[:, 4:7]
    fg = np.clip(0.9 - 0.8 * bg + 0.4 * (u[:, 7:10] - 0.5), 0, 1)  # contrasting, not just inverted
    return np.concatenate(
        [
            -0.35 + 0.7 * u[:, 0:2],
            np.cos(theta)[:, None],
            np.sin(theta)[:, None],
            0.28 + 0.27 * u[:, 2:3],
            bg,
            fg,
            np.tanh(z[:, 10:12]),
        ],
        axis=1,
    ).astype(np.float32)


def shape_frame(s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Pixel centres p (points, 2) in each scene's shape frame, in shape radii: (n, points, 2)."""
    d = p[None] - s[:, None, 0:2]
    cos, sin, r = s[:, None, 2], s[:, None, 3], s[:, None, 4]
    return np.stack([cos * d[..., 0] + sin * d[..., 1], cos * d[..., 1] - sin * d[..., 0]], -1) / r[..., None]


def pixel_grid() -> np.ndarray:
    g = (np.arange(SIZE) + 0.5) / SIZE * 2 - 1
    gx, gy = np.meshgrid(g, g)
    return np.stack([gx.ravel(), gy.ravel()], -1)


def render(labels: np.ndarray, z: np.ndarray, classes: tuple[str, ...]) -> np.ndarray:
    """The reference pictures (n, 3, 64, 64) of latents z, drawn exactly from their signed distances."""
    s, p = scene_targets(z, labels), pixel_grid()
    uv = shape_frame(s, p)
    d = np.empty(uv.shape[:2])
    for k, name in enumerate(classes):
        m = labels == k
        if m.any():
            d[m] = sdf(name, uv[m, :, 0], uv[m, :, 1], np.ones((int(m.sum()), 1)))
    cover = np.clip(0.5 - d * s[:, 4:5] * (SIZE / 2), 0, 1)[..., None]
    shade = 1 - 0.3 * (0.5 + 0.5 * (p[None] * s[:, None, 11:13]).sum(-1, keepdims=True))
    img = s[:, None, 5:8] * shade * (1 - cover) + s[:, None, 8:11] * cover
    return img.transpose(0, 2, 1).reshape(-1, 3, SIZE, SIZE).astype(np.float32)


# ---- training ----
def lr_at(step: int, iters: int, peak: float, warmup: int = 50) -> float:
    """Linear warmup, then cosine decay to a twentieth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, iters - warmup))))


def train(cfg: ImageGenConfig, args: argparse.Namespace, seed: int, tag: str) -> ShapeGenerator:
    """Fit the scene MLP to the scene each latent stands for, and the shape field to each class's signed
    distance at the pixels that scene puts in the shape's frame; then fine-tune both on the pictures."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model = ShapeGenerator(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    grid = pixel_grid()
    iters = args.iters + args.finetune_iters
    t0 = time.time()
    for step in range(iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, iters, args.lr)
        labels = rng.integers(0, len(cfg.classes), args.batch)
        z = rng.standard_normal((args.batch, cfg.z_dim))
        zt, lt = torch.from_numpy(z).float(), torch.from_numpy(labels)
        if step < args.iters:
            s = scene_targets(z, labels)
            pts = grid[rng.choice(len(grid), args.points, replace=False)]
            uv = shape_frame(s, pts)
            d = np.empty(uv.shape[:2])
            for k, name in enumerate(cfg.classes):
                m = labels == k
                if m.any():
                    d[m] = sdf(name, uv[m, :, 0], uv[m, :, 1], np.ones((int(m.sum()), 1)))
            # Only distances near the edge move pixels; far ones are clipped so they do not dominate.
            target = torch.from_numpy(np.clip(d, -0.25, 0.25)).float()
            pred = model.field(torch.from_numpy(uv).float(), model.embed(lt))
            field_loss = ((pred - target) ** 2).mean()
            scene_loss = ((model.scene_params(zt, lt) - torch.from_numpy(s)) ** 2).mean()
            loss = field_loss + scene_loss
            msg = f"field {field_loss.item():.5f} scene {scene_loss.item():.5f}"
        else:
            x = torch.from_numpy(render(labels, z, cfg.classes))
            loss = ((model(zt, lt) - x) ** 2).mean()
            msg = f"pixels {loss.item():.5f}"
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % args.eval_every == 0 or step == iters - 1:
            print(f"{tag} step {step:5d}  {msg}  {time.time() - t0:6.1f}s", flush=True)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def pixel_error(model: ShapeGenerator, n: int, seed: int) -> float:
    """Mean absolute error (0..1) of the model's pictures against the exact renderings, on fresh latents."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(model.config.classes), n)
    z = rng.standard_normal((n, model.config.z_dim))
    x = torch.from_numpy(render(labels, z, model.config.classes))
    return float((model(torch.from_numpy(z).float(), torch.from_numpy(labels)) - x).abs().mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--iters", type=int, default=2000, help="supervised steps (scene and shape field)")
    ap.add_argument("--finetune-iters", type=int, default=200, help="end-to-end steps on whole pictures")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--points", type=int, default=1024, help="pixels per picture in a supervised step")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--threads", type=int, default=1, help="fixed, since results depend on it")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--out", type=Path, default=ZOO_DIR / "tiny-shapes")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    cfg = ImageGenConfig()
    print(f"python {platform.python_version()}, torch {torch.__version__}, {args.threads} threads, {cfg}")
    t0 = time.time()
    model = train(cfg, args, args.seed, "model")
    # The cheaper model a lazy node could run: the same data and recipe, a much narrower network.
    halved = {"iters": args.iters // 2, "finetune_iters": args.finetune_iters // 2}
    cheap_args = argparse.Namespace(**{**vars(args), **halved})
    cheap = train(ImageGenConfig(**{**asdict(cfg), **CHEAP}), cheap_args, args.seed + 1, "cheap")
    minutes = (time.time() - t0) / 60
    err, cheap_err = pixel_error(model, 256, 7), pixel_error(cheap, 256, 7)
    print(f"model {model.num_params():,} params, mean abs pixel error {err:.4f}")
    print(f"cheap {cheap.num_params():,} params, mean abs pixel error {cheap_err:.4f}; {minutes:.1f} min in all")

    args.out.mkdir(parents=True, exist_ok=True)
    wpath = args.out / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(wpath))
    save_file({k: v.contiguous() for k, v in cheap.state_dict().items()}, str(args.out / CHEAP_FILE))
    # Keep the profiled policy of an existing manifest (`veriml profile` derives it, and it is data).
    mpath = args.out / MANIFEST_FILE
    digest_hash, threshold = DEFAULT_HASH, DEFAULT_THRESHOLD
    if mpath.is_file():
        prev = Manifest.load(mpath)
        digest_hash, threshold = prev.architecture.get("digest_hash", digest_hash), prev.policy_threshold
    arch = {"type": ARCHITECTURE, **asdict(cfg), "classes": list(cfg.classes), "digest_hash": digest_hash}
    manifest = Manifest(
        name=args.out.name,
        task="image-generation",
        architecture=arch,
        weights_file=wpath.name,
        weights_root="0x" + weights_root(wpath).hex(),
        runtime=RUNTIME,
        policy="phash",
        policy_threshold=threshold,
        price_wei=10**15,  # 0.001 ETH per node per job
        max_prompt_bytes=32,  # the class name
        max_new_tokens=1,  # text-only limits, kept at their minimum
        default_new_tokens=1,
    )
    manifest.save(mpath)
    print(f"wrote {wpath} ({wpath.stat().st_size:,} bytes), model id 0x{manifest.model_id().hex()}")
    loaded = ImageModel.load(args.out)
    for label in cfg.classes[:3]:
        print(f"{label} seed 0 -> PNG sha256 {hashlib.sha256(loaded.run(label, 0).png).hexdigest()[:16]}..")


if __name__ == "__main__":
    main()
