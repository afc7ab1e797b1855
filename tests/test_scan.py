"""protocols.scan: a protocol block compiled once and run L times with fresh material."""

import jax
import numpy as np
import pytest

import secmoe_jax as sm
from secmoe_jax import protocols as pr
from secmoe_jax.testing import assert_openings_masked

L = 4


def _inputs():
    x = sm.share(np.array([1.1, -0.7, 2.0]), jax.random.key(0))
    w = np.linspace(0.5, 1.5, L * 3).reshape(L, 3)
    return x, sm.share(w, jax.random.key(1)), w


def unrolled(x, ws, mat):
    c = x.data
    for i in range(L):
        c = pr.mul(c, ws.data[i], mat)
    return sm.Secret(c)


def scanned(x, ws, mat):
    def body(c, w, m):
        return pr.mul(c, w, m), pr.square(c, m)

    c, ys = pr.scan(body, x.data, ws.data, mat, length=L)
    return sm.Secret(c), sm.Secret(ys)


def test_scan_matches_unrolled_and_float():
    x, ws, w = _inputs()
    c, ys = sm.run(scanned, x, ws, key=3)
    want = np.array([1.1, -0.7, 2.0]) * np.prod(w, axis=0)
    np.testing.assert_allclose(sm.reveal(c), want, atol=1e-3)
    np.testing.assert_allclose(sm.reveal(c), sm.reveal(sm.run(unrolled, x, ws, key=3)), atol=1e-3)
    # ys[i] = (carry before iteration i)^2
    carries = np.array([1.1, -0.7, 2.0]) * np.concatenate([[np.ones(3)], np.cumprod(w, 0)[:-1]])
    np.testing.assert_allclose(sm.reveal(ys), carries**2, atol=1e-3)


def test_scan_cost_is_length_times_the_block():
    x, ws, _ = _inputs()
    block = sm.cost(lambda x, w, mat: sm.Secret(pr.mul(x.data, w.data[0], mat)), x, ws)
    square = sm.cost(lambda x, mat: sm.Secret(pr.square(x.data, mat)), x)
    got = sm.cost(scanned, x, ws)
    # mul and square of one iteration share no round: rounds add up per iteration
    assert got.rounds == L * (block.rounds + square.rounds)
    assert got.bytes_sent[0] == L * (block.bytes_sent[0] + square.bytes_sent[0])
    assert got.offline_bytes == L * (block.offline_bytes + square.offline_bytes)
    assert dict(got.material)["beaver_mul"] == L


def test_scan_openings_are_masked_and_material_is_fresh_per_iteration():
    x, ws, _ = _inputs()
    assert_openings_masked(scanned, x, ws, min_openings=2)
    prog = sm.Program(scanned)
    items = prog.material(5, x, ws)
    leaves = jax.tree.leaves(items)
    # every iteration's material differs (fold_in of the item key by the iteration)
    for leaf in leaves:
        if leaf.ndim >= 2 and leaf.shape[1] == L:
            assert len({np.asarray(leaf[0, i]).tobytes() for i in range(L)}) == L


def test_scan_rejects_bad_xs():
    x, ws, _ = _inputs()

    def bad(x, ws, mat):
        return pr.scan(lambda c, w, m: (c, None), x.data, ws.data, mat, length=L + 1)[0]

    with pytest.raises(ValueError, match="leading axis"):
        sm.run(bad, x, ws, key=1)


def test_material_per_item_is_bit_identical_to_the_single_program():
    from secmoe_jax.dealer import generate

    x, ws, _ = _inputs()
    prog = sm.Program(scanned)
    keys = sm.runtime.as_keys(11)
    plan = prog.plan(x, ws)
    with jax.enable_x64(True):
        one = jax.jit(generate, static_argnums=0)(plan, keys)
    per_item = prog.material(keys, x, ws)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(per_item), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
