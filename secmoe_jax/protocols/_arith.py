"""Arithmetic protocols on additive shares over Z_2^64: linear ops, Beaver products, truncation.

Every function here is a per-party protocol (see :mod:`secmoe_jax.runtime`): it takes this
party's ``uint64`` shares and the dealer :class:`~secmoe_jax.dealer.Material`, and returns this
party's output shares. Public values enter on party 0 only. Cost formulas (n = elements,
bytes per party) are next to each protocol and pinned by tests.

References:
  D. Beaver, "Efficient multiparty protocols using circuit randomization", CRYPTO 1991.
  P. Mohassel, Y. Zhang, "SecureML", IEEE S&P 2017 (local truncation).
  D. Escudero et al., "Improved primitives for MPC over mixed arithmetic-binary circuits",
  CRYPTO 2020 (probabilistic truncation with a wrap bit).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .. import comm
from ..dealer import Material, register_kind, ring_struct, share_value, weight_mask_key
from ..kernels import (
    DEFAULT_FRAC_BITS,
    Ring,
    check_ring,
    encode,
    msb,
    ring_const,
    ring_einsum,
    sar,
    shl,
    shr,
    uniform_ring,
)

TRUNC_MODES = ("dealer", "local", "none")


def is_party0() -> Ring:
    """``1`` on party 0 and ``0`` on party 1, as ``uint64`` (for adding public terms once)."""
    return (comm.party_index() == 0).astype(jnp.uint64)


# --------------------------------------------------------------------------------------------
# Local (communication-free) operations.
# --------------------------------------------------------------------------------------------
def add(x: Ring, y: Ring) -> Ring:
    """Shares of ``x + y`` (local). Cost: 0 rounds, 0 bytes."""
    return x + y


def sub(x: Ring, y: Ring) -> Ring:
    """Shares of ``x - y`` (local). Cost: 0 rounds, 0 bytes."""
    return x - y


def neg(x: Ring) -> Ring:
    """Shares of ``-x`` (local)."""
    return jnp.zeros_like(x) - x


def add_public(x: Ring, value: Any, *, frac_bits: int = DEFAULT_FRAC_BITS) -> Ring:
    """Shares of ``x + value`` for a public float ``value`` (party 0 adds its encoding)."""
    return x + is_party0() * _public(value, frac_bits)


def add_public_ring(x: Ring, value: Ring) -> Ring:
    """Shares of ``x + value`` for a public ring element ``value`` (party 0 adds it)."""
    return x + is_party0() * value


def mul_int(x: Ring, k: Any) -> Ring:
    """Shares of ``k * x`` for a public integer (array) ``k`` (local, no truncation)."""
    if isinstance(k, jax.Array):
        k = k if k.dtype == jnp.uint64 else k.astype(jnp.int64).astype(jnp.uint64)
    else:
        k = jnp.asarray(np.asarray(k, dtype=np.int64).astype(np.uint64))
    return x * k


def _public(value: Any, frac_bits: int) -> Ring:
    if isinstance(value, jax.core.Tracer):
        return encode(value, frac_bits)
    return encode(np.asarray(value, dtype=np.float64), frac_bits)


def mul_public(
    x: Ring,
    value: Any,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    trunc: str = "dealer",
) -> Ring:
    """Shares of ``x * value`` for a public real ``value`` (broadcasting).

    The product of two ``f``-bit encodings has ``2f`` fractional bits and is truncated by
    ``trunc`` (see :func:`trunc`). Cost: that of the truncation (dealer: 1 round, 8n bytes).
    """
    return trunc_as(x * _public(value, frac_bits), mat, frac_bits=frac_bits, mode=trunc)


# --------------------------------------------------------------------------------------------
# Truncation.
# --------------------------------------------------------------------------------------------
def _trunc_shapes(shape, bits):
    s = ring_struct(shape)
    return {"r": s, "r_hi": s, "r_msb": s}


@register_kind("trunc", shapes=_trunc_shapes)
def _gen_trunc(key, weights_key, *, shape, bits):
    kr, k1, k2, k3 = jax.random.split(key, 4)
    r = uniform_ring(kr, shape)
    return {
        "r": share_value(k1, r),
        "r_hi": share_value(k2, shr(r, bits)),
        "r_msb": share_value(k3, msb(r)),
    }


def trunc(x: Ring, mat: Material, *, bits: int = DEFAULT_FRAC_BITS) -> Ring:
    """Dealer-assisted truncation: shares of ``floor(x / 2^bits)`` up to one unit, for |x| < 2^62.

    Protocol (Escudero et al. style, with the wrap bit from the mask's MSB):
      1. Dealer: uniform ``r``; shares of ``r``, of ``r >> bits`` (logical) and of ``MSB(r)``.
      2. Open ``c = x + 2^62 + r`` (party 0 adds ``2^62``, making ``x' = x + 2^62`` lie in
         ``[0, 2^63)``). ``c`` is uniform: it is masked by ``r``.
      3. The addition wrapped modulo 2^64 iff ``MSB(r) = 1`` and ``MSB(c) = 0``, so the wrap
         bit is ``w = (1 - MSB(c)) * MSB(r)``, linear in the shares of ``MSB(r)``.
      4. ``x' >> bits = (c >> bits) - (r >> bits) + w * 2^(64 - bits) - b`` with an unknown
         borrow ``b = [c mod 2^bits < r mod 2^bits]`` in {0, 1}, which is dropped; subtract
         ``2^(62 - bits)`` to return to ``x``.

    Result: ``floor(x / 2^bits) + b`` exactly, so the error is at most one unit in the last place
    (``2^-frac_bits`` of the decoded value) whenever ``|x| < 2^62``; never a large error.

    Cost: 1 round, 8n bytes per party; offline 3 words per element per party.
    """
    check_ring("trunc", x)
    if not 0 < bits < 62:
        raise ValueError(f"trunc: bits must be in (0, 62), got {bits}")
    t = mat.take("trunc", shape=tuple(x.shape), bits=bits)
    p0 = is_party0()
    c = comm.open(x + p0 * ring_const(1 << 62) + t["r"], label="trunc")
    w = (jnp.uint64(1) - msb(c)) * t["r_msb"]
    return p0 * shr(c, bits) - t["r_hi"] + shl(w, 64 - bits) - p0 * ring_const(1 << (62 - bits))


def trunc_local(x: Ring, *, bits: int = DEFAULT_FRAC_BITS) -> Ring:
    """Local (SecureML) truncation: no communication, probabilistic.

    Party 0 computes ``x0 >> bits`` and party 1 ``-((-x1) >> bits)`` (arithmetic shifts). For a
    value with ``|x| < 2^l`` the result is within one unit of ``x / 2^bits`` except with
    probability about ``2^(l + 1 - 64)`` per element, when the shares wrap around and the result
    is off by about ``2^(64 - bits)``: a catastrophic error. With ``l = 40`` that is ``2^-23``
    per element, i.e. several wrong activations per BERT-base forward. Use it only where the
    value's bound makes that negligible.

    Cost: 0 rounds, 0 bytes.
    """
    check_ring("trunc_local", x)
    p0 = comm.party_index() == 0
    return jnp.where(p0, sar(x, bits), jnp.zeros_like(x) - sar(jnp.zeros_like(x) - x, bits))


def trunc_as(x: Ring, mat: Material, *, frac_bits: int = DEFAULT_FRAC_BITS, mode: str) -> Ring:
    """Truncate ``frac_bits`` bits with ``mode`` in ``("dealer", "local", "none")``."""
    if mode == "dealer":
        return trunc(x, mat, bits=frac_bits)
    if mode == "local":
        return trunc_local(x, bits=frac_bits)
    if mode == "none":
        return x
    raise ValueError(f"truncation mode must be one of {TRUNC_MODES}, got {mode!r}")


# --------------------------------------------------------------------------------------------
# Beaver multiplication and squaring.
# --------------------------------------------------------------------------------------------
def _triple_shapes(shape):
    s = ring_struct(shape)
    return {"a": s, "b": s, "c": s}


@register_kind("beaver_mul", shapes=_triple_shapes)
def _gen_mul(key, weights_key, *, shape):
    ka, kb, k1, k2, k3 = jax.random.split(key, 5)
    a, b = uniform_ring(ka, shape), uniform_ring(kb, shape)
    return {"a": share_value(k1, a), "b": share_value(k2, b), "c": share_value(k3, a * b)}


def mul(
    x: Ring,
    y: Ring,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    trunc: str = "dealer",
) -> Ring:
    """Shares of ``x * y`` elementwise (broadcasting), by a Beaver triple.

    Protocol: dealer gives shares of ``a, b, c = a b``; open ``e = x - a`` and ``f = y - b`` in
    one round; ``z = c + e b + a f + [party 0] e f``; then truncate (``trunc`` mode).

    Cost: 1 round, ``2 * 8n`` bytes per party, plus the truncation (dealer: +1 round, +8n).
    """
    check_ring("mul", x, y)
    x, y = jnp.broadcast_arrays(x, y)
    t = mat.take("beaver_mul", shape=tuple(x.shape))
    e, f = comm.open((x - t["a"], y - t["b"]), label="mul")
    z = t["c"] + e * t["b"] + t["a"] * f + is_party0() * (e * f)
    return trunc_as(z, mat, frac_bits=frac_bits, mode=trunc)


def _square_shapes(shape):
    s = ring_struct(shape)
    return {"a": s, "c": s}


@register_kind("beaver_square", shapes=_square_shapes)
def _gen_square(key, weights_key, *, shape):
    ka, k1, k2 = jax.random.split(key, 3)
    a = uniform_ring(ka, shape)
    return {"a": share_value(k1, a), "c": share_value(k2, a * a)}


def square(
    x: Ring, mat: Material, *, frac_bits: int = DEFAULT_FRAC_BITS, trunc: str = "dealer"
) -> Ring:
    """Shares of ``x^2`` by a square pair ``(a, a^2)``: open ``e = x - a``; ``z = c + 2ea + e^2``.

    Cost: 1 round, ``8n`` bytes per party, plus the truncation.
    """
    check_ring("square", x)
    t = mat.take("beaver_square", shape=tuple(x.shape))
    e = comm.open(x - t["a"], label="square")
    z = t["c"] + jnp.uint64(2) * e * t["a"] + is_party0() * (e * e)
    return trunc_as(z, mat, frac_bits=frac_bits, mode=trunc)


# --------------------------------------------------------------------------------------------
# Beaver einsum / matmul.
# --------------------------------------------------------------------------------------------
def _parse(spec: str) -> tuple[str, str, str]:
    if "->" not in spec or spec.count(",") != 1:
        raise ValueError(f"einsum: expected a two-operand spec with '->', got {spec!r}")
    ins, out = spec.replace(" ", "").split("->")
    a, b = ins.split(",")
    return a, b, out


def einsum_shape(spec: str, x_shape, y_shape) -> tuple[int, ...]:
    """Output shape of a two-operand einsum, with a clear error for mismatched sizes."""
    a, b, out = _parse(spec)
    if len(a) != len(x_shape) or len(b) != len(y_shape):
        raise ValueError(
            f"einsum {spec!r}: operand ranks {len(x_shape)}, {len(y_shape)} do not match"
        )
    sizes: dict[str, int] = {}
    for labels, shape in ((a, x_shape), (b, y_shape)):
        for lab, n in zip(labels, shape, strict=True):
            if sizes.setdefault(lab, n) != n:
                raise ValueError(
                    f"einsum {spec!r}: size mismatch for {lab!r}: {sizes[lab]} vs {n} "
                    f"(shapes {tuple(x_shape)} and {tuple(y_shape)})"
                )
    return tuple(sizes[lab] for lab in out)


def _contracted(spec: str) -> list[str]:
    a, b, out = _parse(spec)
    return [lab for lab in a if lab in b and lab not in out]


def einsum_pair_sum(spec: str, x1: Ring, y1: Ring, x2: Ring, y2: Ring) -> Ring:
    """``einsum(x1, y1) + einsum(x2, y2)`` as one ring einsum when possible.

    With exactly one contracted label, the two products are concatenated along it, so each
    party runs a single ring matmul of twice the contraction length.
    """
    con = _contracted(spec)
    if len(con) == 1:
        a, b, _ = _parse(spec)
        xa, yb = a.index(con[0]), b.index(con[0])
        x = jnp.concatenate([x1, x2], axis=xa)
        y = jnp.concatenate([y1, y2], axis=yb)
        return ring_einsum(spec, x, y)
    return ring_einsum(spec, x1, y1) + ring_einsum(spec, x2, y2)


def _einsum_shapes(spec, x_shape, y_shape):
    return {
        "a": ring_struct(x_shape),
        "b": ring_struct(y_shape),
        "c": ring_struct(einsum_shape(spec, x_shape, y_shape)),
    }


@register_kind("beaver_einsum", shapes=_einsum_shapes)
def _gen_einsum(key, weights_key, *, spec, x_shape, y_shape):
    ka, kb, k1, k2, k3 = jax.random.split(key, 5)
    a, b = uniform_ring(ka, x_shape), uniform_ring(kb, y_shape)
    return {
        "a": share_value(k1, a),
        "b": share_value(k2, b),
        "c": share_value(k3, ring_einsum(spec, a, b)),
    }


def einsum(
    spec: str,
    x: Ring,
    y: Ring,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    trunc: str = "dealer",
) -> Ring:
    """Shares of ``einsum(spec, x, y)`` with both operands secret, by a Beaver einsum triple.

    Protocol: dealer gives shares of ``A, B, C = einsum(A, B)``; open ``E = x - A`` and
    ``F = y - B`` in one round; party i computes
    ``Z_i = einsum(E, B_i + [i = 0] F) + einsum(A_i, F) + C_i``, as ONE ring einsum with the two
    products concatenated along the contraction (see :func:`einsum_pair_sum`); then truncate.

    Cost: 1 round, ``8 (|x| + |y|)`` bytes per party, plus the truncation of the output.
    """
    check_ring("einsum", x, y)
    einsum_shape(spec, x.shape, y.shape)  # validates the spec and the shapes
    t = mat.take("beaver_einsum", spec=spec, x_shape=tuple(x.shape), y_shape=tuple(y.shape))
    e, f = comm.open((x - t["a"], y - t["b"]), label="einsum")
    z = einsum_pair_sum(spec, e, t["b"] + is_party0() * f, t["a"], f) + t["c"]
    return trunc_as(z, mat, frac_bits=frac_bits, mode=trunc)


def matmul(
    x: Ring, y: Ring, mat: Material, *, frac_bits: int = DEFAULT_FRAC_BITS, trunc: str = "dealer"
) -> Ring:
    """Shares of ``x @ y`` for ``x [..., M, K]``, ``y [K, N]`` or ``[..., K, N]`` (same batch)."""
    if x.ndim < 2 or y.ndim < 2:
        raise ValueError(f"matmul: operands need rank >= 2, got {x.shape} and {y.shape}")
    if y.ndim == 2:
        batch = "".join(chr(ord("a") + i) for i in range(x.ndim - 2))
        spec = f"{batch}mk,kn->{batch}mn"
    elif x.ndim == y.ndim:
        batch = "".join(chr(ord("a") + i) for i in range(x.ndim - 2))
        spec = f"{batch}mk,{batch}kn->{batch}mn"
    else:
        raise ValueError(f"matmul: unsupported operand ranks {x.shape} @ {y.shape}")
    return einsum(spec, x, y, mat, frac_bits=frac_bits, trunc=trunc)


# --------------------------------------------------------------------------------------------
# Fixed-operand (masked weight) products.
# --------------------------------------------------------------------------------------------
@struct.dataclass
class MaskedWeight:
    """A secret weight masked once at setup: ``F = W - B`` is public, ``B`` is the server's.

    The weights are the server's (P0, the model owner) input. The dealer gives the whole mask
    ``B`` to P0 (``b = B`` on P0, ``b = 0`` on P1): P1 holds only ``F``, uniformly random,
    and P0 learns nothing it did not know. Every product with a secret activation then costs
    each party ONE local product with its operand ``F + b`` (P0: ``W``, P1: ``F``) instead of
    two (see :func:`einsum_weight`).

    Attributes:
      f: the opened ``W - B`` (the same on both parties).
      b: this party's part of the mask: ``B`` on P0, zeros on P1.
      mask_id: static id of ``B`` at the dealer (derived from the dealer's weights key).
    """

    f: jax.Array
    b: jax.Array
    mask_id: int = struct.field(pytree_node=False)


@register_kind("weight_mask", shapes=lambda shape, mask_id: ring_struct(shape))
def _gen_weight_mask(key, weights_key, *, shape, mask_id):
    del key  # the mask is derived from the weights key; P0 holds all of it, P1 nothing
    b = uniform_ring(weight_mask_key(weights_key, mask_id), shape)
    return jnp.stack([b, jnp.zeros_like(b)])


def mask_weight(w: Ring, mat: Material, *, mask_id: int) -> MaskedWeight:
    """Setup: mask a secret weight once, opening ``F = W - B`` (1 round, ``8|W|`` per party).

    ``w`` must be the server's input (the model weights; P0 knows ``W``): P0 holds the whole
    mask ``B``, so P1's message is its raw share of ``W`` (which P0, who made the sharing,
    knows). P1 learns only ``F = W - B``, uniformly random. ``mask_id`` must be unique per
    weight for a given dealer weights key: two weights masked with the same ``B`` would reveal
    their difference (``runtime``/``Dealer.new_mask_id`` hand out fresh ids).
    """
    check_ring("mask_weight", w)
    b = mat.take("weight_mask", shape=tuple(w.shape), mask_id=int(mask_id))
    f = comm.open(w - b, label="weight_setup")
    return MaskedWeight(f=f, b=b, mask_id=int(mask_id))


def mask_weights(ws: dict[str, Ring], mat: Material, *, base_id: int) -> dict[str, MaskedWeight]:
    """Setup for many weights at once: like :func:`mask_weight`, all in ONE opening.

    The i-th weight in sorted name order gets ``mask_id = base_id + i``. Cost: 1 round,
    ``8 sum |W|`` bytes per party.
    """
    names = sorted(ws)
    check_ring("mask_weights", *(ws[n] for n in names))
    ids = {n: int(base_id) + i for i, n in enumerate(names)}
    bs = {n: mat.take("weight_mask", shape=tuple(ws[n].shape), mask_id=ids[n]) for n in names}
    fs = comm.open({n: ws[n] - bs[n] for n in names}, label="weight_setup")
    return {n: MaskedWeight(f=fs[n], b=bs[n], mask_id=ids[n]) for n in names}


def _fixed_shapes(spec, x_shape, w_shape, mask_id):
    return {"a": ring_struct(x_shape), "c": ring_struct(einsum_shape(spec, x_shape, w_shape))}


@register_kind("fixed_einsum", shapes=_fixed_shapes)
def _gen_fixed(key, weights_key, *, spec, x_shape, w_shape, mask_id):
    ka, k1, k2 = jax.random.split(key, 3)
    a = share_value(k1, uniform_ring(ka, x_shape))
    b = uniform_ring(weight_mask_key(weights_key, mask_id), w_shape)
    return {"a": a, "c": share_value(k2, ring_einsum(spec, a[1], b))}  # C = A_1 B


def einsum_weight(
    spec: str,
    x: Ring,
    w: MaskedWeight,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    trunc: str = "dealer",
) -> Ring:
    """Shares of ``einsum(spec, x, W)`` for a secret activation and a masked weight.

    Protocol: the dealer gives shares of a fresh ``A`` and of ``C = einsum(A_1, B)`` (P1's
    share of ``A`` against the weight's setup mask ``B``, which P0 holds); open only
    ``E = x - A``; party i computes ``Z_i = einsum([i = 0] E + A_i, F + b_i) + C_i``, ONE ring
    einsum of the activation's size: P0 ``(E + A_0) W``, P1 ``A_1 F``, and
    ``(E + A_0) W + A_1 F + A_1 B = x W``.

    Cost: 1 round, ``8|x|`` bytes per party (independent of the weight's size), plus the
    truncation of the output.
    """
    check_ring("einsum_weight", x, w.f, w.b)
    t = mat.take(
        "fixed_einsum",
        spec=spec,
        x_shape=tuple(x.shape),
        w_shape=tuple(w.f.shape),
        mask_id=w.mask_id,
    )
    e = comm.open(x - t["a"], label="einsum_weight")
    z = ring_einsum(spec, is_party0() * e + t["a"], w.f + w.b) + t["c"]
    return trunc_as(z, mat, frac_bits=frac_bits, mode=trunc)


def matmul_weight(
    x: Ring,
    w: MaskedWeight,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    trunc: str = "dealer",
) -> Ring:
    """Shares of ``x @ W`` for ``x [..., M, K]`` and a masked ``W [K, N]``."""
    if w.f.ndim != 2:
        raise ValueError(f"matmul_weight: weight must be 2-D, got {w.f.shape}")
    batch = "".join(chr(ord("a") + i) for i in range(x.ndim - 1))
    return einsum_weight(f"{batch}k,kn->{batch}n", x, w, mat, frac_bits=frac_bits, trunc=trunc)


def dot_public(spec: str, x: Ring, public: Any) -> Ring:
    """Shares of ``einsum(spec, x, P)`` for a public ring matrix ``P`` (local)."""
    return ring_einsum(spec, x, public)
