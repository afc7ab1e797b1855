"""Comparison protocols: exact results vs numpy, closed-form cost, masked openings, one-hots.

Tolerance: results are 0/1 bits and compared EXACTLY (on the ring values the protocol sees,
i.e. the fixed-point encodings); relu is compared exactly in the ring (it is ``x`` or ``0`` to the
bit) and within one unit (2^-16) of the float reference after decoding.
"""

import jax
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax.protocols import _compare as cmp
from secmoe_jax.testing import (
    TraceCounter,
    assert_openings_masked,
    assert_uniform_bits,
)

F = 16
ULP = 2.0**-F
SHAPES = [(), (1,), (5, 1), (2, 3, 4), (128, 30)]
THRESHOLDS = (-1.0, 0.0, 0.5, 1.0, 3.0)
EDGES = [0, 1, -1, 2**62 - 1, -(2**62), -(2**62 - 1), 2**F, -(2**F), 3 * 2**F, 2**F // 2]


def _ring(raw, seed, owner=sm.CLIENT):
    raw = np.asarray(raw, dtype=np.int64)
    return sm.share_ring(raw.view(np.uint64), jax.random.key(seed), owner=owner)


def _signed(shares):
    return sm.reveal_ring(shares).view(np.int64)


def _values(shape, seed):
    """Fixed-point ring values of ``shape``: edges first, then N(0, 3^2) encodings."""
    rng = np.random.default_rng(seed)
    x = np.round(rng.normal(scale=3, size=shape) * 2**F).astype(np.int64)
    flat = x.reshape(-1)
    k = min(flat.size, len(EDGES))
    flat[:k] = EDGES[:k]
    y = np.round(rng.normal(scale=3, size=shape) * 2**F).astype(np.int64).reshape(-1)
    y[: flat.size // 3] = flat[: flat.size // 3]  # equal inputs
    y[flat.size // 3 : flat.size // 2] = flat[flat.size // 3 : flat.size // 2] + 1  # +1 ulp
    if flat.size > 3:
        y[-1] = flat[-1] - 1  # -1 ulp
    return x, y.reshape(shape)


def all_fn(x, y, mat):
    return {
        "msb": cmp.msb(x, mat),
        "drelu": cmp.drelu(x, mat),
        "relu": cmp.relu(x, mat),
        "greater": cmp.greater(x, y, mat),
        "less": cmp.less(x, y, mat),
        "ge": cmp.greater_equal_public(x, THRESHOLDS, mat),
    }


def family_fn(xs, ys, ring, eq, mat):
    """Everything exact-checkable in ONE program (one XLA compile for the whole family)."""
    return {
        "shapes": [all_fn(x, y, mat) for x, y in zip(xs, ys, strict=True)],
        "ring": (cmp.msb(ring, mat), cmp.drelu(ring, mat), cmp.relu(ring, mat)),
        "eq": (
            cmp.greater(eq, eq, mat),
            cmp.less(eq, eq, mat),
            cmp.greater_equal_public(eq, [1.0, -2.5, 0.0], mat),
        ),
    }


def test_compare_family_exact():
    """All protocols over the shapes, edge values, the whole ring, equal inputs, ties."""
    vals = [_values(shape, sum(shape) + 1) for shape in SHAPES]
    xs = [_ring(x, 10 + i) for i, (x, _) in enumerate(vals)]
    ys = [_ring(y, 20 + i, sm.SERVER) for i, (_, y) in enumerate(vals)]
    rng = np.random.default_rng(3)
    raw = rng.integers(-(2**63), 2**63, size=1024, dtype=np.int64)
    raw[:8] = [-(2**63), 2**63 - 1, 0, -1, 1, 2**62, -(2**62) - 1, 2**63 - 2]
    raw[8:64] = rng.integers(-3, 3, size=56)  # many tiny values around 0
    eq = np.array([0.0, 1.0, -1.0, 2.5, -2.5, 1.0 + ULP, 1.0 - ULP])
    out = sm.run(family_fn, xs, ys, _ring(raw, 4), sm.share(eq, jax.random.key(5)).data, key=3)

    enc = np.round(np.asarray(THRESHOLDS) * 2**F).astype(np.int64)
    for shape, (x, y), res in zip(SHAPES, vals, out["shapes"], strict=True):
        got = {k: _signed(v) for k, v in res.items()}
        assert got["msb"].shape == shape and got["ge"].shape == (len(THRESHOLDS), *shape)
        np.testing.assert_array_equal(got["msb"], x < 0)
        np.testing.assert_array_equal(got["drelu"], x >= 0)
        np.testing.assert_array_equal(got["relu"], np.maximum(x, 0))
        np.testing.assert_array_equal(got["greater"], x > y)
        np.testing.assert_array_equal(got["less"], x < y)
        ge_ref = x[None] >= enc.reshape((-1,) + (1,) * len(shape))
        np.testing.assert_array_equal(got["ge"], ge_ref)
        # relu vs float: within one unit of the float reference
        xf = x / 2.0**F
        assert np.all(np.abs(sm.reveal(res["relu"]) - np.maximum(xf, 0)) <= ULP)

    m, d, r = (_signed(v) for v in out["ring"])  # exact for every ring element
    np.testing.assert_array_equal(m, raw < 0)
    np.testing.assert_array_equal(d, raw >= 0)
    np.testing.assert_array_equal(r, np.maximum(raw, 0))

    gt, lt, ge = (_signed(v) for v in out["eq"])
    assert not gt.any() and not lt.any()  # x > x and x < x are 0
    np.testing.assert_array_equal(ge[0], [0, 1, 0, 1, 0, 1, 0])  # x >= 1.0 exactly at 1.0
    np.testing.assert_array_equal(ge[1], [1, 1, 1, 1, 1, 1, 1])  # x >= -2.5
    np.testing.assert_array_equal(ge[2], [1, 1, 0, 1, 0, 1, 1])  # x >= 0


def test_short_bits_exact_inside_the_contract():
    bits_list = (8, 12, 32)
    raws = []
    for bits in bits_list:
        rng = np.random.default_rng(bits)
        raw = rng.integers(-(2 ** (bits - 1)), 2 ** (bits - 1), size=300, dtype=np.int64)
        raw[:4] = [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1, 0, -1]
        raws.append(raw)

    def fn(xs, mat):
        return [
            (cmp.msb(x, mat, bits=b), cmp.relu(x, mat, bits=b))
            for x, b in zip(xs, bits_list, strict=True)
        ]

    out = sm.run(fn, [_ring(r, 6 + i) for i, r in enumerate(raws)], key=7)
    for raw, (m, r) in zip(raws, out, strict=True):
        np.testing.assert_array_equal(_signed(m), raw < 0)
        np.testing.assert_array_equal(_signed(r), np.maximum(raw, 0))


# --------------------------------------------------------------------------------------------
# Cost.
# --------------------------------------------------------------------------------------------
def _sds(*shape):
    return jax.ShapeDtypeStruct((2, *shape), np.uint64)


def _planes_64():
    # 16 leaf groups -> levels of 8, 4, 2 nodes (3 m - 1 planes each) -> 3 planes at the end
    return (3 * 8 - 1) + (3 * 4 - 1) + (3 * 2 - 1) + 3


@pytest.mark.parametrize("n", [1, 64, 65, 1000])
def test_msb_cost_closed_form(n):
    w = -(-n // 64)
    assert _planes_64() == 42
    c = sm.cost(lambda x, mat: cmp.msb(x, mat), _sds(n))
    assert c.rounds == 5
    assert c.bytes_sent == (8 * n + 8 * 42 * w,) * 2
    assert (c.rounds, c.bytes_sent[0]) == cmp.msb_cost(n)
    # relu and drelu: exactly the same online cost (the product is fused)
    for fn in (cmp.relu, cmp.drelu):
        c2 = sm.cost(lambda x, mat, fn=fn: fn(x, mat), _sds(n))
        assert (c2.rounds, c2.bytes_sent) == (c.rounds, c.bytes_sent)


@pytest.mark.parametrize("bits", [6, 8, 12, 20, 33, 48])
def test_msb_cost_formula_for_short_bits(bits):
    n = 200
    c = sm.cost(lambda x, mat: cmp.msb(x, mat, bits=bits), _sds(n))
    assert (c.rounds, c.bytes_sent[0]) == cmp.msb_cost(n, bits=bits)
    assert c.rounds <= 5 and c.bytes_sent[0] < cmp.msb_cost(n)[1]


def test_cost_targets_at_128x3072():
    n = 128 * 3072
    c = sm.cost(lambda x, mat: cmp.msb(x, mat), _sds(128, 3072))
    assert c.rounds == 5 <= 7
    assert c.bytes_sent == (8 * n + 336 * n // 64,) * 2  # 13.25 bytes per element per party
    assert max(c.bytes_sent) / n <= 40 and c.online_bytes / n <= 80
    c = sm.cost(lambda x, y, mat: cmp.greater(x, y, mat), _sds(128, 3072), _sds(128, 3072))
    assert c.rounds == 5 and c.bytes_sent == (8 * n + 336 * n // 64,) * 2


def test_greater_equal_public_batches_thresholds_in_one_set_of_rounds():
    n = 7 * 11
    one = sm.cost(lambda x, mat: cmp.greater_equal_public(x, [0.5], mat), _sds(7, 11))
    five = sm.cost(lambda x, mat: cmp.greater_equal_public(x, THRESHOLDS, mat), _sds(7, 11))
    assert one.rounds == five.rounds == 5
    assert (five.rounds, five.bytes_sent[0]) == cmp.msb_cost(5 * n)
    assert dict(five.material)["cmp_mask"] == 1  # one comparison batch


def test_select_and_max_cost():
    n = 6 * 5
    c = sm.cost(lambda b, x, y, mat: cmp.select(b, x, y, mat), _sds(6, 5), _sds(6, 5), _sds(6, 5))
    assert c.rounds == 1 and c.bytes_sent == (16 * n,) * 2
    rows, k = 10, 5  # levels: 2 pairs (+1), 1 pair (+1), 1 pair
    c = sm.cost(lambda x, mat: cmp.max_along(x, mat), _sds(rows, k))
    expect = sum(cmp.msb_cost(rows * m)[1] for m in (2, 1, 1))
    assert c.rounds == 3 * 5 and c.bytes_sent == (expect,) * 2
    c = sm.cost(lambda x, mat: cmp.max_along(x, mat, return_argmax_onehot=True), _sds(rows, k))
    # level L >= 1 also opens the pair one-hots: 2^(L+1) words per pair
    expect = (
        cmp.msb_cost(rows * 2)[1]
        + cmp.msb_cost(rows * 1, extras=4)[1]
        + cmp.msb_cost(rows * 1, extras=8)[1]
    )
    assert c.rounds == 3 * 5 and c.bytes_sent == (expect,) * 2


# --------------------------------------------------------------------------------------------
# Max / argmax one-hot, select.
# --------------------------------------------------------------------------------------------
def test_max_along_with_argmax_onehot_first_index_wins_ties():
    """n = 1, 3, 5, 8 along axis -1 and 0; few distinct values, so many ties."""
    ns = (1, 3, 5, 8)
    a_list, b_list = [], []
    for n in ns:
        rng = np.random.default_rng(n)
        a = rng.integers(-2, 3, size=(7, n)) * 2**F
        b = rng.integers(-2, 3, size=(n, 4)) * 2**F
        a[0] = 5 * 2**F  # all equal -> index 0
        b[:, 0] = -(2**F)
        a_list.append(a)
        b_list.append(b)

    def fn(xs, ys, mat):  # axis 0 and the plain max on n = 1, 5 only (compile time)
        return [
            (
                cmp.max_along(x, mat, axis=-1, return_argmax_onehot=True),
                cmp.max_along(y, mat, axis=0, return_argmax_onehot=True) if n in (1, 5) else None,
                cmp.max_along(y, mat, axis=0) if n in (1, 5) else None,
            )
            for n, x, y in zip(ns, xs, ys, strict=True)
        ]

    xs = [_ring(a, 1 + i) for i, a in enumerate(a_list)]
    ys = [_ring(b, 11 + i) for i, b in enumerate(b_list)]
    out = sm.run(fn, xs, ys, key=3)
    for n, a, b, ((ma, oa), by0, mb2) in zip(ns, a_list, b_list, out, strict=True):
        eye = np.eye(n, dtype=np.int64)
        np.testing.assert_array_equal(_signed(ma), a.max(axis=-1))
        np.testing.assert_array_equal(_signed(oa), eye[a.argmax(axis=-1)])  # first index
        if by0 is not None:
            mb, ob = by0
            np.testing.assert_array_equal(_signed(mb), b.max(axis=0))
            np.testing.assert_array_equal(_signed(ob), eye[b.argmax(axis=0)].T)
            np.testing.assert_array_equal(_signed(mb2), b.max(axis=0))


def test_select_exact():
    rng = np.random.default_rng(8)
    bit = rng.integers(0, 2, size=(4, 6))
    x, y = rng.integers(-(2**40), 2**40, size=(2, 4, 6))
    out = sm.run(
        lambda b, x, y, mat: cmp.select(b, x, y, mat),
        _ring(bit, 1),
        _ring(x, 2),
        _ring(y, 3, sm.SERVER),
        key=4,
    )
    np.testing.assert_array_equal(_signed(out), np.where(bit == 1, x, y))


# --------------------------------------------------------------------------------------------
# Security properties, retracing, errors.
# --------------------------------------------------------------------------------------------
def test_openings_are_masked_including_boolean_planes_and_final_round():
    x = _ring(np.arange(-60, 70) * 2**F, 1)  # n = 130: a partial last word (padding bits)
    checked = assert_openings_masked(
        lambda x, mat: (
            cmp.msb(x, mat),
            cmp.relu(x, mat, bits=20),
            cmp.max_along(x.reshape(26, 5), mat, return_argmax_onehot=True),
        ),
        x,
        min_openings=5 + 4 + 3 * 5,
    )
    labels = [label for label, _ in checked]
    assert labels[:5] == ["cmp_open", "cmp_and0", "cmp_and1", "cmp_and2", "cmp_final"]


def test_client_view_is_uniform_and_independent_of_the_server_secret():
    """Party 1's view: its material does not depend on inputs; every opened word is uniform."""
    n = 128 * 64  # 128 words per plane: enough samples for the uniformity test of each opening
    y = _ring(np.zeros(n, np.int64), 3)
    fn = lambda x, y, mat: cmp.greater(x, y, mat)  # noqa: E731
    prog = sm.Program(fn, record_openings=True)  # one compile for both secrets
    for secret in (np.zeros(n, np.int64), np.full(n, -(2**40), np.int64)):
        _, opened = prog(9, _ring(secret, 1, sm.SERVER), y)
        assert [label for label, _ in opened][-1] == "cmp_final"
        for _, value in opened:
            leaves = [np.asarray(leaf)[1].reshape(-1) for leaf in jax.tree.leaves(value)]
            assert_uniform_bits(np.concatenate(leaves))
    m1 = prog.material(9, _ring(np.zeros(n, np.int64), 1, sm.SERVER), y)
    m2 = prog.material(9, _ring(np.full(n, 7, np.int64), 1, sm.SERVER), y)
    for a, b in zip(jax.tree.leaves(m1), jax.tree.leaves(m2), strict=True):
        np.testing.assert_array_equal(np.asarray(a)[1], np.asarray(b)[1])


def test_no_retrace_on_second_call():
    counted = TraceCounter(lambda x, mat: cmp.relu(x, mat))
    prog = sm.Program(counted)
    prog(1, _ring(np.arange(12).reshape(3, 4) - 6, 1))
    first = counted.count
    out = prog(2, _ring(np.arange(12).reshape(3, 4) - 3, 2))
    assert counted.count == first
    np.testing.assert_array_equal(_signed(out), np.maximum(np.arange(12).reshape(3, 4) - 3, 0))


def test_errors_are_clear():
    f32 = jax.numpy.ones((2, 3), jax.numpy.float32)
    x = _ring(np.ones(3, np.int64), 1)
    with pytest.raises(TypeError, match="uint64"):
        sm.run(lambda x, mat: cmp.msb(x, mat), f32, key=1)
    with pytest.raises(ValueError, match="bits must be an int in"):
        sm.run(lambda x, mat: cmp.msb(x, mat, bits=65), x, key=1)
    with pytest.raises(ValueError, match="at least one threshold"):
        sm.run(lambda x, mat: cmp.greater_equal_public(x, [], mat), x, key=1)
    with pytest.raises(sm.kernels.FixedPointRangeError):
        sm.run(lambda x, mat: cmp.greater_equal_public(x, [float("nan")], mat), x, key=1)
    with pytest.raises(ValueError, match="axis 2 out of range"):
        sm.run(lambda x, mat: cmp.max_along(x, mat, axis=2), x, key=1)
    with pytest.raises(ValueError, match="at least one axis"):
        sm.run(lambda x, mat: cmp.max_along(x[0], mat), x, key=1)
