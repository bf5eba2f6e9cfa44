"""Perceptual hashes of images, and the digests the `phash` policy commits to.

After Block Entropy, "Proof by a Billion Hashes": honest nodes whose floats differ in the last bits draw
pictures that look the same, so they are compared by a 64-bit perceptual hash within a Hamming threshold.
Three hashes, computed by `imagehash` on the decoded picture:

- `ahash` (average): 8x8 grey thumbnail, a bit per pixel brighter than the mean;
- `dhash` (difference): 9x8 grey thumbnail, a bit per pixel brighter than its left neighbour;
- `phash` (DCT): 32x32 grey thumbnail, a bit per low-frequency 8x8 DCT coefficient above their median.

A digest is 32 bytes: the 64-bit hash in the LOW 8 bytes, which is all `OutputMatching.matches` reads (the
popcount of their XOR), and in the top 24 bytes a keccak of the exact PNG, so the agreed digest also names
the centre node's very bytes. Pure: bytes and arrays in, integers and digests out.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import imagehash
import numpy as np
from eth_hash.auto import keccak
from PIL import Image

from veriml.types import Digest
from veriml.verify.digest import hamming64, low64

HASHES = ("ahash", "dhash", "phash")
DEFAULT_HASH = "phash"
MAX_SIDE = 4096  # a node's PNG is untrusted: refuse pictures whose decoding could exhaust memory

_FUNCS = {"ahash": imagehash.average_hash, "dhash": imagehash.dhash, "phash": imagehash.phash}


def open_image(data: bytes) -> Image.Image:
    """Decode PNG (or any Pillow-readable) bytes into an RGB picture; ValueError if they are not one."""
    try:
        img = Image.open(io.BytesIO(data))
        if max(img.size) > MAX_SIDE:
            raise ValueError(f"picture is {img.size[0]}x{img.size[1]}; at most {MAX_SIDE} per side")
        return img.convert("RGB")
    except (OSError, Image.DecompressionBombError) as e:
        raise ValueError(f"not a readable picture: {e}") from None


def _as_image(image: Image.Image | np.ndarray | bytes) -> Image.Image:
    if isinstance(image, (bytes, bytearray, memoryview)):
        return open_image(bytes(image))
    if isinstance(image, np.ndarray):
        return Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return image


def image_hash(image: Image.Image | np.ndarray | bytes, kind: str = DEFAULT_HASH) -> int:
    """The 64-bit perceptual hash `kind` of a picture (PIL image, (h, w, 3) uint8 array or encoded bytes)."""
    if kind not in _FUNCS:
        raise ValueError(f"unknown perceptual hash {kind!r}; one of {', '.join(HASHES)}")
    bits = _FUNCS[kind](_as_image(image)).hash  # 8x8 booleans, row-major
    return int.from_bytes(np.packbits(bits.reshape(-1)).tobytes(), "big")


def hashes(images: Sequence[np.ndarray] | np.ndarray, kind: str = DEFAULT_HASH) -> np.ndarray:
    """`image_hash` of every picture, as a uint64 array (for vectorised distances)."""
    return np.array([image_hash(im, kind) for im in images], dtype=np.uint64)


def hamming(a: int, b: int) -> int:
    """Bits that differ between two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Element-wise Hamming distances of two uint64 arrays (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.uint64), np.asarray(b, np.uint64))).astype(np.int64)


def phash_digest(png: bytes, kind: str = DEFAULT_HASH) -> Digest:
    """The `phash` policy's digest of a picture: keccak tag of the exact bytes (24) || 64-bit hash (8)."""
    tag = keccak(b"veriml/phash\x00" + kind.encode() + b"\x00" + png)[:24]
    return Digest(tag + image_hash(png, kind).to_bytes(8, "big"))


def hash_of(digest: Digest) -> int:
    """The perceptual hash a `phash` digest carries (its low 64 bits)."""
    return low64(digest)


def digests_within(a: Digest, b: Digest, threshold: int) -> bool:
    """Whether two `phash` digests match: at most `threshold` of their low 64 bits differ."""
    return hamming64(a, b) <= threshold
