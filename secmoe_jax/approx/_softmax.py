"""Softmax definitions (exact and MPCFormer's 2Quad) and the limit-form exponential."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._common import as_float
from ._iterative import Bound, goldschmidt_reciprocal

#: Valid ``variant`` names for :func:`softmax`.
SOFTMAX_VARIANTS: tuple[str, ...] = ("exact", "2quad")


def _mask(x: jax.Array, where: jax.typing.ArrayLike | None) -> jax.Array:
    if where is None:
        return jnp.ones(x.shape, dtype=bool)
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        raise ValueError(f"softmax: where must be a boolean mask, got dtype {where.dtype}")
    return jnp.broadcast_to(where, x.shape)


def _normalise(q: jax.Array, axis: int) -> jax.Array:
    """``q / sum(q)`` along ``axis``; rows summing to 0 give 0 (gradient-safe)."""
    total = jnp.sum(q, axis=axis, keepdims=True)
    return q / jnp.where(total > 0.0, total, 1.0)


def softmax(
    x: jax.typing.ArrayLike,
    variant: str = "exact",
    *,
    axis: int = -1,
    where: jax.typing.ArrayLike | None = None,
    c: float = 5.0,
) -> jax.Array:
    """Masked softmax, exact or MPCFormer's 2Quad (float).

    * ``"exact"``: ``exp(x - max) / sum exp(x - max)`` over the kept positions (the max is
      taken over kept positions and carries no gradient; softmax is shift-invariant).
    * ``"2quad"``: ``(x + c)^2 / sum (x + c)^2`` over the kept positions, ``c = 5``
      (MPCFormer, SecFormer). Not a softmax approximation; students are distilled to it.

    Masked positions (``where`` False) get exactly 0 in both variants. A row with no kept
    position (or, for 2quad, whose kept squares are all 0) returns all zeros. Jittable,
    differentiable, dtype-preserving.

    Args:
      x: float array of scores, e.g. ``[B, H, T, S]``.
      variant: one of :data:`SOFTMAX_VARIANTS` (static).
      axis: axis to normalise over (static).
      where: optional boolean mask broadcastable to ``x``; True = attend/keep.
      c: the 2Quad shift (static).

    Returns:
      Probabilities shaped and typed like ``x``.

    Raises:
      ValueError: unknown variant (the message lists the valid ones) or a non-boolean mask.

    References:
      Li et al., "MPCFormer", ICLR 2023, arXiv:2211.01452 (2Quad).
    """
    if variant not in SOFTMAX_VARIANTS:
        raise ValueError(
            f"softmax: unknown variant {variant!r}; valid variants are {SOFTMAX_VARIANTS}"
        )
    x = as_float(x)
    keep = _mask(x, where)
    if variant == "2quad":
        q = jnp.where(keep, jnp.square(x + c), 0.0)
        return _normalise(q, axis)
    m = jnp.max(jnp.where(keep, x, -jnp.inf), axis=axis, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    e = jnp.where(keep, jnp.exp(jnp.where(keep, x - m, 0.0)), 0.0)
    return _normalise(e, axis)


def exp_limit(x: jax.typing.ArrayLike, *, n: int = 8, clip: float = -16.0) -> jax.Array:
    """Limit-form exponential ``(1 + x / 2^n)^(2^n)`` for ``x <= 0``, and 0 below ``clip``.

    Protocol: one product by the public ``2^-n`` (a truncation), ``n`` squarings, one
    comparison ``[x >= clip]`` and one product to zero the clipped entries.

    Error on ``[clip, 0]`` with ``n = 8``: max abs error 1.06e-3 (at ``x = -2``, about
    ``e^x x^2 / 2^(n+1)``; 69 units of ``2^-16``), always an underestimate, relative error
    about ``x^2 / 2^(n+1)``; below the clip the error is ``exp(clip) = 1.1e-7``. Intended for
    ``x <= 0`` (softmax after subtracting the max).

    Resulting softmax (:func:`softmax_limit_exp`, exact division) against exact softmax, worst
    max abs probability error over Gaussian scores with standard deviation 0.5 to 8 and 16 to
    512 keys: ``n = 8``: 1.4e-2 (std 2, 512 keys; misses a 1e-2 target), ``n = 9``: 6.9e-3,
    ``n = 10``: 3.4e-3. In fixed point the rounding of ``x / 2^n`` (one step, ``2^-16``) is
    amplified ``2^n`` times, a relative error up to ``2^(n-16)`` (3.9e-3 at ``n = 8``, 7.8e-3 at
    ``n = 9``), so ``n = 9`` is the default of :func:`softmax_limit_exp`.

    Args:
      x: float array, any shape, normally ``<= 0``.
      n: number of squarings (static).
      clip: public threshold, ``-2^n < clip <= 0`` (static).

    Returns:
      Array shaped and typed like ``x``.

    References:
      Knott et al., "CrypTen", NeurIPS 2021 (limit exp, 8 squarings); PUMA clips at -14.
    """
    if not isinstance(n, int) or n < 0:
        raise ValueError(f"exp_limit: n must be a non-negative int, got {n!r}")
    if not -(2.0**n) < clip <= 0.0:
        raise ValueError(f"exp_limit: clip must be in (-2^n, 0], got {clip!r} with n={n}")
    x = as_float(x)
    y = 1.0 + x * (2.0**-n)
    for _ in range(n):
        y = y * y
    return y * (x >= clip).astype(x.dtype)


def softmax_limit_exp(
    x: jax.typing.ArrayLike,
    *,
    axis: int = -1,
    where: jax.typing.ArrayLike | None = None,
    n: int = 9,
    clip: float = -16.0,
    recip_iters: int | None = None,
    recip_bound: Bound | None = None,
) -> jax.Array:
    """Float reference of the secure exact-softmax protocol (limit exp, optional Goldschmidt).

    Steps: ``m = max`` over kept positions; ``e = exp_limit(x - m)`` (0 at masked positions);
    ``s = sum e`` (``s in [1, T]`` since the max contributes exactly 1); ``p = e / s`` with
    exact division, or ``e * goldschmidt_reciprocal(s, iters=recip_iters, bound=recip_bound)``
    when ``recip_iters`` is given (e.g. ``bound = T`` or powers of two up to ``T``).

    Error against :func:`softmax` ``"exact"`` with the default ``n = 9`` and exact division:
    max abs probability error <= 6.9e-3 on Gaussian scores (std 0.5 to 8, up to 512 keys);
    see :func:`exp_limit` for other ``n`` and the fixed-point rounding.

    Args:
      x: float scores, any shape.
      axis: axis to normalise over (static).
      where: optional boolean mask broadcastable to ``x`` (True = keep).
      n, clip: :func:`exp_limit` parameters (static).
      recip_iters, recip_bound: Goldschmidt reciprocal parameters (static), both or neither.

    Returns:
      Probabilities shaped and typed like ``x``; fully masked rows are all zeros.
    """
    if (recip_iters is None) != (recip_bound is None):
        raise ValueError("softmax_limit_exp: give both recip_iters and recip_bound, or neither")
    x = as_float(x)
    keep = _mask(x, where)
    m = jnp.max(jnp.where(keep, x, -jnp.inf), axis=axis, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    e = jnp.where(keep, exp_limit(jnp.where(keep, x - m, 0.0), n=n, clip=clip), 0.0)
    if recip_iters is None:
        return _normalise(e, axis)
    total = jnp.sum(e, axis=axis, keepdims=True)
    safe = jnp.where(total > 0.0, total, 1.0)
    inv = goldschmidt_reciprocal(safe, iters=recip_iters, bound=recip_bound)
    return e * jnp.where(total > 0.0, inv, 0.0)
