"""Piecewise polynomials: Select-Then-Compute (SecMoE) and compute-then-select, one table.

A :class:`~secmoe_jax.approx._piecewise.PiecewisePolynomial` is data: sorted breakpoints
``b_1 < ... < b_{S-1}`` and a table ``T [S, d+1]`` (ascending powers, lower degrees zero-padded).
Both strategies start the same way:

1. ``ind_k = [x >= b_k]`` for every breakpoint, ONE batched comparison
   (:func:`~secmoe_jax.protocols._compare.greater_equal_public`: 5 rounds);
2. the one-hot ``seg_0 = 1 - ind_1``, ``seg_i = ind_i - ind_{i+1}``, ``seg_{S-1} = ind_{S-1}``
   (local, :func:`onehot_from_indicators`; integer 0/1 shares).

and differ in what is multiplied by the secret one-hot:

* **Select-Then-Compute** (:func:`piecewise_stc`, SecMoE Protocol 2): the coefficients of the
  active segment, ``coef_j = sum_i seg_i T[i, j]`` (:func:`select_coefficients`, local: a
  public table times integer shares), then ONE polynomial with secret coefficients: ``d``
  products ``coef_j * x^j`` (only the columns ``j >= 1`` with a non-zero entry).
* **compute-then-select** (:func:`piecewise_cts`, the baseline): every non-zero segment's
  polynomial ``P_i(x)`` with public coefficients, multiplied by its indicator: one product per
  non-constant non-zero segment.

Zero rows cost nothing in either strategy. Identity rows ``(0, 1, 0, ...)`` (the ``x`` tail of
GeLU/SiLU) cost one product ``seg_id * x`` in both strategies on the fast path below, and are
folded into ``coef_1`` by Select-Then-Compute on the general path.

**Fast path** (``(d + 1) f <= 48``, e.g. quadratics at ``f = 16``, and both end segments zero or
identity): the powers of ``x`` are never computed interactively. The dealer gives shares of
``a, a^2, ..., a^d`` and, for each secret selector ``s_k`` (a selected coefficient or a segment
indicator), of a mask ``alpha_k`` and ``alpha_k a^m``. ONE opening of ``e = x - a`` and
``s_k - alpha_k`` (all ``k``) then gives every product ``s_k x^m`` locally and exactly in the ring:
``x^m = sum_l C(m, l) e^(m-l) a^l`` and ``alpha_k x^m = sum_l C(m, l) e^(m-l) [alpha_k a^l]``.
The table is encoded so every term has ``(d + 1) f`` fractional bits (column ``j`` at
``(d + 1 - j) f`` bits) and the sum is truncated once by ``d f`` bits with the dealer. Outside
the bounded segments the selected coefficients are exact ring zeros, so ``x^m`` wrapping modulo
2^64 for large ``|x|`` is harmless (the identity tail is kept at ``f`` bits).

**General path** (higher degree, e.g. PUMA's degree 6): powers ``x^2 .. x^d`` at ``f`` bits by
a product tree (``ceil(log2 d)`` levels of one stacked Beaver round + one dealer truncation)
before the comparisons, then one stacked Beaver round (``trunc="none"``, ``2f``-bit products
summed) and one truncation of the sum.

Cost (bytes per party per element, ``n`` elements; ``C(K)`` = the comparison batch of ``K``
thresholds, 5 rounds and ``8 K + 5.25 K`` bytes per element for 64-bit inputs):

=========  ==========================================  =======================================
path       Select-Then-Compute                         compute-then-select
=========  ==========================================  =======================================
fast       ``C + 8 (1 + J + I) + 8``; ``5 + 2`` rounds   ``C + 8 (1 + G + I) + 8``; same rounds
general    ``C + W + 16 J' + 8``; ``R_w + 5 + 2``       ``C + W + 16 (G + I) + 8``; same rounds
=========  ==========================================  =======================================

``J``: non-zero power columns ``j >= 1`` of the non-identity rows; ``J'``: the same with the
identity rows folded in; ``G``: non-constant non-zero non-identity rows; ``I``: 1 if there is
an identity row; ``W``, ``R_w``: bytes and rounds of the power tree (``x^2``: 16 bytes and
2 rounds; each further level ``24 k`` bytes for ``k`` new powers and 2 rounds). For
``GELU_SECMOE6`` (J = 2, G = 4, I = 1): STC 32 + 8 = 40 bytes vs CTS 48 + 8 = 56 bytes per
element beyond the comparisons, 7 rounds each.

Truncation policy: every truncation is the dealer's (exact to one unit); local truncation of a
``(d + 1) f``-bit sum of magnitude ``2^51`` would fail with probability ``2^-12`` per element.

References:
  SecMoE, "Communication-Efficient Secure MoE Inference via Select-Then-Compute", AAAI 2026,
  arXiv:2601.06790, Protocol 2.
  D. Beaver, "Efficient multiparty protocols using circuit randomization", CRYPTO 1991.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import comm
from ..approx._piecewise import PiecewisePolynomial
from ..dealer import Material, register_kind, ring_struct, share_value
from ..kernels import DEFAULT_FRAC_BITS, Ring, check_ring, shl, uniform_ring
from ._arith import is_party0, mul, square, trunc
from ._compare import greater_equal_public

STRATEGIES = ("stc", "cts")
#: Largest ``(d + 1) f`` of the fast path: terms keep ``(d + 1) f`` fractional bits, and the
#: bounded segments' values (``|y| < 2^13``) must stay below ``2^62`` for the truncation.
FAST_SCALE_LIMIT = 48


# --------------------------------------------------------------------------------------------
# Table helpers (public, host side).
# --------------------------------------------------------------------------------------------
def _enc_int(value: float, bits: int) -> np.uint64:
    """``round(value * 2^bits) mod 2^64`` as a ``uint64`` scalar (bits may exceed 40)."""
    return np.uint64(int(round(float(value) * 2.0**bits)) % (1 << 64))


def _is_zero(row: Sequence[float]) -> bool:
    return all(c == 0.0 for c in row)


def _is_identity(row: Sequence[float]) -> bool:
    return len(row) >= 2 and row[1] == 1.0 and all(c == 0.0 for j, c in enumerate(row) if j != 1)


def _row_degree(row: Sequence[float]) -> int:
    nz = [j for j, c in enumerate(row) if c != 0.0]
    return max(nz) if nz else -1


def _rows(poly: PiecewisePolynomial) -> tuple[list[int], list[int]]:
    """Indices of the general (non-zero, non-identity) rows and of the identity rows."""
    general = [i for i, r in enumerate(poly.coeffs) if not _is_zero(r) and not _is_identity(r)]
    ident = [i for i, r in enumerate(poly.coeffs) if _is_identity(r)]
    return general, ident


def _extra_bits(poly: PiecewisePolynomial, base: int) -> int:
    """Extra fractional bits for the coefficients: terms of the bounded rows stay below 2^60.

    ``B = max_i sum_j |T[i, j]| R_i^j`` over the general rows, ``R_i`` the largest ``|x|`` of
    segment ``i``; the terms have ``base + extra`` bits, so ``extra = 60 - base - log2 B``
    (at most 16, at least 0; 0 when a general row is unbounded).
    """
    general, _ = _rows(poly)
    edges = (-math.inf,) + tuple(poly.breakpoints) + (math.inf,)
    bound = 0.0
    for i in general:
        r = max(abs(edges[i]), abs(edges[i + 1]))
        if math.isinf(r):
            return 0
        bound = max(bound, sum(abs(c) * r**j for j, c in enumerate(poly.coeffs[i])))
    if bound == 0.0:
        return 0
    return int(max(0, min(16, 60 - base - math.ceil(math.log2(bound)))))


def uses_fast_path(poly: PiecewisePolynomial, *, frac_bits: int = DEFAULT_FRAC_BITS) -> bool:
    """Whether :func:`piecewise` evaluates ``poly`` on the fused fast path (module docstring)."""
    general, _ = _rows(poly)
    ends = {0, poly.segments - 1}
    return (poly.degree + 1) * frac_bits <= FAST_SCALE_LIMIT and not (ends & set(general))


def _check(where: str, x: Ring, poly: PiecewisePolynomial, frac_bits: int) -> None:
    check_ring(where, x)
    if not isinstance(poly, PiecewisePolynomial):
        raise TypeError(
            f"{where}: poly must be a PiecewisePolynomial (see secmoe_jax.approx), got "
            f"{type(poly).__name__}"
        )
    if not isinstance(frac_bits, int) or not 0 < frac_bits <= 32:
        raise ValueError(f"{where}: frac_bits must be an int in (0, 32], got {frac_bits!r}")


# --------------------------------------------------------------------------------------------
# Local steps.
# --------------------------------------------------------------------------------------------
def onehot_from_indicators(ind: Ring) -> Ring:
    """One-hot segment shares from threshold indicators (local).

    Args:
      ind: ``uint64[S-1, ...]`` arithmetic 0/1 shares of ``[x >= b_k]`` for sorted ``b_k``.

    Returns:
      ``uint64[S, ...]``: ``seg_0 = 1 - ind_0``, ``seg_i = ind_{i-1} - ind_i``,
      ``seg_{S-1} = ind_{S-2}`` (exactly one is 1). Cost: 0 rounds, 0 bytes.
    """
    check_ring("onehot_from_indicators", ind)
    if ind.ndim < 1:
        raise ValueError("onehot_from_indicators: ind needs a leading threshold axis")
    one = is_party0()
    if ind.shape[0] == 0:
        return (one * jnp.ones((1,) + ind.shape[1:], jnp.uint64)).astype(jnp.uint64)
    return jnp.concatenate([(one - ind[0])[None], ind[:-1] - ind[1:], ind[-1:]], axis=0)


def select_coefficients(
    seg: Ring,
    table: np.ndarray,
    *,
    frac_bits: int | Sequence[int] = DEFAULT_FRAC_BITS,
) -> Ring:
    """Selected coefficients ``coef_j = sum_i seg_i T[i, j]`` (local, zero entries skipped).

    ``seg`` holds integer 0/1 shares, so the product with the public encoded table needs no
    truncation: the result is exactly the encoding of the active row.

    Args:
      seg: ``uint64[S, ...]`` one-hot shares.
      table: float ``[S, d+1]`` public coefficients.
      frac_bits: fractional bits of the encoding, one int or one per column.

    Returns:
      ``uint64[d+1, ...]`` shares of the active row. Cost: 0 rounds, 0 bytes.
    """
    check_ring("select_coefficients", seg)
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] != seg.shape[0]:
        raise ValueError(
            f"select_coefficients: table {table.shape} does not match {seg.shape[0]} segments"
        )
    cols = table.shape[1]
    bits = [frac_bits] * cols if isinstance(frac_bits, int) else list(frac_bits)
    out = []
    for j in range(cols):
        acc = jnp.zeros(seg.shape[1:], jnp.uint64)
        for i in range(table.shape[0]):
            if table[i, j] != 0.0:
                acc = acc + seg[i] * _enc_int(table[i, j], bits[j])
        out.append(acc)
    return jnp.stack(out)


# --------------------------------------------------------------------------------------------
# Fast path: one opening of x - a and of the masked selectors gives every s_k x^m.
# --------------------------------------------------------------------------------------------
def _poly_select_shapes(shape, degree, degs):
    return {
        "a": ring_struct((degree,) + tuple(shape)),
        "alpha": ring_struct((len(degs),) + tuple(shape)),
        "alpha_a": ring_struct((int(sum(degs)),) + tuple(shape)),
    }


@register_kind("poly_select", shapes=_poly_select_shapes)
def _gen_poly_select(key, weights_key, *, shape, degree, degs):
    """Shares of ``a^1..a^D``, of masks ``alpha_k`` and of ``alpha_k a^m`` (m = 1..degs[k])."""
    ka, kal, k1, k2, k3 = jax.random.split(key, 5)
    a = uniform_ring(ka, tuple(shape))
    pw = [a]
    for _ in range(1, degree):
        pw.append(pw[-1] * a)
    alpha = uniform_ring(kal, (len(degs),) + tuple(shape))
    prods = [alpha[k] * pw[m - 1] for k, dk in enumerate(degs) for m in range(1, dk + 1)]
    prods = jnp.stack(prods) if prods else jnp.zeros((0,) + tuple(shape), jnp.uint64)
    return {
        "a": share_value(k1, jnp.stack(pw)),
        "alpha": share_value(k2, alpha),
        "alpha_a": share_value(k3, prods),
    }


def _fused_products(
    x: Ring, sels: list[Ring], degs: list[int], mat: Material, *, label: str
) -> list[list[Ring]]:
    """Shares of ``s_k x^m`` for ``m = 1..degs[k]`` (exact ring products, no truncation).

    One round: open ``e = x - a`` and every ``s_k - alpha_k``; ``8 (1 + K)`` bytes per element.
    """
    degree = max(degs)
    t = mat.take("poly_select", shape=tuple(x.shape), degree=degree, degs=tuple(degs))
    e, sh = comm.open((x - t["a"][0], jnp.stack(sels) - t["alpha"]), label=label)
    one = is_party0()
    epow = [jnp.ones_like(e)]
    for _ in range(degree):
        epow.append(epow[-1] * e)
    # x^m = sum_l C(m, l) e^(m-l) a^l, with a^0 = 1 (public, party 0)
    xpow = [one * epow[0]]
    for m in range(1, degree + 1):
        acc = one * epow[m]
        for lv in range(1, m + 1):
            acc = acc + jnp.uint64(math.comb(m, lv)) * epow[m - lv] * t["a"][lv - 1]
        xpow.append(acc)
    out, pos = [], 0
    for k, dk in enumerate(degs):
        alpha_a = [t["alpha"][k]] + [t["alpha_a"][pos + m] for m in range(dk)]
        pos += dk
        prods = []
        for m in range(1, dk + 1):
            acc = sh[k] * xpow[m]
            for lv in range(0, m + 1):
                acc = acc + jnp.uint64(math.comb(m, lv)) * epow[m - lv] * alpha_a[lv]
            prods.append(acc)
        out.append(prods)
    return out


def _stc_fast(x, seg, poly, mat, frac_bits):
    d, f = poly.degree, frac_bits
    total = (d + 1) * f + _extra_bits(poly, (d + 1) * f)
    table = poly.table()
    general, ident = _rows(poly)
    sub = np.zeros_like(table)
    sub[general] = table[general]
    coef = select_coefficients(seg, sub, frac_bits=[total - j * f for j in range(d + 1)])
    cols = [j for j in range(1, d + 1) if np.any(sub[:, j] != 0.0)]
    sels, degs = [coef[j] for j in cols], list(cols)
    if ident:
        sels.append(sum(seg[i] for i in ident))
        degs.append(1)
    y_id = None
    y = coef[0]
    if sels:
        prods = _fused_products(x, sels, degs, mat, label="select")
        for n, j in enumerate(cols):
            y = y + prods[n][j - 1]
        if ident:
            y_id = prods[-1][0]
    y = trunc(y, mat, bits=total - f) if general else jnp.zeros_like(x)
    return y if y_id is None else y + y_id


def _cts_fast(x, seg, poly, mat, frac_bits):
    d, f = poly.degree, frac_bits
    total = (d + 1) * f + _extra_bits(poly, (d + 1) * f)
    table = poly.table()
    general, ident = _rows(poly)
    y = jnp.zeros_like(x)
    for i in general:  # constant terms: seg_i T[i, 0], no product
        if table[i, 0] != 0.0:
            y = y + seg[i] * _enc_int(table[i, 0], total)
    active = [i for i in general if _row_degree(table[i]) >= 1]
    sels = [seg[i] for i in active] + ([sum(seg[i] for i in ident)] if ident else [])
    degs = [_row_degree(table[i]) for i in active] + ([1] if ident else [])
    y_id = None
    if sels:
        prods = _fused_products(x, sels, degs, mat, label="select")
        for n, i in enumerate(active):
            for j in range(1, degs[n] + 1):
                if table[i, j] != 0.0:
                    y = y + prods[n][j - 1] * _enc_int(table[i, j], total - j * f)
        if ident:
            y_id = prods[-1][0]
    y = trunc(y, mat, bits=total - f) if general else jnp.zeros_like(x)
    return y if y_id is None else y + y_id


# --------------------------------------------------------------------------------------------
# General path: powers at f bits, then one stacked Beaver round and one truncation.
# --------------------------------------------------------------------------------------------
def powers(x: Ring, degree: int, mat: Material, *, frac_bits: int = DEFAULT_FRAC_BITS) -> Ring:
    """Shares of ``x^1 .. x^degree`` at ``frac_bits`` (a product tree, dealer truncations).

    Level ``L`` computes the powers ``2^(L-1) < j <= 2^L`` as ``x^(2^(L-1)) x^(j - 2^(L-1))``
    in one stacked product round (a square at level 1) and one truncation round. For large
    ``|x|`` the high powers wrap modulo 2^64 (garbage); callers multiply them by exact zeros.

    Returns:
      ``uint64[degree, ...]``.

    Cost: ``2 ceil(log2 degree)`` rounds; ``16`` bytes per element for ``x^2`` and ``24`` per
    further power.
    """
    check_ring("powers", x)
    p = {1: x}
    h = 1
    while h < degree:
        new = list(range(h + 1, min(2 * h, degree) + 1))
        if new == [2]:
            p[2] = square(x, mat, frac_bits=frac_bits)
        else:
            u = jnp.stack([p[h]] * len(new))
            v = jnp.stack([p[j - h] for j in new])
            z = mul(u, v, mat, frac_bits=frac_bits)
            p.update({j: z[n] for n, j in enumerate(new)})
        h *= 2
    return jnp.stack([p[j] for j in range(1, degree + 1)])


def poly_eval_secret_coeffs(
    x: Ring,
    coef: Ring,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    pw: Ring | None = None,
) -> Ring:
    """Shares of ``sum_j coef_j x^j`` with secret coefficients (general path).

    Protocol:
      1. powers ``x^1 .. x^d`` at ``f`` bits (:func:`powers`, unless given as ``pw``);
      2. ONE stacked Beaver round ``coef_j * x^j`` for the columns ``j >= 1`` (no truncation:
         ``2f``-bit products);
      3. sum with ``coef_0`` shifted to ``2f`` bits and truncate once (dealer).

    Args:
      x: ``uint64[...]`` shares at ``frac_bits``.
      coef: ``uint64[d+1, ...]`` shares at ``frac_bits``.
      pw: optional precomputed ``uint64[d, ...]`` powers (from :func:`powers`).

    Returns:
      ``uint64[...]`` shares at ``frac_bits``.

    Cost: that of :func:`powers` + 1 round, ``16 d`` bytes + 1 round, 8 bytes per element.
    """
    check_ring("poly_eval_secret_coeffs", x, coef)
    d = coef.shape[0] - 1
    y = shl(coef[0], frac_bits)
    if d >= 1:
        pw = powers(x, d, mat, frac_bits=frac_bits) if pw is None else pw
        y = y + jnp.sum(mul(coef[1:], pw[:d], mat, trunc="none"), axis=0, dtype=jnp.uint64)
    return trunc(y, mat, bits=frac_bits)


def _general(x, seg, poly, pw, mat, frac_bits, strategy):
    """General path: one stacked Beaver round, identity rows as ``seg_id * x`` at ``f`` bits."""
    f = frac_bits
    g = f + _extra_bits(poly, 2 * f)  # coefficient bits; terms have f + g bits
    table = poly.table()
    general, ident = _rows(poly)
    sub = np.zeros_like(table)
    sub[general] = table[general]
    if strategy == "stc":
        coef = select_coefficients(seg, sub, frac_bits=[f + g] + [g] * poly.degree)
        cols = [j for j in range(1, poly.degree + 1) if np.any(sub[:, j] != 0.0)]
        y = coef[0]
        sels, vals = [coef[j] for j in cols], [pw[j - 1] for j in cols]
    else:
        y = jnp.zeros_like(x)
        sels, vals = [], []
        for i in general:
            if table[i, 0] != 0.0:
                y = y + seg[i] * _enc_int(table[i, 0], f + g)
            if _row_degree(table[i]) >= 1:
                val = jnp.zeros_like(x)
                for j in range(1, poly.degree + 1):
                    if table[i, j] != 0.0:
                        val = val + pw[j - 1] * _enc_int(table[i, j], g)
                sels.append(seg[i])
                vals.append(val)
    npoly = len(sels)
    if ident:
        sels.append(sum(seg[i] for i in ident))
        vals.append(x)
    y_id = None
    if sels:
        z = mul(jnp.stack(sels), jnp.stack(vals), mat, trunc="none")
        y = y + jnp.sum(z[:npoly], axis=0, dtype=jnp.uint64)
        if ident:
            y_id = z[-1]
    y = trunc(y, mat, bits=g) if general else jnp.zeros_like(x)
    return y if y_id is None else y + y_id


# --------------------------------------------------------------------------------------------
# Public protocols.
# --------------------------------------------------------------------------------------------
def _evaluate(x, poly, mat, frac_bits, strategy, cmp_bits, seg):
    fast = uses_fast_path(poly, frac_bits=frac_bits)
    pw = None
    if not fast and poly.degree >= 2:  # powers first: they do not depend on the comparisons
        pw = powers(x, poly.degree, mat, frac_bits=frac_bits)
    elif not fast:
        pw = x[None]
    if seg is None:
        if poly.breakpoints:
            ind = greater_equal_public(x, poly.breakpoints, mat, frac_bits=frac_bits, bits=cmp_bits)
        else:
            ind = jnp.zeros((0,) + x.shape, jnp.uint64)
        seg = onehot_from_indicators(ind)
    elif seg.shape != (poly.segments,) + tuple(x.shape):
        raise ValueError(
            f"piecewise: seg must have shape {(poly.segments,) + tuple(x.shape)}, got {seg.shape}"
        )
    if not fast:
        return _general(x, seg, poly, pw, mat, frac_bits, strategy)
    if strategy == "stc":
        return _stc_fast(x, seg, poly, mat, frac_bits)
    return _cts_fast(x, seg, poly, mat, frac_bits)


def piecewise_stc(
    x: Ring,
    poly: PiecewisePolynomial,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    cmp_bits: int = 64,
    seg: Ring | None = None,
) -> Ring:
    """Select-Then-Compute: select the active row's coefficients, evaluate one polynomial.

    Protocol (see the module docstring for the fast and general paths):
      1. ``ind = [x >= b_k]`` for all breakpoints in one comparison batch;
      2. one-hot ``seg`` (local);
      3. ``coef = seg . T`` (local, public table);
      4. one round of ``coef_j x^j`` products (fast path: opens ``x - a`` and the masked
         coefficients; general path: powers were computed before step 1);
      5. one dealer truncation of the sum.

    Args:
      x: ``uint64[...]`` shares at ``frac_bits`` (any shape).
      poly: the approximation (static).
      cmp_bits: comparison bit width (see :func:`~secmoe_jax.protocols._compare.msb`): below 64
        the caller guarantees ``|x - b_k| < 2^(cmp_bits - 1 - frac_bits)``.
      seg: optional precomputed one-hot ``uint64[S, ...]`` (skips steps 1-2).

    Returns:
      ``uint64[...]`` shares of ``poly(x)`` at ``frac_bits``.

    Cost: module docstring table (GELU_SECMOE6 on 64-bit inputs: 7 rounds,
    ``8 * 5 + 336 * ceil(5 n / 64) / n + 40`` bytes per element per party).

    References:
      SecMoE, arXiv:2601.06790, Protocol 2.
    """
    _check("piecewise_stc", x, poly, frac_bits)
    return _evaluate(x, poly, mat, frac_bits, "stc", cmp_bits, seg)


def piecewise_cts(
    x: Ring,
    poly: PiecewisePolynomial,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    cmp_bits: int = 64,
    seg: Ring | None = None,
) -> Ring:
    """Compute-then-select: every non-zero segment's polynomial times its indicator, summed.

    Protocol: steps 1-2 of :func:`piecewise_stc`; then one round of products
    ``seg_i * P_i(x)`` for the non-constant non-zero segments (``P_i`` has public
    coefficients); one dealer truncation of the sum. Arguments as :func:`piecewise_stc`.

    Cost: module docstring table (GELU_SECMOE6: 7 rounds, 16 more bytes per element per party
    than Select-Then-Compute).
    """
    _check("piecewise_cts", x, poly, frac_bits)
    return _evaluate(x, poly, mat, frac_bits, "cts", cmp_bits, seg)


def piecewise(
    x: Ring,
    poly: PiecewisePolynomial,
    mat: Material,
    *,
    strategy: str = "stc",
    frac_bits: int = DEFAULT_FRAC_BITS,
    cmp_bits: int = 64,
    seg: Ring | None = None,
) -> Ring:
    """Evaluate ``poly`` on shares with ``strategy`` in ``("stc", "cts")``; see those."""
    if strategy not in STRATEGIES:
        raise ValueError(f"piecewise: strategy must be one of {STRATEGIES}, got {strategy!r}")
    fn = piecewise_stc if strategy == "stc" else piecewise_cts
    return fn(x, poly, mat, frac_bits=frac_bits, cmp_bits=cmp_bits, seg=seg)
