"""A seeded counter-based random number generator: the n-th draw of a stream is a pure function of
(seed, stream, n), so a verifier can regenerate any one draw of any step without replaying the others.

Each draw is SplitMix64's output function (Steele, Lea and Flood, "Fast splittable pseudorandom number
generators", OOPSLA 2014) applied to `key(seed, stream) + n * GOLDEN`: the same structure as the
counter-based generators of Salmon et al. (Philox/Threefry, SC 2011), simpler and not cryptographic, which
is enough here: the seed is public and the draws only have to be reproducible, not unpredictable. All the
arithmetic is on uint64 (wrapping), so every machine gets the same bits. Float draws take the top 24 bits,
so they are exact float32 values in [0, 1).

Streams are named by `Stream`: init of each tensor, the data order of each epoch, the dropout mask of
each (step, layer); a draw never depends on how many draws another stream made.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_MASK = (1 << 64) - 1


class Stream(IntEnum):
    """What a stream of draws is for; the value enters the key, so streams never overlap."""

    INIT = 1
    DATA_ORDER = 2
    DROPOUT = 3
    VERIFIER = 4  # a PoL verifier's own choice of intervals, from its seed


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function on a uint64 array (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def stream_key(seed: int, stream: Stream, *ids: int) -> np.uint64:
    """The key of one stream: `seed`, the stream kind and its ids (tensor index, epoch, step, layer) mixed."""
    z = np.array([seed & _MASK], dtype=np.uint64)
    for part in (int(stream), *ids):
        z = _mix(z ^ np.array([(part * 0x9E3779B97F4A7C15 + 1) & _MASK], dtype=np.uint64))
    return np.uint64(z[0])


def random_u64(seed: int, stream: Stream, ids: tuple[int, ...], n: int) -> np.ndarray:
    """Draws 0..n-1 of a stream, as uint64."""
    key = stream_key(seed, stream, *ids)
    with np.errstate(over="ignore"):
        return _mix(key + np.arange(n, dtype=np.uint64) * GOLDEN)


def uniform_f32(seed: int, stream: Stream, ids: tuple[int, ...], n: int) -> np.ndarray:
    """Draws 0..n-1 as float32 in [0, 1): the top 24 bits times 2^-24 (exact in float32)."""
    top = (random_u64(seed, stream, ids, n) >> np.uint64(40)).astype(np.float32)
    return top * np.float32(2.0**-24)


def permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    """The data order of one epoch: indices 0..n-1 sorted by their draw (stable, so ties keep index order)."""
    return np.argsort(random_u64(seed, Stream.DATA_ORDER, (epoch,), n), kind="stable").astype(np.int64)
