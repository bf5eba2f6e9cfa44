"""Sending transactions and calls: sign locally, wait for the receipt, turn reverts into ContractRevert."""

from __future__ import annotations

import ast
import functools
import re
from typing import Any

from eth_abi import decode
from eth_account.signers.local import LocalAccount
from eth_hash.auto import keccak
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
    """The revert string inside a web3 or eth-tester exception; custom errors are named from our ABIs."""
    return str(revert_error(exc).reason)


def revert_error(exc: BaseException, tx: str | None = None) -> ContractRevert:
    """The ContractRevert for a web3 or eth-tester revert: for a custom error, an instance of its own
    subclass (`veriml.chain.reverts.<Name>`) carrying the decoded arguments; else the revert string."""
    data = getattr(exc, "data", None)
    msg = getattr(exc, "message", None) or (exc.args[0] if exc.args else str(exc))
    for raw in (data, msg):
        if isinstance(raw, bytes | bytearray) and len(raw) >= 4:
            return _decode_revert_data(bytes(raw), tx)
        if isinstance(raw, str) and re.fullmatch(r"0x[0-9a-fA-F]{8,}", raw):
            return _decode_revert_data(bytes.fromhex(raw[2:]), tx)
    if not isinstance(msg, str):
        msg = str(msg)
    m = _REASON.search(msg)
    reason = (m.group(1) if m else msg).strip()
    if reason.startswith(("b'", 'b"')):  # eth-tester prints custom-error revert data as a bytes literal
        try:
            return _decode_revert_data(ast.literal_eval(reason), tx)
        except (ValueError, SyntaxError):
            pass
    return ContractRevert(reason.strip("'\"") or "reverted without a reason", tx=tx)


def _decode_revert_data(data: bytes, tx: str | None) -> ContractRevert:
    """A custom error any of our contracts declares (by name, with its arguments), Error(string) or Panic."""
    from veriml.chain import reverts

    selector, args = data[:4], data[4:]
    if selector == _ERROR_STRING:
        return ContractRevert(decode(["string"], args)[0], tx=tx)
    if selector == _PANIC:
        return ContractRevert(f"panic 0x{decode(['uint256'], args)[0]:02x}", tx=tx)
    found = _custom_errors().get(selector)
    if found is None:
        return ContractRevert(f"custom error 0x{selector.hex()}", tx=tx)
    name, types = found
    try:
        values = tuple(decode(types, args))
    except Exception:  # noqa: BLE001 - malformed revert data still gets a name
        values = ()
    return reverts.error_class(name)(values, tx=tx)


_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string): require/revert with a message
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256): assert, overflow, division by zero


@functools.cache
def _custom_errors() -> dict[bytes, tuple[str, list[str]]]:
    from veriml.chain.artifacts import ARTIFACTS_DIR, load_artifact

    table: dict[bytes, tuple[str, list[str]]] = {}
    for path in ARTIFACTS_DIR.glob("*.json"):
        for item in load_artifact(path.stem).abi:
            if item.get("type") == "error":
                types = [i["type"] for i in item.get("inputs", [])]
                selector = keccak(f"{item['name']}({','.join(types)})".encode())[:4]
                table[selector] = (item["name"], types)
    return table


def call(fn: ContractFunction, sender: str | None = None) -> Any:
    """Run a view function; reverts become ContractRevert."""
    try:
        return fn.call({"from": sender} if sender else {})
    except (ContractLogicError, TransactionFailed) as e:
        raise revert_error(e) from None


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
        raise revert_error(e) from None
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
        raise revert_error(e) from None
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1:
        raise _mined_revert(w3, tx, receipt["blockNumber"], Web3.to_hex(tx_hash))
    return receipt


def _mined_revert(w3: Web3, tx: dict[str, Any], block: int, tx_hash: str) -> ContractRevert:
    """Why a mined transaction failed: replay it as a call on the state its block left behind.

    It passed its pre-flight, so something changed in between: usually another party's transaction won a
    race (assigned or finalized the job first), and the replay then gives that rule's reason.
    """
    call_tx = {k: tx[k] for k in ("from", "to", "data", "value") if k in tx}
    try:
        w3.eth.call(call_tx, block_identifier=block)
    except (ContractLogicError, TransactionFailed) as e:
        return revert_error(e, tx=tx_hash)
    except Exception:  # noqa: BLE001 - the replay is best effort; the failure itself stands
        pass
    return ContractRevert("transaction failed on-chain", tx=tx_hash)


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
