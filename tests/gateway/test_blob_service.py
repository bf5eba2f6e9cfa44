"""The blob service and HttpBlobStore: in-process via TestClient, over a real socket, and against liars."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Response
from fastapi.responses import StreamingResponse
from fastapi.testclient import TestClient

from veriml.errors import BlobHashMismatch, BlobNotFound, BlobTooLarge, InvalidBlobKey, NetworkError
from veriml.gateway.blob_service import BlobServer, create_blob_app
from veriml.gateway.blobstore import MAX_BLOB_BYTES, HttpBlobStore, LocalBlobStore, blob_key

BASE = "http://testserver"


@pytest.fixture
def local(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


@pytest.fixture
def client(local: LocalBlobStore) -> Iterator[TestClient]:
    with TestClient(create_blob_app(local)) as c:
        yield c


@pytest.fixture
def http(client: TestClient) -> HttpBlobStore:
    return HttpBlobStore(BASE, client=client)


def test_http_roundtrip(http: HttpBlobStore, local: LocalBlobStore) -> None:
    key = http.put(b"a prompt")
    assert key == blob_key(b"a prompt")
    assert local.get(key) == b"a prompt"
    assert http.has(key)
    assert http.get(key) == b"a prompt"
    assert http.get(http.put(b"")) == b""


def test_http_missing(http: HttpBlobStore) -> None:
    key = blob_key(b"absent")
    assert not http.has(key)
    with pytest.raises(BlobNotFound, match=key):
        http.get(key)


def test_http_checks_key_and_size_before_any_request() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request expected, got {request.method} {request.url}")

    store = HttpBlobStore(BASE, client=httpx.Client(transport=httpx.MockTransport(refuse)))
    with pytest.raises(InvalidBlobKey):
        store.get("A" * 64)  # type: ignore[arg-type]
    with pytest.raises(BlobTooLarge):
        store.put(bytes(MAX_BLOB_BYTES + 1))


def test_put_unkeyed_returns_key_and_size(client: TestClient) -> None:
    resp = client.put("/blobs", content=b"hello")
    assert resp.status_code == 201
    assert resp.json() == {"key": blob_key(b"hello"), "size": 5}


def test_put_keyed_rejects_body_that_is_not_the_key(client: TestClient, local: LocalBlobStore) -> None:
    key = blob_key(b"claimed")
    resp = client.put(f"/blobs/{key}", content=b"actual")
    assert resp.status_code == 400
    assert resp.json()["detail"] == f"body of 6 bytes hashes to {blob_key(b'actual')}, not to key {key}"
    assert not local.has(key) and not local.has(blob_key(b"actual"))


def test_get_and_head(client: TestClient) -> None:
    key = blob_key(b"payload")
    client.put(f"/blobs/{key}", content=b"payload")
    got = client.get(f"/blobs/{key}")
    assert (got.status_code, got.content, got.headers["content-type"]) == (
        200,
        b"payload",
        "application/octet-stream",
    )
    head = client.head(f"/blobs/{key}")
    assert (head.status_code, head.headers["content-length"], head.content) == (200, "7", b"")
    assert client.head(f"/blobs/{blob_key(b'x')}").status_code == 404
    assert client.get(f"/blobs/{blob_key(b'x')}").status_code == 404


@pytest.mark.parametrize("path", ["/blobs/xyz", f"/blobs/{'A' * 64}"])
def test_invalid_key_is_400(client: TestClient, path: str) -> None:
    resp = client.get(path)
    assert resp.status_code == 400
    assert "blob key must be" in resp.json()["detail"]
    assert client.put(path, content=b"x").status_code == 400


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_oversized_body_is_413_by_length_and_by_stream(client: TestClient) -> None:
    resp = client.put("/blobs", content=bytes(MAX_BLOB_BYTES + 1))
    assert resp.status_code == 413
    assert str(MAX_BLOB_BYTES) in resp.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the service must count while reading
        for _ in range(5):
            yield bytes(1024 * 1024)

    assert client.put("/blobs", content=chunks()).status_code == 413


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, InvalidBlobKey),
        (413, BlobTooLarge),
        (404, BlobNotFound),
        (500, NetworkError),
        (503, NetworkError),
    ],
)
def test_status_mapping_keeps_server_message(status: int, error: type[Exception]) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": "the server's reason"})

    store = HttpBlobStore(BASE, client=httpx.Client(transport=httpx.MockTransport(answer)))
    for call in (lambda: store.put(b"x"), lambda: store.get(blob_key(b"x"))):
        with pytest.raises(error) as info:
            call()
        assert status == 404 or "the server's reason" in str(info.value)


# --- hostile servers --------------------------------------------------------------------------------


def hostile(app: FastAPI) -> HttpBlobStore:
    return HttpBlobStore(BASE, client=TestClient(app))


def test_server_returning_other_bytes_raises_mismatch() -> None:
    app = FastAPI()

    @app.get("/blobs/{key}")
    def swap(key: str) -> Response:
        return Response(content=b"not what you asked for", media_type="application/octet-stream")

    key = blob_key(b"what you asked for")
    with pytest.raises(BlobHashMismatch, match=f"{key} hashes to {blob_key(b'not what you asked for')}"):
        hostile(app).get(key)


def test_server_claiming_another_key_on_put_raises_mismatch() -> None:
    app = FastAPI()

    @app.put("/blobs/{key}", status_code=201)
    def wrong(key: str) -> dict[str, object]:
        return {"key": "0" * 64, "size": 1}

    with pytest.raises(BlobHashMismatch, match="0" * 64):
        hostile(app).put(b"x")


def test_server_declaring_oversized_blob_is_refused_before_reading() -> None:
    app = FastAPI()

    @app.get("/blobs/{key}")
    def huge(key: str) -> Response:
        return Response(content=b"x", headers={"content-length": str(MAX_BLOB_BYTES + 1)})

    with pytest.raises(BlobTooLarge):
        hostile(app).get(blob_key(b"x"))


def test_server_streaming_forever_is_cut_off() -> None:
    app = FastAPI()
    sent = 0

    def endless() -> Iterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            yield bytes(256 * 1024)

    @app.get("/blobs/{key}")
    def flood(key: str) -> StreamingResponse:
        return StreamingResponse(endless(), media_type="application/octet-stream")

    with pytest.raises(BlobTooLarge):
        hostile(app).get(blob_key(b"x"))
    assert sent < 2 * MAX_BLOB_BYTES // (256 * 1024)


# --- real sockets -----------------------------------------------------------------------------------


def test_over_a_real_socket(local: LocalBlobStore) -> None:
    with BlobServer(local) as server:
        assert server.url.startswith("http://127.0.0.1:") and server.port != 0
        with HttpBlobStore(server.url, timeout=5.0) as store:
            key = store.put(b"over tcp")
            assert store.has(key)
            assert store.get(key) == b"over tcp"
            with pytest.raises(BlobNotFound):
                store.get(blob_key(b"absent"))
        url = server.url
    with HttpBlobStore(url, timeout=1.0) as store, pytest.raises(NetworkError, match=url):
        store.get(key)  # the server is gone after exit


def test_unreachable_url_raises_network_error() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with HttpBlobStore(url, timeout=1.0) as store:
        for call in (
            lambda: store.get(blob_key(b"x")),
            lambda: store.put(b"x"),
            lambda: store.has(blob_key(b"x")),
        ):
            with pytest.raises(NetworkError, match=f"{url}/blobs/"):
                call()
