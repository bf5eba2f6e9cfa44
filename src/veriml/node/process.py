"""A node as its own process: connect to a chain over RPC, serve outputs over HTTP, loop the daemon."""

from __future__ import annotations

import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from veriml.chain.backends import dev_accounts, rpc_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import Deployment
from veriml.errors import ConfigError
from veriml.gateway.blob_service import BlobServer
from veriml.gateway.blobstore import LocalBlobStore, open_store
from veriml.models.runners import load_runner
from veriml.node.state import NodeState
from veriml.sim.faults import Fault, FaultyNode


@dataclass(frozen=True)
class NodeProcessConfig:
    """Everything a node process needs, checked once at start-up."""

    rpc: str
    deployment: Deployment
    inputs: str
    account: LocalAccount
    models: tuple[str, ...]
    stake_wei: int
    port: int
    state: Path
    fault: Fault
    poll: float

    @classmethod
    def build(
        cls,
        *,
        rpc: str,
        deployment: Path,
        inputs: str,
        account: int,
        key: str | None,
        models: tuple[str, ...],
        stake_eth: float,
        port: int,
        state: Path,
        fault: str,
        poll: float,
    ) -> NodeProcessConfig:
        if (account >= 0) == (key is not None):
            raise ConfigError("give exactly one of --account (a dev account index) or --key")
        if key is not None:
            try:
                acct = Account.from_key(key)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"--key is not a private key: {e}") from None
        else:
            accounts = dev_accounts()
            if account >= len(accounts):
                raise ConfigError(f"--account must be below {len(accounts)}, got {account}")
            acct = accounts[account]
        try:
            f = Fault(fault)
        except ValueError:
            raise ConfigError(f"--fault must be one of {', '.join(x.value for x in Fault)}, got {fault!r}") from None
        if stake_eth <= 0:
            raise ConfigError(f"--stake-eth must be positive, got {stake_eth}")
        if not 0 <= port < 65536:
            raise ConfigError(f"--port must be in 0..65535, got {port}")
        if poll <= 0:
            raise ConfigError(f"--poll must be positive, got {poll}")
        return cls(
            rpc,
            Deployment.load(deployment),
            inputs,
            acct,
            models,
            int(stake_eth * 10**18),
            port,
            state,
            f,
            poll,
        )


def run_node_process(cfg: NodeProcessConfig) -> None:
    """Register if needed and serve until SIGINT/SIGTERM."""
    chain = rpc_chain(cfg.rpc, [cfg.account.key.hex()])
    if chain.chain_id != cfg.deployment.chain_id:
        raise ConfigError(f"chain id {chain.chain_id} does not match the deployment's {cfg.deployment.chain_id}")
    contracts = Contracts(chain, cfg.deployment)
    outputs = LocalBlobStore(cfg.state.parent / "outputs")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with BlobServer(outputs, port=cfg.port) as server:
        node = FaultyNode(
            contracts,
            cfg.account,
            [load_runner(m) for m in cfg.models],
            open_store(cfg.inputs),
            outputs,
            NodeState(cfg.state),
            fault=cfg.fault,
        )
        node.register(cfg.stake_wei, server.url)
        node.run(stop, cfg.poll)
