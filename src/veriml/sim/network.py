"""A whole veriml network in one process: chain, contracts, a registered model, staked nodes, a client.

The demo, the end-to-end tests and the benchmarks stand on this. Nodes are stepped in turn (no threads),
so a run is reproducible; when every node is idle and a job waits on a deadline, `tick` mines empty
blocks up to it, which is how a no-show's window closes without waiting in real time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from veriml.chain.backends import Chain, embedded_chain
from veriml.chain.contracts import Contracts, JobStatus
from veriml.chain.deploy import DeployConfig, deploy
from veriml.client.sdk import Client, JobResult
from veriml.gateway.blobstore import LocalBlobStore
from veriml.models.imagegen_runtime import ImageModel, Variation
from veriml.models.runners import load_runner
from veriml.models.runtime import TextModel
from veriml.node.daemon import Action, NodeDaemon
from veriml.node.state import NodeState
from veriml.sim.faults import Cheat, Fault, FaultyNode

ETH = 10**18
IMAGE_MODEL = "tiny-shapes"


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: how it behaves, what it stakes, which models it serves (None: all) and, for
    image models, which honest variation it runs them under (None: the pinned reference)."""

    fault: Fault = Fault.HONEST
    stake_wei: int = 2 * ETH
    cheat: Cheat | None = None
    models: tuple[str, ...] | None = None
    variation: Variation | None = None


def _runners(spec: NodeSpec, loaded: Sequence[TextModel | ImageModel]) -> list[TextModel | ImageModel]:
    out: list[TextModel | ImageModel] = []
    for m in loaded:
        if spec.models is not None and m.manifest.name not in spec.models:
            continue
        out.append(m.with_variation(spec.variation) if isinstance(m, ImageModel) and spec.variation else m)
    return out


@dataclass
class LocalNetwork:
    chain: Chain
    contracts: Contracts
    models: list[TextModel | ImageModel]
    nodes: list[NodeDaemon]
    client: Client
    workdir: Path
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        specs: Sequence[NodeSpec],
        models: Sequence[str] = ("tiny-gpt",),
        chain: Chain | None = None,
        config: DeployConfig | None = None,
        workdir: Path | None = None,
    ) -> LocalNetwork:
        """Deploy, register the models, stake and register one node per spec, and make a client."""
        tmp = None
        if workdir is None:
            tmp = tempfile.TemporaryDirectory(prefix="veriml-")
            workdir = Path(tmp.name)
        chain = chain or embedded_chain()
        if len(specs) + 2 > len(chain.accounts):
            raise ValueError(
                f"{len(specs)} nodes need {len(specs) + 2} dev accounts; the chain has {len(chain.accounts)}"
            )
        deployer, user, node_accounts = chain.accounts[0], chain.accounts[1], chain.accounts[2:]
        contracts = Contracts(chain, deploy(chain, deployer, config))
        loaded = [load_runner(m) for m in models]
        for m in loaded:
            man = m.manifest
            contracts.register_model(
                deployer, m.model_id, man.weights_root_bytes, man.policy, man.policy_threshold, man.price_wei
            )
        inputs = LocalBlobStore(workdir / "inputs")
        nodes: list[NodeDaemon] = []
        for i, spec in enumerate(specs):
            outdir = workdir / f"node{i}" / "outputs"
            node = FaultyNode(
                contracts,
                node_accounts[i],
                _runners(spec, loaded),
                inputs,
                LocalBlobStore(outdir),
                NodeState(workdir / f"node{i}" / "state.sqlite"),
                fault=spec.fault,
                cheat=spec.cheat,
            )
            node.register(spec.stake_wei, f"file://{outdir}")
            nodes.append(node)
        client = Client(contracts, user, inputs)
        return cls(chain, contracts, loaded, nodes, client, workdir, tmp)

    def close(self) -> None:
        for n in self.nodes:
            n.state.close()
        self.chain.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tick(self) -> list[Action]:
        """Step every node once; if none acted, let time pass up to the next deadline an open job waits on."""
        actions = [a for node in self.nodes for a in node.step()]
        if not any(a.what != "skip" for a in actions) and self.chain.backend != "rpc":
            self.chain.mine(self._blocks_to_next_deadline())
        return actions

    def _blocks_to_next_deadline(self) -> int:
        head = self.chain.block_number()
        waits = []
        for job_id in range(1, int(self.contracts.market.functions.nextJobId().call())):
            job = self.contracts.job(job_id)
            if job.status == JobStatus.SUBMITTED:
                waits.append(max(1, job.submit_block + 1 - head))
            elif job.status == JobStatus.ASSIGNED:
                if job.commits < job.n and head <= job.commit_deadline:
                    waits.append(job.commit_deadline + 1 - head)
                elif head <= job.reveal_deadline:
                    waits.append(job.reveal_deadline + 1 - head)
        return min(waits, default=0)

    def run_text_job(self, prompt: str, quorum: int = 3, **kwargs: object) -> JobResult:
        """Submit a text job as the network's user and drive the network until it settles."""
        job_id, _ = self.client.submit_text("tiny-gpt", prompt, quorum, **kwargs)  # type: ignore[arg-type]
        return self.client.wait(job_id, between=self.tick)

    def run_image_job(self, label: str, seed: int = 0, quorum: int = 3, model: str = IMAGE_MODEL) -> JobResult:
        """Submit an image job (class label + seed) as the network's user and drive it until it settles."""
        job_id, _ = self.client.submit_image(model, label, seed, quorum)
        return self.client.wait(job_id, between=self.tick)
