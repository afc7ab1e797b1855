"""Reusable checks for protocol tests: masked openings, uniform words, single tracing.

Every protocol test in this project uses these so that the security properties are checked the
same way everywhere:

* :func:`assert_openings_masked`: run a computation twice on the SAME inputs with two different
  dealer keys and require every opened word to change. A word masked by fresh uniform ``b``-bit
  randomness stays the same with probability ``2^-b``; for 64-bit words the chance that any of
  ``n`` words collides is below ``n * 2^-64`` (negligible). For openings with fewer random bits
  (declared per label), the number of unchanged words must stay below its expectation plus a
  6-sigma margin (failure probability below 1e-9 per opening).
* :func:`assert_uniform_bits`: every bit position of a sample of ring words is a fair coin
  (two-sided 6.5-sigma bound per position: failure probability below 1e-8 for 64 positions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from .runtime import as_keys, compile


def run_with_openings(
    fn: Callable[..., Any], *args: Any, key: Any, mode: str = "simulate"
) -> tuple[Any, list[tuple[str, np.ndarray]]]:
    """Run ``fn`` and return ``(outputs, [(label, opened words as uint64 numpy), ...])``."""
    prog = compile(fn, mode=mode, record_openings=True)
    out, opened = prog(as_keys(key), *args)
    flat = []
    for label, value in opened:
        leaves = [np.asarray(v) for v in jax.tree.leaves(value)]
        words = np.concatenate([leaf[0].reshape(-1) for leaf in leaves]) if leaves else np.zeros(0)
        flat.append((label, words.astype(np.uint64)))
    return out, flat


def assert_openings_masked(
    fn: Callable[..., Any],
    *args: Any,
    keys: tuple[Any, Any] = (101, 202),
    random_bits: Mapping[str, int] | None = None,
    min_openings: int = 1,
) -> list[tuple[str, int]]:
    """Check that every value ``fn`` opens is masked by dealer randomness.

    Args:
      fn: per-party function ``fn(*args, mat)``.
      args: shared inputs (the same for both runs).
      keys: two different dealer keys.
      random_bits: for labels whose opened words carry fewer than 64 random bits (e.g. values
        reduced modulo a public period), how many; others are 64.
      min_openings: the computation must open at least this many times (a protocol that opens
        nothing would pass vacuously).

    Returns:
      ``[(label, number of words), ...]`` for the openings checked.
    """
    random_bits = dict(random_bits or {})
    _, first = run_with_openings(fn, *args, key=keys[0])
    _, second = run_with_openings(fn, *args, key=keys[1])
    assert len(first) == len(second) >= min_openings, (len(first), len(second))
    checked = []
    for (label, a), (label2, b) in zip(first, second, strict=True):
        assert label == label2 and a.shape == b.shape, (label, label2, a.shape, b.shape)
        same = int(np.count_nonzero(a == b))
        bits = random_bits.get(label, 64)
        n = a.size
        if bits >= 48:
            limit = 0
        else:
            p = 2.0**-bits
            limit = n * p + 6.0 * math.sqrt(n * p * (1 - p)) + 1
        assert same <= limit, (
            f"opening {label!r}: {same} of {n} words unchanged under a new dealer key "
            f"(allowed {limit:.1f} for {bits} random bits): the value is not masked"
        )
        checked.append((label, n))
    return checked


def assert_uniform_bits(words: np.ndarray, *, bits: int = 64, z: float = 6.5) -> None:
    """Every bit position of ``words`` is 1 in about half the samples (fail prob < 1e-8)."""
    w = np.asarray(words, dtype=np.uint64).reshape(-1)
    n = w.size
    assert n >= 256, "need at least 256 samples"
    for j in range(bits):
        ones = int(np.count_nonzero((w >> np.uint64(j)) & np.uint64(1)))
        dev = abs(ones - n / 2) / (math.sqrt(n) / 2)
        assert dev <= z, f"bit {j}: {ones} ones of {n} ({dev:.2f} sigma): not uniform"


class TraceCounter:
    """Wrap a per-party function and count how many times Python traces it."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.count = 0

    def __call__(self, *args: Any) -> Any:
        self.count += 1
        return self.fn(*args)
