"""The scheme seam: every verification scheme is one module here exporting one `SchemeSpec`.

A spec names the scheme's contract (a `SchemeContract` wrapper over a contract on `JobEscrow.sol`), its
deploy-time parameters, its node role, its client adapter and the fault behaviours `veriml.sim` can give
its role. The CLI (`demo --scheme`, `submit --scheme`, `node run --scheme`), the harness, the devnet, the
node process and the benchmarks all read this registry, so adding a scheme is one contract plus one
module (see docs/architecture.md, "Adding a scheme"). Modules are imported on first use, so listing the
schemes costs nothing and the client needs no torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from veriml.chain.backends import Chain
    from veriml.chain.deploy import DeployConfig, Deployment

# The shipped schemes, in the order they are deployed and listed; each module defines SPEC.
_BUILTIN = ("quorum", "optimistic", "zk")
_SPECS: dict[str, SchemeSpec] = {}


@dataclass(frozen=True)
class SchemeSpec:
    """Everything the rest of veriml needs to know about one scheme."""

    name: str
    summary: str  # one line, for `--help` and the docs
    artifact: str  # the compiled contract (src/veriml/chain/artifacts/<artifact>.json)
    contract: type  # its SchemeContract wrapper
    config: type  # frozen dataclass of its deploy-time parameters (defaults = the protocol's defaults)
    # The contract's constructor arguments after (models, nodes, randomness), from its config and the
    # deployment so far (its shared parameters, slash_bps and burn_bps, and the schemes already deployed).
    constructor_args: Callable[[Any, Deployment], tuple]
    role: Callable[..., Any] | None = None  # node role factory: role(jobs, account, state, env: RoleEnv)
    client: Callable[..., Any] | None = None  # client adapter factory: client(contracts, account, **options)
    faults: tuple[str, ...] = ()  # names of `veriml.sim.faults.Fault` this scheme's role can play
    # Models whose on-chain registration this scheme does itself (zk binds a verifier), and how: setup(net).
    registers: Callable[[Any], bool] = lambda manifest: False
    setup: Callable[[Any], None] | None = None

    def config_of(self, deploy_config: DeployConfig) -> Any:
        """This scheme's parameters in a deployment config (its defaults, with the config's overrides)."""
        overrides = deploy_config.schemes.get(self.name, {})
        known = {f.name for f in dataclasses.fields(self.config)}
        unknown = set(overrides) - known
        if unknown:
            from veriml.errors import ConfigError

            raise ConfigError(f"{self.name} has no parameter(s) {', '.join(sorted(unknown))}; it has {sorted(known)}")
        return self.config(**overrides)

    def deploy(self, chain: Chain, deployment: Deployment, deployer: LocalAccount, config: Any = None) -> Deployment:
        """Deploy this scheme's contract on `deployment`'s registries (with `config`, default the
        deployment's) and authorise it in the NodeRegistry to lock and slash nodes."""
        from veriml.chain.scheme_contract import deploy_scheme

        args = self.constructor_args(config or self.config_of(deployment.config), deployment)
        return deploy_scheme(chain, deployment, deployer, self.name, self.artifact, *args)


def register(spec: SchemeSpec) -> SchemeSpec:
    """Make a scheme known (the built-in ones register themselves; tests may add their own)."""
    _SPECS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    _SPECS.pop(name, None)


def get(name: str) -> SchemeSpec:
    """The spec of scheme `name`; ValueError naming the known ones if there is none."""
    if name not in _SPECS and name in _BUILTIN:
        importlib.import_module(f"veriml.schemes.{name}")
    if name not in _SPECS:
        raise ValueError(f"unknown scheme {name!r}; known: {', '.join(names())}")
    return _SPECS[name]


def names() -> list[str]:
    """Every known scheme: the built-in ones first, in deployment order."""
    return list(_BUILTIN) + [n for n in _SPECS if n not in _BUILTIN]
