"""Secure GeLU / SiLU: every variant vs its float approximation and exact GeLU, exact costs.

Tolerance: ``TOL = 3`` units of ``2^-16`` against the approximation's float function (input
rounding times the slope, one truncation unit; for "secformer" also the opened angle at
``2^-24``, the dealer's sin/cos and the public coefficients at ``2^-21``, times
``sum |beta_k| = 1.42``). Against exact GeLU: the approximation's contract plus ``TOL``.
"""

import jax
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax import comm
from secmoe_jax.approx._exact import gelu_exact, silu_exact
from secmoe_jax.approx._fourier import GELU_SECFORMER
from secmoe_jax.approx._gelu import gelu as float_gelu
from secmoe_jax.approx._tables import GELU_SECMOE6, SILU_SIX
from secmoe_jax.protocols import _gelu as gl
from secmoe_jax.testing import TraceCounter, assert_openings_masked

ULP = 2.0**-16
TOL = 3 * ULP
SHAPES = [(), (1,), (5, 1), (2, 3, 4), (64, 48)]
N_BIG = 128 * 3072
SAT = GELU_SECFORMER.saturation * np.sqrt(2.0)  # the saturation thresholds in x


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
    rng = np.random.default_rng(seed)
    xs = [rng.uniform(-8, 8, size=s) for s in SHAPES]
    xs[-1].reshape(-1)[:40] = rng.uniform(-50, 50, size=40)
    xs[-1].reshape(-1)[40:46] = [0.0, -8.0, 8.0, 50.0, -50.0, 1.0]
    return xs


def _secformer_all(*args):
    *xs, mat = args
    return tuple(sm.Secret(gl.gelu(a.data, mat, variant="secformer")) for a in xs)


def test_secformer_all_shapes_contract_and_no_retrace():
    counted = TraceCounter(_secformer_all)
    prog = sm.Program(counted)
    for call, seed in enumerate((1, 2)):
        xs = _inputs(seed)
        out = prog(30 + seed, *[_share(x, 40 + i) for i, x in enumerate(xs)])
        if call == 0:
            first = counted.count
        for x, y in zip(xs, out, strict=True):
            got = sm.reveal(y)
            assert got.shape == x.shape
            # the thresholds +-2.5 sqrt(2) are encoded to 2^-17: skip points that close to them
            near = np.abs(np.abs(x) - SAT) < 2.0**-15
            assert np.all(np.abs(got - _f64(GELU_SECFORMER, _enc(x)))[~near] <= TOL)
            assert np.all(np.abs(got - _f64(gelu_exact, x)) <= GELU_SECFORMER.max_abs_err + TOL)
    assert counted.count == first


def test_quad_secmoe6_and_silu_through_the_dispatchers():
    x = _inputs(3)[-1]
    xq = np.random.default_rng(4).uniform(-8, 8, size=(5, 1))

    def fn(a, q, mat):
        return (
            sm.Secret(gl.gelu(a.data, mat)),  # default: secmoe6, Select-Then-Compute
            sm.Secret(gl.silu(a.data, mat, strategy="cts")),
            sm.Secret(gl.gelu(q.data, mat, variant="quad")),
        )

    g, s, q = sm.run(fn, _share(x, 1), _share(xq, 2), key=7)
    g, s, q = sm.reveal(g), sm.reveal(s), sm.reveal(q)
    assert np.all(np.abs(g - _f64(GELU_SECMOE6, _enc(x))) <= TOL)
    inside = np.abs(x) <= 6
    assert np.all(np.abs(g - _f64(gelu_exact, x))[inside] <= GELU_SECMOE6.max_abs_err + TOL)
    assert np.all(np.abs(s - _f64(SILU_SIX, _enc(x))) <= TOL)
    inside = np.abs(x) <= 10
    assert np.all(np.abs(s - _f64(silu_exact, x))[inside] <= SILU_SIX.max_abs_err + TOL)
    assert np.all(np.abs(q - _f64(lambda v: float_gelu(v, "quad"), _enc(xq))) <= TOL)


def _cost(variant, strategy="stc", shape=(128, 3072)):
    x = jax.ShapeDtypeStruct((2,) + shape, np.uint64)
    return sm.cost(lambda a, mat: gl.gelu(a, mat, variant=variant, strategy=strategy), x)


def _cmp_bytes(k, n):
    return 8 * k * n + 336 * -(-(k * n) // 64)


@pytest.mark.parametrize("shape", [(3, 5), (128, 3072)])
def test_costs_closed_form(shape):
    n = int(np.prod(shape))
    c = _cost("quad", shape=shape)
    assert c.rounds == 2 and c.bytes_sent == (16 * n,) * 2
    c = _cost("secformer", shape=shape)  # 2 comparisons; 4 + 3 * 8 bytes; one truncation
    assert c.rounds == 5 + 1 + 1
    assert c.bytes_sent == (_cmp_bytes(2, n) + 28 * n + 8 * n,) * 2
    stc, cts = _cost("secmoe6", "stc", shape), _cost("secmoe6", "cts", shape)
    assert stc.rounds == cts.rounds == 7
    assert stc.bytes_sent == (_cmp_bytes(5, n) + 40 * n,) * 2
    assert cts.bytes_sent == (_cmp_bytes(5, n) + 56 * n,) * 2


def test_targets_on_128x3072():
    """130 MB / 15 rounds online (both parties) for the variants within the error bounds."""
    for variant, strategy in (("secformer", "stc"), ("secmoe6", "stc"), ("secmoe6", "cts")):
        c = _cost(variant, strategy)
        assert c.rounds <= 15 and c.online_bytes <= 130e6, (variant, strategy, c)
    assert _cost("secformer").online_bytes == 2 * (_cmp_bytes(2, N_BIG) + 36 * N_BIG)  # 49.2 MB
    assert _cost("secmoe6").online_bytes == 2 * (_cmp_bytes(5, N_BIG) + 40 * N_BIG)  # 83.6 MB


def test_openings_are_masked():
    x = _share(np.random.default_rng(6).uniform(-5, 5, size=(8, 64)), 1)

    def fn(a, mat):
        return gl.gelu(a.data, mat, variant="secformer"), gl.gelu(a.data, mat, variant="quad")

    checked = assert_openings_masked(fn, x, random_bits={"fourier": 27}, min_openings=7 + 2)
    assert [label for label, _ in checked].count("fourier") == 1


def test_open_accepts_uint32_words_and_counts_four_bytes():
    words = sm.share_ring(np.arange(6, dtype=np.uint64), jax.random.key(1))

    def fn(w, mat):
        low = (w & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        return comm.open(low, label="w32")

    c = sm.cost(fn, words)
    assert c.rounds == 1 and c.bytes_sent == (4 * 6, 4 * 6)
    out = np.asarray(sm.run(fn, words, key=1))
    np.testing.assert_array_equal(out[0], np.arange(6, dtype=np.uint32))  # sum mod 2^32


def test_errors_are_clear():
    x = _share(np.ones(3), 1)
    with pytest.raises(ValueError, match="unknown variant"):
        sm.run(lambda a, mat: gl.gelu(a.data, mat, variant="tanh"), x, key=1)
    with pytest.raises(ValueError, match="strategy"):
        sm.run(lambda a, mat: gl.gelu(a.data, mat, strategy="both"), x, key=1)
    with pytest.raises(ValueError, match="unknown variant"):
        sm.run(lambda a, mat: gl.silu(a.data, mat, variant="exact"), x, key=1)
    with pytest.raises(TypeError, match="uint64"):
        sm.run(lambda a, mat: gl.gelu(a, mat), np.ones((2, 3), np.float32), key=1)
    from secmoe_jax.approx._fourier import SECFORMER_PUBLISHED
    from secmoe_jax.protocols._fourier import fourier_gelu

    with pytest.raises(ValueError, match="power of two"):
        sm.run(lambda a, mat: fourier_gelu(a.data, SECFORMER_PUBLISHED, mat), x, key=1)
