"""AQ-SGD's quantizer and delta memory (veriml.training.aqsgd)."""

from __future__ import annotations

import pytest
import torch

from veriml.training.aqsgd import dequantize, pack, quantize, receive, send, unpack


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("n", [1, 7, 8, 13, 64])
def test_pack_round_trip_and_size(bits, n):
    g = torch.Generator().manual_seed(bits * 100 + n)
    codes = torch.randint(0, 1 << bits, (n,), generator=g)
    packed = pack(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == (n * bits + 7) // 8
    assert torch.equal(unpack(packed, bits, n), codes)


def test_pack_layout_low_bits_first():
    assert pack(torch.tensor([1, 2, 3, 0]), 2).tolist() == [0b00111001]


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_quantize_error_bound_and_bytes(bits):
    x = torch.randn(4, 16, 32, generator=torch.Generator().manual_seed(bits))
    q = quantize(x, bits)
    y = dequantize(q)
    scale = x.abs().amax(dim=(0, 1), keepdim=True)
    step = scale / (1 << (bits - 1))
    # round to nearest: half a step, except the top code, clipped one step below +scale
    assert ((x - y).abs() <= step * 1.001 + 1e-6).all()
    inner = x < scale * (1 - 1 / (1 << (bits - 1)))
    assert ((x - y).abs()[inner] <= (step / 2 * 1.001 + 1e-6).expand_as(x)[inner]).all()
    assert q.scale.dtype == torch.float16 and q.scale.shape == (1, 1, 32)
    assert q.nbytes == (x.numel() * bits + 7) // 8 + 32 * 2


def test_quantize_exact_on_the_grid_and_zero_channels():
    x = torch.tensor([[-1.0, 0.0], [0.5, 0.0], [-0.5, 0.0]])  # 2 bits: levels -2..1 of scale / 2
    y = dequantize(quantize(x, 2))
    assert torch.equal(y, x)


def test_delta_memory_converges_and_both_sides_agree():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 64, generator=g)
    msg, ms = send(None, a, 2)
    mr = receive(None, msg)
    assert msg.raw is not None and msg.nbytes == a.numel() * 2 and torch.equal(ms, mr)
    errs = []
    for _ in range(4):  # the same activation again: each round quantizes the remaining error
        msg, ms = send(ms, a, 2)
        mr = receive(mr, msg)
        assert torch.equal(ms, mr) and ms.dtype == torch.float16
        errs.append(float((mr.float() - a).abs().max()))
    assert errs == sorted(errs, reverse=True) and errs[-1] < 0.02
    assert msg.nbytes == (a.numel() * 2 + 7) // 8 + 64 * 2


def test_delta_beats_direct_quantization_on_a_slowly_moving_activation():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(16, 128, generator=g)
    msg, ms = send(None, a, 2)
    mr = receive(None, msg)
    for _ in range(5):
        a = a + 0.01 * torch.randn(a.shape, generator=g)  # a sample's activation drifts a little each epoch
        msg, ms = send(ms, a, 2)
        mr = receive(mr, msg)
    direct = dequantize(quantize(a, 2))
    assert (mr.float() - a).abs().mean() < 0.2 * (direct - a).abs().mean()


def test_receive_refuses_a_delta_without_memory():
    a = torch.randn(2, 4)
    msg, _ = send(a.half(), a, 4)
    with pytest.raises(ValueError):
        receive(None, msg)


def test_delta_memory_per_sample_and_bytes():
    from veriml.training.aqsgd import DeltaMemory

    g = torch.Generator().manual_seed(2)
    acts = {s: torch.randn(4, 32, generator=g) for s in (3, 7)}
    tx, rx = DeltaMemory(4), DeltaMemory(4)
    for epoch in range(3):
        for s, a in acts.items():
            out = rx.receive(s, tx.send(s, a + 0.01 * epoch))
            assert torch.equal(out, tx.m[s])
    raw, delta = 4 * 32 * 2, (4 * 32 * 4 + 7) // 8 + 32 * 2
    assert tx.bytes_moved == rx.bytes_moved == 2 * raw + 4 * delta
    with pytest.raises(ValueError):
        DeltaMemory(1)
