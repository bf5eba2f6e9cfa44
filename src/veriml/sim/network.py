"""A whole veriml network in one process, for every scheme: chain, contracts, registered models, staked
nodes (real roles, some made to misbehave by `veriml.sim.faults`), and a client.

The demos, the end-to-end tests and the benchmarks stand on this. Nodes are stepped in turn (no threads),
so a run is reproducible; when no node acted and no node is busy (a proof running in a worker), `tick`
mines empty blocks up to the next deadline an open job waits on, which is how a no-show's window closes
without waiting in real time. Each scheme's contract says which deadline a job waits on
(`blocks_to_deadline`); each scheme's role says how it is built (`role_for`, in its module).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veriml import schemes
from veriml.chain.backends import Chain, embedded_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, deploy
from veriml.gateway.blobstore import LocalBlobStore
from veriml.node.participant import Action, Participant, RoleEnv
from veriml.node.state import NodeState
from veriml.sim.faults import Cheat, Fault, faulty_role

ETH = 10**18
IMAGE_MODEL = "tiny-shapes"


@dataclass(frozen=True)
class NodeSpec:
    """One node to start: how it behaves, what it stakes, which schemes it takes part in, which models it
    serves (None: every model of the network its schemes can serve), and role options (for example the
    image variation it runs under, or an optimistic watcher's share of jobs)."""

    fault: Fault = Fault.HONEST
    stake_wei: int = 2 * ETH
    cheat: Cheat | None = None
    models: tuple[str, ...] | None = None
    variation: Any = None
    schemes: tuple[str, ...] = ("quorum",)
    options: dict[str, Any] = field(default_factory=dict)
    seed: int = 0


@dataclass
class LocalNetwork:
    chain: Chain
    contracts: Contracts
    nodes: list[Participant]
    client: Any
    workdir: Path
    loaded: dict[str, Any]
    owner: Any = None
    shared: dict[str, Any] = field(default_factory=dict)
    model_names: tuple[str, ...] = ()
    scheme_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # what each scheme's setup reads
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @classmethod
    def start(
        cls,
        specs: Sequence[NodeSpec],
        models: Sequence[str] = ("tiny-gpt",),
        chain: Chain | None = None,
        config: DeployConfig | None = None,
        workdir: Path | None = None,
        client_scheme: str = "quorum",
        prepare: Callable[[LocalNetwork], None] | None = None,
        scheme_options: dict[str, dict[str, Any]] | None = None,
    ) -> LocalNetwork:
        """Deploy every scheme, register the models, stake and register one node per spec, make a client.

        Accounts: 0 deploys and owns the models, 1 is the user, 2.. are the nodes (in spec order).
        `prepare` runs after the models are registered and before nodes start (zk registers circuits).
        `scheme_options[name]` is read by scheme `name`'s setup (zk: cache_dir, srs_path, console)."""
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
        used = list(dict.fromkeys([client_scheme, *(name for s in specs for name in s.schemes)]))
        register_manifests(contracts, deployer, models, used)
        inputs = LocalBlobStore(workdir / "inputs")
        net = cls(
            chain, contracts, [], None, workdir, {}, owner=deployer, model_names=tuple(models),
            scheme_options=dict(scheme_options or {}), _tmp=tmp,
        )  # fmt: skip
        for name in used:
            setup = schemes.get(name).setup
            if setup is not None:
                setup(net)
        if prepare is not None:
            prepare(net)
        loaded = net.loaded
        for i, spec in enumerate(specs):
            outdir = workdir / f"node{i}" / "outputs"
            env = RoleEnv(
                tuple(spec.models or models), inputs, LocalBlobStore(outdir), workdir / f"node{i}", loaded,
                spec.variation, dict(spec.options), net.shared,
            )  # fmt: skip
            node = build_node(contracts, node_accounts[i], NodeState(env.workdir / "state.sqlite"), spec, env)
            node.register(spec.stake_wei, f"file://{outdir}")
            net.nodes.append(node)
        spec = schemes.get(client_scheme)
        assert spec.client is not None
        net.client = spec.client(contracts, user, input_store=inputs, loaded=loaded, shared=net.shared)
        return net

    def close(self) -> None:
        for n in self.nodes:
            n.state.close()
        for resource in self.shared.values():
            close = getattr(resource, "close", None)
            if close is not None:
                close()
        self.chain.close()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> LocalNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def models(self) -> list[Any]:
        return list(self.loaded.values())

    def tick(self) -> list[Action]:
        """Step every node once; if none acted and none is busy, let time pass up to the next deadline."""
        actions = [a for node in self.nodes for a in node.step()]
        idle = not any(a.what != "skip" for a in actions)
        if any(n.busy for n in self.nodes):
            if idle:
                time.sleep(0.05)  # work is running in a worker: give it the CPU
            return actions
        if idle and self.chain.backend != "rpc":
            self.chain.mine(self.blocks_to_next_deadline())
        return actions

    def blocks_to_next_deadline(self) -> int:
        head = self.chain.block_number()
        waits = []
        for name in self.contracts.deployment.schemes:
            jobs = self.contracts.scheme(name)
            for job_id in range(1, jobs.next_job_id()):
                wait = jobs.blocks_to_deadline(jobs.job(job_id), head)
                if wait is not None:
                    waits.append(wait)
        return min(waits, default=0)

    def node_of(self, address: str | None) -> Participant | None:
        return next((n for n in self.nodes if n.address == address), None)

    def run_text_job(self, prompt: str, quorum: int = 3, **kwargs: object) -> Any:
        """Submit a text job as the network's user and drive the network until it settles."""
        job_id, _ = self.client.submit_text("tiny-gpt", prompt, quorum, **kwargs)
        return self.client.wait(job_id, between=self.tick)

    def run_image_job(self, label: str, seed: int = 0, quorum: int = 3, model: str = IMAGE_MODEL) -> Any:
        """Submit an image job (class label + seed) as the network's user and drive it until it settles."""
        job_id, _ = self.client.submit_image(model, label, seed, quorum)
        return self.client.wait(job_id, between=self.tick)


def register_manifests(contracts: Contracts, owner: Any, models: Sequence[str], used: Sequence[str]) -> None:
    """Register each shipped model from its manifest, unless one of the schemes in use registers it itself."""
    from veriml.models import zoo

    for name in models:
        man = zoo.manifest_of(name)
        if any(schemes.get(s).registers(man) for s in used):
            continue
        contracts.register_model(
            owner, man.model_id(), man.weights_root_bytes, man.policy, man.policy_threshold, man.price_wei
        )


def build_node(contracts: Contracts, account: Any, state: NodeState, spec: NodeSpec, env: RoleEnv) -> Participant:
    """A participant with one role per scheme of `spec`, each made to misbehave as `spec.fault` says (a
    fault applies to the schemes that know it; the others stay honest)."""
    roles = []
    for name in spec.schemes:
        s = schemes.get(name)
        assert s.role is not None, f"scheme {name} has no node role"
        role = s.role(contracts.scheme(name), account, state, env)
        fault = spec.fault if spec.fault.value in s.faults else Fault.HONEST
        cheat = spec.cheat if name == "quorum" else None
        roles.append(faulty_role(role, fault, cheat, spec.seed))
    return Participant(contracts, account, state, roles)
