"""Honest solver and verifier get bit-identical checkpoints whatever torch's thread count or vector ISA.

Three configurations: 1 thread in this process; 2 threads and 2 threads with ATEN_CPU_CAPABILITY=default
(scalar kernels, as on a CPU without AVX) each in a fresh process, since torch fixes its kernel dispatch
at start. Plain PyTorch (nn.Linear + autograd + torch.optim) runs in the same processes and its hashes are
printed, not required: on this machine they differ between every pair of configurations, which is why the
reproducible runtime exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def probe(threads: int) -> dict:
    """Train SGD, Adam(+dropout) MLP and transformer-block runs with `threads` threads; sha256 of every
    checkpoint file."""
    import torch

    from veriml.training.checkpoint import state_sha256
    from veriml.training.data import digits
    from veriml.training.mlp import TrainConfig
    from veriml.training.plain import plain_train
    from veriml.training.trainer import train

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        data, _ = digits()
        sgd = TrainConfig(sizes=(64, 96, 10), optimizer="sgd", lr=0.05)
        adam = TrainConfig(sizes=(64, 48, 32, 10), optimizer="adam", lr=0.003, dropout=0.1, seed=7)
        out = {"threads": torch.get_num_threads(), "isa": torch.backends.cpu.get_cpu_capability()}
        out["sgd"] = [state_sha256(c.state) for c in train(sgd, data, 8, 4).checkpoints]
        out["adam"] = [state_sha256(c.state) for c in train(adam, data, 8, 4).checkpoints]
        block = TrainConfig(arch="block", sizes=(64, 10), batch=16, d_model=16, d_ff=24, optimizer="adam", lr=0.003)
        out["block"] = [state_sha256(c.state) for c in train(block, data, 4, 2).checkpoints]
        out["plain_sgd"] = state_sha256(plain_train(sgd, data, 8))
    finally:
        torch.set_num_threads(before)
    return out


def _run(threads: int, isa: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
    if isa is not None:
        env["ATEN_CPU_CAPABILITY"] = isa
    r = subprocess.run([sys.executable, str(Path(__file__)), str(threads)], env=env, capture_output=True,
                       text=True, timeout=240, check=True)  # fmt: skip
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_checkpoints_bit_identical_across_threads_and_isa() -> None:
    runs = [probe(1), _run(2, None), _run(2, "default")]
    assert {r["threads"] for r in runs} == {1, 2}
    for key in ("sgd", "adam", "block"):
        first = runs[0][key]
        assert len(first) == 3 and len(set(first)) == 3  # the runs do move
        for r in runs[1:]:
            assert r[key] == first, (key, r["threads"], r["isa"])
    plain = {(r["threads"], r["isa"]): r["plain_sgd"][:12] for r in runs}
    print("plain PyTorch final sha256 by (threads, isa):", plain)


if __name__ == "__main__":
    print(json.dumps(probe(int(sys.argv[1]))))
