"""A quorum node that dies after its commit transaction is mined but before its state records it (the
window tests/devnet/test_every_scheme.py's SIGKILL can land in). Its salt is already saved, so on restart
it reveals: QuorumRole.advance finds its commitment already in its slot, records "committed" and goes on
(before the fix it sent the commit again, was refused AlreadyCommitted on every step and missed the
reveal)."""

from __future__ import annotations

from veriml.chain.deploy import DeployConfig
from veriml.node import state as st
from veriml.sim.network import LocalNetwork, NodeSpec

CONFIG = DeployConfig().with_scheme("quorum", commit_window_blocks=6, reveal_window_blocks=6)


def test_a_node_that_crashed_between_its_commit_and_its_record_still_reveals(tmp_path):
    with LocalNetwork.start([NodeSpec() for _ in range(3)], workdir=tmp_path, config=CONFIG) as net:
        victim = net.nodes[0]
        role = victim.role("quorum")
        update = role.state.update
        crashed = []

        def crash_on_commit_record(job_id, **fields):  # noqa: ANN001, ANN003, ANN202
            if fields.get("phase") == st.COMMITTED and not crashed:
                crashed.append(job_id)
                raise RuntimeError("killed after the commit was mined, before it was recorded")
            return update(job_id, **fields)

        role.state.update = crash_on_commit_record  # type: ignore[method-assign]
        job_id, _ = net.client.submit_text("tiny-gpt", "The with statement", 3, max_new_tokens=4)
        result = net.client.wait(job_id, between=net.tick, timeout=120)
        assert crashed == [job_id]
        assert victim.address in result.agree and not result.slashed
