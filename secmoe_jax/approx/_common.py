"""Small helpers shared by the approximation modules."""

from __future__ import annotations

import jax
import jax.numpy as jnp

#: Fractional bits of the fixed-point encoding the protocols use; errors are also quoted in
#: units of ``2^-FRAC_BITS``.
FRAC_BITS = 16


def as_float(x: jax.typing.ArrayLike) -> jax.Array:
    """Return ``x`` as a JAX array with a floating dtype (integers go to the default float)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def indicator(x: jax.Array, threshold: float) -> jax.Array:
    """``1.0`` where ``x >= threshold`` else ``0.0``, in the dtype of ``x`` (no gradient)."""
    return (x >= threshold).astype(x.dtype)


def one_hot_segments(x: jax.Array, breakpoints: tuple[float, ...]) -> list[jax.Array]:
    """One-hot segment indicators for sorted ``breakpoints``, as the protocols compute them.

    Segment ``i`` is ``[b_{i-1}, b_i)`` (``b_{-1} = -inf``, ``b_n = +inf``). The comparisons
    ``s_i = [x >= b_i]`` are combined by differences: ``t_0 = 1 - s_0``,
    ``t_i = s_{i-1} - s_i``, ``t_n = s_{n-1}``. Exactly one ``t_i`` is 1 at every point.

    Args:
      x: float array, any shape.
      breakpoints: sorted public thresholds (may be empty: one segment).

    Returns:
      ``len(breakpoints) + 1`` arrays shaped like ``x``, valued 0.0 or 1.0.
    """
    s = [indicator(x, b) for b in breakpoints]
    if not s:
        return [jnp.ones_like(x)]
    return [1.0 - s[0]] + [s[i - 1] - s[i] for i in range(1, len(s))] + [s[-1]]
