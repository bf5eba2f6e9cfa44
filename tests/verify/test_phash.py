"""Perceptual hashes and `phash` digests: what the low 64 bits carry, and how they are compared."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from veriml.verify.digest import digests_match, hamming64
from veriml.verify.phash import (
    HASHES,
    MAX_SIDE,
    digests_within,
    distances,
    hamming,
    hash_of,
    hashes,
    image_hash,
    open_image,
    phash_digest,
)


def picture(seed: int, size: int = 64) -> np.ndarray:
    """A smooth random picture: a few blurred blobs, so the hashes have structure to see."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((size, size), Image.BICUBIC))


def png(pixels: np.ndarray, **kw) -> bytes:  # noqa: ANN003
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", **kw)
    return buf.getvalue()


@pytest.mark.parametrize("kind", HASHES)
def test_a_hash_is_64_bits_and_the_same_from_pixels_bytes_or_pil(kind: str) -> None:
    px = picture(1)
    h = image_hash(px, kind)
    assert 0 <= h < 2**64
    assert image_hash(png(px), kind) == h == image_hash(Image.fromarray(px), kind)
    assert hashes([px, picture(2)], kind).dtype == np.uint64


@pytest.mark.parametrize("kind", HASHES)
def test_unrelated_pictures_are_far_apart_and_a_one_level_change_is_not(kind: str) -> None:
    a, b = picture(1), picture(2)
    nudged = np.clip(a.astype(np.int16) + 1, 0, 255).astype(np.uint8)
    assert hamming(image_hash(a, kind), image_hash(b, kind)) > 8
    assert hamming(image_hash(a, kind), image_hash(nudged, kind)) <= 2


def test_the_digest_carries_the_hash_in_its_low_8_bytes_and_a_tag_of_the_exact_bytes_above() -> None:
    px = picture(3)
    a, b = png(px, compress_level=1), png(px, compress_level=9)
    assert a != b
    da, db = phash_digest(a, "ahash"), phash_digest(b, "ahash")
    assert len(da) == 32 and da[-8:] == image_hash(px, "ahash").to_bytes(8, "big")
    assert hash_of(da) == hash_of(db) and da[:24] != db[:24]  # same picture, different bytes
    assert digests_within(da, db, 0) and digests_match("phash", 0, da, db)
    assert not digests_match("exact", 0, da, db)  # equality policies see the tag
    assert phash_digest(a, "ahash") != phash_digest(a, "dhash")


def test_matching_is_the_contracts_rule_popcount_of_the_xor_of_the_low_64_bits() -> None:
    base = bytes(range(32))
    flip = lambda d, mask: (int.from_bytes(d, "big") ^ mask).to_bytes(32, "big")  # noqa: E731
    four, five, high = flip(base, 0b1111 << 60), flip(base, 0b11111), flip(base, 0xFF << 100)
    assert hamming64(base, four) == 4 and digests_within(base, four, 4) and not digests_within(base, five, 4)
    assert digests_within(base, high, 0)  # bits above the low 64 are ignored


def test_vectorised_distances_agree_with_python() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, 200, dtype=np.uint64) * 2 + rng.integers(0, 2, 200, dtype=np.uint64)
    b = rng.integers(0, 2**63, 200, dtype=np.uint64) * 2
    assert distances(a, b).tolist() == [hamming(int(x), int(y)) for x, y in zip(a, b, strict=True)]
    assert distances(a[:, None], a[None, :]).shape == (200, 200)


def test_untrusted_bytes_are_refused_as_pictures() -> None:
    with pytest.raises(ValueError, match="not a readable picture"):
        open_image(b"\x89PNG\r\n\x1a\nnot really")
    big = png(np.zeros((1, MAX_SIDE + 1, 3), np.uint8))
    with pytest.raises(ValueError, match="at most"):
        open_image(big)
    with pytest.raises(ValueError, match="unknown perceptual hash"):
        image_hash(picture(1), "md5")
