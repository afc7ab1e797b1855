"""Bit-plane packing of ``uint64`` words for boolean circuits (pure, jittable, no communication).

Boolean protocols (comparison, B2A) work on *bit planes*: for ``n`` elements, plane ``j`` is an
array of ``W = ceil(n / 64)`` words whose word ``w`` holds bit ``j`` of elements
``64 w .. 64 w + 63`` (element ``64 w + k`` at bit ``k``). One AND gate of the circuit is then one
word operation for 64 elements, and one opened word carries 64 masked bits.

Elements beyond ``n`` in the last word of a plane (the padding bits) are zero after
:func:`to_planes` / :func:`pack_bits`; protocols must mask the whole word anyway (an opened word
has to be uniform, padding included).

The plane transpose is the recursive 64x64 bit-matrix transpose (six stages of masked
shift-and-swap, Hacker's Delight section 7-3), vectorised over all 64-element blocks: about
6 x 8 word operations per element instead of 64 x 4 for a shift-and-sum per bit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._ring import RING_BITS, Ring, check_ring, require_x64

WORD_BITS = RING_BITS  # 64 elements per packed word

#: ``(shift, mask)`` of the six transpose stages; the mask selects the bit positions ``p`` with
#: ``p & shift == 0`` (the low half of every ``2 * shift``-bit block).
_STAGES = (
    (32, 0x00000000FFFFFFFF),
    (16, 0x0000FFFF0000FFFF),
    (8, 0x00FF00FF00FF00FF),
    (4, 0x0F0F0F0F0F0F0F0F),
    (2, 0x3333333333333333),
    (1, 0x5555555555555555),
)

ALL_ONES = np.uint64(0xFFFFFFFFFFFFFFFF)


def num_words(n: int) -> int:
    """Words per bit plane of ``n`` elements: ``ceil(n / 64)``."""
    if n < 0:
        raise ValueError(f"num_words: n must be >= 0, got {n}")
    return -(-int(n) // WORD_BITS)


def transpose64(a: Ring) -> Ring:
    """Transpose 64x64 bit matrices: ``out[..., j]`` bit ``k`` = ``a[..., k]`` bit ``j``.

    Args:
      a: ``uint64[..., 64]``; each trailing row of 64 words is one bit matrix (word ``k`` = row
        ``k``, bit ``j`` of it = column ``j``).

    Returns:
      ``uint64[..., 64]``, every matrix transposed. The transpose is an involution.
    """
    check_ring("transpose64", a)
    if a.ndim < 1 or a.shape[-1] != WORD_BITS:
        raise ValueError(f"transpose64: expected a trailing axis of 64 words, got {a.shape}")
    lead = a.shape[:-1]
    for shift, mask in _STAGES:
        blocks = a.reshape(*lead, WORD_BITS // (2 * shift), 2, shift)
        lo, hi = blocks[..., 0, :], blocks[..., 1, :]
        s = jnp.uint64(shift)
        t = ((lo >> s) ^ hi) & jnp.uint64(mask)
        a = jnp.stack([lo ^ (t << s), hi ^ t], axis=-2).reshape(*lead, WORD_BITS)
    return a


def _pad_last(x: jax.Array, size: int) -> jax.Array:
    pad = size - x.shape[-1]
    if pad == 0:
        return x
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, pad)])


def to_planes(x: Ring, nbits: int = RING_BITS) -> Ring:
    """Bit planes of ring elements: plane ``j`` packs bit ``j`` of every element.

    Args:
      x: ``uint64[..., n]``.
      nbits: static number of low bit planes to return, in ``[1, 64]``.

    Returns:
      ``uint64[..., nbits, W]`` with ``W = ceil(n / 64)``; word ``w`` of plane ``j`` holds bit
      ``j`` of elements ``64 w + k`` at bit ``k``; padding bits are zero.
    """
    check_ring("to_planes", x)
    if not 1 <= nbits <= RING_BITS:
        raise ValueError(f"to_planes: nbits must be in [1, 64], got {nbits}")
    if x.ndim < 1:
        raise ValueError("to_planes: expected at least one axis of elements, got a scalar")
    n = x.shape[-1]
    w = num_words(n)
    blocks = _pad_last(x, w * WORD_BITS).reshape(*x.shape[:-1], w, WORD_BITS)
    planes = jnp.swapaxes(transpose64(blocks), -1, -2)  # [..., 64, W]
    return planes[..., :nbits, :]


def from_planes(planes: Ring, n: int) -> Ring:
    """Inverse of :func:`to_planes`: ring elements from their low bit planes.

    Args:
      planes: ``uint64[..., nbits, W]`` with ``nbits <= 64`` (missing high planes are zero).
      n: static number of elements, ``64 (W - 1) < n <= 64 W``.

    Returns:
      ``uint64[..., n]``.
    """
    check_ring("from_planes", planes)
    if planes.ndim < 2 or not 1 <= planes.shape[-2] <= RING_BITS:
        raise ValueError(f"from_planes: expected [..., nbits <= 64, W] planes, got {planes.shape}")
    w = planes.shape[-1]
    if num_words(n) != w:
        raise ValueError(f"from_planes: n={n} elements do not fit W={w} words exactly")
    nbits = planes.shape[-2]
    if nbits < RING_BITS:
        pad = [(0, 0)] * (planes.ndim - 2) + [(0, RING_BITS - nbits), (0, 0)]
        planes = jnp.pad(planes, pad)
    rows = transpose64(jnp.swapaxes(planes, -1, -2))  # [..., W, 64]
    return rows.reshape(*planes.shape[:-2], w * WORD_BITS)[..., :n]


def pack_bits(bits: jax.Array) -> Ring:
    """Pack bits (``bool`` or integer 0/1) into words: bit ``k`` of word ``w`` = ``bits[64w+k]``.

    Args:
      bits: ``bool`` or integer ``[..., n]``; for integers only the lowest bit is used.

    Returns:
      ``uint64[..., W]``, padding bits zero.
    """
    require_x64("pack_bits")
    bits = jnp.asarray(bits)
    if not (bits.dtype == jnp.bool_ or jnp.issubdtype(bits.dtype, jnp.integer)):
        raise TypeError(f"pack_bits: expected bool or integer 0/1 bits, got {bits.dtype}")
    if bits.ndim < 1:
        raise ValueError("pack_bits: expected at least one axis of bits, got a scalar")
    n = bits.shape[-1]
    w = num_words(n)
    b = _pad_last(bits.astype(jnp.uint64) & jnp.uint64(1), w * WORD_BITS)
    b = b.reshape(*bits.shape[:-1], w, WORD_BITS)
    return jnp.sum(b << jnp.arange(WORD_BITS, dtype=jnp.uint64), axis=-1, dtype=jnp.uint64)


def unpack_bits(words: Ring, n: int) -> Ring:
    """Unpack words into ``uint64`` 0/1 values: inverse of :func:`pack_bits`.

    Args:
      words: ``uint64[..., W]``.
      n: static number of bits to keep, ``n <= 64 W``.

    Returns:
      ``uint64[..., n]`` of 0/1.
    """
    check_ring("unpack_bits", words)
    if words.ndim < 1 or not 0 <= n <= words.shape[-1] * WORD_BITS:
        raise ValueError(f"unpack_bits: cannot take n={n} bits from words of shape {words.shape}")
    bits = (words[..., None] >> jnp.arange(WORD_BITS, dtype=jnp.uint64)) & jnp.uint64(1)
    return bits.reshape(*words.shape[:-1], words.shape[-1] * WORD_BITS)[..., :n]


def xor_reduce(x: Ring, axis: int = 0) -> Ring:
    """XOR of ``x`` along ``axis`` (the boolean analogue of ``sum``)."""
    check_ring("xor_reduce", x)
    return jax.lax.reduce(x, np.uint64(0), jax.lax.bitwise_xor, (axis % x.ndim,))
