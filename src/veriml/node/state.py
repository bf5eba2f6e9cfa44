"""A node's memory, in SQLite, so that a restarted node resumes its open jobs.

The salt and digest of a commitment are written before the commit transaction is sent: a node that
crashes between the two can still reveal what it committed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# A job's phase, from the node's point of view.
SEEN = "seen"  # submitted for a model we serve; not yet assigned
ASSIGNED = "assigned"  # we were drawn; nothing sent yet
COMMITTED = "committed"  # commit sent; waiting for the reveal phase
REVEALED = "revealed"  # reveal sent; waiting for settlement
DONE = "done"  # settled, or nothing more for us to do
OPEN_PHASES = (SEEN, ASSIGNED, COMMITTED, REVEALED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    job_id INTEGER PRIMARY KEY,
    phase TEXT NOT NULL,
    digest BLOB,
    salt BLOB,
    output_key TEXT,
    outcome TEXT,
    updated REAL NOT NULL
);
"""


@dataclass(frozen=True)
class JobRecord:
    job_id: int
    phase: str
    digest: bytes | None
    salt: bytes | None
    output_key: str | None
    outcome: str | None


class NodeState:
    """SQLite-backed job table and event cursor; `:memory:` for throwaway nodes."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    # ---- cursor ----
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @property
    def last_block(self) -> int:
        """The last block whose events this node has processed (-1 before the first)."""
        return int(self.get_meta("last_block", "-1"))  # type: ignore[arg-type]

    @last_block.setter
    def last_block(self, block: int) -> None:
        self.set_meta("last_block", str(block))

    # ---- jobs ----
    def add(self, job_id: int, phase: str = SEEN) -> bool:
        """Start tracking a job; False if it was already known."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO jobs (job_id, phase, updated) VALUES (?, ?, ?)",
                (job_id, phase, time.time()),
            )
            return cur.rowcount == 1

    def update(self, job_id: int, **fields: object) -> None:
        allowed = {"phase", "digest", "salt", "output_key", "outcome"}
        if not fields or set(fields) - allowed:
            raise ValueError(f"can only update {sorted(allowed)}, got {sorted(fields)}")
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._lock:
            self._db.execute(
                f"UPDATE jobs SET {cols}, updated = ? WHERE job_id = ?",
                (*fields.values(), time.time(), job_id),
            )

    def get(self, job_id: int) -> JobRecord | None:
        row = self._db.execute(
            "SELECT job_id, phase, digest, salt, output_key, outcome FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
        return JobRecord(*row) if row else None

    def open_jobs(self) -> list[JobRecord]:
        marks = ",".join("?" * len(OPEN_PHASES))
        rows = self._db.execute(
            "SELECT job_id, phase, digest, salt, output_key, outcome FROM jobs "
            f"WHERE phase IN ({marks}) ORDER BY job_id",
            OPEN_PHASES,
        ).fetchall()
        return [JobRecord(*r) for r in rows]

    def all_jobs(self) -> list[JobRecord]:
        rows = self._db.execute(
            "SELECT job_id, phase, digest, salt, output_key, outcome FROM jobs ORDER BY job_id"
        ).fetchall()
        return [JobRecord(*r) for r in rows]
