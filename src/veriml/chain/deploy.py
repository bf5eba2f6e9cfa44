"""Deploying the veriml contracts: one function, one settings object, one record of addresses."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3.exceptions import ContractLogicError

from veriml.chain.artifacts import load_artifact
from veriml.chain.backends import Chain
from veriml.chain.tx import TransactionFailed, revert_error, send_raw
from veriml.errors import ConfigError


@dataclass(frozen=True)
class DeployConfig:
    """Protocol parameters fixed at deployment: the registries', those every scheme shares, and each
    scheme's own (`schemes[name]`: field overrides of that scheme's config, see `veriml.schemes`)."""

    min_stake_wei: int = 10**18  # 1 ETH
    # Above the 256-block assignment horizon, so a node eligible when a job was submitted is still
    # registered whenever that job is assigned (see JobEscrow._drawFrozen).
    unbond_delay_blocks: int = 300
    slash_bps: int = 5_000  # half the stake of a node caught cheating or absent
    # The share of every slash nobody receives, so nobody profits from arranging its own exposure through a
    # second account (see JobEscrow and docs/architecture.md, "Who may profit from a slash").
    burn_bps: int = 2_000
    schemes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def with_scheme(self, scheme: str, **overrides: Any) -> DeployConfig:
        """This config with some of one scheme's parameters changed."""
        merged = {**self.schemes, scheme: {**self.schemes.get(scheme, {}), **overrides}}
        return dataclasses.replace(self, schemes=merged)


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live on one chain."""

    chain_id: int
    model_registry: str
    node_registry: str
    randomness: str
    config: DeployConfig
    # The scheme contracts, by scheme name; each is authorised in the NodeRegistry to lock and slash nodes.
    schemes: dict[str, str] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Deployment:
        try:
            data = json.loads(Path(path).read_text())
            return cls(**{**data, "config": DeployConfig(**data["config"])})
        except (OSError, ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"cannot read deployment file {path}: {e}") from None


def deploy_contract(chain: Chain, deployer: LocalAccount, name: str, *args: object) -> str:
    """Deploy one artifact and return its address."""
    art = load_artifact(name)
    factory = chain.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    try:
        tx = factory.constructor(*args).build_transaction(
            {"from": deployer.address, "nonce": chain.w3.eth.get_transaction_count(deployer.address, "pending")}
        )
    except (ContractLogicError, TransactionFailed) as e:
        raise revert_error(e) from None
    receipt = send_raw(chain.w3, tx, deployer)
    return receipt["contractAddress"]


def deploy(
    chain: Chain,
    deployer: LocalAccount | None = None,
    config: DeployConfig | None = None,
    schemes: Sequence[str] | None = None,
) -> Deployment:
    """Deploy the registries, the randomness source and the scheme contracts (every registered scheme
    unless `schemes` names some), each authorised in the NodeRegistry to lock and slash nodes."""
    from veriml import schemes as registry

    deployer = deployer or chain.accounts[0]
    config = config or DeployConfig()
    models = deploy_contract(chain, deployer, "ModelRegistry")
    nodes = deploy_contract(chain, deployer, "NodeRegistry", models, config.min_stake_wei, config.unbond_delay_blocks)
    randomness = deploy_contract(chain, deployer, "BlockhashRandomness")
    deployment = Deployment(chain.chain_id, models, nodes, randomness, config)
    for name in registry.names() if schemes is None else schemes:
        deployment = registry.get(name).deploy(chain, deployment, deployer)
    return deployment
