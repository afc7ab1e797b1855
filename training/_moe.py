"""Switch-style mixture-of-experts FFN: the plaintext reference for the secure MoE layer.

Semantics (the secure MoE layer must reproduce them exactly):

1. **Router.** ``logits_gte = x_gtd @ router_de`` (no bias); gate probabilities
   ``p_gte = secmoe_jax.approx.softmax(logits, variant=moe.router)`` over the E experts.
2. **Top-k on the probabilities** (k = 1 or 2). The first choice is ``argmax_e p`` (ties go to
   the lowest expert index); the second choice is the argmax of ``p`` with the first choice
   removed. Selection uses the probabilities, not the logits: for the exact softmax the two
   agree, for "2quad" (not monotone in the logits) the probabilities decide.
3. **Gates.** k = 1: ``gate = p[first]`` (Switch, not renormalised). k = 2: the two
   probabilities renormalised to sum to 1, ``g_i = p_i / (p_first + p_second)``.
4. **Groups and capacity.** A *group* is one sequence: the T positions of one row of the
   ``[G, T, D]`` input, T = the padded (static) sequence length. Capacity per expert and group
   is ``C = ceil(capacity_factor * T * k / E)``. Padded positions (``mask == 0``) are excluded:
   they choose no expert, take no capacity, get output 0 and do not enter the auxiliary loss.
5. **Position in the expert** = running count in token order: a token's slot in expert e is the
   number of earlier (real) tokens of its group routed to e. For k = 2 all first choices of the
   group are placed before all second choices (Switch/GShard convention): a second choice for
   expert e starts after the group's total number of first choices for e.
6. **Drops.** A choice whose position is ``>= C`` is dropped: it contributes 0 (the residual
   connection around the FFN carries the token). The other choice of the token (k = 2) keeps
   its renormalised gate.
7. **Output** ``y_t = sum over kept choices (gate * expert_e(x_t))``; experts are evaluated on
   their C slots only (capacity dispatch), which is equal to the definition.
8. **Load-balancing loss** (Switch): ``aux = E * sum_e f_e * P_e`` over all real tokens of the
   batch, ``f_e`` = fraction of tokens whose first choice is e (before drops), ``P_e`` = mean
   gate probability of e.

Expert bodies (``moe.ffn_kind``): "gelu": ``gelu(x W_in + b_in) W_out + b_out``;
"geglu": ``(gelu(x W_in + b_in) * (x W_up + b_up)) W_out + b_out``; "swiglu": the same with
SiLU. The activations are the ``secmoe_jax.approx`` variants named in the encoder config.

References: Fedus et al., "Switch Transformers" (2021); Lepikhin et al., "GShard" (2020);
Komatsuzaki et al., "Sparse Upcycling" (2022).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from secmoe_jax import approx

from ._config import EncoderConfig, MoEConfig

Params = dict[str, jax.Array]


class Routing(NamedTuple):
    """What the router decided for a ``[G, T]`` batch of tokens (k = top_k, C = capacity)."""

    probs: jax.Array  # [G, T, E] float32 gate probabilities
    expert_index: jax.Array  # [G, T, k] int32 chosen experts (first choice first)
    gates: jax.Array  # [G, T, k] float32 gate values (renormalised for k = 2)
    position: jax.Array  # [G, T, k] int32 slot of the choice inside its expert
    kept: jax.Array  # [G, T, k] bool: real token and position < C
    dispatch: jax.Array  # [G, T, E, C] float32 0/1: token t goes to slot c of expert e
    combine: jax.Array  # [G, T, E, C] float32: dispatch * gate
    aux_loss: jax.Array  # [] float32 Switch load-balancing loss


def capacity(moe: MoEConfig, seq_len: int) -> int:
    """Expert capacity per group, ``ceil(capacity_factor * seq_len * top_k / experts)``."""
    return max(1, math.ceil(moe.capacity_factor * seq_len * moe.top_k / moe.experts))


def route(logits: jax.Array, moe: MoEConfig, mask: jax.Array | None = None) -> Routing:
    """Top-k routing with capacity, from router logits.

    Args:
      logits: ``[G, T, E]`` router logits (one group per row).
      moe: the MoE configuration (top_k, capacity_factor, router softmax variant).
      mask: optional ``[G, T]`` 0/1 or bool, 1 = real token. ``None``: all real.

    Returns:
      A :class:`Routing`; see the module docstring for the exact semantics.
    """
    logits = jnp.asarray(logits, jnp.float32)
    g, t, e = logits.shape
    if e != moe.experts:
        raise ValueError(f"route: logits have {e} experts, config has {moe.experts}")
    real = jnp.ones((g, t), bool) if mask is None else jnp.asarray(mask).astype(bool)
    realf = real.astype(jnp.float32)
    cap = capacity(moe, t)
    probs = approx.softmax(logits, variant=moe.router, axis=-1).astype(jnp.float32)

    choices = []
    remaining = probs
    for _ in range(moe.top_k):
        idx = jnp.argmax(remaining, axis=-1).astype(jnp.int32)  # ties -> lowest index
        onehot = jax.nn.one_hot(idx, e, dtype=jnp.float32)
        choices.append((idx, onehot))
        remaining = jnp.where(onehot > 0, -jnp.inf, remaining)
    idx_k = jnp.stack([c[0] for c in choices], axis=-1)  # [G, T, k]
    gate_k = jnp.take_along_axis(probs, idx_k, axis=-1)
    if moe.top_k == 2:
        gate_k = gate_k / jnp.sum(gate_k, axis=-1, keepdims=True)

    # Running count per expert, first choices of the whole group before second choices.
    offset = jnp.zeros((g, e), jnp.int32)
    positions = []
    for _, onehot in choices:
        oh = (onehot * realf[..., None]).astype(jnp.int32)  # [G, T, E]
        pos_te = jnp.cumsum(oh, axis=1) - 1 + offset[:, None, :]
        positions.append(jnp.sum(pos_te * oh, axis=-1))
        offset = offset + jnp.sum(oh, axis=1)
    pos_k = jnp.stack(positions, axis=-1).astype(jnp.int32)
    kept_k = (pos_k < cap) & real[..., None]

    slot = jax.nn.one_hot(jnp.where(kept_k, pos_k, cap), cap, dtype=jnp.float32)  # [G,T,k,C]
    expert = jax.nn.one_hot(idx_k, e, dtype=jnp.float32)  # [G, T, k, E]
    dispatch_k = jnp.einsum("gtke,gtkc->gtkec", expert, slot)
    dispatch = jnp.sum(dispatch_k, axis=2)
    combine = jnp.einsum("gtkec,gtk->gtec", dispatch_k, gate_k)

    n_real = jnp.maximum(jnp.sum(realf), 1.0)
    f = jnp.sum(choices[0][1] * realf[..., None], axis=(0, 1)) / n_real
    p_mean = jnp.sum(probs * realf[..., None], axis=(0, 1)) / n_real
    aux = e * jnp.sum(f * p_mean)
    return Routing(probs, idx_k, gate_k, pos_k, kept_k, dispatch, combine, aux)


def _expert_hidden(h_in: jax.Array, h_up: jax.Array | None, cfg: EncoderConfig) -> jax.Array:
    kind = cfg.moe.ffn_kind if cfg.moe is not None else "gelu"
    if kind == "gelu":
        return approx.gelu(h_in, variant=cfg.gelu)
    if kind == "geglu":
        return approx.gelu(h_in, variant=cfg.gelu) * h_up
    return approx.silu(h_in, variant=cfg.silu) * h_up  # swiglu


def moe_reference(
    x: jax.Array, params: Params, cfg: EncoderConfig, mask: jax.Array | None = None
) -> tuple[jax.Array, Routing]:
    """The MoE FFN as a pure function: the reference the secure MoE layer is tested against.

    Args:
      x: ``[G, T, D]`` float inputs, one group (sequence) per row.
      params: ``router [D, E]``, ``w_in [E, D, F]``, ``b_in [E, F]``, ``w_out [E, F, D]``,
        ``b_out [E, D]``, and for "geglu"/"swiglu" also ``w_up [E, D, F]``, ``b_up [E, F]``.
      cfg: encoder config with ``cfg.moe`` set (activations come from ``cfg.gelu``/``cfg.silu``).
      mask: optional ``[G, T]`` 1 = real token.

    Returns:
      ``(y [G, T, D], routing)`` where routing is the :class:`Routing` (dispatch information).
    """
    if cfg.moe is None:
        raise ValueError("moe_reference: cfg.moe is None (a dense config)")
    x = jnp.asarray(x, jnp.float32)
    r = route(jnp.einsum("gtd,de->gte", x, params["router"]), cfg.moe, mask)
    xe = jnp.einsum("gtec,gtd->gecd", r.dispatch, x)
    h_in = jnp.einsum("gecd,edf->gecf", xe, params["w_in"]) + params["b_in"][None, :, None]
    h_up = None
    if "w_up" in params:
        h_up = jnp.einsum("gecd,edf->gecf", xe, params["w_up"]) + params["b_up"][None, :, None]
    h = _expert_hidden(h_in, h_up, cfg)
    out = jnp.einsum("gecf,efd->gecd", h, params["w_out"]) + params["b_out"][None, :, None]
    y = jnp.einsum("gtec,gecd->gtd", r.combine, out)
    return y, r


def upcycle(
    dense_ffn_params: Params,
    experts: int,
    noise_std: float,
    key: jax.Array,
    *,
    router_std: float = 0.02,
    output_scale: float = 1.0,
) -> Params:
    """Sparse upcycling: E experts that start as copies of a dense FFN plus Gaussian noise.

    With top-1 routing the layer's output is ``p_first * expert(x)`` (Switch gates are not
    renormalised), and a freshly initialised router gives ``p_first`` close to ``1/E``: plain
    copies would shrink every FFN's contribution about E-fold, which fine-tuning at BERT-like
    learning rates cannot undo in a few hundred steps (Adam moves a weight by at most ~lr per
    step). ``output_scale = E`` with a small ``router_std`` makes the upcycled layer start as
    the dense FFN itself (``p_first * E ~ 1``); :func:`init_student_from_teacher` does this for
    top-1 students. Top-2 gates are renormalised to sum to 1, so they need no compensation.

    Args:
      dense_ffn_params: ``w_in [D, F]``, ``b_in [F]``, ``w_out [F, D]``, ``b_out [D]`` (and
        optionally ``w_up``, ``b_up``) of the dense FFN.
      experts: E.
      noise_std: standard deviation of the independent noise added to every expert's weight
        matrices (absolute, not relative); biases are copied exactly.
      key: PRNG key (split once per noisy tensor, plus one for the router).
      router_std: std of the router weights ``[D, E]`` (normal initialisation).
      output_scale: factor on every expert's output projection ``w_out`` and ``b_out``
        (applied after the noise).

    Returns:
      MoE parameters in the layout of :func:`moe_reference`.
    """
    if not (output_scale > 0 and math.isfinite(output_scale)):
        raise ValueError(f"upcycle: output_scale must be a positive number, got {output_scale}")
    names = sorted(dense_ffn_params)
    keys = jax.random.split(key, len(names) + 1)
    out: Params = {}
    for k_i, name in zip(keys[:-1], names, strict=True):
        w = jnp.asarray(dense_ffn_params[name], jnp.float32)
        stacked = jnp.broadcast_to(w, (experts, *w.shape))
        if name.startswith("w_") and noise_std > 0:
            stacked = stacked + noise_std * jax.random.normal(k_i, stacked.shape, jnp.float32)
        if name in ("w_out", "b_out"):
            stacked = stacked * output_scale
        out[name] = stacked
    d = out["w_in"].shape[1]
    out["router"] = router_std * jax.random.normal(keys[-1], (d, experts), jnp.float32)
    return out


class MoEFFN(nnx.Module):
    """The MoE FFN as a Flax NNX module; ``__call__`` is :func:`moe_reference` on its params."""

    def __init__(self, cfg: EncoderConfig, *, rngs: nnx.Rngs):
        if cfg.moe is None:
            raise ValueError("MoEFFN needs cfg.moe")
        self.cfg = cfg
        e, d, f = cfg.moe.experts, cfg.hidden, cfg.ffn
        init = nnx.initializers.normal(0.02)
        self.router = nnx.Param(
            cfg.moe.router_init_std * jax.random.normal(rngs.params(), (d, e), jnp.float32)
        )
        self.w_in = nnx.Param(init(rngs.params(), (e, d, f), jnp.float32))
        self.b_in = nnx.Param(jnp.zeros((e, f), jnp.float32))
        self.w_out = nnx.Param(init(rngs.params(), (e, f, d), jnp.float32))
        self.b_out = nnx.Param(jnp.zeros((e, d), jnp.float32))
        if cfg.moe.ffn_kind != "gelu":
            self.w_up = nnx.Param(init(rngs.params(), (e, d, f), jnp.float32))
            self.b_up = nnx.Param(jnp.zeros((e, f), jnp.float32))

    def params_dict(self) -> Params:
        """The parameters as the plain dict :func:`moe_reference` takes."""
        names = ["router", "w_in", "b_in", "w_out", "b_out"]
        if self.cfg.moe.ffn_kind != "gelu":
            names += ["w_up", "b_up"]
        return {n: getattr(self, n)[...] for n in names}

    def load(self, params: Params) -> None:
        """Sets the parameters from a :func:`moe_reference`-layout dict (e.g. :func:`upcycle`)."""
        for name, value in params.items():
            var = getattr(self, name)
            if var[...].shape != value.shape:
                raise ValueError(
                    f"MoEFFN.load: {name} has shape {value.shape}, expected {var[...].shape}"
                )
            var[...] = jnp.asarray(value, jnp.float32)

    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """``x [B, T, D]`` -> ``(y [B, T, D], aux_loss [])``."""
        y, r = moe_reference(x, self.params_dict(), self.cfg, mask)
        return y, r.aux_loss
