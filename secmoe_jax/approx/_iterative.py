"""Float simulations of the iterative reciprocal and inverse-square-root algorithms.

Each function is exactly the algorithm a protocol runs (same deflation, initial value, update
order and iteration count), evaluated in float, so protocol tests and training code compare
against the same numbers.

Deflation by public bounds. ``bound`` is either

* one public float ``B``: the input is deflated to ``x' = x / B`` (SecFormer's "input
  deflation"); fine when the dynamic range of the input is small; or
* a strictly increasing tuple of public bounds ``(B_0, ..., B_n)`` (Select-Then-Compute
  deflation): ``n`` batched secure comparisons ``[x >= B_i]``, ``i < n``, give a one-hot
  bucket ``t``; ``x`` lies in ``[B_{j-1}, B_j)`` and is deflated by ``B_j`` into
  ``[B_{j-1} / B_j, 1)``. The selected scales ``s = sum_j t_j / B_j`` and
  ``r = sum_j t_j / sqrt(B_j)`` are local linear combinations of the one-hot bits, the
  deflation ``x' = x * s`` is one product, and the result scale is folded into the initial
  value (``x_0 = s`` for the reciprocal, ``y_0 = r`` for the inverse square root), so no
  final rescaling product is needed. With powers of four as bounds, every ``1/B_j`` and
  ``1/sqrt(B_j)`` is a power of two, exact in fixed point.

Relative error after deflation to ``x' in [1/R, 1]`` is largest at ``x' = 1/R``; iterations
needed for relative error <= 1e-3 in float (:func:`goldschmidt_iters`):

| R      | reciprocal | rsqrt |
|--------|------------|-------|
| 2      | 4          | 3     |
| 4      | 5          | 4     |
| 16     | 7          | 6     |
| 128    | 10         | 9     |
| 1e3    | 13         | 11    |
| 1e5    | 20         | 17    |

Goldschmidt needs ``x' in (0, 2)`` (reciprocal) or ``(0, 3)`` (rsqrt) to converge at all and
diverges beyond; it is not self-correcting, so fixed-point rounding (about one ``2^-16`` step
per product) accumulates linearly in the iteration count.

References:
  Goldschmidt, "Applications of division by convergence", MIT thesis, 1964.
  Luo et al., SecFormer, ACL Findings 2024, arXiv:2401.00793 (Sections 3.2 and 3.3).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from ._common import as_float, one_hot_segments

Bound = float | tuple[float, ...]

#: Public deflation bounds for LayerNorm's inverse square root: powers of four from 2^-6 to
#: 2^10 (8 batched comparisons, 9 buckets, every deflated variance in [1/4, 1)).
LAYERNORM_RSQRT_BOUNDS: tuple[float, ...] = tuple(4.0**j for j in range(-3, 6))
#: Goldschmidt iterations for LayerNorm: relative error <= 9.1e-4 in float for variances in
#: [2^-8, 2^10] = [3.9e-3, 1024] (:func:`goldschmidt_domain`).
LAYERNORM_RSQRT_ITERS = 4

_KINDS = ("reciprocal", "rsqrt")


def _check_static(where: str, iters: int, bound: Bound) -> Bound:
    if not isinstance(iters, int) or isinstance(iters, bool) or iters < 0:
        raise ValueError(f"{where}: iters must be a non-negative int, got {iters!r}")
    if isinstance(bound, tuple | list):
        bounds = tuple(float(b) for b in bound)
        if not bounds or bounds[0] <= 0.0:
            raise ValueError(f"{where}: bounds must be non-empty and positive, got {bound!r}")
        if any(b1 >= b2 for b1, b2 in zip(bounds[:-1], bounds[1:], strict=True)):
            raise ValueError(f"{where}: bounds must be strictly increasing, got {bound!r}")
        return bounds
    b = float(bound)
    if not b > 0.0 or not math.isfinite(b):
        raise ValueError(f"{where}: bound must be a positive finite float, got {bound!r}")
    return b


def _selected_scale(x: jax.Array, bound: Bound, power: float) -> jax.Array:
    """``1 / B_j^power`` for the bucket of ``x`` (a public float when ``bound`` is a float)."""
    if isinstance(bound, float):
        return jnp.full_like(x, bound**-power)
    onehot = one_hot_segments(x, bound[:-1])
    scale = None
    for t, b in zip(onehot, bound, strict=True):
        term = t * (b**-power)
        scale = term if scale is None else scale + term
    return scale


def goldschmidt_reciprocal(y: jax.typing.ArrayLike, *, iters: int, bound: Bound) -> jax.Array:
    """Reciprocal ``1 / y`` of a positive input by deflation and Goldschmidt iterations.

    Protocol:
      1. deflation scale ``s = 1 / B_j`` (public, or selected by comparisons, see the module);
      2. ``y' = y * s`` in ``(0, 1]``, ``x = s`` (the rescaled initial value 1);
      3. ``iters`` times: ``m = 2 - y'``; ``x <- x * m``; ``y' <- y' * m`` (the two products in
         one round);
      4. return ``x``.

    Error: with ``e = 1 - y'`` the relative error is ``e^(2^iters)``. With one bound ``B`` it is
    <= ``tol`` for ``y`` in ``[B (1 - tol^(2^-iters)), B]``; to cover a dynamic range ``R``
    (``y in [B / R, B]``) take ``iters >= log2(R ln(1/tol))`` (:func:`goldschmidt_iters`),
    e.g. 10 iterations for ``R = 128`` and ``tol = 1e-3``. Diverges for ``y >= 2 B``.

    Args:
      y: positive float array, any shape.
      iters: number of Goldschmidt iterations (static).
      bound: public bound ``B`` or increasing tuple of bounds (static), see the module.

    Returns:
      Array shaped and typed like ``y``.
    """
    bound = _check_static("goldschmidt_reciprocal", iters, bound)
    y = as_float(y)
    s = _selected_scale(y, bound, 1.0)
    yp = y * s
    x = s
    for _ in range(iters):
        m = 2.0 - yp
        x = x * m
        yp = yp * m
    return x


def newton_reciprocal(y: jax.typing.ArrayLike, *, iters: int, bound: Bound) -> jax.Array:
    """Reciprocal ``1 / y`` by Newton-Raphson from the deflated initial value ``1 / B``.

    ``x_0 = s`` (the selected ``1 / B_j``), then ``iters`` times ``x <- x (2 - y x)`` (two
    sequential products). In exact arithmetic the error matches Goldschmidt's
    (``e^(2^iters)``, same domain), but Newton is self-correcting under rounding.

    Args:
      y: positive float array, any shape.
      iters: number of iterations (static).
      bound: public bound or increasing tuple of bounds (static).

    Returns:
      Array shaped and typed like ``y``.
    """
    bound = _check_static("newton_reciprocal", iters, bound)
    y = as_float(y)
    x = _selected_scale(y, bound, 1.0)
    for _ in range(iters):
        x = x * (2.0 - y * x)
    return x


def goldschmidt_rsqrt(x: jax.typing.ArrayLike, *, iters: int, bound: Bound) -> jax.Array:
    """Inverse square root ``1 / sqrt(x)`` by deflation and SecFormer's Goldschmidt iteration.

    Protocol:
      1. scales ``s = 1 / B_j`` and ``r = 1 / sqrt(B_j)`` (public for one bound; local linear
         combinations of the one-hot bucket bits for a tuple, after ``len(bound) - 1``
         batched comparisons);
      2. ``x' = x * s`` (one product), ``y = r`` (the rescaled initial value 1);
      3. ``iters`` times: ``m = (3 - x') / 2``; round A: ``m2 = m * m`` and ``y <- y * m``;
         round B: ``x' <- x' * m2`` (two rounds per iteration);
      4. return ``y``.

    Invariant: ``x' = x s y^2 / r^2``, so ``y -> r / sqrt(x') = 1 / sqrt(x)`` as ``x' -> 1``;
    with ``e = 1 - x'``, ``e <- 3/4 e^2 + 1/4 e^3`` and the relative error is about ``e / 2``.
    From ``x' = 1/4`` four iterations give relative error 9.1e-4 and five 1.2e-6; a tiny
    ``x'`` first grows only by ``9/4`` per iteration, which is why a single bound needs 17
    iterations for a dynamic range of 1e5 while the bucketed deflation needs 4.

    LayerNorm (the design the protocol needs): ``bound = LAYERNORM_RSQRT_BOUNDS`` (powers of
    four from 1/64 to 1024: 8 batched comparisons, selected scales exact powers of two),
    ``iters = LAYERNORM_RSQRT_ITERS = 4``: relative error <= 9.1e-4 in float for variances in
    ``[2^-8, 2^10]``, no retuning, leaving ~9e-3 of the 1e-2 budget for fixed point (a
    variance of 1e-2 is itself only known to 1.5e-3 relative at 16 fractional bits). Rounds:
    one comparison batch, 1 deflation product, 2 per iteration (8), nothing after.

    Fails outside: ``x' >= 3`` diverges (above ``3 B_n``); below ``B_0 / 4`` more iterations
    are needed (``x = B_0 / 64`` gives a relative error of about 0.4 after 4 iterations).

    Args:
      x: positive float array, any shape.
      iters: number of Goldschmidt iterations (static).
      bound: public bound or increasing tuple of bounds (static), see the module.

    Returns:
      Array shaped and typed like ``x``.
    """
    bound = _check_static("goldschmidt_rsqrt", iters, bound)
    x = as_float(x)
    s = _selected_scale(x, bound, 1.0)
    xp = x * s
    y = _selected_scale(x, bound, 0.5)
    for _ in range(iters):
        m = 0.5 * (3.0 - xp)
        m2 = m * m
        y = y * m
        xp = xp * m2
    return y


def newton_rsqrt(x: jax.typing.ArrayLike, *, iters: int, bound: Bound) -> jax.Array:
    """Inverse square root by Newton-Raphson from the deflated initial value ``1 / sqrt(B)``.

    ``y_0 = r`` (the selected ``1 / sqrt(B_j)``), then ``iters`` times
    ``y <- y (3 - x y^2) / 2`` (three sequential products). Since ``x y_0^2 = x'``, the error
    recursion is the same as Goldschmidt's (same iteration table, same convergence region
    ``x' in (0, 3)``), but Newton is self-correcting under rounding.

    Args:
      x: positive float array, any shape.
      iters: number of iterations (static).
      bound: public bound or increasing tuple of bounds (static).

    Returns:
      Array shaped and typed like ``x``.
    """
    bound = _check_static("newton_rsqrt", iters, bound)
    x = as_float(x)
    y = _selected_scale(x, bound, 0.5)
    for _ in range(iters):
        y = 0.5 * y * (3.0 - x * (y * y))
    return y


def _rel_err(kind: str, xp: float, iters: int) -> float:
    """Float64 relative error of the Goldschmidt iteration started at deflated ``xp``."""
    if kind == "reciprocal":
        return abs(1.0 - xp) ** (2**iters) if abs(1.0 - xp) < 1.0 else math.inf
    x, y = xp, 1.0
    for _ in range(iters):
        m = 0.5 * (3.0 - x)
        x, y = x * m * m, y * m
    err = abs(y * math.sqrt(xp) - 1.0)
    return err if math.isfinite(err) else math.inf


def _check_kind(where: str, kind: str) -> None:
    if kind not in _KINDS:
        raise ValueError(f"{where}: unknown kind {kind!r}; valid kinds are {_KINDS}")


def goldschmidt_iters(kind: str, ratio: float, tol: float) -> int:
    """Fewest Goldschmidt iterations for relative error <= ``tol`` on ``x' in [1/ratio, 1]``.

    Args:
      kind: ``"reciprocal"`` or ``"rsqrt"``.
      ratio: dynamic range ``R >= 1`` of the deflated input.
      tol: relative error target in ``(0, 1)``.

    Returns:
      The iteration count (computed in float64 at the worst point ``x' = 1 / R``).
    """
    _check_kind("goldschmidt_iters", kind)
    if not ratio >= 1.0 or not 0.0 < tol < 1.0:
        raise ValueError(f"goldschmidt_iters: need ratio >= 1 and 0 < tol < 1, got {ratio}, {tol}")
    n = 0
    while _rel_err(kind, 1.0 / ratio, n) > tol:
        n += 1
    return n


def goldschmidt_domain(kind: str, *, iters: int, bound: Bound, tol: float) -> tuple[float, float]:
    """Interval ``[lo, hi]`` of inputs on which the Goldschmidt routine meets ``tol``.

    ``hi`` is the top bound (convergence continues a little above it, but that is not part of
    the contract). ``lo`` is ``B_0`` times the smallest deflated input that still converges
    to ``tol`` in ``iters`` iterations (found by bisection in float64). For a tuple of bounds
    every bucket ratio ``B_{j-1} / B_j`` must also converge.

    Args:
      kind: ``"reciprocal"`` or ``"rsqrt"``.
      iters: iteration count.
      bound: public bound or increasing tuple of bounds.
      tol: relative error target.

    Returns:
      ``(lo, hi)``.

    Raises:
      ValueError: some bucket of a tuple of bounds does not converge to ``tol``.
    """
    _check_kind("goldschmidt_domain", kind)
    bound = _check_static("goldschmidt_domain", iters, bound)
    bounds = bound if isinstance(bound, tuple) else (bound,)
    if _rel_err(kind, 1.0, iters) > tol:
        raise ValueError("goldschmidt_domain: tol is below the float64 error at x' = 1")
    a, b = 0.0, 1.0  # error(a) > tol >= error(b); error decreases as x' -> 1
    for _ in range(200):
        mid = 0.5 * (a + b)
        if _rel_err(kind, mid, iters) <= tol:
            b = mid
        else:
            a = mid
    for lo_b, hi_b in zip(bounds[:-1], bounds[1:], strict=True):
        if lo_b / hi_b < b:
            raise ValueError(
                f"goldschmidt_domain: bucket [{lo_b}, {hi_b}) deflates to [{lo_b / hi_b}, 1), "
                f"which needs more than {iters} iterations for tol {tol}"
            )
    return bounds[0] * b, bounds[-1]
