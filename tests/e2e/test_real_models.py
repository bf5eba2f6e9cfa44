"""The real pretrained models through the unchanged quorum network on the embedded chain."""

from __future__ import annotations

import json

import pytest

from veriml.errors import InvalidPrompt
from veriml.sim.faults import Fault
from veriml.sim.network import LocalNetwork, NodeSpec

CHAT = "smollm2-135m-instruct"
EMBED = "minilm-l6-v2"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.fixture(scope="module")
def real_net():
    # Four nodes, one of them answering without running the model; quorum 3 draws it or not by stake.
    specs = [NodeSpec(), NodeSpec(), NodeSpec(), NodeSpec(Fault.WRONG_OUTPUT)]
    with LocalNetwork.start(specs, models=(CHAT, EMBED)) as net:
        yield net


def _cheater(net: LocalNetwork) -> str:
    return net.nodes[3].address


def test_a_chat_job_is_answered_by_smollm2_and_the_cheater_is_slashed(real_net):
    net = real_net
    results = []
    # Repeat until the dishonest node has been drawn once (the draw is by stake; each job is ~1 s of model).
    for _ in range(6):
        job_id, _ = net.client.submit_chat(CHAT, QUESTION, quorum=3, max_new_tokens=8)
        r = net.client.wait(job_id, between=net.tick, timeout=120)
        results.append(r)
        if _cheater(net) in r.assigned:
            break
    for r in results:
        assert r.status == "verified", r
        assert r.output.startswith("The capital of France is")
        assert r.error is None
    drawn = [r for r in results if _cheater(net) in r.assigned]
    assert drawn, "the dishonest node was never drawn in 6 jobs"
    assert _cheater(net) in drawn[0].slashed and _cheater(net) not in drawn[0].agree
    assert len(drawn[0].agree) == 2


def test_an_embeddings_job_is_verified_by_the_tolerance_digest(real_net):
    net = real_net
    job_id, _ = net.client.submit_embeddings(EMBED, ["a cat sat on the mat", "stock prices fell"], quorum=3)
    r = net.client.wait(job_id, between=net.tick, timeout=120)
    assert r.status == "verified"
    assert r.output == "2 vector(s) of 384 floats"
    honest = [a for a in r.assigned if a != _cheater(net)]
    assert set(honest) <= set(r.agree)


def test_the_sdk_refuses_a_bad_chat_before_any_coin_moves(real_net):
    with pytest.raises(InvalidPrompt, match="role"):
        real_net.client.submit_chat(CHAT, [{"role": "robot", "content": "hi"}])
    with pytest.raises(InvalidPrompt, match="strings"):
        real_net.client.submit_embeddings(EMBED, [])


@pytest.mark.slow  # two more in-process networks: ~15 s
def test_veriml_submit_chat_and_embed_from_the_command_line():
    from typer.testing import CliRunner

    from veriml.cli import app

    q = "What is the capital of France? Answer in one sentence."
    res = CliRunner().invoke(app, ["submit", "--local", "--chat", q, "--max-new-tokens", "8", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)  # progress bars of a first model load go to stderr
    assert out["status"] == "verified" and out["output"].startswith("The capital of France is")
    res = CliRunner().invoke(app, ["submit", "--local", "--embed", "hello", "--embed", "world", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["output"] == "2 vector(s) of 384 floats"
    res = CliRunner().invoke(app, ["submit", "--local", "--chat", q, "--embed", "x"])
    assert res.exit_code == 2 and "exactly one of" in res.output
