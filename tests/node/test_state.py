"""The node's SQLite state survives a reopen and refuses unknown fields."""

from __future__ import annotations

import pytest

from veriml.node.state import COMMITTED, DONE, SEEN, NodeState


def test_jobs_and_cursor_survive_a_reopen(tmp_path):
    path = tmp_path / "s.sqlite"
    s = NodeState(path)
    assert s.last_block == -1
    assert s.add(7) and not s.add(7)
    s.update(7, phase=COMMITTED, digest=b"d" * 32, salt=b"s" * 32, output_key="ab" * 32)
    s.add(8)
    s.update(8, phase=DONE, outcome="verified")
    s.last_block = 42
    s.close()
    s = NodeState(path)
    assert s.last_block == 42
    rec = s.get(7)
    assert (rec.phase, rec.digest, rec.salt) == (COMMITTED, b"d" * 32, b"s" * 32)
    assert [r.job_id for r in s.open_jobs()] == [7]
    assert s.get(8).outcome == "verified" and s.get(9) is None
    assert [r.job_id for r in s.all_jobs()] == [7, 8]


def test_update_refuses_unknown_columns():
    s = NodeState(":memory:")
    s.add(1, SEEN)
    with pytest.raises(ValueError, match="can only update"):
        s.update(1, updated=2)
