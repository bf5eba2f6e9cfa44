"""The shipped zk model carries its local SRS and compiled verifier: registering it and proving need no Node;
the shipped verifier is exactly what the pipeline builds; a changed model without solc-js fails clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from veriml.chain.backends import embedded_chain
from veriml.chain.deploy import deploy
from veriml.chain.zk import ZkJobs, deploy_zk
from veriml.errors import ConfigError
from veriml.models import zoo
from veriml.zk import digits
from veriml.zk.circuit import setup_circuit, sha256_file, shipped_srs_path
from veriml.zk.proof import Proof
from veriml.zk.prover import prove_once
from veriml.zk.register import load_zk_model, register_zk_model
from veriml.zk.verifier import NODE_MODULES, SHIPPED_DIR, SolcJs, build_verifier, shipped_path, shipped_record

from .conftest import CONFIG, ZK_CONFIG, pixels, quick_gas_estimate

SHIPPED = zoo.model_dir("digits-mlp")


def no_solc(tmp_path: Path) -> SolcJs:
    """solc-js made unavailable: an empty node_modules, and no `node` either."""
    (tmp_path / "empty-node-modules").mkdir(exist_ok=True)
    return SolcJs(node_modules=tmp_path / "empty-node-modules", node=str(tmp_path / "no-node"))


def test_the_shipped_model_registers_and_proves_without_solc_js(tmp_path: Path, split: digits.DigitsSplit) -> None:
    chain = embedded_chain()
    chain._tester.backend.chain.gas_estimator = quick_gas_estimate  # type: ignore[union-attr]
    try:
        owner = chain.accounts[0]
        deployment = deploy_zk(chain, deploy(chain, owner, CONFIG), owner, ZK_CONFIG)
        cache = tmp_path / "cache"
        # Registration proves an all-zero input and checks it on the deployed verifier before binding it.
        zm = register_zk_model(chain, deployment, owner, "digits-mlp", cache, solc=no_solc(tmp_path))
        assert zm.verifier.shipped and zm.record()["verifier_shipped"] is True
        assert zm.circuit.srs == shipped_srs_path(SHIPPED, 12) and zm.circuit.srs_local
        assert not (cache / "solc").exists()  # nothing was compiled
        bound = ZkJobs(chain, deployment).circuit(zm.model_id)
        assert bound.verifier == zm.verifier_address and bound.vk_hash.hex() == zm.circuit.vk_sha256
        assert chain.w3.eth.get_code(zm.verifier_address) == bytes.fromhex(zm.verifier.deployed_bytecode[2:])

        felts = digits.encode_input(pixels(split, 3), zm.circuit.input_scale)
        proof = Proof.from_json(prove_once(zm.circuit, felts, tmp_path / "p")["proof"])
        verifier = chain.w3.eth.contract(address=zm.verifier_address, abi=zm.verifier.abi)
        assert verifier.functions.verifyProof(proof.proof, list(proof.instances)).call() is True
        assert proof.inputs == tuple(felts)
    finally:
        chain.close()


@pytest.mark.skipif(not (NODE_MODULES / "solc" / "package.json").is_file(), reason="solc-js not installed")
def test_the_shipped_verifier_is_what_the_pipeline_builds(tmp_path: Path) -> None:
    """Rebuilt from scratch (circuit, keys from the shipped SRS, EZKL source, solc-js), the record is identical."""
    arch = zoo.manifest("digits-mlp").architecture
    circuit = setup_circuit(
        SHIPPED / "model.onnx", SHIPPED / "settings.json", tmp_path, local_srs_file=shipped_srs_path(SHIPPED, 12)
    )
    build = build_verifier(circuit, tmp_path)
    assert not build.cached and not build.shipped
    path = shipped_path(SHIPPED, circuit.vk_sha256)
    assert sorted((SHIPPED / SHIPPED_DIR).iterdir()) == [path]  # one verifier, for today's key
    record = json.loads(path.read_text())
    assert record == shipped_record(circuit, build)
    assert record["srs_sha256"] == sha256_file(shipped_srs_path(SHIPPED, 12))
    assert record["settings_sha256"] == arch["zk_settings_sha256"]
    assert record["srs_local_not_trustless"] is True


def test_a_changed_model_without_solc_js_names_the_way_to_get_it(variant_dir: Path, tmp_path: Path) -> None:
    """The variant (one bias nudged) with the shipped zk/ folder copied in: the same SRS, another verifying key,
    so no shipped verifier fits and it must be compiled."""
    d = tmp_path / "variant"
    shutil.copytree(variant_dir, d)
    shutil.copytree(SHIPPED / "zk", d / "zk")
    with pytest.raises(ConfigError) as e:
        load_zk_model(d, tmp_path / "cache", solc=no_solc(tmp_path))
    msg = str(e.value)
    assert "solc-js not found under" in msg and "new or changed zk model" in msg
    assert "`make contracts-deps`" in msg and "`npm install` in contracts/" in msg


def test_a_stale_shipped_verifier_is_not_used(tmp_path: Path) -> None:
    """A record for today's key whose source hash differs (say, from an older EZKL template) is ignored, and the
    error says so."""
    d = tmp_path / "digits-mlp"
    shutil.copytree(SHIPPED, d)
    (path,) = (d / SHIPPED_DIR).iterdir()
    record = json.loads(path.read_text())
    record["source_sha256"] = "0" * 64
    path.write_text(json.dumps(record))
    with pytest.raises(ConfigError, match=r"solc-js not found.*shipped verifier .* is stale \(its source_sha256"):
        load_zk_model(d, tmp_path / "cache", solc=no_solc(tmp_path))


def test_node_missing_is_a_clear_error(tmp_path: Path, variant_dir: Path) -> None:
    """solc-js present but no `node` to run it: the error names node, not a traceback from subprocess."""
    if not (NODE_MODULES / "solc" / "package.json").is_file():
        pytest.skip("solc-js not installed")
    d = tmp_path / "variant"
    shutil.copytree(variant_dir, d)
    shutil.copytree(SHIPPED / "zk", d / "zk")
    with pytest.raises(ConfigError, match="node not found"):
        load_zk_model(d, tmp_path / "cache", solc=SolcJs(node=str(tmp_path / "no-node")))
