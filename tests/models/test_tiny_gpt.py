"""TinyGPT and `generate`: determinism, seeded sampling, context cropping and the KV cache."""

from __future__ import annotations

import pytest
import torch

from veriml.models.tiny_gpt import GPTConfig, TinyGPT, generate

SMALL = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16)


@pytest.fixture(scope="module")
def model() -> TinyGPT:
    torch.manual_seed(0)
    return TinyGPT(SMALL).eval()


def test_default_config_is_tiny() -> None:
    assert 1_000_000 <= TinyGPT(GPTConfig()).num_params() <= 3_000_000


def test_config_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=30, n_head=4)
    with pytest.raises(ValueError, match="positive"):
        GPTConfig(n_layer=0)


def test_greedy_is_deterministic(model: TinyGPT) -> None:
    a = generate(model, b"hello", 12)
    assert a == generate(model, b"hello", 12)
    assert len(a) == 12 and all(0 <= t < 256 for t in a)
    assert generate(model, b"hello", 0) == []


def test_seeded_sampling_is_reproducible_and_seed_dependent(model: TinyGPT) -> None:
    a = generate(model, b"hello", 20, seed=1)
    assert a == generate(model, b"hello", 20, seed=1)
    assert a != generate(model, b"hello", 20, seed=2)


def test_sampling_leaves_global_rng_alone(model: TinyGPT) -> None:
    state = torch.get_rng_state()
    generate(model, b"hello", 5, seed=3)
    assert torch.equal(state, torch.get_rng_state())


def test_context_is_cropped_to_block_size(model: TinyGPT) -> None:
    long = bytes(range(40, 90))  # 50 bytes > block_size 16
    assert generate(model, long, 10) == generate(model, long[-SMALL.block_size :], 10)
    assert generate(model, long, 10, seed=4) == generate(model, long[-SMALL.block_size :], 10, seed=4)
    # Generation may run past block_size: the window slides.
    assert len(generate(model, b"ab", 3 * SMALL.block_size)) == 3 * SMALL.block_size


def test_kv_cache_matches_full_forward(model: TinyGPT) -> None:
    ids = torch.tensor([list(b"abcdefghij")])
    with torch.inference_mode():
        full, _ = model(ids)
        logits, cache = model(ids[:, :4])
        steps = [logits[:, -1]]
        for i in range(4, ids.size(1)):
            logits, cache = model(ids[:, i : i + 1], cache)
            steps.append(logits[:, -1])
    torch.testing.assert_close(torch.stack(steps, dim=1), full[:, 3:], rtol=1e-5, atol=1e-5)


def test_forward_refuses_too_long_sequences(model: TinyGPT) -> None:
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, SMALL.block_size + 1, dtype=torch.long))


def test_bad_arguments(model: TinyGPT) -> None:
    with pytest.raises(ValueError, match="empty"):
        generate(model, b"", 3)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, b"a", 3, seed=1, temperature=0.0)
