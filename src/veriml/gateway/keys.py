"""API keys: created once (the secret is shown once), stored as a salted HMAC-SHA256, each with a spend
limit in wei and a rate limit in requests per minute, and its usage (reserved, spent, refunded).

A key reads `vml_<id>_<secret>`: the id finds the row, the secret is checked in constant time against
HMAC-SHA256(salt, secret). Nothing stored lets anyone rebuild a key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass

from veriml.gateway.database import Database
from veriml.gateway.problem import AUTHENTICATION, INSUFFICIENT_QUOTA, RATE_LIMIT, ApiError

PREFIX = "vml"
MAX_RATE = 100_000
MAX_SPEND = 10**30  # wei; a bound so a typo cannot store a number SQLite text sums would choke on


@dataclass(frozen=True)
class KeyInfo:
    """One key's limits and usage (no secret)."""

    id: str
    label: str
    spend_limit: int
    rate_per_min: int
    reserved: int
    spent: int
    refunded: int
    requests: int
    created: float
    revoked: bool

    @property
    def available(self) -> int:
        """Wei this key may still commit to new jobs."""
        return self.spend_limit - self.spent - self.reserved

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "label": self.label,
            "spend_limit_wei": str(self.spend_limit),
            "rate_per_min": self.rate_per_min,
            "reserved_wei": str(self.reserved),
            "spent_wei": str(self.spent),
            "refunded_wei": str(self.refunded),
            "available_wei": str(self.available),
            "requests": self.requests,
            "revoked": self.revoked,
        }


def _digest(salt: bytes, secret: str) -> bytes:
    return hmac.new(salt, secret.encode("utf-8"), hashlib.sha256).digest()


def _info(row: sqlite3.Row) -> KeyInfo:
    return KeyInfo(
        row["id"],
        row["label"],
        int(row["spend_limit"]),
        int(row["rate_per_min"]),
        int(row["reserved"]),
        int(row["spent"]),
        int(row["refunded"]),
        int(row["requests"]),
        float(row["created"]),
        bool(row["revoked"]),
    )


class KeyStore:
    """The keys table of a gateway database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, spend_limit: int, rate_per_min: int, label: str = "") -> tuple[str, KeyInfo]:
        """A new key: (the secret key string, shown only now; its stored record)."""
        if not isinstance(spend_limit, int) or not 0 <= spend_limit <= MAX_SPEND:
            raise ApiError(400, f"spend limit must be 0..{MAX_SPEND} wei, got {spend_limit!r}")
        if not isinstance(rate_per_min, int) or not 1 <= rate_per_min <= MAX_RATE:
            raise ApiError(400, f"rate must be 1..{MAX_RATE} requests per minute, got {rate_per_min!r}")
        key_id, secret, salt = secrets.token_hex(6), secrets.token_hex(24), secrets.token_bytes(16)
        self.db.execute(
            "INSERT INTO keys (id, salt, hash, label, spend_limit, rate_per_min, created) VALUES (?,?,?,?,?,?,?)",
            (key_id, salt, _digest(salt, secret), label, str(spend_limit), rate_per_min, time.time()),
        )
        return f"{PREFIX}_{key_id}_{secret}", self.get(key_id)

    def get(self, key_id: str) -> KeyInfo:
        row = self.db.one("SELECT * FROM keys WHERE id = ?", (key_id,))
        if row is None:
            raise ApiError(404, f"no API key {key_id!r}", "not_found_error", code="unknown_key")
        return _info(row)

    def list(self) -> list[KeyInfo]:
        return [_info(r) for r in self.db.query("SELECT * FROM keys ORDER BY created")]

    def revoke(self, key_id: str) -> None:
        self.get(key_id)
        self.db.execute("UPDATE keys SET revoked = 1 WHERE id = ?", (key_id,))

    def authenticate(self, authorization: str | None) -> KeyInfo:
        """The key a `Bearer vml_..` header names, or a 401."""
        if not authorization:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer vml_...'", AUTHENTICATION,
                           code="missing_api_key")  # fmt: skip
        scheme, _, token = authorization.strip().partition(" ")
        parts = token.strip().split("_")
        if scheme.lower() != "bearer" or len(parts) != 3 or parts[0] != PREFIX:
            raise ApiError(401, "invalid API key format", AUTHENTICATION, code="invalid_api_key")
        row = self.db.one("SELECT * FROM keys WHERE id = ?", (parts[1],))
        # Compare even when the id is unknown, so timing does not tell which ids exist.
        salt, stored = (row["salt"], row["hash"]) if row is not None else (b"\0" * 16, b"\0" * 32)
        ok = hmac.compare_digest(_digest(salt, parts[2]), stored)
        if row is None or not ok:
            raise ApiError(401, "incorrect API key", AUTHENTICATION, code="invalid_api_key")
        if row["revoked"]:
            raise ApiError(401, "this API key was revoked", AUTHENTICATION, code="revoked_api_key")
        return _info(row)


def admit(conn: sqlite3.Connection, key_id: str, fee: int, now: float) -> None:
    """Inside the caller's transaction: refuse (429) a request over the key's rate or spend limit, else
    reserve `fee` against it. The rate counts requests accepted in the last 60 s."""
    row = conn.execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
    info = _info(row)
    recent = conn.execute(
        "SELECT COUNT(*) FROM requests WHERE key_id = ? AND created > ?", (key_id, now - 60.0)
    ).fetchone()[0]
    if recent >= info.rate_per_min:
        raise ApiError(429, f"rate limit reached: {info.rate_per_min} requests per minute for this key", RATE_LIMIT,
                       code="rate_limit_exceeded")  # fmt: skip
    if fee > info.available:
        raise ApiError(
            429,
            f"spend limit reached: this job costs {fee} wei and the key has {max(info.available, 0)} wei left "
            f"of {info.spend_limit}",
            INSUFFICIENT_QUOTA,
            code="insufficient_quota",
        )
    conn.execute(
        "UPDATE keys SET reserved = ?, requests = requests + 1 WHERE id = ?", (str(info.reserved + fee), key_id)
    )


def settle(conn: sqlite3.Connection, key_id: str, reserved: int, paid: int) -> None:
    """Inside the caller's transaction: release a request's reservation and charge what the job cost."""
    row = conn.execute("SELECT reserved, spent, refunded FROM keys WHERE id = ?", (key_id,)).fetchone()
    conn.execute(
        "UPDATE keys SET reserved = ?, spent = ?, refunded = ? WHERE id = ?",
        (
            str(int(row["reserved"]) - reserved),
            str(int(row["spent"]) + paid),
            str(int(row["refunded"]) + reserved - paid),
            key_id,
        ),
    )
