"""Train the shipped zk model `digits-mlp` and write it to src/veriml/models/zoo/digits-mlp/.

One path from data to a provable model:
1. scikit-learn's 8x8 digits, a fixed stratified 75/25 split (seed 0);
2. a 64 -> 16 -> 10 ReLU MLP trained full-batch with Adam on one CPU thread (deterministic);
3. weights saved as safetensors (their Merkle root goes in the manifest) and the same network exported to
   ONNX with torch's TorchScript exporter (the dynamo exporter needs onnxscript, not installed);
4. EZKL circuit settings at fixed scales (input 2**7, weights 2**7), calibrated on training images plus
   the all-white and all-black extremes, written without EZKL's timestamp;
5. accuracy on the test split in float (onnxruntime) and after EZKL's quantization (its witness, i.e.
   exactly what a proof attests), and a mock proof on extreme inputs: every input the contract accepts
   (pixels 0..16) must be provable, or a user could get an honest node slashed;
6. manifest.json (architecture records the ONNX and settings hashes) and a README with the figures.

Usage: python scripts/train_digits_mlp.py [--out DIR] [--hidden 16] [--epochs 400]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from veriml.models.manifest import Manifest
from veriml.models.weights import weights_root
from veriml.zk import digits
from veriml.zk.circuit import CircuitSpec, compile_cached, ezkl_version, make_settings, quiet_native, run_witness
from veriml.zk.field import argmax, dequantize

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "veriml" / "models" / "zoo" / "digits-mlp"
PRICE_WEI = 10**15


def extreme_inputs(model: torch.nn.Module) -> list[list[int]]:
    """All-0, all-16, and per hidden unit the image that maximises its pre-activation (16 where the weight is
    positive): the largest values any valid input can push through the first layer."""
    w = model[0].weight.detach().numpy()
    out = [[0] * 64, [16] * 64]
    out += [[16 if v > 0 else 0 for v in row] for row in w]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--hidden", type=int, nargs="+", default=[16])
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--name", default="digits-mlp")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    split = digits.load_split()
    t0 = time.perf_counter()
    model = digits.train_mlp(args.hidden, split, epochs=args.epochs)
    print(f"trained 64->{'->'.join(map(str, args.hidden))}->10 in {time.perf_counter() - t0:.1f}s")
    float_acc = float((digits.float_predictions(model, split.x_test) == split.y_test).mean())

    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "model.safetensors"))
    (out / "model.safetensors").chmod(0o644)  # safetensors writes owner-only files
    digits.export_onnx(model, out / "model.onnx")
    ort_pred = [int(np.argmax(digits.onnx_logits(out / "model.onnx", x))) for x in split.x_test]
    ort_acc = float((np.array(ort_pred) == split.y_test).mean())

    spec = CircuitSpec()
    calibration = [digits.pixels_to_floats(x) for x in split.x_train[:200]]
    calibration += [digits.pixels_to_floats(x) for x in extreme_inputs(model)]
    settings = make_settings(out / "model.onnx", out / "settings.json", spec, calibration)
    input_scale = settings["model_input_scales"][0]
    output_scale = settings["model_output_scales"][0]

    with tempfile.TemporaryDirectory(prefix="veriml-digits-") as tmp:
        cdir, _ = compile_cached(out / "model.onnx", out / "settings.json", Path(tmp))
        compiled = cdir / "model.compiled"
        t0 = time.perf_counter()
        zk_pred, max_logit_err = [], 0.0
        for i, x in enumerate(split.x_test):
            w = run_witness(compiled, input_scale, digits.encode_input(x, input_scale), Path(tmp) / "w")
            zk_pred.append(argmax(w.outputs))
            ref = digits.onnx_logits(out / "model.onnx", x)
            got = dequantize(w.outputs, output_scale)
            max_logit_err = max(max_logit_err, *(abs(a - b) for a, b in zip(ref, got, strict=True)))
            if i == 0:
                witness_s = time.perf_counter() - t0
        zk_acc = float((np.array(zk_pred) == split.y_test).mean())
        agree = float((np.array(zk_pred) == np.array(ort_pred)).mean())
        # Every input the contract accepts must be provable: mock-prove the extremes.
        import ezkl

        for x in extreme_inputs(model)[:6]:
            w = run_witness(compiled, input_scale, digits.encode_input(x, input_scale), Path(tmp) / "m")
            with quiet_native():
                if not ezkl.mock(str(w.path), str(compiled)):
                    print(f"mock proof failed on extreme input {x}", file=sys.stderr)
                    return 1

    arch = {
        "type": "mlp",
        "layers": [digits.N_PIXELS, *args.hidden, digits.N_CLASSES],
        "activation": "relu",
        "input": "8x8 grey digit: 64 integer pixels 0..16, fed to the network as pixel/16",
        "onnx_file": "model.onnx",
        "onnx_sha256": _sha(out / "model.onnx"),
        "zk_settings_file": "settings.json",
        "zk_settings_sha256": _sha(out / "settings.json"),
        "zk_input_scale": input_scale,
        "zk_output_scale": output_scale,
        "zk_logrows": settings["run_args"]["logrows"],
        "zk_input_range": [0, 1],
        "zk_visibility": {"input": "public", "params": "fixed", "output": "public"},
    }
    man = Manifest(
        name=args.name,
        task="image-classification",
        architecture=arch,
        weights_file="model.safetensors",
        weights_root="0x" + weights_root(out / "model.safetensors").hex(),
        runtime=f"ezkl/{ezkl_version()}",
        policy="exact",
        policy_threshold=0,
        price_wei=PRICE_WEI,
    )
    man.save(out / "manifest.json")
    figures = {
        "test_images": len(split.y_test),
        "accuracy_float_torch": float_acc,
        "accuracy_float_onnxruntime": ort_acc,
        "accuracy_ezkl_quantized": zk_acc,
        "prediction_agreement_float_vs_quantized": agree,
        "max_abs_logit_error": max_logit_err,
        "witness_seconds_first": witness_s,
    }
    (out / "README.md").write_text(_readme(man, figures, settings))
    print(json.dumps({"model_id": "0x" + man.model_id().hex(), **figures}, indent=2))
    return 0


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _readme(man: Manifest, f: dict, settings: dict) -> str:
    a = man.architecture
    return f"""# digits-mlp

The shipped model of the zk scheme: a {" -> ".join(map(str, a["layers"]))} ReLU MLP over scikit-learn's 8x8
handwritten digits, proven with EZKL {man.runtime.split("/")[1]}. Made by `scripts/train_digits_mlp.py`
(deterministic; rerun it to reproduce every file here).

| file | what |
|---|---|
| `model.safetensors` | the trained weights; their Merkle root is the manifest's `weights_root` |
| `model.onnx` | the same network as ONNX (opset {digits.ONNX_OPSET}); sha256 in `architecture.onnx_sha256` |
| `settings.json` | EZKL circuit settings (input scale {a["zk_input_scale"]}, params fixed at scale \
{settings["run_args"]["param_scale"]}, 2^{a["zk_logrows"]} rows); sha256 in `architecture.zk_settings_sha256` |
| `manifest.json` | hashes to the model id |

Input: 64 integer pixels 0..16; the job's input instances are pixel/16 in fixed point at scale
{a["zk_input_scale"]}, i.e. pixel << {a["zk_input_scale"] - 4}. Output: 10 logits at scale {a["zk_output_scale"]}.

Accuracy on the {f["test_images"]}-image test split (stratified 25%, seed 0):

| | accuracy |
|---|---|
| float (torch) | {f["accuracy_float_torch"]:.4f} |
| float (onnxruntime) | {f["accuracy_float_onnxruntime"]:.4f} |
| EZKL quantized (witness = what a proof attests) | {f["accuracy_ezkl_quantized"]:.4f} |

Float and quantized predictions agree on {f["prediction_agreement_float_vs_quantized"]:.2%} of the test images;
the largest logit difference is {f["max_abs_logit_error"]:.4f}. Extreme inputs (all 0, all 16, and the
image maximising each hidden unit) pass EZKL's mock prover, so any input ZkJobs accepts is provable.
"""


if __name__ == "__main__":
    sys.exit(main())
