"""A node's memory, in SQLite, so that a restarted node resumes every open job of every role.

One database per node; each scheme's role sees its own slice (`NodeState.scope(scheme)`): an event
cursor and a job table keyed by (scheme, job id). The salt and digest of a commitment are written before
the commit transaction is sent, so a node that crashes between the two can still reveal what it
committed; roles keep anything else they must not forget in a job's `data` (a small JSON object).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# A job's phase, from the node's point of view. Roles may use their own names; only DONE closes a job.
SEEN = "seen"  # submitted for a model we serve; not yet assigned (or not yet acted on)
ASSIGNED = "assigned"  # we were drawn; nothing sent yet
COMMITTED = "committed"  # commit sent; waiting for the reveal phase
REVEALED = "revealed"  # reveal sent; waiting for settlement
DONE = "done"  # settled, or nothing more for us to do

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    scheme TEXT NOT NULL,
    job_id INTEGER NOT NULL,
    phase TEXT NOT NULL,
    digest BLOB,
    salt BLOB,
    output_key TEXT,
    outcome TEXT,
    data TEXT NOT NULL DEFAULT '{}',
    updated REAL NOT NULL,
    PRIMARY KEY (scheme, job_id)
);
"""
_COLUMNS = "job_id, phase, digest, salt, output_key, outcome, data"
_UPDATABLE = {"phase", "digest", "salt", "output_key", "outcome", "data"}


@dataclass(frozen=True)
class JobRecord:
    job_id: int
    phase: str
    digest: bytes | None
    salt: bytes | None
    output_key: str | None
    outcome: str | None
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def _from_row(cls, row: tuple) -> JobRecord:
        return cls(*row[:6], json.loads(row[6]))


class NodeState:
    """SQLite-backed job tables and event cursors of one node; `:memory:` for throwaway nodes."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        # WAL without an fsync per commit: a crash may lose the last cursor move, which only means scanning
        # a few blocks of events again; the database itself stays consistent.
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def scope(self, scheme: str) -> SchemeState:
        """The slice of this state one scheme's role reads and writes."""
        return SchemeState(self, scheme)

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _execute(self, sql: str, args: tuple) -> sqlite3.Cursor:
        with self._lock:
            return self._db.execute(sql, args)

    def _rows(self, sql: str, args: tuple) -> list[tuple]:
        return self._db.execute(sql, args).fetchall()


class SchemeState:
    """One scheme's event cursor and jobs inside a node's `NodeState`."""

    def __init__(self, store: NodeState, scheme: str) -> None:
        self.store = store
        self.scheme = scheme

    @property
    def last_block(self) -> int:
        """The last block whose events this role has processed (-1 before the first)."""
        return int(self.store.get_meta(f"last_block:{self.scheme}", "-1"))  # type: ignore[arg-type]

    @last_block.setter
    def last_block(self, block: int) -> None:
        if block != self.last_block:
            self.store.set_meta(f"last_block:{self.scheme}", str(block))

    def add(self, job_id: int, phase: str = SEEN) -> bool:
        """Start tracking a job; False if it was already known."""
        cur = self.store._execute(
            "INSERT OR IGNORE INTO jobs (scheme, job_id, phase, updated) VALUES (?, ?, ?, ?)",
            (self.scheme, job_id, phase, time.time()),
        )
        return cur.rowcount == 1

    def update(self, job_id: int, **fields: object) -> None:
        if not fields or set(fields) - _UPDATABLE:
            raise ValueError(f"can only update {sorted(_UPDATABLE)}, got {sorted(fields)}")
        if "data" in fields:
            fields["data"] = json.dumps(fields["data"], sort_keys=True)
        cols = ", ".join(f"{k} = ?" for k in fields)
        self.store._execute(
            f"UPDATE jobs SET {cols}, updated = ? WHERE scheme = ? AND job_id = ?",
            (*fields.values(), time.time(), self.scheme, job_id),
        )

    def merge_data(self, job_id: int, **values: Any) -> None:
        """Add keys to a job's `data`."""
        rec = self.get(job_id)
        if rec is None:
            raise KeyError(job_id)
        self.update(job_id, data={**rec.data, **values})

    def close_job(self, job_id: int, outcome: str) -> None:
        self.update(job_id, phase=DONE, outcome=outcome)

    def get(self, job_id: int) -> JobRecord | None:
        rows = self.store._rows(f"SELECT {_COLUMNS} FROM jobs WHERE scheme = ? AND job_id = ?", (self.scheme, job_id))
        return JobRecord._from_row(rows[0]) if rows else None

    def open_jobs(self) -> list[JobRecord]:
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE scheme = ? AND phase != ? ORDER BY job_id"
        return [JobRecord._from_row(r) for r in self.store._rows(sql, (self.scheme, DONE))]

    def all_jobs(self) -> list[JobRecord]:
        sql = f"SELECT {_COLUMNS} FROM jobs WHERE scheme = ? ORDER BY job_id"
        return [JobRecord._from_row(r) for r in self.store._rows(sql, (self.scheme, ))]

    def outcomes(self) -> dict[int, str | None]:
        return {r.job_id: r.outcome for r in self.all_jobs()}
