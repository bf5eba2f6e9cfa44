"""The EZKL setup pipeline: ONNX + circuit settings -> compiled circuit -> SRS -> proving and verifying keys.

Every heavy artifact is cached by content hash under one cache directory, so setting up the same model
twice costs a few hashes:

    <cache>/circuits/<sha256(onnx, settings, ezkl version)>/   model.onnx settings.json model.compiled
    <cache>/srs/k<logrows>.local.srs                             generated here (NOT trustless)
    <cache>/keys/<sha256(compiled circuit, srs)>/                vk.key pk.key

The SRS (the KZG structured reference string) decides soundness: whoever knows its secret can forge
proofs. `ezkl.get_srs` downloads the public ceremony's SRS, which needs the internet; without it we
generate one locally with `ezkl.gen_srs`, which is fine for development and tests and NOT trustless
(the machine that made it saw the secret). Pass `srs_path` to use a ceremony file instead.

`gen_srs` draws a new secret on every call, and the verifying key depends on the SRS, so a locally
generated SRS gives a new verifying key (and a new verifier) each time. A shipped model therefore carries
its local SRS (`<model dir>/zk/k<logrows>.local.srs`, just as untrusted); `ezkl.setup` is deterministic
given the circuit and the SRS (checked: the same vk and pk bytes from two compilations of the circuit,
whose own bytes differ), so the model's verifying key, and the compiled verifier it ships, are fixed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veriml.errors import ConfigError
from veriml.zk.field import felt_from_le_hex

log = logging.getLogger("veriml.zk")

LOCAL_SRS_WARNING = (
    "using a locally generated SRS (ezkl.gen_srs, here or for the shipped model): fine for development and tests, "
    "NOT TRUSTLESS -- the machine that made it knew the setup secret and could forge proofs. Pass a ceremony SRS "
    "file (srs_path) for real use."
)


def ezkl_version() -> str:
    from importlib.metadata import version

    return version("ezkl")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def quiet_native(log_path: Path | None = None) -> Iterator[None]:
    """Send what native code prints on fds 1 and 2 (EZKL's Rust logs) to `log_path` or /dev/null."""
    import sys

    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    target = os.open(str(log_path) if log_path else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = [os.dup(1), os.dup(2)]
    try:
        os.dup2(target, 1)
        os.dup2(target, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, target):
            os.close(fd)


@dataclass(frozen=True)
class CircuitSpec:
    """How an ONNX graph becomes a circuit: visibilities and fixed-point scales.

    Public inputs are what binds a proof to a job (ZkJobs hashes them); fixed params bake the weights
    into the verifying key. A small decomposition base (1024, 3 legs: range +-2**29) keeps the range-check
    table at 2**10 rows, so a small MLP fits in 2**12 rows instead of the 2**15 EZKL's default needs:
    about 4x faster proving and an 8x smaller proving key."""

    input_visibility: str = "public"
    output_visibility: str = "public"
    param_visibility: str = "fixed"
    input_scale: int = 7
    param_scale: int = 7
    decomp_base: int = 1024
    decomp_legs: int = 3

    def run_args(self) -> Any:
        import ezkl

        ra = ezkl.PyRunArgs()
        ra.input_visibility = self.input_visibility
        ra.output_visibility = self.output_visibility
        ra.param_visibility = self.param_visibility
        ra.input_scale = self.input_scale
        ra.param_scale = self.param_scale
        ra.decomp_base = self.decomp_base
        ra.decomp_legs = self.decomp_legs
        return ra


def make_settings(
    onnx_path: Path, out_path: Path, spec: CircuitSpec, calibration: Sequence[Sequence[float]]
) -> dict[str, Any]:
    """Generate and calibrate EZKL settings for `onnx_path` at the spec's fixed scales; written without
    EZKL's timestamp so the file (and the manifest hash of it) is a function of its inputs."""
    import ezkl

    with tempfile.TemporaryDirectory(prefix="veriml-zk-") as tmp:
        t = Path(tmp)
        (t / "cal.json").write_text(json.dumps({"input_data": [[float(v) for row in calibration for v in row]]}))
        with quiet_native():
            if not ezkl.gen_settings(str(onnx_path), str(t / "settings.json"), py_run_args=spec.run_args()):
                raise ConfigError(f"ezkl.gen_settings failed for {onnx_path}")
            ezkl.calibrate_settings(
                str(t / "cal.json"), str(onnx_path), str(t / "settings.json"), "resources", 2.0,
                [spec.input_scale], [1], None,
            )  # fmt: skip
        settings = json.loads((t / "settings.json").read_text())
    settings.pop("timestamp", None)
    Path(out_path).write_text(json.dumps(settings, sort_keys=True, indent=1) + "\n")
    return settings


@dataclass(frozen=True)
class ZkCircuit:
    """One model's circuit, set up: the files to prove and verify with, and what they imply."""

    onnx: Path
    settings_path: Path
    compiled: Path
    srs: Path
    vk: Path
    pk: Path
    srs_local: bool  # True: an SRS generated on this machine by gen_srs (NOT trustless)
    vk_sha256: str
    settings: dict[str, Any] = field(hash=False, compare=False, repr=False)

    @property
    def logrows(self) -> int:
        return int(self.settings["run_args"]["logrows"])

    @property
    def input_scale(self) -> int:
        return int(self.settings["model_input_scales"][0])

    @property
    def output_scale(self) -> int:
        return int(self.settings["model_output_scales"][0])

    @property
    def n_inputs(self) -> int:
        """Public input instances (0 unless the input is public)."""
        if self.settings["run_args"]["input_visibility"] != "Public":
            return 0
        return _numel(self.settings["model_instance_shapes"][0])

    @property
    def n_outputs(self) -> int:
        return _numel(self.settings["model_instance_shapes"][-1])


def _numel(shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def _atomic_dir(final: Path, build: Callable[[Path], None]) -> None:
    """Build a cache entry in a temporary sibling, then rename it into place (a crash leaves no half entry)."""
    if final.exists():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        build(tmp)
        try:
            tmp.rename(final)
        except OSError:  # someone else finished first
            if not final.exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def shipped_srs_path(model_dir: Path, logrows: int) -> Path:
    """Where a model directory keeps its local (NOT trustless) SRS for 2**logrows rows."""
    return Path(model_dir) / "zk" / f"k{logrows}.local.srs"


def local_srs(logrows: int, cache_dir: Path) -> Path:
    """A locally generated SRS for 2**logrows rows, cached. NOT trustless: see the module docstring."""
    import ezkl

    path = Path(cache_dir) / "srs" / f"k{logrows}.local.srs"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with quiet_native():
            ezkl.gen_srs(str(tmp), logrows)
        tmp.rename(path)
    return path


def compile_cached(onnx_path: Path, settings_path: Path, cache_dir: Path) -> tuple[Path, bool]:
    """The compiled circuit's cache directory (model.onnx, settings.json, model.compiled) and whether it
    was there already."""
    import ezkl

    onnx_hash, settings_hash = sha256_file(onnx_path), sha256_file(settings_path)
    key = hashlib.sha256(f"{onnx_hash}:{settings_hash}:ezkl-{ezkl_version()}".encode()).hexdigest()[:32]
    cdir = Path(cache_dir) / "circuits" / key
    cached = cdir.exists()

    def build(tmp: Path) -> None:
        shutil.copyfile(onnx_path, tmp / "model.onnx")
        shutil.copyfile(settings_path, tmp / "settings.json")
        with quiet_native():
            ok = ezkl.compile_circuit(str(tmp / "model.onnx"), str(tmp / "model.compiled"), str(tmp / "settings.json"))
        if not ok:
            raise ConfigError(f"ezkl.compile_circuit failed for {onnx_path}")

    _atomic_dir(cdir, build)
    return cdir, cached


STEPS = ("compile circuit", "SRS", "keys")


def setup_circuit(
    onnx_path: Path,
    settings_path: Path,
    cache_dir: Path,
    srs_path: Path | None = None,
    on_step: Callable[[str, bool], None] | None = None,
    local_srs_file: Path | None = None,
) -> ZkCircuit:
    """Compile, get an SRS and generate keys for one model, reusing whatever the cache already holds.

    The SRS is `srs_path` (trusted), else `local_srs_file` if that file exists (a shipped local SRS, NOT
    trustless), else one generated into the cache (NOT trustless). `on_step(name, cached)` is called as each
    of `STEPS` completes (for progress bars)."""
    import ezkl

    cache_dir = Path(cache_dir)
    note = on_step or (lambda _name, _cached: None)
    settings = json.loads(Path(settings_path).read_text())
    cdir, cached = compile_cached(onnx_path, settings_path, cache_dir)
    note(STEPS[0], cached)

    logrows = int(settings["run_args"]["logrows"])
    if srs_path is not None:
        srs = Path(srs_path)
        if not srs.is_file():
            raise ConfigError(f"SRS file {srs} does not exist")
        local = False
        note(STEPS[1], True)
    elif local_srs_file is not None and Path(local_srs_file).is_file():
        srs = Path(local_srs_file)
        local = True
        log.warning(LOCAL_SRS_WARNING)
        note(STEPS[1], True)
    else:
        srs = Path(cache_dir) / "srs" / f"k{logrows}.local.srs"
        had = srs.exists()
        srs = local_srs(logrows, cache_dir)
        local = True
        log.warning(LOCAL_SRS_WARNING)
        note(STEPS[1], had)

    kkey = hashlib.sha256(f"{sha256_file(cdir / 'model.compiled')}:{sha256_file(srs)}".encode()).hexdigest()[:32]
    kdir = cache_dir / "keys" / kkey
    cached = kdir.exists()

    def build_keys(tmp: Path) -> None:
        with quiet_native():
            ok = ezkl.setup(
                str(cdir / "model.compiled"), str(tmp / "vk.key"), str(tmp / "pk.key"), str(srs), None, False
            )
        if not ok:
            raise ConfigError(f"ezkl.setup failed for {onnx_path} (is the SRS at least 2**{logrows} rows?)")

    _atomic_dir(kdir, build_keys)
    note(STEPS[2], cached)
    return ZkCircuit(
        onnx=cdir / "model.onnx",
        settings_path=cdir / "settings.json",
        compiled=cdir / "model.compiled",
        srs=srs,
        vk=kdir / "vk.key",
        pk=kdir / "pk.key",
        srs_local=local,
        vk_sha256=sha256_file(kdir / "vk.key"),
        settings=settings,
    )


# ---- running the circuit ----


@dataclass(frozen=True)
class Witness:
    """The circuit's execution on one input: its input and output instances (field elements)."""

    path: Path
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def run_witness(compiled: Path, input_scale: int, felts: Sequence[int], workdir: Path) -> Witness:
    """Run the quantized model inside EZKL on input instances `felts` (keys not needed)."""
    import ezkl

    from veriml.zk.field import dequantize

    workdir.mkdir(parents=True, exist_ok=True)
    # Floats that EZKL re-quantizes to exactly these felts (they are dyadic, so exact in float64).
    (workdir / "input.json").write_text(json.dumps({"input_data": [dequantize(felts, input_scale)]}))
    with quiet_native():
        w = ezkl.gen_witness(str(workdir / "input.json"), str(compiled), str(workdir / "witness.json"), None, None)
    inputs = tuple(felt_from_le_hex(h) for t in w["inputs"] for h in t)
    outputs = tuple(felt_from_le_hex(h) for t in w["outputs"] for h in t)
    if list(inputs) != list(felts):
        raise ConfigError("EZKL quantized the input differently from the job's instances (input scale mismatch?)")
    return Witness(workdir / "witness.json", inputs, outputs)


def gen_witness(circuit: ZkCircuit, felts: Sequence[int], workdir: Path) -> Witness:
    """Run `circuit` on input instances `felts`."""
    return run_witness(circuit.compiled, circuit.input_scale, felts, workdir)


def prove(circuit: ZkCircuit, witness: Witness, proof_path: Path) -> Path:
    """Prove the witness; writes EZKL's proof JSON to `proof_path`."""
    import ezkl

    with quiet_native():
        ezkl.prove(str(witness.path), str(circuit.compiled), str(circuit.pk), str(proof_path), str(circuit.srs))
    return proof_path


def verify_offchain(circuit: ZkCircuit, proof_path: Path) -> bool:
    """EZKL's native verifier (no chain)."""
    import ezkl

    try:
        with quiet_native():
            return bool(
                ezkl.verify(str(proof_path), str(circuit.settings_path), str(circuit.vk), str(circuit.srs), False)
            )
    except RuntimeError:
        return False
