"""Piecewise polynomials as data: breakpoints, a coefficient table and an accuracy contract."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import numpy as np

from ._common import FRAC_BITS, as_float, one_hot_segments


@dataclasses.dataclass(frozen=True)
class PiecewisePolynomial:
    """A piecewise polynomial in the Select-Then-Compute layout, with its accuracy contract.

    Segment ``i`` is ``[b_{i-1}, b_i)`` with ``b_{-1} = -inf`` and ``b_n = +inf``. All segments
    share one degree: lower-degree pieces are zero-padded, so one secret one-hot vector selects
    one row of :meth:`table` and a single polynomial is evaluated (SecMoE Protocol 2). Calling
    the object runs that same select-then-compute math in float:

      1. ``s_i = [x >= b_i]`` for every breakpoint (the batched secure comparisons);
      2. one-hot ``t_0 = 1 - s_0``, ``t_i = s_{i-1} - s_i``, ``t_n = s_{n-1}``;
      3. selected coefficients ``c_j = sum_i t_i C[i, j]`` (zero table entries skipped);
      4. ``y = sum_j c_j x^j`` with the powers ``x^j`` computed by repeated products.

    The indicators carry no gradient; the gradient flows through the selected polynomial, so
    ``jax.grad`` gives the derivative of the active piece. Frozen and hashable (the reference
    function is excluded from equality and hashing), so an instance can be a static argument
    of a jitted function.

    References:
      SecMoE, "Communication-Efficient Secure MoE Inference via Select-Then-Compute",
      AAAI 2026, arXiv:2601.06790, Protocol 2.
    """

    #: Short identifier, e.g. ``"gelu_secmoe6"``.
    name: str
    #: Sorted public thresholds, ``segments - 1`` of them.
    breakpoints: tuple[float, ...]
    #: ``segments`` rows of ``degree + 1`` coefficients in ascending powers ``(c0, c1, ...)``.
    coeffs: tuple[tuple[float, ...], ...]
    #: The exact float function approximated (for error reports); not part of eq/hash.
    reference: Callable[[jax.Array], jax.Array] | None = dataclasses.field(
        default=None, compare=False, hash=False, repr=False
    )
    #: Closed interval on which the accuracy contract below holds.
    domain: tuple[float, float] = (-math.inf, math.inf)
    #: Maximum absolute error against ``reference`` on a dense uniform grid over ``domain``.
    max_abs_err: float = math.inf
    #: Mean absolute error on the same grid.
    mean_abs_err: float = math.inf

    def __post_init__(self) -> None:
        bps = tuple(float(b) for b in self.breakpoints)
        rows = tuple(tuple(float(c) for c in row) for row in self.coeffs)
        if any(b1 >= b2 for b1, b2 in zip(bps[:-1], bps[1:], strict=True)):
            raise ValueError(
                f"PiecewisePolynomial {self.name!r}: breakpoints must be strictly increasing, "
                f"got {bps}"
            )
        if len(rows) != len(bps) + 1:
            raise ValueError(
                f"PiecewisePolynomial {self.name!r}: {len(bps)} breakpoints need "
                f"{len(bps) + 1} coefficient rows, got {len(rows)}"
            )
        if not rows[0] or any(len(r) != len(rows[0]) for r in rows):
            raise ValueError(
                f"PiecewisePolynomial {self.name!r}: every coefficient row must have the same "
                "non-zero length (zero-pad lower-degree pieces)"
            )
        object.__setattr__(self, "breakpoints", bps)
        object.__setattr__(self, "coeffs", rows)
        object.__setattr__(self, "domain", (float(self.domain[0]), float(self.domain[1])))
        object.__setattr__(self, "max_abs_err", float(self.max_abs_err))
        object.__setattr__(self, "mean_abs_err", float(self.mean_abs_err))

    @property
    def degree(self) -> int:
        """Common (padded) degree of the pieces."""
        return len(self.coeffs[0]) - 1

    @property
    def segments(self) -> int:
        """Number of segments, ``len(breakpoints) + 1``."""
        return len(self.coeffs)

    @property
    def max_abs_err_ulp(self) -> float:
        """The max-error contract in units of ``2^-16`` (one fixed-point step)."""
        return self.max_abs_err * 2.0**FRAC_BITS

    def table(self) -> np.ndarray:
        """The coefficient table, float64 ``[segments, degree + 1]``, ascending powers."""
        return np.array(self.coeffs, dtype=np.float64)

    def __call__(self, x: jax.typing.ArrayLike) -> jax.Array:
        """Evaluate in float by select-then-compute (see the class docstring).

        Args:
          x: array, any shape; integers are promoted to the default float dtype.

        Returns:
          Array shaped and typed like ``x``.
        """
        x = as_float(x)
        onehot = one_hot_segments(x, self.breakpoints)
        powers = [None, x]
        for _ in range(2, self.degree + 1):
            powers.append(powers[-1] * x)
        y = None
        for j in range(self.degree + 1):
            terms = [t * row[j] for t, row in zip(onehot, self.coeffs, strict=True) if row[j]]
            if not terms:
                continue
            c_j = terms[0]
            for term in terms[1:]:
                c_j = c_j + term
            term_j = c_j if j == 0 else c_j * powers[j]
            y = term_j if y is None else y + term_j
        return x * 0.0 if y is None else y
