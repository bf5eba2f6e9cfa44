"""Revert data in every shape the backends hand it over becomes a readable reason."""

from __future__ import annotations

from eth_abi import encode
from web3.exceptions import ContractLogicError

from veriml.chain.tx import revert_reason


def test_error_string_in_hex_data_is_decoded():
    data = "0x08c379a0" + encode(["string"], ["WrongStatus"]).hex()
    assert revert_reason(ContractLogicError("execution reverted", data=data)) == "WrongStatus"


def test_panic_is_named():
    data = "0x4e487b71" + encode(["uint256"], [0x11]).hex()
    assert revert_reason(ContractLogicError("execution reverted", data=data)) == "panic 0x11"


def test_known_custom_error_is_named_with_its_arguments():
    data = bytes.fromhex("118cdaa7") + encode(["address"], ["0x" + "11" * 20])
    reason = revert_reason(ContractLogicError(f"execution reverted: {data!r}"))
    assert reason.startswith("OwnableUnauthorizedAccount(0x1111")


def test_unknown_selector_is_shown_in_hex():
    assert revert_reason(ContractLogicError("execution reverted", data="0xdeadbeef")) == "custom error 0xdeadbeef"


def test_plain_messages_keep_their_reason():
    assert revert_reason(ContractLogicError("execution reverted: NodeRegistry: unbonding")) == "NodeRegistry: unbonding"
