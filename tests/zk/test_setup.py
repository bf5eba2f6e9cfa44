"""The shipped zk model and the EZKL setup pipeline: manifest hashes, weights, golden outputs, quantized
accuracy, provability of extreme inputs, the content-hash cache, proofs and calldata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from veriml.errors import ConfigError
from veriml.models import zoo
from veriml.models.weights import weights_root
from veriml.zk import digits
from veriml.zk.circuit import gen_witness, quiet_native, verify_offchain
from veriml.zk.field import argmax, int_from_felt
from veriml.zk.proof import Proof
from veriml.zk.register import check_manifest, load_zk_model
from veriml.zk.verifier import EVM_RUNTIME_LIMIT

if TYPE_CHECKING:
    from tests.zk.conftest import Proofs

    from veriml.zk.register import ZkModel

GOLDEN = Path(__file__).parent / "golden_digits.json"


def test_manifest_records_the_onnx_and_settings_hashes() -> None:
    d = zoo.model_dir("digits-mlp")
    man = check_manifest(d)
    assert man.runtime.startswith("ezkl/") and man.task == "image-classification"
    assert weights_root(d / man.weights_file) == man.weights_root_bytes
    settings = json.loads((d / "settings.json").read_text())
    assert "timestamp" not in settings  # so the file, and its hash in the manifest, is reproducible
    assert settings["run_args"]["input_visibility"] == "Public"
    assert settings["run_args"]["output_visibility"] == "Public"
    assert settings["run_args"]["param_visibility"] == "Fixed"
    assert man.architecture["zk_input_scale"] == settings["model_input_scales"][0]


def test_onnx_weights_are_the_committed_weights() -> None:
    import onnx
    from onnx import numpy_helper
    from safetensors.numpy import load_file

    d = zoo.model_dir("digits-mlp")
    tensors = load_file(str(d / "model.safetensors"))
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(d / "model.onnx")).graph.initializer}
    assert set(inits) == set(tensors)
    for name, arr in tensors.items():
        assert np.array_equal(inits[name], arr), name


def test_a_tampered_onnx_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "m"
    shutil.copytree(zoo.model_dir("digits-mlp"), d)
    with open(d / "model.onnx", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ConfigError, match="onnx_sha256"):
        check_manifest(d)


def test_golden_outputs(digits_model: ZkModel, tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text())
    assert golden["model_id"] == "0x" + digits_model.model_id.hex()
    for i, case in golden["images"].items():
        felts = digits.encode_input(case["pixels"], digits_model.circuit.input_scale)
        w = gen_witness(digits_model.circuit, felts, tmp_path / i)
        assert [int_from_felt(f) for f in w.outputs] == case["outputs"], i
        assert argmax(w.outputs) == case["class"]


def test_quantized_accuracy_matches_float(digits_model: ZkModel, split, tmp_path: Path) -> None:  # noqa: ANN001
    onnx_path = digits_model.circuit.onnx
    n = 120
    zk_pred, float_pred = [], []
    for i in range(n):
        px = [int(p) for p in split.x_test[i]]
        w = gen_witness(digits_model.circuit, digits.encode_input(px, 7), tmp_path / "w")
        zk_pred.append(argmax(w.outputs))
        float_pred.append(int(np.argmax(digits.onnx_logits(onnx_path, px))))
    labels = split.y_test[:n]
    assert np.mean(np.array(zk_pred) == labels) >= 0.94
    assert np.mean(np.array(zk_pred) == np.array(float_pred)) >= 0.97


def test_every_input_the_contract_accepts_is_provable(digits_model: ZkModel, tmp_path: Path) -> None:
    """Extreme inputs (all 0, all 16, the image maximising each hidden unit) satisfy the circuit, so a user
    cannot submit an unprovable input and get an honest node slashed."""
    import ezkl
    import onnx
    from onnx import numpy_helper

    w1 = next(
        numpy_helper.to_array(i)
        for i in onnx.load(str(digits_model.circuit.onnx)).graph.initializer
        if i.name == "0.weight"
    )
    extremes = [[0] * 64, [16] * 64] + [[16 if v > 0 else 0 for v in row] for row in w1[:4]]
    extremes += [[0 if v > 0 else 16 for v in row] for row in w1[:2]]
    for k, px in enumerate(extremes):
        w = gen_witness(digits_model.circuit, digits.encode_input(px, 7), tmp_path / str(k))
        with quiet_native():
            assert ezkl.mock(str(w.path), str(digits_model.circuit.compiled)), px


def test_setup_is_cached_by_content(digits_model: ZkModel, zk_cache: Path) -> None:
    stages: list[tuple[str, bool]] = []
    again = load_zk_model("digits-mlp", zk_cache, on_stage=lambda s, c: stages.append((s, c)))
    assert again.circuit == digits_model.circuit
    assert again.verifier.bytecode == digits_model.verifier.bytecode
    assert all(cached for s, cached in stages if s != "check manifest"), stages
    assert digits_model.circuit.srs_local  # the shipped local SRS: flagged as not trustless
    assert digits_model.circuit.srs == zoo.model_dir("digits-mlp") / "zk" / "k12.local.srs"
    assert digits_model.verifier.shipped  # its verifying key names the shipped verifier: nothing compiled
    assert digits_model.circuit.logrows == 12
    assert digits_model.verifier.runtime_bytes < EVM_RUNTIME_LIMIT


def test_a_given_srs_file_is_used_and_not_flagged(digits_model: ZkModel, tmp_path: Path) -> None:
    srs = tmp_path / "ceremony.srs"
    shutil.copyfile(digits_model.circuit.srs, srs)
    zm = load_zk_model("digits-mlp", tmp_path / "cache", srs_path=srs)
    assert not zm.circuit.srs_local and zm.circuit.srs == srs
    assert zm.circuit.vk_sha256 == digits_model.circuit.vk_sha256  # same SRS, same keys
    with pytest.raises(ConfigError, match="does not exist"):
        load_zk_model("digits-mlp", tmp_path / "cache", srs_path=tmp_path / "absent.srs")


def test_proofs_verify_offchain_and_calldata_matches_ezkl(digits_model: ZkModel, proofs: Proofs, tmp_path) -> None:  # noqa: ANN001
    import ezkl

    from veriml.zk.prover import prove_once

    felts = proofs.input_a
    prove_once(digits_model.circuit, felts, tmp_path)
    proof_json = tmp_path / "proof.json"
    assert verify_offchain(digits_model.circuit, proof_json)
    p = Proof.from_ezkl(proof_json, digits_model.circuit.n_inputs)
    assert p.inputs == tuple(felts) and len(p.outputs) == 10
    assert p.outputs == proofs.a.outputs  # the same input always proves the same output
    with quiet_native():
        calldata = bytes(ezkl.encode_evm_calldata(str(proof_json), str(tmp_path / "calldata.bin"), None))
    # EZKL appends one zero word after the ABI encoding; the encoding itself is the same bytes.
    mine = p.verifier_calldata()
    assert calldata[: len(mine)] == mine and set(calldata[len(mine) :]) <= {0} and len(calldata) - len(mine) <= 32
    bad = json.loads(proof_json.read_text())
    bad["hex_proof"] = "0x" + p.with_flipped_bit(byte=64).proof.hex()
    bad["proof"] = list(p.with_flipped_bit(byte=64).proof)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    assert not verify_offchain(digits_model.circuit, tmp_path / "bad.json")
