"""Train the shipped `tiny-gpt` zoo model on CPU and write its weights and manifest.

The corpus is the Python standard library's own documentation (`pydoc_data.topics`), so training needs no
download and the text ships under the PSF license with every Python. Seeded and single-configuration:
about 5 minutes on 2 CPU cores. Run from the repo root:

    .venv/bin/python scripts/train_tiny_gpt.py
"""

from __future__ import annotations

import argparse
import hashlib
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.nn import functional as F

from veriml.models.manifest import Manifest
from veriml.models.runtime import ARCHITECTURE, RUNTIME, TextModel
from veriml.models.tiny_gpt import GPTConfig, TinyGPT
from veriml.models.weights import weights_root
from veriml.models.zoo import MANIFEST_FILE, ZOO_DIR


def load_corpus() -> bytes:
    """Every pydoc topic, in key order, joined by blank lines, as UTF-8 bytes."""
    from pydoc_data.topics import topics

    parts = [v.decode("utf-8") if isinstance(v, bytes) else v for _, v in sorted(topics.items())]
    return "\n\n".join(parts).encode("utf-8")


def get_batch(data: torch.Tensor, batch: int, block: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """`batch` random windows of `block` bytes and the same windows shifted by one (the targets)."""
    ix = torch.randint(len(data) - block - 1, (batch,), generator=gen)
    x = torch.stack([data[i : i + block] for i in ix.tolist()])
    y = torch.stack([data[i + 1 : i + 1 + block] for i in ix.tolist()])
    return x, y


@torch.no_grad()
def estimate_loss(model: TinyGPT, data: torch.Tensor, batch: int, n_batches: int, seed: int) -> float:
    """Mean cross-entropy over a fixed (seeded) set of windows, so numbers compare across steps."""
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(n_batches):
        x, y = get_batch(data, batch, model.config.block_size, gen)
        logits, _ = model(x)
        losses.append(F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1)).item())
    return sum(losses) / len(losses)


def lr_at(step: int, iters: int, peak: float, warmup: int) -> float:
    """Linear warmup, then cosine decay to a tenth of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, iters - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--threads", type=int, default=2, help="fixed, since results depend on it")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--out", type=Path, default=ZOO_DIR / "tiny-gpt")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)

    corpus = load_corpus()
    data = torch.tensor(list(corpus), dtype=torch.long)
    n_train = int(0.9 * len(data))
    train, val = data[:n_train], data[n_train:]
    print(f"python {platform.python_version()}, torch {torch.__version__}, {args.threads} threads")
    print(f"corpus: {len(corpus)} bytes, sha256 {hashlib.sha256(corpus).hexdigest()}")

    cfg = GPTConfig(n_layer=4, n_head=4, n_embd=192, block_size=128)
    model = TinyGPT(cfg)
    print(f"params: {model.num_params():,}  config: {cfg}")

    # Weight decay on matrices only, as nanoGPT does: biases and LayerNorm gains are left alone.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=args.lr,
        betas=(0.9, 0.99),
    )
    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    for step in range(args.iters):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.iters, args.lr, args.warmup)
        x, y = get_batch(train, args.batch, cfg.block_size, gen)
        logits, _ = model(x)
        loss = F.cross_entropy(logits.view(-1, cfg.vocab_size), y.view(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % args.eval_every == 0 or step == args.iters - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - t0:6.1f}s", flush=True)

    model.eval()
    tr = estimate_loss(model, train, 32, 20, seed=1)
    va = estimate_loss(model, val, 32, 20, seed=2)
    print(f"final: train loss {tr:.4f}  val loss {va:.4f}  ({time.time() - t0:.1f}s training)")

    args.out.mkdir(parents=True, exist_ok=True)
    wpath = args.out / "model.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(wpath))
    manifest = Manifest(
        name=args.out.name,
        task="text-generation",
        architecture={"type": ARCHITECTURE, **asdict(cfg)},
        weights_file=wpath.name,
        weights_root="0x" + weights_root(wpath).hex(),
        runtime=RUNTIME,
        policy="tokens",
        policy_threshold=0,
        price_wei=10**15,  # 0.001 ETH per node per job
        max_prompt_bytes=512,
        max_new_tokens=128,
        default_new_tokens=48,
    )
    manifest.save(args.out / MANIFEST_FILE)
    print(f"wrote {wpath} ({wpath.stat().st_size:,} bytes), model id 0x{manifest.model_id().hex()}")

    tm = TextModel.load(args.out)
    for prompt in (b"The ", b"def ", b"The with statement"):
        print(f"{prompt!r} -> {tm.run(prompt).text!r}")


if __name__ == "__main__":
    main()
