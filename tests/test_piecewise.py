"""Piecewise polynomials: both strategies vs the float table, exact costs, masked openings.

Tolerance: against the approximation's own float function ``poly(x)`` the protocol is within
``TOL = 3`` units of ``2^-16``: half a unit of input rounding times the slope (``|P'| <= 1.25``
for these tables), one unit for the dealer truncation, and the table's encoding at
``f + extra`` bits (``extra >= 9`` here, below ``2^-24`` per term). Against the exact function it
is within the approximation's contract plus ``TOL``.
"""

import jax
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax.approx._exact import gelu_exact
from secmoe_jax.approx._tables import GELU_PUMA, GELU_SECMOE6, SILU_SIX
from secmoe_jax.protocols import _piecewise as pw
from secmoe_jax.testing import TraceCounter, assert_openings_masked

ULP = 2.0**-16
TOL = 3 * ULP
SHAPES = [(), (1,), (5, 1), (2, 3, 4), (64, 48)]


def _share(x, seed):
    return sm.share(np.asarray(x, dtype=np.float64), jax.random.key(seed))


def _f64(fn, x):
    with jax.enable_x64(True):
        return np.asarray(fn(jax.numpy.asarray(x, dtype=jax.numpy.float64)))


def _enc(x):
    """The encoded input (the protocol sees ``round(x 2^16) / 2^16``; the tables jump at
    breakpoints, so the float reference of the piecewise table is taken there)."""
    return np.round(np.asarray(x) * 2.0**16) / 2.0**16


def _inputs(seed):
    """One array per shape: mostly in [-8, 8], some large |x| (up to 50) in the big shape."""
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-8, 8, size=s) for s in SHAPES]
    xs[-1].reshape(-1)[:40] = rng.uniform(-50, 50, size=40)
    xs[-1].reshape(-1)[40:51] = [-5, -3, -1, 1, 3, 0, -50, 50, 6, -6, 2.5]  # breakpoints exactly
    return xs


def test_onehot_and_select_coefficients_are_local_and_exact():
    # [3 thresholds, 4 elements]: columns are x above all, above the first only, below all
    ind = np.array([[1, 1, 0, 1], [1, 0, 0, 1], [1, 0, 0, 1]], dtype=np.uint64)
    shares = sm.share_ring(ind, jax.random.key(3))
    table = np.array([[0.0, 0.0], [0.5, -1.25], [2.0, 0.0], [0.0, 1.0]])

    def fn(s, mat):
        seg = pw.onehot_from_indicators(s)
        return seg, pw.select_coefficients(seg, table, frac_bits=16)

    seg, coef = sm.run(fn, shares, key=1)
    assert sm.cost(fn, shares).rounds == 0
    onehot = sm.reveal_ring(seg)
    np.testing.assert_array_equal(onehot.sum(axis=0), 1)
    np.testing.assert_array_equal(np.argmax(onehot, axis=0), [3, 1, 0, 3])
    np.testing.assert_array_equal(sm.reveal(coef, frac_bits=16), table[[3, 1, 0, 3]].T)


@pytest.mark.parametrize("poly", [GELU_SECMOE6, GELU_PUMA], ids=lambda p: p.name)
def test_evaluation_given_onehot_matches_table(poly):
    """The selection/evaluation steps alone, fed a shared plaintext one-hot (no comparisons)."""
    x = np.random.default_rng(1).uniform(-6, 6, size=(8, 16))
    edges = zip((-np.inf,) + poly.breakpoints, poly.breakpoints + (np.inf,), strict=True)
    seg = np.stack([(_enc(x) >= lo) & (_enc(x) < hi) for lo, hi in edges])
    segs = sm.share_ring(seg.astype(np.uint64), jax.random.key(2))

    def fn(a, s, mat):
        return tuple(
            sm.Secret(pw.piecewise(a.data, poly, mat, strategy=st, seg=s)) for st in ("stc", "cts")
        )

    for y in sm.run(fn, _share(x, 1), segs, key=4):
        assert np.max(np.abs(sm.reveal(y) - _f64(poly, _enc(x)))) <= TOL


def _both(*args):
    """Select-Then-Compute on every shape, compute-then-select on the large one."""
    *xs, mat = args
    out = [sm.Secret(pw.piecewise(a.data, GELU_SECMOE6, mat, strategy="stc")) for a in xs]
    return (*out, sm.Secret(pw.piecewise(xs[-1].data, GELU_SECMOE6, mat, strategy="cts")))


def test_secmoe6_both_strategies_all_shapes_and_no_retrace():
    counted = TraceCounter(_both)
    prog = sm.Program(counted)
    for call, seed in enumerate((1, 2)):
        xs = _inputs(seed)
        out = prog(10 + seed, *[_share(x, 20 + i) for i, x in enumerate(xs)])
        if call == 0:
            first = counted.count
        for x, y in zip([*xs, xs[-1]], out, strict=True):
            got = sm.reveal(y)
            assert got.shape == x.shape
            assert np.all(np.abs(got - _f64(GELU_SECMOE6, _enc(x))) <= TOL)
            inside = np.abs(x) <= 6
            err = np.abs(got - _f64(gelu_exact, x))
            assert np.all(err[inside] <= GELU_SECMOE6.max_abs_err + TOL)
            assert np.all(err[~inside] <= TOL)
    assert counted.count == first  # second call: no retrace


def test_puma_general_path_both_strategies():
    x = _inputs(3)[-1]

    def fn(a, mat):
        return tuple(
            sm.Secret(pw.piecewise(a.data, GELU_PUMA, mat, strategy=st)) for st in ("stc", "cts")
        )

    assert not pw.uses_fast_path(GELU_PUMA) and pw.uses_fast_path(SILU_SIX)
    for y in sm.run(fn, _share(x, 1), key=5):
        got = sm.reveal(y)
        assert np.all(np.abs(got - _f64(GELU_PUMA, _enc(x))) <= TOL)
        inside = np.abs(x) <= 6
        err = np.abs(got - _f64(gelu_exact, x))
        assert np.all(err[inside] <= GELU_PUMA.max_abs_err + TOL)


def _cost(poly, strategy, shape):
    x = jax.ShapeDtypeStruct((2,) + shape, np.uint64)
    return sm.cost(lambda a, mat: pw.piecewise(a, poly, mat, strategy=strategy), x)


def _cmp_bytes(k, n):
    return 8 * k * n + 336 * -(-(k * n) // 64)  # one comparison batch of k n elements


@pytest.mark.parametrize("shape", [(7, 11), (128, 3072)])
def test_costs_closed_form_and_stc_strictly_cheaper(shape):
    n = int(np.prod(shape))
    # fast path (secmoe6, silu): J = 2 power columns, G = 4 quadratic segments, I = 1 identity
    for poly in (GELU_SECMOE6, SILU_SIX):
        stc, cts = _cost(poly, "stc", shape), _cost(poly, "cts", shape)
        assert stc.rounds == cts.rounds == 5 + 2
        assert stc.bytes_sent == (_cmp_bytes(5, n) + 8 * (1 + 2 + 1) * n + 8 * n,) * 2
        assert cts.bytes_sent == (_cmp_bytes(5, n) + 8 * (1 + 4 + 1) * n + 8 * n,) * 2
        assert stc.bytes_sent[0] < cts.bytes_sent[0]
    # general path (puma): powers W = 16 + 24 * 2 + 24 * 2 bytes, 6 rounds; J' = 6, G = 2, I = 1
    stc, cts = _cost(GELU_PUMA, "stc", shape), _cost(GELU_PUMA, "cts", shape)
    powers = (16 + 48 + 48) * n
    assert stc.rounds == cts.rounds == 6 + 5 + 2
    assert stc.bytes_sent == (_cmp_bytes(3, n) + powers + 16 * (6 + 1) * n + 8 * n,) * 2
    assert cts.bytes_sent == (_cmp_bytes(3, n) + powers + 16 * (2 + 1) * n + 8 * n,) * 2


def test_openings_are_masked():
    x = _share(np.random.default_rng(5).uniform(-6, 6, size=(4, 32)), 1)

    def fn(a, mat):
        return tuple(pw.piecewise(a.data, GELU_SECMOE6, mat, strategy=s) for s in ("stc", "cts"))

    checked = assert_openings_masked(fn, x, min_openings=2 * 7)
    labels = [label for label, _ in checked]
    assert labels.count("select") == 2 and labels.count("trunc") == 2


def test_errors_are_clear():
    x = _share(np.ones(3), 1)
    with pytest.raises(TypeError, match="uint64"):
        sm.run(
            lambda a, mat: pw.piecewise(a, GELU_SECMOE6, mat), np.ones((2, 3), np.float32), key=1
        )
    with pytest.raises(TypeError, match="PiecewisePolynomial"):
        sm.run(lambda a, mat: pw.piecewise(a.data, "gelu", mat), x, key=1)
    with pytest.raises(ValueError, match="strategy"):
        sm.run(lambda a, mat: pw.piecewise(a.data, GELU_SECMOE6, mat, strategy="x"), x, key=1)
    bad = sm.share_ring(np.zeros((5, 3), np.uint64), jax.random.key(1))
    with pytest.raises(ValueError, match="seg must have shape"):
        sm.run(lambda a, s, mat: pw.piecewise(a.data, GELU_SECMOE6, mat, seg=s), x, bad, key=1)
