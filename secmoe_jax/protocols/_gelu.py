"""Secure GeLU and SiLU: every approximation of :mod:`secmoe_jax.approx` as a protocol.

=============  ===================================================  ====================  ======
variant        protocol                                             bytes/elem/party      rounds
=============  ===================================================  ====================  ======
``secmoe6``    :func:`~._piecewise.piecewise`, 5 breakpoints          stc 106.3, cts 122.3  7
``puma``       :func:`~._piecewise.piecewise`, degree 6 (general)     stc 271.9, cts 207.9  13
``secformer``  :func:`~._fourier.fourier_gelu`, 2 breakpoints          62.5                  7
``quad``       ``0.125 x^2 + 0.25 x + 0.5``: one square, one trunc    16                    2
=============  ===================================================  ====================  ======

(Bytes for large ``n`` with 64-bit comparisons; exact formulas next to each protocol.) SiLU:
``six`` is :data:`~secmoe_jax.approx._tables.SILU_SIX` through :func:`~._piecewise.piecewise`
(same cost as ``secmoe6``).

References:
  SecMoE, arXiv:2601.06790 (six-segment GeLU, Select-Then-Compute).
  SecFormer, arXiv:2401.00793 (sine-series erf). PUMA, arXiv:2307.12533 (PUMA's GeLU).
  MPCFormer, arXiv:2211.01452 (Quad).
"""

from __future__ import annotations

from ..approx._fourier import GELU_SECFORMER
from ..approx._tables import GELU_PUMA, GELU_SECMOE6, SILU_SIX
from ..dealer import Material
from ..kernels import DEFAULT_FRAC_BITS, Ring, check_ring, ring_const, shl
from ._arith import is_party0, square, trunc
from ._fourier import fourier_gelu
from ._piecewise import STRATEGIES, piecewise

GELU_VARIANTS = ("secmoe6", "puma", "secformer", "quad")
SILU_VARIANTS = ("six",)
_TABLES = {"secmoe6": GELU_SECMOE6, "puma": GELU_PUMA}


def gelu_quad(x: Ring, mat: Material, *, frac_bits: int = DEFAULT_FRAC_BITS) -> Ring:
    """MPCFormer's Quad ``0.125 x^2 + 0.25 x + 0.5``: one square, one truncation.

    Protocol: ``z = x^2`` at ``2f`` bits (Beaver square, no truncation); ``8y = z + 2x + 4`` at
    ``2f`` bits (local: ``x`` shifted by ``f + 1``); one dealer truncation by ``f + 3`` bits.
    Exact to one unit (plus input rounding) for ``|x| < 2^13``.

    Cost: 2 rounds, 16 bytes per element per party.
    """
    check_ring("gelu_quad", x)
    z = square(x, mat, frac_bits=frac_bits, trunc="none")
    y8 = z + shl(x, frac_bits + 1) + is_party0() * ring_const(4 << (2 * frac_bits))
    return trunc(y8, mat, bits=frac_bits + 3)


def gelu(
    x: Ring,
    mat: Material,
    *,
    variant: str = "secmoe6",
    strategy: str = "stc",
    frac_bits: int = DEFAULT_FRAC_BITS,
    cmp_bits: int = 64,
) -> Ring:
    """Shares of GeLU(x) by the approximation ``variant`` (module table).

    Args:
      x: ``uint64[...]`` shares at ``frac_bits`` (any shape).
      mat: dealer material.
      variant: ``"secmoe6"`` (default), ``"puma"``, ``"secformer"``, ``"quad"`` (static).
      strategy: ``"stc"`` (Select-Then-Compute) or ``"cts"`` (compute-then-select) for the
        piecewise variants; ignored by ``"secformer"`` and ``"quad"``.
      cmp_bits: comparison bit width (64 = exact for any input; below, the caller bounds
        ``|x|``, see :func:`~secmoe_jax.protocols._compare.msb`).

    Returns:
      ``uint64[...]`` shares at ``frac_bits``: the approximation's value within a few units
      of ``2^-frac_bits`` (see the tests), i.e. exact GeLU within the approximation's contract.
    """
    check_ring("gelu", x)
    if variant not in GELU_VARIANTS:
        raise ValueError(f"gelu: unknown variant {variant!r}; valid variants are {GELU_VARIANTS}")
    if strategy not in STRATEGIES:
        raise ValueError(f"gelu: strategy must be one of {STRATEGIES}, got {strategy!r}")
    if variant == "quad":
        return gelu_quad(x, mat, frac_bits=frac_bits)
    if variant == "secformer":
        return fourier_gelu(x, GELU_SECFORMER, mat, frac_bits=frac_bits, cmp_bits=cmp_bits)
    return piecewise(
        x, _TABLES[variant], mat, strategy=strategy, frac_bits=frac_bits, cmp_bits=cmp_bits
    )


def silu(
    x: Ring,
    mat: Material,
    *,
    variant: str = "six",
    strategy: str = "stc",
    frac_bits: int = DEFAULT_FRAC_BITS,
    cmp_bits: int = 64,
) -> Ring:
    """Shares of SiLU(x) by the six-segment approximation (for SwiGLU experts).

    Same protocol and cost as ``gelu(variant="secmoe6")`` (:func:`~._piecewise.piecewise`
    with :data:`~secmoe_jax.approx._tables.SILU_SIX`, breakpoints -7.5, -1.5, 0, 1.5, 7.5).
    """
    check_ring("silu", x)
    if variant not in SILU_VARIANTS:
        raise ValueError(f"silu: unknown variant {variant!r}; valid variants are {SILU_VARIANTS}")
    return piecewise(x, SILU_SIX, mat, strategy=strategy, frac_bits=frac_bits, cmp_bits=cmp_bits)
