"""`veriml devnet`: anvil, a blob service, node processes and the gateway on 127.0.0.1, each its own process.

Every scheme runs here: quorum nodes (`node<i>`), optimistic executors and watchers (`executor<i>`,
`watcher<i>`, serving `int-mlp`) and zk provers (`prover<i>`, serving `digits-mlp`, whose circuit is
registered at deploy time by the zk scheme's own `setup` hook, as the harness does).
Payloads cross HTTP between processes: the client uploads prompts to the blob service, nodes fetch them
from it and publish outputs on their own endpoints, and the client fetches the verified output from a
winner. A ticker mines a block every half second so deadlines pass even when nobody sends a transaction.
The gateway (`veriml gateway serve`) starts once the nodes are registered, so its first catalog already
lists them; it pays for jobs from dev account `GATEWAY_ACCOUNT`, and a dev API key is created in its
database before it starts. Every run is a fresh chain, so state a previous run left in the directory
(node cursors, the gateway's queue and index) is removed first.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

from veriml import schemes
from veriml.chain.backends import Chain, anvil_chain, connect_anvil, dev_accounts, free_port
from veriml.chain.contracts import Contracts
from veriml.chain.deploy import DeployConfig, Deployment, deploy
from veriml.client.sdk import Client
from veriml.errors import ChainUnavailable, ConfigError, NetworkError
from veriml.gateway.blobstore import HttpBlobStore
from veriml.models import zoo

# anvil mines a block per transaction, so under load blocks pass at the rate the nodes and the gateway send
# transactions (15-20 a second with 200 chat requests in flight here), and a window counted in blocks is over in
# seconds: 30-block windows left honest nodes' reveals out (disputed jobs) with only 40 chat requests
# open. 240 blocks holds the load a few users make; a no-show then costs 2 minutes of idle ticking.
# `window_blocks` (`veriml devnet up --window-blocks`) sizes it for a load test.
DEVNET_WINDOW_BLOCKS = 240
USER_ACCOUNT = 1
FIRST_NODE_ACCOUNT = 2  # node processes sign with dev accounts 2..21
GATEWAY_ACCOUNT = 23  # the gateway's sequencer pays for jobs from this one (`veriml gateway serve --account`)
DEV_KEY_SPEND_WEI = 10**21  # the dev API key may spend 1000 ETH of the gateway's devnet funds
DEV_KEY_RATE = 100_000  # requests per minute: no limit a load test could hit
OPTIMISTIC_MODEL = "int-mlp"
ZK_MODEL = "digits-mlp"


def devnet_config(window_blocks: int = DEVNET_WINDOW_BLOCKS) -> DeployConfig:
    """The devnet's deployment: quorum commit and reveal windows of `window_blocks`; short optimistic
    windows (an honest job finalizes ~5 s after its post); a prover has a minute, enough to be restarted
    and prove again."""
    return (
        DeployConfig()
        .with_scheme("quorum", commit_window_blocks=window_blocks, reveal_window_blocks=window_blocks)
        .with_scheme("optimistic", execute_window_blocks=30, challenge_window_blocks=10, round_window_blocks=20)
        .with_scheme("zk", prove_window_blocks=120)
    )


@dataclass
class Devnet:
    directory: Path
    chain: Chain
    deployment: Deployment
    blob_url: str
    gateway_url: str | None = None
    api_key: str | None = None  # the dev API key (its secret), when the gateway runs
    procs: list[subprocess.Popen] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # each process's name (its log file's stem)
    _run_info: dict[str, Any] = field(default_factory=dict)  # what devnet.json says of the processes
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def rpc_url(self) -> str:
        assert self.chain.url is not None
        return self.chain.url

    @classmethod
    def start(
        cls,
        directory: Path,
        nodes: int = 5,
        dishonest: int = 0,
        log: Callable[[str], object] = lambda s: None,
        models: tuple[str, ...] = ("tiny-gpt",),
        startup_timeout: float = 180.0,
        gateway: bool = True,
        gateway_port: int = 0,
        window_blocks: int = DEVNET_WINDOW_BLOCKS,
        *,
        executors: int = 0,
        watchers: int = 0,
        provers: int = 0,
        config: DeployConfig | None = None,
        zk_cache: Path | None = None,
    ) -> Devnet:
        """Deploy every scheme and start `nodes` quorum nodes (the last `dishonest` answering without running
        the model), `executors` staked optimistic executors and `watchers` unstaked watchers (int-mlp), and
        `provers` zk provers (digits-mlp, its circuit registered here; setup artifacts cached in `zk_cache`,
        default ~/.cache/veriml/zk), then the gateway; return once the nodes are registered and the blob
        service and gateway answer. Node processes sign with dev accounts 2, 3, ... in that order;
        `gateway_port` 0 picks a free port; `config` overrides the deployment (default `devnet_config`)."""
        if not 1 <= nodes <= 20 or not 0 <= dishonest <= nodes:
            raise ConfigError(f"need 1..20 nodes and 0..nodes dishonest ones, got {nodes} and {dishonest}")
        if min(executors, watchers, provers) < 0 or nodes + executors + watchers + provers > 20:
            raise ConfigError(
                f"need 0 or more executors, watchers and provers and at most 20 node processes in all, got "
                f"{nodes} quorum nodes, {executors} executors, {watchers} watchers and {provers} provers"
            )
        if watchers and not executors:
            raise ConfigError("watchers need an executor to watch: give --executors 1 or more")
        if not 1 <= window_blocks <= 100_000:
            raise ConfigError(f"the commit and reveal windows must be 1..100000 blocks, got {window_blocks}")
        if not 0 <= gateway_port < 65536:
            raise ConfigError(f"the gateway port must be in 0..65535, got {gateway_port}")
        directory.mkdir(parents=True, exist_ok=True)
        clear_run_state(directory)
        chain = anvil_chain()
        net = cls(directory, chain, None, "")  # type: ignore[arg-type]  # deployed just below
        try:
            log(f"anvil on {chain.url}")
            dep = deploy(chain, config=config or devnet_config(window_blocks))
            net.deployment = dep
            contracts = Contracts(chain, dep)
            used = ["quorum"] + (["optimistic"] if executors else []) + (["zk"] if provers else [])
            all_models = (*models, *((OPTIMISTIC_MODEL,) if executors else ()), *((ZK_MODEL,) if provers else ()))
            _register_models(contracts, chain, directory, all_models, used, zk_cache, log)
            dep.save(directory / "deployment.json")
            blob_port = free_port()
            net.blob_url = f"http://127.0.0.1:{blob_port}"
            net._spawn("blobs", ["serve-blobs", "--root", str(directory / "blobs"), "--port", str(blob_port)])
            account = FIRST_NODE_ACCOUNT
            processes: dict[str, int] = {}

            def spawn_node(name: str, extra: list[str]) -> None:
                nonlocal account
                common = [
                    "node", "run", "--rpc", net.rpc_url, "--deployment", str(directory / "deployment.json"),
                    "--inputs", net.blob_url, "--account", str(account), "--port", str(free_port()),
                    "--state", str(directory / name / "state.sqlite"),
                ]  # fmt: skip
                net._spawn(name, common + extra)
                processes[name] = account
                account += 1

            for i in range(nodes):
                fault = "wrong-output" if i >= nodes - dishonest else "honest"
                spawn_node(f"node{i}", ["--fault", fault, *(a for m in models for a in ("--model", m))])
            opt = ["--scheme", "optimistic", "--model", OPTIMISTIC_MODEL]
            for i in range(executors):
                spawn_node(f"executor{i}", [*opt, "--watch-share", "0"])
            for i in range(watchers):
                spawn_node(f"watcher{i}", [*opt, "--no-execute"])
            cache = ["--zk-cache", str(zk_cache)] if zk_cache is not None else []
            for i in range(provers):
                spawn_node(f"prover{i}", ["--scheme", "zk", "--model", ZK_MODEL, *cache])
            net._run_info = {
                "nodes": nodes,
                "dishonest": dishonest,
                "executors": executors,
                "watchers": watchers,
                "provers": provers,
                "zk_cache": None if zk_cache is None else str(zk_cache),
                "processes": processes,  # name -> dev account index
            }
            net._write_info()
            threading.Thread(target=net._tick, daemon=True, name="devnet-ticker").start()
            deadline = time.monotonic() + startup_timeout
            expected = {models[0]: nodes, OPTIMISTIC_MODEL: executors, ZK_MODEL: provers}
            net._wait_ready(contracts, expected, [f"watcher{i}" for i in range(watchers)], deadline, log)
            if gateway:
                net._start_gateway(gateway_port or free_port(), deadline, log)
                net._write_info()
        except BaseException:
            net.close()
            raise
        return net

    def _write_info(self) -> None:
        """devnet.json: how clients find this devnet (the dev API key too: a throwaway secret for loopback)."""
        info = {
            "rpc_url": self.rpc_url,
            "blob_url": self.blob_url,
            "deployment": "deployment.json",
            "user_account": USER_ACCOUNT,
            **self._run_info,
            "gateway_url": self.gateway_url,
            "gateway_db": "gateway.sqlite" if self.gateway_url else None,
            "gateway_account": GATEWAY_ACCOUNT if self.gateway_url else None,
            "api_key": self.api_key,
        }
        path = self.directory / "devnet.json"
        path.write_text(json.dumps(info, indent=2))
        path.chmod(0o600)

    def _start_gateway(self, port: int, deadline: float, log: Callable[[str], object]) -> None:
        """Create the dev API key in the gateway's database, start `veriml gateway serve`, wait for /health."""
        from veriml.gateway.database import Database
        from veriml.gateway.keys import KeyStore

        db_path = self.directory / "gateway.sqlite"
        db = Database(db_path)
        try:
            self.api_key = KeyStore(db).create(DEV_KEY_SPEND_WEI, DEV_KEY_RATE, "devnet")[0]
        finally:
            db.close()
        self._spawn(
            "gateway",
            ["gateway", "serve", "--devnet", str(self.directory), "--db", str(db_path), "--port", str(port),
             "--account", str(GATEWAY_ACCOUNT)],
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(timeout=1.0) as http:
            while True:
                self.check_alive()
                try:
                    if http.get(f"{url}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise NetworkError(f"the devnet's gateway did not answer {url}/health; see gateway.log")
                time.sleep(0.3)
        self.gateway_url = url
        log(f"gateway on {url}/v1 (pays from dev account {GATEWAY_ACCOUNT})")

    def _spawn(self, name: str, args: list[str]) -> None:
        logf = open(self.directory / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.names.append(name)
        self.procs.append(subprocess.Popen([sys.executable, "-m", "veriml.cli", *args], stdout=logf, stderr=logf))

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.chain.mine(1)
            except Exception:  # noqa: BLE001 - anvil is going away
                return

    def _wait_ready(
        self, contracts: Contracts, expected: dict[str, int], watchers: list[str], deadline: float, log: Any
    ) -> None:
        """Until each model has its expected staked nodes, each watcher has opened its state, and the blob
        service answers (or `deadline`, a monotonic time, passes)."""
        ids = {name: zoo.manifest(name).model_id() for name, n in expected.items() if n}
        with httpx.Client(timeout=1.0) as http:
            while True:
                self.check_alive()
                registered = {name: len(contracts.candidates(mid)) for name, mid in ids.items()}
                watching = sum((self.directory / w / "state.sqlite").exists() for w in watchers)
                try:
                    blobs_ok = http.get(f"{self.blob_url}/health").status_code == 200
                except httpx.TransportError:
                    blobs_ok = False
                nodes_ok = all(registered[name] >= expected[name] for name in ids) and watching == len(watchers)
                if nodes_ok and blobs_ok:
                    staked = ", ".join(f"{registered[name]} for {name}" for name in ids)
                    log(f"nodes staked and registered ({staked}); {watching} watchers; blob service up")
                    return
                if time.monotonic() > deadline:
                    got = ", ".join(f"{registered[name]}/{expected[name]} for {name}" for name in ids)
                    raise ChainUnavailable(
                        f"devnet not ready in time: nodes registered {got}, {watching}/{len(watchers)} watchers up"
                    )
                time.sleep(0.5)

    def check_alive(self) -> None:
        for name, p in zip(self.names, self.procs, strict=True):
            if p.poll() is not None:
                what = " ".join(p.args[3:5])  # type: ignore[index]
                raise NetworkError(
                    f"devnet process {name} ({what}) exited with code {p.returncode}; see {self.directory}/{name}.log"
                )

    def restart_exited(self, log: Callable[[str], object] = lambda s: None) -> list[str]:
        """Start again every child process that has exited (a node that crashed resumes from its SQLite
        state), so one process cannot take the devnet down; returns what was restarted."""
        restarted = []
        for i, p in enumerate(self.procs):
            if p.poll() is None:
                continue
            what = " ".join(p.args[3:5])  # type: ignore[index]
            name = self.names[i]
            log(f"devnet process {what} exited with code {p.returncode}; restarting it (see {name}.log)")
            logf = open(self.directory / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
            self.procs[i] = subprocess.Popen(list(p.args), stdout=logf, stderr=logf)  # type: ignore[arg-type]
            restarted.append(what)
        return restarted

    def wait(self, log: Callable[[str], object] = lambda s: None) -> None:
        """Block until Ctrl-C or SIGTERM (what a service manager, a container runtime or a CI timeout sends),
        restarting any child process that exits; the caller's `with` block then stops them all."""

        def _terminate(*_: object) -> None:
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            while True:
                self.restart_exited(log)
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)

    def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after 10 s), the gateway first so it sends nothing
        to a chain that is going away, then anvil."""
        self._stop.set()
        order = sorted(range(len(self.procs)), key=lambda i: self.names[i] != "gateway")
        for i in order:
            if self.procs[i].poll() is None:
                self.procs[i].terminate()
            if self.names[i] == "gateway":
                _reap(self.procs[i])
        for i in order:
            _reap(self.procs[i])
        self.chain.close()

    def __enter__(self) -> Devnet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _reap(p: subprocess.Popen) -> None:
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


def clear_run_state(directory: Path) -> None:
    """Remove what a previous devnet run left that belongs to its chain (a new run is a new chain): node
    state (a stale event cursor would hide the new chain's jobs) and the gateway's queue and index."""
    for pattern in ("node*", "executor*", "watcher*", "prover*"):
        for p in directory.glob(pattern):
            if p.is_dir():
                shutil.rmtree(p)
    for p in directory.glob("gateway.sqlite*"):
        p.unlink()


def _register_models(
    contracts: Contracts,
    chain: Chain,
    directory: Path,
    models: tuple[str, ...],
    used: list[str],
    zk_cache: Path | None,
    log: Callable[[str], object],
) -> None:
    """Register each model from its manifest, except those a scheme in use registers itself; then run
    those schemes' `setup` hooks (zk: the circuit's EZKL setup, cached, and its verifier bound on-chain),
    as `veriml.sim.network.LocalNetwork.start` does."""
    from veriml.sim.network import register_manifests

    owner = chain.accounts[0]
    register_manifests(contracts, owner, models, used)
    # What a scheme's setup reads of a network (see LocalNetwork); what it starts for in-process nodes (a
    # prover pool) is closed again: node processes start their own.
    net = SimpleNamespace(
        chain=chain, contracts=contracts, owner=owner, model_names=models, workdir=directory, shared={},
        scheme_options={"zk": {"cache_dir": zk_cache}},
    )  # fmt: skip
    try:
        for name in used:
            spec = schemes.get(name)
            if spec.setup is not None:
                own = [m for m in models if spec.registers(zoo.manifest_of(m))]
                log(f"setting up {name} and registering {', '.join(own) or 'no model'} (cached after the first time)")
                spec.setup(net)
    finally:
        for resource in net.shared.values():
            close = getattr(resource, "close", None)
            if close is not None:
                close()


def _info(directory: Path) -> dict:
    path = directory / "devnet.json"
    if not path.exists():
        raise ConfigError(f"no devnet at {directory}: start one with `veriml devnet up` or use --local")
    return json.loads(path.read_text())


def _contracts(directory: Path, info: dict) -> Contracts:
    return Contracts(connect_anvil(info["rpc_url"]), Deployment.load(directory / info["deployment"]))


def connect_client(directory: Path) -> Client:
    """A client for a running devnet (dev account 1 pays)."""
    info = _info(directory)
    contracts = _contracts(directory, info)
    return Client(contracts, dev_accounts()[info["user_account"]], HttpBlobStore(info["blob_url"]))


def connect_scheme_client(directory: Path, scheme: str) -> Any:
    """The client adapter of `scheme` for a running devnet (dev account 1 pays): quorum's `Client`, an
    `OptimisticClient`, or a `ZkClient` of digits-mlp. ConfigError if the devnet runs no node of it."""
    if scheme == "quorum":
        return connect_client(directory)
    spec = schemes.get(scheme)
    info = _info(directory)
    needs = {"optimistic": ("executors", "--executors"), "zk": ("provers", "--provers")}
    if scheme in needs and not info.get(needs[scheme][0]):
        key, flag = needs[scheme]
        raise ConfigError(f"the devnet at {directory} runs no {scheme} {key}: start it with {flag} 1 or more")
    if spec.client is None:
        raise ConfigError(f"scheme {scheme} has no client")
    contracts = _contracts(directory, info)
    account = dev_accounts()[info["user_account"]]
    if scheme == "zk":
        from veriml.zk.register import load_zk_model

        cache = info.get("zk_cache")
        zm = load_zk_model(ZK_MODEL, Path(cache) if cache else None)
        return spec.client(contracts, account, model=zm)
    return spec.client(contracts, account)
