"""A node as its own process: connect to a chain over RPC, serve outputs over HTTP, loop the daemon."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from veriml import schemes
from veriml.chain.backends import dev_accounts, rpc_chain
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import Deployment
from veriml.errors import ConfigError
from veriml.gateway.blob_service import BlobServer
from veriml.gateway.blobstore import LocalBlobStore, open_store
from veriml.node.participant import Participant, Role, RoleEnv
from veriml.node.state import NodeState


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
    poll: float
    scheme_names: tuple[str, ...] = ("quorum",)
    # Applied to each role before the node starts: how `veriml.sim.faults` makes a dishonest node for tests
    # and the devnet; None (production) runs the roles as they are.
    wrap: Callable[[Role], Role] | None = None
    # Role options (RoleEnv.options): optimistic `executes` and `watch_share`, zk `zk_cache_dir`, ...
    options: dict[str, Any] = field(default_factory=dict)

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
        poll: float,
        scheme_names: tuple[str, ...] = ("quorum",),
        wrap: Callable[[Role], Role] | None = None,
        options: dict[str, Any] | None = None,
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
        for name in scheme_names:
            try:
                schemes.get(name)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if stake_eth <= 0:
            raise ConfigError(f"--stake-eth must be positive, got {stake_eth}")
        if not 0 <= port < 65536:
            raise ConfigError(f"--port must be in 0..65535, got {port}")
        if poll <= 0:
            raise ConfigError(f"--poll must be positive, got {poll}")
        share = (options or {}).get("watch_share", 1.0)
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"--watch-share must be in 0..1, got {share}")
        return cls(
            rpc,
            Deployment.load(deployment),
            inputs,
            acct,
            models,
            int(stake_eth * 10**18),
            port,
            state,
            poll,
            tuple(scheme_names),
            wrap,
            dict(options or {}),
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
        state = NodeState(cfg.state)
        env = RoleEnv(cfg.models, open_store(cfg.inputs), outputs, cfg.state.parent, {}, options=dict(cfg.options))
        try:
            roles = []
            for name in cfg.scheme_names:
                role = schemes.get(name).role(contracts.scheme(name), cfg.account, state, env)  # type: ignore[misc]
                roles.append(cfg.wrap(role) if cfg.wrap is not None else role)
            node = Participant(contracts, cfg.account, state, roles)
            node.register(cfg.stake_wei, server.url)
            node.run(stop, cfg.poll)
        finally:
            for resource in env.shared.values():  # a zk prover's worker pool
                close = getattr(resource, "close", None)
                if close is not None:
                    close()
