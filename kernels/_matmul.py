"""Exact matrix products over the ring Z_2^64 (uint64 with wraparound).

Every party of the two-party protocols multiplies uint64 matrices locally, and the result must be
bit-exact modulo 2^64. XLA has no fast 64-bit integer GEMM, so the products are decomposed onto
the fast GEMMs it does have (float64, and int8 x int8 -> int32), and recombined modulo 2^64.

Limb decomposition. Write x = sum_i d_i 2^(o_i) (mod 2^64) with limb offsets o_i and widths w_i.
Then

    (A @ B) mod 2^64 = sum_{(i, j): o_i + o_j < 64} 2^(o_i + o_j) (A_i @ B_j)   (mod 2^64),

because every pair with o_i + o_j >= 64 vanishes modulo 2^64. Each digit product A_i @ B_j is a
K-term dot that is computed exactly on a narrower type, converted to uint64 and shifted.

Balanced digits. With C = sum_i 2^(w_i - 1) 2^(o_i) and z = x + C (mod 2^64), the digits
d_i = limb_i(z) - 2^(w_i - 1) lie in [-2^(w_i - 1), 2^(w_i - 1)), which quarters the largest
digit product compared with unsigned limbs. The worst case is x = -C (mod 2^64): z = 0 and every
digit takes its minimum -2^(w_i - 1).

Exactness. A dot of T terms whose products are bounded by P in absolute value is exact in an
accumulator with exact integer range 2^p if T * P < 2^p, for any summation order, blocking, FMA
or split-K, because every partial sum is then a representable integer. Here 2^p = 2^53 for
float64 and 2^31 for int32 (the int32 accumulator is never allowed to overflow). Longer
contractions are cut into chunks of at most floor((2^p - 1) / P) terms whose exact partial sums
are converted to uint64 and added with wraparound. The chunk plan is fixed at trace time from
the static shapes; a plan that cannot be made exact raises ValueError.

Backends (``BACKENDS``):

* ``native``: XLA's uint64 dot (wraps modulo 2^64). The reference; slow on CPU and GPU.
* ``f64``: three balanced limbs of 22/21/21 bits (offsets 0, 22, 43). Only the 6 pairs (0,0),
  (0,1), (1,0), (0,2), (2,0), (1,1) have o_i + o_j < 64. The largest digit product is
  2^21 * 2^21 = 2^42, so a chunk holds at most 2047 terms.
* ``f64k``: the same limbs, with the offset-22 cross term computed Karatsuba-style,
  A0 B1 + A1 B0 = (A0 + A1)(B0 + B1) - A0 B0 - A1 B1, so 5 float64 GEMMs instead of 6. The
  digit sums reach 3 * 2^20, so the product bound is 9 * 2^40 and that GEMM's chunks hold at most
  910 terms. The fastest exact variant on CPU.
* ``int8``: eight balanced signed 8-bit digits, products on int8 x int8 -> int32 (tensor-core
  IMMA on GPU, VNNI on CPU). Only the 36 pairs with i + j < 8 are needed; the pairs of each
  diagonal s = i + j are concatenated along K, giving 8 GEMMs. The digit product bound is 2^14,
  so a chunk holds at most 131071 terms (K < 16384 for an unchunked diagonal of 8 pairs).

References: CrypTen ``CUDALongTensor`` (float64 16-bit blocks); Uchino, Ozaki, Imamura,
"Ozaki scheme II" (integer emulation on int8 tensor cores), arXiv 2504.08009.
"""

from __future__ import annotations

import functools
import math
import string
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Ring = jax.Array  # uint64, arithmetic modulo 2^64

BACKENDS: tuple[str, ...] = ("f64", "f64k", "int8", "native")
#: On CPU, ``auto`` uses the native uint64 dot for products of at most this many
#: multiply-accumulates: there the limb split and recombination cost more than they save, and
#: the native kernel compiles much faster.
SMALL_MACS = 1 << 20

# Exact integer range of the accumulators: every |partial sum| must stay below this.
F64_EXACT = 2**53
INT32_EXACT = 2**31

# 22/21/21 balanced limbs for float64 (widths, offsets) and their offset constant C.
F64_WIDTHS: tuple[int, ...] = (22, 21, 21)
F64_OFFSETS: tuple[int, ...] = (0, 22, 43)
F64_BALANCE = sum(1 << (w - 1 + o) for w, o in zip(F64_WIDTHS, F64_OFFSETS, strict=True))

# 8 balanced signed bytes: C = 0x8080...80.
INT8_DIGITS = 8
INT8_BALANCE = 0x8080808080808080

# Largest |digit product| of each GEMM type, used for the chunk plans.
F64_MAX_PRODUCT = (1 << 21) * (1 << 21)  # A0 * B0
F64K_MAX_PRODUCT = (3 << 20) * (3 << 20)  # (A0 + A1) * (B0 + B1)
INT8_MAX_PRODUCT = 128 * 128

_MASK64 = (1 << 64) - 1

# Self-test results, keyed by (backend, platform); filled on first use of a backend.
_SELF_TEST_CACHE: dict[tuple[str, str], bool] = {}


# --------------------------------------------------------------------------------------------
# Checks and plans (trace time)
# --------------------------------------------------------------------------------------------


def _require_x64(fn: str) -> None:
    """Raise RuntimeError when 64-bit types are disabled (uint64 would silently become uint32)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{fn}: ring arithmetic needs 64-bit types, but jax_enable_x64 is off (uint64 "
            "arrays are silently truncated to uint32). Run inside `with jax.enable_x64(True):` "
            'or call jax.config.update("jax_enable_x64", True) at start-up.'
        )


def _require_uint64(fn: str, name: str, x) -> None:
    """Raise TypeError unless ``x`` is a uint64 array (or tracer)."""
    dtype = getattr(x, "dtype", None)
    if dtype is None or np.dtype(dtype) != np.uint64:
        raise TypeError(
            f"{fn}: expected uint64 ring elements for `{name}`, got "
            f"{'a ' + type(x).__name__ if dtype is None else dtype} (enable x64 with "
            "jax.enable_x64(True) and build the shares with dtype=jnp.uint64)."
        )


def chunk_plan(
    k: int, max_product: int, exact_range: int, *, chunk: int | None = None, fn: str = "ring_matmul"
) -> tuple[int, ...]:
    """Split a contraction of ``k`` terms into chunks whose sums are exact.

    Args:
      k: number of accumulated terms (static).
      max_product: bound on |a_k * b_k| for one term.
      exact_range: 2^p, the accumulator's exact integer range (2^53 for float64, 2^31 for int32).
      chunk: requested chunk length; default the largest exact one.
      fn: name of the calling function, used in error messages.

    Returns:
      The chunk lengths (sum ``k``; at most ``chunk``; as equal as possible).

    Raises:
      ValueError: if ``chunk * max_product >= exact_range`` or even one term is not exact.
    """
    limit = (exact_range - 1) // max_product  # largest T with T * max_product < exact_range
    if limit < 1:
        raise ValueError(
            f"{fn}: a single digit product of size {max_product} exceeds the accumulator's exact "
            f"range {exact_range}; no chunking can make this plan exact."
        )
    if chunk is None:
        chunk = limit
    if chunk < 1 or chunk * max_product >= exact_range:
        raise ValueError(
            f"{fn}: chunk of {chunk} terms is not exact: {chunk} * {max_product} >= {exact_range} "
            f"(bound: at most {limit} terms per chunk)."
        )
    if k <= 0:
        return ()
    n = -(-k // chunk)
    base, extra = divmod(k, n)
    return tuple(base + 1 if i < extra else base for i in range(n))


def resolve_backend(backend: str, platform: str | None = None, *, macs: int | None = None) -> str:
    """Map ``backend`` to a concrete backend name.

    Args:
      backend: one of ``BACKENDS`` or ``"auto"``.
      platform: JAX platform (``"cpu"``, ``"gpu"``, ``"cuda"``, ``"rocm"``, ``"tpu"``); default
        ``jax.default_backend()``.

    Returns:
      ``backend`` itself, or for ``"auto"`` the fastest exact backend for the platform: ``f64k``
      on CPU (5 float64 GEMMs), ``int8`` on GPU and TPU (integer tensor cores).
    """
    if backend in BACKENDS:
        return backend
    if backend != "auto":
        raise ValueError(f"resolve_backend: unknown backend {backend!r}; use 'auto' or {BACKENDS}.")
    platform = jax.default_backend() if platform is None else platform
    if platform in ("gpu", "cuda", "rocm", "tpu"):
        return "int8"
    if macs is not None and macs <= SMALL_MACS:
        return "native"
    return "f64k"


# --------------------------------------------------------------------------------------------
# Digit extraction (per-limb shift + mask + value-preserving convert; no transposes)
# --------------------------------------------------------------------------------------------


def _f64_digits(x: Ring) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Balanced 22/21/21-bit digits of ``x`` as float64 arrays of ``x.shape``.

    d0 in [-2^21, 2^21), d1, d2 in [-2^20, 2^20); x = d0 + 2^22 d1 + 2^43 d2 (mod 2^64).
    """
    z = x + jnp.uint64(F64_BALANCE)
    out = []
    for w, o in zip(F64_WIDTHS, F64_OFFSETS, strict=True):
        limb = (z >> jnp.uint64(o)) & jnp.uint64((1 << w) - 1)
        out.append((limb.astype(jnp.int32) - (1 << (w - 1))).astype(jnp.float64))
    return out[0], out[1], out[2]


def _int8_digits(x: Ring) -> list[jax.Array]:
    """The 8 balanced signed bytes of ``x`` (digit i has weight 2^(8 i)), each int8 of x.shape.

    Byte i of (x + 0x80..80) ^ 0x80..80, read as a signed byte, equals limb_i(x + C) - 128.
    """
    t = (x + jnp.uint64(INT8_BALANCE)) ^ jnp.uint64(INT8_BALANCE)
    return [
        lax.bitcast_convert_type(
            ((t >> jnp.uint64(8 * i)) & jnp.uint64(0xFF)).astype(jnp.uint8), jnp.int8
        )
        for i in range(INT8_DIGITS)
    ]


# --------------------------------------------------------------------------------------------
# Chunked exact dots on the canonical form a: [G?, M, K], b: [G?, K, N]
# --------------------------------------------------------------------------------------------


def _dot(a: jax.Array, b: jax.Array, acc: jnp.dtype) -> jax.Array:
    """Plain dot of a [(G,) M, K] and b [(G,) K, N] with accumulator type ``acc``."""
    nb = a.ndim - 2
    batch = tuple(range(nb))
    dims = (((nb + 1,), (nb,)), (batch, batch))
    return lax.dot_general(a, b, dims, preferred_element_type=acc)


def _exact_dot(a: jax.Array, b: jax.Array, *, max_product: int, fn: str) -> Ring:
    """Exact dot a [(G,) M, K] @ b [(G,) K, N] returned in uint64 (mod 2^64).

    The contraction is cut into chunks of at most floor((2^p - 1) / max_product) terms (2^p the
    accumulator's exact range); each chunk's exact sum is converted to uint64 and added with
    wraparound. float64 operands accumulate in float64, int8 operands in int32.
    """
    if a.dtype == jnp.float64:
        acc, exact_range = jnp.float64, F64_EXACT
    else:
        acc, exact_range = jnp.int32, INT32_EXACT
    k = a.shape[-1]
    total = None
    start = 0
    for length in chunk_plan(k, max_product, exact_range, fn=fn):
        if length == k:
            part = _dot(a, b, acc)
        else:
            a_c = lax.slice_in_dim(a, start, start + length, axis=a.ndim - 1)
            b_c = lax.slice_in_dim(b, start, start + length, axis=b.ndim - 2)
            part = _dot(a_c, b_c, acc)
        start += length
        part = part.astype(jnp.int64).astype(jnp.uint64)  # exact, then two's-complement wrap
        total = part if total is None else total + part
    if total is None:  # K == 0
        shape = a.shape[:-1] + b.shape[-1:]
        total = jnp.zeros(shape, jnp.uint64)
    return total


def _shl(x: Ring, s: int) -> Ring:
    """x * 2^s mod 2^64 for a static shift 0 <= s < 64."""
    return x if s == 0 else x << jnp.uint64(s)


def _split_rows(x: Ring, m: int, parts: int) -> list[Ring]:
    """Split the result of an M-stacked GEMM [(G,) parts*m, N] into ``parts`` [(G,) m, N]."""
    ax = x.ndim - 2
    return [lax.slice_in_dim(x, i * m, (i + 1) * m, axis=ax) for i in range(parts)]


def _prep_f64(a: Ring) -> tuple[jax.Array, ...]:
    """A side of ``f64``: the M-stacked digits [A0; A1; A2] [(G,) 3M, K] (float64)."""
    return (jnp.concatenate(_f64_digits(a), axis=a.ndim - 2),)


def _apply_f64(a_prep: tuple[jax.Array, ...], b: Ring, m: int, fn: str) -> Ring:
    """22/21/21 limbs, 6 pairs in 3 GEMM calls: [A0; A1; A2] @ B0, [A0; A1] @ B1, A0 @ B2."""
    (a_stack,) = a_prep
    ax = a_stack.ndim - 2
    b0, b1, b2 = _f64_digits(b)
    r0 = _exact_dot(a_stack, b0, max_product=F64_MAX_PRODUCT, fn=fn)
    r1 = _exact_dot(
        lax.slice_in_dim(a_stack, 0, 2 * m, axis=ax), b1, max_product=F64_MAX_PRODUCT // 2, fn=fn
    )
    p02 = _exact_dot(
        lax.slice_in_dim(a_stack, 0, m, axis=ax), b2, max_product=F64_MAX_PRODUCT // 2, fn=fn
    )
    p00, p10, p20 = _split_rows(r0, m, 3)
    p01, p11 = _split_rows(r1, m, 2)
    out = p00 + _shl(p01 + p10, F64_OFFSETS[1])
    return out + _shl(p02 + p20 + _shl(p11, 1), F64_OFFSETS[2])


def _prep_f64k(a: Ring) -> tuple[jax.Array, ...]:
    """A side of ``f64k``: ([A0; A2], A1, A0 + A1, A0), float64."""
    a0, a1, a2 = _f64_digits(a)
    return jnp.concatenate([a0, a2], axis=a.ndim - 2), a1, a0 + a1, a0


def _apply_f64k(a_prep: tuple[jax.Array, ...], b: Ring, m: int, fn: str) -> Ring:
    """22/21/21 limbs with a Karatsuba cross term: 5 GEMM-equivalents in 4 calls.

    P01 + P10 = (A0 + A1)(B0 + B1) - P00 - P11, with the digit-sum products bounded by 9 * 2^40.
    """
    a02, a1, a01, a0 = a_prep
    b0, b1, b2 = _f64_digits(b)
    p00, p20 = _split_rows(_exact_dot(a02, b0, max_product=F64_MAX_PRODUCT, fn=fn), m, 2)
    p11 = _exact_dot(a1, b1, max_product=F64_MAX_PRODUCT // 4, fn=fn)
    kk = _exact_dot(a01, b0 + b1, max_product=F64K_MAX_PRODUCT, fn=fn)
    p02 = _exact_dot(a0, b2, max_product=F64_MAX_PRODUCT // 2, fn=fn)
    out = p00 + _shl(kk - p00 - p11, F64_OFFSETS[1])
    return out + _shl(p02 + p20 + _shl(p11, 1), F64_OFFSETS[2])


def _prep_int8(a: Ring) -> tuple[jax.Array, ...]:
    """A side of ``int8``: the prefixes [A0 | ... | As] along K for s = 0..7 (int8)."""
    ka = a.ndim - 1
    a_cat = jnp.concatenate(_int8_digits(a), axis=ka)
    k = a.shape[-1]
    return tuple(lax.slice_in_dim(a_cat, 0, (s + 1) * k, axis=ka) for s in range(INT8_DIGITS))


def _apply_int8(a_prep: tuple[jax.Array, ...], b: Ring, m: int, fn: str) -> Ring:
    """8 balanced int8 digits, 36 pairs as 8 K-concatenated diagonal GEMMs (int32 accumulate).

    Diagonal s is [A0 | ... | As] @ [Bs; ...; B0], a suffix of the stacked [B7; ...; B0].
    """
    del m
    kb = b.ndim - 2
    k = b.shape[-2]
    b_cat = jnp.concatenate(_int8_digits(b)[::-1], axis=kb)
    out = None
    for s in range(INT8_DIGITS):
        b_s = lax.slice_in_dim(b_cat, (INT8_DIGITS - 1 - s) * k, INT8_DIGITS * k, axis=kb)
        c_s = _shl(_exact_dot(a_prep[s], b_s, max_product=INT8_MAX_PRODUCT, fn=fn), 8 * s)
        out = c_s if out is None else out + c_s
    return out


# Per backend: (A-side preparation, tile product, largest |product| per contraction index).
# The int8 bound counts all 8 digit pairs of the longest K-concatenated diagonal.
_KERNELS = {
    "f64": (_prep_f64, _apply_f64, F64_MAX_PRODUCT, F64_EXACT),
    "f64k": (_prep_f64k, _apply_f64k, F64K_MAX_PRODUCT, F64_EXACT),
    "int8": (_prep_int8, _apply_int8, INT8_MAX_PRODUCT * INT8_DIGITS, INT32_EXACT),
}

# The right operand (in a layer, the K x N weights) is processed in tiles of one exact K chunk by
# a column block of about this many elements, so that its digit planes stay cache-sized and their
# buffers are reused across the loop instead of being allocated at full size. Measured on XLA:CPU
# (2 cores) at 128 x 768 x 3072: whole-matrix planes ~8.2x the float64 GEMM, 512-column tiles
# ~5.8x, 64 to 128-column tiles ~5.4x.
_TILE_ELEMENTS = 128 * 768


def _column_block(kt: int, n: int) -> int:
    """Static column-block width for K-chunks of ``kt`` rows and ``n`` columns.

    Only XLA:CPU is blocked; accelerators get the whole width (fewer, larger GEMMs).
    """
    if kt * n <= 2 * _TILE_ELEMENTS or jax.default_backend() != "cpu":
        return n
    return min(n, max(32, (_TILE_ELEMENTS // kt) // 32 * 32))


def _core(a: Ring, b: Ring, backend: str, fn: str) -> Ring:
    """Exact a [G, M, K] @ b [G, K, N] (mod 2^64); G == 1 runs as a plain 2-D product.

    K is cut into the backend's exact chunks and N into column blocks; each (chunk, block) tile
    is an exact limb product, and the tiles are summed with uint64 wraparound.
    """
    g, m, k = a.shape
    n = b.shape[-1]
    if g * m * n == 0 or k == 0:
        return jnp.zeros((g, m, n), jnp.uint64)
    if backend == "native":
        return _dot(a, b, jnp.uint64)
    if g == 1:
        a, b = a[0], b[0]
    prep, apply, max_product, exact_range = _KERNELS[backend]
    chunks = chunk_plan(k, max_product, exact_range, fn=fn)
    ka, kb, nx = a.ndim - 1, b.ndim - 2, b.ndim - 1
    starts = [sum(chunks[:i]) for i in range(len(chunks))]
    spans = list(zip(starts, chunks, strict=True))
    a_preps = [prep(lax.slice_in_dim(a, s0, s0 + kc, axis=ka)) for s0, kc in spans]

    def block(b_cols: Ring) -> Ring:
        """Exact a @ b_cols summed over the K chunks."""
        out = None
        for a_prep, s0, kc in zip(a_preps, starts, chunks, strict=True):
            b_t = b_cols if kc == k else lax.slice_in_dim(b_cols, s0, s0 + kc, axis=kb)
            part = apply(a_prep, b_t, m, fn)
            out = part if out is None else out + part
        return out

    nb = _column_block(max(chunks), n)
    nfull = n // nb
    if nfull <= 1:
        out = block(b)
    else:

        def body(i, acc):
            b_i = lax.dynamic_slice_in_dim(b, i * nb, nb, axis=nx)
            return lax.dynamic_update_slice_in_dim(acc, block(b_i), i * nb, axis=nx)

        out = lax.fori_loop(0, nfull, body, jnp.zeros(a.shape[:-1] + (n,), jnp.uint64))
        if nfull * nb < n:
            tail = block(lax.slice_in_dim(b, nfull * nb, n, axis=nx))
            out = lax.dynamic_update_slice_in_dim(out, tail, nfull * nb, axis=nx)
    return out[None] if g == 1 else out


# --------------------------------------------------------------------------------------------
# ring_matmul
# --------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnames=("backend",))
def _ring_matmul(a: Ring, b: Ring, *, backend: str) -> Ring:
    """Jitted kernel of ``ring_matmul``; shapes already checked, backend concrete."""
    m, k = a.shape[-2:]
    n = b.shape[-1]
    if b.ndim == 2:  # shared right operand: fold the batch of `a` into M
        lead = a.shape[:-2]
        out = _core(a.reshape(1, math.prod(lead) * m, k), b[None], backend, "ring_matmul")
        return out.reshape(*lead, m, n)
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    g = math.prod(lead)
    a_g = jnp.broadcast_to(a, (*lead, m, k)).reshape(g, m, k)
    b_g = jnp.broadcast_to(b, (*lead, k, n)).reshape(g, k, n)
    return _core(a_g, b_g, backend, "ring_matmul").reshape(*lead, m, n)


def _check_backend(fn: str, backend: str, macs: int | None = None) -> str:
    """Resolve ``backend`` (``macs``: size of the product) and run its one-time self-test."""
    try:
        name = resolve_backend(backend, macs=macs)
    except ValueError:
        raise ValueError(f"{fn}: unknown backend {backend!r}; use 'auto' or {BACKENDS}.") from None
    if not self_test(name):
        raise RuntimeError(
            f"{fn}: the self-test of backend {name!r} failed on platform "
            f"{jax.default_backend()!r}: its products are not exact here. Use backend='native'."
        )
    return name


def ring_matmul(a: Ring, b: Ring, *, backend: str = "auto") -> Ring:
    """Exact matrix product modulo 2^64, with numpy ``matmul`` broadcasting of batch dims.

    Args:
      a: uint64 [..., M, K].
      b: uint64 [..., K, N].
      backend: ``"auto"`` or one of ``BACKENDS`` (see the module docstring); static.

    Returns:
      uint64 [..., M, N] equal to (a @ b) mod 2^64, bit-exact for every backend. The float64 and
      int8 backends cut K into chunks (f64: <= 2047 terms; f64k: <= 910 for the Karatsuba GEMM;
      int8: <= 131071 terms per concatenated diagonal) so that no accumulator leaves its exact
      range.

    Raises:
      RuntimeError: if x64 is disabled, or the backend's self-test failed on this platform.
      TypeError: if an operand is not uint64.
      ValueError: on incompatible shapes or an unknown backend.
    """
    fn = "ring_matmul"
    _require_x64(fn)
    _require_uint64(fn, "a", a)
    _require_uint64(fn, "b", b)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"{fn}: operands must be at least 2-D, got {a.shape} and {b.shape}.")
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"{fn}: contraction sizes differ: a {a.shape} has K={a.shape[-1]}, b {b.shape} has "
            f"K={b.shape[-2]}."
        )
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(
            f"{fn}: batch dims of a {a.shape} and b {b.shape} do not broadcast."
        ) from None
    macs = math.prod(np.broadcast_shapes(a.shape[:-2], b.shape[:-2])) * a.shape[-2] * a.shape[-1]
    macs *= b.shape[-1]
    return _ring_matmul(a, b, backend=_check_backend(fn, backend, macs))


# --------------------------------------------------------------------------------------------
# ring_einsum
# --------------------------------------------------------------------------------------------


def _parse_einsum(spec: str, shape_a: Sequence[int], shape_b: Sequence[int]):
    """Parse a two-operand einsum ``spec`` and classify its labels.

    Returns:
      (in_a, in_b, out, sizes) with ``sizes`` mapping each label to its size.

    Raises:
      ValueError: on a malformed spec, a rank or size mismatch, or an unsupported form.
    """
    fn = "ring_einsum"
    s = spec.replace(" ", "")
    if "->" not in s or s.count("->") != 1:
        raise ValueError(f"{fn}: spec {spec!r} needs an explicit '->' output.")
    lhs, out = s.split("->")
    ops = lhs.split(",")
    if len(ops) != 2:
        raise ValueError(f"{fn}: spec {spec!r} must have exactly two operands.")
    in_a, in_b = ops
    letters = set(string.ascii_letters)
    for term in (in_a, in_b, out):
        if not set(term) <= letters:
            raise ValueError(f"{fn}: spec {spec!r}: only letter labels are supported (no '...').")
        if len(set(term)) != len(term):
            raise ValueError(f"{fn}: spec {spec!r}: repeated labels in {term!r} are not supported.")
    for term, shape, name in ((in_a, shape_a, "a"), (in_b, shape_b, "b")):
        if len(term) != len(shape):
            raise ValueError(
                f"{fn}: spec term {term!r} has {len(term)} labels but {name} has "
                f"shape {tuple(shape)}."
            )
    missing = set(out) - set(in_a) - set(in_b)
    if missing:
        raise ValueError(f"{fn}: output labels {sorted(missing)} of {spec!r} are in no operand.")
    sizes: dict[str, int] = dict(zip(in_a, shape_a, strict=True))
    for lab, size in zip(in_b, shape_b, strict=True):
        if sizes.setdefault(lab, size) != size:
            raise ValueError(
                f"{fn}: label {lab!r} of {spec!r} has size {sizes[lab]} in a {tuple(shape_a)} "
                f"but {size} in b {tuple(shape_b)}."
            )
    return in_a, in_b, out, sizes


@functools.partial(jax.jit, static_argnames=("spec", "backend"))
def _ring_einsum(a: Ring, b: Ring, *, spec: str, backend: str) -> Ring:
    """Jitted kernel of ``ring_einsum``: map the spec onto a [G, M, K] @ [G, K, N] product."""
    in_a, in_b, out, sizes = _parse_einsum(spec, a.shape, b.shape)
    # Labels of one operand that appear nowhere else are summed first (wrapping uint64 sum).
    only_a = [lab for lab in in_a if lab not in in_b and lab not in out]
    only_b = [lab for lab in in_b if lab not in in_a and lab not in out]
    if only_a:
        a = jnp.sum(a, axis=tuple(in_a.index(lab) for lab in only_a), dtype=jnp.uint64)
        in_a = "".join(lab for lab in in_a if lab not in only_a)
    if only_b:
        b = jnp.sum(b, axis=tuple(in_b.index(lab) for lab in only_b), dtype=jnp.uint64)
        in_b = "".join(lab for lab in in_b if lab not in only_b)
    batch = [lab for lab in in_a if lab in in_b and lab in out]
    contract = [lab for lab in in_a if lab in in_b and lab not in out]
    free_a = [lab for lab in in_a if lab not in in_b]
    free_b = [lab for lab in in_b if lab not in in_a]
    a_t = jnp.transpose(a, [in_a.index(lab) for lab in batch + free_a + contract])
    b_t = jnp.transpose(b, [in_b.index(lab) for lab in batch + contract + free_b])
    g = math.prod(sizes[lab] for lab in batch)
    m = math.prod(sizes[lab] for lab in free_a)
    k = math.prod(sizes[lab] for lab in contract)
    n = math.prod(sizes[lab] for lab in free_b)
    res = _core(a_t.reshape(g, m, k), b_t.reshape(g, k, n), backend, "ring_einsum")
    order = batch + free_a + free_b
    res = res.reshape([sizes[lab] for lab in order])
    return jnp.transpose(res, [order.index(lab) for lab in out])


def ring_einsum(spec: str, a: Ring, b: Ring, *, backend: str = "auto") -> Ring:
    """Exact two-operand einsum modulo 2^64.

    Labels shared by both operands and the output are batch axes, shared labels absent from the
    output are contracted, and the remaining labels are free axes; labels present in only one
    operand and not in the output are summed out first. The product then runs on the same exact
    limb kernels as ``ring_matmul`` (same chunk bounds).

    Args:
      spec: e.g. ``'BHQD,BHKD->BHQK'`` or ``'TD,EDF->TEF'``; two operands, explicit ``'->'``,
        letter labels, no repeated label within a term; static.
      a: uint64 array matching the first term.
      b: uint64 array matching the second term.
      backend: ``"auto"`` or one of ``BACKENDS``; static.

    Returns:
      uint64 array with the output term's axes, equal to the einsum modulo 2^64.

    Raises:
      RuntimeError: if x64 is disabled, or the backend's self-test failed on this platform.
      TypeError: if an operand is not uint64.
      ValueError: on a malformed spec or mismatched shapes.
    """
    fn = "ring_einsum"
    _require_x64(fn)
    _require_uint64(fn, "a", a)
    _require_uint64(fn, "b", b)
    _, _, _, sizes = _parse_einsum(spec, a.shape, b.shape)
    macs = math.prod(sizes.values())
    return _ring_einsum(a, b, spec=spec.replace(" ", ""), backend=_check_backend(fn, backend, macs))


# --------------------------------------------------------------------------------------------
# Self-test
# --------------------------------------------------------------------------------------------


def _python_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Reference (a @ b) mod 2^64 with Python integers (numpy object arrays)."""
    prod = np.matmul(a.astype(object), b.astype(object))
    return np.array(prod % (1 << 64), dtype=np.uint64)


def _self_test_cases() -> list[tuple[np.ndarray, np.ndarray]]:
    """A batched random case with planted special values, and a chunk-crossing worst case."""
    rng = np.random.default_rng(20240611)
    specials = [_MASK64, 1 << 63, 1, 0, (-F64_BALANCE) & _MASK64, (-INT8_BALANCE) & _MASK64]
    a = rng.integers(0, _MASK64, (2, 3, 6), np.uint64, endpoint=True)
    b = rng.integers(0, _MASK64, (2, 6, 5), np.uint64, endpoint=True)
    a[0, 0], b[0, :, 0] = specials, specials
    a[1, 2], b[1, :, 4] = specials[::-1], specials
    # Every digit minimal in both decompositions (x = -C); K = 2048 is past the f64 bound
    # (2047) and the f64k bound (910), so the chunk sums are exercised too.
    k = 2048
    w = np.array([(-F64_BALANCE) & _MASK64, (-INT8_BALANCE) & _MASK64], np.uint64)
    return [(a, b), (np.repeat(w[:, None], k, axis=1), np.repeat(w[None, :], k, axis=0))]


def self_test(backend: str) -> bool:
    """Check ``backend`` once against Python integers; cache the result per platform.

    The cases are a batched random 2x(3x6 @ 6x5) product with planted special values
    (2^64 - 1, 2^63, 1, 0 and the all-minimal-digit inputs x = -C of both decompositions) and a
    (2 x 2048) @ (2048 x 2) product of all-minimal-digit inputs, which crosses the float64 chunk
    bounds. Runs eagerly even when first called while tracing.

    Args:
      backend: one of ``BACKENDS`` (not ``"auto"``).

    Returns:
      True if every case is bit-exact on the current platform.
    """
    _require_x64("self_test")
    if backend not in BACKENDS:
        raise ValueError(f"self_test: unknown backend {backend!r}; use one of {BACKENDS}.")
    key = (backend, jax.default_backend())
    if key not in _SELF_TEST_CACHE:
        ok = True
        with jax.ensure_compile_time_eval():
            for a, b in _self_test_cases():
                got = np.asarray(_ring_matmul(jnp.asarray(a), jnp.asarray(b), backend=backend))
                ok &= bool(np.array_equal(got, _python_matmul(a, b)))
        _SELF_TEST_CACHE[key] = ok
    return _SELF_TEST_CACHE[key]
