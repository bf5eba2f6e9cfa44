"""Proving off the caller's thread: a bounded pool of worker processes, a memory check, a proof cache.

A node's event loop must keep watching the chain while a proof takes seconds to minutes, so proofs run
in child processes (EZKL's prover is native code that would otherwise hold this process; separate
processes also give back the prover's memory when a worker is recycled). Before a proof starts, the pool
checks that the machine has the memory it will need (about twice the proving key plus the worker's own
footprint, measured in benchmarks/zk_cost.py) for it and every proof already running; if not, it waits
for the next step rather than swap or be killed. Proofs are cached on disk per (model id, input hash):
the same input always has the same output and a still-valid proof, so a restart or a repeated input
costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import resource
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from veriml.errors import ConfigError
from veriml.zk.circuit import ZkCircuit, gen_witness, prove
from veriml.zk.field import words_hash
from veriml.zk.proof import Proof

WORKER_BASE_BYTES = 200 * 2**20  # interpreter + EZKL + circuit, measured at ~100-150 MB
PK_FACTOR = 2.0  # peak prover memory ~ 1.2-1.9x the proving key size in our measurements


def available_memory() -> int:
    """MemAvailable from /proc/meminfo in bytes (Linux); a large number where it cannot be read."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 2**62


def peak_rss() -> int:
    """This process's peak resident memory in bytes: VmHWM, which (unlike ru_maxrss) does not carry over the
    parent's high-water mark across fork + exec."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 2**62


def memory_needed(circuit: ZkCircuit) -> int:
    """Estimated peak memory of proving `circuit` once."""
    return WORKER_BASE_BYTES + int(PK_FACTOR * circuit.pk.stat().st_size)


def proof_key(model_id: bytes, input_felts: Sequence[int]) -> str:
    """The proof cache key: sha256(model id || input hash)."""
    return hashlib.sha256(bytes(model_id) + words_hash(input_felts)).hexdigest()


@dataclass(frozen=True)
class ProveResult:
    """A proof and what it cost."""

    proof: Proof
    witness_s: float
    prove_s: float
    worker_peak_rss: int  # bytes, the worker's high-water mark so far
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "proof": self.proof.to_json(),
            "witness_s": self.witness_s,
            "prove_s": self.prove_s,
            "worker_peak_rss": self.worker_peak_rss,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any], cached: bool = True) -> ProveResult:
        return cls(Proof.from_json(d["proof"]), d["witness_s"], d["prove_s"], d["worker_peak_rss"], cached)


def _quiet_worker() -> None:
    """Worker initializer: EZKL's native logs go to /dev/null, not the node's terminal."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)


def prove_once(circuit: ZkCircuit, felts: Sequence[int], workdir: Path) -> dict[str, Any]:
    """Witness + proof in this process; returns `ProveResult.to_json()` (runs inside a pool worker)."""
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    witness = gen_witness(circuit, felts, workdir)
    t1 = time.perf_counter()
    prove(circuit, witness, workdir / "proof.json")
    t2 = time.perf_counter()
    proof = Proof.from_ezkl(workdir / "proof.json", circuit.n_inputs)
    if proof.inputs != tuple(felts):
        raise ConfigError("EZKL's proof instances do not start with the job's input")
    peak = peak_rss()
    return ProveResult(proof, t1 - t0, t2 - t1, peak).to_json()


class ProverPool:
    """At most `max_workers` proofs at once, each started only if the memory is there; cached on disk."""

    def __init__(
        self,
        proof_dir: Path,
        max_workers: int = 1,
        meminfo: Callable[[], int] = available_memory,
    ) -> None:
        """`proof_dir` holds the proof cache (one JSON per (model, input)) and the workers' scratch files."""
        if max_workers < 1:
            raise ConfigError("a prover pool needs at least one worker")
        self.dir = Path(proof_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_workers = max_workers
        self._meminfo = meminfo
        self._executor: ProcessPoolExecutor | None = None
        self._running: dict[str, tuple[Future[dict[str, Any]], int]] = {}

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # spawn, not fork: the parent may hold threads (web3, torch) that a fork would copy mid-lock.
            ctx = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(self.max_workers, mp_context=ctx, initializer=_quiet_worker)
        return self._executor

    # ---- the cache ----
    def path_of(self, model_id: bytes, felts: Sequence[int]) -> Path:
        """Where the proof of `model_id` on `felts` is (or will be) saved."""
        return self.dir / f"{proof_key(model_id, felts)}.json"

    def cached(self, model_id: bytes, felts: Sequence[int]) -> ProveResult | None:
        path = self.path_of(model_id, felts)
        if not path.exists():
            return None
        return ProveResult.from_json(json.loads(path.read_text()))

    def _store(self, key: str, data: dict[str, Any]) -> None:
        tmp = self.dir / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(data))
        tmp.rename(self.dir / f"{key}.json")

    # ---- proving ----
    def request(self, model_id: bytes, circuit: ZkCircuit, felts: Sequence[int]) -> ProveResult | None:
        """The proof if it is ready (cached or just finished); otherwise start it when there is room and
        memory, and return None. Call again on the next step. Errors of a finished proof are raised."""
        hit = self.cached(model_id, felts)
        if hit is not None:
            return hit
        key = proof_key(model_id, felts)
        running = self._running.get(key)
        if running is not None:
            fut, _ = running
            if not fut.done():
                return None
            del self._running[key]
            try:
                data = fut.result()  # re-raises a worker's exception
            except BrokenProcessPool:
                # A worker died (the kernel's OOM killer, most likely): start a fresh pool next time.
                self._executor = None
                self._running.clear()
                raise ConfigError("a prover worker died while proving (out of memory?)") from None
            self._store(key, data)
            return ProveResult.from_json(data, cached=False)
        self._maybe_start(key, circuit, felts)
        return None

    def _maybe_start(self, key: str, circuit: ZkCircuit, felts: Sequence[int]) -> bool:
        need = memory_needed(circuit)
        if need > total_memory():
            raise ConfigError(
                f"proving this circuit needs about {need / 2**30:.1f} GiB; this machine has "
                f"{total_memory() / 2**30:.1f} GiB"
            )
        if len(self._running) >= self.max_workers:
            return False
        reserved = sum(n for fut, n in self._running.values() if not fut.done())
        if self._meminfo() - reserved < need:
            return False
        fut = self._pool().submit(prove_once, circuit, tuple(felts), self.dir / "work" / key)
        self._running[key] = (fut, need)
        return True

    def prove(self, model_id: bytes, circuit: ZkCircuit, felts: Sequence[int], timeout: float = 600.0) -> ProveResult:
        """Blocking: request and wait (for scripts and tests)."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.request(model_id, circuit, felts)
            if res is not None:
                return res
            key = proof_key(model_id, felts)
            if key in self._running:
                self._running[key][0].exception(timeout=max(0.0, deadline - time.monotonic()))
            elif time.monotonic() > deadline:
                raise TimeoutError("no memory or worker became free to prove")
            else:
                time.sleep(0.2)

    @property
    def busy(self) -> int:
        """Proofs started and not yet collected."""
        return len(self._running)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        self._running.clear()

    def __enter__(self) -> ProverPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
