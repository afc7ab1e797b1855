"""Repeated protocol blocks as one ``lax.scan``: compile a layer once, run it L times.

A Transformer is the same layer L times with different weights. Unrolled, every layer is traced
and compiled again (XLA compile time grows linearly with depth and dominates a first query on a
CPU). :func:`scan` runs a per-party block under :func:`jax.lax.scan` instead, with

* **material per iteration**: the block's dealer requests are recorded once (a sub-plan) and
  requested as ONE item of kind ``"scan"``: the sub-plan generated ``length`` times, iteration
  ``l`` from the keys ``(fold_in(item_key, l), fold_in(weights_key, l))``. Every item is still
  used exactly once (each iteration consumes its own slice through a :class:`Stream`).
* **weights per iteration**: a weight masked inside a scanned setup block gets its mask from the
  iteration's weights key, so layer ``l``'s masked weights (stacked along the scanned axis,
  same static ``mask_id``) match the fixed-operand triples of iteration ``l`` of the forward
  block. Setup and forward must scan with the same ``length`` and the same nesting.
* **cost**: the block's rounds and bytes are recorded once at trace time and counted
  ``length`` times (iterations are sequential: rounds add up).
* **openings** (tests): values opened inside the block are returned as stacked scan outputs.

The block must be a function of shapes alone (like every protocol), with a carry whose
shapes do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from .. import comm
from ..dealer import DealerKeys, Material, Plan, Recorder, Stream, generate, register_kind


def _scan_shapes(*, plan: Plan, length: int) -> list[Any]:
    return [
        jax.tree.map(lambda s: jax.ShapeDtypeStruct((length, *s.shape), s.dtype), item)
        for item in plan.shapes()
    ]


@register_kind("scan", shapes=_scan_shapes)
def _gen_scan(key, weights_key, *, plan: Plan, length: int):
    def one(i):
        keys = DealerKeys(jax.random.fold_in(key, i), jax.random.fold_in(weights_key, i))
        return generate(plan, keys)

    items = jax.vmap(one)(jnp.arange(length))  # leaves [length, 2, ...]
    return jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), items)  # party axis first


def scan(
    body: Callable[..., tuple[Any, Any]],
    carry: Any,
    xs: Any,
    mat: Material,
    *,
    length: int,
) -> tuple[Any, Any]:
    """``lax.scan`` of a per-party protocol block with fresh dealer material per iteration.

    Args:
      body: ``body(carry, x, mat) -> (carry, y)``, a per-party protocol block.
      carry: initial carry (this party's shares and/or public values).
      xs: PyTree whose leaves have a leading axis ``length`` (e.g. stacked layer weights),
        or ``None``.
      mat: the enclosing dealer material.
      length: number of iterations (static).

    Returns:
      ``(carry, ys)`` as :func:`jax.lax.scan` (``ys`` stacked along a new leading axis).

    Cost: ``length`` times the block's rounds and bytes; material ``length`` times the block's.
    """
    if length < 1:
        raise ValueError(f"scan: length must be >= 1, got {length}")
    x0 = None if xs is None else jax.tree.map(lambda a: a[0], xs)
    for leaf in jax.tree.leaves(xs):
        if leaf.shape[:1] != (length,):
            raise ValueError(f"scan: every xs leaf needs a leading axis {length}, got {leaf.shape}")

    # 1. the block's material requests (abstract trace; no ledger, no openings)
    rec = Recorder()
    with comm._no_recording():
        jax.eval_shape(lambda c, x: body(c, x, rec), carry, x0)
    sub_plan = rec.plan()
    items = mat.take("scan", plan=sub_plan, length=length)

    # 2. the scan; the block's communication is recorded once and counted `length` times
    outer_ledgers = comm._LEDGERS.get()
    outer_found = comm._OPENINGS.get()
    traced: dict[str, Any] = {}  # the last trace of the block (lax.scan may trace it again)

    def step(c, inp):
        it, x = inp
        stream = Stream(sub_plan, list(it))
        sub = comm.Ledger()
        found: list | None = [] if outer_found is not None else None
        token_l = comm._LEDGERS.set((sub,) if outer_ledgers else ())
        token_o = comm._OPENINGS.set(found)
        try:
            c, y = body(c, x, stream)
        finally:
            comm._LEDGERS.reset(token_l)
            comm._OPENINGS.reset(token_o)
        stream.finish()
        traced["ledger"] = sub
        traced["labels"] = [label for label, _ in found or []]
        return c, (y, [v for _, v in found] if found is not None else None)

    carry, (ys, opened) = lax.scan(step, carry, (items, xs), length=length)
    sub = traced["ledger"]
    for led in outer_ledgers:
        led.rounds += length * sub.rounds
        for p in range(comm.PARTIES):
            led.sent[p] += length * sub.sent[p]
        led.log.extend(sub.log * length)
    if outer_found is not None:
        outer_found.extend(zip(traced["labels"], opened, strict=True))
    return carry, ys
