"""Generated malformed requests against the running gateway over HTTP: every one gets a 4xx OpenAI-style
error object, none a 5xx, and no coin moves (no job, no escrow, no balance change, no queued request).

Each generated case is invalid by construction (the strategy picks one defect and applies it to an
otherwise valid body), so "no coin moved" is a property of the gateway, not of luck.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from veriml.gateway.harness import LocalGateway
from veriml.gateway.request import MAX_BODY_BYTES
from veriml.sim.network import NodeSpec

EXAMPLES = 1100
sent: list[int] = []


@pytest.fixture(scope="module")
def gw():
    with LocalGateway.start([NodeSpec(), NodeSpec(), NodeSpec()], ("tiny-gpt", "tiny-shapes")) as g:
        yield g


@pytest.fixture(scope="module")
def http(gw):
    key = gw.create_key(spend_limit=10**20, rate=100_000)
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def books(gw):
    """The chain and queue state before any malformed request."""
    return _books(gw)


def _books(gw):
    c = gw.net.contracts
    with gw.seq.lock:
        return {
            "jobs": c.quorum.next_job_id(),
            "escrow": c.quorum.total_escrow(),
            "balance": c.balance(gw.net.client.address),
            "requests": len(gw.seq.requests(limit=10**6)),
        }


VALID = {
    "/v1/chat/completions": {"model": "tiny-gpt", "messages": [{"role": "user", "content": "The for statement"}]},
    "/v1/completions": {"model": "tiny-gpt", "prompt": "The for statement"},
    "/v1/embeddings": {"model": "tiny-gpt", "input": "x"},  # tiny-gpt cannot embed: always refused
    "/v1/images/generations": {"model": "tiny-shapes", "prompt": "star"},
}
REQUIRED = {
    "/v1/chat/completions": ("model", "messages"),
    "/v1/completions": ("model", "prompt"),
    "/v1/embeddings": ("model",),
    "/v1/images/generations": ("model", "prompt"),
}
json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_any = st.recursive(
    json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=8
)
not_int = json_any.filter(
    lambda v: v is not None and (not isinstance(v, int) or isinstance(v, bool))
)  # null: "default"
bad_int = st.one_of(st.integers(max_value=0), st.integers(min_value=4097), not_int, st.floats(allow_nan=False))
not_str = json_any.filter(lambda v: not isinstance(v, str))
bad_n = st.one_of(
    st.integers(max_value=0), st.integers(min_value=1).map(lambda k: 2 * k), st.integers(min_value=10), not_int
)
bad_scheme = st.one_of(st.sampled_from(["optimistic", "zk", "audit", "fingerprint", "training", "", "QUORUM"]),
                       st.text(max_size=12).filter(lambda s: s != "quorum"), not_str)  # fmt: skip
bad_message = st.one_of(
    not_str.map(lambda v: {"role": "user", "content": v}).filter(lambda m: not isinstance(m["content"], list)),
    st.text(max_size=8)
    .filter(lambda r: r not in ("system", "user", "assistant", "developer"))
    .map(lambda r: {"role": r, "content": "hi"}),
    st.just({"role": "user", "content": "   "}),
    st.just({"role": "assistant", "content": "the last message must not be the assistant's"}),
    st.just({"content": "no role"}),
    st.just({"role": "user", "content": "hi", "tool_calls": []}),
    json_leaf,
)


def _above(x):
    return st.floats(min_value=x, allow_infinity=False, exclude_min=True)


def _below(x):
    return st.floats(max_value=x, allow_infinity=False, exclude_max=True)


@st.composite
def defect(draw):
    """(path, raw body bytes, headers) of one request with exactly one chosen defect."""
    path = draw(st.sampled_from(sorted(VALID)))
    body = dict(VALID[path])
    kind = draw(st.sampled_from([
        "raw", "not-object", "missing", "model", "unknown-key", "veriml", "scheme", "n", "max_tokens", "sampling",
        "messages", "stream", "choices", "huge", "bad-utf8", "surrogate", "auth", "prompt", "chat-n-too-large",
    ]))  # fmt: skip
    headers = {"Content-Type": "application/json"}
    if path == "/v1/embeddings" and kind in ("raw", "not-object", "missing", "huge", "bad-utf8", "auth"):
        pass  # the embeddings body is already refused (tiny-gpt cannot embed); any defect on top still refuses
    if kind == "raw":
        raw = draw(st.binary(max_size=200).filter(lambda b: not _is_object(b)))
        return path, raw, headers
    if kind == "not-object":
        return path, json.dumps(draw(json_any.filter(lambda v: not isinstance(v, dict)))).encode(), headers
    if kind == "missing":
        for k in draw(st.lists(st.sampled_from(REQUIRED[path]), min_size=1, unique=True)):
            body.pop(k)
    elif kind == "model":
        body["model"] = draw(
            st.one_of(not_str, st.text(max_size=30).filter(lambda s: s not in ("tiny-gpt", "tiny-shapes")))
        )
    elif kind == "unknown-key":
        body[draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in _ALLOWED))] = draw(json_any)
    elif kind == "veriml":
        body["veriml"] = draw(st.one_of(
            json_leaf.filter(lambda v: v is not None), st.lists(json_leaf, max_size=2),
            st.dictionaries(st.text(max_size=6).filter(lambda k: k not in ("scheme", "n")), json_leaf, min_size=1),
        ))  # fmt: skip
    elif kind == "scheme":
        body["veriml"] = {"scheme": draw(bad_scheme), "n": 1}
    elif kind == "n":
        body["veriml"] = {"n": draw(bad_n)}
    elif kind == "chat-n-too-large":
        body["veriml"] = {"n": draw(st.sampled_from([5, 7, 9]))}  # only 3 nodes serve
    elif kind == "max_tokens":
        if path == "/v1/images/generations" or path == "/v1/embeddings":
            body["seed"] = draw(st.one_of(st.integers(max_value=-1), st.integers(min_value=2**64), not_int))
        else:
            body["max_tokens"] = draw(
                bad_int.filter(lambda v: not (isinstance(v, int) and 1 <= v <= 128) or isinstance(v, bool))
            )
    elif kind == "sampling":
        name, value = draw(st.sampled_from([
            ("temperature", st.one_of(_above(2.0), _below(0.0), st.text(max_size=3))),
            ("top_p", st.one_of(_above(1.0), _below(0.0))),
            ("presence_penalty", st.floats(min_value=0.5, max_value=2.0)),
            ("stop", st.one_of(st.text(min_size=1, max_size=4), st.lists(st.text(max_size=3), min_size=1, max_size=2))),
            ("logprobs", st.just(True)),
        ]))  # fmt: skip
        body[name] = draw(value)
    elif kind == "messages":
        if path == "/v1/chat/completions":
            body["messages"] = draw(st.one_of(
                not_str.filter(lambda v: not isinstance(v, list)), st.just([]),
                st.lists(bad_message, min_size=1, max_size=3), st.just([{"role": "user", "content": "hi"}] * 33),
            ))  # fmt: skip
        else:
            body["prompt"] = draw(
                not_str.filter(lambda v: not (isinstance(v, list) and len(v) == 1 and isinstance(v[0], str)))
            )
    elif kind == "stream":
        body["stream"] = draw(json_leaf.filter(lambda v: v is not None and not isinstance(v, bool)))
        if path in ("/v1/embeddings", "/v1/images/generations"):
            pass  # an unknown parameter there
    elif kind == "choices":
        body["n"] = draw(st.one_of(st.integers(min_value=2), st.integers(max_value=0), st.text(max_size=3)))
    elif kind == "huge":
        return (
            path,
            b'{"model": "tiny-gpt", "prompt": "' + b"x" * (MAX_BODY_BYTES + draw(st.integers(1, 5000))) + b'"}',
            headers,
        )
    elif kind == "bad-utf8":
        junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80abc"]))
        return (
            path,
            b'{"model": "tiny-gpt", "prompt": "'
            + junk
            + b'", "messages": [{"role": "user", "content": "'
            + junk
            + b'"}]}',
            headers,
        )
    elif kind == "surrogate":
        field = "messages" if path == "/v1/chat/completions" else "prompt"
        text = "hi \ud800 there"
        body[field] = [{"role": "user", "content": text}] if field == "messages" else text
        if path == "/v1/images/generations":
            body["prompt"] = "st\udc00ar"
        return path, json.dumps(body).encode(), headers  # json.dumps escapes the surrogate as \\ud800
    elif kind == "auth":
        headers["Authorization"] = draw(st.one_of(
            st.just("Bearer"), st.text(max_size=40).map(lambda s: "Bearer " + s),
            st.just("Bearer vml_000000000000_" + "0" * 48), st.just("Basic dXNlcjpwYXNz"),
        ).filter(lambda h: h.isascii() and h.isprintable() and h == h.strip()))  # fmt: skip
    elif kind == "prompt":
        if path == "/v1/images/generations":
            body["prompt"] = draw(st.text(max_size=20).filter(lambda s: s.strip().lower() not in _CLASSES))
        elif path == "/v1/chat/completions":
            body["messages"] = [{"role": "user", "content": "x" * draw(st.integers(513, 5000))}]  # tiny-gpt: 512 bytes
        else:
            body["prompt"] = draw(st.one_of(st.just(""), st.just("   "), st.integers(513, 5000).map(lambda k: "y" * k)))
    return path, json.dumps(body).encode(), headers


_ALLOWED = {"model", "veriml", "seed", "temperature", "top_p", "user", "metadata", "store", "stream_options",
            "service_tier", "parallel_tool_calls", "presence_penalty", "frequency_penalty", "messages", "max_tokens",
            "max_completion_tokens", "n", "stream", "stop", "logprobs", "response_format", "prompt", "echo",
            "best_of", "suffix", "input", "encoding_format", "dimensions", "size", "quality", "style"}  # fmt: skip
_CLASSES = {"circle", "ring", "square", "triangle", "hexagon", "star", "cross", "crescent"}


def _is_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(case=defect())
def test_malformed_requests_get_4xx_error_objects(gw, http, books, case):
    path, raw, headers = case
    if "Authorization" in headers:
        r = httpx.post(gw.url + path, content=raw, headers=headers, timeout=30)
    else:
        r = http.post(path, content=raw, headers=headers)
    sent.append(r.status_code)
    assert 400 <= r.status_code < 500, (path, raw[:200], r.status_code, r.text[:300])
    err = r.json()["error"]
    assert isinstance(err["message"], str) and err["message"] and isinstance(err["type"], str)
    assert set(err) == {"message", "type", "param", "code"}


def test_more_than_a_thousand_were_sent_and_no_coin_moved(gw, books):
    assert len(sent) >= 1000, len(sent)
    assert not [s for s in sent if s >= 500]
    assert _books(gw) == books
    statuses = set(sent)
    assert {400, 401, 404, 413} <= statuses, statuses
