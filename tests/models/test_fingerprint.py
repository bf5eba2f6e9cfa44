"""Fingerprinted generation and one-prefill validation on SmolLM2: honest accepted, swaps and edits rejected."""

from __future__ import annotations

import os

import pytest

from veriml.errors import InvalidPrompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chat():  # noqa: ANN201 - the runner type needs torch, imported lazily
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from veriml.models.hf_runtime import ChatModel

    return ChatModel.load("smollm2-135m-instruct")


def ask(chat, question: str) -> list[int]:  # noqa: ANN001
    return chat.prompt_ids([{"role": "user", "content": question}])


def test_honest_generation_validates_with_and_without_kv_cache(chat) -> None:  # noqa: ANN001
    from veriml.models.fingerprint import generate, validate

    ids = ask(chat, "Name three colours of the rainbow.")
    g = generate(chat, ids, 40)
    assert len(g.fingerprint) == 258 * -(-len(g.output.tokens) // 32)
    assert validate(chat.model, ids, list(g.output.tokens), g.fingerprint).accepted
    nocache = generate(chat, ids, 40, use_cache=False)
    assert validate(chat.model, ids, list(g.output.tokens), nocache.fingerprint).accepted


def test_other_prompt_edit_and_foreign_fingerprint_rejected(chat) -> None:  # noqa: ANN001
    from veriml.models.fingerprint import generate, validate

    ids = ask(chat, "What is the capital of France? Answer in one sentence.")
    other = ask(chat, "What is the capital of Spain? Answer in one sentence.")
    g = generate(chat, ids, 24)
    tokens = list(g.output.tokens)
    # the right output carried by another run's fingerprint
    foreign = generate(chat, other, 24).fingerprint
    assert not validate(chat.model, ids, tokens, foreign).fingerprint_ok
    # the output claimed for another prompt
    assert not validate(chat.model, other, tokens, g.fingerprint).accepted
    # the final token edited: no hidden state depends on it, the argmax check catches it
    edited = tokens[:-1] + [(tokens[-1] + 1) % 49152]
    v = validate(chat.model, ids, edited, g.fingerprint)
    assert v.fingerprint_ok and not v.tokens_ok and not v.accepted
    # malformed bytes are a rejection, not an exception
    assert not validate(chat.model, ids, tokens, b"\x00\x05").accepted


def test_empty_output_refused(chat) -> None:  # noqa: ANN001
    from veriml.models.fingerprint import validate

    with pytest.raises(InvalidPrompt, match="non-empty"):
        validate(chat.model, ask(chat, "Hi"), [], b"")
