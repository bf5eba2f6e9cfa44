"""Hugging Face loading: local checkpoints only, deterministic greedy runs, clear errors otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from veriml.errors import ConfigError, InvalidPrompt
from veriml.models.hf import HFTextModel, load_hf_causal_lm


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    d = tmp_path_factory.mktemp("gpt2-tiny")
    torch.manual_seed(0)
    cfg = GPT2Config(
        n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=256, bos_token_id=None, eos_token_id=None
    )
    GPT2LMHeadModel(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def hf_model(checkpoint: Path) -> HFTextModel:
    return load_hf_causal_lm(checkpoint)


def test_greedy_runs_are_identical(hf_model: HFTextModel) -> None:
    a = hf_model.run(b"hello", 12)
    assert a == hf_model.run(b"hello", 12)
    assert len(a.tokens) == 12 and a.text == bytes(a.tokens)


def test_greedy_matches_a_full_forward(hf_model: HFTextModel) -> None:
    ids = list(b"hello")
    for _ in range(6):
        with torch.inference_mode():
            ids.append(int(torch.argmax(hf_model.model(input_ids=torch.tensor([ids])).logits[0, -1])))
    assert list(hf_model.run(b"hello", 6).tokens) == ids[5:]


def test_seeded_runs_are_reproducible(hf_model: HFTextModel) -> None:
    assert hf_model.run(b"hello", 10, seed=1) == hf_model.run(b"hello", 10, seed=1)
    assert hf_model.run(b"hello", 10, seed=1) != hf_model.run(b"hello", 10, seed=2)


def test_context_limit(hf_model: HFTextModel) -> None:
    with pytest.raises(InvalidPrompt, match="context"):
        hf_model.run(b"x" * 60, 5)
    with pytest.raises(InvalidPrompt, match="empty"):
        hf_model.run(b"", 5)


@pytest.mark.parametrize("name", ["gpt2", "openai-community/gpt2", "/no/such/dir"])
def test_names_that_are_not_directories_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="not an existing directory"):
        load_hf_causal_lm(name)


def test_directory_without_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no config.json"):
        load_hf_causal_lm(tmp_path)


def test_tokenizerless_checkpoint_must_be_byte_level(tmp_path: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=16, vocab_size=300)).save_pretrained(
        tmp_path
    )
    with pytest.raises(ConfigError, match="byte-level"):
        load_hf_causal_lm(tmp_path)
