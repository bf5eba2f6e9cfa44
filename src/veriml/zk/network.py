"""A whole zk network in one process: chain, contracts, a registered zk model, prover nodes, a client.

The zk counterpart of `veriml.sim.network.LocalNetwork`, for the demo and the tests. Nodes are stepped in
turn; proofs run in the shared `ProverPool`'s worker processes. When no node acted and no proof is being
computed, `tick` mines empty blocks up to the next deadline a job waits on, so a no-show's window closes
without waiting in real time.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from veriml.chain.backends import Chain, embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, deploy
from veriml.chain.zk import ZkConfig, ZkJobs, ZkJobStatus, deploy_zk
from veriml.node.daemon import Action
from veriml.node.zk import ZkFault, ZkProverNode
from veriml.zk.client import ZkClient, ZkJobResult
from veriml.zk.prover import ProverPool
from veriml.zk.register import ZkModel, register_zk_model

ETH = 10**18


@dataclass(frozen=True)
class ZkNodeSpec:
    """One prover node to start."""

    fault: ZkFault = ZkFault.HONEST
    stake_wei: int = 2 * ETH


@dataclass
class LocalZkNetwork:
    chain: Chain
    contracts: Contracts
    jobs: ZkJobs
    model: ZkModel
    nodes: list[ZkProverNode]
    client: ZkClient
    pool: ProverPool
    workdir: Path
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        specs: Sequence[ZkNodeSpec],
        model: str | Path = "digits-mlp",
        cache_dir: Path | None = None,
        srs_path: Path | None = None,
        chain: Chain | None = None,
        config: DeployConfig | None = None,
        zk_config: ZkConfig | None = None,
        console: Console | None = None,
        workdir: Path | None = None,
    ) -> LocalZkNetwork:
        """Deploy, register `model` for zk (progress on `console`), stake one node per spec, make a client.

        Accounts: 0 deploys and owns the model, 1 is the user, 2.. are the nodes."""
        tmp = None
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="veriml-zk-")
            workdir = Path(tmp.name)
        chain = chain or embedded_chain()
        deployer, user, node_accounts = chain.accounts[0], chain.accounts[1], chain.accounts[2:]
        if len(specs) > len(node_accounts):
            raise ValueError(f"{len(specs)} nodes need {len(specs) + 2} dev accounts")
        deployment = deploy_zk(chain, deploy(chain, deployer, config), deployer, zk_config)
        contracts = Contracts(chain, deployment)
        jobs = ZkJobs(chain, deployment)
        zm = register_zk_model(chain, deployment, deployer, model, cache_dir, srs_path, console)
        # Each network gets its own proof cache, so a demo run proves for real every time.
        pool = ProverPool(workdir / "proofs", max_workers=1)
        nodes = []
        start = chain.block_number() + 1
        for i, spec in enumerate(specs):
            node = ZkProverNode(jobs, contracts, node_accounts[i], [zm], pool, spec.fault, start_block=start)
            node.register(spec.stake_wei, f"zk://node{i}")
            nodes.append(node)
        client = ZkClient(jobs, user, zm)
        return cls(chain, contracts, jobs, zm, nodes, client, pool, workdir, tmp)

    def close(self) -> None:
        self.pool.close()
        self.chain.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalZkNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tick(self) -> list[Action]:
        """Step every node once; if none acted and nothing is being proved, mine up to the next deadline."""
        actions = [a for node in self.nodes for a in node.step()]
        if any(n.proving for n in self.nodes):
            if not any(a.what != "skip" for a in actions):
                time.sleep(0.05)  # a proof is running in a worker: give it the CPU
            return actions
        if not any(a.what != "skip" for a in actions) and self.chain.backend != "rpc":
            self.chain.mine(self._blocks_to_next_deadline())
        return actions

    def _blocks_to_next_deadline(self) -> int:
        head = self.chain.block_number()
        waits = []
        for job_id in range(1, self.jobs.next_job_id()):
            job = self.jobs.job(job_id)
            if job.status == ZkJobStatus.SUBMITTED:
                waits.append(max(1, job.submit_block + 1 - head))
            elif job.status == ZkJobStatus.ASSIGNED:
                waits.append(max(1, job.deadline + 1 - head))
        return min(waits, default=0)

    def run_digit(self, pixels: Sequence[int], fee: int | None = None, timeout: float = 600.0) -> ZkJobResult:
        """Submit one digit as the network's user and drive the network until the job settles."""
        job_id = self.client.submit_digit(pixels, fee)
        return self.client.wait(job_id, between=self.tick, timeout=timeout)

    def node_of(self, address: str | None) -> ZkProverNode | None:
        return next((n for n in self.nodes if n.address == address), None)
