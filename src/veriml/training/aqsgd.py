"""AQ-SGD activation compression, as pure torch functions (Wang et al. 2022, "Fine-tuning Language Models
over Slow Networks using Activation Compression with Guarantees"; code DS3Lab/AC-SGD `compress/`).

The quantizer: a scale per channel (the last dimension), max |x| over the rest, kept in fp16 (rounded up); values
divided by it, multiplied by 2^(b-1), rounded to nearest and clipped to the signed b-bit range
[-2^(b-1), 2^(b-1) - 1]; the codes offset to unsigned and packed b bits each into bytes.

The delta scheme: for each training sample and pipeline boundary, sender and receiver both keep m, the
last activation the receiver reconstructed (fp16). The first time a sample crosses, the activation goes
uncompressed and m = a; after that the sender sends Q(a - m) and both set m <- m + Q(a - m). Since both
sides compute the same update from the same bytes, their m stay bit-identical. Backward gradients are
quantized directly (`quantize`, 8 bits in the paper).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCALE_DTYPE = torch.float16
MEMORY_DTYPE = torch.float16


@dataclass(frozen=True)
class Quantized:
    """A tensor as b-bit codes packed into bytes, with its per-channel fp16 scales."""

    packed: torch.Tensor  # uint8, ceil(numel * bits / 8) bytes
    scale: torch.Tensor  # fp16, one per channel (shape [..., 1, channels] broadcastable to `shape`)
    shape: tuple[int, ...]
    bits: int

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: the packed codes and the scales (the shape and bit width are fixed per boundary)."""
        return int(self.packed.numel() + self.scale.numel() * self.scale.element_size())


@dataclass(frozen=True)
class Message:
    """What crosses a boundary for one sample: the raw fp16 activation the first time, then a quantized delta."""

    raw: torch.Tensor | None = None
    delta: Quantized | None = None

    @property
    def nbytes(self) -> int:
        if self.raw is not None:
            return int(self.raw.numel() * self.raw.element_size())
        assert self.delta is not None
        return self.delta.nbytes


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Unsigned codes < 2^bits (any shape) packed `bits` each into a flat uint8 tensor, low bits first."""
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    flat = codes.reshape(-1).to(torch.int64)
    n = flat.numel()
    shifts = torch.arange(bits, dtype=torch.int64)
    bitstream = ((flat[:, None] >> shifts) & 1).reshape(-1)  # element i's bit j at i * bits + j
    pad = (-bitstream.numel()) % 8
    bitstream = torch.cat([bitstream, bitstream.new_zeros(pad)]).reshape(-1, 8)
    out = (bitstream << torch.arange(8, dtype=torch.int64)).sum(dim=1).to(torch.uint8)
    assert out.numel() == (n * bits + 7) // 8
    return out


def unpack(packed: torch.Tensor, bits: int, n: int) -> torch.Tensor:
    """The first `n` codes of `pack(codes, bits)`, as int64."""
    bitstream = ((packed.to(torch.int64)[:, None] >> torch.arange(8, dtype=torch.int64)) & 1).reshape(-1)
    bitstream = bitstream[: n * bits].reshape(n, bits)
    return (bitstream << torch.arange(bits, dtype=torch.int64)).sum(dim=1)


def quantize(x: torch.Tensor, bits: int) -> Quantized:
    """Per-channel max-scaled, signed b-bit round-to-nearest, packed (2 <= bits <= 8)."""
    if not 2 <= bits <= 8:
        raise ValueError(f"bits must be in 2..8, got {bits}")
    xf = x.float()
    dims = tuple(range(xf.dim() - 1)) if xf.dim() > 1 else (0,)
    top = xf.abs().amax(dim=dims, keepdim=True)
    scale = top.to(SCALE_DTYPE)
    # rounded up, so that no value lies beyond its scale (rounding down would clip the largest ones twice)
    scale = torch.where(scale.float() < top, torch.nextafter(scale, torch.full_like(scale, torch.inf)), scale)
    levels = 1 << (bits - 1)
    s = scale.float()
    safe = torch.where(s > 0, s, torch.ones_like(s))
    q = torch.round(xf / safe * levels).clamp(-levels, levels - 1)
    q = torch.where(s > 0, q, torch.zeros_like(q))
    return Quantized(pack((q + levels).to(torch.int64), bits), scale, tuple(x.shape), bits)


def dequantize(q: Quantized) -> torch.Tensor:
    """The float32 tensor a `Quantized` stands for."""
    levels = 1 << (q.bits - 1)
    n = 1
    for d in q.shape:
        n *= d
    codes = unpack(q.packed, q.bits, n).reshape(q.shape).float() - levels
    return codes / levels * q.scale.float()


def send(m: torch.Tensor | None, a: torch.Tensor, bits: int) -> tuple[Message, torch.Tensor]:
    """The sender's step for one sample: the message and the new memory m (fp16).

    m None (the sample's first crossing): the activation itself in fp16. Otherwise Q(a - m) and m + Q(a - m).
    """
    if m is None:
        raw = a.detach().to(MEMORY_DTYPE)
        return Message(raw=raw), raw.clone()
    q = quantize(a.detach().float() - m.float(), bits)
    return Message(delta=q), _update(m, q)


def receive(m: torch.Tensor | None, msg: Message) -> torch.Tensor:
    """The receiver's step for one sample: the new memory m, which is also the activation it uses."""
    if msg.raw is not None:
        return msg.raw.clone()
    if m is None:
        raise ValueError("a delta for a sample with no memory: the first crossing must be sent raw")
    assert msg.delta is not None
    return _update(m, msg.delta)


def _update(m: torch.Tensor, q: Quantized) -> torch.Tensor:
    return (m.float() + dequantize(q)).to(MEMORY_DTYPE)


class DeltaMemory:
    """One side's m for every sample of one pipeline boundary, keyed by sample id, with the bytes it moved.

    The sender calls `send`, the receiver `receive`, each with its own DeltaMemory; as long as both see
    the same messages in the same order their memories stay equal. (AQ-SGD keeps m on disk; this keeps
    it in memory, fp16, numel * 2 bytes a sample.)
    """

    def __init__(self, bits: int) -> None:
        if not 2 <= bits <= 8:
            raise ValueError(f"bits must be in 2..8, got {bits}")
        self.bits = bits
        self.m: dict[int, torch.Tensor] = {}
        self.bytes_moved = 0

    def send(self, sample: int, a: torch.Tensor) -> Message:
        msg, self.m[sample] = send(self.m.get(sample), a, self.bits)
        self.bytes_moved += msg.nbytes
        return msg

    def receive(self, sample: int, msg: Message) -> torch.Tensor:
        self.m[sample] = receive(self.m.get(sample), msg)
        self.bytes_moved += msg.nbytes
        return self.m[sample]
