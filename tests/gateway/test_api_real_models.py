"""The real models through the gateway with the official `openai` client (slow tier: SmolLM2 and MiniLM
load in seconds and run three times per job): chat answers and embeddings match the models run here."""

from __future__ import annotations

import numpy as np
import openai
import pytest

from veriml.gateway.harness import LocalGateway
from veriml.jobspec import chat_input, embeddings_input
from veriml.sim.network import NodeSpec
from veriml.verify.digest import tokens_digest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gw():
    with LocalGateway.start([NodeSpec() for _ in range(3)], ("smollm2-135m-instruct", "minilm-l6-v2")) as g:
        yield g
        assert g.seq is not None and g.seq.errors == 0


@pytest.fixture(scope="module")
def client(gw):
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.create_key(label="tests"), max_retries=0, timeout=180)


def runner(gw, name):
    return next(m for m in gw.net.models if m.manifest.name == name)


def on_chain_digest(gw, job_id):
    with gw.seq.lock:
        return "0x" + gw.net.contracts.quorum.job(job_id).result_digest.hex()


def test_chat_is_verified_and_matches_the_model_run_here(gw, client):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(
        model="smollm2-135m-instruct",
        messages=messages,
        max_tokens=12,
        extra_body={"veriml": {"scheme": "quorum", "n": 3}},
    )
    v = r.model_extra["veriml"]
    assert v["status"] == "verified" and v["scheme"] == "quorum" and v["n"] == 3
    assert len(v["agree"]) == 3 and v["slashed"] == []
    assert {"submit", "assign", "finalize"} <= set(v["txs"])
    assert v["output_digest"] == on_chain_digest(gw, v["job_id"])
    assert v["explorer"].endswith(f"/explorer#/job/{v['job_id']}")
    with gw.seq.lock:
        ref = runner(gw, "smollm2-135m-instruct").run(chat_input(messages), 12, None)
    assert r.choices[0].message.content == ref.text.decode()
    assert "Paris" in r.choices[0].message.content
    assert v["output_digest"] == "0x" + tokens_digest(ref.tokens).hex()
    price = gw.seq.catalog.models["smollm2-135m-instruct"].price_wei
    assert int(v["fee_paid"]) == 3 * price and int(v["refund"]) == 0


def test_embeddings_base64_and_float_match_the_model_within_its_step(gw, client):
    texts = ["hello world", "verified embeddings"]
    with gw.seq.lock:
        ref = runner(gw, "minilm-l6-v2").run(embeddings_input(texts)).vectors
    e = client.embeddings.create(model="minilm-l6-v2", input=texts)  # the client asks for base64
    got = np.array([d.embedding for d in e.data], dtype=np.float32)
    assert got.shape == (2, 384)
    step = runner(gw, "minilm-l6-v2").step
    assert np.max(np.abs(got - ref)) <= step  # another node's floats, matched on the profiled grid
    f = client.embeddings.create(model="minilm-l6-v2", input="hello world", encoding_format="float")
    assert len(f.data) == 1 and f.model_extra["veriml"]["status"] == "verified"
    assert np.allclose(f.data[0].embedding, ref[0], atol=step)
