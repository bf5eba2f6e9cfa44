"""LocalBlobStore and the key/size rules every blob store shares."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veriml.errors import BlobHashMismatch, BlobNotFound, BlobTooLarge, InvalidBlobKey, UserInputError
from veriml.gateway.blobstore import (
    MAX_BLOB_BYTES,
    BlobStore,
    HttpBlobStore,
    LocalBlobStore,
    blob_key,
    check_key,
    read_capped,
)
from veriml.types import BlobKey

KEY_OF_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def test_blob_key_is_sha256_hex() -> None:
    assert blob_key(b"") == KEY_OF_EMPTY
    assert blob_key(b"hello") == hashlib.sha256(b"hello").hexdigest()


def test_put_get_has(store: LocalBlobStore) -> None:
    key = store.put(b"prompt bytes")
    assert key == blob_key(b"prompt bytes")
    assert store.has(key)
    assert store.get(key) == b"prompt bytes"
    assert store.size(key) == len(b"prompt bytes")
    assert not store.has(blob_key(b"never stored"))


def test_same_bytes_same_key_and_one_file(store: LocalBlobStore) -> None:
    assert store.put(b"abc") == store.put(b"abc")
    assert store.put(b"abc") != store.put(b"abd")
    files = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file())
    # Sharded by the first two hex chars, and no temp file left behind.
    assert files == sorted(f"{k[:2]}/{k}" for k in (blob_key(b"abc"), blob_key(b"abd")))


def test_empty_blob(store: LocalBlobStore) -> None:
    assert store.put(b"") == KEY_OF_EMPTY
    assert store.get(BlobKey(KEY_OF_EMPTY)) == b""


def test_missing_blob_raises_not_found(store: LocalBlobStore) -> None:
    key = blob_key(b"nowhere")
    with pytest.raises(BlobNotFound, match=key):
        store.get(key)


def test_corrupted_file_raises_mismatch_and_put_heals_it(store: LocalBlobStore) -> None:
    key = store.put(b"original")
    store.path(key).write_bytes(b"flipped")
    with pytest.raises(BlobHashMismatch, match=f"{key} hashes to {blob_key(b'flipped')}"):
        store.get(key)
    store.put(b"original")
    assert store.get(key) == b"original"


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "64 hex chars"),
        ("abc", "64 hex chars"),
        (KEY_OF_EMPTY + "0", "64 hex chars"),
        (KEY_OF_EMPTY.upper(), "lowercase hex, found uppercase"),
        ("g" * 64, "must be hex, found 'g'"),
        ("../" + KEY_OF_EMPTY[3:], "must be hex, found './'"),
        (123, "must be a str, got int"),
        (KEY_OF_EMPTY.encode(), "must be a str, got bytes"),
    ],
)
def test_bad_keys_raise_invalid_blob_key(store: LocalBlobStore, key: object, message: str) -> None:
    with pytest.raises(InvalidBlobKey, match=message):
        check_key(key)
    for op in (store.get, store.has, store.path):
        with pytest.raises(InvalidBlobKey):
            op(key)  # type: ignore[arg-type]


def test_check_key_accepts_lowercase_hex() -> None:
    assert check_key(KEY_OF_EMPTY) == KEY_OF_EMPTY


def test_size_limit(store: LocalBlobStore) -> None:
    assert store.get(store.put(bytes(MAX_BLOB_BYTES))) == bytes(MAX_BLOB_BYTES)
    with pytest.raises(BlobTooLarge, match=str(MAX_BLOB_BYTES)):
        store.put(bytes(MAX_BLOB_BYTES + 1))


def test_oversized_file_on_disk_is_refused_on_get(store: LocalBlobStore) -> None:
    data = bytes(MAX_BLOB_BYTES + 1)
    key = blob_key(data)
    store.path(key).parent.mkdir(parents=True)
    store.path(key).write_bytes(data)
    with pytest.raises(BlobTooLarge):
        store.get(key)


def test_read_capped_stops_beyond_the_limit() -> None:
    pulled = 0

    def endless() -> Iterator[bytes]:
        nonlocal pulled
        while True:
            pulled += 1
            yield b"x" * 10

    with pytest.raises(BlobTooLarge):
        read_capped(endless(), limit=35)
    assert pulled == 4
    assert read_capped([b"ab", b"cd"], limit=4) == b"abcd"


def test_errors_sit_under_user_input() -> None:
    assert issubclass(InvalidBlobKey, UserInputError)
    assert issubclass(BlobTooLarge, UserInputError)


def test_both_stores_satisfy_the_protocol(store: LocalBlobStore) -> None:
    assert isinstance(store, BlobStore)
    with HttpBlobStore("http://127.0.0.1:1") as http:
        assert isinstance(http, BlobStore)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> LocalBlobStore:
    # Module scope: hypothesis reuses one store across examples, which content addressing makes safe.
    return LocalBlobStore(tmp_path_factory.mktemp("blobs"))


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=4096))
def test_get_put_roundtrip_property(shared_store: LocalBlobStore, data: bytes) -> None:
    key = shared_store.put(data)
    assert key == hashlib.sha256(data).hexdigest()
    assert shared_store.has(key)
    assert shared_store.get(key) == data
