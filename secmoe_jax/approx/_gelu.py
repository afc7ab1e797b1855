"""GeLU and SiLU by variant name: the one switch shared by the protocols and training code."""

from __future__ import annotations

from collections.abc import Callable

import jax

from ._exact import gelu_exact, silu_exact
from ._fourier import GELU_SECFORMER
from ._tables import GELU_PUMA, GELU_QUAD, GELU_SECMOE6, SILU_SIX

#: Valid ``variant`` names for :func:`gelu`.
GELU_VARIANTS: tuple[str, ...] = ("exact", "secmoe6", "secformer", "puma", "quad")
#: Valid ``variant`` names for :func:`silu`.
SILU_VARIANTS: tuple[str, ...] = ("exact", "six")

_GELU: dict[str, Callable[[jax.typing.ArrayLike], jax.Array]] = {
    "exact": gelu_exact,
    "secmoe6": GELU_SECMOE6,
    "secformer": GELU_SECFORMER,
    "puma": GELU_PUMA,
    "quad": GELU_QUAD,
}
_SILU: dict[str, Callable[[jax.typing.ArrayLike], jax.Array]] = {
    "exact": silu_exact,
    "six": SILU_SIX,
}


def gelu(x: jax.typing.ArrayLike, variant: str = "exact") -> jax.Array:
    """GeLU, exact or one of the MPC-friendly approximations (float).

    | variant     | definition                                  | max abs err (domain)      |
    |-------------|---------------------------------------------|---------------------------|
    | "exact"     | ``0.5 x (1 + erf(x / sqrt 2))``             | 0                         |
    | "secmoe6"   | :data:`GELU_SECMOE6`, 6 segments, quadratic | 8.01e-3 = 525 ulp [-6, 6] |
    | "secformer" | :data:`GELU_SECFORMER`, sine-series erf     | 7.20e-4 = 47 ulp [-8, 8]  |
    | "puma"      | :data:`GELU_PUMA`, cubic + degree 6         | 1.80e-2 = 1180 ulp [-6, 6]|
    | "quad"      | :data:`GELU_QUAD`, ``0.125x^2 + 0.25x + 0.5``| 3.5 on [-6, 6]            |

    (ulp = ``2^-16``.) Jittable, differentiable, dtype-preserving.

    Args:
      x: array, any shape.
      variant: one of :data:`GELU_VARIANTS` (static).

    Returns:
      Array shaped and typed like ``x``.

    Raises:
      ValueError: unknown variant (the message lists the valid ones).
    """
    try:
        fn = _GELU[variant]
    except (KeyError, TypeError):
        raise ValueError(
            f"gelu: unknown variant {variant!r}; valid variants are {GELU_VARIANTS}"
        ) from None
    return fn(x)


def silu(x: jax.typing.ArrayLike, variant: str = "exact") -> jax.Array:
    """SiLU ``x sigmoid(x)``, exact or the six-segment approximation (float).

    ``"six"`` is :data:`SILU_SIX`: max abs error 8.01e-3 (525 units of ``2^-16``) and mean
    3.29e-3 on [-10, 10]. Jittable, differentiable, dtype-preserving.

    Args:
      x: array, any shape.
      variant: one of :data:`SILU_VARIANTS` (static).

    Returns:
      Array shaped and typed like ``x``.

    Raises:
      ValueError: unknown variant (the message lists the valid ones).
    """
    try:
        fn = _SILU[variant]
    except (KeyError, TypeError):
        raise ValueError(
            f"silu: unknown variant {variant!r}; valid variants are {SILU_VARIANTS}"
        ) from None
    return fn(x)
