"""Running the gateway: uvicorn on 127.0.0.1, in a background thread (tests, benchmarks, the devnet) or in
the foreground (`veriml gateway serve`)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Self

import httpx
import uvicorn

from veriml.errors import NetworkError
from veriml.gateway.app import create_app
from veriml.gateway.sequencer import Sequencer


def uvicorn_config(seq: Sequencer, host: str, port: int, wait_timeout: float) -> uvicorn.Config:
    # log_config=None: a library must not reconfigure the process's logging.
    return uvicorn.Config(
        create_app(seq, wait_timeout),
        host=host,
        port=port,
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
        # A chat request waits up to `wait_timeout` for its job; on shutdown do not wait for those (the
        # request stays queued in SQLite and is answered after a restart, from /v1/veriml/requests/{id}).
        timeout_graceful_shutdown=3,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one with no window for a race."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit this on Linux; without it a response written in parts waited ~40 ms for the
    # client's delayed ACK (Nagle): 43 ms per /health request here, 3 ms with it.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


class GatewayServer:
    """The gateway app served from a thread: `with GatewayServer(seq) as s: s.url`."""

    def __init__(self, seq: Sequencer, host: str = "127.0.0.1", port: int = 0, wait_timeout: float = 600.0) -> None:
        self.seq = seq
        self.host = host
        self.port = port
        self.wait_timeout = wait_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Bind (port 0: a free one, no race), serve in a thread, return once /health answers."""
        sock = bind(self.host, self.port)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn_config(self.seq, self.host, self.port, self.wait_timeout))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"gateway-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 15.0
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self._thread.is_alive():
                    self.stop()
                    raise NetworkError("the gateway's server thread died before it answered /health")
                try:
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.02)
        self.stop()
        raise NetworkError(f"the gateway did not answer {self.url}/health within 15 s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None


def run_foreground(seq: Sequencer, host: str = "127.0.0.1", port: int = 8700, wait_timeout: float = 600.0) -> None:
    """Start the sequencer and serve until interrupted (Ctrl-C), then stop the worker cleanly."""
    sock = bind(host, port)
    seq.start()
    try:
        uvicorn.Server(uvicorn_config(seq, host, port, wait_timeout)).run(sockets=[sock])
    finally:
        seq.stop()
        sock.close()


def devnet_client(directory: str, account: int):  # noqa: ANN201 - veriml.client.sdk.Client
    """The gateway's own funded client on a running devnet: dev account `account` pays for jobs."""
    import json
    from pathlib import Path

    from veriml.chain.backends import connect_anvil, dev_accounts
    from veriml.chain.contracts import Contracts
    from veriml.chain.deploy import Deployment
    from veriml.client.sdk import Client
    from veriml.errors import ConfigError
    from veriml.gateway.blobstore import HttpBlobStore

    path = Path(directory) / "devnet.json"
    if not path.exists():
        raise ConfigError(f"no devnet at {directory}: start one with `veriml devnet up` or use --local")
    info = json.loads(path.read_text())
    accounts = dev_accounts()
    if not 0 <= account < len(accounts):
        raise ConfigError(f"--account must be a dev account index in 0..{len(accounts) - 1}, got {account}")
    chain = connect_anvil(info["rpc_url"])
    contracts = Contracts(chain, Deployment.load(Path(directory) / info["deployment"]))
    return Client(contracts, accounts[account], HttpBlobStore(info["blob_url"]))
