"""The one wrapper base for scheme contracts (every contract on `JobEscrow.sol`): web3 only.

A scheme's wrapper subclasses `SchemeContract`, names its artifact, its `Status` enum and its job view,
and adds one method per scheme-specific function. What every scheme shares is here: submission receipts,
the draw over the frozen candidates, credits and withdrawals, the books, events, and job views decoded by
the ABI's field names (not tuple positions), so a reordered struct cannot silently shift a field.
"""

from __future__ import annotations

import dataclasses
import re
from enum import IntEnum
from typing import Any, ClassVar

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD
from web3.types import TxReceipt

from veriml.chain.artifacts import load_artifact
from veriml.chain.backends import Chain
from veriml.chain.deploy import Deployment
from veriml.chain.tx import call, send
from veriml.errors import ConfigError, ContractRevert
from veriml.types import JobId

# IJobOutcome.Settlement
SETTLEMENTS = ("open", "verified", "failed")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def decode_view(view: type, values: Any, enums: dict[str, type[IntEnum]] | None = None, **extra: Any) -> Any:
    """Build the frozen dataclass `view` from an ABI-decoded struct (a named tuple), matching fields by
    name (camelCase -> snake_case). Byte strings become `bytes`, fields named in `enums` their IntEnum;
    `extra` fills fields the struct does not carry (the job id)."""
    raw = {_snake(k): v for k, v in values._asdict().items()}
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(view):
        if f.name in extra:
            kwargs[f.name] = extra[f.name]
            continue
        if f.name not in raw:
            raise ConfigError(f"{view.__name__}.{f.name} is not a field of the contract's struct")
        v = raw[f.name]
        if enums and f.name in enums:
            v = enums[f.name](v)
        kwargs[f.name] = bytes(v) if isinstance(v, bytes | bytearray) else v
    return view(**kwargs)


class SchemeContract:
    """A deployed scheme contract of one deployment."""

    SCHEME: ClassVar[str]  # the scheme's name in the registry and in Deployment.schemes
    ARTIFACT: ClassVar[str]  # the compiled contract's name
    STATUS: ClassVar[type[IntEnum]]
    VIEW: ClassVar[type]  # frozen dataclass of the job struct, plus job_id

    def __init__(self, chain: Chain, deployment: Deployment) -> None:
        if self.SCHEME not in deployment.schemes:
            raise ConfigError(f"the deployment has no {self.SCHEME} scheme contract")
        self.chain = chain
        self.w3: Web3 = chain.w3
        self.deployment = deployment
        self.address = Web3.to_checksum_address(deployment.schemes[self.SCHEME])
        self.contract: Contract = self.w3.eth.contract(
            address=self.address, abi=load_artifact(self.ARTIFACT).abi, decode_tuples=True
        )
        self.fn = self.contract.functions

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.address})"

    # ---- writes every scheme has ----
    def send(self, account: LocalAccount, fn: Any, value: int = 0, gas: int | None = None) -> TxReceipt:
        return send(self.w3, fn, account, value=value, gas=gas)

    def submitted(self, receipt: TxReceipt) -> JobId:
        """The job id a submission transaction created."""
        (event,) = self.contract.events.JobSubmitted().process_receipt(receipt, errors=DISCARD)
        return JobId(event["args"]["jobId"])

    def assign(self, account: LocalAccount, job_id: int) -> TxReceipt:
        """Draw the job's nodes from the candidates frozen at its submission."""
        cands, weights = self.frozen_candidates(job_id)
        return self.send(account, self.fn.assign(job_id, cands, weights))

    def withdraw(self, account: LocalAccount) -> TxReceipt:
        return self.send(account, self.fn.withdraw())

    # ---- reads every scheme has ----
    def job(self, job_id: int) -> Any:
        return decode_view(self.VIEW, call(self.fn.getJob(job_id)), {"status": self.STATUS}, job_id=JobId(job_id))

    def frozen_candidates(self, job_id: int) -> tuple[list[str], list[int]]:
        """The (nodes, stakes) a job may draw from, as emitted when it was submitted."""
        block = self.job(job_id).submit_block
        logs = self.contract.events.CandidatesFrozen().get_logs(
            from_block=block, to_block=block, argument_filters={"jobId": job_id}
        )
        if len(logs) != 1:
            raise ContractRevert(f"no CandidatesFrozen event for job {job_id} in block {block}")
        return list(logs[0]["args"]["candidates"]), list(logs[0]["args"]["weights"])

    def outcome(self, job_id: int) -> tuple[str, bytes]:
        """IJobOutcome: ("open" | "verified" | "failed", the verified digest or zero)."""
        settlement, digest = call(self.fn.outcome(job_id))
        return SETTLEMENTS[settlement], bytes(digest)

    def next_job_id(self) -> int:
        return int(call(self.fn.nextJobId()))

    def credits(self, account: str) -> int:
        return int(call(self.fn.credits(Web3.to_checksum_address(account))))

    def total_escrow(self) -> int:
        return int(call(self.fn.totalEscrow()))

    def total_burned(self) -> int:
        """Wei of slashed stake this contract has burned (sent to the burn address)."""
        return int(call(self.fn.totalBurned()))

    def total_credits(self) -> int:
        return int(call(self.fn.totalCredits()))

    def balance(self) -> int:
        return int(self.w3.eth.get_balance(self.address))

    def totals(self) -> dict[str, int]:
        """escrow, bonds, credits and burned so far, and the balance (which must equal the first three)."""
        return {
            "escrow": self.total_escrow(),
            "bonds": int(call(self.fn.totalBonds())),
            "credits": self.total_credits(),
            "burned": int(call(self.fn.totalBurned())),
            "balance": self.balance(),
        }

    # ---- events ----
    def events(self, name: str, from_block: int, to_block: int | None = None, **filters: Any) -> list[Any]:
        """Decoded events of one kind in [from_block, to_block]."""
        event = getattr(self.contract.events, name)()
        to = self.w3.eth.block_number if to_block is None else to_block
        if to < from_block:
            return []
        return list(event.get_logs(from_block=from_block, to_block=to, argument_filters=filters or None))

    def receipt_events(self, name: str, receipt: TxReceipt) -> list[Any]:
        return list(getattr(self.contract.events, name)().process_receipt(receipt, errors=DISCARD))


def deploy_scheme(
    chain: Chain, deployment: Deployment, deployer: LocalAccount, scheme: str, artifact: str, *args: object
) -> Deployment:
    """Deploy one scheme contract on `deployment`'s registries, authorise it in the NodeRegistry to lock
    and slash nodes (the deployer must own the registry), and return the deployment with it recorded."""
    from veriml.chain.deploy import deploy_contract

    address = deploy_contract(
        chain, deployer, artifact, deployment.model_registry, deployment.node_registry, deployment.randomness, *args
    )
    registry = chain.w3.eth.contract(address=deployment.node_registry, abi=load_artifact("NodeRegistry").abi)
    send(chain.w3, registry.functions.setScheme(address, True), deployer)
    return dataclasses.replace(deployment, schemes={**deployment.schemes, scheme: address})
