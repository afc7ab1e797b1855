"""The ``secmoe bench moe`` workload: the secure MoE layer per (strategy, number of experts).

Weights are shared and masked once per E (:func:`~secmoe_jax.protocols._moe.setup_moe`), outside
the timed region, with the deployment's weights key; each timed run gets fresh query material.
``max_abs_err`` is measured against the plaintext reference
``secmoe_jax.training._moe.moe_reference`` with the same GeLU approximation (``secmoe6``) and the
exact softmax (the secure gates use the limit-form exponential, within about 1e-2 of it).

Memory: both parties run in one process (simulate mode). A configuration whose dealer material
for both parties exceeds ``max_offline_gb`` (default 6 GB) is reported with ``skipped`` instead
of run (all-experts at 128 experts needs ~11 GB of material per party at d = 256, f = 1024).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import comm
from .._report import complexity_entry
from ..protocols import _moe
from ..runtime import Program, Secret, as_keys, run, share
from ._harness import measure
from ._ops import op

Record = dict[str, Any]


def _params(e: int, d: int, f: int, ffn: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = {
        "router": rng.normal(scale=1.0 / np.sqrt(d), size=(d, e)) * 2.0,
        "w_in": rng.normal(scale=1.0 / np.sqrt(d), size=(e, d, f)),
        "b_in": rng.normal(scale=0.02, size=(e, f)),
        "w_out": rng.normal(scale=1.0 / np.sqrt(f), size=(e, f, d)),
        "b_out": rng.normal(scale=0.02, size=(e, d)),
    }
    if ffn != "gelu":
        p["w_up"] = rng.normal(scale=1.0 / np.sqrt(d), size=(e, d, f))
        p["b_up"] = rng.normal(scale=0.02, size=(e, f))
    return p


def _reference(x: np.ndarray, params: dict, cfg: _moe.MoELayerConfig) -> np.ndarray:
    from ..training._config import EncoderConfig, MoEConfig
    from ..training._moe import moe_reference

    moe = MoEConfig(
        experts=cfg.experts,
        top_k=cfg.top_k,
        capacity_factor=cfg.capacity_factor,
        ffn_kind=cfg.ffn,
        router=cfg.router,
    )
    d, f = x.shape[1], params["w_in"].shape[-1]
    enc = EncoderConfig(hidden=d, heads=1, ffn=f, gelu=cfg.gelu, silu=cfg.silu, moe=moe)
    p = {n: jnp.asarray(v, jnp.float32) for n, v in params.items()}
    y, _ = moe_reference(jnp.asarray(x[None], jnp.float32), p, enc)
    return np.asarray(y[0], np.float64)


def moe_records(
    *,
    experts: Sequence[int],
    tokens: int,
    d_model: int,
    d_ff: int,
    top_k: int,
    strategies: Sequence[str],
    capacity_factor: float | None,
    repeats: int,
    ffn: str = "gelu",
    max_offline_gb: float = 6.0,
    seed: int = 0,
) -> list[Record]:
    """One record per (strategy, E): exact cost, seconds (both parties), error vs float.

    Args:
      experts: numbers of experts E.
      tokens, d_model, d_ff: T, d, f.
      top_k: 1 or 2.
      strategies: subset of ``("all", "stc", "dispatch")``.
      capacity_factor: expert capacity factor (None: no capacity, C = T).
      repeats: timed runs (median).
      ffn: "gelu", "geglu" or "swiglu".
      max_offline_gb: skip configurations whose material for both parties exceeds this.

    Returns:
      Records with ``strategy, experts, tokens, d_model, d_ff, top_k, capacity_factor,
      capacity, online_bytes, rounds, offline_bytes, seconds, dealer_seconds, max_abs_err``
      (and the harness's ``op, variant, shape, bytes_per_party, lan_seconds, wan_seconds``),
      plus ``load`` (1-minute load average at the start: the machine is shared).
    """
    bad = [s for s in strategies if s not in _moe.STRATEGIES]
    if bad:
        raise ValueError(f"moe_records: unknown strategies {bad}; use {_moe.STRATEGIES}")
    out: list[Record] = []
    for e in experts:
        params = _params(e, d_model, d_ff, ffn, seed + e)
        x = np.random.default_rng(seed + 1).normal(size=(tokens, d_model))
        keys = as_keys(jax.random.key(1000 + e))
        pk = jax.random.split(jax.random.key(seed + 2), len(params))
        shares = {
            n: share(v, k, owner=comm.SERVER) for (n, v), k in zip(params.items(), pk, strict=True)
        }
        weights = run(lambda p, mat: _moe.setup_moe(p, mat, mask_ids=1), shares, key=keys)
        xs = share(x, jax.random.key(seed + 3))
        for strategy in strategies:
            cfg = _moe.MoELayerConfig(
                experts=e,
                top_k=top_k,
                capacity_factor=capacity_factor,
                strategy=strategy,
                ffn=ffn,
            )

            def fn(a, w, mat, cfg=cfg):
                return Secret(_moe.moe_layer(a.data, w, mat, cfg=cfg))

            extra = {
                "strategy": strategy,
                "experts": e,
                "tokens": tokens,
                "d_model": d_model,
                "d_ff": d_ff,
                "top_k": top_k,
                "ffn": ffn,
                "capacity_factor": capacity_factor,
                "capacity": cfg.capacity(tokens),
                "load": os.getloadavg()[0],
            }
            cost = Program(fn).cost(xs, weights)
            if 2 * cost.offline_bytes > max_offline_gb * 1e9:
                rec = {
                    "op": "moe",
                    "variant": strategy,
                    "shape": [tokens, d_model, d_ff, e],
                    "online_bytes": cost.online_bytes,
                    "rounds": cost.rounds,
                    "offline_bytes": cost.offline_bytes,
                    "seconds": None,
                    "dealer_seconds": None,
                    "max_abs_err": None,
                    "skipped": f"material for both parties {2 * cost.offline_bytes / 1e9:.1f} GB "
                    f"> max_offline_gb={max_offline_gb}",
                }
                rec.update(extra)
                out.append(rec)
                continue
            expected = _reference(x, params, cfg)
            out.append(
                measure(
                    "moe",
                    strategy,
                    fn,
                    [xs, weights],
                    expected=expected,
                    shape=(tokens, d_model, d_ff, e),
                    repeats=repeats,
                    weights_key=keys.weights,
                    seed=seed + 4,
                    extra=extra,
                )
            )
    return out


@op("moe")
def _moe_op(repeats: int, small: bool) -> Iterator[Record]:
    if small:
        kw = dict(experts=[4], tokens=8, d_model=8, d_ff=16)
    else:
        kw = dict(experts=[8, 16], tokens=128, d_model=256, d_ff=1024)
    yield from moe_records(
        top_k=1,
        strategies=["stc", "dispatch"],
        capacity_factor=1.0,
        repeats=repeats,
        **kw,
    )


def _complexity(strategy: str):
    t, d, f, e = 128, 256, 1024, 8
    cfg = _moe.MoELayerConfig(experts=e, capacity_factor=1.0, strategy=strategy)

    def fn(x, mat):
        def mw(mid, *shape):
            z = jnp.zeros(shape, jnp.uint64)
            return _moe.MaskedWeight(f=z, b=z, mask_id=mid)

        w = _moe.MoEWeights(router=mw(1, d, e), w_in=mw(2, e, d, f), w_out=mw(3, e, f, d))
        return _moe.moe_layer(x, w, mat, cfg=cfg)

    complexity_entry("moe_layer", f"{strategy}, E=8, d=256, f=1024, k=1", ((t, d),), t * d)(fn)


for _s in _moe.STRATEGIES:
    _complexity(_s)
