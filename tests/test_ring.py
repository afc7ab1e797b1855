"""Ring arithmetic, fixed point and PRG: known answers in hex, ranges, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from secmoe_jax import kernels as K

pytestmark = pytest.mark.usefixtures("x64")

M64 = (1 << 64) - 1


def u64(*values):
    return jnp.asarray(np.array([v & M64 for v in values], dtype=np.uint64))


def test_add_sub_mul_wrap_known_answers():
    a = u64(0xFFFFFFFFFFFFFFFF, 0x8000000000000000, 0x0123456789ABCDEF, 0)
    b = u64(0x0000000000000001, 0x8000000000000000, 0xFEDCBA9876543210, 1)
    np.testing.assert_array_equal(K.add(a, b), u64(0, 0, 0xFFFFFFFFFFFFFFFF, 1))
    np.testing.assert_array_equal(
        K.sub(b, a), u64(2, 0, (0xFEDCBA9876543210 - 0x0123456789ABCDEF) & M64, 1)
    )
    prods = [
        (x * y) & M64
        for x, y in zip(
            [0xFFFFFFFFFFFFFFFF, 0x8000000000000000, 0x0123456789ABCDEF, 0],
            [1, 0x8000000000000000, 0xFEDCBA9876543210, 1],
            strict=False,
        )
    ]
    np.testing.assert_array_equal(K.mul(a, b), u64(*prods))
    np.testing.assert_array_equal(K.neg(u64(1, 0, 0x8000000000000000)), u64(M64, 0, 1 << 63))


def test_shifts_known_answers():
    x = u64(0xFFFFFFFFFFFF0000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000)
    np.testing.assert_array_equal(
        K.sar(x, 16), u64(0xFFFFFFFFFFFFFFFF, 0x00007FFFFFFFFFFF, 0xFFFF800000000000)
    )
    np.testing.assert_array_equal(
        K.shr(x, 16), u64(0x0000FFFFFFFFFFFF, 0x00007FFFFFFFFFFF, 0x0000800000000000)
    )
    np.testing.assert_array_equal(K.shl(u64(3), 63), u64(1 << 63))
    np.testing.assert_array_equal(K.msb(x), u64(1, 0, 1))
    with pytest.raises(ValueError, match="shift"):
        K.sar(x, 64)


@pytest.mark.parametrize("shape", [(), (1,), (5, 1), (2, 3, 4)])
def test_encode_decode_round_trip(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=100.0, size=shape)
    y = np.asarray(K.decode(K.encode(x)))
    np.testing.assert_allclose(y, x, atol=2.0**-17)  # rounding: half a unit of 2^-16


def test_encode_known_answers():
    np.testing.assert_array_equal(
        K.encode(np.array([1.0, -1.0, 0.5])), u64(1 << 16, -(1 << 16), 1 << 15)
    )
    assert K.encode(np.array([1.0]), 18)[0] == 1 << 18


def test_encode_rejects_bad_values():
    with pytest.raises(K.FixedPointRangeError, match="non-finite"):
        K.encode(np.array([1.0, np.nan]))
    with pytest.raises(K.FixedPointRangeError, match="non-finite"):
        K.encode(np.array([np.inf]))
    limit = K.max_abs(16)
    assert limit == 2.0**46
    K.encode(np.array([np.nextafter(limit, 0)]))
    with pytest.raises(K.FixedPointRangeError, match="outside the fixed-point range"):
        K.encode(np.array([limit]))
    with pytest.raises(TypeError, match="complex"):
        K.encode(np.array([1j]))
    with pytest.raises(ValueError, match="frac_bits"):
        K.encode(np.array([1.0]), 70)


def test_encode_checked_under_jit():
    enc, ok = jax.jit(K.encode_checked)(jnp.array([1.0, 2.0]))
    assert bool(ok)
    np.testing.assert_array_equal(enc, u64(1 << 16, 2 << 16))
    _, ok = jax.jit(K.encode_checked)(jnp.array([1.0, jnp.nan]))
    assert not bool(ok)
    _, ok = jax.jit(K.encode_checked)(jnp.array([2.0**50]))
    assert not bool(ok)


def test_ring_code_without_x64_fails_loudly():
    with jax.enable_x64(False):
        with pytest.raises(K.X64Error, match="enable_x64"):
            K.encode(np.array([1.0]))
        with pytest.raises(K.X64Error):
            K.check_ring("f", np.zeros(2, np.uint64))


def test_wrong_dtype_is_rejected():
    with pytest.raises(TypeError, match="uint64"):
        K.check_ring("myop", jnp.zeros(3, jnp.int64))


def test_prg_is_uniform_and_keyed():
    from secmoe_jax.testing import assert_uniform_bits

    a = K.uniform_ring(jax.random.key(0), (4096,))
    b = K.uniform_ring(jax.random.key(1), (4096,))
    assert a.dtype == jnp.uint64
    assert_uniform_bits(np.asarray(a))
    assert not np.any(np.asarray(a) == np.asarray(b))
    np.testing.assert_array_equal(a, K.uniform_ring(jax.random.key(0), (4096,)))
