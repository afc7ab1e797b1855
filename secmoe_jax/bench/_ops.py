"""The ``secmoe bench ops`` workloads: one generator per op, each yielding records.

Shapes are the issue's: ``mul`` and elementwise ops on (128, 3072) (a BERT-base FFN
activation), ``matmul`` (128x768)@(768x3072) (its up-projection), ``trunc`` on (128, 3072).
Inputs are N(0, 2^2) activations and N(0, 0.02^2) weights, as in the peer measurements.
``small=True`` shrinks every shape (used by the tests of this command).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np

from .. import comm
from .. import protocols as pr
from ..runtime import Secret, as_keys, run
from ._harness import measure, share_inputs

Record = dict[str, Any]
OPS: dict[str, Callable[[int, bool], Iterator[Record]]] = {}


def op(name: str) -> Callable:
    """Register a workload generator ``f(repeats, small) -> Iterator[record]`` as ``name``."""

    def wrap(f: Callable[[int, bool], Iterator[Record]]) -> Callable[[int, bool], Iterator[Record]]:
        OPS[name] = f
        return f

    return wrap


def _normal(shape, seed, scale=2.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape)


@op("mul")
def _mul(repeats: int, small: bool) -> Iterator[Record]:
    shape = (16, 64) if small else (128, 3072)
    x, y = _normal(shape, 1), _normal(shape, 2)
    args = share_inputs([x, y], [comm.CLIENT, comm.SERVER])
    for trunc in ("none", "dealer"):
        frac = 32 if trunc == "none" else 16

        def fn(a, b, mat, trunc=trunc, frac=frac):
            return Secret(pr.mul(a.data, b.data, mat, trunc=trunc), frac)

        yield measure(
            "mul", f"trunc={trunc}", fn, args, expected=x * y, shape=shape, repeats=repeats
        )


@op("matmul")
def _matmul(repeats: int, small: bool) -> Iterator[Record]:
    m, k, n = (16, 64, 96) if small else (128, 768, 3072)
    x, w = _normal((m, k), 3), _normal((k, n), 4, scale=0.02)
    xs, ws = share_inputs([x, w], [comm.CLIENT, comm.SERVER])
    note = {"truncation": "none (output keeps 2f fractional bits; truncate the sum downstream)"}

    def secret(a, b, mat):
        return Secret(pr.matmul(a.data, b.data, mat, trunc="none"), 32)

    yield measure(
        "matmul",
        "secret",
        secret,
        [xs, ws],
        expected=x @ w,
        shape=(m, k, n),
        repeats=repeats,
        extra=note,
    )

    # The weight is masked once at setup, outside the timed region; queries reuse its mask.
    setup_keys = as_keys(jax.random.key(42))
    mw = run(lambda wt, mat: pr.mask_weight(wt.data, mat, mask_id=1), ws, key=setup_keys)

    def weights(a, mw, mat):
        return Secret(pr.matmul_weight(a.data, mw, mat, trunc="none"), 32)

    yield measure(
        "matmul",
        "weights",
        weights,
        [xs, mw],
        expected=x @ w,
        shape=(m, k, n),
        repeats=repeats,
        weights_key=setup_keys.weights,
        extra=note,
    )


@op("trunc")
def _trunc(repeats: int, small: bool) -> Iterator[Record]:
    shape = (16, 64) if small else (128, 3072)
    x = _normal(shape, 5, scale=100.0)
    args = share_inputs([x])
    for mode in ("dealer", "local"):

        def fn(a, mat, mode=mode):
            # a value with 2f fractional bits (as after a product), truncated back to f
            return Secret(pr.trunc_as(pr.mul_int(a.data, 1 << 16), mat, mode=mode))

        yield measure("trunc", mode, fn, args, expected=x, shape=shape, repeats=repeats)


@op("ring_matmul")
def _ring_matmul(repeats: int, small: bool) -> Iterator[Record]:
    from .ring_matmul import ring_matmul_records

    m, k, n = (16, 64, 96) if small else (128, 768, 3072)
    yield from ring_matmul_records(m=m, k=k, n=n, repeats=repeats)
