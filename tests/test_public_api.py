"""The public surface is pinned: removing or renaming an export must be a deliberate change."""

from __future__ import annotations

import subprocess
import sys

import veriml

EXPECTED = {
    "Chain", "ChainError", "Client", "ContractRevert", "Contracts", "DeployConfig", "Deployment", "Fault",
    "HttpBlobStore", "JobResult", "JobStatus", "LocalBlobStore", "LocalNetwork", "Manifest", "NetworkError",
    "NodeSpec", "Participant", "Role", "reverts", "schemes", "NodeState", "TextModel", "UserInputError",
    "VerificationError", "VerimlError",
    "anvil_chain", "deploy", "embedded_chain", "rpc_chain",
}  # fmt: skip


def test_exports_are_pinned_and_resolve():
    assert set(veriml.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(veriml, name) is not None


def test_the_client_sdk_imports_without_torch():
    code = "import sys, veriml, veriml.client.sdk; veriml.Client; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
