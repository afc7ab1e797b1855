"""Exact float activations: the references every approximation is measured against."""

from __future__ import annotations

import math

import jax

from ._common import as_float


def gelu_exact(x: jax.typing.ArrayLike) -> jax.Array:
    """Exact GeLU in erf form, ``0.5 x (1 + erf(x / sqrt 2))``.

    Args:
      x: array, any shape; integers are promoted to the default float dtype.

    Returns:
      Array shaped and typed like ``x`` (float).

    References:
      Hendrycks and Gimpel, "Gaussian Error Linear Units (GELUs)", arXiv:1606.08415.
    """
    x = as_float(x)
    return 0.5 * x * (1.0 + jax.scipy.special.erf(x * (1.0 / math.sqrt(2.0))))


def silu_exact(x: jax.typing.ArrayLike) -> jax.Array:
    """Exact SiLU (swish), ``x * sigmoid(x)``.

    Args:
      x: array, any shape; integers are promoted to the default float dtype.

    Returns:
      Array shaped and typed like ``x`` (float).

    References:
      Elfwing, Uchibe and Doya, "Sigmoid-Weighted Linear Units ...", arXiv:1702.03118.
    """
    x = as_float(x)
    return x * jax.nn.sigmoid(x)


def erf_exact(u: jax.typing.ArrayLike) -> jax.Array:
    """The error function (float reference for the sine-series erf)."""
    return jax.scipy.special.erf(as_float(u))
