"""Content-addressed blob store: sha256 keys, a local directory backend and an HTTP client."""

from __future__ import annotations

import hashlib
import json
import os
import string
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import httpx

from veriml.errors import (
    BlobHashMismatch,
    BlobNotFound,
    BlobTooLarge,
    InvalidBlobKey,
    NetworkError,
)
from veriml.types import BlobKey

MAX_BLOB_BYTES = 4 * 1024 * 1024
_HEX = frozenset(string.hexdigits.lower())
_MAX_ERROR_BYTES = 4096  # an error body is a short message; a hostile server must not make us read more
_SHARED: dict[float, httpx.Client] = {}
_SHARED_LOCK = threading.Lock()


def _shared_client(timeout: float) -> httpx.Client:
    """One pooled client per timeout for every store built without one (httpx clients are thread-safe).

    The SDK opens a store per output it fetches; a client each cost an SSL context (6% of the gateway's CPU
    under load) and a connection pool that was never closed."""
    with _SHARED_LOCK:
        client = _SHARED.get(timeout)
        if client is None or client.is_closed:
            client = _SHARED[timeout] = httpx.Client(timeout=timeout)
        return client


def blob_key(data: bytes) -> BlobKey:
    """Return the key of `data`: its sha256 as lowercase hex."""
    return BlobKey(hashlib.sha256(data).hexdigest())


def check_key(key: object) -> BlobKey:
    """Return `key` as a BlobKey if it is 64 lowercase hex chars, else raise InvalidBlobKey."""
    if not isinstance(key, str):
        raise InvalidBlobKey(f"blob key must be a str, got {type(key).__name__}")
    if len(key) != 64:
        raise InvalidBlobKey(f"blob key must be 64 hex chars (sha256), got {len(key)}: {key[:80]!r}")
    bad = "".join(sorted(set(key) - _HEX))
    if bad and set(key.lower()) <= _HEX:
        raise InvalidBlobKey(f"blob key must be lowercase hex, found uppercase {bad!r} in {key!r}")
    if bad:
        raise InvalidBlobKey(f"blob key must be hex, found {bad!r} in {key!r}")
    return BlobKey(key)


def check_size(size: int, limit: int = MAX_BLOB_BYTES) -> None:
    """Raise BlobTooLarge if `size` bytes exceed `limit`."""
    if size > limit:
        raise BlobTooLarge(f"blob of {size} bytes exceeds the limit of {limit} bytes")


def read_capped(chunks: Iterable[bytes], limit: int = MAX_BLOB_BYTES) -> bytes:
    """Join `chunks`, raising BlobTooLarge as soon as more than `limit` bytes have arrived."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > limit:
            raise BlobTooLarge(f"blob exceeds the limit of {limit} bytes (stopped reading at {len(buf)})")
    return bytes(buf)


def verify_blob(key: BlobKey, data: bytes) -> bytes:
    """Return `data` if it hashes to `key`, else raise BlobHashMismatch naming both hashes."""
    actual = blob_key(data)
    if actual != key:
        raise BlobHashMismatch(f"blob {key} hashes to {actual}")
    return data


@runtime_checkable
class BlobStore(Protocol):
    """Where payloads live, addressed by the sha256 of their bytes."""

    def put(self, data: bytes) -> BlobKey:
        """Store `data` and return its key."""
        ...

    def get(self, key: BlobKey) -> bytes:
        """Return the bytes under `key`, checked against it."""
        ...

    def has(self, key: BlobKey) -> bool:
        """Return whether a blob is stored under `key`."""
        ...


class LocalBlobStore:
    """Blobs as files under `root`, sharded by the key's first two hex chars."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, key: BlobKey) -> Path:
        """Return the file that holds (or would hold) the blob under `key`."""
        key = check_key(key)
        return self.root / key[:2] / key

    def put(self, data: bytes) -> BlobKey:
        """Store `data` atomically and return its key."""
        check_size(len(data))
        key = blob_key(data)
        dest = self.path(key)
        dest.parent.mkdir(exist_ok=True)
        # Always rewrite rather than skip when present: blobs are small, and this heals a corrupted copy.
        # Temp file in the same directory, so os.replace is an atomic rename and readers never see a
        # half-written blob; the dot prefix keeps it from ever looking like a key.
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def get(self, key: BlobKey) -> bytes:
        """Return the bytes under `key`, re-hashed so a corrupted file raises BlobHashMismatch."""
        src = self.path(key)
        try:
            with src.open("rb") as f:
                data = f.read(MAX_BLOB_BYTES + 1)
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key} in {self.root}") from None
        check_size(len(data))
        return verify_blob(BlobKey(key), data)

    def has(self, key: BlobKey) -> bool:
        """Return whether a blob file exists under `key` (its content is checked on get)."""
        return self.path(key).is_file()

    def size(self, key: BlobKey) -> int:
        """Return the stored size in bytes of the blob under `key`."""
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {key} in {self.root}") from None


class HttpBlobStore:
    """Client of the blob service (`veriml.gateway.blob_service`); every fetched blob is checked."""

    def __init__(self, base_url: str, client: httpx.Client | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        # An injected client brings its own policy (timeouts, transport); `timeout` only shapes the shared one,
        # which lives as long as the process (close() leaves it open for the other stores).
        self._client = client if client is not None else _shared_client(timeout)

    def __repr__(self) -> str:
        return f"HttpBlobStore({self.base_url!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: an injected client belongs to its caller, the shared one to the process."""

    def put(self, data: bytes) -> BlobKey:
        """Upload `data` under its key; the server re-hashes it and refuses a mismatch."""
        check_size(len(data))
        key = blob_key(data)
        url = self._url(key)
        try:
            resp = self._client.put(url, content=data, headers={"content-type": "application/octet-stream"})
        except httpx.RequestError as exc:
            raise NetworkError(f"cannot put blob to {url}: {exc!r}") from exc
        self._raise_for_status(resp, url, key)
        try:
            stored = resp.json().get("key")
        except (ValueError, AttributeError):
            stored = None
        if stored != key:
            raise BlobHashMismatch(f"blob {key} was stored by {url} as {stored!r}")
        return key

    def get(self, key: BlobKey) -> bytes:
        """Download the blob under `key`, stopping past MAX_BLOB_BYTES, and check it hashes to `key`."""
        key = check_key(key)
        url = self._url(key)
        try:
            with self._client.stream("GET", url) as resp:
                self._raise_for_status(resp, url, key)
                declared = resp.headers.get("content-length")
                if declared is not None and declared.isdigit():
                    check_size(int(declared))
                data = read_capped(resp.iter_bytes())
        except httpx.RequestError as exc:
            raise NetworkError(f"cannot get blob from {url}: {exc!r}") from exc
        return verify_blob(key, data)

    def has(self, key: BlobKey) -> bool:
        """Return whether the service holds a blob under `key`."""
        key = check_key(key)
        url = self._url(key)
        try:
            resp = self._client.head(url)
        except httpx.RequestError as exc:
            raise NetworkError(f"cannot reach blob store at {url}: {exc!r}") from exc
        if resp.status_code == 404:
            return False
        self._raise_for_status(resp, url, key)
        return True

    def _url(self, key: BlobKey) -> str:
        return f"{self.base_url}/blobs/{key}"

    def _raise_for_status(self, resp: httpx.Response, url: str, key: BlobKey) -> None:
        """Translate an error status into our exception tree, keeping the server's message."""
        status = resp.status_code
        if status < 400:
            return
        message = _error_message(resp)
        if status == 404:
            raise BlobNotFound(f"no blob {key} at {url}")
        if status == 413:
            raise BlobTooLarge(f"{url} refused the blob: {message}")
        if status == 400:
            raise InvalidBlobKey(f"{url} refused the request: {message}")
        raise NetworkError(f"{url} answered HTTP {status}: {message}")


def _error_message(resp: httpx.Response) -> str:
    """Return the `detail` of an error response (FastAPI's shape), or its first bytes as text."""
    if resp.request.method == "HEAD":
        return resp.reason_phrase
    raw = b""
    for chunk in resp.iter_bytes():
        raw += chunk
        if len(raw) >= _MAX_ERROR_BYTES:
            break
    raw = raw[:_MAX_ERROR_BYTES]
    text = raw.decode("utf-8", errors="replace")
    try:
        detail = json.loads(text).get("detail")
    except (ValueError, AttributeError):
        detail = None
    return detail if isinstance(detail, str) else text.strip() or resp.reason_phrase


def open_store(location: str) -> BlobStore:
    """A store from a location string: `http(s)://...` (a blob service) or `file://DIR` / a plain path."""
    if location.startswith(("http://", "https://")):
        return HttpBlobStore(location)
    path = location.removeprefix("file://")
    return LocalBlobStore(Path(path))
