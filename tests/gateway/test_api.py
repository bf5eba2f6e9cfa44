"""The official `openai` client against the gateway, over real HTTP, on an in-process network.

The network: the embedded chain, four honest nodes serving every model and one that answers tiny-gpt
jobs wrongly (it is drawn whenever n = 5). The sequencer's worker steps the nodes; answers are checked
against the chain (the settled digest) and against the models run here directly.
"""

from __future__ import annotations

import base64
import io
import time

import httpx
import openai
import pytest
from PIL import Image

from veriml.gateway.harness import LocalGateway
from veriml.sim.faults import Fault
from veriml.sim.network import NodeSpec

MODELS = ("tiny-gpt", "tiny-shapes")  # the real models: test_api_real_models.py (slow tier)
CHEATER = 4  # index of the wrong-output node (tiny-gpt only)


@pytest.fixture(scope="module")
def gw():
    specs = [NodeSpec() for _ in range(4)] + [NodeSpec(Fault.WRONG_OUTPUT, models=("tiny-gpt",))]
    with LocalGateway.start(specs, MODELS, wait_timeout=120) as g:
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


def test_models_lists_what_the_chain_serves(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == set(MODELS)
    assert models["tiny-shapes"].model_extra["veriml"]["task"] == "image-generation"
    assert models["tiny-gpt"].model_extra["veriml"]["nodes"] == 5
    assert models["tiny-shapes"].model_extra["veriml"]["nodes"] == 4


def test_stream_sends_no_content_before_settlement(gw, client):
    kwargs = dict(model="tiny-gpt", messages=[{"role": "user", "content": "The for statement"}], max_tokens=10)
    chunks = list(client.chat.completions.create(stream=True, extra_body={"veriml": {"n": 3}}, **kwargs))
    content = [i for i, c in enumerate(chunks) if c.choices and c.choices[0].delta.content]
    assert len(content) == 1
    first = content[0]
    for c in chunks[:first]:
        assert c.choices == [] and c.model_extra["veriml"]["status"] != "verified"
    statuses = [c.model_extra["veriml"]["status"] for c in chunks[:first]]
    assert statuses[0] == "queued" and "assigned" in statuses
    final = chunks[first].model_extra["veriml"]
    assert final["status"] == "verified" and final["output_digest"] == on_chain_digest(gw, final["job_id"])
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    again = client.chat.completions.create(extra_body={"veriml": {"n": 3}}, **kwargs)
    assert again.choices[0].message.content == chunks[first].choices[0].delta.content  # greedy: the same answer


def test_completion_on_tiny_gpt_with_a_cheater_slashed(gw, client):
    # Earlier jobs may have drawn and slashed the cheater already (the draw depends on block hashes, which
    # depend on timestamps); top it up to its starting stake so it is still drawable for n = 5.
    cheat = gw.net.nodes[CHEATER]
    with gw.seq.lock:
        missing = 2 * 10**18 - gw.net.contracts.stake_of(cheat.address)
        if missing > 0:
            gw.net.contracts.top_up(cheat.account, missing)
    r = client.completions.create(
        model="tiny-gpt", prompt="The with statement", max_tokens=8, extra_body={"veriml": {"n": 5}}
    )
    v = r.model_extra["veriml"]
    cheater = gw.net.nodes[CHEATER].address
    assert v["status"] == "verified" and v["slashed"] == [cheater] and cheater not in v["agree"]
    assert len(v["agree"]) == 4
    with gw.seq.lock:
        ref = runner(gw, "tiny-gpt").run(b"The with statement", 8, None)
    assert r.choices[0].text == bytes(t for t in ref.tokens if t < 256).decode("utf-8", "replace")


def test_embeddings_from_a_text_model_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="tiny-gpt", input="x")
    assert e.value.body["code"] == "model_not_supported" and e.value.body["param"] == "model"
    assert "tiny-gpt serves text-generation, not embeddings" in e.value.body["message"]


def test_image_is_a_verified_png(gw, client):
    im = client.images.generate(model="tiny-shapes", prompt="star", response_format="b64_json", extra_body={"seed": 3})
    png = base64.b64decode(im.data[0].b64_json)
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    v = im.model_extra["veriml"]
    assert v["status"] == "verified" and v["output_digest"] == on_chain_digest(gw, v["job_id"])


def test_bad_and_missing_keys_are_401(gw):
    for key in ("vml_000000000000_" + "0" * 48, "sk-not-ours", gw.create_key()[:-1] + "x"):
        bad = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.chat.completions.create(model="tiny-gpt", messages=[{"role": "user", "content": "hi"}])
    r = httpx.post(f"{gw.url}/v1/completions", json={"model": "tiny-gpt", "prompt": "hi"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"


def test_spent_out_key_is_refused_before_any_coin_moves(gw):
    price = gw.seq.catalog.models["tiny-gpt"].price_wei
    key = gw.create_key(spend_limit=3 * price, rate=100)
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0, timeout=120)
    ok = c.completions.create(
        model="tiny-gpt", prompt="The if statement", max_tokens=4, extra_body={"veriml": {"n": 3}}
    )
    v = ok.model_extra["veriml"]
    assert v["status"] == "verified"
    # The key is charged what the chain took: the whole fee, less the dust refunded when the cheater was
    # drawn and slashed (the draw varies with block timestamps). Three more nodes never fit what is left.
    spent = int(v["fee_paid"])
    assert 2 * price <= spent <= 3 * price
    with gw.seq.lock:
        jobs_before = gw.net.contracts.quorum.next_job_id()
        balance_before = gw.net.contracts.balance(gw.net.client.address)
    with pytest.raises(openai.RateLimitError) as e:
        c.completions.create(model="tiny-gpt", prompt="The if statement", max_tokens=4, extra_body={"veriml": {"n": 3}})
    assert e.value.body["code"] == "insufficient_quota"
    with gw.seq.lock:
        assert gw.net.contracts.quorum.next_job_id() == jobs_before
        assert gw.net.contracts.balance(gw.net.client.address) == balance_before
    usage = httpx.get(f"{gw.url}/v1/veriml/usage", headers={"Authorization": f"Bearer {key}"}).json()
    assert usage["spent_wei"] == str(spent) and usage["reserved_wei"] == "0" and usage["requests"] == 1


def test_rate_limit_is_a_429(gw):
    c = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=gw.create_key(rate=1), max_retries=0, timeout=120)
    c.completions.create(model="tiny-gpt", prompt="The try statement", max_tokens=2, extra_body={"veriml": {"n": 1}})
    with pytest.raises(openai.RateLimitError) as e:
        c.completions.create(
            model="tiny-gpt", prompt="The try statement", max_tokens=2, extra_body={"veriml": {"n": 1}}
        )
    assert e.value.body["code"] == "rate_limit_exceeded"


def test_unknown_model_is_a_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert e.value.body["code"] == "model_not_found"


HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("messages", "extra", "param"),
    [
        ([], {}, "messages"),
        (HI, {"max_tokens": -1}, "max_tokens"),
        ("hi", {}, "messages"),
        (HI, {"veriml": {"n": 2}}, "veriml.n"),
        (HI, {"veriml": {"n": 11}}, "veriml.n"),
        (HI, {"veriml": {"scheme": "zk"}}, "veriml.scheme"),
        (HI, {"veriml": {"scheme": "magic"}}, "veriml.scheme"),
        (HI, {"bogus": 1}, "bogus"),
    ],
)
def test_malformed_bodies_through_the_openai_client(client, messages, extra, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-gpt", messages=messages, extra_body=extra)
    assert e.value.body["param"] == param and e.value.body["type"] == "invalid_request_error"


def test_bad_json_is_a_400_error_object(gw, client):
    headers = {"Authorization": f"Bearer {client.api_key}", "Content-Type": "application/json"}
    r = httpx.post(f"{gw.url}/v1/chat/completions", content=b'{"model": "tiny-gpt", "messages": [', headers=headers)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def test_idempotency_key_answers_twice_without_a_second_job(gw, client):
    headers = {"Idempotency-Key": "same-request-1"}
    kw = dict(
        model="tiny-gpt",
        prompt="The del statement",
        max_tokens=3,
        extra_body={"veriml": {"n": 1}},
        extra_headers=headers,
    )
    a = client.completions.create(**kw)
    b = client.completions.create(**kw)
    assert a.id == b.id and a.model_extra["veriml"]["job_id"] == b.model_extra["veriml"]["job_id"]


def test_non_custodial_job_paid_by_the_users_own_account(gw):
    """The SDK signs and pays from the user's account; the gateway only reads and helps it along."""
    from veriml.client.sdk import Client

    net = gw.net
    user = net.chain.accounts[len(net.nodes) + 2]
    me = Client(net.contracts, user, net.client.input_store)
    with gw.seq.lock:
        job_id, _ = me.submit_text("tiny-gpt", "The pass statement", 3, max_new_tokens=4)
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(f"{gw.url}/v1/veriml/jobs/{job_id}", timeout=30)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("verified", "disputed", "refunded"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    got = r.json()
    with gw.seq.lock:
        mine = me.result(job_id)
    assert got["status"] == mine.status == "verified"
    assert got["output"] == mine.output and got["output_digest"] == mine.output_digest
    explored = httpx.get(f"{gw.url}/v1/veriml/explorer/jobs/{job_id}").json()
    assert explored["job"]["user"] == user.address  # paid by the user's account, not the gateway's
    assert "request" not in explored  # and no gateway request stands behind it
    assert httpx.get(f"{gw.url}/v1/veriml/jobs/999999").status_code == 404
