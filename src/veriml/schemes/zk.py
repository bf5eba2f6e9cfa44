"""The zk scheme: one drawn node proves the model's run with EZKL; the model's verifier contract checks it.

Contract `ZkJobs.sol`; wrapper `veriml.chain.zk`; prover `veriml.node.zk`; EZKL work `veriml.zk`.
"""

from __future__ import annotations

from veriml import schemes
from veriml.chain.zk import ZkConfig, ZkJobs

SPEC = schemes.register(
    schemes.SchemeSpec(
        name="zk",
        summary="one drawn node proves its run with EZKL; the model's verifier contract checks the proof",
        artifact="ZkJobs",
        contract=ZkJobs,
        config=ZkConfig,
        constructor_args=lambda c, d: (c.prove_window_blocks, d.slash_bps, d.burn_bps),
        faults=("honest", "forged-output", "tampered-proof", "replayed-proof", "no-show"),
        registers=lambda manifest: "zk_settings_file" in manifest.architecture,
    )
)
