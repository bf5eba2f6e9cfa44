"""Sending transactions and calls: sign locally, wait for the receipt, turn reverts into ContractRevert."""

from __future__ import annotations

import re
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import EthereumTesterProvider, Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt

from veriml.errors import ContractRevert

try:  # eth-tester raises its own exception type for reverts on the embedded backend
    from eth_tester.exceptions import TransactionFailed
except ImportError:  # pragma: no cover - eth-tester is a core dependency
    TransactionFailed = ContractLogicError  # type: ignore[misc,assignment]

_REASON = re.compile(r"(?:execution reverted:?\s*|reverted:?\s*)(.*)", re.S)


def revert_reason(exc: BaseException) -> str:
    """The revert string inside a web3 or eth-tester exception."""
    msg = getattr(exc, "message", None) or (exc.args[0] if exc.args else str(exc))
    if not isinstance(msg, str):
        msg = str(msg)
    m = _REASON.search(msg)
    return (m.group(1) if m else msg).strip().strip("'\"") or "reverted without a reason"


def call(fn: ContractFunction, sender: str | None = None) -> Any:
    """Run a view function; reverts become ContractRevert."""
    try:
        return fn.call({"from": sender} if sender else {})
    except (ContractLogicError, TransactionFailed) as e:
        raise ContractRevert(revert_reason(e)) from None


# On the in-process chain, web3's gas estimate is a binary search that executes the call about 14 times,
# half the wall time of a job; one eth_call finds reverts just as well, and the block limit is ours.
EMBEDDED_TX_GAS = 15_000_000


def send(w3: Web3, fn: ContractFunction, account: LocalAccount, value: int = 0, gas: int | None = None) -> TxReceipt:
    """Sign and send `fn` from `account`, wait for it, and return the receipt.

    The call is simulated first (by the gas estimate, or one eth_call on the embedded chain), so a revert
    surfaces here with its reason before anything is signed; a transaction that still fails on-chain
    raises ContractRevert with its hash.
    """
    params: dict[str, Any] = {
        "from": account.address,
        "value": value,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": _chain_id(w3),
    }
    try:
        if gas is None and isinstance(w3.provider, EthereumTesterProvider):
            # "pending": judge the call in the block the transaction will land in (head + 1), since the
            # contracts' rules depend on block.number.
            fn.call({"from": account.address, "value": value}, block_identifier="pending")
            gas = EMBEDDED_TX_GAS
        if gas is not None:
            params["gas"] = gas
        tx = fn.build_transaction(params)
    except (ContractLogicError, TransactionFailed) as e:
        raise ContractRevert(revert_reason(e)) from None
    return send_raw(w3, tx, account)


def _chain_id(w3: Web3) -> int:
    """The chain id, asked once per web3 instance (it cannot change under a connection)."""
    cached = getattr(w3, "_veriml_chain_id", None)
    if cached is None:
        cached = w3.eth.chain_id
        w3._veriml_chain_id = cached  # type: ignore[attr-defined]
    return cached


def send_raw(w3: Web3, tx: dict[str, Any], account: LocalAccount) -> TxReceipt:
    """Sign an already-built transaction, send it and wait for its receipt."""
    signed = account.sign_transaction(tx)
    try:
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    except (ContractLogicError, TransactionFailed) as e:
        raise ContractRevert(revert_reason(e)) from None
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1:
        raise ContractRevert("transaction failed on-chain", tx=Web3.to_hex(tx_hash))
    return receipt


def transfer(w3: Web3, account: LocalAccount, to: str, value: int) -> TxReceipt:
    """Send plain coin."""
    tx = {
        "from": account.address,
        "to": Web3.to_checksum_address(to),
        "value": value,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "gas": 21_000,
        "gasPrice": w3.eth.gas_price,
        "chainId": _chain_id(w3),
    }
    return send_raw(w3, tx, account)
