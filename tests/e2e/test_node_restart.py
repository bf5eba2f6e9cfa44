"""A node that crashes after committing resumes from its SQLite state and reveals what it committed."""

from __future__ import annotations

from veriml.node.participant import RoleEnv
from veriml.node.state import COMMITTED, NodeState
from veriml.sim.faults import Fault
from veriml.sim.network import NodeSpec, build_node

from .conftest import fresh_network


def test_restarted_node_reveals_its_commitment_and_is_paid():
    with fresh_network(Fault.HONEST, Fault.HONEST, Fault.HONEST) as net:
        job_id, _ = net.client.submit_text("tiny-gpt", "The with statement", 3, max_new_tokens=12)
        victim = net.nodes[0]
        jobs = victim.role("quorum").state
        state_path = net.workdir / "node0" / "state.sqlite"
        # Step only the victim until it has committed, then "crash" it.
        for _ in range(10):
            victim.step()
            rec = jobs.get(job_id)
            if rec is not None and rec.phase == COMMITTED:
                break
            net.chain.mine(1)
        assert jobs.get(job_id).phase == COMMITTED
        salt = jobs.get(job_id).salt
        role = victim.role("quorum")
        victim.state.close()

        env = RoleEnv(("tiny-gpt",), role.input_store, role.output_store, net.workdir / "node0", net.loaded)
        reborn = build_node(net.contracts, victim.account, NodeState(state_path), NodeSpec(), env)
        net.nodes[0] = reborn
        assert reborn.role("quorum").state.get(job_id).salt == salt
        result = net.client.wait(job_id, between=net.tick)
        assert result.status == "verified"
        assert victim.address in result.agree and result.slashed == ()
