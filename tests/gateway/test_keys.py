"""API keys: hashed storage, authentication, spend and rate limits, usage accounting, the CLI."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from veriml.cli import app
from veriml.gateway import keys
from veriml.gateway.database import Database
from veriml.gateway.keys import KeyStore
from veriml.gateway.problem import ApiError


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "gateway.sqlite")
    yield d
    d.close()


def test_only_a_salted_hmac_is_stored(db, tmp_path):
    store = KeyStore(db)
    secret, info = store.create(10**18, 60, "alice")
    other, _ = store.create(10**18, 60, "bob")
    raw = (tmp_path / "gateway.sqlite").read_bytes() + (tmp_path / "gateway.sqlite-wal").read_bytes()
    for s in (secret, other):
        assert s.split("_")[2].encode() not in raw
    rows = sqlite3.connect(tmp_path / "gateway.sqlite").execute("SELECT salt, hash FROM keys").fetchall()
    assert len({r[0] for r in rows}) == 2 and len({r[1] for r in rows}) == 2  # a salt per key
    assert store.authenticate(f"Bearer {secret}").id == info.id


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Basic abc", "Bearer sk-123", "Bearer vml_x_y_z", "Bearer vml_000000000000_" + "0" * 48],
)
def test_malformed_or_unknown_keys_are_401(db, header):
    KeyStore(db).create(1, 1)
    with pytest.raises(ApiError) as e:
        KeyStore(db).authenticate(header)
    assert e.value.status == 401 and e.value.type == "authentication_error"


def test_a_wrong_secret_for_a_known_id_and_a_revoked_key_are_refused(db):
    store = KeyStore(db)
    secret, info = store.create(10**18, 60)
    with pytest.raises(ApiError, match="incorrect"):
        store.authenticate("Bearer " + secret[:-4] + "0000")
    store.revoke(info.id)
    with pytest.raises(ApiError, match="revoked"):
        store.authenticate("Bearer " + secret)


@pytest.mark.parametrize(("limit", "rate"), [(-1, 1), (1, 0), (1, -3), (10**31, 1), (1, 10**6)])
def test_absurd_limits_are_refused(db, limit, rate):
    with pytest.raises(ApiError) as e:
        KeyStore(db).create(limit, rate)
    assert e.value.status == 400


def _request(conn, key_id, rid, now):
    conn.execute(
        "INSERT INTO requests (id, key_id, kind, payload, state, fee, created, updated) VALUES (?,?,?,?,?,?,?,?)",
        (rid, key_id, "chat", "{}", "queued", "0", now, now),
    )


def test_spend_limit_reserves_then_charges_what_the_job_cost(db):
    store = KeyStore(db)
    _, info = store.create(10 * 10**18, 100)  # above 2**63 wei: stored as text
    with db.transaction() as conn:
        keys.admit(conn, info.id, 6 * 10**18, 0.0)
        _request(conn, info.id, "r1", 0.0)
    with pytest.raises(ApiError) as e, db.transaction() as conn:
        keys.admit(conn, info.id, 5 * 10**18, 1.0)  # 6 reserved + 5 > 10
    assert e.value.status == 429 and e.value.code == "insufficient_quota"
    with db.transaction() as conn:
        keys.settle(conn, info.id, 6 * 10**18, 2 * 10**18)  # the job paid 2, 4 came back
    now = store.get(info.id)
    assert (now.reserved, now.spent, now.refunded, now.available) == (0, 2 * 10**18, 4 * 10**18, 8 * 10**18)
    with db.transaction() as conn:
        keys.admit(conn, info.id, 8 * 10**18, 2.0)  # exactly what is left
    assert store.get(info.id).available == 0


def test_rate_limit_counts_the_last_minute_only(db):
    store = KeyStore(db)
    _, info = store.create(10**18, 2)
    for i, t in enumerate((0.0, 10.0)):
        with db.transaction() as conn:
            keys.admit(conn, info.id, 0, t)
            _request(conn, info.id, f"r{i}", t)
    with pytest.raises(ApiError) as e, db.transaction() as conn:
        keys.admit(conn, info.id, 0, 30.0)
    assert e.value.status == 429 and e.value.code == "rate_limit_exceeded"
    with db.transaction() as conn:
        keys.admit(conn, info.id, 0, 60.5)  # the first request is now more than 60 s old


def test_cli_creates_and_lists_keys(tmp_path):
    runner = CliRunner()
    path = tmp_path / "gw.sqlite"
    out = runner.invoke(app, ["gateway", "key", "create", "--spend-limit", "5000", "--rate", "7", "--db", str(path)])
    assert out.exit_code == 0, out.output
    secret = out.output.strip().splitlines()[-1]
    d = Database(path)
    assert KeyStore(d).authenticate(f"Bearer {secret}").rate_per_min == 7
    d.close()
    listed = runner.invoke(app, ["gateway", "key", "list", "--db", str(path), "--json"])
    assert listed.exit_code == 0
    (row,) = json.loads(listed.output)
    assert row["spend_limit_wei"] == "5000" and row["rate_per_min"] == 7 and secret not in listed.output
    bad = runner.invoke(app, ["gateway", "key", "create", "--spend-limit", "-5", "--db", str(path)])
    assert bad.exit_code == 2 and "spend limit" in bad.output and "Traceback" not in bad.output
