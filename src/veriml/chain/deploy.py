"""Deploying the veriml contracts: one function, one settings object, one record of addresses."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from eth_account.signers.local import LocalAccount
from web3.exceptions import ContractLogicError

from veriml.chain.artifacts import load_artifact
from veriml.chain.backends import Chain
from veriml.chain.tx import TransactionFailed, revert_reason, send, send_raw
from veriml.errors import ConfigError, ContractRevert


@dataclass(frozen=True)
class DeployConfig:
    """Protocol parameters fixed at deployment."""

    min_stake_wei: int = 10**18  # 1 ETH
    # Above the 256-block assignment horizon, so a node eligible when a job was submitted is still
    # registered whenever that job is assigned (see JobMarket.assign).
    unbond_delay_blocks: int = 300
    commit_window_blocks: int = 40
    reveal_window_blocks: int = 40
    slash_bps: int = 5_000  # half the stake of a dissenter or no-show


@dataclass(frozen=True)
class Deployment:
    """Where the contracts live on one chain."""

    chain_id: int
    model_registry: str
    node_registry: str
    randomness: str
    job_market: str
    config: DeployConfig
    # Contracts of the other schemes (optimistic, zk, ...), by scheme name; each is authorised in the
    # NodeRegistry to lock and slash nodes.
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
        raise ContractRevert(revert_reason(e)) from None
    receipt = send_raw(chain.w3, tx, deployer)
    return receipt["contractAddress"]


def deploy(chain: Chain, deployer: LocalAccount | None = None, config: DeployConfig | None = None) -> Deployment:
    """Deploy the registries, the randomness source and the market, and authorise the market to slash."""
    deployer = deployer or chain.accounts[0]
    config = config or DeployConfig()
    models = deploy_contract(chain, deployer, "ModelRegistry")
    nodes = deploy_contract(chain, deployer, "NodeRegistry", models, config.min_stake_wei, config.unbond_delay_blocks)
    randomness = deploy_contract(chain, deployer, "BlockhashRandomness")
    market = deploy_contract(
        chain,
        deployer,
        "JobMarket",
        models,
        nodes,
        randomness,
        config.commit_window_blocks,
        config.reveal_window_blocks,
        config.slash_bps,
    )
    registry = chain.w3.eth.contract(address=nodes, abi=load_artifact("NodeRegistry").abi)
    send(chain.w3, registry.functions.setScheme(market, True), deployer)
    return Deployment(chain.chain_id, models, nodes, randomness, market, config)
