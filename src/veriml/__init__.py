"""veriml: machine-learning jobs run on untrusted nodes and settled on an EVM chain.

The public surface, in one place. Names are imported lazily so that `import veriml` (and the client SDK)
does not pull in torch; only running a model does.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # chain
    "Chain": "veriml.chain.backends",
    "embedded_chain": "veriml.chain.backends",
    "anvil_chain": "veriml.chain.backends",
    "rpc_chain": "veriml.chain.backends",
    "deploy": "veriml.chain.deploy",
    "DeployConfig": "veriml.chain.deploy",
    "Deployment": "veriml.chain.deploy",
    "Contracts": "veriml.chain.contracts",
    "JobStatus": "veriml.schemes.quorum",
    "reverts": "veriml.chain",
    "schemes": "veriml",
    # client
    "Client": "veriml.client.sdk",
    "JobResult": "veriml.client.sdk",
    # models
    "Manifest": "veriml.models.manifest",
    "TextModel": "veriml.models.runtime",
    # nodes and simulation
    "Participant": "veriml.node.participant",
    "Role": "veriml.node.participant",
    "NodeState": "veriml.node.state",
    "Fault": "veriml.sim.faults",
    "LocalNetwork": "veriml.sim.network",
    "NodeSpec": "veriml.sim.network",
    # payloads
    "LocalBlobStore": "veriml.gateway.blobstore",
    "HttpBlobStore": "veriml.gateway.blobstore",
    # errors
    "VerimlError": "veriml.errors",
    "UserInputError": "veriml.errors",
    "ChainError": "veriml.errors",
    "ContractRevert": "veriml.errors",
    "NetworkError": "veriml.errors",
    "VerificationError": "veriml.errors",
}

_MODULES = {"reverts", "schemes"}  # submodules exported as they are
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'veriml' has no attribute {name!r}")
    if name in _MODULES:
        value = importlib.import_module(f"{module}.{name}")
    else:
        value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
