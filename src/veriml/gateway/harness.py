"""A whole gateway on an in-process network: embedded chain, staked nodes, sequencer, HTTP server.

The sequencer's `between` hook steps the in-process nodes once per round; when none of them acted and a
job waits on a deadline, it mines empty blocks up to it (as `LocalNetwork.tick` does, but reading the
deadlines from the gateway's index instead of one chain call per job ever submitted). `restart()` stops
the sequencer and the server and starts fresh ones on the same database, as a gateway process restart
would. Used by the tests, the benchmark and `veriml gateway serve --local`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from veriml.gateway.database import Database
from veriml.gateway.index import ChainIndex
from veriml.gateway.keys import KeyStore
from veriml.gateway.sequencer import Sequencer
from veriml.gateway.server import GatewayServer
from veriml.sim.network import LocalNetwork, NodeSpec


class NodeStepper:
    """Steps a LocalNetwork's nodes; lets time pass to the next deadline when they are all idle."""

    def __init__(self, net: LocalNetwork, index: ChainIndex) -> None:
        self.net = net
        self.index = index
        self.actions = 0

    def __call__(self) -> None:
        acted = [a for node in self.net.nodes for a in node.step() if a.what != "skip"]
        self.actions += len(acted)
        if not acted:
            self.index.sync()
            self.net.chain.mine(self.blocks_to_next_deadline())

    def blocks_to_next_deadline(self) -> int:
        head = self.net.chain.block_number()
        waits = []
        for job in self.index.open_jobs():
            if job["status"] == "submitted":
                waits.append(max(1, job["submit_block"] + 1 - head))
            elif job["commit_deadline"] is not None:
                if job["commits"] < job["n"] and head <= job["commit_deadline"]:
                    waits.append(job["commit_deadline"] + 1 - head)
                elif head <= job["reveal_deadline"]:
                    waits.append(job["reveal_deadline"] + 1 - head)
        return min(waits, default=0)


class LocalGateway:
    """LocalNetwork + Sequencer + GatewayServer; `with LocalGateway.start(...) as gw: gw.url`."""

    def __init__(self, net: LocalNetwork, db_path: Path, wait_timeout: float, tmp: object | None) -> None:
        self.net = net
        self.db_path = db_path
        self.wait_timeout = wait_timeout
        self._tmp = tmp
        self.db: Database | None = None
        self.seq: Sequencer | None = None
        self.server: GatewayServer | None = None

    @classmethod
    def start(
        cls,
        specs: Sequence[NodeSpec] | None = None,
        models: Sequence[str] = ("tiny-gpt",),
        db_path: Path | None = None,
        wait_timeout: float = 300.0,
        port: int = 0,
    ) -> LocalGateway:
        tmp = None
        if db_path is None:
            tmp = tempfile.TemporaryDirectory(prefix="veriml-gateway-")
            db_path = Path(tmp.name) / "gateway.sqlite"
        net = LocalNetwork.start(list(specs or [NodeSpec(), NodeSpec(), NodeSpec()]), models=tuple(models))
        gw = cls(net, db_path, wait_timeout, tmp)
        try:
            gw.open(port)
        except BaseException:
            gw.close()
            raise
        return gw

    def open(self, port: int = 0) -> None:
        """Open the database, start the sequencer's worker and the HTTP server."""
        self.db = Database(self.db_path)
        seq = Sequencer(self.db, self.net.client)
        self.stepper = NodeStepper(self.net, seq.index)
        seq.between = self.stepper
        self.seq = seq
        self.server = GatewayServer(seq, port=port, wait_timeout=self.wait_timeout)
        self.server.start()
        seq.explorer = self.server.url
        seq.start()

    def shut(self) -> None:
        """Stop the server and the worker and close the database (the network keeps running)."""
        if self.server is not None:
            self.server.stop()
        if self.seq is not None:
            self.seq.stop()
        if self.db is not None:
            self.db.close()
        self.server = self.seq = self.db = None

    def restart(self) -> None:
        """A gateway restart: everything the gateway holds in memory is dropped; the database stays."""
        port = self.server.port if self.server is not None else 0
        self.shut()
        self.open(port)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    @property
    def keys(self) -> KeyStore:
        assert self.seq is not None
        return self.seq.keys

    def create_key(self, spend_limit: int = 10**20, rate: int = 10_000, label: str = "") -> str:
        return self.keys.create(spend_limit, rate, label)[0]

    def close(self) -> None:
        self.shut()
        self.net.close()
        if self._tmp is not None:
            self._tmp.cleanup()  # type: ignore[attr-defined]

    def __enter__(self) -> LocalGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
