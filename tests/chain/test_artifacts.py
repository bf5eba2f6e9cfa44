"""The committed artifacts are the compiled contracts/ sources: present, well formed, and not stale."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess

import pytest

from veriml.chain.artifacts import ARTIFACTS_DIR, load_artifact
from veriml.chain.backends import REPO_ROOT

CONTRACTS_DIR = REPO_ROOT / "contracts"
# The contracts the chain layer needs, plus whatever else has been compiled since.
REQUIRED = ["ModelRegistry", "NodeRegistry", "QuorumJobs", "BlockhashRandomness", "OutputMatching", "ReentrantUser"]
DEPLOYABLE = sorted(set(REQUIRED) | {p.stem for p in ARTIFACTS_DIR.glob("*.json")})
# A contract or library declared at the top level of a source file (interfaces have no bytecode, no artifact).
DECLARATION = re.compile(r"^\s*(?:contract|library)\s+(\w+)", re.M)  # abstract contracts have no bytecode


def _artifact_json(name: str) -> dict:
    return json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())


def _sources() -> list[str]:
    return sorted(str(p.relative_to(CONTRACTS_DIR)) for d in ("src", "test") for p in (CONTRACTS_DIR / d).glob("*.sol"))


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_artifact_is_present_and_well_formed(name: str) -> None:
    art = load_artifact(name)
    assert art.name == name
    assert art.bytecode.startswith("0x") and len(art.bytecode) > 2
    int(art.bytecode, 16)  # hex all the way
    assert isinstance(art.abi, list)
    assert re.fullmatch(r"[0-9a-f]{64}", art.source_sha256)
    assert _artifact_json(name)["contractName"] == name


@pytest.mark.parametrize("name", DEPLOYABLE)
def test_artifact_source_hash_matches_current_source(name: str) -> None:
    """Runs without Node: editing a .sol file without recompiling fails here."""
    data = _artifact_json(name)
    source = CONTRACTS_DIR / data["sourceName"]
    assert source.exists(), f"{name}: source {data['sourceName']} is gone"
    actual = hashlib.sha256(source.read_bytes()).hexdigest()
    assert data["sourceSha256"] == actual, f"{name}: artifact is stale (run: cd contracts && node compile.js)"


@pytest.mark.parametrize("source", _sources())
def test_every_declared_contract_has_an_artifact(source: str) -> None:
    for name in DECLARATION.findall((CONTRACTS_DIR / source).read_text()):
        path = ARTIFACTS_DIR / f"{name}.json"
        assert path.exists(), f"{source} declares {name} but there is no artifact (run: node compile.js)"
        assert json.loads(path.read_text())["sourceName"] == source


def test_market_abi_has_the_functions_the_wrappers_call() -> None:
    names = {e["name"] for e in load_artifact("QuorumJobs").abi if e.get("type") == "function"}
    for fn in (
        "submit",
        "assign",
        "commit",
        "reveal",
        "finalize",
        "withdraw",
        "getJob",
        "assignedNodes",
        "slotOf",
        "credits",
        "totalEscrow",
        "totalCredits",
        "commitmentOf",
    ):
        assert fn in names


def test_compile_check_reports_no_drift() -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH; the sourceSha256 test still guards against drift")
    if not (CONTRACTS_DIR / "node_modules" / "solc").exists():
        pytest.skip("contracts/node_modules is missing (run: cd contracts && npm ci); sha256 test still runs")
    proc = subprocess.run(
        [node, str(CONTRACTS_DIR / "compile.js"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, f"compile.js --check failed:\n{proc.stdout}\n{proc.stderr}"
    assert "artifacts match sources" in proc.stdout
