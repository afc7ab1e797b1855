"""LayerNorm float reference, with the exact or the Goldschmidt inverse square root."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._common import as_float
from ._iterative import (
    LAYERNORM_RSQRT_BOUNDS,
    LAYERNORM_RSQRT_ITERS,
    Bound,
    goldschmidt_rsqrt,
)

#: Valid ``rsqrt`` names for :func:`layernorm`.
LAYERNORM_RSQRT_VARIANTS: tuple[str, ...] = ("exact", "goldschmidt")


def layernorm(
    x: jax.typing.ArrayLike,
    gamma: jax.typing.ArrayLike,
    beta: jax.typing.ArrayLike,
    *,
    eps: float = 1e-12,
    rsqrt: str = "exact",
    iters: int = LAYERNORM_RSQRT_ITERS,
    bound: Bound = LAYERNORM_RSQRT_BOUNDS,
) -> jax.Array:
    """LayerNorm over the last axis, as the secure protocol computes it (float).

    Steps: ``mu = mean(x)``; ``d = x - mu``; ``v = mean(d^2) + eps`` (biased variance);
    ``r = 1 / sqrt(v)`` exactly or by :func:`goldschmidt_rsqrt` with ``iters`` and ``bound``;
    ``y = d * r * gamma + beta``.

    With the defaults (``LAYERNORM_RSQRT_BOUNDS``, 4 iterations) the Goldschmidt ``r`` has
    relative error <= 9.1e-4 in float for variances in ``[2^-8, 2^10]``, so ``y - beta`` has
    relative error <= 9.1e-4 too. ``eps = 1e-12`` is below one fixed-point step and vanishes
    in the protocol; it only guards the float reference.

    Args:
      x: float array ``[..., D]``.
      gamma, beta: float arrays ``[D]`` (broadcastable to ``x``).
      eps: added to the variance (static).
      rsqrt: one of :data:`LAYERNORM_RSQRT_VARIANTS` (static).
      iters, bound: Goldschmidt parameters (static; ignored for ``"exact"``).

    Returns:
      Array shaped and typed like ``x``.

    References:
      Ba, Kiros and Hinton, "Layer Normalization", arXiv:1607.06450; SecFormer Section 3.2.
    """
    if rsqrt not in LAYERNORM_RSQRT_VARIANTS:
        raise ValueError(
            f"layernorm: unknown rsqrt {rsqrt!r}; valid values are {LAYERNORM_RSQRT_VARIANTS}"
        )
    x = as_float(x)
    gamma = jnp.asarray(gamma, dtype=x.dtype)
    beta = jnp.asarray(beta, dtype=x.dtype)
    mu = jnp.mean(x, axis=-1, keepdims=True)
    d = x - mu
    v = jnp.mean(d * d, axis=-1, keepdims=True) + eps
    if rsqrt == "exact":
        r = jax.lax.rsqrt(v)
    else:
        r = goldschmidt_rsqrt(v, iters=iters, bound=bound)
    return d * r * gamma + beta
