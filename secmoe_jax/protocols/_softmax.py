"""Softmax protocols: MPCFormer's "2quad" with Goldschmidt division, and "exact" (max, exp).

Both normalise along one axis with an optional public attention padding mask (masked positions
get exactly 0 weight: the output shares are multiplied by the public 0/1 mask last). Both run on
the masked-circuit engine of :mod:`._iterative` (openings with fused exact truncation, local
polynomials of opened values), so every Goldschmidt iteration and every squaring is one round
and no truncation costs a round of its own.

"2quad" (``(x + c)^2 / sum (x + c)^2``, ``c = 5``): one round squares the scores; the row sums
are deflated by a public power-of-two bound (free: a change of scale) and inverted by
Goldschmidt on the ``[rows]`` vector only; the broadcast product with the numerators is a
degree-3 monomial ``x^2 x~`` of values already opened (no ``[rows, keys]`` Beaver round).

"exact": the row maximum by a two-level all-pairs tournament (below), ``exp(x - max)`` by the
limit form (:class:`._iterative.ExpChain`, no clip comparison: see the contract), the sum, one
Goldschmidt reciprocal on ``[rows]`` (the sum lies in ``[1, keys]``, so the public bound
``2^ceil(log2 keys)`` is a dynamic range of ``keys``), and the broadcast product.

**The maximum in 10 rounds.** A binary comparison tree over 128 keys is 7 levels of a 4-5
round comparison. Instead each level compares ALL pairs inside groups of ``g`` (8, then the
remaining 16) in ONE comparison batch, so an element's number of wins ``w`` (ties broken by
index, so the wins of a group are a permutation of ``0 .. g-1``) is a local sum of comparison
bits, and the group maximum is ``sum_i x_i [w_i = g - 1]`` with the indicator as the integer
polynomial ``Q(w) = prod_(j < g-1) (w - j)`` (``(g-1)!`` at the winner, 0 elsewhere):
``sum_i x_i Q(w_i)`` is ONE round of the masked circuit (monomials ``x w^k``), exact in the
ring. ``(g-1)! = 2^a o`` with ``o`` odd; multiplying by ``o^-1 mod 2^64`` leaves the maximum
scaled by ``2^a``, an exact change of fixed-point scale. Per level: one comparison batch
(4 rounds: differences fit 33 bits) + 1 round; 128 keys -> 16 -> 1 in 10 rounds, with
``16 * 28 + 120 = 568`` comparisons per row (4.5x a tree's 127, at 13 bytes each).

Contracts ("exact"): unmasked scores in ``[-256, 256)`` and a row spread ``max - x <= 2^n``
(the limit form's base ``1 + (x - max) / 2^n`` stays non-negative, so it decays to about 0
without a clip comparison; the float reference clips at -16, a difference below
``e^-16 = 1.1e-7``); masked scores may be anything. "2quad": ``sum (x + c)^2 <= bound``.

References:
  D. Li et al., "MPCFormer", ICLR 2023 (2Quad); J. Luo et al., "SecFormer", ACL Findings 2024
  (Goldschmidt division after deflation); B. Knott et al., "CrypTen", NeurIPS 2021 (limit exp).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..approx import goldschmidt_iters
from ..dealer import Material
from ..kernels import DEFAULT_FRAC_BITS, Ring, check_ring
from ._arith import is_party0
from ._compare import msb
from ._iterative import (
    EXP_WORK_BITS,
    RECIP_WORK_BITS,
    Circuit,
    ExpChain,
    GoldschmidtReciprocal,
    Live,
    _ring_int,
    const,
    times,
    up,
)

VARIANTS = ("2quad", "exact")
SOFTMAX_VARIANTS = VARIANTS
#: dynamic range the default 2quad iteration count is chosen for (``sum >= bound / 64``)
QUAD_RANGE = 64
#: relative error target of the default reciprocal iteration counts
RECIP_TOL = 1e-3
#: the "exact" contract on unmasked scores: ``|x| < SCORE_LIMIT``
SCORE_LIMIT = 256.0
_PAD = -2.0 * SCORE_LIMIT  # public stand-in for masked / padding positions in the max
_CMP_BITS = 33  # differences of (scaled) scores fit 33 signed bits: 4-round comparisons
_GROUP = 8  # group size of the tournament's first levels
_LAST = 16  # the last level compares all pairs of at most this many


def _rows(x: Ring, axis: int, mask: Any, where: str) -> tuple[Ring, Ring | None, Any]:
    """Move ``axis`` last and flatten: ``x [R, T]``, the mask as 0/1 ``uint64 [R, T]``."""
    if x.ndim == 0:
        raise ValueError(f"{where}: x must have at least one axis")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{where}: axis {axis} out of range for shape {x.shape}")
    ax = axis % x.ndim
    moved = jnp.moveaxis(x, ax, -1)
    t = moved.shape[-1]
    keep = None
    if mask is not None:
        m = jnp.asarray(mask)
        if m.dtype != jnp.bool_:
            raise ValueError(f"{where}: mask must be a boolean array, got dtype {m.dtype}")
        try:
            m = jnp.broadcast_to(m, x.shape)
        except ValueError:
            raise ValueError(
                f"{where}: mask of shape {m.shape} does not broadcast to x's shape {x.shape}"
            ) from None
        keep = jnp.moveaxis(m, ax, -1).reshape(-1, t).astype(jnp.uint64)
    return moved.reshape(-1, t), keep, (ax, moved.shape)


def _unrows(y: Ring, info: Any) -> Ring:
    ax, moved_shape = info
    return jnp.moveaxis(y.reshape(moved_shape), -1, ax)


# --------------------------------------------------------------------------------------------
# The all-pairs tournament maximum.
# --------------------------------------------------------------------------------------------
def _schedule(t: int) -> list[int]:
    """Group sizes per level: 8 while more than 16 remain, then all of them."""
    out = []
    while t > 1:
        g = _GROUP if t > _LAST else t
        out.append(g)
        t = -(-t // g)
    return out


def _q_coeffs(g: int) -> tuple[list[int], int, int]:
    """Coefficients of ``Q(w) = prod_(j < g-1) (w - j)``; ``a``, ``o^-1`` for ``(g-1)! = 2^a o``."""
    coeffs = [1]
    for j in range(g - 1):  # multiply by (w - j)
        nxt = [0] * (len(coeffs) + 1)
        for k, ck in enumerate(coeffs):
            nxt[k + 1] += ck
            nxt[k] -= j * ck
        coeffs = nxt
    fact = math.factorial(g - 1)
    a = (fact & -fact).bit_length() - 1
    odd = fact >> a
    return coeffs, a, pow(odd, -1, 1 << 64)


def max_scale(t: int) -> int:
    """Extra fractional bits of the tournament maximum of ``t`` keys (sum of the ``a``)."""
    return sum(_q_coeffs(g)[1] for g in _schedule(t))


def _x_times_poly(live: Live, xv: int, wv: int, coeffs: list[int]) -> Ring:
    """Shares of ``x Q(w)`` for opened unscaled ``x = P_x - h_x``, ``w = P_w - h_w``.

    Taylor shift: ``Q(P - h) = sum_j (-h)^j T_j(P)`` with ``T_j = Q^(j) / j!``, so
    ``x Q(w) = sum_j (-1)^j T_j(P_w) (P_x [h_w^j] - [h_x h_w^j])`` with the dealer's products
    ``[h_w^j]``, ``[h_x h_w^j]`` (the circuit's items for the monomial ``x w^deg``). The same
    value as ``sum_k q_k mono(x, w^k)``, with ``O(deg)`` array terms instead of ``O(deg^2)``.
    """
    p0 = is_party0()
    deg = len(coeffs) - 1
    px, pw = live._p[xv], live._p[wv]
    pows = [jnp.uint64(1)]
    for _ in range(deg):
        pows.append(pows[-1] * pw)
    out = None
    for j in range(deg + 1):
        tj = None
        for k in range(j, deg + 1):
            ck = coeffs[k] * math.comb(k, j)
            if ck:
                term = pows[k - j] * _ring_int(ck)
                tj = term if tj is None else tj + term
        if tj is None:
            continue
        hw = p0 if j == 0 else live._g[((wv, j, False),)]
        hxw = live._g[((xv, 1, False),)] if j == 0 else live._g[((xv, 1, False), (wv, j, False))]
        term = tj * (px * hw - hxw) * _ring_int((-1) ** j)
        out = term if out is None else out + term
    return out


def _tournament_level(vals: Ring, g: int, scale: int, mat: Material, level: int) -> Ring:
    """Maximum over groups of ``g`` along the last axis: ``[R, C] -> [R, ceil(C / g)]``."""
    rows, cnt = vals.shape
    groups = -(-cnt // g)
    pad = groups * g - cnt
    if pad:
        fill = is_party0() * jnp.full((rows, pad), np.uint64(int(_PAD * 2**scale) & (2**64 - 1)))
        vals = jnp.concatenate([vals, fill.astype(jnp.uint64)], axis=1)
    v = vals.reshape(rows, groups, g)
    pairs = [(i, j) for i in range(g) for j in range(i + 1, g)]
    ii = np.array([p[0] for p in pairs])
    jj = np.array([p[1] for p in pairs])
    beat = msb(v[..., ii] - v[..., jj], mat, bits=_CMP_BITS)  # [x_i < x_j]: j wins
    one = is_party0()
    # wins_i = #{j > i: not beaten by j} + #{j < i: beats j}, one scatter-add each
    wins = jnp.zeros((rows, groups, g), jnp.uint64)
    wins = wins.at[..., ii].add(one - beat).at[..., jj].add(beat)
    coeffs, _, odd_inv = _q_coeffs(g)
    c = Circuit()
    xv, wv = c.var(v.shape, 0), c.var(v.shape, 0)
    c.need(xv, (wv, g - 1))
    live = c.start(mat)
    live.open({xv: v, wv: wins}, label=f"softmax_max{level}")
    acc = _x_times_poly(live, xv, wv, coeffs)
    return times(jnp.sum(acc, axis=-1, dtype=jnp.uint64), odd_inv)


def tournament_max(x: Ring, mat: Material, *, scale: int) -> tuple[Ring, int]:
    """Row maxima of ``x [R, T]`` (at ``scale``): ``([R], scale + max_scale(T))``."""
    vals, s = x, scale
    for level, g in enumerate(_schedule(x.shape[1])):
        vals = _tournament_level(vals, g, s, mat, level)
        s += _q_coeffs(g)[1]
    return vals[:, 0], s


# --------------------------------------------------------------------------------------------
# Softmax.
# --------------------------------------------------------------------------------------------
def _pow2(b: float) -> int:
    return math.ceil(math.log2(b) - 1e-12)


def default_quad_bound(keys: int, c: float = 5.0, x_max: float = 10.0) -> float:
    """Default public bound on ``sum (x + c)^2``: ``keys (x_max + c)^2`` (for ``|x| <= x_max``)."""
    return float(keys) * (x_max + abs(c)) ** 2


def softmax(
    x: Ring,
    mat: Material,
    *,
    variant: str = "2quad",
    axis: int = -1,
    mask: Any = None,
    c: float = 5.0,
    n: int = 9,
    iters: int | None = None,
    bound: float | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> Ring:
    """Shares of the masked softmax of ``x`` along ``axis``: "2quad" or "exact".

    Args:
      x: ``uint64[...]`` shares of scores (``frac_bits``), e.g. ``[H, Q, K]``.
      mat: dealer material.
      variant: ``"2quad"`` (``(x + c)^2 / sum (x + c)^2``) or ``"exact"`` (limit exp of
        ``x - max``, normalised) (static).
      axis: axis to normalise over (static).
      mask: optional public boolean array broadcastable to ``x`` (True = attend); masked
        positions get exactly 0 and do not enter the sum (or the maximum).
      c: the 2Quad shift (static).
      n: squarings of the limit exp ("exact"; static).
      iters: Goldschmidt iterations for the row-sum reciprocal (static). Default: enough for
        relative error 1e-3 over the dynamic range (2quad: ``sum >= bound / 64``, 9
        iterations; exact: ``[1, keys]``, 10 iterations for 128 keys).
      bound: 2quad only: public upper bound on ``sum (x + c)^2`` (static; rounded up to a power
        of two). Default :func:`default_quad_bound` (``keys (10 + c)^2``).
      frac_bits: fractional bits of input and output.

    Returns:
      ``uint64`` shares shaped like ``x``.

    Float references: "2quad" is
    ``q * goldschmidt_reciprocal(sum q, iters, bound=2^ceil(log2 bound))`` with
    ``q = mask (x + c)^2``; "exact" is :func:`secmoe_jax.approx.softmax_limit_exp` with the same
    ``n``, ``recip_iters`` and ``recip_bound = 2^ceil(log2 keys)``. Errors against them are a
    few units of ``2^-16``; against exact softmax "exact" is within 1e-2 (see the tests).

    Cost (``R`` rows, ``T`` keys, ``N = R T``, bytes per party; ``t`` iterations):

    * 2quad: ``t + 3`` rounds; ``16 N + 8 R (2 t - 1)`` bytes (open ``x``, the final
      truncation, and the ``[R]`` Goldschmidt state and result).
    * exact: ``10 + n + t + 2`` rounds for ``T`` in ``(16, 128]`` (two tournament levels of
      4 + 1 rounds); bytes: the comparison batches (``C = T (g1 - 1) / 2 + C(G, 2)`` pairs per
      row, 33-bit: 4 rounds) + ``16`` bytes per compared element of each level (the opening of
      its values and wins) + ``8 N (n + 2)`` (the squarings, the exp values, the final
      truncation) + ``8 R (2 t - 1)``.
    """
    check_ring("softmax", x)
    if variant not in VARIANTS:
        raise ValueError(f"softmax: unknown variant {variant!r}; valid variants are {VARIANTS}")
    if iters is not None and (not isinstance(iters, int) or iters < 1):
        raise ValueError(f"softmax: iters must be a positive int, got {iters!r}")
    xr, keep, info = _rows(x, axis, mask, "softmax")
    if xr.size == 0:
        return jnp.zeros_like(x)
    if variant == "2quad":
        out = _quad(xr, keep, mat, c=c, iters=iters, bound=bound, f=frac_bits)
    else:
        if bound is not None:
            raise ValueError("softmax: bound applies to variant '2quad' only")
        if not isinstance(n, int) or not 1 <= n <= 12:
            raise ValueError(f"softmax: n must be an int in [1, 12], got {n!r}")
        out = _exact(xr, keep, mat, n=n, iters=iters, f=frac_bits)
    return _unrows(out, info)


def _quad(xr, keep, mat, *, c, iters, bound, f):
    rows, t = xr.shape
    if bound is None:
        bound = default_quad_bound(t, c)
    if not float(bound) > 0:
        raise ValueError(f"softmax: bound must be positive, got {bound!r}")
    k = _pow2(float(bound))
    if iters is None:
        iters = goldschmidt_iters("reciprocal", QUAD_RANGE, RECIP_TOL)
    fo = min(RECIP_WORK_BITS, 60 - k - 2 * f)  # x~ opened with fo bits: q x~ <= 2^k fits
    if fo < 8:
        raise ValueError(f"softmax: bound {bound} too large for frac_bits={f}")
    circ = Circuit()
    xv = circ.var(xr.shape, 0)
    circ.need((xv, 2))
    gs = GoldschmidtReciprocal(circ, (rows, 1), 2 * f + k, iters)
    xt = circ.var((rows, 1), 2 * gs.f - fo if iters > 1 else gs.f - fo)
    circ.need((xv, 2), xt)
    fin = circ.var(xr.shape, 2 * f + fo + k - f)
    live = circ.start(mat)
    live.open({xv: xr}, label="softmax_quad_x")
    vx = live.val(xv)
    lin = int(round(2 * c * 2**f))
    q = live.mono((xv, 2)) + times(vx, lin) + const(c * c, 2 * f)
    if keep is not None:
        q = q * keep
    s = jnp.sum(q, axis=-1, keepdims=True, dtype=jnp.uint64)
    x_t, _ = gs.run(live, s, label="softmax_quad_recip")
    live.open({xt: x_t}, label="softmax_quad_inv")
    vt = live.val(xt)
    # q x~ = (x^2 + 2 c x + c^2) x~ at scale 2f + fo
    num = (
        live.mono((xv, 2), xt)
        + times(live.mono(xv, xt), lin)
        + times(vt, int(round(c * c * 2 ** (2 * f))))
    )
    live.open({fin: num}, label="softmax_quad_out")
    out = live.val(fin)
    return out * keep if keep is not None else out


def _exact(xr, keep, mat, *, n, iters, f):
    rows, t = xr.shape
    one = is_party0()
    if keep is not None:  # masked positions: a public low value in the maximum
        pad = np.uint64(int(_PAD * 2**f) & (2**64 - 1))
        xm = xr * keep + one * (jnp.uint64(1) - keep) * pad
    else:
        xm = xr
    if t > 1:
        m, s = tournament_max(xm, mat, scale=f)
    else:
        m, s = xm[:, 0], f
    a = s - f
    z = up(xr, a) - m[:, None]  # x - max at scale f + a, <= 0
    if keep is not None:
        z = z * keep  # masked: exp(0) = 1, zeroed below
    k = max(0, _pow2(float(t)))
    if iters is None:
        iters = max(1, goldschmidt_iters("reciprocal", float(2**k), RECIP_TOL))
    fe = EXP_WORK_BITS
    fo = min(RECIP_WORK_BITS, 60 - k - fe)
    circ = Circuit()
    chain = ExpChain(circ, xr.shape, f + a, n)
    ev = circ.var(xr.shape, 2 * chain.f - fe)
    gs = GoldschmidtReciprocal(circ, (rows, 1), 2 * chain.f + k, iters)
    xt = circ.var((rows, 1), (2 * gs.f if iters > 1 else gs.f) - fo)
    circ.need(ev, xt)
    fin = circ.var(xr.shape, fe + fo + k - f)
    live = circ.start(mat)
    e = chain.run(live, z, label="softmax_exp")
    if keep is not None:
        e = e * keep
    total = jnp.sum(e, axis=-1, keepdims=True, dtype=jnp.uint64)
    x_t, _ = gs.run(live, total, extra={ev: e}, label="softmax_recip")
    live.open({xt: x_t}, label="softmax_inv")
    live.open({fin: live.mono(ev, xt)}, label="softmax_out")
    out = live.val(fin)
    return out * keep if keep is not None else out
