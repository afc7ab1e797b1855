"""The fitted piecewise-polynomial activations (constants produced by the fitting script).

Coefficients come from ``benchmarks/fit_approximations.py`` (deterministic; rerun it to
reproduce them). Errors are measured against the exact function on uniform grids of 120001
points over [-6, 6] (GeLU) and 200001 points over [-10, 10] (SiLU); the contracts below are
the measured values rounded up to three significant digits. One fixed-point step is
``2^-16 ~= 1.53e-5``.

| name         | domain    | max abs err       | mean abs err |
|--------------|-----------|-------------------|--------------|
| gelu_secmoe6 | [-6, 6]   | 8.01e-3 (525 ulp) | 1.29e-3      |
| silu_six     | [-10, 10] | 8.01e-3 (525 ulp) | 3.29e-3      |
| gelu_puma    | [-6, 6]   | 1.80e-2 (1180 ulp)| 1.93e-3      |
| gelu_quad    | [-6, 6]   | 3.51 (no contract)| 0.83         |
"""

from __future__ import annotations

from ._exact import gelu_exact, silu_exact
from ._piecewise import PiecewisePolynomial

#: GeLU, SecMoE's six-segment layout ``0 | P1 | P2 | P3 | P4 | x`` with breakpoints
#: (-5, -3, -1, 1, 3) and quadratic ``P_i``. Each ``P_i`` minimises the mean absolute error on
#: its segment subject to a maximum absolute error of at most 8e-3 (a linear program).
#: Contract on [-6, 6]: max abs error <= 8.01e-3 (525 units of 2^-16), mean <= 1.29e-3
#: (SecMoE reports 1.2e-2 and 1.7e-3). Outside [-6, 6] the error keeps decreasing (the end
#: pieces are 0 and x). Secure cost: 5 batched comparisons, 13 non-zero table entries to
#: select, one square and two products.
GELU_SECMOE6 = PiecewisePolynomial(
    name="gelu_secmoe6",
    breakpoints=(-5.0, -3.0, -1.0, 1.0, 3.0),
    coeffs=(
        (0.0, 0.0, 0.0),
        (-0.02688766563514243, -0.012230442217543736, -0.001385049262647812),
        (-0.36530765351203, -0.23786655577240606, -0.03921415619183315),
        (0.005403205513313365, 0.5, 0.3439415405552296),
        (-0.3653076535120295, 1.2378665557724056, -0.03921415619183306),
        (0.0, 1.0, 0.0),
    ),
    reference=gelu_exact,
    domain=(-6.0, 6.0),
    max_abs_err=8.01e-3,
    mean_abs_err=1.29e-3,
)

#: SiLU ``x sigmoid(x)`` in the same six-segment layout, breakpoints (-7.5, -1.5, 0, 1.5, 7.5)
#: (the best symmetric layout on a half-unit grid): ``0 | P1 | P2 | P3 | P4 | x``, quadratics
#: fitted like :data:`GELU_SECMOE6`. Contract on [-10, 10]: max abs error <= 8.01e-3
#: (525 units of 2^-16), mean <= 3.29e-3. Beyond [-10, 10] the error is below 4.6e-4.
SILU_SIX = PiecewisePolynomial(
    name="silu_six",
    breakpoints=(-7.5, -1.5, 0.0, 1.5, 7.5),
    coeffs=(
        (0.0, 0.0, 0.0),
        (-0.465624842047392, -0.1382061635391991, -0.010365639542640494),
        (-0.008, 0.44797380474657983, 0.18414329840459345),
        (-0.008, 0.5520261952534204, 0.1841432984045933),
        (-0.46562484204739285, 1.1382061635391998, -0.010365639542640701),
        (0.0, 1.0, 0.0),
    ),
    reference=silu_exact,
    domain=(-10.0, 10.0),
    max_abs_err=8.01e-3,
    mean_abs_err=3.29e-3,
)

#: GeLU in PUMA's layout: 0 below -4, a cubic on [-4, -1.95), a degree-6 polynomial on
#: [-1.95, 3), x from 3 on; both pieces least-squares fits (table padded to degree 6).
#: Contract on [-6, 6]: max abs error <= 1.80e-2 (1180 units of 2^-16), mean <= 1.93e-3.
#: Secure cost: 3 batched comparisons, powers up to x^6.
#: References: Dong et al., "PUMA: Secure Inference of LLaMA-7B in Five Minutes",
#: arXiv:2307.12533.
GELU_PUMA = PiecewisePolynomial(
    name="gelu_puma",
    breakpoints=(-4.0, -1.95, 3.0),
    coeffs=(
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        (
            -0.5015405703872928,
            -0.4183657265137256,
            -0.11696643157385975,
            -0.010940046117956813,
            0.0,
            0.0,
            0.0,
        ),
        (
            0.00619527591327726,
            0.5049062831228085,
            0.36625991631456956,
            -0.007642358118547392,
            -0.03826754632673586,
            0.0020252058399169767,
            0.0013862340773064328,
        ),
        (0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    ),
    reference=gelu_exact,
    domain=(-6.0, 6.0),
    max_abs_err=1.80e-2,
    mean_abs_err=1.93e-3,
)

#: MPCFormer's "Quad" GeLU replacement ``0.125 x^2 + 0.25 x + 0.5`` (one segment). It is not an
#: approximation of GeLU in the usual sense (the student is distilled to live with it); its
#: measured error against exact GeLU on [-6, 6] is recorded honestly: max 3.5 (at x = -6),
#: mean 0.83. References: Li et al., "MPCFormer: Fast, Performant and Private Transformer
#: Inference with MPC", ICLR 2023, arXiv:2211.01452.
GELU_QUAD = PiecewisePolynomial(
    name="gelu_quad",
    breakpoints=(),
    coeffs=((0.5, 0.25, 0.125),),
    reference=gelu_exact,
    domain=(-6.0, 6.0),
    max_abs_err=3.51,
    mean_abs_err=0.83,
)

_PIECEWISE = {p.name: p for p in (GELU_SECMOE6, GELU_PUMA, GELU_QUAD, SILU_SIX)}

#: Names accepted by :func:`piecewise`.
PIECEWISE_NAMES: tuple[str, ...] = tuple(sorted(_PIECEWISE))


def piecewise(name: str) -> PiecewisePolynomial:
    """Look up a piecewise-polynomial approximation by name.

    Args:
      name: one of :data:`PIECEWISE_NAMES` (``"gelu_puma"``, ``"gelu_quad"``,
        ``"gelu_secmoe6"``, ``"silu_six"``).

    Returns:
      The :class:`PiecewisePolynomial` constant.

    Raises:
      ValueError: unknown name (the message lists the valid ones).
    """
    try:
        return _PIECEWISE[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"piecewise: unknown approximation {name!r}; valid names are {PIECEWISE_NAMES}"
        ) from None
