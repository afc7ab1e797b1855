"""Benchmark of the exact Z_2^64 matmul backends against a plain float64 matmul of the same shape.

The issue's target: exact ring matmul of (128 x 768) @ (768 x 3072) within 8x the time of the
float64 matmul, both measured in the same call (the machine may be shared, so only ratios taken
within one run are meaningful).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from secmoe_jax.kernels._matmul import BACKENDS, ring_matmul


def _interleaved_medians(fns: Sequence[Callable[[], jax.Array]], repeats: int) -> list[float]:
    """Median wall seconds of each ``fn()``, timed alternately so that load changes hit all alike.

    Every function runs once untimed first (compilation), and each timed run ends with
    ``block_until_ready``.
    """
    for fn in fns:
        jax.block_until_ready(fn())
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            ts.append(time.perf_counter() - start)
    return [statistics.median(ts) for ts in times]


def ring_matmul_records(
    *,
    m: int = 128,
    k: int = 768,
    n: int = 3072,
    repeats: int = 5,
    backends: Sequence[str] | None = None,
) -> list[dict]:
    """Time ``ring_matmul`` per backend next to ``jnp.matmul`` in float64 on the same shape.

    Args:
      m, k, n: the product (m x k) @ (k x n).
      repeats: timed runs per variant (median reported), alternating with the float64 runs;
        compilation is outside the timed region.
      backends: backends to time; default all of ``BACKENDS`` (``native`` is slow: ~1 s on CPU).

    Returns:
      One dict per backend with keys ``op``, ``variant``, ``shape`` [m, k, n], ``seconds``,
      ``float64_seconds`` (measured in this call), ``ratio`` (seconds / float64_seconds),
      ``exact`` (bit-equal to the native uint64 dot), and the protocol fields ``online_bytes``,
      ``rounds``, ``offline_bytes``, ``dealer_seconds``, ``max_abs_err`` (all zero: local op).
    """
    backends = tuple(BACKENDS if backends is None else backends)
    records = []
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        top = np.iinfo(np.uint64).max
        a = jnp.asarray(rng.integers(0, top, (m, k), np.uint64, endpoint=True))
        b = jnp.asarray(rng.integers(0, top, (k, n), np.uint64, endpoint=True))
        af = jnp.asarray(rng.standard_normal((m, k)))
        bf = jnp.asarray(rng.standard_normal((k, n)))
        f64_matmul = jax.jit(jnp.matmul)
        reference = np.asarray(ring_matmul(a, b, backend="native"))
        for backend in backends:
            fn = jax.jit(lambda x, y, be=backend: ring_matmul(x, y, backend=be))
            exact = bool(np.array_equal(np.asarray(fn(a, b)), reference))
            seconds, f64_seconds = _interleaved_medians(
                [lambda fn=fn: fn(a, b), lambda: f64_matmul(af, bf)], repeats
            )
            records.append(
                {
                    "op": "ring_matmul",
                    "variant": backend,
                    "shape": [m, k, n],
                    "seconds": seconds,
                    "float64_seconds": f64_seconds,
                    "ratio": seconds / f64_seconds,
                    "exact": exact,
                    "online_bytes": 0,
                    "rounds": 0,
                    "offline_bytes": 0,
                    "dealer_seconds": 0.0,
                    "max_abs_err": 0.0,
                }
            )
    return records
