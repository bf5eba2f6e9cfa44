"""The gateway's one SQLite file: API keys, the durable request queue, and the index of chain events.

One connection shared by the HTTP threads and the sequencer's worker, serialized by a lock (SQLite
itself is safe across threads; a shared connection is not without one). WAL keeps readers cheap.
Amounts in wei are stored as decimal TEXT: they overflow SQLite's 64-bit integers above ~9.2 ETH.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    salt BLOB NOT NULL,
    hash BLOB NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    spend_limit TEXT NOT NULL,
    rate_per_min INTEGER NOT NULL,
    reserved TEXT NOT NULL DEFAULT '0',
    spent TEXT NOT NULL DEFAULT '0',
    refunded TEXT NOT NULL DEFAULT '0',
    requests INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    idempotency TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    fee TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    submit_from INTEGER,
    job_id INTEGER,
    tx TEXT,
    progress TEXT,
    result TEXT,
    text TEXT,
    document BLOB,
    answered INTEGER NOT NULL DEFAULT 0,
    UNIQUE (key_id, idempotency)
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state);
CREATE INDEX IF NOT EXISTS requests_key_created ON requests (key_id, created);
CREATE INDEX IF NOT EXISTS requests_job ON requests (job_id);
CREATE TABLE IF NOT EXISTS events (
    block INTEGER NOT NULL,
    log_index INTEGER NOT NULL,
    job_id INTEGER,
    name TEXT NOT NULL,
    tx TEXT NOT NULL,
    args TEXT NOT NULL,
    PRIMARY KEY (block, log_index)
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id);
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    model_id TEXT NOT NULL,
    model TEXT NOT NULL,
    n INTEGER NOT NULL,
    fee TEXT NOT NULL,
    status TEXT NOT NULL,
    submit_block INTEGER NOT NULL,
    commit_deadline INTEGER,
    reveal_deadline INTEGER,
    commits INTEGER NOT NULL DEFAULT 0,
    reveals INTEGER NOT NULL DEFAULT 0,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Database:
    """A locked SQLite connection with the gateway's schema."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.RLock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE .. COMMIT (ROLLBACK on error), holding the lock: check-then-write is atomic."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        with self._lock:
            return self._conn.execute(sql, args).fetchone()

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> None:
        with self._lock:
            self._conn.execute(sql, args)

    def get_meta(self, name: str, default: str | None = None) -> str | None:
        row = self.one("SELECT value FROM meta WHERE name = ?", (name,))
        return default if row is None else str(row["value"])

    def set_meta(self, name: str, value: str) -> None:
        self.execute("INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = ?",
                     (name, value, value))  # fmt: skip
