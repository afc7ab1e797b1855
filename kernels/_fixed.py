"""Fixed-point encoding of real numbers in Z_2^64.

A real ``x`` is represented by the ring element ``round(x * 2^f) mod 2^64`` with ``f`` static
fractional bits (default 16, as CrypTen and SecFormer; SecMoE and SPU use 18). Decoding reads
the element as a signed 64-bit integer and divides by ``2^f``.

Range contract: :func:`encode` accepts finite values with ``|x| * 2^f < 2^62`` (``|x| < 2^46``
at ``f = 16``). That bound is the precondition of the dealer-assisted truncation
(``|x| < 2^62`` in the ring), so every encodable value can be truncated exactly. Values outside
it, NaN and infinities raise :class:`FixedPointRangeError` eagerly. Under ``jax.jit`` the values
are tracers and cannot be checked while tracing: :func:`encode` then documents the contract
only, and :func:`encode_checked` returns the encoding together with a boolean ``ok`` flag that
the caller must test (it is computed on device, with no host round trip).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._ring import Ring, check_ring, from_signed, require_x64, to_signed

DEFAULT_FRAC_BITS = 16
#: ``|x| * 2^f`` must stay below this for an encodable value (truncation precondition).
ENCODE_LIMIT_LOG2 = 62


class FixedPointRangeError(ValueError):
    """A value cannot be encoded: non-finite, or outside the representable range."""


def max_abs(frac_bits: int = DEFAULT_FRAC_BITS) -> float:
    """Largest magnitude (exclusive) that :func:`encode` accepts at ``frac_bits``."""
    return float(2.0 ** (ENCODE_LIMIT_LOG2 - frac_bits))


def _check_frac_bits(where: str, frac_bits: int) -> None:
    if not isinstance(frac_bits, int | np.integer) or not 0 <= frac_bits <= 40:
        raise ValueError(f"{where}: frac_bits must be an int in [0, 40], got {frac_bits!r}")


def _encode(x: jax.Array, frac_bits: int) -> Ring:
    scaled = jnp.round(x.astype(jnp.float64) * (2.0**frac_bits))
    return from_signed(scaled.astype(jnp.int64))


def encode(x, frac_bits: int = DEFAULT_FRAC_BITS) -> Ring:
    """Encode reals as fixed-point ring elements.

    Args:
      x: float array (any shape); ints are accepted and converted.
      frac_bits: static number of fractional bits.

    Returns:
      ``uint64`` array of ``x``'s shape: ``round(x * 2^frac_bits) mod 2^64``.

    Raises:
      X64Error: x64 is off.
      FixedPointRangeError: eagerly, for NaN, +-inf or ``|x| >= 2^(62 - frac_bits)``.
      TypeError: complex or boolean input.
    """
    require_x64("encode")
    _check_frac_bits("encode", frac_bits)
    if isinstance(x, jax.core.Tracer):
        return _encode(jnp.asarray(x), frac_bits)
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"encode: expected a real float or int array, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise FixedPointRangeError(f"encode: {bad} non-finite value(s) (NaN or inf) in the input")
    limit = max_abs(frac_bits)
    if arr.size and float(np.max(np.abs(arr))) >= limit:
        raise FixedPointRangeError(
            f"encode: max |x| = {float(np.max(np.abs(arr))):.6g} is outside the fixed-point range "
            f"|x| < 2^{ENCODE_LIMIT_LOG2 - frac_bits} = {limit:.6g} at frac_bits={frac_bits}"
        )
    return _encode(jnp.asarray(arr), frac_bits)


def encode_checked(x: jax.Array, frac_bits: int = DEFAULT_FRAC_BITS) -> tuple[Ring, jax.Array]:
    """Jittable encoding with an on-device validity flag.

    Returns:
      ``(encoded, ok)`` where ``ok`` is a scalar bool: every value finite and in range.
    """
    require_x64("encode_checked")
    _check_frac_bits("encode_checked", frac_bits)
    x = jnp.asarray(x, dtype=jnp.float64)
    ok = jnp.all(jnp.isfinite(x) & (jnp.abs(x) < max_abs(frac_bits)))
    safe = jnp.where(
        jnp.isfinite(x), jnp.clip(x, -max_abs(frac_bits) / 2, max_abs(frac_bits) / 2), 0.0
    )
    return _encode(safe, frac_bits), ok


def decode(x: Ring, frac_bits: int = DEFAULT_FRAC_BITS) -> jax.Array:
    """Decode ring elements to ``float64``: ``signed(x) / 2^frac_bits``."""
    check_ring("decode", x)
    _check_frac_bits("decode", frac_bits)
    return to_signed(x).astype(jnp.float64) / (2.0**frac_bits)
