"""No job can kill a node (issue 10, finding A): a failure while handling one job becomes a logged `skip`
and the node goes on with its other jobs; a non-UTF-8 prompt is a clear error, not a traceback."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from veriml.client.sdk import check_prompt
from veriml.devnet import Devnet
from veriml.errors import BlobTooLarge, InvalidPrompt
from veriml.gateway.blobstore import LocalBlobStore
from veriml.sim.network import LocalNetwork, NodeSpec


class FullStore(LocalBlobStore):
    """A real store on a full disk: every put fails (the fault the 5.5 MB error document caused)."""

    def put(self, data: bytes) -> str:  # noqa: ARG002
        raise BlobTooLarge("the store is full")


def test_a_job_that_cannot_be_stored_is_skipped_and_the_node_goes_on(tmp_path):
    with LocalNetwork.start([NodeSpec() for _ in range(3)], workdir=tmp_path) as net:
        victim = net.nodes[0]
        victim.role("quorum").output_store = FullStore(tmp_path / "full")
        job_id, _ = net.client.submit_text("tiny-gpt", "The with statement", 3, max_new_tokens=4)
        skips = []
        for _ in range(40):
            actions = net.tick()  # would raise if the victim's step let BlobTooLarge out
            skips += [a for a in actions if a.node == victim.address and a.what == "skip"]
            if net.contracts.quorum.job(job_id).status.final:
                break
        assert net.contracts.quorum.job(job_id).status.final
        assert any("BlobTooLarge" in a.detail for a in skips)
        assert all(len(a.detail) <= 300 for a in skips)
        # The loop a node process runs keeps going too.
        stop = threading.Event()
        t = threading.Thread(target=victim.run, args=(stop, 0.01))
        t.start()
        stop.wait(0.2)
        assert t.is_alive()
        stop.set()
        t.join(5)


def test_a_prompt_that_is_not_utf8_is_refused_clearly():
    shell_arg = b"\xff\xfe".decode("utf-8", "surrogateescape")  # what argv holds for invalid bytes
    with pytest.raises(InvalidPrompt, match="not valid UTF-8"):
        check_prompt(shell_arg, 512)


def test_the_devnet_restarts_a_process_that_exits(tmp_path):
    net = Devnet(tmp_path, chain=None, deployment=None, blob_url="")  # type: ignore[arg-type]
    code = "import sys; sys.exit(3)"
    net.procs.append(subprocess.Popen([sys.executable, "-c", code, "node", "run"]))
    net.names.append("node0")
    net.procs[0].wait(10)
    assert net.restart_exited() == ["node run"]
    net.procs[0].wait(10)
    assert (tmp_path / "node0.log").exists()
