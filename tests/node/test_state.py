"""The node's SQLite state survives a reopen, keeps each scheme's slice apart and refuses unknown fields."""

from __future__ import annotations

import pytest

from veriml.node.state import COMMITTED, DONE, SEEN, NodeState


def test_jobs_and_cursor_survive_a_reopen(tmp_path):
    path = tmp_path / "s.sqlite"
    store = NodeState(path)
    s = store.scope("quorum")
    assert s.last_block == -1
    assert s.add(7) and not s.add(7)
    s.update(7, phase=COMMITTED, digest=b"d" * 32, salt=b"s" * 32, output_key="ab" * 32)
    s.add(8)
    s.update(8, phase=DONE, outcome="verified")
    s.merge_data(7, round=3)
    s.last_block = 42
    store.close()
    s = NodeState(path).scope("quorum")
    assert s.last_block == 42
    rec = s.get(7)
    assert (rec.phase, rec.digest, rec.salt, rec.data) == (COMMITTED, b"d" * 32, b"s" * 32, {"round": 3})
    assert [r.job_id for r in s.open_jobs()] == [7]
    assert s.get(8).outcome == "verified" and s.get(9) is None
    assert [r.job_id for r in s.all_jobs()] == [7, 8]
    s.store.close()


def test_each_scheme_has_its_own_jobs_and_cursor(tmp_path):
    store = NodeState(tmp_path / "s.sqlite")
    quorum, zk = store.scope("quorum"), store.scope("zk")
    quorum.add(1)
    zk.add(1, COMMITTED)
    quorum.last_block = 10
    assert zk.last_block == -1
    assert quorum.get(1).phase == SEEN and zk.get(1).phase == COMMITTED
    zk.close_job(1, "verified")
    assert [r.job_id for r in quorum.open_jobs()] == [1] and zk.open_jobs() == []
    store.close()


def test_update_refuses_unknown_columns():
    s = NodeState(":memory:").scope("quorum")
    s.add(1, SEEN)
    with pytest.raises(ValueError, match="can only update"):
        s.update(1, updated=2)
    with pytest.raises(KeyError):
        s.merge_data(2, x=1)
