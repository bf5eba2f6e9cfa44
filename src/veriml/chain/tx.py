"""Sending transactions and calls: sign locally, wait for the receipt, turn reverts into ContractRevert."""

from __future__ import annotations

import re
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
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


def send(w3: Web3, fn: ContractFunction, account: LocalAccount, value: int = 0, gas: int | None = None) -> TxReceipt:
    """Sign and send `fn` from `account`, wait for it, and return the receipt.

    The gas estimate runs the call first, so a revert surfaces here with its reason before anything is
    signed; a transaction that still fails on-chain raises ContractRevert with its hash.
    """
    params: dict[str, Any] = {
        "from": account.address,
        "value": value,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
    }
    if gas is not None:
        params["gas"] = gas
    try:
        tx = fn.build_transaction(params)
    except (ContractLogicError, TransactionFailed) as e:
        raise ContractRevert(revert_reason(e)) from None
    return send_raw(w3, tx, account)


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
        "chainId": w3.eth.chain_id,
    }
    return send_raw(w3, tx, account)
