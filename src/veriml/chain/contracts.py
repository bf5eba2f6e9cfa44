"""The registries (models, nodes) of one deployment, and the way to its scheme contracts.

Writes take the signing account first and return the receipt; reads return frozen views. Reverts come
back as `ContractRevert` (custom errors as their own classes, see `veriml.chain.reverts`). Each scheme's
contract has its own wrapper (a `SchemeContract`, defined by its module under `veriml.schemes`), reached
with `contracts.scheme(name)` or, for the quorum scheme, `contracts.quorum`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.types import TxReceipt

from veriml.chain.artifacts import load_artifact
from veriml.chain.backends import Chain
from veriml.chain.deploy import Deployment
from veriml.chain.tx import call, send
from veriml.types import POLICY_CODES, Address, ModelId

POLICY_NAMES = {v: k for k, v in POLICY_CODES.items()}


@dataclass(frozen=True)
class NodeView:
    address: Address
    stake: int
    endpoint: str
    pubkey: bytes
    unbond_block: int
    open_jobs: int
    registered: bool


@dataclass(frozen=True)
class ModelView:
    model_id: ModelId
    owner: Address
    weights_root: bytes
    policy: str
    threshold: int
    price: int


class Contracts:
    """The veriml contracts on one chain."""

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.deployment = deployment
        self.models: Contract = self._bind("ModelRegistry", deployment.model_registry)
        self.nodes: Contract = self._bind("NodeRegistry", deployment.node_registry)
        self._schemes: dict[str, Any] = {}

    def _bind(self, name: str, address: str) -> Contract:
        return self.w3.eth.contract(
            address=Web3.to_checksum_address(address), abi=load_artifact(name).abi, decode_tuples=True
        )

    # ---- models ----
    def register_model(
        self,
        account: LocalAccount,
        model_id: bytes,
        weights_root: bytes,
        policy: str,
        threshold: int,
        price: int,
    ) -> TxReceipt:
        fn = self.models.functions.register(model_id, weights_root, POLICY_CODES[policy], threshold, price)
        return send(self.w3, fn, account)

    def model_exists(self, model_id: bytes) -> bool:
        return bool(call(self.models.functions.exists(model_id)))

    def model(self, model_id: bytes) -> ModelView:
        m = call(self.models.functions.getModel(model_id))
        return ModelView(
            ModelId(bytes(model_id)), m.owner, bytes(m.weightsRoot), POLICY_NAMES[m.policy], m.threshold, m.price
        )

    # ---- nodes ----
    def register_node(
        self, account: LocalAccount, stake: int, endpoint: str, pubkey: bytes, model_ids: list[bytes]
    ) -> TxReceipt:
        return send(self.w3, self.nodes.functions.register(endpoint, pubkey, model_ids), account, value=stake)

    def top_up(self, account: LocalAccount, amount: int) -> TxReceipt:
        return send(self.w3, self.nodes.functions.topUp(), account, value=amount)

    def request_unbond(self, account: LocalAccount) -> TxReceipt:
        return send(self.w3, self.nodes.functions.requestUnbond(), account)

    def withdraw_stake(self, account: LocalAccount) -> TxReceipt:
        return send(self.w3, self.nodes.functions.withdrawStake(), account)

    def node(self, address: str) -> NodeView:
        n = call(self.nodes.functions.getNode(Web3.to_checksum_address(address)))
        return NodeView(
            Address(Web3.to_checksum_address(address)), n.stake, n.endpoint, bytes(n.pubkey), n.unbondBlock, n.openJobs,
            n.registered,
        )  # fmt: skip

    def stake_of(self, address: str) -> int:
        return int(call(self.nodes.functions.stakeOf(Web3.to_checksum_address(address))))

    def candidates(self, model_id: bytes) -> list[tuple[Address, int]]:
        addrs, weights = call(self.nodes.functions.candidates(model_id))
        return [(Address(a), int(w)) for a, w in zip(addrs, weights, strict=True)]

    def total_staked(self) -> int:
        return int(call(self.nodes.functions.totalStaked()))

    # ---- schemes ----
    def scheme(self, name: str) -> Any:
        """The wrapper of scheme `name`'s contract in this deployment (made once)."""
        if name not in self._schemes:
            from veriml import schemes

            self._schemes[name] = schemes.get(name).contract(self.chain, self.deployment)
        return self._schemes[name]

    @property
    def quorum(self) -> Any:
        """The quorum scheme's contract (QuorumJobs)."""
        return self.scheme("quorum")

    def balance(self, address: str) -> int:
        return int(self.w3.eth.get_balance(Web3.to_checksum_address(address)))
