"""Registering a model for the zk scheme: the whole setup, from manifest to a verifier bound on-chain.

    manifest -> check ONNX and settings hashes -> compile circuit -> SRS -> keys -> Solidity verifier
    -> solc-js -> self-check proof -> deploy verifier -> ModelRegistry.register -> ZkJobs.registerCircuit

Heavy steps are cached by content hash (see `veriml.zk.circuit` and `veriml.zk.verifier`). A shipped
model carries its local SRS and its compiled verifier (in its `zk/` folder), so registering it needs
no Node; only a new or changed model is compiled with solc-js (`SolcJs`, passed in by the caller). The manifest
(content-addressed: it hashes to the model id) records the ONNX and circuit-settings hashes. The
verifying key and the verifier cannot be in it: they depend on the SRS and the chain. They are bound to
the model id on-chain instead, once, by the model's owner (`ZkJobs.registerCircuit` records the verifier
address, its code hash and the vk's sha256), and in the JSON record this module writes.

Before registering, a fresh proof of a sample input is checked against the deployed verifier: a broken
verifier would get every honest node slashed, so it is refused here.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from veriml.chain.backends import Chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import Deployment
from veriml.chain.zk import ZkJobs, deploy_bytecode
from veriml.errors import ConfigError
from veriml.models import zoo
from veriml.models.manifest import Manifest
from veriml.types import ModelId
from veriml.zk.circuit import (
    LOCAL_SRS_WARNING,
    STEPS,
    ZkCircuit,
    gen_witness,
    prove,
    setup_circuit,
    sha256_file,
    shipped_srs_path,
)
from veriml.zk.field import quantize
from veriml.zk.proof import Proof
from veriml.zk.verifier import SolcJs, VerifierBuild, generate_source, source_path, verifier_for

log = logging.getLogger("veriml.zk")

RUNTIME_PREFIX = "ezkl/"
VERIFY_GAS_MARGIN = 1.5  # the gas ZkJobs gives the verifier: measured cost x this


def default_cache_dir() -> Path:
    """Where setup artifacts are cached unless a directory is passed: ~/.cache/veriml/zk."""
    return Path.home() / ".cache" / "veriml" / "zk"


@dataclass(frozen=True)
class ZkModel:
    """A model set up for proving: manifest, circuit and verifier build; `verifier_address` once deployed."""

    manifest: Manifest
    directory: Path
    circuit: ZkCircuit
    verifier: VerifierBuild
    verifier_address: str | None = None
    verify_gas: int | None = None

    @property
    def model_id(self) -> ModelId:
        return self.manifest.model_id()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def input_max(self) -> int:
        """The largest input instance ZkJobs accepts: the top of the manifest's input range."""
        hi = self.manifest.architecture.get("zk_input_range", [0, 1])[1]
        return quantize([hi], self.circuit.input_scale)[0]

    def record(self) -> dict[str, Any]:
        """What a client or node needs to know about the registration, as JSON."""
        return {
            "name": self.name,
            "model_id": "0x" + self.model_id.hex(),
            "verifier": self.verifier_address,
            "verifier_runtime_bytes": self.verifier.runtime_bytes,
            "verifier_code_hash": "0x" + self.verifier.runtime_keccak.hex(),
            "verifier_source_sha256": self.verifier.source_sha256,
            "vk_sha256": self.circuit.vk_sha256,
            "onnx_sha256": sha256_file(self.circuit.onnx),
            "settings_sha256": sha256_file(self.circuit.settings_path),
            "logrows": self.circuit.logrows,
            "n_inputs": self.circuit.n_inputs,
            "n_outputs": self.circuit.n_outputs,
            "input_scale": self.circuit.input_scale,
            "output_scale": self.circuit.output_scale,
            "input_max": self.input_max,
            "verify_gas": self.verify_gas,
            "srs": str(self.circuit.srs),
            "srs_local_not_trustless": self.circuit.srs_local,
            "compiler": self.verifier.compiler,
            "verifier_shipped": self.verifier.shipped,
        }


def check_manifest(directory: Path) -> Manifest:
    """Load a zk model's manifest and check the ONNX and settings files against the hashes it records."""
    man = Manifest.load(directory / zoo.MANIFEST_FILE)
    if not man.runtime.startswith(RUNTIME_PREFIX):
        raise ConfigError(f"{directory}: runtime {man.runtime!r} is not an EZKL circuit ({RUNTIME_PREFIX}...)")
    arch = man.architecture
    for file_key, hash_key in (("onnx_file", "onnx_sha256"), ("zk_settings_file", "zk_settings_sha256")):
        if file_key not in arch or hash_key not in arch:
            raise ConfigError(f"{directory}: manifest architecture lacks {file_key}/{hash_key}")
        path = directory / arch[file_key]
        if not path.is_file():
            raise ConfigError(f"{directory}: {arch[file_key]} is missing")
        if sha256_file(path) != arch[hash_key]:
            raise ConfigError(f"{path}: sha256 does not match the manifest's {hash_key}")
    return man


STAGES = (
    "check manifest",
    *STEPS,
    "generate verifier",
    "compile verifier",
    "self-check proof",
    "deploy verifier",
    "register model",
    "register circuit",
)


def load_zk_model(
    model: str | Path = "digits-mlp",
    cache_dir: Path | None = None,
    srs_path: Path | None = None,
    on_stage: Callable[[str, bool], None] | None = None,
    *,
    solc: SolcJs | None = None,
) -> ZkModel:
    """Set up a zk model off-chain (cached): what nodes need to prove and clients to check.

    Uses the SRS and compiled verifier the model directory ships when they fit; compiles the verifier with
    `solc` (default: contracts/node_modules of this checkout) otherwise."""
    note = on_stage or (lambda _s, _c: None)
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    directory = zoo.resolve_dir(model)
    man = check_manifest(directory)
    note(STAGES[0], False)
    arch = man.architecture
    logrows = int(json.loads((directory / arch["zk_settings_file"]).read_text())["run_args"]["logrows"])
    circuit = setup_circuit(
        directory / arch["onnx_file"], directory / arch["zk_settings_file"], cache, srs_path, note,
        local_srs_file=shipped_srs_path(directory, logrows),
    )  # fmt: skip
    if circuit.n_inputs == 0:
        raise ConfigError(
            f"{directory}: ZkJobs binds proofs to jobs through public input instances; make the input public"
        )
    if circuit.input_scale != arch.get("zk_input_scale", circuit.input_scale):
        raise ConfigError(f"{directory}: settings input scale differs from the manifest's zk_input_scale")
    sol_cached = source_path(circuit, cache).exists()
    source = generate_source(circuit, cache)
    note(STAGES[4], sol_cached)
    build = verifier_for(circuit, source, cache, directory, solc)
    note(STAGES[5], build.cached)
    return ZkModel(man, directory, circuit, build)


def register_zk_model(
    chain: Chain,
    deployment: Deployment,
    owner: LocalAccount,
    model: str | Path = "digits-mlp",
    cache_dir: Path | None = None,
    srs_path: Path | None = None,
    console: Console | None = None,
    record_path: Path | None = None,
    *,
    solc: SolcJs | None = None,
) -> ZkModel:
    """Run the whole zk setup for `model` (a shipped name or a directory) and bind it on-chain.

    Registers the model in the ModelRegistry if it is not there yet (`owner` becomes its owner), deploys
    its verifier and calls `ZkJobs.registerCircuit`. Shows progress bars on `console` if given; writes the
    registration record as JSON to `record_path` if given. `solc` compiles the verifier of a model that
    ships none for its verifying key (see `load_zk_model`). Idempotent: a model whose circuit is already
    registered with the same verifying key is returned as it is."""
    progress = _progress(console)
    tasks: dict[str, Any] = {}
    with progress:
        for s in STAGES:
            tasks[s] = progress.add_task(s, total=1, status="")

        def note(stage: str, cached: bool) -> None:
            progress.update(tasks[stage], completed=1, status="[dim]cached[/]" if cached else "[green]done[/]")

        if console is not None and srs_path is None:
            console.print(f"[bold red]WARNING[/] {LOCAL_SRS_WARNING}")
        zm = load_zk_model(model, cache_dir, srs_path, note, solc=solc)
        contracts = Contracts(chain, deployment)
        jobs = ZkJobs(chain, deployment)
        mid = zm.model_id

        if jobs.has_circuit(mid):
            c = jobs.circuit(mid)
            if c.vk_hash != bytes.fromhex(zm.circuit.vk_sha256):
                raise ConfigError(
                    f"model 0x{mid.hex()[:12]}.. is already bound to another verifying key "
                    f"(0x{c.vk_hash.hex()[:12]}..); a circuit cannot be re-registered"
                )
            for s in STAGES[6:]:
                note(s, True)
            zm = replace(zm, verifier_address=c.verifier, verify_gas=c.verify_gas)
        else:
            proof = _self_check_proof(zm)
            note(STAGES[6], False)
            receipt = deploy_bytecode(chain, owner, zm.verifier.abi, zm.verifier.bytecode)
            address = receipt["contractAddress"]
            verifier = chain.w3.eth.contract(address=address, abi=zm.verifier.abi)
            gas = _verify_gas(chain, verifier, proof, owner)
            note(STAGES[7], False)
            if not contracts.model_exists(mid):
                m = zm.manifest
                contracts.register_model(owner, mid, m.weights_root_bytes, m.policy, m.policy_threshold, m.price_wei)
                note(STAGES[8], False)
            else:
                note(STAGES[8], True)
            verify_gas = int(gas * VERIFY_GAS_MARGIN)
            jobs.register_circuit(
                owner, mid, address, bytes.fromhex(zm.circuit.vk_sha256), zm.circuit.n_inputs, zm.circuit.n_outputs,
                verify_gas, zm.input_max,
            )  # fmt: skip
            note(STAGES[9], False)
            zm = replace(zm, verifier_address=address, verify_gas=verify_gas)
    if record_path is not None:
        record_path.parent.mkdir(parents=True, exist_ok=True)
        record = {**zm.record(), "chain_id": chain.chain_id, "zk_jobs": jobs.address}
        record_path.write_text(json.dumps(record, indent=2) + "\n")
    return zm


def _self_check_proof(zm: ZkModel) -> Proof:
    """Prove an all-zero input: the verifier about to be registered must accept it."""
    felts = [0] * zm.circuit.n_inputs
    with tempfile.TemporaryDirectory(prefix="veriml-zk-check-") as tmp:
        w = gen_witness(zm.circuit, felts, Path(tmp))
        path = prove(zm.circuit, w, Path(tmp) / "proof.json")
        return Proof.from_ezkl(path, zm.circuit.n_inputs)


def _verify_gas(chain: Chain, verifier: Any, proof: Proof, owner: LocalAccount) -> int:
    """Verify the self-check proof on-chain, in a real transaction (one execution, and a public record that
    this verifier accepts a valid proof); its execution gas, or ConfigError if the verifier rejects it."""
    from veriml.chain.tx import send
    from veriml.errors import ContractRevert

    fn = verifier.functions.verifyProof(proof.proof, list(proof.instances))
    try:
        ok = fn.call({"from": owner.address})
        receipt = send(chain.w3, fn, owner)
    except ContractRevert as e:
        raise ConfigError(f"the freshly deployed verifier rejects a valid proof: {e.reason}") from None
    if ok is not True:
        raise ConfigError("the freshly deployed verifier does not return true for a valid proof")
    calldata = proof.verifier_calldata()
    intrinsic = 21_000 + sum(16 if b else 4 for b in calldata)
    return max(int(receipt["gasUsed"]) - intrinsic, 1)


def _progress(console: Console | None) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description:<18}"),
        BarColumn(bar_width=20),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console or Console(quiet=True),
        transient=False,
        disable=console is None,
    )
