"""Measure one protocol: exact cost from tracing, dealer and online seconds, error vs float64.

Timing follows the honest-benchmark rules: compile outside the timed region, fresh dealer
material per run (generated outside the timed online region and timed on its own),
``block_until_ready`` and the median of ``repeats`` runs. Both parties run in simulate mode on
this machine, so ``seconds`` is the compute of both parties together.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from .. import comm
from ..dealer import DealerKeys
from ..runtime import Program, Secret, as_keys, reveal, share


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - t0, out


def measure(
    op: str,
    variant: str,
    fn: Callable[..., Any],
    args: Sequence[Any],
    *,
    expected: np.ndarray | None,
    shape: Sequence[int],
    repeats: int = 5,
    weights_key: jax.Array | None = None,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Benchmark the per-party function ``fn(*args, mat) -> Secret`` on shared ``args``.

    Args:
      expected: float64 reference of the output (``max_abs_err`` is measured against it).
      weights_key: the dealer's weights key when ``args`` hold masked weights.

    Returns:
      A record with ``op, variant, shape, online_bytes, bytes_per_party, rounds, offline_bytes,
      seconds, dealer_seconds, max_abs_err, lan_seconds, wan_seconds, repeats`` (+ ``extra``).
    """
    base = as_keys(jax.random.key(seed))
    wkey = base.weights if weights_key is None else weights_key
    keys = [DealerKeys(jax.random.fold_in(base.query, i), wkey) for i in range(repeats + 1)]
    prog = Program(fn)
    cost = prog.cost(*args)
    # compile both phases (and check the result) outside the timed region
    out = prog.online(prog.material(keys[0], *args), *args)
    jax.block_until_ready(out)
    err = float("nan")
    if expected is not None:
        got = reveal(out) if isinstance(out, Secret) else np.asarray(out)
        err = float(np.max(np.abs(got - expected)))
    dealer_times, online_times = [], []
    for k in keys[1:]:
        t, mat = _timed(lambda k=k: prog.material(k, *args))
        dealer_times.append(t)
        t, _ = _timed(lambda mat=mat: prog.online(mat, *args))
        online_times.append(t)
    seconds = statistics.median(online_times)
    rec = {
        "op": op,
        "variant": variant,
        "shape": [int(s) for s in shape],
        "online_bytes": cost.online_bytes,
        "bytes_per_party": list(cost.bytes_sent),
        "rounds": cost.rounds,
        "offline_bytes": cost.offline_bytes,
        "seconds": seconds,
        "dealer_seconds": statistics.median(dealer_times),
        "max_abs_err": err,
        "lan_seconds": cost.estimate(seconds, comm.LAN),
        "wan_seconds": cost.estimate(seconds, comm.WAN),
        "repeats": repeats,
    }
    rec.update(extra or {})
    return rec


def share_inputs(
    inputs: Sequence[np.ndarray], owners: Sequence[int] | None = None, seed: int = 1
) -> list[Secret]:
    """Share float inputs (default owner: the client)."""
    owners = list(owners) if owners is not None else [comm.CLIENT] * len(inputs)
    keys = jax.random.split(jax.random.key(seed), len(inputs))
    return [share(x, k, owner=o) for x, k, o in zip(inputs, keys, owners, strict=True)]
