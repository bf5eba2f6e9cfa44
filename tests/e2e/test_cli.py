"""The `veriml` command line: a local submit prints a verified report; bad flags exit 2 with a reason."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from veriml.cli import app

runner = CliRunner()


def test_submit_local_prints_verified_json():
    res = runner.invoke(
        app,
        [
            "submit",
            "--local",
            "--prompt",
            "The for statement",
            "--quorum",
            "3",
            "--max-new-tokens",
            "12",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["status"] == "verified" and len(data["agree"]) == 3 and data["output"]


def test_submit_rejects_an_even_quorum():
    res = runner.invoke(app, ["submit", "--local", "--prompt", "hi", "--quorum", "4"])
    assert res.exit_code == 2
    assert "quorum must be odd" in res.output


def test_submit_without_a_devnet_says_how_to_start_one(tmp_path):
    res = runner.invoke(app, ["submit", "--prompt", "hi", "--devnet", str(tmp_path)])
    assert res.exit_code == 2
    assert "veriml devnet up" in res.output


def test_models_lists_the_shipped_model():
    res = runner.invoke(app, ["models"])
    assert res.exit_code == 0 and "tiny-gpt" in res.output


def test_submit_local_image_saves_the_verified_png(tmp_path):
    out = tmp_path / "star.png"
    res = runner.invoke(app, ["submit", "--local", "--image", "star", "--seed", "3", "--out", str(out), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["status"] == "verified"
    assert out.read_bytes().startswith(b"\x89PNG")


def test_submit_needs_exactly_one_of_prompt_or_image():
    for args in ([], ["--prompt", "hi", "--image", "star"]):
        res = runner.invoke(app, ["submit", "--local", *args])
        assert res.exit_code == 2 and "exactly one of --prompt" in res.output
