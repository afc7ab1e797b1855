"""The ``secmoe bench moe`` workload: the secure MoE layer per (strategy, number of experts).

Weights are shared and masked once per E (:func:`~secmoe_jax.protocols._moe.setup_moe`), outside
the timed region, with the deployment's weights key; each timed run gets fresh query material.
``max_abs_err`` is measured against the plaintext reference
``secmoe_jax.training._moe.moe_reference`` with the same GeLU approximation (``secmoe6``) and the
exact softmax (the secure gates use the limit-form exponential, within about 1e-2 of it).

Memory and chunked execution: both parties run in one process (simulate mode). A
configuration whose dealer material for both parties exceeds ``max_offline_gb`` (default 6 GB)
runs in TOKEN CHUNKS (:class:`ChunkedLayer`): the router and the capacity on all T tokens
(``moe_route`` + ``moe_capacity``: the capacity needs the running count over the whole group),
then the strategy body on chunks of tokens with the already-kept one-hots
(``moe_experts(..., kept=True)``), each chunk a separate program run with its own fresh
material, outputs concatenated. The record then has ``chunks > 1`` and ``chunk_tokens``; its
``online_bytes``, ``rounds`` and ``offline_bytes`` are ALWAYS those of the unchunked fused layer
``moe_layer`` traced by ``cost()`` (which allocates no material); ``seconds`` and
``dealer_seconds`` are the sums over the router program and the chunks; ``max_abs_err`` is
that of the concatenated output. Select-Then-Compute at BERT width (T = 128, d = 768,
f = 3072) needs ~5.2 GB of material per party (its selection correlation has ``O(T D F)``
words), all-experts at 64 and 128 experts (d = 256, f = 1024) 5.5 and 11 GB per party.
Dispatch cannot be chunked (its slots are the group's positions) and is reported with
``skipped`` if it does not fit (it needs ~0.1 GB).
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .. import comm
from .._report import complexity_entry
from ..dealer import DealerKeys
from ..protocols import _moe
from ..runtime import Cost, Program, Secret, as_keys, reveal, run, share
from ..runtime import compile as compile_program
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


def chunk_sizes(tokens: int, chunks: int) -> list[int]:
    """Split ``tokens`` into ``chunks`` contiguous chunks as equal as possible (at most two
    distinct sizes, so at most two compiled chunk programs)."""
    if not 1 <= chunks <= tokens:
        raise ValueError(f"chunk_sizes: need 1 <= chunks <= tokens={tokens}, got {chunks}")
    q, r = divmod(tokens, chunks)
    return [q + 1] * r + [q] * (chunks - r)


@functools.cache
def _route_fn(cfg: _moe.MoELayerConfig):
    """Per-party router + capacity on a whole group: ``(kept_onehot, kept_weighted)``."""

    def fn(x, w, mat):
        oh, wt = _moe.moe_route(x, w, mat, cfg=cfg)
        return _moe.moe_capacity(oh, wt, mat, cfg=cfg)

    return fn


@functools.cache
def _body_fn(cfg: _moe.MoELayerConfig):
    """Per-party strategy body on a chunk of tokens with already-kept one-hots."""

    def fn(x, w, oh, wt, mat):
        return _moe.moe_experts(x, w, oh, wt, mat, cfg=cfg, kept=True)

    return fn


def _sds(shape: Sequence[int]) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct((2, *shape), jnp.uint64)


class ChunkedLayer:
    """Token-chunked execution of the secure MoE layer (host side, simulate mode).

    ``run`` evaluates, as separate programs, each with its own fresh dealer material:

    1. the router and the capacity on ALL ``T`` tokens (``moe_route`` + ``moe_capacity``):
       the kept one-hots ``[k, T, E]`` and gate-weighted one-hots;
    2. for each chunk ``[lo, hi)`` of ``sizes``: ``moe_experts(x[lo:hi], ..., kept=True)``
       on the chunk's rows of the kept one-hots (no capacity recount);

    and concatenates the chunk outputs. Only one chunk's material is alive at a time, so the
    peak material is ``max`` over the programs (:meth:`offline_bytes`), not the sum. The result
    equals ``moe_layer``'s up to fixed-point rounding (fresh randomness; both match the float
    reference at the same tolerance). Cost: the unchunked layer's bytes plus one more opening
    of ``x`` (``8 T D`` per party: the router's mask is not reused by the chunks) and, per
    chunk, the body's rounds (the chunks are independent: a deployment could run them
    concurrently in the body's rounds).

    Args:
      cfg: the layer config; ``cfg.strategy`` must be "all" or "stc".
      sizes: chunk sizes (sum = T), e.g. :func:`chunk_sizes`.
    """

    def __init__(self, cfg: _moe.MoELayerConfig, sizes: Sequence[int]) -> None:
        if cfg.strategy == "dispatch":
            raise ValueError("ChunkedLayer: 'dispatch' cannot run in token chunks")
        if not sizes or min(sizes) < 1:
            raise ValueError(f"ChunkedLayer: sizes must be positive, got {sizes}")
        self.cfg = cfg
        self.sizes = [int(s) for s in sizes]
        # the router program does not depend on the strategy: one compile for all and stc
        self.route = compile_program(_route_fn(cfg.replace(strategy="stc")))
        self.body = compile_program(_body_fn(cfg))
        self._peak: dict[Any, int] = {}

    def _body_args(self, xs: Any, weights: Any, oh: Any, wt: Any, lo: int, hi: int):
        with jax.enable_x64(True):
            return (xs[:, lo:hi], weights, oh[:, :, lo:hi], wt[:, :, lo:hi])

    def offline_bytes(self, xs: Any, weights: Any) -> int:
        """Peak dealer material per party: the largest program (traced, nothing allocated)."""
        key = (tuple(xs.shape), jax.tree.structure(weights))
        if key not in self._peak:
            self._peak[key] = self._offline_bytes(xs, weights)
        return self._peak[key]

    def _offline_bytes(self, xs: Any, weights: Any) -> int:
        t, d = xs.shape[1:]
        k, e = self.cfg.top_k, self.cfg.experts
        peak = self.route.cost(_sds((t, d)), weights).offline_bytes
        for size in sorted(set(self.sizes)):
            args = (_sds((size, d)), weights, _sds((k, size, e)), _sds((k, size, e)))
            peak = max(peak, self.body.cost(*args).offline_bytes)
        return peak

    def run(self, xs: Any, weights: Any, keys: DealerKeys) -> tuple[jax.Array, float, float]:
        """Run the layer on ``[2, T, D]`` shares: ``(y [2, T, D], dealer_s, online_s)``.

        Program ``i`` (0 = router, ``1 + j`` = chunk ``j``) uses the query key
        ``fold_in(keys.query, i)`` and the deployment's weights key. Seconds are the sums over
        the programs (material generation and online phase timed apart, after
        ``block_until_ready``).
        """
        if sum(self.sizes) != xs.shape[1]:
            raise ValueError(f"ChunkedLayer: sizes sum to {sum(self.sizes)}, T = {xs.shape[1]}")

        def key(i: int) -> DealerKeys:
            return DealerKeys(jax.random.fold_in(keys.query, i), keys.weights)

        dealer_s = online_s = 0.0
        t0 = time.perf_counter()
        mat = jax.block_until_ready(self.route.material(key(0), xs, weights))
        t1 = time.perf_counter()
        oh, wt = jax.block_until_ready(self.route.online(mat, xs, weights))
        dealer_s += t1 - t0
        online_s += time.perf_counter() - t1
        del mat
        outs, lo = [], 0
        for j, size in enumerate(self.sizes):
            args = self._body_args(xs, weights, oh, wt, lo, lo + size)
            lo += size
            t0 = time.perf_counter()
            mat = jax.block_until_ready(self.body.material(key(1 + j), *args))
            t1 = time.perf_counter()
            outs.append(jax.block_until_ready(self.body.online(mat, *args)))
            dealer_s += t1 - t0
            online_s += time.perf_counter() - t1
            del mat  # one chunk's material alive at a time
        with jax.enable_x64(True):
            y = jnp.concatenate(outs, axis=1)
        return y, dealer_s, online_s


def plan_chunks(
    cfg: _moe.MoELayerConfig,
    xs: Any,
    weights: Any,
    *,
    max_offline_gb: float,
    chunks: int | None = None,
) -> ChunkedLayer | None:
    """The :class:`ChunkedLayer` with the fewest token chunks whose peak material for BOTH
    parties is at most ``max_offline_gb`` (``chunks`` forces the number); None if even
    one-token chunks do not fit."""
    t = xs.shape[1]
    budget = max_offline_gb * 1e9
    n = chunks or 2
    while True:
        layer = ChunkedLayer(cfg, chunk_sizes(t, n))
        peak = 2 * layer.offline_bytes(xs, weights)
        if chunks is not None or peak <= budget:
            return layer
        if n >= t:
            return None
        # the body's material is linear in the chunk size: jump close to the answer
        n = min(t, max(n + 1, int(n * peak / budget) + 1))


def _measure_chunked(
    layer: ChunkedLayer,
    xs: Secret,
    weights: Any,
    *,
    cost: Cost,
    expected: np.ndarray,
    repeats: int,
    weights_key: jax.Array,
    seed: int,
    extra: dict[str, Any],
) -> Record:
    """Like :func:`~._harness.measure` for a :class:`ChunkedLayer` (same timing rules; the
    cost is the UNCHUNKED layer's, given)."""
    base = as_keys(jax.random.key(seed))
    keys = [DealerKeys(jax.random.fold_in(base.query, i), weights_key) for i in range(repeats + 1)]
    y, _, _ = layer.run(xs.data, weights, keys[0])  # compiles every program, outside timing
    err = float(np.max(np.abs(reveal(Secret(y, xs.frac_bits)) - expected)))
    dealer, online = [], []
    for k in keys[1:]:
        _, d_s, o_s = layer.run(xs.data, weights, k)
        dealer.append(d_s)
        online.append(o_s)
    seconds = statistics.median(online)
    rec = {
        "op": "moe",
        "variant": layer.cfg.strategy,
        "shape": [int(v) for v in extra["shape"]],
        "online_bytes": cost.online_bytes,
        "bytes_per_party": list(cost.bytes_sent),
        "rounds": cost.rounds,
        "offline_bytes": cost.offline_bytes,
        "seconds": seconds,
        "dealer_seconds": statistics.median(dealer),
        "max_abs_err": err,
        "lan_seconds": cost.estimate(seconds, comm.LAN),
        "wan_seconds": cost.estimate(seconds, comm.WAN),
        "repeats": repeats,
    }
    rec.update({k: v for k, v in extra.items() if k != "shape"})
    return rec


def setup_inputs(
    experts: int, tokens: int, d_model: int, d_ff: int, ffn: str = "gelu", seed: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray, DealerKeys, _moe.MoEWeights, Secret]:
    """The benchmark's inputs for E = ``experts``: ``(params, x, keys, weights, xs)``.

    Float weights (``params``, the reference's layout) and tokens ``x [T, d]`` from ``seed``;
    the weights shared by the server and masked once by ``setup_moe`` (``mask_ids=1``) with
    the deployment's dealer ``keys``; ``xs`` the client's shares of ``x``.
    """
    params = _params(experts, d_model, d_ff, ffn, seed + experts)
    x = np.random.default_rng(seed + 1).normal(size=(tokens, d_model))
    keys = as_keys(jax.random.key(1000 + experts))
    pk = jax.random.split(jax.random.key(seed + 2), len(params))
    shares = {
        n: share(v, k, owner=comm.SERVER) for (n, v), k in zip(params.items(), pk, strict=True)
    }
    weights = run(_setup_fn, shares, key=keys)
    return params, x, keys, weights, share(x, jax.random.key(seed + 3))


def _setup_fn(p: dict[str, Any], mat: Any) -> _moe.MoEWeights:
    """Per-party weight setup (module level: one compiled program per shapes)."""
    return _moe.setup_moe(p, mat, mask_ids=1)


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
    gelu: str = "secmoe6",
    router: str = "exact",
    max_offline_gb: float = 6.0,
    chunks: int | None = None,
    cost_only: bool = False,
    seed: int = 0,
    on_record: Callable[[Record], None] | None = None,
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
      gelu: the experts' GeLU variant (``protocols._gelu.gelu``; the reference uses the same).
      router: the gate softmax, "exact" or "2quad".
      max_offline_gb: dealer material budget for both parties: "all" and "stc" run in token
        chunks (:class:`ChunkedLayer`) when the unchunked layer's material exceeds it;
        dispatch (not chunkable) is skipped.
      chunks: force this many token chunks for "all" and "stc" (tests); None: automatic.
      cost_only: trace the costs only (no weights, no run: ``seconds`` etc. are None).
      on_record: called with each record as soon as it is measured (progress output).

    Returns:
      Records with ``strategy, experts, tokens, d_model, d_ff, top_k, capacity_factor,
      capacity, online_bytes, rounds, offline_bytes, seconds, dealer_seconds, max_abs_err,
      chunks`` (``chunk_tokens`` and ``chunk_offline_bytes``, the peak material per party, when
      chunked) and the harness's ``op, variant, shape, bytes_per_party, lan_seconds,
      wan_seconds``, plus ``load`` (1-minute load average at the start: the machine is shared).
      ``online_bytes``, ``rounds``, ``offline_bytes`` are the unchunked layer's (``cost()``).
    """
    bad = [s for s in strategies if s not in _moe.STRATEGIES]
    if bad:
        raise ValueError(f"moe_records: unknown strategies {bad}; use {_moe.STRATEGIES}")
    out: list[Record] = []

    def emit(rec: Record) -> None:
        out.append(rec)
        if on_record is not None:
            on_record(rec)

    for e in experts:
        if cost_only:
            weights = _abstract_weights(e, d_model, d_ff, ffn)
            xs = Secret(_sds((tokens, d_model)))
        else:
            params, x, keys, weights, xs = setup_inputs(e, tokens, d_model, d_ff, ffn, seed)
        for strategy in strategies:
            cfg = _moe.MoELayerConfig(
                experts=e,
                top_k=top_k,
                capacity_factor=capacity_factor,
                strategy=strategy,
                ffn=ffn,
                gelu=gelu,
                router=router,
            )

            def fn(a, w, mat, cfg=cfg):
                return Secret(_moe.moe_layer(a.data, w, mat, cfg=cfg))

            shape = [tokens, d_model, d_ff, e]
            extra = {
                "strategy": strategy,
                "experts": e,
                "tokens": tokens,
                "d_model": d_model,
                "d_ff": d_ff,
                "top_k": top_k,
                "ffn": ffn,
                "gelu": gelu,
                "router": router,
                "capacity_factor": capacity_factor,
                "capacity": cfg.capacity(tokens),
                "chunks": 1,
                "load": os.getloadavg()[0],
            }
            cost = Program(fn).cost(xs, weights)
            base = {
                "op": "moe",
                "variant": strategy,
                "shape": shape,
                "online_bytes": cost.online_bytes,
                "bytes_per_party": list(cost.bytes_sent),
                "rounds": cost.rounds,
                "offline_bytes": cost.offline_bytes,
                "seconds": None,
                "dealer_seconds": None,
                "max_abs_err": None,
            }
            fits = 2 * cost.offline_bytes <= max_offline_gb * 1e9
            if cost_only:
                emit({**base, **extra, "cost_only": True})
                continue
            if strategy == "dispatch" or (fits and chunks is None):
                if not fits:
                    emit({**base, **extra, "skipped": _too_big(cost, max_offline_gb)})
                    continue
                rec = measure(
                    "moe",
                    strategy,
                    fn,
                    [xs, weights],
                    expected=_reference(x, params, cfg),
                    shape=shape,
                    repeats=repeats,
                    weights_key=keys.weights,
                    seed=seed + 4,
                    extra=extra,
                )
                emit(rec)
                continue
            layer = plan_chunks(cfg, xs.data, weights, max_offline_gb=max_offline_gb, chunks=chunks)
            if layer is None:
                emit({**base, **extra, "skipped": _too_big(cost, max_offline_gb)})
                continue
            extra.update(
                chunks=len(layer.sizes),
                chunk_tokens=layer.sizes,
                chunk_offline_bytes=layer.offline_bytes(xs.data, weights),
                shape=shape,
            )
            emit(
                _measure_chunked(
                    layer,
                    xs,
                    weights,
                    cost=cost,
                    expected=_reference(x, params, cfg),
                    repeats=repeats,
                    weights_key=keys.weights,
                    seed=seed + 4,
                    extra=extra,
                )
            )
    return out


def _too_big(cost: Cost, max_offline_gb: float) -> str:
    return (
        f"material for both parties {2 * cost.offline_bytes / 1e9:.1f} GB "
        f"> max_offline_gb={max_offline_gb}"
    )


def _abstract_weights(e: int, d: int, f: int, ffn: str) -> _moe.MoEWeights:
    """Shape-only weights (``cost()`` needs no values)."""

    def mw(mid: int, *shape: int) -> _moe.MaskedWeight:
        return _moe.MaskedWeight(f=_sds(shape), b=_sds(shape), mask_id=mid)

    ids = {n: 1 + i for i, n in enumerate(_moe.WEIGHT_NAMES)}  # setup_moe(mask_ids=1)
    w = _moe.MoEWeights(
        router=mw(ids["router"], d, e),
        w_in=mw(ids["w_in"], e, d, f),
        b_in=mw(ids["b_in"], e, f),
        w_out=mw(ids["w_out"], e, f, d),
        b_out=mw(ids["b_out"], e, d),
    )
    if ffn != "gelu":
        w = w.replace(w_up=mw(ids["w_up"], e, d, f), b_up=mw(ids["b_up"], e, f))
    return w


def load_records(path: str) -> tuple[list[Record], dict[str, Any]]:
    """Records and meta of a result file: a JSON list, or ``{"meta": ..., "records": [...]}``."""
    import json

    with open(path) as fh:
        data = json.load(fh)
    if isinstance(data, dict):
        return list(data.get("records", [])), dict(data.get("meta", {}))
    return list(data), {}


def _machine() -> str:
    import platform

    gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()}-core {platform.machine()} CPU, {gib:.0f} GiB, jax {jax.__version__} "
        f"({jax.default_backend()}); 1-minute load average at the start "
        f"{os.getloadavg()[0]:.1f} (the machine is shared: compare ratios within one file)"
    )


def _command(args: Any) -> str:
    parts = [
        "secmoe bench moe",
        f"--experts {','.join(map(str, args.experts))}",
        f"--tokens {args.tokens}",
        f"--d-model {args.d_model}",
        f"--d-ff {args.d_ff}",
        f"--top-k {args.top_k}",
        f"--strategy {args.strategy}",
        f"--capacity-factor {args.capacity_factor:g}",
    ]
    if args.ffn != "gelu":
        parts.append(f"--ffn {args.ffn}")
    if args.cost_only:
        parts.append("--cost-only")
    else:
        parts.append(f"--repeats {args.repeats}")
        parts.append(f"--max-offline-gb {args.max_offline_gb:g}")
    if args.out:
        parts.append(f"--out {args.out}")
    if args.plot:
        parts.append(f"--plot {args.plot}")
    return " ".join(parts)


def plot_moe(records: Sequence[Record], path: str, *, title: str | None = None) -> None:
    """Online MB and seconds against the number of experts, one line per strategy."""
    from ._plot import plot_records

    if title is None and records:
        r = records[0]
        title = (
            f"Secure MoE layer: T={r.get('tokens', '?')}, d={r.get('d_model', '?')}, "
            f"f={r.get('d_ff', '?')}, k={r.get('top_k', '?')}, cf={r.get('capacity_factor')}"
        )
    plot_records(
        records,
        x="experts",
        ys=[("online_bytes", "online MB (both parties)", 1e-6), ("seconds", "seconds", 1.0)],
        series="strategy",
        path=path,
        title=title,
        xlabel="experts E",
    )


def cli_bench_moe(args: Any) -> int:
    """``secmoe bench moe`` (see ``secmoe bench moe --help``): run or load, print, write, plot."""
    import datetime
    import json
    import sys

    def fail(msg: str) -> int:
        print(f"secmoe bench moe: {msg}", file=sys.stderr)
        return 2

    if args.from_json:
        try:
            records, meta = load_records(args.from_json)
        except (OSError, ValueError) as exc:
            return fail(f"cannot read --from {args.from_json}: {exc}")
    else:
        strategies = [s.strip() for s in args.strategy.split(",") if s.strip()]
        bad = [s for s in strategies if s not in _moe.STRATEGIES]
        if bad:
            return fail(f"unknown strategy {bad}; use {','.join(_moe.STRATEGIES)}")
        if args.top_k not in (1, 2) or args.top_k > min(args.experts):
            return fail("--top-k must be 1 or 2 and at most the number of experts")
        if args.repeats < 1:
            return fail("--repeats must be at least 1")
        meta = {
            "command": _command(args),
            "machine": _machine(),
            "date": datetime.date.today().isoformat(),
        }

        def show(r: Record) -> None:
            print(_line(r), file=sys.stderr if args.json else sys.stdout, flush=True)

        records = moe_records(
            on_record=show,
            experts=args.experts,
            tokens=args.tokens,
            d_model=args.d_model,
            d_ff=args.d_ff,
            top_k=args.top_k,
            strategies=strategies,
            capacity_factor=args.capacity_factor,
            repeats=args.repeats,
            ffn=args.ffn,
            max_offline_gb=args.max_offline_gb,
            cost_only=args.cost_only,
        )
        if args.out:
            with open(args.out, "w") as fh:
                json.dump({"meta": meta, "records": records}, fh, indent=2)
                fh.write("\n")
    if args.plot:
        try:
            plot_moe(records, args.plot)
        except ImportError as exc:
            return fail(str(exc))
        except ValueError as exc:
            return fail(f"--plot: {exc}")
    if args.json:
        json.dump(records, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        if args.from_json:
            for r in records:
                print(_line(r))
        if args.plot:
            print(f"wrote {args.plot}")
    return 0


def _line(r: Record) -> str:
    head = (
        f"{r['strategy']:9s} E={r['experts']:4d} {r['online_bytes'] / 1e6:10.2f} MB "
        f"{r['rounds']:4d} rd"
    )
    if r.get("skipped"):
        return f"{head} skipped: {r['skipped']}"
    if r.get("seconds") is None:
        return f"{head} offline {r['offline_bytes'] / 1e6:10.2f} MB/party (cost only)"
    return (
        f"{head} {r['seconds']:8.3f} s dealer {r['dealer_seconds']:7.3f} s "
        f"chunks {r.get('chunks', 1)} err {r['max_abs_err']:.2e}"
    )


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
