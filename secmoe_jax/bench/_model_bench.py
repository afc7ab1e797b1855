"""``secmoe bench model``: random-weight timing presets for comparison with published systems.

Presets (:data:`PRESETS`):

* ``bert-base-layer``: ONE encoder layer at BERT-base size (hidden 768, 12 heads, FFN 3072),
  sequence 128, batch 1, input already secret-shared (what CrypTen, SPU, MPCFormer and
  SecFormer time per layer).
* ``minilm``: the whole MiniLM-size classifier (6 layers, hidden 384, 12 heads, FFN 1536,
  vocabulary 30,522 with the private one-hot embedding lookup, mean pooling, 2-way head),
  sequence 64; per-example cost reported at the given batch.
* ``moe-small``: 2 layers at MiniLM width whose FFNs are 8-expert top-1 MoE layers,
  sequence 64; one record per MoE strategy.
* ``tiny``, ``tiny-moe``: width-16 smoke tests (seconds).

Variants: ``exact`` runs exact-form softmax (limit exponential + Goldschmidt reciprocal) and
GeLU (SecFormer's Fourier erf, the accurate protocol for exact GeLU), what CrypTen and SPU run;
``mpc-friendly`` runs "2quad" and GeLU "secmoe6" evaluated by Select-Then-Compute (the choices
of the distilled students).

Timing rules as in :mod:`._harness`: weights shared and masked once outside the timed region,
compilation outside it, fresh dealer material per run (timed separately), median of
``repeats``; both parties in simulate mode on this machine. ``max_abs_err`` compares the
revealed output with the float32 Flax model on the same weights and inputs (the layer's output
for ``bert-base-layer``, the logits otherwise).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .. import comm
from .. import protocols as pr
from ..runtime import share
from ._harness import measure

PRESETS: dict[str, dict[str, Any]] = {
    "bert-base-layer": dict(layers=1, hidden=768, heads=12, ffn=3072, seq=128, part="layer"),
    "minilm": dict(layers=6, hidden=384, heads=12, ffn=1536, seq=64, part="model"),
    "moe-small": dict(layers=2, hidden=384, heads=12, ffn=1536, seq=64, part="model", experts=8),
    # smoke tests: seconds on a CPU
    "tiny": dict(layers=1, hidden=16, heads=2, ffn=32, seq=16, part="model", vocab=64),
    "tiny-moe": dict(
        layers=1, hidden=16, heads=2, ffn=32, seq=16, part="model", vocab=64, experts=4
    ),
}
VARIANTS = {"exact": ("exact", "exact"), "mpc-friendly": ("secmoe6", "2quad")}
STRATEGIES = ("all", "stc", "dispatch")


def _config(preset: str, variant: str, seq: int) -> Any:
    from ..training import EncoderConfig, MoEConfig

    p = PRESETS[preset]
    gelu, softmax = VARIANTS[variant]
    moe = None
    if "experts" in p:
        moe = MoEConfig(experts=p["experts"], top_k=1, capacity_factor=1.25)
    return EncoderConfig(
        vocab_size=p.get("vocab", 30522),
        hidden=p["hidden"],
        layers=p["layers"],
        heads=p["heads"],
        ffn=p["ffn"],
        max_len=max(seq, 128),
        gelu=gelu,
        softmax=softmax,
        num_labels=2,
        moe=moe,
    )


def model_records(
    preset: str,
    *,
    variants: tuple[str, ...] = ("exact", "mpc-friendly"),
    seqs: tuple[int, ...] | None = None,
    batch: int = 1,
    strategies: tuple[str, ...] = STRATEGIES,
    repeats: int = 3,
    seed: int = 0,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Records of ``preset`` per (variant, sequence length[, strategy]).

    Fields: ``preset, variant, gelu, softmax, strategy, layers, hidden, heads, ffn, experts,
    seq, batch, online_bytes, rounds, offline_bytes, seconds, dealer_seconds, max_abs_err,
    lan_seconds, wan_seconds`` and ``*_per_example`` for bytes and seconds.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    for v in variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; choose from {sorted(VARIANTS)}")
    seqs = seqs or (PRESETS[preset]["seq"],)
    out = []
    for variant in variants:
        for seq in seqs:
            cfg = _config(preset, variant, seq)
            strats = strategies if cfg.moe is not None else ("none",)
            for strategy in strats:
                rec = _one(preset, variant, cfg, seq, batch, strategy, repeats, seed)
                out.append(rec)
                if progress is not None:
                    progress(rec)
    return out


def _one(preset, variant, cfg, seq, batch, strategy, repeats, seed) -> dict[str, Any]:
    from ..secure import SecureModel, SecureOptions, encoder_layer, forward
    from ..training import Encoder
    from ..training._checkpoint import params_to_flat

    model = Encoder(cfg, rngs=nnx.Rngs(seed))
    flat = params_to_flat(model)
    opts = SecureOptions(moe_strategy=strategy if strategy != "none" else "dispatch")
    secure = SecureModel(cfg, flat, opts=opts)
    rng = np.random.default_rng(seed + 1)
    mask = np.ones((batch, seq), np.int32)
    mask2 = jnp.asarray(np.stack([mask, mask]))
    key = jax.random.key(seed + 2)
    if PRESETS[preset]["part"] == "layer":
        x = rng.normal(size=(batch, seq, cfg.hidden))
        xs = share(x, key, owner=comm.CLIENT, frac_bits=opts.frac_bits).data

        def fn(xs, m, w, mat):  # the layer block as the model runs it (a scan of length 1)
            def body(x, lw, m_):
                return encoder_layer(x, m.astype(bool), lw, m_, cfg=cfg, opts=opts), None

            return pr.scan(body, xs, w["layers"], mat, length=1)[0]

        args = (xs, mask2, secure.weights)
        expected = np.asarray(model.layers[0](jnp.asarray(x, jnp.float32), mask)[0], np.float64)
        revealed = False  # the layer's output stays shared
    else:
        ids = rng.integers(1, cfg.vocab_size, size=(batch, seq))
        tokens, _ = secure._inputs(ids, mask)
        fn = partial(forward, cfg=cfg, opts=opts)
        args = (tokens, mask2, secure.weights)
        expected = np.asarray(model(ids, mask).logits, np.float64)
        revealed = True  # the logits are revealed to the client
    rec = measure(
        "model",
        variant,
        fn,
        args,
        expected=None,
        shape=(batch, seq),
        repeats=repeats,
        weights_key=secure.dealer.next_keys().weights,
        seed=seed + 3,
    )
    rec["max_abs_err"] = _error(fn, args, expected, secure, opts.frac_bits, revealed)
    return {
        "preset": preset,
        "variant": variant,
        "gelu": opts.gelu_variant(cfg.gelu),
        "softmax": cfg.softmax,
        "strategy": strategy,
        "layers": cfg.layers,
        "hidden": cfg.hidden,
        "heads": cfg.heads,
        "ffn": cfg.ffn,
        "experts": cfg.moe.experts if cfg.moe is not None else 0,
        "seq": seq,
        "batch": batch,
        **{k: rec[k] for k in _KEEP},
        "online_bytes_per_example": rec["online_bytes"] / batch,
        "seconds_per_example": rec["seconds"] / batch,
    }


_KEEP = (
    "online_bytes",
    "bytes_per_party",
    "rounds",
    "offline_bytes",
    "seconds",
    "dealer_seconds",
    "max_abs_err",
    "lan_seconds",
    "wan_seconds",
    "repeats",
)


def _error(fn, args, expected, secure, frac_bits: int, revealed: bool) -> float:
    """Max |output - float reference| of one more run: the client's revealed logits, or the
    sum of both parties' output shares."""
    from ..kernels import decode
    from ..runtime import Program

    out = Program(fn)(secure.dealer.next_keys(), *args)
    with jax.enable_x64(True):
        ring = jnp.asarray(out[comm.CLIENT]) if revealed else jnp.asarray(out[0] + out[1])
        value = np.asarray(decode(ring, frac_bits))
    return float(np.max(np.abs(value - expected)))
