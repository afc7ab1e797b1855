"""LayerNorm over the last axis with secret gamma/beta: exact moments, Goldschmidt rsqrt.

Protocol (``x [..., D]``, ``R`` rows; every step on the masked-circuit engine of
:mod:`._iterative`):

1. Round 1 opens ``x``, the row sums ``S = sum x``, ``S K`` with ``K = round(2^32 / D)``
   (truncated by 32 bits on opening: the mean ``mu`` at ``f`` bits, exact to one unit) and
   ``gamma``. Locally: ``V = D sum x^2 - S^2 = D^2 var`` EXACTLY (``2f``-bit products summed in
   the ring, no truncation, no cancellation error: ring arithmetic is exact), plus
   ``D^2 eps``.
2. One comparison batch ``[V >= D^2 B_j]`` (5 rounds, ``[R]`` elements only) picks the bucket
   of the variance among the public bounds ``B_0 < ... < B_J`` (powers of four); the one-hot
   selects ``s = 1 / (D^2 B_j)`` and ``rho = 1 / sqrt(B_j)`` (local).
3. One round opens ``V`` (truncated to ``48 - e_s`` fractional bits, ``e_s`` the scale of
   ``s``), ``s`` and ``rho``: ``x' = V s = var / B_j`` lies in ``[1/4, 1)``.
4. ``t`` Goldschmidt rounds (SecFormer: ``m = (3 - x')/2``, ``y <- y m``, ``x' <- x' m^2``,
   ``y_0 = rho``; :class:`._iterative.GoldschmidtRsqrt`): ``y -> 1 / sqrt(var)``.
5. One round opens ``y``: ``(x - mu) gamma y`` is the degree-3 monomial difference
   ``x gamma y - mu gamma y`` of values already opened (no ``[R, D]`` Beaver round).
6. One round truncates it by ``2f`` bits; ``+ beta`` locally.

Error (float, the defaults): relative error of ``y`` <= 8.8e-4 for variances in
``[2^-8, 2^10]`` (:data:`secmoe_jax.approx.LAYERNORM_RSQRT_BOUNDS`, 4 iterations), so
per-row variances from 1e-2 to 1e3 need no retuning; fixed point adds a few units of
``2^-16`` times ``|gamma| / sigma``. Contract: ``D^2 var < 2^30`` (``var < 1820`` for
``D = 768``: the exact ``V`` must stay below ``2^62`` at ``2f`` bits), ``|x| < 2^14``, and
outputs ``|(x - mu) gamma / sigma| < 2^9`` (the product has ``2f + 20`` fractional bits).

Truncation policy: two dealer truncations of ``[R]`` vectors fused into openings (the mean,
``V``), the Goldschmidt state's (``[R]``), and ONE ``[R, D]`` truncation at the end; the
squares are never truncated (the sum is exact in the ring). No local truncation.

References:
  J. Ba, J. Kiros, G. Hinton, "Layer Normalization", arXiv:1607.06450; J. Luo et al.,
  "SecFormer", ACL Findings 2024, Section 3.2 (Goldschmidt rsqrt with input deflation).
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from ..approx import LAYERNORM_RSQRT_BOUNDS, LAYERNORM_RSQRT_ITERS
from ..dealer import Material
from ..kernels import DEFAULT_FRAC_BITS, Ring, check_ring
from ._compare import greater_equal_public
from ._iterative import (
    Circuit,
    GoldschmidtRsqrt,
    _check_bound,
    _check_iters,
    _onehot,
    _select,
    const,
    times,
)

_DEFL_SCALE = 48  # scale of the deflated variance x' = V s (opened with 32 bits of truncation)
_RHO_BITS = 20  # scale of the selected 1 / sqrt(B_j)
_Y_BITS = 20  # fractional bits of 1 / sigma in the output product (x gamma y at 2f + 20 bits)


def layernorm(
    x: Ring,
    gamma: Ring,
    beta: Ring,
    mat: Material,
    *,
    eps: float = 1e-12,
    iters: int = LAYERNORM_RSQRT_ITERS,
    bound: tuple[float, ...] = LAYERNORM_RSQRT_BOUNDS,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> Ring:
    """Shares of ``LayerNorm(x) = (x - mu) / sqrt(var + eps) * gamma + beta`` over the last axis.

    Computes :func:`secmoe_jax.approx.layernorm` with ``rsqrt="goldschmidt"`` and the same
    ``iters`` and ``bound`` (biased variance), up to fixed-point rounding.

    Args:
      x: ``uint64[..., D]`` shares (``D >= 2``).
      gamma: ``uint64[D]`` shares of the secret scale.
      beta: ``uint64[D]`` shares of the secret shift.
      mat: dealer material.
      eps: added to the variance (static; values below ``2^-32 / D^2`` vanish).
      iters: Goldschmidt iterations (static).
      bound: increasing public variance buckets (static; rounded up to powers of two; powers
        of four keep ``x'`` in ``[1/4, 1)``).
      frac_bits: fractional bits of inputs and output.

    Returns:
      ``uint64[..., D]`` shares.

    Cost (``R`` rows, bytes per party; ``J = len(bound) - 1`` comparisons per row):
      rounds ``1 + 5 + 1 + t + 2`` (13 for the defaults);
      bytes ``16 R D + 8 D + 16 R + C(J R) + 24 R + 8 R (2 t - 1)`` with ``C(m)`` a 64-bit
      comparison batch (``8 m + 336 ceil(m / 64)``). For (128, 768): 1.60 MB per party.
    """
    check_ring("layernorm", x, gamma, beta)
    if x.ndim < 1 or x.shape[-1] < 2:
        raise ValueError(f"layernorm: x must be [..., D] with D >= 2, got shape {x.shape}")
    d = x.shape[-1]
    for name, p in (("gamma", gamma), ("beta", beta)):
        if tuple(p.shape) != (d,):
            raise ValueError(f"layernorm: {name} must have shape ({d},), got {tuple(p.shape)}")
    if not isinstance(bound, tuple | list) or len(bound) < 2:
        raise ValueError(f"layernorm: bound must be a tuple of at least 2 bounds, got {bound!r}")
    iters = _check_iters("layernorm", iters)
    ks = _check_bound("layernorm", bound)
    f = frac_bits
    if 2 * math.log2(d) + ks[-2] >= 30:  # thresholds D^2 B_j at 2f bits must be encodable
        raise ValueError(f"layernorm: D^2 * bound[-2] must stay below 2^30 (D={d})")
    if x.size == 0:
        return jnp.zeros_like(x)
    lead = x.shape[:-1]
    xr = x.reshape(-1, d)
    rows = xr.shape[0]

    # s_j = 1 / (D^2 B_j) at e_s bits (>= 16 significant bits for the top bucket); V opened
    # with f_v fractional bits so that x' = V s has scale 48
    e_s = 16 + math.ceil(math.log2(d * d) + ks[-1])
    f_v = min(2 * f, _DEFL_SCALE - e_s)
    if f_v < 0:
        raise ValueError(f"layernorm: D^2 * max(bound) too large for the fixed-point range (D={d})")

    c = Circuit()
    xv = c.var((rows, d), 0)
    sv = c.var((rows, 1), 0)
    mv = c.var((rows, 1), 32)  # S K >> 32 = mean at f bits
    gv = c.var((d,), 0)
    c.need((xv, 2))
    c.need((sv, 2))
    vv = c.var((rows, 1), 2 * f - f_v)  # V opened at f_v fractional bits
    s_var = c.var((rows, 1), 0)
    rho = c.var((rows, 1), 0)
    c.need(vv, s_var)
    gs = GoldschmidtRsqrt(
        c, (rows, 1), f_v + e_s, iters, rho=rho, rho_scale=_RHO_BITS, work=16, ywork=_Y_BITS
    )
    yv = c.var((rows, 1), gs._y_scale(iters) - _Y_BITS)
    c.need(xv, gv, yv)
    c.need(mv, gv, yv)
    fin = c.var((rows, d), f + _Y_BITS)  # scale 2f + 20 -> f
    live = c.start(mat)

    # 1. moments
    s = jnp.sum(xr, axis=-1, keepdims=True, dtype=jnp.uint64)
    kd = round(2.0**32 / d)
    live.open({xv: xr, sv: s, mv: times(s, kd), gv: gamma}, label="layernorm_moments")
    sq = jnp.sum(live.mono((xv, 2)), axis=-1, keepdims=True, dtype=jnp.uint64)
    v = times(sq, d) - live.mono((sv, 2)) + const(d * d * eps, 2 * f, (rows, 1))
    # 2. bucket of the variance
    thr = [d * d * 2.0**k for k in ks[:-1]]
    oh = _onehot(greater_equal_public(v, thr, mat, frac_bits=2 * f))
    s_vals = [round(2.0**e_s / (d * d * 2.0**k)) for k in ks]
    rho_vals = [round(2.0**_RHO_BITS * d * math.sqrt(sj / 2.0**e_s)) for sj in s_vals]
    # 3. deflation: x' = V s at scale f_v + e_s = 48
    live.open(
        {vv: v, s_var: _select(oh, s_vals), rho: _select(oh, rho_vals)}, label="layernorm_defl"
    )
    xp = live.mono(vv, s_var)
    # 4. Goldschmidt
    y, _ = gs.run(live, xp, label="layernorm_rsqrt")
    # 5. (x - mu) gamma y, and 6. its truncation
    live.open({yv: y}, label="layernorm_scale")
    num = live.mono(xv, gv, yv) - live.mono(mv, gv, yv)
    live.open({fin: num}, label="layernorm_out")
    out = live.val(fin) + beta
    return out.reshape(*lead, d)
