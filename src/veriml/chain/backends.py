"""Chain backends: where the contracts run.

- `embedded`: eth-tester + py-evm inside this process (the default; fast, no sockets).
- `anvil`: a local anvil process from the npm package `@foundry-rs/anvil`, bound to 127.0.0.1.
- `rpc`: any EVM JSON-RPC endpoint.

All three give a `Chain`: a web3 instance plus the private keys we sign with. The embedded and anvil
backends share the same funded dev accounts (anvil's default mnemonic), so a script that works on one
works on the other.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from veriml.errors import ChainUnavailable, ConfigError

DEV_MNEMONIC = "test test test test test test test test test test test junk"
DEV_HD_PATH = "m/44'/60'/0'/0"
DEV_ACCOUNTS = 24
DEV_BALANCE_WEI = 10_000 * 10**18
BLOCK_GAS_LIMIT = 60_000_000
REPO_ROOT = Path(__file__).resolve().parents[3]
ANVIL_PACKAGE_BIN = REPO_ROOT / "contracts" / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def dev_accounts(count: int = DEV_ACCOUNTS) -> list[LocalAccount]:
    """The funded development accounts (same keys as anvil's defaults)."""
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(DEV_MNEMONIC, account_path=f"{DEV_HD_PATH}/{i}") for i in range(count)]


@dataclass
class Chain:
    """A connected chain: web3, the accounts we can sign for, and how to advance blocks."""

    w3: Web3
    backend: str
    accounts: list[LocalAccount]
    url: str | None = None
    _process: subprocess.Popen | None = field(default=None, repr=False)
    _tester: object | None = field(default=None, repr=False)

    @property
    def chain_id(self) -> int:
        from veriml.chain.tx import _chain_id

        return _chain_id(self.w3)

    def block_number(self) -> int:
        return self.w3.eth.block_number

    def mine(self, blocks: int = 1) -> None:
        """Advance `blocks` empty blocks (local backends only; a public chain advances by itself)."""
        if blocks <= 0:
            return
        if self.backend == "embedded":
            self._tester.mine_blocks(blocks)  # type: ignore[union-attr]
        elif self.backend == "anvil":
            self.w3.provider.make_request("anvil_mine", [hex(blocks)])
        else:
            raise ConfigError("cannot mine blocks on an rpc chain; wait for them instead")

    def snapshot(self) -> object:
        """Remember the chain state, to `revert` to it later (embedded: cheap; anvil: evm_snapshot)."""
        if self.backend == "embedded":
            return self._tester.take_snapshot()  # type: ignore[union-attr]
        if self.backend == "anvil":
            return self.w3.provider.make_request("evm_snapshot", [])["result"]
        raise ConfigError("snapshots need a local chain")

    def revert(self, snap: object) -> None:
        if self.backend == "embedded":
            self._tester.revert_to_snapshot(snap)  # type: ignore[union-attr]
        elif self.backend == "anvil":
            self.w3.provider.make_request("evm_revert", [snap])
        else:
            raise ConfigError("snapshots need a local chain")

    def close(self) -> None:
        """Stop a spawned anvil; a no-op for the other backends."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> Chain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def embedded_chain(accounts: int = DEV_ACCOUNTS) -> Chain:
    """A fresh in-process chain (py-evm via eth-tester) with funded dev accounts."""
    from eth_tester import EthereumTester, PyEVMBackend
    from web3 import EthereumTesterProvider

    backend = PyEVMBackend.from_mnemonic(
        DEV_MNEMONIC,
        num_accounts=accounts,
        hd_path=DEV_HD_PATH,
        genesis_state_overrides={"balance": DEV_BALANCE_WEI},
        genesis_parameters=PyEVMBackend.generate_genesis_params(overrides={"gas_limit": BLOCK_GAS_LIMIT}),
    )
    tester = EthereumTester(backend=backend)
    w3 = Web3(EthereumTesterProvider(tester))
    return Chain(w3=w3, backend="embedded", accounts=dev_accounts(accounts), _tester=tester)


def find_anvil() -> Path:
    """The anvil binary: the npm package's copy in contracts/, else one on PATH."""
    if ANVIL_PACKAGE_BIN.exists():
        return ANVIL_PACKAGE_BIN
    found = shutil.which("anvil")
    if found:
        return Path(found)
    raise ChainUnavailable(
        f"anvil not found at {ANVIL_PACKAGE_BIN} or on PATH; run `make contracts-deps` (npm install in contracts/)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def anvil_chain(port: int | None = None, accounts: int = DEV_ACCOUNTS, startup_timeout: float = 20.0) -> Chain:
    """Spawn anvil on 127.0.0.1 (a free port unless given) and connect; `close()` stops it."""
    port = port or free_port()
    cmd = [
        str(find_anvil()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--accounts",
        str(accounts),
        "--balance",
        str(DEV_BALANCE_WEI // 10**18),
        "--mnemonic",
        DEV_MNEMONIC,
        "--gas-limit",
        str(BLOCK_GAS_LIMIT),
        "--silent",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())
    url = f"http://127.0.0.1:{port}"
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    deadline = time.monotonic() + startup_timeout
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise ChainUnavailable(f"anvil exited with code {proc.returncode}: {err.strip()[:500]}")
        try:
            if w3.is_connected():
                break
        except Exception:  # noqa: BLE001 - not up yet
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise ChainUnavailable(f"anvil did not answer on {url} within {startup_timeout:.0f}s")
        time.sleep(0.1)
    return Chain(w3=w3, backend="anvil", accounts=dev_accounts(accounts), url=url, _process=proc)


def connect_anvil(url: str, accounts: int = DEV_ACCOUNTS) -> Chain:
    """Connect to an anvil someone else started (the devnet's node processes do this)."""
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    if not w3.is_connected():
        raise ChainUnavailable(f"no chain answers at {url}")
    return Chain(w3=w3, backend="anvil", accounts=dev_accounts(accounts), url=url)


def rpc_chain(url: str, private_keys: list[str]) -> Chain:
    """Connect to any EVM JSON-RPC endpoint, signing with the given keys."""
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"rpc url must start with http:// or https://, got {url!r}")
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    if not w3.is_connected():
        raise ChainUnavailable(f"no chain answers at {url}")
    return Chain(w3=w3, backend="rpc", accounts=[Account.from_key(k) for k in private_keys], url=url)
