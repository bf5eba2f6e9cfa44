"""`veriml submit --scheme optimistic|zk`: what it refuses, before any transaction (the fast tier; the
slow tier, tests/devnet/test_every_scheme.py, runs it against a devnet)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from veriml.cli import app


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scheme", "zk", "--chat", "hi", "--digit", "5"], "--chat cannot be used with --scheme zk"),
        (["--scheme", "optimistic", "--prompt", "hi"], "--prompt cannot be used with --scheme optimistic"),
        (["--scheme", "zk"], "exactly one of --digit"),
        (["--scheme", "zk", "--pixels", "1,2,3"], "64 integers"),
        (["--scheme", "optimistic", "--digit", "5", "--model", "tiny-gpt"], "not an integer model"),
        (["--scheme", "zk", "--digit", "5", "--model", "int-mlp"], "has no zk circuit"),
        (["--scheme", "nonesuch", "--digit", "5"], "unknown scheme 'nonesuch'"),
        (["--prompt", "hi", "--digit", "5"], "inputs of --scheme optimistic or zk"),
    ],
)
def test_bad_combinations_are_refused_clearly(tmp_path, args, message):
    res = CliRunner().invoke(app, ["submit", *args, "--devnet", str(tmp_path)])
    assert res.exit_code == 2
    assert message in " ".join(res.output.split())


def test_without_a_devnet_it_says_how_to_start_one(tmp_path):
    res = CliRunner().invoke(app, ["submit", "--scheme", "optimistic", "--digit", "5", "--devnet", str(tmp_path)])
    assert res.exit_code == 2 and "veriml devnet up" in " ".join(res.output.split())


def test_a_devnet_without_provers_says_so(tmp_path):
    (tmp_path / "devnet.json").write_text(json.dumps({"rpc_url": "http://127.0.0.1:1", "provers": 0}))
    res = CliRunner().invoke(app, ["submit", "--scheme", "zk", "--digit", "5", "--devnet", str(tmp_path)])
    assert res.exit_code == 2 and "runs no zk provers" in " ".join(res.output.split())
