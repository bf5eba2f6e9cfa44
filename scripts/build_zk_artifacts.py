"""Rebuild the zk artifacts a shipped model carries, so that registering it needs no Node.

Writes into `<model dir>/zk/` (default: src/veriml/models/zoo/digits-mlp/zk/):

    k<logrows>.local.srs        a local SRS (ezkl.gen_srs): NOT trustless, kept so the verifying key is fixed
    verifiers/<sha256(vk)>.json the compiled verifier of that key: abi, bytecode, source sha256, solc-js version
    README.md                   what the files are and their sizes

`ezkl.gen_srs` draws a new secret on every call, so the SRS is kept unless `--new-srs` is given (that
changes the verifying key and the verifier). `ezkl.setup` is deterministic given the circuit and the SRS,
so with an unchanged model and SRS the shipped verifier still fits and nothing is compiled; otherwise the
verifier is compiled with the solc-js in contracts/node_modules (`make contracts-deps`). Last, the model is
set up again in a fresh cache with solc-js made unavailable, to check that the shipped files are what
registration picks up.

Usage: python scripts/build_zk_artifacts.py [--model NAME_OR_DIR] [--new-srs] [--force] [--node-modules DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from veriml.errors import VerimlError
from veriml.models import zoo
from veriml.zk.circuit import ezkl_version, quiet_native, setup_circuit, sha256_file, shipped_srs_path
from veriml.zk.register import check_manifest, load_zk_model
from veriml.zk.verifier import (
    NODE_MODULES,
    SHIPPED_DIR,
    SolcJs,
    compile_verifier,
    generate_source,
    load_shipped,
    shipped_path,
    shipped_record,
)


def new_srs(path: Path, logrows: int) -> None:
    """Draw a fresh local SRS into `path` (atomically)."""
    import ezkl

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with quiet_native():
        ezkl.gen_srs(str(tmp), logrows)
    tmp.chmod(0o644)
    tmp.rename(path)


def build(directory: Path, fresh_srs: bool, force: bool, solc: SolcJs) -> dict:
    """Bring `directory`'s zk/ folder up to date; returns what was done and the sizes."""
    arch = check_manifest(directory).architecture
    onnx, settings = directory / arch["onnx_file"], directory / arch["zk_settings_file"]
    logrows = int(json.loads(settings.read_text())["run_args"]["logrows"])
    srs = shipped_srs_path(directory, logrows)
    if fresh_srs or not srs.is_file():
        new_srs(srs, logrows)
    for old in srs.parent.glob("k*.local.srs"):
        if old != srs:  # an SRS for logrows the circuit no longer has
            old.unlink()
    with tempfile.TemporaryDirectory(prefix="veriml-zk-artifacts-") as tmp:
        cache = Path(tmp)
        circuit = setup_circuit(onnx, settings, cache, local_srs_file=srs)
        source = generate_source(circuit, cache)
        shipped, _ = load_shipped(directory, circuit, source)
        compiled = force or shipped is None
        if compiled:
            b = compile_verifier(source, cache, solc)
            out = shipped_path(directory, circuit.vk_sha256)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(shipped_record(circuit, b), indent=1, sort_keys=True) + "\n")
        for old in (directory / SHIPPED_DIR).glob("*.json"):
            if old.name != f"{circuit.vk_sha256}.json":  # the verifier of a key this model no longer has
                old.unlink()
        sizes = {
            "srs_bytes": srs.stat().st_size,
            "vk_bytes": circuit.vk.stat().st_size,
            "pk_bytes": circuit.pk.stat().st_size,
            "verifier_source_bytes": source.stat().st_size,
            "verifier_record_bytes": shipped_path(directory, circuit.vk_sha256).stat().st_size,
        }
        summary = {
            "model": str(directory),
            "logrows": logrows,
            "srs_sha256": sha256_file(srs),
            "vk_sha256": circuit.vk_sha256,
            "verifier": "compiled" if compiled else "up to date",
            **sizes,
        }
    # What registration will do: a fresh cache, and no solc-js anywhere it could look.
    with tempfile.TemporaryDirectory(prefix="veriml-zk-check-") as tmp:
        no_solc = SolcJs(node_modules=Path(tmp) / "no-node-modules", node=str(Path(tmp) / "no-node"))
        zm = load_zk_model(directory, Path(tmp) / "cache", solc=no_solc)
        if not zm.verifier.shipped or zm.circuit.vk_sha256 != summary["vk_sha256"]:
            raise VerimlError(f"registration did not pick up the shipped verifier of {directory}")
        summary["runtime_bytes"] = zm.verifier.runtime_bytes
        summary["compiler"] = zm.verifier.compiler
    (srs.parent / "README.md").write_text(_readme(summary))
    return summary


def _readme(s: dict) -> str:
    return f"""# zk artifacts

Written by `scripts/build_zk_artifacts.py` (run by `make model`), so that registering this model for the
zk scheme needs no Node. EZKL {ezkl_version()}, circuit of 2^{s["logrows"]} rows.

| file | what | bytes |
|---|---|---|
| `k{s["logrows"]}.local.srs` | a local SRS from `ezkl.gen_srs`: **NOT trustless** (the machine that made it knew the \
secret); pass a ceremony SRS (`--srs`) for real use | {s["srs_bytes"]} |
| `verifiers/{s["vk_sha256"]}.json` | the verifier of the verifying key with that sha256, compiled with \
{s["compiler"]}: abi, bytecode ({s["runtime_bytes"]} bytes runtime), the sha256 of the EZKL source it was built \
from | {s["verifier_record_bytes"]} |

Not shipped, because `ezkl.setup` rebuilds them deterministically from the circuit and this SRS in about a
second: the verifying key ({s["vk_bytes"]} bytes) and the proving key ({s["pk_bytes"]} bytes).
Registration uses the shipped verifier when the verifying key, EZKL version, compiler settings and the
freshly generated source all match what it was built from; otherwise (a new or changed model, or another
SRS) it compiles the verifier with solc-js.
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="digits-mlp", help="shipped model name or model directory")
    ap.add_argument("--new-srs", action="store_true", help="draw a new local SRS (changes the verifying key)")
    ap.add_argument("--force", action="store_true", help="recompile the verifier even if the shipped one fits")
    ap.add_argument("--node-modules", type=Path, default=NODE_MODULES, help="where solc-js is installed")
    args = ap.parse_args()
    try:
        summary = build(zoo.resolve_dir(args.model), args.new_srs, args.force, SolcJs(node_modules=args.node_modules))
    except VerimlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
