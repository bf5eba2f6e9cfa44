"""The slow tier, every scheme across processes: quorum nodes, an optimistic executor and watcher, and a zk
prover, each its own process on one devnet; one job of each scheme verified, and for each role a node
process killed (SIGKILL) mid-job and restarted that resumes from its SQLite state while the job settles."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from veriml.chain.backends import dev_accounts
from veriml.chain.optimistic import OptStatus
from veriml.chain.zk import ZkJobStatus
from veriml.cli import app
from veriml.devnet import Devnet, connect_client, connect_scheme_client, devnet_config
from veriml.models.intmlp import encode_pixels
from veriml.node.state import COMMITTED
from veriml.schemes.quorum import JobStatus

pytestmark = pytest.mark.slow

# Long quorum windows cost nothing when every node reveals (the job finalizes at once) and leave a killed
# node time to come back; the optimistic and zk windows are the devnet's own.
CONFIG = devnet_config(window_blocks=60)
# A scikit-learn digit and its label (what `veriml submit --digit 5` classifies).
DIGIT, LABEL = 5, 5


@pytest.fixture(scope="module")
def devnet(tmp_path_factory):
    directory = tmp_path_factory.mktemp("devnet-schemes")
    with Devnet.start(directory, nodes=3, executors=1, watchers=1, provers=1, config=CONFIG, gateway=False) as net:
        yield net


@pytest.fixture(scope="module")
def pixels():
    from sklearn.datasets import load_digits

    return [int(v) for v in load_digits().data[DIGIT]]


def wait_for(what: str, cond: Callable[[], object], timeout: float = 90.0, poll: float = 0.1) -> object:
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(poll)
    return got


def address_of(devnet: Devnet, name: str) -> str:
    info = json.loads((devnet.directory / "devnet.json").read_text())
    return dev_accounts()[info["processes"][name]].address


def phase_of(devnet: Devnet, name: str, scheme: str, job_id: int) -> str | None:
    """A job's phase in a running node's SQLite state (read-only, beside the node's own connection)."""
    path = devnet.directory / name / "state.sqlite"
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT phase FROM jobs WHERE scheme = ? AND job_id = ?", (scheme, job_id)).fetchone()
    except sqlite3.OperationalError:  # the node has not created its tables yet
        return None
    finally:
        db.close()
    return None if row is None else row[0]


def kill_and_restart(devnet: Devnet, name: str) -> None:
    """SIGKILL one node process (no chance to clean up) and start it again, as `devnet up` would."""
    proc = devnet.procs[devnet.names.index(name)]
    proc.kill()
    proc.wait(10)
    assert devnet.restart_exited() == ["node run"]


def test_one_job_of_each_scheme_is_verified_across_processes(devnet, pixels):
    quorum = connect_client(devnet.directory)
    opt = connect_scheme_client(devnet.directory, "optimistic")
    zk = connect_scheme_client(devnet.directory, "zk")
    # All three in flight at once; the optimistic and zk ones go through `veriml submit` below too.
    q_id, _ = quorum.submit_text("tiny-gpt", "The for statement", 3, max_new_tokens=8)
    o_id = opt.submit("int-mlp", encode_pixels(pixels))
    z_id = zk.submit_digit(pixels)

    q = quorum.wait(q_id, timeout=120)
    assert q.status == "verified" and len(q.agree) == 3 and not q.slashed and q.output
    opt.wait(o_id, timeout=120)
    o = opt.result(o_id)
    assert o["status"] == "verified" and o["prediction"] == LABEL and o["executor"] == address_of(devnet, "executor0")
    z = zk.wait(z_id, timeout=120)
    assert z.status == "verified" and z.label == LABEL and z.node == address_of(devnet, "prover0")


@pytest.mark.parametrize("scheme", ["optimistic", "zk"])
def test_veriml_submit_prints_the_verified_class(devnet, scheme):
    runner = CliRunner()
    args = ["submit", "--scheme", scheme, "--digit", str(DIGIT), "--devnet", str(devnet.directory), "--json"]
    res = runner.invoke(app, [*args, "--timeout", "120"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout[res.stdout.index("{") :])
    assert out["status"] == "verified" and out["true_label"] == LABEL
    assert out.get("prediction", out.get("label")) == LABEL


def test_a_quorum_node_killed_after_its_commit_resumes_and_reveals(devnet):
    client = connect_client(devnet.directory)
    quorum = client.quorum
    victim, others = "node0", [devnet.procs[devnet.names.index(n)] for n in ("node1", "node2")]
    victim_address = address_of(devnet, victim)
    # The other two are frozen until the victim has committed and been killed, so no reveal can happen
    # before the kill (reveals open once every commit is in).
    for p in others:
        p.send_signal(signal.SIGSTOP)
    try:
        job_id, _ = client.submit_text("tiny-gpt", "A class definition", 3, max_new_tokens=16)
        # Killed once its state records the commit (a kill between the commit's transaction and that record
        # is another case: see test_quorum_commit_crash.py).
        wait_for("the victim's commit", lambda: phase_of(devnet, victim, "quorum", job_id) == COMMITTED)
        assert quorum.events("Committed", 0, jobId=job_id, node=victim_address)
        kill_and_restart(devnet, victim)
    finally:
        for p in others:
            p.send_signal(signal.SIGCONT)
    # Its commitment's salt is only in its SQLite state: revealing after the restart proves it resumed.
    result = client.wait(job_id, timeout=150)
    assert result.status == "verified" and quorum.job(job_id).status == JobStatus.VERIFIED
    assert victim_address in result.agree and len(result.agree) == 3 and not result.slashed


def test_an_optimistic_executor_killed_in_the_challenge_window_resumes_and_finalizes(devnet, pixels):
    opt = connect_scheme_client(devnet.directory, "optimistic")
    job_id = opt.submit("int-mlp", encode_pixels(pixels))
    wait_for("the post", lambda: opt.jobs.job(job_id).status == OptStatus.POSTED, poll=0.05)
    kill_and_restart(devnet, "executor0")
    # Only the executor finalizes its job, after the challenge window: the restarted process must take it
    # from its state (its event cursor is already past the job's submission).
    assert opt.jobs.job(job_id).status == OptStatus.POSTED, "finalized before the kill"
    opt.wait(job_id, timeout=120)
    r = opt.result(job_id)
    assert r["status"] == "verified" and r["prediction"] == LABEL and r["executor"] == address_of(devnet, "executor0")


def test_a_zk_prover_killed_while_proving_resumes_and_proves(devnet):
    # An input proven nowhere before (a prover reuses its cached proof of an input it has proven).
    from sklearn.datasets import load_digits

    d = load_digits()
    zk = connect_scheme_client(devnet.directory, "zk")
    job_id = zk.submit_digit([int(v) for v in d.data[DIGIT + 1]])
    wait_for("the draw", lambda: zk.jobs.job(job_id).status != ZkJobStatus.SUBMITTED, poll=0.05)
    kill_and_restart(devnet, "prover0")
    assert zk.jobs.job(job_id).status == ZkJobStatus.ASSIGNED, "proven before the kill"
    result = zk.wait(job_id, timeout=150)
    assert result.status == "verified" and result.node == address_of(devnet, "prover0")
    assert result.label == int(d.target[DIGIT + 1])
