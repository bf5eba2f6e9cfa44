"""A node that crashes after committing resumes from its SQLite state and reveals what it committed."""

from __future__ import annotations

from veriml.node.daemon import NodeDaemon
from veriml.node.state import COMMITTED, NodeState
from veriml.sim.faults import Fault

from .conftest import fresh_network


def test_restarted_node_reveals_its_commitment_and_is_paid():
    with fresh_network(Fault.HONEST, Fault.HONEST, Fault.HONEST) as net:
        job_id, _ = net.client.submit_text("tiny-gpt", "The with statement", 3, max_new_tokens=12)
        victim = net.nodes[0]
        state_path = net.workdir / "node0" / "state.sqlite"
        # Step only the victim until it has committed, then "crash" it.
        for _ in range(10):
            victim.step()
            rec = victim.state.get(job_id)
            if rec is not None and rec.phase == COMMITTED:
                break
            net.chain.mine(1)
        assert victim.state.get(job_id).phase == COMMITTED
        salt = victim.state.get(job_id).salt
        victim.state.close()

        reborn = NodeDaemon(
            net.contracts,
            victim.account,
            net.models,
            victim.input_store,
            victim.output_store,
            NodeState(state_path),
        )
        net.nodes[0] = reborn
        assert reborn.state.get(job_id).salt == salt
        result = net.client.wait(job_id, between=net.tick)
        assert result.status == "verified"
        assert victim.address in result.agree and result.slashed == ()
