"""Arithmetic in the ring Z_2^64 on ``uint64`` arrays.

Wraparound modulo 2^64 is the defined semantics of every operation here (XLA's unsigned
integer add, subtract and multiply wrap). Signed views (``int64``) are used only where a sign is
meaningful: the arithmetic right shift and comparisons with public values.

``uint64`` needs JAX's x64 mode: without it JAX silently turns ``uint64`` into ``uint32``. Every
public ring function calls :func:`require_x64` first, so a ring computation without x64 fails
loudly instead of computing modulo 2^32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Ring = jax.Array  # uint64, one party's share or a public ring element

RING_BITS = 64
RING_DTYPE = np.dtype(np.uint64)


class X64Error(RuntimeError):
    """Raised when ring code runs while JAX's x64 mode is off."""


def x64_enabled() -> bool:
    """Whether 64-bit types are enabled in the current JAX context."""
    return bool(jax.config.read("jax_enable_x64"))


def require_x64(where: str) -> None:
    """Raise :class:`X64Error` unless x64 is enabled.

    Args:
      where: name of the calling function, used in the message.
    """
    if not x64_enabled():
        raise X64Error(
            f"{where}: ring arithmetic over Z_2^64 needs 64-bit types, but JAX's x64 mode is off "
            "(uint64 would silently become uint32). Wrap the call in `with jax.enable_x64(True):` "
            "or use the secmoe_jax entry points (share, run, reveal, cost), which scope it for you."
        )


def check_ring(where: str, *arrays: jax.Array) -> None:
    """Check that every array is ``uint64`` (after :func:`require_x64`).

    Raises:
      X64Error: x64 is off.
      TypeError: an array is not ``uint64``; the message names ``where``.
    """
    require_x64(where)
    for a in arrays:
        dtype = getattr(a, "dtype", None)
        if dtype != RING_DTYPE:
            raise TypeError(
                f"{where}: expected uint64 ring shares, got {dtype} with shape "
                f"{getattr(a, 'shape', None)}; encode floats with kernels.encode first"
            )


def add(x: Ring, y: Ring) -> Ring:
    """``x + y mod 2^64``."""
    return lax.add(x, y)


def sub(x: Ring, y: Ring) -> Ring:
    """``x - y mod 2^64``."""
    return lax.sub(x, y)


def neg(x: Ring) -> Ring:
    """``-x mod 2^64``."""
    return lax.sub(jnp.zeros_like(x), x)


def mul(x: Ring, y: Ring) -> Ring:
    """``x * y mod 2^64`` elementwise (broadcasting)."""
    x, y = jnp.broadcast_arrays(x, y)
    return lax.mul(x, y)


def to_signed(x: Ring) -> jax.Array:
    """Reinterpret ring elements as ``int64`` (two's complement), bit for bit."""
    return lax.bitcast_convert_type(x, jnp.int64)


def from_signed(x: jax.Array) -> Ring:
    """Reinterpret ``int64`` values as ring elements, bit for bit."""
    return lax.bitcast_convert_type(x.astype(jnp.int64), jnp.uint64)


def sar(x: Ring, shift: int) -> Ring:
    """Arithmetic right shift by a static amount: ``floor(signed(x) / 2^shift)``.

    ``jnp.right_shift`` on ``uint64`` is a logical shift; the sign is kept by going through the
    ``int64`` view.
    """
    if not 0 <= shift < RING_BITS:
        raise ValueError(f"sar: shift must be in [0, 64), got {shift}")
    return from_signed(lax.shift_right_arithmetic(to_signed(x), jnp.int64(shift)))


def shr(x: Ring, shift: int) -> Ring:
    """Logical right shift by a static amount (``uint64``)."""
    if not 0 <= shift < RING_BITS:
        raise ValueError(f"shr: shift must be in [0, 64), got {shift}")
    return lax.shift_right_logical(x, jnp.uint64(shift))


def shl(x: Ring, shift: int) -> Ring:
    """Left shift by a static amount, ``x * 2^shift mod 2^64``."""
    if not 0 <= shift < RING_BITS:
        raise ValueError(f"shl: shift must be in [0, 64), got {shift}")
    return lax.shift_left(x, jnp.uint64(shift))


def msb(x: Ring) -> Ring:
    """Most significant bit of each element, as ``uint64`` 0 or 1."""
    return lax.shift_right_logical(x, jnp.uint64(RING_BITS - 1))


def ring_const(value: int, shape=()) -> Ring:
    """A public ring constant ``value mod 2^64`` (Python int, may be negative)."""
    return jnp.full(shape, np.uint64(int(value) % (1 << RING_BITS)), dtype=jnp.uint64)
