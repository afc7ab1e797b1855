"""``secmoe bench ops`` workloads of the comparison protocols, and their complexity entries.

Shapes are the issue's: 128 x 3072 comparisons (a BERT-base FFN activation), N(0, 2^2) inputs.
``small=True`` shrinks them to 16 x 64.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .. import comm
from .._report import N, complexity_entry
from ..protocols import _compare as cmp
from ..runtime import Secret
from ._harness import measure, share_inputs
from ._ops import Record, op

THRESHOLDS = (-2.0, -1.0, 0.0, 1.0, 2.0)  # five breakpoints, e.g. a piecewise GeLU


def _normal(shape, seed, scale=2.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


def _fixed(x, frac_bits=16):
    """The fixed-point value the protocol sees (references compare encodings, not floats)."""
    return np.round(x * 2.0**frac_bits) / 2.0**frac_bits


@op("compare")
def _compare(repeats: int, small: bool) -> Iterator[Record]:
    shape = (16, 64) if small else (128, 3072)
    x, y = _normal(shape, 11), _normal(shape, 12)
    xs, ys = share_inputs([x, y], [comm.CLIENT, comm.SERVER])

    def gt(a, b, mat):
        return Secret(cmp.greater(a.data, b.data, mat), 0)

    yield measure(
        "compare",
        "x>y",
        gt,
        [xs, ys],
        expected=(_fixed(x) > _fixed(y)) * 1.0,
        shape=shape,
        repeats=repeats,
    )

    def ge5(a, mat):
        return Secret(cmp.greater_equal_public(a.data, THRESHOLDS, mat), 0)

    ref = np.stack([_fixed(x) >= b for b in THRESHOLDS]) * 1.0
    yield measure(
        "compare",
        "x>=public(5 thresholds)",
        ge5,
        [xs],
        expected=ref,
        shape=(len(THRESHOLDS), *shape),
        repeats=repeats,
        extra={"comparisons": len(THRESHOLDS) * int(np.prod(shape))},
    )


@op("relu")
def _relu(repeats: int, small: bool) -> Iterator[Record]:
    shape = (16, 64) if small else (128, 3072)
    x = _normal(shape, 13)
    (xs,) = share_inputs([x])

    def fn(a, mat):
        return Secret(cmp.relu(a.data, mat), a.frac_bits)

    yield measure(
        "relu", "fused", fn, [xs], expected=np.maximum(x, 0), shape=shape, repeats=repeats
    )


@complexity_entry("msb", "64-bit", ((128, 3072),), N)
def _c_msb(x, mat):
    return cmp.msb(x, mat)


@complexity_entry("greater", "x>y", ((128, 3072), (128, 3072)), N)
def _c_greater(x, y, mat):
    return cmp.greater(x, y, mat)


@complexity_entry("greater_equal_public", "5 thresholds", ((128, 3072),), 5 * N)
def _c_ge5(x, mat):
    return cmp.greater_equal_public(x, THRESHOLDS, mat)


@complexity_entry("relu", "fused", ((128, 3072),), N)
def _c_relu(x, mat):
    return cmp.relu(x, mat)


@complexity_entry("max_along", "n=8, argmax one-hot", ((128 * 384, 8),), 128 * 384)
def _c_max8(x, mat):
    return cmp.max_along(x, mat, return_argmax_onehot=True)
