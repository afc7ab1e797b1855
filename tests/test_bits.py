"""Bit-plane kernels: hex known answers, round trips against a numpy reference, n % 64 != 0."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from secmoe_jax.kernels._bits import (
    from_planes,
    num_words,
    pack_bits,
    to_planes,
    transpose64,
    unpack_bits,
    xor_reduce,
)

U = np.uint64


def _planes_ref(x: np.ndarray, nbits: int = 64) -> np.ndarray:
    """Slow, obviously correct reference: plane j, word w, bit k = bit j of x[64 w + k]."""
    out = np.zeros((nbits, num_words(x.size)), np.uint64)
    for j in range(nbits):
        for i, v in enumerate(x):
            out[j, i // 64] |= ((int(v) >> j) & 1) << (i % 64)
    return out


def test_num_words():
    assert [num_words(n) for n in (0, 1, 63, 64, 65, 128, 129)] == [0, 1, 1, 1, 2, 2, 3]
    with pytest.raises(ValueError, match="n must be >= 0"):
        num_words(-1)


def test_transpose64_known_answers(x64):
    a = np.zeros(64, U)
    a[0] = U(0xFFFFFFFFFFFFFFFF)  # row 0 all ones -> every row has bit 0
    np.testing.assert_array_equal(np.asarray(transpose64(jnp.asarray(a))), np.full(64, U(1)))
    b = np.full(64, U(0x8000000000000000))  # column 63 all ones -> row 63 all ones
    expect = np.zeros(64, U)
    expect[63] = U(0xFFFFFFFFFFFFFFFF)
    np.testing.assert_array_equal(np.asarray(transpose64(jnp.asarray(b))), expect)
    eye = np.array([1 << k for k in range(64)], U)  # the identity is symmetric
    np.testing.assert_array_equal(np.asarray(transpose64(jnp.asarray(eye))), eye)
    r = np.random.default_rng(0).integers(0, 2**64, size=(3, 64), dtype=U)
    np.testing.assert_array_equal(np.asarray(transpose64(transpose64(jnp.asarray(r)))), r)


def test_to_planes_known_answer(x64):
    x = jnp.asarray(np.array([0x8000000000000000, 0x1, 0xFFFFFFFFFFFFFFFF], U))
    p = np.asarray(to_planes(x))
    assert p.shape == (64, 1)
    assert p[0, 0] == U(0x6)  # elements 1 and 2 have bit 0
    assert p[63, 0] == U(0x5)  # elements 0 and 2 have bit 63
    assert np.all(p[1:63, 0] == U(0x4))  # only element 2 (all ones); padding bits stay zero
    np.testing.assert_array_equal(np.asarray(to_planes(x, 2)), p[:2])


@pytest.mark.parametrize("n", [1, 63, 64, 65, 130])
def test_planes_round_trip_matches_reference(x64, n):
    x = np.random.default_rng(n).integers(0, 2**64, size=n, dtype=U)
    x[0] = U(0xFFFFFFFFFFFFFFFF)
    p = to_planes(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(p), _planes_ref(x))
    np.testing.assert_array_equal(np.asarray(from_planes(p, n)), x)
    low = from_planes(to_planes(jnp.asarray(x), 10), n)  # the low 10 planes: x mod 2^10
    np.testing.assert_array_equal(np.asarray(low), x & U(0x3FF))


def test_planes_batched_and_jitted(x64):
    x = np.random.default_rng(1).integers(0, 2**64, size=(3, 70), dtype=U)
    p = jax.jit(to_planes, static_argnums=1)(jnp.asarray(x), 64)
    assert p.shape == (3, 64, 2)
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(p[i]), _planes_ref(x[i]))
    back = jax.jit(from_planes, static_argnums=1)(p, 70)
    np.testing.assert_array_equal(np.asarray(back), x)


def test_pack_unpack_known_answers_and_round_trip(x64):
    assert np.asarray(pack_bits(jnp.asarray([1, 0, 1, 1])))[0] == U(0xD)
    w = np.asarray(pack_bits(jnp.ones(65, jnp.bool_)))
    np.testing.assert_array_equal(w, np.array([0xFFFFFFFFFFFFFFFF, 0x1], U))
    top = np.zeros(64, np.int64)
    top[63] = 1
    assert np.asarray(pack_bits(jnp.asarray(top)))[0] == U(0x8000000000000000)
    bits = np.random.default_rng(2).integers(0, 2, size=(2, 130))
    words = pack_bits(jnp.asarray(bits))
    assert words.shape == (2, 3) and words.dtype == jnp.uint64
    np.testing.assert_array_equal(np.asarray(unpack_bits(words, 130)), bits)
    # pack_bits is plane 0 of to_planes
    np.testing.assert_array_equal(
        np.asarray(words[0]), np.asarray(to_planes(jnp.asarray(bits[0].astype(U)), 1))[0]
    )


def test_xor_reduce(x64):
    x = jnp.asarray(np.array([[0xF0, 0x0F], [0xFF, 0x01], [0x0F, 0x10]], U))
    np.testing.assert_array_equal(np.asarray(xor_reduce(x, 0)), np.array([0x00, 0x1E], U))


def test_bits_errors(x64):
    with pytest.raises(TypeError, match="uint64"):
        to_planes(jnp.ones(3, jnp.float32))
    with pytest.raises(ValueError, match="nbits"):
        to_planes(jnp.ones(3, jnp.uint64), 65)
    with pytest.raises(ValueError, match="trailing axis of 64"):
        transpose64(jnp.ones(32, jnp.uint64))
    with pytest.raises(TypeError, match="bool or integer"):
        pack_bits(jnp.ones(3, jnp.float32))
    with pytest.raises(ValueError, match="do not fit"):
        from_planes(jnp.ones((64, 2), jnp.uint64), 10)
    with pytest.raises(ValueError, match="cannot take"):
        unpack_bits(jnp.ones(1, jnp.uint64), 65)
