"""Secure comparison: MSB / DReLU, ``x >= public``, ``x > y``, ReLU, select, max along an axis.

Every nonlinear protocol is built on :func:`msb` — the sign bit of a shared ring element, as
arithmetic 0/1 shares. It is dealer-assisted and runs a boolean circuit on bit-packed ``uint64``
words (elements across words: one opened word carries 64 masked bits), in 5 rounds and
``8 n + 336 ceil(n / 64)`` bytes per party for ``n`` comparisons (about 13.3 bytes per element
for large ``n``).

Protocol (one party's view; ``l = bits``, default 64; ``x' = x + 2^(l-1)``):

1. Dealer: uniform ``r``; additive shares of ``r``; XOR shares of ``r``'s bit ``l - 1`` and of
   *every product of r's bits inside each leaf group* of ``LEAF = 4`` consecutive positions
   among ``0 .. l-2`` (15 bit planes per group).
2. Round 1: open ``c = x + r`` (8 bytes per element; uniform). With ``c' = c + 2^(l-1)``
   (public), ``bit_{l-1}(x') = c'_{l-1} xor r_{l-1} xor B`` where
   ``B = [c' mod 2^(l-1) < r mod 2^(l-1)]`` is the borrow of the low ``l - 1`` bits, and
   ``MSB(x) = 1 xor bit_{l-1}(x')``.
3. ``B`` is the carry-out of a (generate, propagate) tree over positions ``0 .. l-2``:
   ``g_j = not c'_j and r_j``, ``p_j = not (c'_j xor r_j)``;
   ``(G, P) = (G_hi xor P_hi G_lo, P_hi P_lo)``. Because ``c'`` is public and the dealer knows
   ``r``, the (G, P) of a whole leaf group is a polynomial in ``r``'s bits with public
   coefficients: it is computed LOCALLY from the dealer's product planes (no AND round).
   For ``l = 64``: 63 positions -> 16 groups (the top group has one dummy position with
   ``c = r = 0``, i.e. ``g = 0, p = 1``).
4. Tree levels 16 -> 8 -> 4 -> 2: each level is ONE opening of packed words (all nodes, all
   elements) with boolean Beaver ANDs; the two ANDs of a node share the mask of ``P_hi``
   (open 3 planes per node, 2 for the node holding position 0, whose P is never needed).
5. Last round, fused with B2A: ``MSB = s xor (u and v)`` with ``u = P_hi``, ``v = G_lo``,
   ``s = 1 xor c'_{l-1} xor r_{l-1} xor G_hi``. Open ``u xor alpha``, ``v xor beta``,
   ``s xor gamma`` (3 planes); with the dealer's ARITHMETIC shares of
   ``alpha, beta, gamma, alpha beta, alpha gamma, beta gamma, alpha beta gamma`` the value
   ``s + uv - 2suv`` is a linear combination with public coefficients: arithmetic shares of
   ``MSB(x)`` without another round.

Products with the result are fused too: ``MSB(x) * x`` (ReLU, pairwise max) uses
``x = c - r`` and dealer shares of ``r`` times each monomial (no extra byte or round);
``MSB(x) * v`` for other secret ``v`` (the argmax one-hots) opens ``v - a`` in round 1.

Cost (bytes per party, ``n`` comparisons in one batch, ``W = ceil(n / 64)``, ``l = 64``):
  rounds = 5; bytes = ``8 n + 8 W (23 + 11 + 5 + 3) = 8 n + 336 W``.
  General ``l``: ``K = ceil((l-1)/4)`` leaf groups; while ``K > 2`` a level of ``m = K // 2``
  nodes opens ``3 m - 1`` planes and leaves ``K - m`` groups; then 3 planes; rounds =
  2 + number of levels (:func:`msb_cost`).

References:
  D. Beaver, "Efficient multiparty protocols using circuit randomization", CRYPTO 1991.
  P. Mohassel, P. Rindal, "ABY3", CCS 2018 (bit-decomposition, boolean Beaver ANDs, B2A).
  D. Rathee et al., "CrypTFlow2", CCS 2020 (millionaires' comparison as a carry tree).
  E. Boyle et al., "Function secret sharing for mixed-mode and fixed-point secure computation",
  EUROCRYPT 2021 (dealer-known masks make the public-vs-mask comparison local work).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import comm
from ..dealer import Material, register_kind, ring_struct
from ..kernels import DEFAULT_FRAC_BITS, Ring, check_ring, encode, uniform_ring
from ..kernels._bits import ALL_ONES, num_words, to_planes, unpack_bits, xor_reduce
from ._arith import is_party0, mul

LEAF = 4  # positions per leaf group: products of up to 4 mask bits come from the dealer
_MONOS = 2**LEAF - 1  # nonempty subsets of a leaf group
DEFAULT_BITS = 64
MIN_BITS = LEAF + 2  # at least two leaf groups, so the last round has an AND to fuse
# arithmetic monomials of the last round, in this order (index 0 is the constant 1)
_FINAL_MONOS = ("1", "a", "b", "g", "ab", "ag", "bg", "abg")


# --------------------------------------------------------------------------------------------
# Static structure and cost.
# --------------------------------------------------------------------------------------------
def _groups(bits: int) -> int:
    return -(-(bits - 1) // LEAF)


def _levels(bits: int) -> list[int]:
    """Nodes per interactive AND level (before the fused last round)."""
    k, out = _groups(bits), []
    while k > 2:
        m = k // 2
        out.append(m)
        k -= m
    return out


def msb_cost(n: int, *, bits: int = DEFAULT_BITS, extras: int = 0) -> tuple[int, int]:
    """Exact online cost of one comparison batch of ``n`` elements: ``(rounds, bytes per party)``.

    ``extras`` is the number of secret values per element multiplied by the result (opened in
    round 1, 8 bytes each). ``bits=64``: ``(5, 8 n + 336 ceil(n / 64) + 8 n extras)``.
    """
    w = num_words(n)
    levels = _levels(bits)
    planes = sum(3 * m - 1 for m in levels) + 3
    return 2 + len(levels), 8 * n * (1 + extras) + 8 * w * planes


def _check_bits(where: str, bits: Any) -> int:
    if not isinstance(bits, int | np.integer) or not MIN_BITS <= int(bits) <= 64:
        raise ValueError(f"{where}: bits must be an int in [{MIN_BITS}, 64], got {bits!r}")
    return int(bits)


# --------------------------------------------------------------------------------------------
# Dealer material.
# --------------------------------------------------------------------------------------------
def _bit_struct(*shape: int) -> jax.ShapeDtypeStruct:
    return ring_struct(tuple(shape))


def _mask_shapes(n, bits, with_input, extras):
    w, k = num_words(n), _groups(bits)
    out = {
        "r": ring_struct((n,)),
        "mono": _bit_struct(_MONOS, k, w),  # XOR shares: products of r's bits per leaf group
        "r_sign": _bit_struct(w),  # XOR shares of bit (bits - 1) of r
        "abg": _bit_struct(3, w),  # XOR shares of the last round's masks alpha, beta, gamma
        "abg_arith": ring_struct((len(_FINAL_MONOS) - 1, n)),  # arithmetic a, b, g, ab, ..., abg
    }
    if with_input:
        out["r_arith"] = ring_struct((len(_FINAL_MONOS) - 1, n))  # r * each monomial
    if extras:
        out["a"] = ring_struct((n, extras))  # masks of the extra factors
        out["a_arith"] = ring_struct((len(_FINAL_MONOS) - 1, n, extras))
    return out


class _Draw:
    """Carve one item's randomness out of a single PRG call (one threefry expansion per item).

    Slices are disjoint words of one uniform stream, hence independent and uniform; drawing once
    keeps the dealer's compiled program small (each PRG call is a large unrolled block).
    """

    def __init__(self, key: jax.Array, words: int) -> None:
        self._buf = uniform_ring(key, (words,))
        self._used = 0

    def take(self, shape: tuple[int, ...]) -> Ring:
        size = int(np.prod(shape, dtype=np.int64))
        out = self._buf[self._used : self._used + size].reshape(shape)
        self._used += size
        return out

    def xor_share(self, value: Ring) -> Ring:
        """XOR shares ``[2, ...]``: ``s0`` uniform, ``s1 = value ^ s0``."""
        s0 = self.take(value.shape)
        return jnp.stack([s0, value ^ s0])

    def add_share(self, value: Ring) -> Ring:
        """Additive shares ``[2, ...]``: ``s0`` uniform, ``s1 = value - s0``."""
        s0 = self.take(value.shape)
        return jnp.stack([s0, value - s0])


def _words(tree: Any) -> int:
    return int(sum(int(np.prod(s.shape, dtype=np.int64)) for s in jax.tree.leaves(tree)))


def _leaf_products(planes: Ring, k: int) -> Ring:
    """``[_MONOS, K, W]``: row ``S - 1`` is the AND of the planes of subset ``S`` of a group."""
    w = planes.shape[-1]
    pad = k * LEAF - planes.shape[0]  # dummy top positions: r = 0
    grouped = jnp.pad(planes, ((0, pad), (0, 0))).reshape(k, LEAF, w)
    prods = jnp.full((1, k, w), ALL_ONES, jnp.uint64)  # row S = prod_{i in S} r_i
    for i in range(LEAF):
        prods = jnp.concatenate([prods, prods & grouped[None, :, i]])
    return prods[1:]


def _arith_monomials(abg_words: Ring, n: int) -> Ring:
    """``[7, n]`` 0/1 values of a, b, g, ab, ag, bg, abg from the packed masks."""
    a, b, g = unpack_bits(abg_words, n)
    return jnp.stack([a, b, g, a * b, a * g, b * g, a * b * g])


@register_kind("cmp_mask", shapes=_mask_shapes)
def _gen_mask(key, weights_key, *, n, bits, with_input, extras):
    w = num_words(n)
    # the fresh values (r, alpha/beta/gamma, a) plus one share word per item word
    draw = _Draw(key, n + 3 * w + n * extras + _words(_mask_shapes(n, bits, with_input, extras)))
    r = draw.take((n,))
    abg = draw.take((3, w))
    planes = to_planes(r[None], bits)[0]  # [bits, W]
    mono = _leaf_products(planes[: bits - 1], _groups(bits))
    am = _arith_monomials(abg, n)
    out = {
        "r": draw.add_share(r),
        "mono": draw.xor_share(mono),
        "r_sign": draw.xor_share(planes[bits - 1]),
        "abg": draw.xor_share(abg),
        "abg_arith": draw.add_share(am),
    }
    if with_input:
        out["r_arith"] = draw.add_share(r[None] * am)
    if extras:
        a = draw.take((n, extras))
        out["a"] = draw.add_share(a)
        out["a_arith"] = draw.add_share(a[None] * am[:, :, None])
    return out


def _and_shapes(nodes, words):
    out = {"a": _bit_struct(nodes, words), "b": _bit_struct(nodes, words)}
    out["ab"] = _bit_struct(nodes, words)
    if nodes > 1:
        out["c"] = _bit_struct(nodes - 1, words)
        out["ac"] = _bit_struct(nodes - 1, words)
    return out


@register_kind("cmp_and", shapes=_and_shapes)
def _gen_and(key, weights_key, *, nodes, words):
    """Boolean AND triples of one tree level, the mask ``a`` of ``P_hi`` shared by two ANDs.

    ``a`` masks ``P_hi``, ``b`` masks ``G_lo``, ``c`` masks ``P_lo`` (nodes 1.., node 0 holds
    position 0 and needs no P); ``ab = a & b``, ``ac = a & c``.
    """
    draw = _Draw(key, (2 * nodes + nodes - 1) * words + _words(_and_shapes(nodes, words)))
    a = draw.take((nodes, words))
    b = draw.take((nodes, words))
    c = draw.take((nodes - 1, words))
    out = {"a": draw.xor_share(a), "b": draw.xor_share(b), "ab": draw.xor_share(a & b)}
    if nodes > 1:
        out["c"] = draw.xor_share(c)
        out["ac"] = draw.xor_share(a[1:] & c)
    return out


# --------------------------------------------------------------------------------------------
# The comparison circuit.
# --------------------------------------------------------------------------------------------
def _p0_words() -> Ring:
    """All-ones word on party 0, zero on party 1: ``_p0_words() & public`` adds a public word."""
    return jnp.uint64(0) - is_party0()


def _xor_open(tree: Any, *, label: str) -> Any:
    """Open XOR-shared words (one round): each party recovers the other's word from the sum."""
    total = comm.open(tree, label=label)
    return jax.tree.map(lambda own, tot: own ^ (tot - own), tree, total)


def _leaf_anf(nc: Ring) -> tuple[Ring, Ring]:
    """(G, P) of every leaf group as polynomials in r's bits with public coefficient planes.

    Args:
      nc: ``[LEAF, K, W]`` public planes ``not c'_j`` of the group positions, low to high.

    Returns:
      ``(g, p)``, each ``[2^LEAF, K, W]``: row ``S`` (a subset bitmask; 0 = constant term) is the
      coefficient of ``prod_{j in S} r_j``, ``f = xor_S coef_S and prod_{j in S} r_j``.
    """
    ones = jnp.full(nc.shape[1:], ALL_ONES, jnp.uint64)[None]
    g = jnp.stack([jnp.zeros_like(nc[0]), nc[0]])  # g_0 = not c_0 and r_0
    p = jnp.stack([nc[0], ones[0]])  # p_0 = not c_0 xor r_0
    for i in range(1, LEAF):
        # p_i F = (not c_i) F xor r_i F: the r_i part moves row S to row S | 2^i
        g_hi = g.at[0].set(g[0] ^ nc[i])  # g_i = not c_i and r_i: row 2^i gets not c_i
        g = jnp.concatenate([g & nc[i][None], g_hi])
        p = jnp.concatenate([p & nc[i][None], p])
    return g, p


def _eval_anf(poly: Ring, mono: Ring, p0: Ring) -> Ring:
    """XOR shares of a leaf polynomial from the dealer's product planes ``mono [_MONOS, K, W]``."""
    return (p0 & poly[0]) ^ xor_reduce(poly[1:] & mono, 0)


def _and_level(g: Ring, p: Ring, mat: Material, p0: Ring, level: int) -> tuple[Ring, Ring]:
    """One tree level: pairs (lo, hi) -> (G_hi ^ P_hi G_lo, P_hi P_lo), one opening.

    Args:
      g, p: ``[K, W]`` XOR shares of the groups' generate/propagate (row 0 holds position 0;
        its P is not needed and is ignored).

    Returns:
      ``[K - K // 2, W]`` shares of the next level (an odd last group passes through).
    """
    k, w = g.shape
    m = k // 2
    t = mat.take("cmp_and", nodes=m, words=w)
    g_lo, g_hi, p_lo, p_hi = g[0 : 2 * m : 2], g[1 : 2 * m : 2], p[0 : 2 * m : 2], p[1 : 2 * m : 2]
    tree = {"d": p_hi ^ t["a"], "e": g_lo ^ t["b"]}
    if m > 1:
        tree["f"] = p_lo[1:] ^ t["c"]
    o = _xor_open(tree, label=f"cmp_and{level}")
    d, e = o["d"], o["e"]
    new_g = g_hi ^ (p0 & d & e) ^ (d & t["b"]) ^ (e & t["a"]) ^ t["ab"]
    new_p = jnp.zeros((1, w), jnp.uint64)
    if m > 1:
        f, d1 = o["f"], d[1:]
        and_p = (p0 & d1 & f) ^ (d1 & t["c"]) ^ (f & t["a"][1:]) ^ t["ac"]
        new_p = jnp.concatenate([new_p, and_p])
    if k % 2:
        new_g = jnp.concatenate([new_g, g[-1:]])
        new_p = jnp.concatenate([new_p, p[-1:]])
    return new_g, new_p


def _msb_flat(
    x: Ring,
    mat: Material,
    *,
    bits: int = DEFAULT_BITS,
    with_input: bool = False,
    extras: Ring | None = None,
) -> tuple[Ring, Ring | None, Ring | None]:
    """The comparison batch on a flat ``x [n]``: shares of ``t = MSB(x)``, ``t x``, ``t v``.

    Args:
      x: ``[n]`` this party's shares.
      with_input: also return shares of ``t * x`` (fused: no extra round or byte).
      extras: optional ``[n, E]`` secret factors; also return shares of ``t[:, None] * extras``
        (fused: ``extras - a`` is opened in round 1, 8 bytes per factor).

    Returns:
      ``(t [n], t x [n] or None, t extras [n, E] or None)``, arithmetic shares.
    """
    n = x.shape[0]
    e_count = 0 if extras is None else int(extras.shape[1])
    k = _groups(bits)
    npos = bits - 1
    p0 = _p0_words()
    one = is_party0()
    m = mat.take("cmp_mask", n=n, bits=bits, with_input=bool(with_input), extras=e_count)

    # Round 1: open c = x + r (and the masked extra factors).
    tree = {"c": x + m["r"]}
    if e_count:
        tree["e"] = extras - m["a"]
    opened = comm.open(tree, label="cmp_open")
    c = opened["c"]
    planes = to_planes((c + jnp.uint64(1 << (bits - 1)))[None], bits)[0]  # [bits, W] of c'
    w = planes.shape[-1]

    # Leaf groups: local (G, P) from public c' and the dealer's products of r's bits.
    nc = ~planes[:npos]
    nc = jnp.concatenate([nc, jnp.full((k * LEAF - npos, w), ALL_ONES, jnp.uint64)])
    nc = jnp.swapaxes(nc.reshape(k, LEAF, w), 0, 1)  # [LEAF, K, W]
    g_poly, p_poly = _leaf_anf(nc)
    g = _eval_anf(g_poly, m["mono"], p0)
    p = _eval_anf(p_poly, m["mono"], p0)

    # Interactive tree levels: K -> ... -> 2 groups.
    level = 0
    while g.shape[0] > 2:
        g, p = _and_level(g, p, mat, p0, level)
        level += 1

    # Last round: MSB = s ^ (u & v), fused with B2A.
    u, v = p[1], g[0]
    s = (p0 & ~planes[npos]) ^ m["r_sign"] ^ g[1]
    hat = _xor_open(jnp.stack([u, v, s]) ^ m["abg"], label="cmp_final")
    uh, vh, sh = unpack_bits(hat, n)
    two = jnp.uint64(2)
    su, sv, ss = jnp.uint64(1) - two * uh, jnp.uint64(1) - two * vh, jnp.uint64(1) - two * sh
    c0, ca, cb, cab = uh * vh, vh * su, uh * sv, su * sv
    # t = s + uv - 2suv with u = uh + su*a, v = vh + sv*b, s = sh + ss*g (a, b, g the masks)
    coef = jnp.stack(
        [
            sh + ss * c0,  # 1
            ss * ca,  # a
            ss * cb,  # b
            ss * (jnp.uint64(1) - two * c0),  # g
            ss * cab,  # ab
            ss * (jnp.uint64(0) - two * ca),  # ag
            ss * (jnp.uint64(0) - two * cb),  # bg
            ss * (jnp.uint64(0) - two * cab),  # abg
        ]
    )
    mono = jnp.concatenate([one[None, None] * jnp.ones((1, n), jnp.uint64), m["abg_arith"]])
    t = jnp.sum(coef * mono, axis=0, dtype=jnp.uint64)

    tx = tv = None
    if with_input:  # t x = sum_i coef_i (c [m_i] - [r m_i])
        r_mono = jnp.concatenate([m["r"][None], m["r_arith"]])
        tx = jnp.sum(coef * (c[None] * mono - r_mono), axis=0, dtype=jnp.uint64)
    if e_count:  # t v = sum_i coef_i (e [m_i] + [a m_i])
        e = opened["e"]
        a_mono = jnp.concatenate([m["a"][None], m["a_arith"]])
        tv = jnp.sum(coef[:, :, None] * (e[None] * mono[:, :, None] + a_mono), axis=0)
        tv = tv.astype(jnp.uint64)
    return t, tx, tv


# --------------------------------------------------------------------------------------------
# Public protocols.
# --------------------------------------------------------------------------------------------
def msb(x: Ring, mat: Material, *, bits: int = DEFAULT_BITS) -> Ring:
    """Arithmetic 0/1 shares of ``MSB(x)``, i.e. ``[x < 0]`` reading ``x`` as signed 64-bit.

    Args:
      x: ``uint64[...]`` this party's shares (any shape; one comparison batch).
      mat: dealer material.
      bits: static ``l`` in ``[6, 64]``. ``64`` (default) is exact for every ring element. With
        ``l < 64`` the CALLER guarantees ``-2^(l-1) <= x < 2^(l-1)`` (signed); the circuit then
        runs on ``l - 1`` positions (fewer planes, maybe fewer rounds). Outside that range the
        result is garbage.

    Returns:
      ``uint64[...]`` shares of 0/1, same shape as ``x``.

    Protocol: see the module docstring (open ``x + r``; local leaf groups; AND tree levels; the
    last AND fused with B2A).

    Cost: :func:`msb_cost` — for ``bits=64``: 5 rounds, ``8 n + 336 ceil(n / 64)`` bytes per
    party (13.25 bytes per element for ``n = 128 x 3072``).
    """
    check_ring("msb", x)
    bits = _check_bits("msb", bits)
    if x.size == 0:
        return jnp.zeros_like(x)
    t, _, _ = _msb_flat(x.reshape(-1), mat, bits=bits)
    return t.reshape(x.shape)


def drelu(x: Ring, mat: Material, *, bits: int = DEFAULT_BITS) -> Ring:
    """Arithmetic 0/1 shares of ``[x >= 0]`` (``1 - MSB(x)``). Cost: that of :func:`msb`."""
    check_ring("drelu", x)
    return is_party0() - msb(x, mat, bits=bits)


def greater_equal_public(
    x: Ring,
    thresholds: Sequence[float],
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    bits: int = DEFAULT_BITS,
) -> Ring:
    """Shares of ``[x >= b_k]`` for public reals ``b_k``, all in ONE comparison batch.

    Args:
      x: ``uint64[...]`` shares of fixed-point values (``frac_bits``).
      thresholds: ``K >= 1`` public reals (encoded with ``frac_bits``, rounded to nearest).
      bits: see :func:`msb`; the contract applies to every ``x - b_k``.

    Returns:
      ``uint64[K, ...]`` shares of 0/1.

    Exact: ``[x >= b_k]`` is ``1 - MSB(x - enc(b_k))``, exact whenever ``x - enc(b_k)`` does not
    overflow (always for encodable values, ``|x|, |b_k| < 2^62`` in the ring).

    Cost: :func:`msb` on ``K |x|`` elements: the same rounds as one threshold.
    """
    check_ring("greater_equal_public", x)
    b = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if b.size == 0:
        raise ValueError("greater_equal_public: need at least one threshold")
    enc = encode(b, frac_bits).reshape((b.size,) + (1,) * x.ndim)  # checks range and finiteness
    d = x[None] - is_party0() * enc
    return is_party0() - msb(d, mat, bits=bits)


def greater(x: Ring, y: Ring, mat: Material, *, bits: int = DEFAULT_BITS) -> Ring:
    """Shares of ``[x > y]`` (``MSB(y - x)``, broadcasting). Exact while ``y - x`` fits 64 bits.

    Cost: that of :func:`msb` on the broadcast shape.
    """
    check_ring("greater", x, y)
    return msb(y - x, mat, bits=bits)


def less(x: Ring, y: Ring, mat: Material, *, bits: int = DEFAULT_BITS) -> Ring:
    """Shares of ``[x < y]`` (``MSB(x - y)``, broadcasting). Cost: that of :func:`msb`."""
    check_ring("less", x, y)
    return msb(x - y, mat, bits=bits)


def relu(
    x: Ring, mat: Material, *, frac_bits: int = DEFAULT_FRAC_BITS, bits: int = DEFAULT_BITS
) -> Ring:
    """Shares of ``max(x, 0) = x - MSB(x) x``, the product FUSED into the comparison.

    ``MSB(x) x`` needs no Beaver round: ``x = c - r`` with ``c`` opened in the comparison's first
    round, and the dealer also shares ``r`` times each last-round monomial, so the product is a
    local linear combination. Exact (no truncation: the bit is an integer), so the result is
    ``x`` or ``0`` to the bit. ``frac_bits`` is accepted for a uniform signature.

    Cost: exactly that of :func:`msb` (5 rounds, ``8 n + 336 ceil(n / 64)`` bytes per party);
    offline 7 more words per element.
    """
    check_ring("relu", x)
    bits = _check_bits("relu", bits)
    if x.size == 0:
        return jnp.zeros_like(x)
    _, tx, _ = _msb_flat(x.reshape(-1), mat, bits=bits, with_input=True)
    return x - tx.reshape(x.shape)


def select(bit: Ring, x: Ring, y: Ring, mat: Material) -> Ring:
    """Shares of ``bit ? x : y = y + bit (x - y)`` for an arithmetic 0/1 ``bit`` (broadcasting).

    One Beaver product, no truncation (the bit is an integer). Cost: 1 round, ``16 n`` bytes per
    party for the broadcast shape.
    """
    check_ring("select", bit, x, y)
    return y + mul(bit, x - y, mat, trunc="none")


def max_along(
    x: Ring,
    mat: Material,
    *,
    axis: int = -1,
    return_argmax_onehot: bool = False,
    bits: int = DEFAULT_BITS,
) -> Ring | tuple[Ring, Ring]:
    """Shares of the maximum along ``axis`` by a tournament tree of ``ceil(log2 n)`` levels.

    Level: neighbours ``(lo, hi)`` (``lo`` has the lower indices) -> ``b = [hi > lo] =
    MSB(lo - hi)``, winner ``lo - b (lo - hi)``; an odd last element passes through. The product
    ``b (lo - hi)`` is fused into the comparison (see :func:`relu`). With
    ``return_argmax_onehot`` each node also carries the one-hot of its winner over its span,
    ``concat(oh_lo - b oh_lo, b oh_hi)``: the products with ``b`` are fused too (``oh - a`` is
    opened in the comparison's first round), and at the first level the one-hots are public
    (``1 - b, b``). Ties go to ``lo``: the one-hot marks the FIRST maximal index.

    Args:
      x: ``uint64[...]`` shares; ``n = x.shape[axis] >= 1``.
      axis: static axis to reduce.
      return_argmax_onehot: also return the one-hot (arithmetic 0/1), shaped like ``x``.
      bits: see :func:`msb` (applies to every difference ``lo - hi``).

    Returns:
      The maximum (``x``'s shape without ``axis``), and the one-hot if requested.

    Cost: ``ceil(log2 n)`` comparison batches (5 rounds each for ``bits=64``); level ``L`` compares
    ``B m_L`` pairs (``B`` = elements of the other axes) and, with the one-hot and ``L >= 1``,
    opens ``B m_L 2^(L+1)`` more words in its first round.
    """
    check_ring("max_along", x)
    bits = _check_bits("max_along", bits)
    if x.ndim == 0:
        raise ValueError("max_along: x must have at least one axis")
    ax = axis % x.ndim if -x.ndim <= axis < x.ndim else None
    if ax is None:
        raise ValueError(f"max_along: axis {axis} out of range for shape {x.shape}")
    n = x.shape[ax]
    if n == 0:
        raise ValueError("max_along: cannot take the maximum of an empty axis")
    moved = jnp.moveaxis(x, ax, -1)
    batch = moved.shape[:-1]
    vals = moved.reshape(-1, n)  # [B, count]
    nb = vals.shape[0]
    one = is_party0()
    oh = None  # [B, count, span] one-hots of the current winners over their spans
    span = 1
    while vals.shape[1] > 1:
        cnt = vals.shape[1]
        mm = cnt // 2
        lo, hi = vals[:, 0 : 2 * mm : 2], vals[:, 1 : 2 * mm : 2]
        d = (lo - hi).reshape(-1)
        extras = None
        if return_argmax_onehot and oh is not None:
            pair = jnp.concatenate([oh[:, 0 : 2 * mm : 2], oh[:, 1 : 2 * mm : 2]], axis=-1)
            extras = pair.reshape(nb * mm, 2 * span)
        if nb * mm:
            b, bd, bv = _msb_flat(d, mat, bits=bits, with_input=True, extras=extras)
        else:  # an empty batch: nothing to compare
            b = bd = jnp.zeros((0,), jnp.uint64)
            bv = None if extras is None else jnp.zeros((0, 2 * span), jnp.uint64)
        win = lo - bd.reshape(nb, mm)
        if return_argmax_onehot:
            if oh is None:
                bb = b.reshape(nb, mm, 1)
                new_oh = jnp.concatenate([one - bb, bb], axis=-1)
            else:
                bv = bv.reshape(nb, mm, 2 * span)
                new_oh = jnp.concatenate(
                    [oh[:, 0 : 2 * mm : 2] - bv[..., :span], bv[..., span:]], axis=-1
                )
        if cnt % 2:
            win = jnp.concatenate([win, vals[:, -1:]], axis=1)
            if return_argmax_onehot:
                last = one * jnp.ones((nb, 1, 1), jnp.uint64) if oh is None else oh[:, -1:]
                last = jnp.concatenate([last, jnp.zeros((nb, 1, span), jnp.uint64)], axis=-1)
                new_oh = jnp.concatenate([new_oh, last], axis=1)
        vals = win
        if return_argmax_onehot:
            oh = new_oh
        span *= 2
    out = vals[:, 0].reshape(batch)
    if not return_argmax_onehot:
        return out
    hot = (one * jnp.ones((nb, 1), jnp.uint64)) if oh is None else oh[:, 0, :n]
    return out, jnp.moveaxis(hot.reshape(*batch, n), -1, ax)
