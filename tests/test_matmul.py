"""Exact ring matmul over Z_2^64: known answers, Python-int references, chunk bounds, einsum."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from secmoe_jax.kernels import _matmul as mm
from secmoe_jax.kernels._matmul import (
    BACKENDS,
    SMALL_MACS,
    chunk_plan,
    resolve_backend,
    ring_einsum,
    ring_matmul,
    self_test,
)

pytestmark = pytest.mark.usefixtures("x64")

MOD = 1 << 64
TOP = 0xFFFFFFFFFFFFFFFF
F64_WORST = 0x7FFFFBFFFFE00000  # -(2^21 + 2^42 + 2^63) mod 2^64: all 22/21/21 digits minimal
INT8_WORST = 0x7F7F7F7F7F7F7F80  # -0x8080808080808080 mod 2^64: all 8 signed bytes are -128


def _u64(x) -> jax.Array:
    return jnp.asarray(np.asarray(x, dtype=np.uint64))


def _rand(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(0, TOP, shape, dtype=np.uint64, endpoint=True)


def _py_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(a @ b) mod 2^64 with Python integers, numpy matmul broadcasting."""
    return (np.matmul(a.astype(object), b.astype(object)) % MOD).astype(np.uint64)


def _check(got, want) -> None:
    got = np.asarray(got)
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, want)


def test_worst_constants_are_minus_balance():
    assert F64_WORST == (-mm.F64_BALANCE) % MOD
    assert INT8_WORST == (-mm.INT8_BALANCE) % MOD


@pytest.mark.parametrize("backend", BACKENDS)
def test_known_answers_hex(backend):
    a = _u64([[TOP, 0, 0], [1 << 63, 1 << 63, 0], [TOP, 1, 0], [0x0123456789ABCDEF, 0, 0]])
    b = _u64([[TOP, 2], [1, 1], [7, 5]])
    want = np.array(
        [
            [0x0000000000000001, 0xFFFFFFFFFFFFFFFE],  # (2^64-1)^2 = 1, (2^64-1)*2 = -2
            [0x0000000000000000, 0x8000000000000000],  # 2^63 (2^64-1) + 2^63, 2^63 * 2 + 2^63
            [0x0000000000000002, 0xFFFFFFFFFFFFFFFF],  # (-1)(-1) + 1, (-1) * 2 + 1
            [0xFEDCBA9876543211, 0x02468ACF13579BDE],  # -x, 2x
        ],
        dtype=np.uint64,
    )
    _check(ring_matmul(a, b, backend=backend), want)
    x = _u64([[0x0123456789ABCDEF]])
    y = _u64([[0xFEDCBA9876543210]])
    _check(ring_matmul(x, y, backend=backend), np.array([[0x2236D88FE5618CF0]], np.uint64))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mkn", [(3, 5, 4), (7, 257, 9)])
def test_random_vs_python_ints(backend, mkn):
    m, k, n = mkn
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a, b = _rand(rng, (m, k)), _rand(rng, (k, n))
    _check(ring_matmul(_u64(a), _u64(b), backend=backend), _py_matmul(a, b))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("worst", [F64_WORST, INT8_WORST])
def test_adversarial_minimal_digits(backend, worst):
    """x = -C: every balanced digit minimal, every digit product maximal; K past the f64k bound."""
    k = 911
    a = np.full((2, k), worst, np.uint64)
    a[1, 0] = TOP  # one row mixes in a different value
    b = np.full((k, 3), worst, np.uint64)
    got = ring_matmul(_u64(a), _u64(b), backend=backend)
    _check(got, _py_matmul(a, b))
    assert int(np.asarray(got)[0, 0]) == (k * worst * worst) % MOD


# f64: 2047 * 2^42 < 2^53 <= 2048 * 2^42; f64k: 910 * 9 * 2^40 < 2^53 <= 911 * 9 * 2^40;
# int8 (8 pairs on the longest diagonal): 8 * 16383 * 2^14 < 2^31 <= 8 * 16384 * 2^14.
@pytest.mark.parametrize(
    ("backend", "k"),
    [("f64", 2047), ("f64", 2048), ("f64k", 910), ("f64k", 911), ("int8", 16383), ("int8", 16384)],
)
def test_exact_at_and_past_chunk_bound(backend, k):
    rng = np.random.default_rng(k)
    worst = INT8_WORST if backend == "int8" else F64_WORST
    a = np.full((2, k), worst, np.uint64)
    b = np.full((k, 2), worst, np.uint64)
    a[1] = _rand(rng, k)
    b[:, 1] = _rand(rng, k)
    _check(ring_matmul(_u64(a), _u64(b), backend=backend), _py_matmul(a, b))


def test_chunk_plan_at_bounds():
    f64, f64k, int8 = mm.F64_MAX_PRODUCT, mm.F64K_MAX_PRODUCT, mm.INT8_MAX_PRODUCT * 8
    assert chunk_plan(2047, f64, 2**53) == (2047,)
    assert chunk_plan(2048, f64, 2**53) == (1024, 1024)
    assert chunk_plan(910, f64k, 2**53) == (910,)
    assert chunk_plan(911, f64k, 2**53) == (456, 455)
    assert chunk_plan(3072, f64k, 2**53) == (768, 768, 768, 768)
    assert chunk_plan(16383, int8, 2**31) == (16383,)
    assert chunk_plan(16384, int8, 2**31) == (8192, 8192)
    assert chunk_plan(0, f64, 2**53) == ()


def test_chunk_plan_rejects_inexact_chunks():
    assert chunk_plan(4096, 2**42, 2**53, chunk=2047) == (1366, 1365, 1365)
    assert chunk_plan(4096, 2**42, 2**53, chunk=1000) == (820, 819, 819, 819, 819)
    with pytest.raises(ValueError, match="at most 2047 terms"):
        chunk_plan(4096, 2**42, 2**53, chunk=2048)
    with pytest.raises(ValueError, match="at most 910 terms"):
        chunk_plan(1000, mm.F64K_MAX_PRODUCT, 2**53, chunk=911)
    with pytest.raises(ValueError, match="at most 131071 terms"):
        chunk_plan(10, 2**14, 2**31, chunk=2**17)
    with pytest.raises(ValueError, match="no chunking"):
        chunk_plan(10, 2**53, 2**53, fn="my_kernel")


def test_float64_bound_is_real():
    """Negative control: one more term than the bound makes a plain float64 dot inexact."""
    d = float(2**21 - 1)  # odd digit, so the exact sum is odd
    for k, exact in ((2047, True), (2049, False)):
        got = np.dot(np.full(k, d), np.full(k, d))
        assert (int(got) == k * int(d) ** 2) is exact


@pytest.mark.parametrize("backend", ["f64", "f64k", "int8"])
def test_column_blocks_and_k_chunks(backend):
    """Shapes that take the blocked loop over N (with a tail block) and several K chunks."""
    rng = np.random.default_rng(5)
    a, b = _u64(_rand(rng, (2, 2100))), _u64(_rand(rng, (2100, 1700)))
    _check(ring_matmul(a, b, backend=backend), ring_matmul(a, b, backend="native"))
    # Python-int spot check of a few output entries.
    an, bn = np.asarray(a), np.asarray(b)
    cols = [0, 767, 1699]
    _check(np.asarray(ring_matmul(a, b, backend=backend))[:, cols], _py_matmul(an, bn[:, cols]))


@pytest.mark.parametrize("backend", ["f64k", "int8"])
@pytest.mark.parametrize(
    ("shape_a", "shape_b"),
    [((2, 3, 4, 5), (5, 6)), ((4, 5), (2, 5, 6)), ((2, 1, 3, 5), (1, 4, 5, 2))],
)
def test_batched_and_broadcast(backend, shape_a, shape_b):
    rng = np.random.default_rng(len(shape_a) * 10 + len(shape_b))
    a, b = _rand(rng, shape_a), _rand(rng, shape_b)
    _check(ring_matmul(_u64(a), _u64(b), backend=backend), _py_matmul(a, b))


@pytest.mark.parametrize(
    ("spec", "shape_a", "shape_b"),
    [
        ("BHQD,BHKD->BHQK", (2, 3, 4, 5), (2, 3, 6, 5)),
        ("BHQK,BHKD->BHQD", (2, 3, 4, 6), (2, 3, 6, 5)),
        ("TD,DF->TF", (4, 5), (5, 3)),
        ("TD,EDF->TEF", (4, 5), (3, 5, 2)),
        ("TE,EDF->TDF", (4, 3), (3, 5, 2)),
        ("TD,EDF->FT", (4, 5), (3, 5, 2)),  # E summed out of b alone, output transposed
        ("ij,jk->", (3, 4), (4, 2)),
    ],
)
def test_einsum(spec, shape_a, shape_b):
    """The spec-to-matmul mapping is backend independent: all specs on f64k, two on int8."""
    rng = np.random.default_rng(len(spec))
    a, b = _rand(rng, shape_a), _rand(rng, shape_b)
    want = np.array(np.einsum(spec, a.astype(object), b.astype(object)), dtype=object) % MOD
    want = np.array(want, dtype=np.uint64)
    _check(ring_einsum(spec, _u64(a), _u64(b), backend="f64k"), want)
    if spec in ("BHQD,BHKD->BHQK", "TD,EDF->TEF"):
        _check(ring_einsum(spec, _u64(a), _u64(b), backend="int8"), want)


@pytest.mark.parametrize("backend", ["f64k", "int8", "native"])
def test_jit_matches_eager(backend):
    rng = np.random.default_rng(3)
    a, b = _u64(_rand(rng, (2, 3, 40))), _u64(_rand(rng, (40, 6)))
    eager = ring_matmul(a, b, backend=backend)
    jitted = jax.jit(lambda x, y: ring_matmul(x, y, backend=backend))(a, b)
    _check(jitted, np.asarray(eager))
    if backend == "f64k":
        e2 = jax.jit(lambda x, y: ring_einsum("BQD,DF->BFQ", x, y, backend=backend))(a, b)
        _check(e2, np.asarray(eager).transpose(0, 2, 1))


def test_self_test_inside_jit_trace(monkeypatch):
    """The first use may happen while tracing: the self-test still runs on concrete values."""
    monkeypatch.setattr(mm, "_SELF_TEST_CACHE", {})
    a, b = _u64([[TOP, 3]]), _u64([[TOP], [1]])
    out = jax.jit(lambda x, y: ring_matmul(x, y, backend="f64k"))(a, b)
    _check(out, np.array([[4]], np.uint64))
    assert mm._SELF_TEST_CACHE[("f64k", jax.default_backend())] is True


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_test_passes(backend):
    assert self_test(backend)


def test_failed_self_test_raises(monkeypatch):
    monkeypatch.setitem(mm._SELF_TEST_CACHE, ("int8", jax.default_backend()), False)
    with pytest.raises(RuntimeError, match="self-test of backend 'int8' failed"):
        ring_matmul(_u64([[1]]), _u64([[1]]), backend="int8")


def test_resolve_backend():
    assert resolve_backend("auto", "cpu") == "f64k"
    assert resolve_backend("auto", "gpu") == "int8"
    assert resolve_backend("auto", "cuda") == "int8"
    # small products use the native dot on CPU (faster there, quick to compile), never on GPU
    assert resolve_backend("auto", "cpu", macs=1000) == "native"
    assert resolve_backend("auto", "cpu", macs=SMALL_MACS + 1) == "f64k"
    assert resolve_backend("auto", "gpu", macs=1000) == "int8"
    assert resolve_backend("f64", "gpu") == "f64"
    assert resolve_backend("auto") in BACKENDS
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_backend("fp8")
    with pytest.raises(ValueError, match="ring_matmul: unknown backend"):
        ring_matmul(_u64([[1]]), _u64([[1]]), backend="fp8")


def test_wrong_dtype_raises():
    ok = _u64([[1, 2]])
    with pytest.raises(TypeError, match=r"ring_matmul: expected uint64.*enable x64"):
        ring_matmul(jnp.asarray([[1, 2]], jnp.int64), ok.T)
    with pytest.raises(TypeError, match="ring_matmul: expected uint64"):
        ring_matmul(ok, jnp.ones((2, 1), jnp.float64))
    with pytest.raises(TypeError, match="ring_einsum: expected uint64"):
        ring_einsum("ij,jk->ik", ok, np.ones((2, 1), np.uint32))


def test_shape_mismatch_raises():
    a, b = _u64(np.zeros((2, 3))), _u64(np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        ring_matmul(a, b)
    with pytest.raises(ValueError, match="do not broadcast"):
        ring_matmul(_u64(np.zeros((2, 2, 3))), _u64(np.zeros((3, 3, 5))))
    with pytest.raises(ValueError, match="at least 2-D"):
        ring_matmul(_u64(np.zeros(3)), _u64(np.zeros((3, 5))))
    with pytest.raises(ValueError, match=r"label 'D'.*\(2, 3\).*\(4, 5\)"):
        ring_einsum("TD,DF->TF", a, b)
    with pytest.raises(ValueError, match="'->'"):
        ring_einsum("TD,DF", a, a.T)
    with pytest.raises(ValueError, match="two operands"):
        ring_einsum("TD->T", a, a.T)
    with pytest.raises(ValueError, match="has 3 labels"):
        ring_einsum("TDX,DF->TF", a, a.T)


def test_x64_disabled_raises():
    a = np.ones((2, 2), np.uint64)
    with jax.enable_x64(False):
        with pytest.raises(RuntimeError, match=r"ring_matmul: .*jax.enable_x64\(True\)"):
            ring_matmul(a, a)
        with pytest.raises(RuntimeError, match="ring_einsum: ring arithmetic needs 64-bit"):
            ring_einsum("ij,jk->ik", a, a)


def test_empty_shapes():
    out = ring_matmul(_u64(np.zeros((3, 0))), _u64(np.zeros((0, 2))), backend="f64k")
    _check(out, np.zeros((3, 2), np.uint64))
    out = ring_matmul(_u64(np.zeros((0, 4))), _u64(np.zeros((4, 2))), backend="int8")
    assert out.shape == (0, 2)
