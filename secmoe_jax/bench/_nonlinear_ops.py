"""``secmoe bench ops`` workloads of the iterative protocols: LayerNorm, softmax, 1/x, 1/sqrt, exp.

Shapes are the issue's: ``layernorm`` on (128, 768) (a BERT-base hidden state), ``softmax`` on
(12, 128, 128) (BERT-base attention scores at sequence 128) for ``2quad`` and ``exact``;
``reciprocal``, ``rsqrt`` and ``exp`` on (128, 3072). ``max_abs_err`` is measured against the
exact float function (``expected``); the error against each protocol's own float reference
(the approximation it computes) is in ``max_abs_err_vs_reference``.

Inputs: scores N(0, 2^2) (softmax, as in the peer measurements); LayerNorm rows with per-row
variances spread log-uniformly over [1e-2, 1e3] and N(0, 3^2) means, gamma N(1, 0.2^2),
beta N(0, 0.1^2); reciprocal inputs log-uniform on [1, 64] (``bound = 64``, dynamic range
64); rsqrt inputs log-uniform on [1, 64] with the same bound; exp inputs ``-|N(0, 4^2)|``
(the softmax regime, ``x <= 0``). ``small=True`` shrinks every shape.
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from .. import approx as _approx
from .. import protocols as _pr  # noqa: F401 - registers the protocol material kinds
from .._report import complexity_entry
from ..protocols import _iterative as it
from ..protocols import _layernorm as ln
from ..protocols import _softmax as smx
from ..runtime import Secret
from ._harness import measure, share_inputs
from ._ops import Record, op

#: Goldschmidt / Newton settings of the reciprocal and rsqrt workloads (dynamic range 64)
RECIP_BOUND = 64.0
#: iterations for relative error 1e-3 over the dynamic range 64 (approx.goldschmidt_iters)
RECIP_ITERS = dict.fromkeys(
    ("goldschmidt", "newton"), _approx.goldschmidt_iters("reciprocal", RECIP_BOUND, 1e-3)
)
RSQRT_ITERS = dict.fromkeys(
    ("goldschmidt", "newton"), _approx.goldschmidt_iters("rsqrt", RECIP_BOUND, 1e-3)
)


class _F64:
    """``approx`` with every call evaluated in float64 (references must not be float32)."""

    def __getattr__(self, name):
        fn = getattr(_approx, name)
        if not callable(fn):
            return fn

        def call(*args, **kw):
            with jax.enable_x64(True):
                out = fn(*args, **kw)
            return np.asarray(out) if isinstance(out, jax.Array) else out

        return call


approx = _F64()


def _loguniform(shape, lo, hi, seed):
    rng = np.random.default_rng(seed)
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size=shape))


@op("layernorm")
def _layernorm(repeats: int, small: bool) -> Iterator[Record]:
    rows, d = (16, 64) if small else (128, 768)
    rng = np.random.default_rng(11)
    var = _loguniform((rows, 1), 1e-2, 1e3, 12)
    z = rng.normal(size=(rows, d))
    z = (z - z.mean(-1, keepdims=True)) / z.std(-1, keepdims=True)
    x = z * np.sqrt(var) + rng.normal(scale=3.0, size=(rows, 1))
    gamma = rng.normal(1.0, 0.2, size=d)
    beta = rng.normal(0.0, 0.1, size=d)
    args = share_inputs([x, gamma, beta], [1, 0, 0])
    expected = np.asarray(approx.layernorm(x, gamma, beta))
    ref = np.asarray(approx.layernorm(x, gamma, beta, rsqrt="goldschmidt"))

    def fn(a, g, b, mat):
        return Secret(ln.layernorm(a.data, g.data, b.data, mat))

    rec = measure(
        "layernorm", "goldschmidt", fn, args, expected=expected, shape=(rows, d), repeats=repeats
    )
    yield _with_ref(rec, fn, args, ref)


def _with_ref(rec: Record, fn, args, ref) -> Record:
    """Add the error against the protocol's own float reference (one more run, untimed)."""
    from ..runtime import reveal, run

    got = reveal(run(fn, *args, key=12345))
    rec["max_abs_err_vs_reference"] = float(np.max(np.abs(got - ref)))
    return rec


@op("softmax")
def _softmax(repeats: int, small: bool) -> Iterator[Record]:
    shape = (2, 16, 32) if small else (12, 128, 128)
    x = np.random.default_rng(13).normal(scale=2.0, size=shape)
    args = share_inputs([x])
    keys = shape[-1]
    for variant in ("2quad", "exact"):
        expected = np.asarray(approx.softmax(x, variant))
        if variant == "2quad":
            iters = approx.goldschmidt_iters("reciprocal", smx.QUAD_RANGE, smx.RECIP_TOL)
            b = float(2 ** np.ceil(np.log2(smx.default_quad_bound(keys))))
            q = (x + 5.0) ** 2
            ref = q * np.asarray(
                approx.goldschmidt_reciprocal(q.sum(-1, keepdims=True), iters=iters, bound=b)
            )
        else:
            b = float(2 ** np.ceil(np.log2(keys)))
            iters = approx.goldschmidt_iters("reciprocal", b, smx.RECIP_TOL)
            ref = np.asarray(approx.softmax_limit_exp(x, n=9, recip_iters=iters, recip_bound=b))

        def fn(a, mat, variant=variant):
            return Secret(smx.softmax(a.data, mat, variant=variant))

        rec = measure("softmax", variant, fn, args, expected=expected, shape=shape, repeats=repeats)
        yield _with_ref(rec, fn, args, ref)


def _elementwise(name, variants, make_input, exact, reference, repeats, small):
    shape = (16, 64) if small else (128, 3072)
    x = make_input(shape)
    args = share_inputs([x])
    for variant, fn in variants:
        rec = measure(name, variant, fn, args, expected=exact(x), shape=shape, repeats=repeats)
        yield _with_ref(rec, fn, args, reference(variant, x))


@op("reciprocal")
def _reciprocal(repeats: int, small: bool) -> Iterator[Record]:
    def variants():
        for method, t in RECIP_ITERS.items():

            def fn(a, mat, method=method, t=t):
                return Secret(it.reciprocal(a.data, mat, method=method, iters=t, bound=RECIP_BOUND))

            yield f"{method}, t={t}, bound={RECIP_BOUND:g}", fn

    def reference(variant, x):
        method = variant.split(",")[0]
        f = approx.goldschmidt_reciprocal if method == "goldschmidt" else approx.newton_reciprocal
        return np.asarray(f(x, iters=RECIP_ITERS[method], bound=RECIP_BOUND))

    yield from _elementwise(
        "reciprocal",
        list(variants()),
        lambda s: _loguniform(s, 1.0, 64.0, 14),
        lambda x: 1.0 / x,
        reference,
        repeats,
        small,
    )


@op("rsqrt")
def _rsqrt(repeats: int, small: bool) -> Iterator[Record]:
    def variants():
        for method, t in RSQRT_ITERS.items():

            def fn(a, mat, method=method, t=t):
                return Secret(it.rsqrt(a.data, mat, method=method, iters=t, bound=RECIP_BOUND))

            yield f"{method}, t={t}, bound={RECIP_BOUND:g}", fn

    def reference(variant, x):
        method = variant.split(",")[0]
        f = approx.goldschmidt_rsqrt if method == "goldschmidt" else approx.newton_rsqrt
        return np.asarray(f(x, iters=RSQRT_ITERS[method], bound=RECIP_BOUND))

    yield from _elementwise(
        "rsqrt",
        list(variants()),
        lambda s: _loguniform(s, 1.0, 64.0, 15),
        lambda x: 1.0 / np.sqrt(x),
        reference,
        repeats,
        small,
    )


@op("exp")
def _exp(repeats: int, small: bool) -> Iterator[Record]:
    def fn_plain(a, mat):
        return Secret(it.exp(a.data, mat, n=8))

    def fn_clip(a, mat):
        return Secret(it.exp(a.data, mat, n=8, clip=-16.0))

    def reference(variant, x):
        if variant.endswith("clip=-16"):
            return np.asarray(approx.exp_limit(x, n=8, clip=-16.0))
        return (1.0 + x / 256.0) ** 256

    yield from _elementwise(
        "exp",
        [("limit n=8", fn_plain), ("limit n=8, clip=-16", fn_clip)],
        lambda s: -np.abs(np.random.default_rng(16).normal(scale=4.0, size=s)),
        np.exp,
        reference,
        repeats,
        small,
    )


# --------------------------------------------------------------------------------------------
# Complexity-table entries (traced, not run).
# --------------------------------------------------------------------------------------------
_N = 128 * 3072


@complexity_entry("layernorm", "goldschmidt t=4, 9 buckets", ((128, 768), (768,), (768,)), 98304)
def _c_layernorm(x, g, b, mat):
    return ln.layernorm(x, g, b, mat)


@complexity_entry("softmax", "2quad", ((12, 128, 128),), 12 * 128 * 128)
def _c_softmax_quad(x, mat):
    return smx.softmax(x, mat, variant="2quad")


@complexity_entry("softmax", "exact", ((12, 128, 128),), 12 * 128 * 128)
def _c_softmax_exact(x, mat):
    return smx.softmax(x, mat, variant="exact")


@complexity_entry("reciprocal", "goldschmidt t=9, bound 64", ((128, 3072),), _N)
def _c_recip_gs(x, mat):
    return it.reciprocal(x, mat, method="goldschmidt", iters=9, bound=RECIP_BOUND)


@complexity_entry("reciprocal", "newton t=9, bound 64", ((128, 3072),), _N)
def _c_recip_nr(x, mat):
    return it.reciprocal(x, mat, method="newton", iters=9, bound=RECIP_BOUND)


@complexity_entry("rsqrt", "goldschmidt t=8, bound 64", ((128, 3072),), _N)
def _c_rsqrt_gs(x, mat):
    return it.rsqrt(x, mat, method="goldschmidt", iters=8, bound=RECIP_BOUND)


@complexity_entry("rsqrt", "newton t=8, bound 64", ((128, 3072),), _N)
def _c_rsqrt_nr(x, mat):
    return it.rsqrt(x, mat, method="newton", iters=8, bound=RECIP_BOUND)


@complexity_entry("exp", "limit n=8", ((128, 3072),), _N)
def _c_exp(x, mat):
    return it.exp(x, mat, n=8)


@complexity_entry("exp", "limit n=8, clip=-16", ((128, 3072),), _N)
def _c_exp_clip(x, mat):
    return it.exp(x, mat, n=8, clip=-16.0)
