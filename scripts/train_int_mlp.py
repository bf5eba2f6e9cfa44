"""Train the shipped integer MLP (`zoo/int-mlp`): a float 64-64-32-10 MLP on scikit-learn's 8x8 digits,
then quantized to the integer runtime the optimistic scheme checks (`veriml.models.intmlp`).

    .venv/bin/python scripts/train_int_mlp.py            # about 10 s on 2 cores

Writes model.safetensors (the integer rows the chain checks), float.safetensors (the float model, to
measure what quantization costs), manifest.json and README.md, and prints float vs integer accuracy on the
held-out 20%.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from veriml.models.intmlp import ARCHITECTURE, RUNTIME, FloatMLP, digits_split, quantize
from veriml.models.manifest import Manifest

OUT = Path(__file__).resolve().parents[1] / "src" / "veriml" / "models" / "zoo" / "int-mlp"
SIZES = [64, 64, 32, 10]
PRICE_WEI = 10**15


def train(x: np.ndarray, y: np.ndarray, epochs: int, lr: float, seed: int) -> FloatMLP:
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(SIZES, SIZES[1:], strict=False)):
        layers.append(nn.Linear(a, b))
        if i < len(SIZES) - 2:
            layers.append(nn.ReLU())
    net = nn.Sequential(*layers)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-3)
    xt = torch.tensor(x, dtype=torch.float32) / 16.0
    yt = torch.tensor(y)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    linears = [m for m in net if isinstance(m, nn.Linear)]
    return FloatMLP(
        tuple(m.weight.detach().numpy().copy() for m in linears), tuple(m.bias.detach().numpy().copy() for m in linears)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(1)

    start = time.perf_counter()
    x_train, x_test, y_train, y_test = digits_split()
    fmodel = train(x_train, y_train, args.epochs, args.lr, args.seed)
    imodel = quantize(fmodel, x_train)
    seconds = time.perf_counter() - start

    float_acc = float((fmodel.forward(x_test).argmax(1) == y_test).mean())
    int_acc = float((imodel.forward(x_test).argmax(1) == y_test).mean())
    agree = float((fmodel.forward(x_test).argmax(1) == imodel.forward(x_test).argmax(1)).mean())
    print(f"trained in {seconds:.1f}s; test accuracy float {float_acc:.4f}, integer {int_acc:.4f}, agree {agree:.4f}")

    args.out.mkdir(parents=True, exist_ok=True)
    imodel.save(args.out / "model.safetensors")
    fmodel.save(args.out / "float.safetensors")
    manifest = Manifest(
        name="int-mlp",
        task="image-classification",
        architecture={
            "type": ARCHITECTURE,
            "sizes": SIZES,
            "input": "64 bytes: the 8x8 digit's pixel values 0..16, row-major (int8)",
            "output": "10 int8 logits; the class is the first argmax",
            "requantization": [[layer.multiplier, layer.shift] for layer in imodel.layers],
        },
        weights_file="model.safetensors",
        weights_root="0x" + imodel.weights_root.hex(),
        runtime=RUNTIME,
        policy="exact",
        policy_threshold=0,
        price_wei=PRICE_WEI,
    )
    manifest.save(args.out / "manifest.json")
    stats = {
        "float_accuracy": float_acc,
        "int_accuracy": int_acc,
        "agreement": agree,
        "test_samples": len(y_test),
        "train_seconds": round(seconds, 1),
        "model_id": "0x" + manifest.model_id().hex(),
        "steps": imodel.steps,
    }
    (args.out / "README.md").write_text(README.format(args=args, **stats))
    print(json.dumps(stats, indent=2))


README = """# int-mlp

A 64-64-32-10 multilayer perceptron that classifies scikit-learn's 8x8 handwritten digits, quantized to the
integer runtime of the optimistic scheme (`veriml.models.intmlp`, runtime `{RUNTIME}`): int8 weights and
activations, int32 accumulation, per-layer requantization `clamp((acc * M + 2^(s-1)) >> s, -128, 127)`,
ReLU between layers, class = first argmax of the 10 int8 logits. Every machine and the chain compute it
bit for bit; one job is {steps} steps (one output neuron each), bisected in 7 rounds.

- **Data**: `sklearn.datasets.load_digits` (1,797 images), stratified 80/20 split with `random_state=0`
  (`veriml.models.intmlp.digits_split`). Input: the 64 pixel values 0..16 as bytes.
- **Training**: `scripts/train_int_mlp.py`: seed {args.seed}, {args.epochs} epochs of AdamW (lr {args.lr},
  weight decay 1e-3, batches of 64) on pixels / 16, torch on CPU, {train_seconds} s. Then post-training
  quantization: symmetric per-layer int8 weights, activation scales from the 99.99th percentile of the
  float activations on the training images.
- **Accuracy on the {test_samples} test images**: float {float_accuracy:.4f}, integer {int_accuracy:.4f}
  (the two agree on {agreement:.4f} of them).
- **Files**: `model.safetensors` holds one U8 tensor `row.<layer>.<row>` per output neuron (13-byte header:
  rows in the layer, last-layer flag, ReLU flag, multiplier, shift, bias; then the int8 weights), so the
  manifest's `weights_root` (the usual per-tensor Merkle root) commits to every step's weights.
  `float.safetensors` is the float model (not part of the commitment). Model id `{model_id}`.
- **License**: Apache-2.0, like veriml. The digits data set is from the UCI repository, shipped with
  scikit-learn (BSD-3-Clause).

Retraining elsewhere may give other weights, hence another model id: the files, not the script, define it.
""".replace("{RUNTIME}", RUNTIME)


if __name__ == "__main__":
    main()
