"""Iterative protocols: reciprocal and inverse square root (Goldschmidt, Newton), limit-form exp.

All of them run on one small engine, the **masked circuit** (:class:`Circuit`): a value is
*opened* once, masked by fresh dealer randomness and optionally truncated in the same round,
and afterwards any polynomial in opened values is a LOCAL computation, because the dealer also
shares the needed products of the masks. This fuses three things a Beaver-triple protocol pays
rounds for:

* **the truncation of a product is fused into the next product.** A ``2f``-bit value ``z`` is
  opened as ``c = z + 2^62 + r`` (the dealer truncation of :func:`~._arith.trunc`); its
  truncation is ``z_t = P - h + W m`` with public ``P = (c >> b) - 2^(62-b)`` and
  ``W = (1 - MSB(c)) 2^(64-b)``, and shares of ``h = r >> b`` and ``m = MSB(r)``. Exact to one
  unit (never a catastrophic error) for ``|z| < 2^62``.
* **every product of opened values is local.** ``prod_i z_i^(e_i)`` expands, in the ring, into
  public coefficients (powers of ``P_i`` and ``W_i``) times products of ``h_i`` and ``m_i`` that
  the dealer shares (``G`` items). Terms whose public coefficient has a factor
  ``2^(sum t_i (64 - b_i)) = 0 mod 2^64`` are dropped statically. Degree and mixing of values
  opened in different rounds are free as long as the fixed-point scale stays below ``2^62``.
* **one round per iteration.** A Goldschmidt step (``x <- x m``, ``y <- y m``; or the
  inverse-square-root step with ``m^2``) is ONE opening of the state, with its truncation.

Deflation by a public power of two is a pure reinterpretation of the fixed-point scale, so it
costs nothing; deflation by a secret, comparison-selected power of two (a tuple of bounds) is one
comparison batch and one product round.

Fixed-point scales are static integers tracked next to every value (``z`` at scale ``s`` is the
ring element ``round(z 2^s)``); every opening names the number of bits it truncates.

Cost (``n`` elements, bytes per party; single public bound; input opened once):

=====================  ============  =========================
protocol               rounds        bytes per party
=====================  ============  =========================
goldschmidt reciprocal ``t + 1``     ``8 n max(2 t - 1, 2)``
newton reciprocal      ``2 t - 1``   ``8 n (2 t - 1)`` (t >= 2; t = 1 as Goldschmidt)
goldschmidt rsqrt      ``t + 1``     ``8 n max(2 t - 1, 2)``
newton rsqrt           ``2 t - 1``   ``8 n (2 t - 1)`` (t >= 2; t = 1 as Goldschmidt)
exp (no clip)          ``k + 1``     ``8 n (k + 1)``
exp (clip)             ``k + 6``     ``C(n) + 8 n (k + 2)``
=====================  ============  =========================

(``t`` iterations, ``k`` squarings, ``C(n)`` a 64-bit comparison batch: 5 rounds,
``8 n + 336 ceil(n / 64)`` bytes.) A tuple of bounds adds one comparison batch on the input
(5 rounds) and one deflation round opening ``x`` and the selected scale(s); Goldschmidt
rsqrt starts from the selected ``1 / sqrt(B_j)`` (``+ 24 n`` bytes in all), the others need
one more round for the selected output scale (reciprocal: ``+ 32 n`` bytes in all).

References:
  R. Goldschmidt, "Applications of division by convergence", MIT, 1964.
  J. Luo et al., "SecFormer", ACL Findings 2024, arXiv:2401.00793 (input deflation).
  B. Knott et al., "CrypTen", NeurIPS 2021 (limit-form exp; Newton-Raphson baselines).
  D. Beaver, "Efficient multiparty protocols using circuit randomization", CRYPTO 1991.
  P. Mohassel, P. Rindal, "ABY3", CCS 2018; A. Patra et al., "ABY2.0", USENIX Security 2021
  (values kept masked by dealer-known randomness between gates).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from .. import comm
from ..dealer import Material, register_kind, ring_struct
from ..kernels import DEFAULT_FRAC_BITS, Ring, check_ring, msb, ring_const, shl, shr, uniform_ring
from ._arith import is_party0
from ._compare import greater_equal_public

METHODS = ("goldschmidt", "newton")
_OFFSET = 62  # the dealer truncation's offset: z + 2^62 is non-negative for |z| < 2^62
_MASK64 = (1 << 64) - 1

Mono = tuple[tuple[int, int], ...]  # ((var, exponent), ...) sorted by var
GKey = tuple[tuple[int, int, bool], ...]  # ((var, power of h, times m?), ...) sorted by var


# --------------------------------------------------------------------------------------------
# The masked-circuit engine.
# --------------------------------------------------------------------------------------------
def _ring_int(value: int) -> Ring:
    return jnp.uint64(int(value) & _MASK64)


def _canon(factors: Sequence[Any]) -> Mono:
    exps: dict[int, int] = {}
    for f in factors:
        v, e = (f, 1) if isinstance(f, int) else (int(f[0]), int(f[1]))
        if e < 0:
            raise ValueError(f"Circuit: negative exponent {e} for variable {v}")
        if e:
            exps[v] = exps.get(v, 0) + e
    return tuple(sorted(exps.items()))


def _expansion(mono: Mono, bits: Sequence[int]):
    """Terms of ``prod_i (P_i - L_i)^(e_i)`` with ``L_i = h_i - W_i m_i``.

    Yields ``(s, t, key)``: ``s`` the powers of ``L`` per factor (``e - s`` of ``P``), ``t`` the
    powers of ``W m`` taken from each ``L^s`` (``m^t = m``), and the dealer item ``key``
    (``()`` for the public constant term). Terms with ``W``-power ``>= 2^64`` vanish.
    """
    for s in itertools.product(*(range(e + 1) for _, e in mono)):
        supp = [(v, si) for (v, _), si in zip(mono, s, strict=True) if si]
        if not supp:
            yield s, (), ()
            continue
        opts = [range(si + 1) if bits[v] else range(1) for v, si in supp]
        for t in itertools.product(*opts):
            if sum(ti * (64 - bits[v]) for (v, _), ti in zip(supp, t, strict=True)) >= 64:
                continue
            key = tuple((v, si - ti, ti > 0) for (v, si), ti in zip(supp, t, strict=True))
            yield s, t, key


def _key_shape(key: GKey, var_shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(*(var_shapes[v] for v, _, _ in key)))


def _circuit_shapes(var_shapes, var_bits, keys):
    return {
        "r": tuple(ring_struct(s) for s in var_shapes),
        "g": tuple(ring_struct(_key_shape(k, var_shapes)) for k in keys),
    }


@register_kind("masked_circuit", shapes=_circuit_shapes)
def _gen_circuit(key, weights_key, *, var_shapes, var_bits, keys):
    """Masks ``r_i`` of every variable and the products ``G(key)`` of ``h = r >> b``, ``m``.

    All randomness (masks and the first party's shares) comes from ONE uniform draw, sliced:
    one threefry call per circuit keeps the compiled program small.
    """
    key_shapes = [_key_shape(k, var_shapes) for k in keys]
    sizes_r = [math.prod(s) for s in var_shapes]
    sizes_g = [math.prod(s) for s in key_shapes]
    words = uniform_ring(key, (2 * sum(sizes_r) + sum(sizes_g),))
    offsets = itertools.accumulate([0, *sizes_r, *sizes_r, *sizes_g])
    chunks = [words[a:b] for a, b in itertools.pairwise(offsets)]
    nv = len(var_shapes)
    r = [chunks[i].reshape(s) for i, s in enumerate(var_shapes)]
    h = [shr(ri, b) if b else ri for ri, b in zip(r, var_bits, strict=True)]
    m = [msb(ri) if b else None for ri, b in zip(r, var_bits, strict=True)]

    def share(value: Ring, s0: Ring) -> Ring:
        s0 = s0.reshape(value.shape)
        return jnp.stack([s0, value - s0])

    out_r = tuple(share(ri, chunks[nv + i]) for i, ri in enumerate(r))
    out_g = []
    for j, (k, shape) in enumerate(zip(keys, key_shapes, strict=True)):
        val = None
        for v, a, with_m in k:
            term = m[v] if with_m else None
            for _ in range(a):
                term = h[v] if term is None else term * h[v]
            val = term if val is None else val * term
        out_g.append(share(jnp.broadcast_to(val, shape), chunks[2 * nv + j]))
    return {"r": out_r, "g": tuple(out_g)}


class Circuit:
    """Static plan of a masked circuit: variables (shape, truncation bits) and monomials.

    Declare every variable (:meth:`var`) and every monomial the run will evaluate (:meth:`need`)
    before :meth:`start`, which takes ONE dealer item for the whole circuit (masks and all
    mask products, so values opened in different rounds can be multiplied).
    """

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []
        self.bits: list[int] = []
        self.keys: set[GKey] = set()

    def var(self, shape: Sequence[int], bits: int = 0) -> int:
        """A value opened once, truncated by ``bits`` (0: not truncated) on opening."""
        if not isinstance(bits, int) or not 0 <= bits <= 61:
            raise ValueError(f"Circuit.var: bits must be an int in [0, 61], got {bits!r}")
        self.shapes.append(tuple(int(s) for s in shape))
        self.bits.append(bits)
        v = len(self.shapes) - 1
        self.need((v, 1))
        return v

    def need(self, *factors: Any) -> Mono:
        """Declare the monomial ``prod v^e`` (factors: var ids or ``(var, e)`` pairs)."""
        mono = _canon(factors)
        np.broadcast_shapes(*(self.shapes[v] for v, _ in mono))  # shapes must broadcast
        for _, _, key in _expansion(mono, self.bits):
            if key:
                self.keys.add(key)
        return mono

    def start(self, mat: Material) -> Live:
        """Take the circuit's dealer item and return the runtime handle."""
        keys = tuple(sorted(self.keys))
        item = mat.take(
            "masked_circuit",
            var_shapes=tuple(self.shapes),
            var_bits=tuple(self.bits),
            keys=keys,
        )
        return Live(self.shapes, self.bits, keys, item)


class Live:
    """Runtime of a :class:`Circuit`: :meth:`open` (one round) and local :meth:`mono`."""

    def __init__(self, shapes, bits, keys, item) -> None:
        self.shapes, self.bits = list(shapes), list(bits)
        self._r = item["r"]
        self._g = dict(zip(keys, item["g"], strict=True))
        self._p: dict[int, Ring] = {}
        self._w: dict[int, Ring] = {}

    def open(self, values: dict[int, Ring], *, label: str) -> None:
        """Open (and truncate) the given variables in ONE round.

        Each party sends ``z + r`` (``+ 2^62`` on party 0 when truncating): 8 bytes per element,
        uniform because ``r`` is a fresh dealer mask. Truncated values must satisfy
        ``|z| < 2^62``.
        """
        p0 = is_party0()
        order = sorted(values)
        payload = []
        for v in order:
            z = values[v]
            check_ring(f"Circuit.open({label})", z)
            if v in self._p:
                raise ValueError(f"Circuit.open({label}): variable {v} is already open")
            if tuple(z.shape) != self.shapes[v]:
                raise ValueError(
                    f"Circuit.open({label}): variable {v} has shape {self.shapes[v]}, "
                    f"got {tuple(z.shape)}"
                )
            off = p0 * ring_const(1 << _OFFSET) if self.bits[v] else jnp.uint64(0)
            payload.append(z + off + self._r[v])
        opened = comm.open(tuple(payload), label=label)
        for v, c in zip(order, opened, strict=True):
            b = self.bits[v]
            if b:
                self._p[v] = shr(c, b) - ring_const(1 << (_OFFSET - b))
                self._w[v] = shl(jnp.uint64(1) - msb(c), 64 - b)
            else:
                self._p[v] = c

    def mono(self, *factors: Any) -> Ring:
        """Shares of ``prod v^e`` over opened variables (local; exact in the ring)."""
        mono = _canon(factors)
        for v, _ in mono:
            if v not in self._p:
                raise ValueError(f"Circuit.mono: variable {v} is not open yet")
        p0 = is_party0()
        shape = tuple(np.broadcast_shapes(*(self.shapes[v] for v, _ in mono)))
        pw: dict[tuple[int, int], Ring] = {}

        def ppow(v: int, k: int) -> Ring:
            if (v, k) not in pw:
                pw[v, k] = jnp.uint64(1) if k == 0 else ppow(v, k - 1) * self._p[v]
            return pw[v, k]

        out = jnp.zeros(shape, jnp.uint64)
        for s, t, key in _expansion(mono, self.bits):
            coef: Any = _ring_int(1)
            for (v, e), si in zip(mono, s, strict=True):
                c = math.comb(e, si) * (-1) ** si
                coef = coef * _ring_int(c) * ppow(v, e - si)
            if not key:
                out = out + p0 * coef
                continue
            supp = [(v, si) for (v, _), si in zip(mono, s, strict=True) if si]
            for (v, si), ti in zip(supp, t, strict=True):
                if ti:
                    wt = self._w[v]
                    wpow = wt
                    for _ in range(ti - 1):
                        wpow = wpow * wt
                    coef = coef * _ring_int(math.comb(si, ti) * (-1) ** ti) * wpow
            try:
                g = self._g[key]
            except KeyError:
                raise ValueError(
                    f"Circuit.mono: monomial {mono} was not declared with Circuit.need"
                ) from None
            out = out + coef * g
        return jnp.broadcast_to(out, shape)

    def val(self, v: int) -> Ring:
        """Shares of the opened (truncated) variable ``v`` itself."""
        return self.mono((v, 1))


def rescale(x: Ring, scale: int, target: int) -> tuple[Ring, int]:
    """``(x', bits)`` such that opening ``x'`` with ``bits`` gives ``x`` at scale ``target``."""
    if scale >= target:
        return x, scale - target
    return shl(x, target - scale), 0


def const(value: float | int, scale: int, shape=()) -> Ring:
    """Party 0's share of a public constant at ``scale`` (party 1 holds 0)."""
    enc = int(round(float(value) * 2.0**scale)) if scale >= 0 else int(round(value / 2**-scale))
    return is_party0() * jnp.full(shape, np.uint64(enc & _MASK64), jnp.uint64)


def times(x: Ring, k: int) -> Ring:
    """Shares of ``k x`` for a public Python integer ``k`` (any sign)."""
    return x * _ring_int(k)


def up(x: Ring, bits: int) -> Ring:
    """Shares of ``x 2^bits`` (a scale change, exact)."""
    return shl(x, bits) if bits else x


# --------------------------------------------------------------------------------------------
# Static checks.
# --------------------------------------------------------------------------------------------
def _check_iters(where: str, iters: Any) -> int:
    if not isinstance(iters, int | np.integer) or isinstance(iters, bool) or int(iters) < 1:
        raise ValueError(f"{where}: iters must be a positive int, got {iters!r}")
    return int(iters)


def _check_method(where: str, method: Any) -> str:
    if method not in METHODS:
        raise ValueError(f"{where}: unknown method {method!r}; valid methods are {METHODS}")
    return method


def _pow2_exponent(where: str, b: Any) -> int:
    b = float(b)
    if not (b > 0.0 and math.isfinite(b)):
        raise ValueError(f"{where}: bounds must be positive finite floats, got {b!r}")
    return math.ceil(math.log2(b) - 1e-12)


def effective_bound(bound: float | Sequence[float]) -> float | tuple[float, ...]:
    """The bound(s) the protocols deflate by: each rounded UP to a power of two."""
    if isinstance(bound, tuple | list):
        return tuple(2.0 ** _pow2_exponent("effective_bound", b) for b in bound)
    return 2.0 ** _pow2_exponent("effective_bound", bound)


def _check_bound(where: str, bound: Any) -> tuple[int, ...]:
    """Exponents ``k_j`` of the power-of-two bounds (one for a float bound)."""
    if isinstance(bound, tuple | list):
        if not bound:
            raise ValueError(f"{where}: bound tuple must not be empty")
        ks = tuple(_pow2_exponent(where, b) for b in bound)
        if any(a >= b for a, b in zip(ks[:-1], ks[1:], strict=False)):
            raise ValueError(
                f"{where}: bounds must be strictly increasing after rounding up to powers of "
                f"two, got {bound!r} -> {[2.0**k for k in ks]}"
            )
        if len(ks) > 1 and (ks[-1] > 40 or ks[0] < -20):
            raise ValueError(f"{where}: bounds must lie in [2^-20, 2^40], got {bound!r}")
        return ks
    k = _pow2_exponent(where, bound)
    if not -30 <= k <= 40:
        raise ValueError(f"{where}: bound must lie in [2^-30, 2^40], got {bound!r}")
    return (k,)


def _onehot(bits: Ring) -> list[Ring]:
    """Buckets from ``s_j = [x >= B_j]`` (integer shares): ``1 - s_0, s_0 - s_1, ..., s_last``."""
    one = is_party0()
    s = [bits[j] for j in range(bits.shape[0])]
    return [one - s[0]] + [s[j - 1] - s[j] for j in range(1, len(s))] + [s[-1]]


def _select(onehot: list[Ring], values: Sequence[int]) -> Ring:
    """Shares of ``sum_j t_j values_j`` for public integers (local)."""
    out = None
    for t, val in zip(onehot, values, strict=True):
        term = t * _ring_int(val)
        out = term if out is None else out + term
    return out


# --------------------------------------------------------------------------------------------
# Iterations on a deflated input (shared by reciprocal, rsqrt, LayerNorm, softmax).
# --------------------------------------------------------------------------------------------
#: working fractional bits of the reciprocal state (x~ <= 2^21 fits 2F + 21 < 62)
RECIP_WORK_BITS = 20
#: working fractional bits of the inverse-square-root state (cubic terms at 3F + 2 bits);
#: the paths starting from a selected ``rho`` (LayerNorm, bucket deflation) use 16
RSQRT_WORK_BITS = 18
_RHO_WORK_BITS = 16


class GoldschmidtReciprocal:
    """Goldschmidt ``1 / y'`` of a pending deflated ``y'`` (``x~ <- x~ m``, ``y' <- y' m``).

    Round 1 opens ``y'_0`` (truncated to ``F`` bits from ``in_scale``): ``x~_1 = 2 - y'_0``,
    ``y'_1 = 2 y'_0 - y'_0^2``. Round 2 opens ``y'_1``: ``x~_2 = (2 - y'_0)(2 - y'_1)``. Round
    ``j >= 3`` opens ``(x~, y')``: ``x~ <- 2 x~ - x~ y'``, ``y' <- 2 y' - y'^2``. The result
    ``x~_t`` is returned pending (scale ``F`` for ``t = 1``, else ``2 F``). Rounds: ``t``.
    """

    def __init__(self, c: Circuit, shape, in_scale: int, iters: int, work: int = RECIP_WORK_BITS):
        self.iters, self.f, self.in_scale = iters, work, in_scale
        self.y = [c.var(shape, max(0, in_scale - work))]
        self.x: list[int | None] = [None]
        if iters >= 2:
            c.need((self.y[0], 2))
        for j in range(1, iters):
            self.y.append(c.var(shape, work))
            self.x.append(None if j == 1 else c.var(shape, work))
            if j == 1:
                c.need(self.y[0], self.y[1])
            else:
                c.need(self.x[j], self.y[j])
            if j < iters - 1:
                c.need((self.y[j], 2))

    def run(self, live: Live, y0: Ring, *, extra=None, label="goldschmidt") -> tuple[Ring, int]:
        """``y0`` pending at ``in_scale``; ``extra`` more variables for the first opening."""
        f = self.f
        y0r, _ = rescale(y0, self.in_scale, f)
        live.open({self.y[0]: y0r, **(extra or {})}, label=f"{label}1")
        v0 = live.val(self.y[0])
        x_t, x_scale = const(2, f) - v0, f
        if self.iters >= 2:
            y_next = times(up(v0, f), 2) - live.mono((self.y[0], 2))
        for j in range(1, self.iters):
            vals = {self.y[j]: y_next}
            if j >= 2:
                vals[self.x[j]] = x_t
            live.open(vals, label=f"{label}{j + 1}")
            vy = live.val(self.y[j])
            if j == 1:  # (2 - y0)(2 - y1) = 4 - 2 y0 - 2 y1 + y0 y1
                x_t = (
                    const(4, 2 * f)
                    - times(up(v0, f), 2)
                    - times(up(vy, f), 2)
                    + live.mono(self.y[0], self.y[1])
                )
            else:
                vx = live.val(self.x[j])
                x_t = times(up(vx, f), 2) - live.mono(self.x[j], self.y[j])
            x_scale = 2 * f
            if j < self.iters - 1:
                y_next = times(up(vy, f), 2) - live.mono((self.y[j], 2))
        return x_t, x_scale


class NewtonReciprocal:
    """Newton-Raphson ``1 / y'``: ``x~ <- x~ (2 - y' x~)`` as two rounds per iteration.

    Round 1 opens ``y'`` (kept for all iterations): ``x~_1 = 2 - y'`` and ``z_1 = y' x~_1``.
    Iteration ``j >= 2``: open ``z_{j-1}``: ``x~_j = x~_{j-1} (2 - z_{j-1})``; open ``x~_j``:
    ``z_j = y' x~_j``. Self-correcting under rounding. Rounds: ``2 t - 1``.
    """

    def __init__(self, c: Circuit, shape, in_scale: int, iters: int, work: int = RECIP_WORK_BITS):
        self.iters, self.f, self.in_scale = iters, work, in_scale
        self.y = c.var(shape, max(0, in_scale - work))
        self.z: list[int] = []
        self.x: list[int | None] = [None, None]
        if iters >= 2:
            c.need((self.y, 2))
        for j in range(2, iters + 1):
            self.z.append(c.var(shape, work))  # z_{j-1}
            if j == 2:
                c.need(self.y, self.z[-1])
            else:
                c.need(self.x[j - 1], self.z[-1])
            if j < iters:
                self.x.append(c.var(shape, work))  # x_j, opened to form z_j
                c.need(self.y, self.x[j])

    def run(self, live: Live, y0: Ring, *, extra=None, label="newton") -> tuple[Ring, int]:
        f = self.f
        y0r, _ = rescale(y0, self.in_scale, f)
        live.open({self.y: y0r, **(extra or {})}, label=f"{label}1")
        vy = live.val(self.y)
        x_t, x_scale = const(2, f) - vy, f
        if self.iters >= 2:
            z = times(up(vy, f), 2) - live.mono((self.y, 2))
        for j in range(2, self.iters + 1):
            zv = self.z[j - 2]
            live.open({zv: z}, label=f"{label}{j}z")
            vz = live.val(zv)
            if j == 2:  # (2 - y)(2 - z) = 4 - 2 y - 2 z + y z
                x_t = (
                    const(4, 2 * f)
                    - times(up(vy, f), 2)
                    - times(up(vz, f), 2)
                    + live.mono(self.y, zv)
                )
            else:
                xv = self.x[j - 1]
                x_t = times(up(live.val(xv), f), 2) - live.mono(xv, zv)
            x_scale = 2 * f
            if j < self.iters:
                live.open({self.x[j]: x_t}, label=f"{label}{j}x")
                z = live.mono(self.y, self.x[j])
        return x_t, x_scale


class GoldschmidtRsqrt:
    """SecFormer's Goldschmidt ``1 / sqrt(x')``: ``m = (3 - x')/2``, ``y <- y m``, ``x' <- x' m^2``.

    ``y_0`` is 1 or an opened selected scale ``rho`` (variable ``rho`` at ``rho_scale``); ``y``
    is re-opened with ``ywork`` fractional bits (default ``work``; more when ``y`` is small).
    Round 1 opens ``x'_0``: ``y_1 = y_0 (3 - x'_0) / 2``, ``4 x'_1 = 9 x' - 6 x'^2 + x'^3``.
    Round 2 opens ``x'_1`` (``y_1`` is linear in ``x'_0``). Round ``j >= 3`` opens ``(y, x')``.
    Returns ``y_t`` pending with its scale. Rounds: ``t``.
    """

    def __init__(
        self,
        c: Circuit,
        shape,
        in_scale: int,
        iters: int,
        *,
        rho: int | None = None,
        rho_scale: int = 0,
        work: int = RSQRT_WORK_BITS,
        ywork: int | None = None,
    ):
        self.iters, self.f, self.in_scale, self.rho, self.rs = iters, work, in_scale, rho, rho_scale
        self.fy = work if ywork is None else ywork  # fractional bits of the opened y
        f = work
        self.xp = [c.var(shape, max(0, in_scale - f))]
        self.yv: list[int | None] = [None]
        r = () if rho is None else (rho,)
        c.need(*r, self.xp[0])
        if iters >= 2:
            c.need((self.xp[0], 3))
        for j in range(1, iters):
            self.xp.append(c.var(shape, 2 * f + 2))
            if j == 1:
                c.need(*r, self.xp[0], self.xp[1])
                self.yv.append(None)
            else:
                self.yv.append(c.var(shape, self._y_scale(j) - self.fy))
                c.need(self.yv[j], self.xp[j])
            if j < iters - 1:
                c.need((self.xp[j], 3))

    def _y_scale(self, j: int) -> int:
        """Scale of the pending ``y_j``."""
        base = self.rs if self.rho is not None else 0
        if j == 1:
            return base + self.f + 1
        if j == 2:
            return base + 2 * self.f + 2
        return self.fy + self.f + 1

    def _cube_step(self, live: Live, v: int) -> Ring:
        """``4 x'(3 - x')^2 / 4`` = ``9 x' - 6 x'^2 + x'^3`` at scale ``3 F + 2``."""
        f = self.f
        return (
            times(up(live.val(v), 2 * f), 9)
            - times(up(live.mono((v, 2)), f), 6)
            + live.mono((v, 3))
        )

    def run(self, live: Live, x0: Ring, *, extra=None, label="gs_rsqrt") -> tuple[Ring, int]:
        f = self.f
        x0r, _ = rescale(x0, self.in_scale, f)
        live.open({self.xp[0]: x0r, **(extra or {})}, label=f"{label}1")
        v0 = live.val(self.xp[0])
        if self.rho is None:  # 2 y_1 = 3 - x'
            y = const(3, f) - v0
        else:
            y = times(up(live.val(self.rho), f), 3) - live.mono(self.rho, self.xp[0])
        if self.iters >= 2:
            xn = self._cube_step(live, self.xp[0])
        for j in range(1, self.iters):
            vals = {self.xp[j]: xn}
            if j >= 2:
                vals[self.yv[j]] = y
            live.open(vals, label=f"{label}{j + 1}")
            if j == 1:  # 4 y_2 = y_0 (3 - x'_0)(3 - x'_1)
                a, b = self.xp[0], self.xp[1]
                if self.rho is None:
                    y = (
                        const(9, 2 * f)
                        - times(up(live.val(a), f), 3)
                        - times(up(live.val(b), f), 3)
                        + live.mono(a, b)
                    )
                else:
                    rho = self.rho
                    y = (
                        times(up(live.val(rho), 2 * f), 9)
                        - times(up(live.mono(rho, a), f), 3)
                        - times(up(live.mono(rho, b), f), 3)
                        + live.mono(rho, a, b)
                    )
            else:  # 2 y_{j+1} = 3 y_j - y_j x'_j
                yv = self.yv[j]
                y = times(up(live.val(yv), f), 3) - live.mono(yv, self.xp[j])
            if j < self.iters - 1:
                xn = self._cube_step(live, self.xp[j])
        return y, self._y_scale(self.iters)


class NewtonRsqrt:
    """Newton-Raphson ``1 / sqrt(x')``: ``y <- y (3 - x' y^2) / 2`` as two rounds per iteration.

    Round 1 opens ``x'`` (kept): ``y_1 = (3 - x') / 2``, ``z_1 = x' y_1^2``. Iteration
    ``j >= 2``: open ``z_{j-1}``: ``y_j = y_{j-1} (3 - z_{j-1}) / 2``; open ``y_j``:
    ``z_j = x' y_j^2``. Rounds: ``2 t - 1``.
    """

    def __init__(self, c: Circuit, shape, in_scale: int, iters: int, work: int = RSQRT_WORK_BITS):
        self.iters, self.f, self.in_scale = iters, work, in_scale
        f = work
        self.xv = c.var(shape, max(0, in_scale - f))
        self.z: list[int] = []
        self.y: list[int | None] = [None, None]
        if iters >= 2:
            c.need((self.xv, 3))
        for j in range(2, iters + 1):
            zb = 2 * f + 2 if j == 2 else 2 * f
            self.z.append(c.var(shape, zb))
            if j == 2:
                c.need(self.xv, self.z[-1])
            else:
                c.need(self.y[j - 1], self.z[-1])
            if j < iters:
                yb = f + 2 if j == 2 else f + 1
                self.y.append(c.var(shape, yb))
                c.need(self.xv, (self.y[j], 2))

    def run(self, live: Live, x0: Ring, *, extra=None, label="newton_rsqrt") -> tuple[Ring, int]:
        f = self.f
        x0r, _ = rescale(x0, self.in_scale, f)
        live.open({self.xv: x0r, **(extra or {})}, label=f"{label}1")
        vx = live.val(self.xv)
        y, y_scale = const(3, f) - vx, f + 1
        if self.iters >= 2:  # 4 z_1 = x'(3 - x')^2 at 3F + 2
            z = (
                times(up(vx, 2 * f), 9)
                - times(up(live.mono((self.xv, 2)), f), 6)
                + live.mono((self.xv, 3))
            )
        for j in range(2, self.iters + 1):
            zv = self.z[j - 2]
            live.open({zv: z}, label=f"{label}{j}z")
            vz = live.val(zv)
            if j == 2:  # 4 y_2 = (3 - x')(3 - z_1)
                y = (
                    const(9, 2 * f)
                    - times(up(vx, f), 3)
                    - times(up(vz, f), 3)
                    + live.mono(self.xv, zv)
                )
                y_scale = 2 * f + 2
            else:  # 2 y_j = 3 y - y z
                yv = self.y[j - 1]
                y = times(up(live.val(yv), f), 3) - live.mono(yv, zv)
                y_scale = 2 * f + 1
            if j < self.iters:
                live.open({self.y[j]: y}, label=f"{label}{j}y")
                z = live.mono(self.xv, (self.y[j], 2))
        return y, y_scale


def _iteration(kind: str, method: str):
    return {
        ("reciprocal", "goldschmidt"): GoldschmidtReciprocal,
        ("reciprocal", "newton"): NewtonReciprocal,
        ("rsqrt", "goldschmidt"): GoldschmidtRsqrt,
        ("rsqrt", "newton"): NewtonRsqrt,
    }[kind, method]


# --------------------------------------------------------------------------------------------
# Public protocols: reciprocal, rsqrt.
# --------------------------------------------------------------------------------------------
def _final_scale(kind: str, method: str, iters: int, it: Any) -> int:
    """Scale of the pending deflated result of an iteration object."""
    f = it.f
    if kind == "reciprocal":
        return f if iters == 1 else 2 * f
    if method == "goldschmidt":
        return it._y_scale(iters)
    if iters == 1:
        return f + 1
    return 2 * f + 2 if iters == 2 else 2 * f + 1


def _out_bits(where: str, scale: int, frac_bits: int) -> int:
    bits = scale - frac_bits
    if not 0 <= bits <= 61:
        raise ValueError(f"{where}: bound out of range for frac_bits={frac_bits}")
    return bits


def _deflated(
    kind: str,
    x: Ring,
    mat: Material,
    *,
    method: str,
    iters: int,
    bound: Any,
    frac_bits: int,
) -> Ring:
    """Shared body of :func:`reciprocal` and :func:`rsqrt`."""
    check_ring(kind, x)
    method = _check_method(kind, method)
    iters = _check_iters(kind, iters)
    ks = _check_bound(kind, bound)
    f = frac_bits
    shape = tuple(x.shape)
    if x.size == 0:
        return jnp.zeros_like(x)
    label = f"{kind}_{method}"
    c = Circuit()
    if not isinstance(bound, tuple | list):
        # y' = x / 2^k is x read at scale f + k: the deflation costs nothing.
        (k,) = ks
        it = _iteration(kind, method)(c, shape, f + k, iters)
        scale = _final_scale(kind, method, iters, it)
        factor = 1
        if kind == "reciprocal":  # 1/x = x~ / 2^k
            scale += k
        else:  # 1/sqrt(x) = y~ / 2^(k/2)
            half, odd = divmod(k, 2)
            scale += half
            if odd:  # times 1/sqrt(2) = round(2^16 / sqrt 2) / 2^16
                factor, scale = round(2.0**16 / math.sqrt(2.0)), scale + 16
        fin = c.var(shape, _out_bits(kind, scale, f))
        live = c.start(mat)
        y, _ = it.run(live, x, label=label)
        live.open({fin: times(y, factor)}, label=f"{kind}_out")
        return live.val(fin)

    # A tuple of bounds: one comparison batch selects the bucket's power-of-two deflation.
    kmax = max(ks)
    if f + kmax + 3 > 61:
        raise ValueError(f"{kind}: bounds too large for frac_bits={f}")
    x_var, s_var = c.var(shape, 0), c.var(shape, 0)  # s_j = 2^(kmax - k_j) at scale kmax
    c.need(x_var, s_var)
    in_scale = f + kmax  # x' = x s at scale f + kmax is x / B_j
    e_r = _RHO_WORK_BITS + max(0, (kmax + 1) // 2)  # scale of rho_j = 2^(-k_j / 2)
    rho_vals = [round(2.0 ** (e_r - kk / 2.0)) for kk in ks]
    s_vals = [1 << (kmax - kk) for kk in ks]
    if kind == "rsqrt" and method == "goldschmidt":
        # SecFormer's y_0 = rho: the selected scale enters the first iteration, no extra round
        rho_var = c.var(shape, 0)
        it = GoldschmidtRsqrt(
            c, shape, in_scale, iters, rho=rho_var, rho_scale=e_r, work=_RHO_WORK_BITS, ywork=20
        )
        fin = c.var(shape, _out_bits(kind, it._y_scale(iters), f))
        cmp = greater_equal_public(x, [2.0**kk for kk in ks[:-1]], mat, frac_bits=f)
        oh = _onehot(cmp) if len(ks) > 1 else [is_party0()]
        live = c.start(mat)
        rho = _select(oh, rho_vals)
        live.open({x_var: x, s_var: _select(oh, s_vals), rho_var: rho}, label=f"{kind}_deflate")
        y, _ = it.run(live, live.mono(x_var, s_var), label=label)
        live.open({fin: y}, label=f"{kind}_out")
        return live.val(fin)
    # Otherwise the selected output scale costs one product round after the iterations.
    it = _iteration(kind, method)(c, shape, in_scale, iters)
    w = it.f
    yo = c.var(shape, _final_scale(kind, method, iters, it) - w)
    if kind == "reciprocal":  # 1/x = x~ 2^(kmax - k_j) / 2^kmax
        sc_vals, sc_scale = s_vals, kmax
    else:
        sc_vals, sc_scale = rho_vals, e_r
    sc_var = c.var(shape, 0)
    c.need(yo, sc_var)
    fin = c.var(shape, _out_bits(kind, w + sc_scale, f))
    cmp = greater_equal_public(x, [2.0**kk for kk in ks[:-1]], mat, frac_bits=f)
    oh = _onehot(cmp) if len(ks) > 1 else [is_party0()]
    live = c.start(mat)
    live.open({x_var: x, s_var: _select(oh, s_vals)}, label=f"{kind}_deflate")
    y, _ = it.run(live, live.mono(x_var, s_var), extra={sc_var: _select(oh, sc_vals)}, label=label)
    live.open({yo: y}, label=f"{kind}_scale")
    live.open({fin: live.mono(yo, sc_var)}, label=f"{kind}_out")
    return live.val(fin)


def reciprocal(
    x: Ring,
    mat: Material,
    *,
    method: str = "goldschmidt",
    iters: int,
    bound: float | tuple[float, ...],
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> Ring:
    """Shares of ``1 / x`` for positive ``x`` by input deflation and Goldschmidt (or Newton).

    Computes exactly :func:`secmoe_jax.approx.goldschmidt_reciprocal` (or ``newton_reciprocal``)
    with the bound(s) rounded UP to powers of two (:func:`effective_bound`), up to fixed-point
    rounding.

    Args:
      x: ``uint64[...]`` shares of positive fixed-point values (``frac_bits``).
      mat: dealer material.
      method: ``"goldschmidt"`` (SecFormer; one round per iteration) or ``"newton"``
        (Newton-Raphson baseline; two rounds per iteration after the first, self-correcting).
      iters: iterations ``t >= 1`` (static).
      bound: public bound ``B`` (static): ``x' = x / B`` is iterated, then rescaled; or a
        strictly increasing tuple ``(B_0, ..., B_J)``: ``J`` batched comparisons
        ``[x >= B_j]`` pick the bucket ``[B_(j-1), B_j)`` and deflate by ``B_j``.
      frac_bits: fractional bits of input and output.

    Returns:
      ``uint64[...]`` shares of ``1 / x``, ``x``'s shape.

    Domain and error: with ``e = 1 - x / B`` the relative error is ``e^(2^t)`` in exact
    arithmetic; for inputs in ``[B / R, B]`` take ``t >= log2(R ln(1/tol))``
    (:func:`secmoe_jax.approx.goldschmidt_iters`): e.g. ``t = 10`` for ``R = 128`` and
    ``tol = 1e-3``. Diverges for ``x >= 2 B`` (top bucket for a tuple); ``x <= 0`` is outside
    the contract (garbage, not an error: the value is secret). Fixed point: the state has
    ``RECIP_WORK_BITS = 20`` fractional bits (relative rounding about ``t 2^-20``), the output
    ``frac_bits`` (an absolute error of one unit, ``2^-16``). The deflated reciprocal must stay
    below ``2^21`` (``x >= B 2^-21``).

    Protocol (single bound ``B = 2^k``): round 1 opens ``x`` read at scale ``f + k`` (that is
    ``x / B``; the deflation is free) truncated to the working scale; every later round opens
    the iteration state with its truncation fused (see the module docstring); the last round
    truncates ``x~ / B`` to ``frac_bits``.

    Cost (``n`` elements, bytes per party): Goldschmidt ``t + 1`` rounds and
    ``8 n max(2 t - 1, 2)`` bytes; Newton ``2 t - 1`` rounds and ``8 n (2 t - 1)`` bytes
    (``t >= 2``). A tuple of ``J + 1`` bounds adds a comparison batch on ``J n`` elements
    (5 rounds), two rounds and ``32 n`` bytes (the deflation round opening ``x`` and the
    selected scales; one round opening the result for the selected output scale).

    References:
      Goldschmidt 1964; SecFormer (Luo et al., ACL Findings 2024), Section 3.3.
    """
    return _deflated(
        "reciprocal", x, mat, method=method, iters=iters, bound=bound, frac_bits=frac_bits
    )


def rsqrt(
    x: Ring,
    mat: Material,
    *,
    method: str = "goldschmidt",
    iters: int,
    bound: float | tuple[float, ...],
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> Ring:
    """Shares of ``1 / sqrt(x)`` for positive ``x`` by deflation and SecFormer's Goldschmidt.

    Computes exactly :func:`secmoe_jax.approx.goldschmidt_rsqrt` (or ``newton_rsqrt``) with the
    bound(s) rounded UP to powers of two, up to fixed-point rounding.

    Args:
      x: ``uint64[...]`` shares of positive fixed-point values.
      mat: dealer material.
      method: ``"goldschmidt"`` (``m = (3 - x') / 2``, ``y <- y m``, ``x' <- x' m^2``, one round
        per iteration) or ``"newton"`` (``y <- y (3 - x y^2) / 2``, two rounds per iteration).
      iters: iterations ``t >= 1`` (static).
      bound: public bound ``B`` or an increasing tuple of bounds (static), as in
        :func:`reciprocal`. With a tuple, Goldschmidt starts from the selected
        ``y_0 = 1 / sqrt(B_j)`` (no extra round); Newton rescales at the end (one round).
      frac_bits: fractional bits of input and output.

    Returns:
      ``uint64[...]`` shares of ``x^(-1/2)``, ``x``'s shape.

    Domain and error: after deflation ``x' = x / B`` must lie in ``(0, 3)`` (diverges above);
    from ``x' = 1/4`` four iterations give relative error 8.8e-4 and five 1.2e-6, a tiny ``x'``
    grows only by 9/4 per iteration (:func:`secmoe_jax.approx.goldschmidt_domain`). Powers of
    four as bounds (``x' in [1/4, 1)``) need 4 iterations for 1e-3. ``x <= 0``: garbage (the
    contract, not checked: the value is secret). Fixed point: the state has 18 fractional bits
    (16 when starting from a selected ``1 / sqrt(B_j)``).

    Cost: Goldschmidt ``t + 1`` rounds, ``8 n max(2 t - 1, 2)`` bytes per party; Newton
    ``2 t - 1`` rounds, ``8 n (2 t - 1)`` bytes (``t >= 2``). A tuple adds the comparison
    batch (5 rounds) and
    the deflation round (``24 n`` bytes: ``x``, the selected deflation and ``1 / sqrt(B_j)``);
    Newton with a tuple one more round (``8 n``) for the selected output scale.

    References:
      SecFormer (Luo et al., ACL Findings 2024), Section 3.2; CrypTen (Newton baseline).
    """
    return _deflated("rsqrt", x, mat, method=method, iters=iters, bound=bound, frac_bits=frac_bits)


# --------------------------------------------------------------------------------------------
# Limit-form exponential.
# --------------------------------------------------------------------------------------------
#: working fractional bits of the squaring chain (values <= 1 at 2F = 48 bits)
EXP_WORK_BITS = 24


class ExpChain:
    """``(1 + z / 2^n)^(2^n)``: ``n`` squarings, one round each, the base opened in round 1.

    ``u_0 = 1 + z / 2^n`` is ``z`` read at scale ``in_scale + n`` plus a public 1, so the
    division is free. Round ``k`` opens ``u_(k-1)`` truncated to ``F`` bits and squares it; the
    result ``u_n = e`` is returned pending at scale ``2 F``. Rounds: ``n``.
    """

    def __init__(self, c: Circuit, shape, in_scale: int, n: int, work: int = EXP_WORK_BITS):
        if n < 1:
            raise ValueError(f"exp: n must be a positive int, got {n!r}")
        self.n, self.f, self.base_scale = n, work, in_scale + n
        self.u = [c.var(shape, max(0, self.base_scale - work))]
        for _ in range(1, n):
            self.u.append(c.var(shape, work))
        for v in self.u:
            c.need((v, 2))

    def run(self, live: Live, z: Ring, *, extra=None, label="exp") -> Ring:
        f = self.f
        u = z + const(1, self.base_scale, z.shape)
        u, _ = rescale(u, self.base_scale, f)
        for k, v in enumerate(self.u):
            live.open({v: u, **(extra if k == 0 and extra else {})}, label=f"{label}{k + 1}")
            u = live.mono((v, 2))
        return u  # at scale 2 F


def exp(
    x: Ring,
    mat: Material,
    *,
    n: int = 8,
    clip: float | None = None,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> Ring:
    """Shares of ``exp(x)`` by the limit form ``(1 + x / 2^n)^(2^n)`` (CrypTen's exp).

    Computes :func:`secmoe_jax.approx.exp_limit` (``clip`` given) or the plain limit form
    (``clip=None``), up to fixed-point rounding.

    Args:
      x: ``uint64[...]`` shares, normally ``x <= 0``.
      mat: dealer material.
      n: squarings (static, >= 1).
      clip: public threshold in ``(-2^n, 0]``: one comparison ``[x >= clip]`` zeroes the
        entries below it (5 more rounds). ``None``: no comparison; the limit form decays on its
        own (``<= e^x``) for ``x >= -2^n`` and is garbage below (the base turns negative).
      frac_bits: fractional bits of input and output.

    Returns:
      ``uint64[...]`` shares of the limit-form exponential.

    Domain and error (float, ``n = 8``): on ``[-2^n, 0]`` the error is at most 1.06e-3 (at
    ``x = -2``), an underestimate of relative size ``x^2 / 2^(n+1)``; for ``x > 0`` the
    relative error grows as ``x^2 / 2^(n+1)`` (12% at ``x = 8``) and ``x`` must stay below
    about 9 (``e^x < 2^13``: the last square has ``2 F = 48`` fractional bits). Fixed point:
    the base is opened at ``EXP_WORK_BITS = 24`` bits, so its rounding (amplified ``2^n``
    times) contributes at most ``2^(n - 24)`` relative; the output has ``frac_bits``.

    Protocol: round 1 opens ``u = 1 + x / 2^n`` (the division is a free change of scale) and
    squares it; rounds 2..n open the previous square truncated (fused) and square again; a last
    round truncates ``e`` to ``frac_bits`` (with a clip it also opens the comparison bit and
    multiplies: ``e [x >= clip]`` needs no further truncation).

    Cost (``N`` elements, bytes per party): ``n + 1`` rounds, ``8 N (n + 1)`` bytes; with a
    clip ``n + 6`` rounds and ``8 N (n + 2) + 8 N + 336 ceil(N / 64)`` bytes.

    References:
      Knott et al., "CrypTen", NeurIPS 2021; PUMA (Dong et al. 2023) clips at -14.
    """
    check_ring("exp", x)
    if not isinstance(n, int | np.integer) or isinstance(n, bool) or not 1 <= int(n) <= 16:
        raise ValueError(f"exp: n must be an int in [1, 16], got {n!r}")
    n = int(n)
    if clip is not None and not -(2.0**n) < float(clip) <= 0.0:
        raise ValueError(f"exp: clip must be in (-2^n, 0], got {clip!r} with n={n}")
    if x.size == 0:
        return jnp.zeros_like(x)
    f = frac_bits
    shape = tuple(x.shape)
    c = Circuit()
    chain = ExpChain(c, shape, f, n)
    fin = c.var(shape, 2 * chain.f - f)
    bit = None
    if clip is not None:
        bit = c.var(shape, 0)
        c.need(fin, bit)
        keep = greater_equal_public(x, [float(clip)], mat, frac_bits=f)[0]
    live = c.start(mat)
    e = chain.run(live, x, label="exp")
    vals = {fin: e}
    if bit is not None:
        vals[bit] = keep
    live.open(vals, label="exp_out")
    return live.mono(fin, bit) if bit is not None else live.val(fin)


# --------------------------------------------------------------------------------------------
# Truncation policy: the failure budget of a BERT-base forward.
# --------------------------------------------------------------------------------------------
def local_failure_probability(ring_bits: int) -> float:
    """Per-element probability that LOCAL truncation of ``|z| < 2^ring_bits`` fails badly.

    The shares wrap around when party 0's uniform share falls within ``|z|`` of the wrap
    point: probability ``|z| / 2^64 <= 2^(l - 64)``; ``2^(l + 1 - 64)`` is the conservative
    figure used throughout (:func:`~._arith.trunc_local`). The error is then about
    ``2^(64 - b)``: catastrophic.
    """
    return 2.0 ** (ring_bits + 1 - 64)


def truncation_sites(
    *,
    layers: int = 12,
    seq: int = 128,
    hidden: int = 768,
    ffn: int = 3072,
    heads: int = 12,
    frac_bits: int = DEFAULT_FRAC_BITS,
    softmax_n: int = 9,
    softmax_iters: int = 10,
    layernorm_iters: int = 4,
) -> list[dict[str, Any]]:
    """Every truncation of a BERT-base encoder forward, with the value bound it relies on.

    Each row: ``site``, ``elements`` (truncated elements per forward), ``value_bits`` (the
    assumed bound ``|v| < 2^value_bits`` of the real value), ``frac_bits`` of the untruncated
    value, and ``ring_bits = frac + value`` (the bound in the ring). Counts follow the
    protocols of this package (LayerNorm, softmax "exact") and one truncation per linear layer
    output and per GeLU output (the piecewise protocols truncate their sum once).
    """
    f, t, d, h, L = frac_bits, seq, hidden, heads, layers
    ln_count = 2 * L + 1  # two per layer + the embedding LayerNorm
    rows = [
        ("QKV projections (sum of 768 products)", 3 * t * d * L, 7, 2 * f),
        ("attention scores Q K^T / 8", h * t * t * L, 7, 2 * f),
        ("softmax: exp squarings (values <= 1)", softmax_n * h * t * t * L, 0, 2 * EXP_WORK_BITS),
        ("softmax: exp values for the product", h * t * t * L, 0, 2 * EXP_WORK_BITS),
        ("softmax: row reciprocal state", 2 * softmax_iters * h * t * L, 8, 2 * RECIP_WORK_BITS),
        ("softmax: output e x~ / 2^7", h * t * t * L, 7, EXP_WORK_BITS + RECIP_WORK_BITS),
        ("context P V", t * d * L, 7, 2 * f),
        ("attention output projection", t * d * L, 7, 2 * f),
        ("FFN up-projection", t * ffn * L, 7, 2 * f),
        ("GeLU (piecewise sum, 3f bits)", t * ffn * L, 3, 3 * f),
        ("FFN down-projection (sum of 3072)", t * d * L, 7, 2 * f),
        ("LayerNorm mean S round(2^32/D)", t * ln_count, 10, f + 32),
        ("LayerNorm D^2 var (deflation input)", t * ln_count, 30, 2 * f),
        ("LayerNorm deflation and rsqrt state", 2 * layernorm_iters * t * ln_count, 4, 50),
        ("LayerNorm output (x - mu) gamma y", t * d * ln_count, 9, 2 * f + 20),
    ]
    return [
        {
            "site": name,
            "elements": int(n),
            "value_bits": int(vb),
            "frac_bits": int(fb),
            "ring_bits": int(vb + fb),
        }
        for name, n, vb, fb in rows
    ]


def truncation_budget(
    *,
    budget: float = 1e-6,
    local_site_limit: float = 1e-9,
    policy: str = "default",
    **sites_kw: Any,
) -> dict[str, Any]:
    """The union bound on a catastrophic truncation error in one BERT-base forward.

    Policy ``"default"``: a site may use local truncation only if its expected number of
    failures per forward, ``elements * 2^(ring_bits + 1 - 64)``, is at most
    ``local_site_limit``; every other site uses the dealer truncation, which is exact to one
    unit for ``|v| < 2^62`` and never fails catastrophically (probability 0). Policy
    ``"all_local"`` (CrypTen's) truncates every site locally, for comparison.

    Returns:
      ``{"rows": [... each site with "local_expected_failures" and "mode"],
      "total": union bound (sum over local sites), "all_local_total": the sum if every site
      were local, "budget": budget, "ok": total < budget}``.
    """
    if policy not in ("default", "all_local"):
        raise ValueError(f"truncation_budget: unknown policy {policy!r}")
    rows = truncation_sites(**sites_kw)
    total = all_local = 0.0
    for r in rows:
        exp_fail = r["elements"] * local_failure_probability(r["ring_bits"])
        r["local_expected_failures"] = exp_fail
        local = policy == "all_local" or exp_fail <= local_site_limit
        r["mode"] = "local" if local else "dealer"
        all_local += exp_fail
        if local:
            total += exp_fail
    return {
        "rows": rows,
        "total": total,
        "all_local_total": all_local,
        "budget": budget,
        "ok": total < budget,
    }
