"""Arithmetic protocols: float references, exact cost formulas, masked openings, truncation."""

import jax
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax import protocols as pr
from secmoe_jax.kernels import encode
from secmoe_jax.testing import TraceCounter, assert_openings_masked, assert_uniform_bits

ULP = 2.0**-16
SHAPES = [(), (1,), (5, 1), (2, 3, 4), (64, 96)]


def _share(x, seed, owner=sm.CLIENT):
    return sm.share(np.asarray(x, dtype=np.float64), jax.random.key(seed), owner=owner)


def mul_fn(x, y, mat):
    return sm.Secret(pr.mul(x.data, y.data, mat))


def square_fn(x, mat):
    return sm.Secret(pr.square(x.data, mat))


def matmul_fn(x, y, mat):
    return sm.Secret(pr.matmul(x.data, y.data, mat))


@pytest.mark.parametrize("shape", SHAPES)
def test_mul_matches_float(shape):
    rng = np.random.default_rng(1)
    x, y = rng.normal(scale=3, size=shape), rng.normal(scale=3, size=shape)
    z = sm.reveal(sm.run(mul_fn, _share(x, 1), _share(y, 2, sm.SERVER), key=3))
    # inputs are rounded to half a unit each, the product truncated with at most one unit of error
    tol = (np.abs(x) + np.abs(y) + 2) * ULP
    assert np.all(np.abs(z - x * y) <= tol)


@pytest.mark.parametrize("shape", SHAPES)
def test_square_matches_float(shape):
    x = np.random.default_rng(2).normal(scale=5, size=shape)
    z = sm.reveal(sm.run(square_fn, _share(x, 1), key=4))
    assert np.all(np.abs(z - x * x) <= (2 * np.abs(x) + 2) * ULP)


def test_mul_and_square_cost_closed_form():
    n = 7 * 11
    x = _share(np.ones((7, 11)), 1)
    c = sm.cost(lambda x, y, mat: pr.mul(x.data, y.data, mat, trunc="none"), x, x)
    assert c.rounds == 1 and c.bytes_sent == (2 * 8 * n, 2 * 8 * n)
    assert c.offline_bytes == 3 * 8 * n
    c = sm.cost(mul_fn, x, x)  # + dealer truncation: one more round, 8n more per party
    assert c.rounds == 2 and c.bytes_sent == (3 * 8 * n, 3 * 8 * n)
    assert c.offline_bytes == 6 * 8 * n
    c = sm.cost(square_fn, x)
    assert c.rounds == 2 and c.bytes_sent == (2 * 8 * n, 2 * 8 * n)
    c = sm.cost(lambda x, mat: pr.trunc_local(x.data), x)
    assert c.rounds == 0 and c.online_bytes == 0 and c.offline_bytes == 0


def test_mul_128x3072_cost_matches_target():
    x = jax.ShapeDtypeStruct((2, 128, 3072), np.uint64)
    c = sm.cost(lambda x, y, mat: pr.mul(x, y, mat, trunc="none"), x, x)
    assert c.rounds == 1 and c.online_bytes == 12_582_912  # 12.6 MB, both parties


@pytest.mark.parametrize(
    "spec,xs,ys",
    [
        ("mk,kn->mn", (4, 6), (6, 5)),
        ("bhqd,bhkd->bhqk", (1, 2, 3, 4), (1, 2, 5, 4)),
        ("td,edf->tef", (3, 4), (2, 4, 5)),
        ("te,edf->tdf", (3, 2), (2, 4, 5)),
    ],
)
def test_einsum_matches_float(spec, xs, ys):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=xs), rng.normal(size=ys)
    fn = lambda a, b, mat: sm.Secret(pr.einsum(spec, a.data, b.data, mat))  # noqa: E731
    z = sm.reveal(sm.run(fn, _share(x, 1), _share(y, 2, sm.SERVER), key=5))
    ref = np.einsum(spec, x, y)
    k = max(1, int(np.prod(xs)) * int(np.prod(ys)) // max(1, int(np.prod(ref.shape))) // 1)
    tol = (k * (np.abs(x).max() + np.abs(y).max()) + 2) * ULP
    np.testing.assert_allclose(z, ref, atol=tol)


def test_matmul_cost_closed_form_and_target():
    m, k, n = 128, 768, 3072
    x = jax.ShapeDtypeStruct((2, m, k), np.uint64)
    y = jax.ShapeDtypeStruct((2, k, n), np.uint64)
    c = sm.cost(lambda a, b, mat: pr.matmul(a, b, mat, trunc="none"), x, y)
    assert c.rounds == 1
    assert c.bytes_sent == (8 * (m * k + k * n),) * 2
    # CrypTen's 39.3 MB is the same count, 2 parties * 8 bytes * (MK + KN) = 39.32 MB
    assert c.online_bytes == 39_321_600


def test_weights_matmul_matches_float_and_opens_only_activations():
    rng = np.random.default_rng(4)
    x, w = rng.normal(size=(6, 8)), rng.normal(scale=0.2, size=(8, 5))

    def setup(w, mat):
        return pr.mask_weight(w.data, mat, mask_id=7)

    def query(x, mw, mat):
        return sm.Secret(pr.matmul_weight(x.data, mw, mat))

    keys = sm.runtime.as_keys(11)
    mw = sm.run(setup, _share(w, 2, sm.SERVER), key=keys)
    # the weights key must be the same at setup and per query; the query key is fresh
    q = sm.DealerKeys(query=jax.random.key(99), weights=keys.weights)
    z = sm.reveal(sm.run(query, _share(x, 1), mw, key=q))
    np.testing.assert_allclose(z, x @ w, atol=(8 * 3 + 2) * ULP)
    c = sm.cost(query, _share(x, 1), mw)
    assert c.rounds == 2 and c.bytes_sent == (8 * 6 * 8 + 8 * 6 * 5,) * 2  # open x - A, trunc
    c = sm.cost(
        lambda x, mw, mat: pr.matmul_weight(x.data, mw, mat, trunc="none"), _share(x, 1), mw
    )
    assert c.rounds == 1 and c.bytes_sent == (8 * 6 * 8,) * 2
    big = jax.ShapeDtypeStruct((2, 128, 768), np.uint64)
    mwb = pr.MaskedWeight(
        f=jax.ShapeDtypeStruct((2, 768, 3072), np.uint64),
        b=jax.ShapeDtypeStruct((2, 768, 3072), np.uint64),
        mask_id=1,
    )
    c = sm.cost(lambda x, mw, mat: pr.matmul_weight(x, mw, mat, trunc="none"), big, mwb)
    assert c.online_bytes == 2 * 8 * 128 * 768  # 1.6 MB: only the activation side


def test_weight_mask_is_the_servers_and_the_client_sees_only_a_uniform_f():
    """P0 (the model owner) holds the whole setup mask B; P1 holds zeros and learns only
    F = W - B, uniform whatever W is; P0's operand F + b is W itself."""
    keys = sm.runtime.as_keys(3)
    setup = lambda w, mat: pr.mask_weight(w.data, mat, mask_id=4)  # noqa: E731
    fs = []
    for value in (0.0, 1e4):
        w = np.full((64, 64), value)
        mw = sm.run(setup, _share(w, 2, sm.SERVER), key=keys)
        f, b = np.asarray(mw.f), np.asarray(mw.b)
        np.testing.assert_array_equal(f[0], f[1])  # opened: public
        assert not b[1].any()  # the client holds no part of the mask
        assert_uniform_bits(f[1])
        assert_uniform_bits(b[0])
        with jax.enable_x64(True):
            np.testing.assert_array_equal(f[0] + b[0], np.asarray(encode(w)))  # P0: W
        fs.append(f[1])
    assert not np.array_equal(fs[0], fs[1])


def test_weight_with_wrong_weights_key_gives_garbage():
    """The per-query triple must use the setup mask: a different weights key breaks it."""
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(3, 4)), rng.normal(size=(4, 2))
    mw = sm.run(lambda w, mat: pr.mask_weight(w.data, mat, mask_id=1), _share(w, 2), key=1)
    q = sm.DealerKeys(query=jax.random.key(5), weights=jax.random.key(6))
    fn = lambda x, mw, mat: sm.Secret(pr.matmul_weight(x.data, mw, mat))  # noqa: E731
    z = sm.reveal(sm.run(fn, _share(x, 1), mw, key=q))
    assert np.abs(z - x @ w).max() > 1.0


@pytest.mark.parametrize("bits", [8, 16, 24])
def test_dealer_trunc_is_exact_to_one_ulp(bits):
    rng = np.random.default_rng(6)
    # values across the whole admissible range |x| < 2^62, including the edges
    raw = rng.integers(-(2**62), 2**62, size=4000, dtype=np.int64)
    raw[:6] = [2**62 - 1, -(2**62), 0, -1, 1, -(2**bits)]
    shares = sm.share_ring(np.asarray(raw).view(np.uint64), jax.random.key(1))
    fn = lambda x, mat: pr.trunc(x, mat, bits=bits)  # noqa: E731
    out = sm.reveal_ring(sm.run(fn, shares, key=7)).view(np.int64)
    expect = raw >> bits  # floor division
    assert set(np.unique(out - expect).tolist()) <= {0, 1}  # floor, or one unit above


def test_local_trunc_fails_for_large_values_but_not_small():
    rng = np.random.default_rng(7)
    small = rng.integers(-(2**30), 2**30, size=20000, dtype=np.int64)
    fn = lambda x, mat: pr.trunc_local(x, bits=16)  # noqa: E731
    out = sm.reveal_ring(sm.run(fn, sm.share_ring(small.view(np.uint64), jax.random.key(2)), key=1))
    assert np.all(np.abs((small >> 16) - out.view(np.int64)) <= 1)
    big = rng.integers(2**61, 2**62, size=20000, dtype=np.int64)
    out = sm.reveal_ring(sm.run(fn, sm.share_ring(big.view(np.uint64), jax.random.key(3)), key=1))
    # failure probability ~2^(62+1-64) = 1/2 per element: many catastrophic errors
    assert np.count_nonzero(np.abs((big >> 16) - out.view(np.int64)) > 1) > 1000


def test_mul_public_and_add_public():
    x = np.array([1.5, -2.0, 4.25])

    def fn(x, mat):
        y = pr.add_public(x.data, np.array([1.0, 2.0, 3.0]))
        return sm.Secret(pr.mul_public(y, 0.5, mat))

    z = sm.reveal(sm.run(fn, _share(x, 1), key=2))
    np.testing.assert_allclose(z, (x + [1, 2, 3]) * 0.5, atol=2 * ULP)


def test_openings_are_masked():
    x = _share(np.arange(12.0).reshape(3, 4), 1)
    y = _share(np.ones((4, 2)), 2, sm.SERVER)
    checked = assert_openings_masked(
        lambda a, b, mat: (
            pr.mul(a.data, a.data, mat),
            pr.square(a.data, mat),
            pr.matmul(a.data, b.data, mat),
        ),
        x,
        y,
        min_openings=6,
    )
    assert [label for label, _ in checked] == ["mul", "trunc", "square", "trunc", "einsum", "trunc"]


def test_shares_are_uniform_and_client_view_is_independent_of_server_secret():
    x = np.zeros(4096)
    s = sm.share(x, jax.random.key(1), owner=sm.SERVER)
    assert_uniform_bits(np.asarray(s.data[0]))
    assert_uniform_bits(np.asarray(s.data[1]))
    # the client's share of a server input does not depend on the input (same randomness)
    s2 = sm.share(np.full(4096, 123.456), jax.random.key(1), owner=sm.SERVER)
    np.testing.assert_array_equal(np.asarray(s.data[1]), np.asarray(s2.data[1]))
    # the client's view of a product (its material and openings) for two server secrets:
    # material is identical (input independent); openings are uniform words either way
    from secmoe_jax.testing import run_with_openings

    y = _share(np.full(4096, 2.0), 3)
    for secret in (x, np.full(4096, 1e6)):
        _, opened = run_with_openings(
            mul_fn, sm.share(secret, jax.random.key(1), owner=0), y, key=9
        )
        for _, words in opened:
            assert_uniform_bits(words)
    prog = sm.Program(mul_fn)
    m1 = prog.material(9, sm.share(x, jax.random.key(1), owner=0), y)
    m2 = prog.material(9, sm.share(np.full(4096, 1e6), jax.random.key(1), owner=0), y)
    for a, b in zip(jax.tree.leaves(m1), jax.tree.leaves(m2), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[1])


def test_no_retrace_on_second_call():
    counted = TraceCounter(mul_fn)
    prog = sm.Program(counted)
    x1, x2 = _share(np.ones((4, 5)), 1), _share(np.full((4, 5), 3.0), 2)
    prog(1, x1, x1)
    first = counted.count
    z = prog(2, x2, x1)
    assert counted.count == first  # planning + one jit trace, then cached
    np.testing.assert_allclose(sm.reveal(z), 3.0, atol=4 * ULP)


def test_protocol_errors_are_clear():
    a = _share(np.ones((2, 3)), 1)
    b = _share(np.ones((4, 5)), 2)
    with pytest.raises(ValueError, match="size mismatch"):
        sm.run(matmul_fn, a, b, key=1)
    with pytest.raises(TypeError, match="uint64"):
        sm.run(lambda x, mat: pr.mul(x, x, mat), jax.numpy.ones((2, 3), jax.numpy.float32), key=1)
    with pytest.raises(ValueError, match="truncation mode"):
        sm.run(lambda x, mat: pr.mul(x.data, x.data, mat, trunc="bogus"), a, key=1)
