"""The optimistic scheme: one executor posts a traced result; watchers challenge it down to one step.

Contract `OptimisticJobs.sol` (+ `Int8Step.sol`, the on-chain one-step check); wrapper
`veriml.chain.optimistic`; participants (executor and watcher) `veriml.node.optimistic`.
"""

from __future__ import annotations

from veriml import schemes
from veriml.chain.optimistic import OptimisticConfig, OptimisticJobs

SPEC = schemes.register(
    schemes.SchemeSpec(
        name="optimistic",
        summary="one executor posts output + trace root; a watcher may bisect a dispute to one on-chain step",
        artifact="OptimisticJobs",
        contract=OptimisticJobs,
        config=OptimisticConfig,
        constructor_args=lambda c, d: (
            c.execute_window_blocks, c.challenge_window_blocks, c.round_window_blocks, c.challenge_bond_wei,
            d.slash_bps, d.burn_bps,
        ),  # fmt: skip
        faults=("honest", "tampered-step", "no-post", "silent", "frivolous"),
    )
)
