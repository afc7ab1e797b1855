"""SecFormer's GeLU: a saturated sine-series erf, every sine from ONE masked opening.

``GeLU(x) = 0.5 x (1 + E(x / sqrt 2))`` with ``E(u) = -1`` below ``-s``, ``+1`` from ``s`` on and
``F(u) = sum_k beta_k sin(k w u)`` in between (``w = 2 pi / P``, :class:`FourierErfGelu`). With
``lo = [u >= -s]`` and ``hi = [u >= s]`` (so ``mid = lo - hi``), ``GeLU = hi x + mid G`` with
``G = 0.5 x (1 + F(u))``.

Protocol (one party's view; ``f`` = frac_bits, ``g = 32`` bits for the public ``1/sqrt 2``,
``P = 2^p`` the period, ``f_d = 24`` opened fractional bits, ``f_t = f_c = 20`` bits for the
dealer's trig shares and the public coefficients):

1. Comparisons ``[x >= -s sqrt 2]``, ``[x >= s sqrt 2]`` in ONE batch (5 rounds).
2. Dealer: ``t`` uniform in ``[0, P 2^(f+g))`` (an integer), shares of ``t``, of
   ``C_k = cos(k w t')``, ``S_k = sin(k w t')`` (``t' = t / 2^(f+g)``, at ``f_t`` bits), of masks
   ``a`` (for ``x``), ``alpha`` (for ``mid``), ``beta`` (for ``hi``) and of the products
   ``a C_k, a S_k, alpha a, alpha C_k, alpha S_k, alpha a C_k, alpha a S_k, beta a``.
3. ONE opening (label ``"fourier"``): ``v = x enc_g(1/sqrt 2) + t`` has ``f + g`` fractional bits;
   each party sends bits ``f + g - f_d .. f + g + p - 1`` of its share as a ``uint32`` word
   (``p + f_d = 27`` bits; reduction modulo a power of two is a ring homomorphism, and dropping
   the low bits of each share costs at most one unit of ``2^-f_d`` in the sum), giving
   ``d = (u + t') mod P`` (uniform: masked by ``t``); in the same round ``e = x - a``,
   ``mid - alpha``, ``hi - beta`` (uniform ring words).
4. Local: ``sin(k w u) = sin(k w d) C_k - cos(k w d) S_k`` (public ``d``), and
   ``mid x (1 + F) = (mid x) 2^(f_t+f_c) + sum_k p_k (mid x C_k) - q_k (mid x S_k)`` with public
   ``p_k = beta_k sin(k w d)``, ``q_k = beta_k cos(k w d)`` (at ``f_c`` bits). Every product of
   shared factors (``mid x C_k`` etc.) is a public-coefficient combination of the dealer's
   products, because ``x = e + a`` and ``mid = (mid - alpha) + alpha`` with public ``e`` and
   ``mid - alpha``: exact in the ring, no round. Likewise ``hi x``.
5. One dealer truncation of ``mid x (1 + F)`` by ``f_t + f_c + 1`` bits (the ``0.5``), plus
   ``hi x`` (already at ``f`` bits).

For ``|u| >= s`` the factor ``mid`` is an exact ring zero, so the sine part never matters there
(and never overflows: ``|x (1 + F)| < 8`` inside, ``8 2^(f + f_t + f_c) < 2^62``).

Cost (per element, per party): comparisons ``16 + 336 ceil(2n/64)/n`` bytes (5 rounds) +
``4 + 3 * 8`` bytes (1 round) + 8 bytes (1 round): 7 rounds, about 62.5 bytes. Offline:
``8 K + 6`` words of this protocol plus the comparison and truncation material.

References:
  Luo et al., "SecFormer: Fast and Accurate Privacy-Preserving Inference for Transformer
  Models via SMPC", ACL Findings 2024, arXiv:2401.00793 (the sine-series erf, ``fur_sin``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import comm
from ..approx._fourier import FourierErfGelu
from ..dealer import Material, register_kind, ring_struct, share_value
from ..kernels import DEFAULT_FRAC_BITS, Ring, check_ring, encode, shl, uniform_ring
from ._arith import is_party0, trunc
from ._compare import greater_equal_public

SCALE_BITS = 32  # g: fractional bits of the public 1/sqrt(2)
OPEN_FRAC_BITS = 24  # f_d: fractional bits of the opened angle d
TRIG_BITS = 20  # f_t: dealer's sin/cos shares
COEF_BITS = 20  # f_c: public per-element coefficients beta_k sin/cos(k w d)


def _period_bits(period: float) -> int:
    m, e = math.frexp(period)
    if m != 0.5:
        raise ValueError(
            f"fourier_gelu: the period {period} must be a power of two (exact reduction in the "
            "ring); refit the series (secmoe_jax.approx) with a power-of-two period"
        )
    return e - 1


def _fourier_shapes(shape, terms, period_bits, frac, trig_bits):
    s = ring_struct(shape)
    sk = ring_struct((terms,) + tuple(shape))
    return {
        "t": s, "c": sk, "s": sk, "a": s, "ac": sk, "as": sk,
        "al": s, "al_a": s, "al_c": sk, "al_s": sk, "al_ac": sk, "al_as": sk,
        "be": s, "be_a": s,
    }  # fmt: skip


@register_kind("fourier_gelu", shapes=_fourier_shapes)
def _gen_fourier(key, weights_key, *, shape, terms, period_bits, frac, trig_bits):
    """The mask ``t`` (``frac + period_bits`` uniform bits), its sines/cosines and products."""
    keys = jax.random.split(key, 18)
    shape = tuple(shape)
    t = uniform_ring(keys[0], shape) >> jnp.uint64(64 - frac - period_bits)
    omega = 2.0 * math.pi / 2.0**period_bits
    ang = (
        jnp.arange(1, terms + 1, dtype=jnp.float64).reshape((terms,) + (1,) * len(shape))
        * omega
        * (t.astype(jnp.float64) * 2.0**-frac)
    )
    cos, sin = encode(jnp.cos(ang), trig_bits), encode(jnp.sin(ang), trig_bits)
    a = uniform_ring(keys[1], shape)
    al = uniform_ring(keys[2], shape)
    be = uniform_ring(keys[3], shape)
    vals = {
        "t": t, "c": cos, "s": sin, "a": a, "ac": a * cos, "as": a * sin,
        "al": al, "al_a": al * a, "al_c": al * cos, "al_s": al * sin,
        "al_ac": al * a * cos, "al_as": al * a * sin, "be": be, "be_a": be * a,
    }  # fmt: skip
    return {k: share_value(keys[4 + i], v) for i, (k, v) in enumerate(vals.items())}


def fourier_gelu(
    x: Ring,
    approx: FourierErfGelu,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    cmp_bits: int = 64,
) -> Ring:
    """Shares of SecFormer's GeLU ``0.5 x (1 + E(x / sqrt 2))`` (module docstring).

    Args:
      x: ``uint64[...]`` shares at ``frac_bits`` (any shape).
      approx: the sine-series erf (static; its period must be a power of two).
      mat: dealer material.
      frac_bits: fixed-point fractional bits (at most 27).
      cmp_bits: comparison bit width (:func:`~secmoe_jax.protocols._compare.msb`).

    Returns:
      ``uint64[...]`` shares at ``frac_bits``.

    Cost: 7 rounds; per element per party ``16 + 336 ceil(2n/64)/n`` (comparisons)
    ``+ 28 + 8`` bytes.
    """
    check_ring("fourier_gelu", x)
    if not isinstance(approx, FourierErfGelu):
        raise TypeError(
            f"fourier_gelu: approx must be a FourierErfGelu, got {type(approx).__name__}"
        )
    p = _period_bits(approx.period)
    f, g, fd = frac_bits, SCALE_BITS, OPEN_FRAC_BITS
    window = p + fd
    if not 0 < f <= 27 or window > 32 or f + g + p > 63:
        raise ValueError(
            f"fourier_gelu: unsupported frac_bits={f} / period={approx.period} "
            f"(need the {window}-bit opened window <= 32 bits and f + {g} + log2(P) <= 63)"
        )
    terms = approx.terms
    thr = approx.saturation * math.sqrt(2.0)
    ind = greater_equal_public(x, (-thr, thr), mat, frac_bits=f, bits=cmp_bits)
    mid, hi = ind[0] - ind[1], ind[1]
    m = mat.take(
        "fourier_gelu",
        shape=tuple(x.shape),
        terms=terms,
        period_bits=p,
        frac=f + g,
        trig_bits=TRIG_BITS,
    )
    c_enc = np.uint64(round(2.0**g / math.sqrt(2.0)))
    v = x * c_enc + m["t"]  # shares of u + t' at f + g fractional bits
    mask = np.uint32((1 << window) - 1)
    word = (v >> jnp.uint64(f + g - fd)).astype(jnp.uint32) & mask
    dw, e, mh, hh = comm.open((word, x - m["a"], mid - m["al"], hi - m["be"]), label="fourier")
    d = (dw & mask).astype(jnp.float64) * 2.0**-fd  # (u + t') mod P, public
    # sin/cos(k w d) by the angle-addition recurrence (two transcendentals per element)
    c1, s1 = jnp.cos(approx.omega * d), jnp.sin(approx.omega * d)
    cs, sn = [c1], [s1]
    for _ in range(1, terms):
        cs.append(cs[-1] * c1 - sn[-1] * s1)
        sn.append(sn[-1] * c1 + cs[-2] * s1)
    beta = jnp.asarray(approx.coeffs, dtype=jnp.float64).reshape((terms,) + (1,) * x.ndim)
    pk = encode(beta * jnp.stack(sn), COEF_BITS)
    qk = encode(beta * jnp.stack(cs), COEF_BITS)
    one = is_party0()
    # mid x and mid x C_k, mid x S_k from public e, mh and the dealer's products
    mx = one * mh * e + mh * m["a"] + e * m["al"] + m["al_a"]
    mxc = (mh * e)[None] * m["c"] + mh[None] * m["ac"] + e[None] * m["al_c"] + m["al_ac"]
    mxs = (mh * e)[None] * m["s"] + mh[None] * m["as"] + e[None] * m["al_s"] + m["al_as"]
    big = shl(mx, TRIG_BITS + COEF_BITS) + jnp.sum(pk * mxc - qk * mxs, axis=0, dtype=jnp.uint64)
    y_mid = trunc(big, mat, bits=TRIG_BITS + COEF_BITS + 1)
    y_hi = one * hh * e + hh * m["a"] + e * m["be"] + m["be_a"]
    return y_mid + y_hi
