"""Iterative protocols: reciprocal, rsqrt (Goldschmidt, Newton), limit exp, truncation budget.

Tolerances. Each protocol computes exactly its float simulation in :mod:`secmoe_jax.approx`
(with the bound rounded up to a power of two), so the comparison is against that simulation:
the output is truncated to ``2^-16`` (one unit), the input carries half a unit of rounding
that the iteration propagates (a relative ``2^-17`` on ``1/x``), and the working state
(20 / 16 / 24 fractional bits) adds a relative error of about ``t 2^-16`` that Goldschmidt does
not correct. Hence ``|z - ref| <= 8 ULP + 2^-10 |ref|``. Against the exact function the error
is the approximation's own (checked where the iteration count makes it small).

To keep compile time low, one program evaluates all three protocols per input shape.
"""

import jax
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax import approx
from secmoe_jax.protocols import _compare
from secmoe_jax.protocols import _iterative as it
from secmoe_jax.testing import TraceCounter, assert_openings_masked

ULP = 2.0**-16
SHAPES = [(), (1,), (5, 1), (2, 3, 4), (48, 64)]
B = 64.0


def _share(x, seed, owner=sm.CLIENT):
    return sm.share(np.asarray(x, dtype=np.float64), jax.random.key(seed), owner=owner)


def _close(z, ref, rtol=2.0**-10, atol=8 * ULP):
    ref = np.asarray(ref, dtype=np.float64)
    err = np.abs(z - ref)
    assert np.all(err <= atol + rtol * np.abs(ref)), float(np.max(err))


def three_fn(a, b, mat):
    return (
        sm.Secret(it.reciprocal(a.data, mat, iters=5, bound=B)),
        sm.Secret(it.rsqrt(a.data, mat, iters=4, bound=B)),
        sm.Secret(it.exp(b.data, mat, n=6)),
    )


@pytest.mark.parametrize("shape", SHAPES)
def test_reciprocal_rsqrt_exp_match_float_simulation(shape):
    rng = np.random.default_rng(1)
    x = np.exp(rng.uniform(np.log(16.0), np.log(100.0), size=shape))  # x / B in [1/4, 1.6)
    e = -np.abs(rng.normal(scale=4.0, size=shape))
    zr, zs, ze = (sm.reveal(o) for o in sm.run(three_fn, _share(x, 1), _share(e, 2), key=3))
    _close(zr, approx.goldschmidt_reciprocal(x, iters=5, bound=B))
    _close(zs, approx.goldschmidt_rsqrt(x, iters=4, bound=B))
    _close(ze, (1.0 + e / 64.0) ** 64)
    # and the functions themselves, within the approximations' float error
    assert np.all(np.abs(zr * x - 1.0) <= 2e-3)  # |1 - x/B|^32 <= 1e-4
    assert np.all(np.abs(zs * np.sqrt(x) - 1.0) <= 2e-3)  # 8.8e-4 from x/B >= 1/4
    assert np.all(np.abs(ze - np.exp(e)) <= 4.5e-3)  # max e^x x^2 / 2^7 = 4.2e-3


@pytest.mark.parametrize(
    "kind,method,iters,bound",
    [
        ("reciprocal", "newton", 4, 40.0),  # bound rounded up to 64
        ("rsqrt", "newton", 3, 64.0),
        ("rsqrt", "goldschmidt", 4, (0.25, 1.0, 4.0, 16.0, 64.0)),  # bucket deflation
        ("rsqrt", "newton", 3, (0.25, 1.0, 4.0, 16.0, 64.0)),
        ("reciprocal", "goldschmidt", 4, (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)),
        ("reciprocal", "newton", 3, (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)),
    ],
)
def test_methods_and_bucket_deflation_match_float_simulation(kind, method, iters, bound):
    x = np.exp(np.random.default_rng(2).uniform(np.log(0.2), np.log(60.0), size=(7, 9)))
    proto = it.reciprocal if kind == "reciprocal" else it.rsqrt
    ref_fn = getattr(approx, f"{method}_{kind}")

    def fn(a, mat):
        return sm.Secret(proto(a.data, mat, method=method, iters=iters, bound=bound))

    z = sm.reveal(sm.run(fn, _share(x, 1), key=4))
    _close(z, ref_fn(x, iters=iters, bound=it.effective_bound(bound)))
    if isinstance(bound, tuple) and method == "goldschmidt":  # x' in [1/2, 1) or [1/4, 1)
        exact = 1.0 / x if kind == "reciprocal" else 1.0 / np.sqrt(x)
        np.testing.assert_allclose(z, exact, rtol=2e-3, atol=4 * ULP)


def test_exp_clip_matches_exp_limit():
    x = np.concatenate([np.linspace(-40.0, 0.0, 57), [-16.0, -15.99, -16.01]])
    fn = lambda a, mat: sm.Secret(it.exp(a.data, mat, n=8, clip=-16.0))  # noqa: E731
    z = sm.reveal(sm.run(fn, _share(x, 1), key=5))
    _close(z, approx.exp_limit(x, n=8, clip=-16.0))
    assert np.all(z[x < -16.0] == 0.0)


def _cost(fn, shape):
    return sm.cost(fn, jax.ShapeDtypeStruct((2, *shape), np.uint64))


@pytest.mark.parametrize("t", [1, 2, 3, 9])
def test_cost_closed_forms(t):
    shape = (128, 3072)
    n = 128 * 3072
    for kind in ("reciprocal", "rsqrt"):
        proto = getattr(it, kind)
        c = _cost(lambda a, mat, p=proto: p(a, mat, method="goldschmidt", iters=t, bound=B), shape)
        assert c.rounds == t + 1
        assert c.bytes_sent == (8 * n * max(2 * t - 1, 2),) * 2
        c = _cost(lambda a, mat, p=proto: p(a, mat, method="newton", iters=t, bound=B), shape)
        rounds = 2 if t == 1 else 2 * t - 1
        assert c.rounds == rounds and c.bytes_sent == (8 * n * rounds,) * 2
    for k in (1, 8):
        c = _cost(lambda a, mat, k=k: it.exp(a, mat, n=k), shape)
        assert c.rounds == k + 1 and c.bytes_sent == (8 * n * (k + 1),) * 2
    c = _cost(lambda a, mat: it.exp(a, mat, n=8, clip=-16.0), shape)
    cmp_rounds, cmp_bytes = _compare.msb_cost(n)
    assert c.rounds == 8 + 1 + cmp_rounds
    assert c.bytes_sent == (cmp_bytes + 8 * n * (8 + 2),) * 2


def test_bucket_deflation_cost_closed_form():
    n, t = 6 * 10, 4
    bounds = (0.25, 1.0, 4.0, 16.0, 64.0)
    cmp_rounds, cmp_bytes = _compare.msb_cost(4 * n)
    c = _cost(lambda a, mat: it.rsqrt(a, mat, iters=t, bound=bounds), (6, 10))
    assert c.rounds == cmp_rounds + 1 + t + 1
    assert c.bytes_sent == (cmp_bytes + 24 * n + 8 * n * (2 * t - 1),) * 2
    c = _cost(lambda a, mat: it.reciprocal(a, mat, iters=t, bound=bounds), (6, 10))
    assert c.rounds == cmp_rounds + 1 + t + 1 + 1
    assert c.bytes_sent == (cmp_bytes + 16 * n + 8 * n + 8 * n * (2 * t - 2) + 16 * n,) * 2


def test_benchmark_shapes_beat_peers():
    shape = (128, 3072)
    c = _cost(lambda a, mat: it.reciprocal(a, mat, iters=9, bound=B), shape)
    assert c.rounds <= 38 and c.online_bytes <= 434e6  # CrypTen: 38 rounds, 434 MB
    c = _cost(lambda a, mat: it.rsqrt(a, mat, iters=6, bound=B), shape)
    assert c.rounds <= 17 and c.online_bytes <= 145e6  # CrypTen: 17 rounds, 145 MB
    c = _cost(lambda a, mat: it.exp(a, mat, n=8), shape)
    assert c.rounds == 9 and c.online_bytes <= 57e6  # CrypTen: 8 rounds (local trunc), 50 MB


def test_openings_are_masked():
    x = _share(np.linspace(1.0, 50.0, 24).reshape(4, 6), 1)
    e = _share(-np.linspace(0.0, 10.0, 24).reshape(4, 6), 2)
    checked = assert_openings_masked(three_fn, x, e, min_openings=3)
    assert len(checked) == (5 + 1) + (4 + 1) + (6 + 1)
    assert all(label.startswith(("reciprocal", "rsqrt", "exp")) for label, _ in checked)


def test_no_retrace_on_second_call():
    counted = TraceCounter(three_fn)
    prog = sm.Program(counted)
    x1, e1 = _share(np.full((3, 4), 30.0), 1), _share(np.full((3, 4), -1.0), 2)
    x2, e2 = _share(np.full((3, 4), 20.0), 3), _share(np.full((3, 4), -2.0), 4)
    prog(1, x1, e1)
    first = counted.count
    zr, zs, ze = prog(2, x2, e2)
    assert counted.count == first
    np.testing.assert_allclose(sm.reveal(zr), 0.05, atol=1e-3)
    np.testing.assert_allclose(sm.reveal(zs), 20.0**-0.5, atol=1e-3)
    np.testing.assert_allclose(sm.reveal(ze), np.exp(-2.0), atol=1e-2)


def test_errors_are_clear():
    x = _share(np.ones((2, 3)), 1)

    def run(**kw):
        kind = kw.pop("kind", "reciprocal")
        return sm.cost(lambda a, mat: getattr(it, kind)(a.data, mat, **kw), x)

    with pytest.raises(ValueError, match="unknown method"):
        run(method="halley", iters=3, bound=4.0)
    with pytest.raises(ValueError, match="iters must be a positive int"):
        run(iters=0, bound=4.0)
    with pytest.raises(ValueError, match="positive finite"):
        run(kind="rsqrt", iters=3, bound=-1.0)
    with pytest.raises(ValueError, match="strictly increasing"):
        run(iters=3, bound=(4.0, 3.0))
    with pytest.raises(ValueError, match="n must be an int"):
        sm.cost(lambda a, mat: it.exp(a.data, mat, n=0), x)
    with pytest.raises(ValueError, match="clip must be in"):
        sm.cost(lambda a, mat: it.exp(a.data, mat, n=4, clip=-20.0), x)
    with pytest.raises(TypeError, match="uint64"):
        sm.cost(lambda a, mat: it.rsqrt(a.data.astype(np.int64), mat, iters=2, bound=4.0), x)


def test_effective_bound_rounds_up_to_powers_of_two():
    assert it.effective_bound(40.0) == 64.0 and it.effective_bound(64.0) == 64.0
    assert it.effective_bound((0.3, 1.0, 5.0)) == (0.5, 1.0, 8.0)


def test_truncation_budget_of_a_bert_base_forward():
    b = it.truncation_budget()
    assert b["ok"] and b["total"] < 1e-6
    assert all(r["mode"] == "dealer" for r in b["rows"])  # no site is safe to truncate locally
    # the sites a CrypTen-style local policy would truncate: many failures per forward
    assert b["all_local_total"] > 1e5
    qkv = b["rows"][0]
    assert qkv["elements"] == 3 * 128 * 768 * 12 and qkv["ring_bits"] == 39
    assert qkv["local_expected_failures"] == pytest.approx(3 * 128 * 768 * 12 * 2.0**-24)
    assert it.local_failure_probability(40) == 2.0**-23
    assert it.truncation_budget(policy="all_local")["ok"] is False
