"""`veriml schedule` prints a placement and its cost."""

from __future__ import annotations

from typer.testing import CliRunner

from veriml.cli import app


def test_schedule_prints_the_placement_and_cost():
    r = CliRunner().invoke(app, ["schedule", "--scenario", "universities", "--time", "0.5", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "case2_universities" in r.output and "cost" in r.output and "data-parallel" in r.output
    assert "Ohio" in r.output and "Virginia" in r.output


def test_schedule_refuses_an_unknown_scenario():
    r = CliRunner().invoke(app, ["schedule", "--scenario", "no-such", "--time", "0.1"])
    assert r.exit_code == 2
