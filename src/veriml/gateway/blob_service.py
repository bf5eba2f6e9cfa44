"""HTTP face of a LocalBlobStore: the FastAPI app, a background-thread server, and a CLI entry."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from veriml.errors import (
    BlobHashMismatch,
    BlobNotFound,
    BlobTooLarge,
    InvalidBlobKey,
    NetworkError,
    VerimlError,
)
from veriml.gateway.blobstore import LocalBlobStore, blob_key, check_key, check_size
from veriml.types import BlobKey

OCTET_STREAM = "application/octet-stream"

# Our errors as HTTP statuses; HttpBlobStore maps them back. A corrupt file on our disk is our fault: 500.
_STATUS: dict[type[VerimlError], int] = {
    InvalidBlobKey: 400,
    BlobTooLarge: 413,
    BlobNotFound: 404,
    BlobHashMismatch: 500,
}


async def _read_body(request: Request) -> bytes:
    """Read the request body, refusing more than MAX_BLOB_BYTES before and while reading."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit():
        check_size(int(declared))
    # Content-Length can be absent (chunked) or wrong, so count the bytes as they arrive too.
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        check_size(len(buf))
    return bytes(buf)


def create_blob_app(store: LocalBlobStore) -> FastAPI:
    """Return the blob service app: PUT/GET/HEAD /blobs, GET /health."""
    app = FastAPI(title="veriml blob store")

    async def error_response(request: Request, exc: Exception) -> Response:
        status = next(code for cls, code in _STATUS.items() if isinstance(exc, cls))
        if request.method == "HEAD":
            return Response(status_code=status)
        return JSONResponse({"detail": str(exc)}, status_code=status)

    for cls in _STATUS:
        app.add_exception_handler(cls, error_response)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.put("/blobs", status_code=201)
    async def put_blob(request: Request) -> dict[str, object]:
        data = await _read_body(request)
        key = await run_in_threadpool(store.put, data)
        return {"key": key, "size": len(data)}

    @app.put("/blobs/{key}", status_code=201)
    async def put_blob_at(key: str, request: Request) -> dict[str, object]:
        key = check_key(key)  # refuse a bad key before reading a body we would throw away
        data = await _read_body(request)
        actual = blob_key(data)
        if actual != key:
            raise InvalidBlobKey(f"body of {len(data)} bytes hashes to {actual}, not to key {key}")
        await run_in_threadpool(store.put, data)
        return {"key": key, "size": len(data)}

    @app.head("/blobs/{key}")
    def head_blob(key: str) -> Response:
        size = store.size(BlobKey(key))
        return Response(status_code=200, media_type=OCTET_STREAM, headers={"content-length": str(size)})

    @app.get("/blobs/{key}", response_class=Response)
    def get_blob(key: str) -> Response:
        return Response(content=store.get(BlobKey(key)), media_type=OCTET_STREAM)

    return app


class BlobServer:
    """Run the blob service with uvicorn in a background thread; `with BlobServer(store) as s: s.url`."""

    def __init__(
        self, store: LocalBlobStore, host: str = "127.0.0.1", port: int = 0, startup_timeout: float = 10.0
    ) -> None:
        self.store = store
        self.host = host
        self.port = port
        self.startup_timeout = startup_timeout
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def url(self) -> str:
        """Base URL of the running service, e.g. http://127.0.0.1:54321."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Bind, start serving in a thread, and return once /health answers."""
        # Bind here and hand uvicorn the socket: port 0 then gets a free port with no window for a race.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._sock = sock
        self.port = sock.getsockname()[1]
        # log_config=None: a library must not reconfigure the process's logging.
        config = uvicorn.Config(
            create_blob_app(self.store),
            host=self.host,
            port=self.port,
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"blob-server-{self.port}", daemon=True
        )
        self._thread.start()
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for its thread, and release the socket."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        health = f"{self.url}/health"
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                assert self._thread is not None
                if not self._thread.is_alive():
                    raise NetworkError(f"blob server thread died before {health} answered")
                try:
                    if client.get(health).status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.02)
        raise NetworkError(f"blob server did not answer {health} within {self.startup_timeout}s")


def serve_blobs(root: Path, host: str = "127.0.0.1", port: int = 8600) -> None:
    """Serve the blobs under `root` until interrupted (for the CLI)."""
    uvicorn.run(create_blob_app(LocalBlobStore(root)), host=host, port=port)
