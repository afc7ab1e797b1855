"""The secure mixture-of-experts feed-forward layer: routing hidden, three evaluation strategies.

A Switch/GShard MoE FFN over secret tokens ``x [T, D]`` with secret weights (router
``W_g [D, E]``, expert banks ``W_in [E, D, F]``, ``W_out [E, F, D]``, optionally ``W_up`` for
GeGLU/SwiGLU, and biases), top-k routing (k = 1, 2) and an expert capacity. What either party
sees never depends on the routing: every shape is static, every branch and gather is replaced
by arithmetic with a secret one-hot, and every opened value is masked by fresh dealer
randomness. The semantics are exactly those of the plaintext reference
``secmoe_jax.training._moe.moe_reference`` (one group of T tokens):

1. ``logits = x W_g``; ``p = softmax(logits)`` ("exact" or "2quad").
2. top-k on ``p`` (ties: lowest index); gates ``p[first]`` (k = 1) or renormalised (k = 2).
3. capacity ``C = ceil(cf T k / E)``; position = running count in token order, all first
   choices before all second choices; a choice at position ``>= C`` is dropped (outputs 0,
   the residual carries the token); padded tokens (public ``mask``) choose nothing.
4. ``y_t = sum over kept choices gate * expert_e(x_t)``.

Three strategies compute the same function (:data:`STRATEGIES`):

* ``"all"`` (the oblivious baseline): every expert on every token, combined with the one-hot.
* ``"stc"`` (SecMoE's Select-Then-Compute in the dealer model): the chosen expert's weights
  are selected by a degree-3 correlation, so the activation runs once per token and choice;
  online bytes independent of E but for ``T k E`` words of one-hot.
* ``"dispatch"`` (beyond the paper): a secret dispatch tensor ``[T, E, C]`` moves tokens into
  expert slots, experts run on their ``C`` slots; cost grows with ``E C ~ T k cf``, not with E
  (but ``C`` is rounded up per expert: see :func:`moe_layer`). With few slots per expert the
  weight products run as C batched matrix-vector products on the native uint64 dot
  (:data:`_MATVEC_MAX_ROWS`): local work ``O(E C D F)``, memory-bound.

Large groups run in token chunks (:func:`moe_capacity` on the whole group, then
:func:`moe_experts` with ``kept=True`` per chunk; ``bench._moe_bench.ChunkedLayer``) when the
dealer material of "stc" (``O(T k D F)`` words) or "all" (``O(T E F)``) does not fit memory.

Router (shared by the strategies; :func:`route`):

1. Open ``Ê = x - A`` ONCE for the whole layer. Every product with ``x`` (router, the
   all-experts up-projection, the dispatch gather, the STC selection) uses dealer material
   correlated with the same ``A`` (fresh other masks), so ``x`` is sent once.
2. ``logits`` at ``2f`` bits (no truncation: exactly tied logits stay tied).
3. Scores with the order and ties of ``p`` (:func:`~._topk.router_scores`), secure top-k
   (:func:`~._topk.top_k_onehot`), gate-weighted one-hots: "exact" directly from the chosen
   logits (:func:`~._topk.exact_gate_weights`, no softmax pass: the maximum is already
   known), "2quad" from the softmax protocol (:func:`~._topk.gate_weights`).

Capacity (all/stc): ``pos = cumsum_t(onehot) - 1 + offset`` (local), and ONE comparison
batch ``[pos < C]`` on ``ceil(log2(2 k T))``-bit values (2 or 3 rounds) with the products by
the one-hot and by the gate-weighted one-hot fused into it (``kept = onehot [pos < C]``).

Assumptions (public bounds): router logits ``|l| < 2^26``; expert outputs ``|y| < 2^14`` and
``|W_out h| < 2^14`` (the output product keeps ``3f = 48`` fractional bits before its one
truncation); pre-activations inside the activation protocol's contract.

References:
  SecMoE, arXiv:2601.06790, Protocol 1 (Select-Then-Compute MoE).
  W. Fedus, B. Zoph, N. Shazeer, "Switch Transformers", JMLR 2022 (capacity, dispatch).
  D. Lepikhin et al., "GShard", ICLR 2021 (top-2, dispatch/combine tensors).
  D. Beaver, CRYPTO 1991 (multiplication triples; here degree-3 correlations).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from .. import comm
from ..dealer import Material, register_kind, ring_struct, share_value, weight_mask_key
from ..kernels import DEFAULT_FRAC_BITS, Ring, check_ring, ring_einsum, shl, uniform_ring
from ._arith import MaskedWeight, einsum, einsum_weight, is_party0, mul, trunc
from ._compare import _msb_flat
from ._topk import exact_gate_weights, gate_weights, router_scores, top_k_onehot

STRATEGIES = ("all", "stc", "dispatch")
MOE_STRATEGIES = STRATEGIES
FFN_KINDS = ("gelu", "geglu", "swiglu")
#: Weight names, in ``setup_moe``'s order (the layout of ``training._moe.moe_reference``).
WEIGHT_NAMES = ("router", "w_in", "b_in", "w_up", "b_up", "w_out", "b_out")
_REQUIRED = ("router", "w_in", "w_out")


# --------------------------------------------------------------------------------------------
# Configuration and weights.
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MoELayerConfig:
    """Static configuration of a secure MoE layer (hashable: a static argument)."""

    experts: int  # E, number of experts
    top_k: int = 1  # experts per token: 1 (Switch) or 2 (GShard, gates renormalised)
    capacity_factor: float | None = 1.25  # C = ceil(cf T k / E); None: no capacity (C = T)
    strategy: str = "stc"  # "all" (every expert), "stc" (Select-Then-Compute), "dispatch"
    ffn: str = "gelu"  # expert body: "gelu", "geglu" or "swiglu"
    router: str = "exact"  # gate softmax: "exact" or "2quad"
    softmax_c: float = 5.0  # the 2Quad shift c of (x + c)^2 / sum (x + c)^2
    gelu: str = "secmoe6"  # GeLU variant of protocols._gelu.gelu
    silu: str = "six"  # SiLU variant of protocols._gelu.silu (swiglu)
    act_strategy: str = "stc"  # piecewise activation strategy: "stc" or "cts"
    frac_bits: int = DEFAULT_FRAC_BITS  # fixed-point fractional bits f
    router_cmp_bits: int = 64  # comparison width of the top-k tournament
    recip_iters: int | None = None  # Goldschmidt iterations of the k = 2 renormalisation

    def __post_init__(self) -> None:
        if not isinstance(self.experts, int) or self.experts < 1:
            raise ValueError(f"MoELayerConfig.experts must be an int >= 1, got {self.experts!r}")
        if self.top_k not in (1, 2) or self.top_k > self.experts:
            raise ValueError(
                f"MoELayerConfig.top_k must be 1 or 2 and <= experts, got {self.top_k!r}"
            )
        if self.capacity_factor is not None and not self.capacity_factor > 0:
            raise ValueError(
                f"MoELayerConfig.capacity_factor must be > 0 or None, got {self.capacity_factor}"
            )
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"MoELayerConfig.strategy must be one of {STRATEGIES}, got {self.strategy!r}"
            )
        if self.ffn not in FFN_KINDS:
            raise ValueError(f"MoELayerConfig.ffn must be one of {FFN_KINDS}, got {self.ffn!r}")
        if self.router not in ("exact", "2quad"):
            raise ValueError(
                f"MoELayerConfig.router must be 'exact' or '2quad', got {self.router!r}"
            )

    def capacity(self, tokens: int) -> int:
        """Expert capacity ``C`` for ``tokens`` tokens (the reference's formula; T if None).

        ``ceil`` rounds up per expert: ``E C`` can exceed ``cf T k`` by up to ``E - 1`` slots
        (at cf = 1.25, T = 128, k = 1: 160 slots at E = 8, 256 at E = 128; see
        :func:`moe_layer` for what that does to dispatch's traffic).
        """
        if self.capacity_factor is None:
            return tokens
        return max(1, math.ceil(self.capacity_factor * tokens * self.top_k / self.experts))

    def replace(self, **changes: Any) -> MoELayerConfig:
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_encoder(cls, cfg: Any, **overrides: Any) -> MoELayerConfig:
        """The layer config of a ``training.EncoderConfig`` with ``cfg.moe`` set."""
        moe = cfg.moe
        if moe is None:
            raise ValueError("MoELayerConfig.from_encoder: cfg.moe is None (a dense config)")
        base = dict(
            experts=moe.experts,
            top_k=moe.top_k,
            capacity_factor=moe.capacity_factor,
            ffn=moe.ffn_kind,
            router=moe.router,
            softmax_c=cfg.softmax_c,
            gelu=cfg.gelu,
            silu=cfg.silu,
        )
        base.update(overrides)
        return cls(**base)


@struct.dataclass
class MoEWeights:
    """The masked weights of one MoE layer (see :func:`setup_moe`); absent entries are None."""

    router: MaskedWeight  # [D, E]
    w_in: MaskedWeight  # [E, D, F]
    w_out: MaskedWeight  # [E, F, D]
    b_in: MaskedWeight | None = None  # [E, F]
    b_out: MaskedWeight | None = None  # [E, D]
    w_up: MaskedWeight | None = None  # [E, D, F] (geglu / swiglu)
    b_up: MaskedWeight | None = None  # [E, F]


def _wshare(w: MaskedWeight) -> Ring:
    """This party's additive share of a masked weight, ``b_i + [i = 0] F`` (P0: ``W``, P1: 0)."""
    return w.b + is_party0() * w.f


def setup_moe(
    params: Mapping[str, Any], mat: Material, *, mask_ids: Mapping[str, int] | int
) -> MoEWeights:
    """Setup (once per deployment): mask every weight of the layer, in ONE round.

    Args:
      params: this party's shares (``uint64`` arrays or ``Secret``) in the layout of
        ``training._moe.moe_reference``: ``router [D, E]``, ``w_in [E, D, F]``,
        ``w_out [E, F, D]`` and optionally ``b_in [E, F]``, ``b_out [E, D]``, ``w_up [E, D, F]``,
        ``b_up [E, F]``.
      mat: dealer material (setup: keyed by the dealer's weights key).
      mask_ids: a distinct dealer mask id per weight name, or an int ``base`` giving
        ``base + i`` to the i-th name of :data:`WEIGHT_NAMES` (ids must never repeat for one
        dealer weights key).

    Returns:
      :class:`MoEWeights` of :class:`~._arith.MaskedWeight` (biases too: the Select-Then-Compute
      strategy selects them with the same correlation as the weights).

    Protocol: the dealer gives shares of each weight's mask ``B`` (derived from the weights key
    and its ``mask_id``); open all ``F = W - B`` together.

    Cost: 1 round, ``8 |W|`` bytes per party over all weights.
    """
    unknown = set(params) - set(WEIGHT_NAMES)
    if unknown:
        raise ValueError(f"setup_moe: unknown weight names {sorted(unknown)}; use {WEIGHT_NAMES}")
    missing = [n for n in _REQUIRED if n not in params]
    if missing:
        raise ValueError(f"setup_moe: missing weights {missing}")
    if ("w_up" in params) != ("b_up" in params) and "b_up" in params:
        raise ValueError("setup_moe: b_up given without w_up")
    names = [n for n in WEIGHT_NAMES if n in params]
    if isinstance(mask_ids, int):
        ids = {n: mask_ids + WEIGHT_NAMES.index(n) for n in names}
    else:
        ids = {n: int(mask_ids[n]) for n in names}
        if len(set(ids.values())) != len(ids):
            raise ValueError(f"setup_moe: mask ids must be distinct, got {ids}")
    ws = {n: getattr(params[n], "data", params[n]) for n in names}
    check_ring("setup_moe", *ws.values())
    d, e = ws["router"].shape
    f = ws["w_in"].shape[-1]
    expect = {
        "router": (d, e),
        "w_in": (e, d, f),
        "w_up": (e, d, f),
        "w_out": (e, f, d),
        "b_in": (e, f),
        "b_up": (e, f),
        "b_out": (e, d),
    }
    for n in names:
        if tuple(ws[n].shape) != expect[n]:
            raise ValueError(
                f"setup_moe: {n} has shape {tuple(ws[n].shape)}, expected {expect[n]} "
                f"(D={d}, E={e}, F={f})"
            )
    bs = {n: mat.take("weight_mask", shape=tuple(ws[n].shape), mask_id=ids[n]) for n in names}
    fs = comm.open({n: ws[n] - bs[n] for n in names}, label="moe_weight_setup")
    return MoEWeights(**{n: MaskedWeight(f=fs[n], b=bs[n], mask_id=ids[n]) for n in names})


# --------------------------------------------------------------------------------------------
# Dealer material: one mask A of an activation and everything correlated with it.
# --------------------------------------------------------------------------------------------
def _cat_masks(weights_key, banks):
    """The setup masks of ``banks = ((mask_id, shape), ...)`` concatenated on the last axis."""
    return jnp.concatenate(
        [uniform_ring(weight_mask_key(weights_key, mid), shp) for mid, shp in banks], axis=-1
    )


def _mask_shapes(x_shape, fixed, disp, sel):
    out = {"a": ring_struct(x_shape)}
    if fixed:
        out["fixed"] = tuple(
            ring_struct(_einsum_out(spec, x_shape, w_shape)) for spec, w_shape, _ in fixed
        )
    if disp:
        e, c = disp
        t, d = x_shape
        out["r"] = ring_struct((t, e, c))
        out["c_disp"] = ring_struct((e, c, d))
    if sel:
        rep, e, banks, biases = sel
        t0, kd = x_shape
        n = rep * t0
        m = sum(shp[-1] for _, shp in banks)
        out["sel_a"] = ring_struct((n, e))
        out["s"] = ring_struct((n, e, kd))
        out["g"] = ring_struct((t0, e, m))
        out["m"] = ring_struct((n, kd, m))
        out["c"] = ring_struct((n, m))
        if biases:
            out["cb"] = ring_struct((n, sum(shp[-1] for _, shp in biases)))
    return out


def _einsum_out(spec, xs, ws):
    from ._arith import einsum_shape

    return einsum_shape(spec, xs, ws)


@register_kind("moe_mask", shapes=_mask_shapes)
def _gen_mask(key, weights_key, *, x_shape, fixed, disp, sel):
    """An activation mask ``A`` and its correlations (see :func:`_mask_shapes` for the items).

    Weight masks ``B`` are held by P0 (:class:`~._arith.MaskedWeight`), so every correlation
    with a weight mask is taken against P1's shares only (subscript 1):

    * ``fixed``: ``((spec, w_shape, mask_id), ...)`` -> ``einsum(spec, A_1, B_w)`` (as
      ``fixed_einsum``, all sharing ``A``).
    * ``disp``: ``(E, C)`` -> a mask ``R [T, E, C]`` of the dispatch tensor and ``R^T A``.
    * ``sel``: ``(rep, E, banks, biases)`` -> the degree-3 Select-Then-Compute correlation for
      ``rep * T`` virtual tokens (token ``v`` uses ``A[v mod T]``): a selector mask
      ``a [N, E]``, ``S = a (x) A [N, E, K]``, ``G = A_1 B_e [T, E, M]``,
      ``M = sum_e a_1 B_e [N, K, M]``, ``c = sum_e S_1 B_e [N, M]`` (banks concatenated on M)
      and ``cb = a_1 B_b [N, M_b]`` for the biases.
    """
    keys = iter(jax.random.split(key, 16))
    a = uniform_ring(next(keys), x_shape)
    a_sh = share_value(next(keys), a)
    out = {"a": a_sh}
    if fixed:
        vals = []
        for spec, w_shape, mid in fixed:
            b = uniform_ring(weight_mask_key(weights_key, mid), w_shape)
            c = _ring_product(spec, a_sh[1], b)
            vals.append(share_value(next(keys), c))
        out["fixed"] = tuple(vals)
    if disp:
        e, c = disp
        r = uniform_ring(next(keys), (x_shape[0], e, c))
        out["r"] = share_value(next(keys), r)
        out["c_disp"] = share_value(next(keys), ring_einsum("tec,td->ecd", r, a))
    if sel:
        rep, e, banks, biases = sel
        t0, kd = x_shape
        n = rep * t0
        sa = share_value(next(keys), uniform_ring(next(keys), (n, e)))
        a_v = jnp.tile(a, (rep, 1))
        s_sh = share_value(next(keys), (sa[0] + sa[1])[:, :, None] * a_v[:, None, :])
        bcat = _cat_masks(weights_key, banks)  # [E, K, M]
        out["sel_a"] = sa
        out["s"] = s_sh
        out["g"] = share_value(next(keys), ring_einsum("tk,ekm->tem", a_sh[1], bcat))
        out["m"] = share_value(next(keys), ring_einsum("ne,ekm->nkm", sa[1], bcat))
        out["c"] = share_value(next(keys), ring_einsum("nek,ekm->nm", s_sh[1], bcat))
        if biases:
            bb = _cat_masks(weights_key, biases)
            out["cb"] = share_value(next(keys), ring_einsum("ne,em->nm", sa[1], bb))
    return out


def _take_mask(mat, x_shape, *, fixed=(), disp=(), sel=()):
    return mat.take("moe_mask", x_shape=tuple(x_shape), fixed=fixed, disp=disp, sel=sel)


def _fixed_req(spec: str, x_shape, w: MaskedWeight):
    return (spec, tuple(w.f.shape), w.mask_id)


#: Weight products ``[E, C, K] x [E, K, M]`` whose activation has at most this many rows C per
#: expert (the dispatch body: ``E C ~ cf k T`` slots) run as C batched matrix-vector products
#: on XLA's native uint64 dot: memory-bound, one pass over the weights per row, whereas the
#: exact limb kernels re-split the whole weight into float64 digits at every product.
#: Measured on the 2-core CPU (seconds per product, limbs vs per-row): E = 128, C = 1,
#: K = 256, M = 1024: 0.72 vs 0.02; E = 32, C = 4: 0.23 vs 0.02; E = 8, C = 16: 0.05 vs 0.01;
#: K = 768, M = 3072: E = 8, C = 16: 0.36 vs 0.22; E = 4, C = 32: 0.24 vs 0.19; E = 2,
#: C = 64: 0.17 vs 0.21 (limbs win).
_MATVEC_MAX_ROWS = 32


def _row_label(spec: str, x_shape, w_shape) -> str | None:
    """The activation's one row label (free in ``x``, absent from ``w``) if the product is a
    BATCHED (per-expert) product of at most :data:`_MATVEC_MAX_ROWS` matrix-vector products
    each, else None (e.g. ``"ecd,edf->ecf"`` with C <= 32 -> ``"c"``; ``"td,edf->tef"`` ->
    None: without a batch label a row would see the whole weight bank transposed)."""
    ins, out = spec.split("->")
    xl, wl = ins.split(",")
    free = [lab for lab in xl if lab not in wl]
    batch = [lab for lab in xl if lab in wl and lab in out]
    if len(free) != 1 or free[0] not in out or not batch:
        return None
    if x_shape[xl.index(free[0])] > _MATVEC_MAX_ROWS or len(w_shape) != len(wl):
        return None
    return free[0]


def _ring_product(spec: str, x: Ring, w: Ring) -> Ring:
    """``ring_einsum(spec, x, w)``, as per-row native matrix-vector products when the
    activation has few rows (:data:`_MATVEC_MAX_ROWS`); exact either way (mod 2^64)."""
    row = _row_label(spec, x.shape, w.shape)
    if row is None:
        return ring_einsum(spec, x, w)
    ins, out = spec.split("->")
    xl, wl = ins.split(",")
    sub = f"{xl.replace(row, '')},{wl}->{out.replace(row, '')}"
    ax = xl.index(row)
    ys = [
        ring_einsum(sub, jnp.take(x, r, axis=ax), w, backend="native") for r in range(x.shape[ax])
    ]
    return jnp.stack(ys, axis=out.index(row))


def _fixed_product(spec: str, e_x: Ring, a_sh: Ring, w: MaskedWeight, c: Ring) -> Ring:
    """``einsum(spec, x, W)`` at ``2f`` bits from ``Ê = x - A`` and ``c = einsum(A_1, B)``:
    ONE local product per party, ``([i = 0] Ê + A_i) (F + b_i)`` (P0 ``W``, P1 ``F``)."""
    return _ring_product(spec, is_party0() * e_x + a_sh, w.f + w.b) + c


def _weight_product(spec: str, x: Ring, w: MaskedWeight, mat: Material, label: str) -> Ring:
    """``einsum(spec, x, W)`` at ``2f`` bits for a secret ``x`` (as ``_arith.einsum_weight``
    with ``trunc="none"``: 1 round, ``8 |x|`` bytes; products by :func:`_ring_product`)."""
    item = _take_mask(mat, x.shape, fixed=(_fixed_req(spec, x.shape, w),))
    e_x = comm.open(x - item["a"], label=label)
    return _fixed_product(spec, e_x, item["a"], w, item["fixed"][0])


# --------------------------------------------------------------------------------------------
# Select-Then-Compute: the degree-3 selected product.
# --------------------------------------------------------------------------------------------
def _own(public: Ring) -> Ring:
    """A public value (an opening) as this party's own array, for a product with big
    per-party material. Under simulate mode's ``vmap`` an opening is the same on both parties
    (unbatched); XLA's CPU dot of an unbatched ``[N, K]`` with the batched ``[2, N, K, M]``
    moves the party axis among the free dimensions and runs ~9x slower (0.76 vs 0.08 s at
    N = 64, K = 768, M = 3072) than the party-batched dot. Free on two devices."""
    return public + 0 * is_party0()


def _selected_product(
    sel_hat: Ring, e_tok: Ring, item: dict, banks: list[MaskedWeight], biases: list
) -> tuple[Ring, Ring | None]:
    """``h[v] = sum_e s[v, e] (x[t(v)] @ W_e)`` for all banks (concatenated), locally.

    ``s = ŝ + a`` (``ŝ`` opened), ``x = Ê + A`` (``Ê`` opened), ``W = F + B`` (``F`` public,
    ``B`` held by P0, so P0's operand ``F + b`` is ``W`` and P1's is ``F``). Party i computes
    ONE contraction over (expert, K)::

        L_i[v, e] = ŝ[v, e] ([i = 0] Ê + A_i) + a_i[v, e] Ê + S_i[v, e]      (S = a (x) A)
        h_i = sum_e L_i[v, e] @ (F_e + b_i,e) + ŝ . G + Ê . M + c

    The sum over the parties is ``(ŝ + a)(Ê + A) W`` once the dealer's shares of what P1's
    terms miss, ``(ŝ A_1 + a_1 Ê + S_1) B``, are added: ``G = A_1 B_e``, ``M = sum_e a_1 B_e``
    and ``c = sum_e S_1 B_e`` (:func:`_gen_mask`). The contraction runs per expert as a ring
    matmul ``[N, K] @ [K, M]`` inside a ``lax.scan`` over the experts (traced once: tracing
    stays fast at E = 128): ``N E K M`` multiply-adds per party, half of what a generic
    two-term (``Ê``-side and ``A``-side) evaluation costs. The corrections are per-token
    matrix-vector products, ``N K M + N E M``.

    Returns:
      ``(h [N, M], bias [N, M_b] or None)``: scale of ``s`` + ``2f`` (weights) and ``s`` + f
      (biases).
    """
    n, e = sel_hat.shape
    t0, kd = e_tok.shape
    rep = n // t0
    p0 = is_party0()
    e_v = jnp.tile(e_tok, (rep, 1))
    x_v = jnp.tile(p0 * e_tok + item["a"], (rep, 1))  # [i = 0] Ê + A_i
    sa = item["sel_a"]
    w_op = jnp.concatenate([w.f + w.b for w in banks], axis=-1)  # [E, K, M]: W on P0, F on P1

    def expert(acc, xs):  # one expert's terms: one ring matmul [N, K] @ [K, M]
        s_e, sa_e, ss_e, w_e = xs
        lhs = s_e[:, None] * x_v + sa_e[:, None] * e_v + ss_e
        return acc + ring_einsum("nk,km->nm", lhs, w_e), None

    xs = (sel_hat.T, sa.T, jnp.swapaxes(item["s"], 0, 1), w_op)
    h, _ = jax.lax.scan(expert, jnp.zeros((n, w_op.shape[-1]), jnp.uint64), xs)
    # per-token (batched) matrix-vector contractions: XLA's native uint64 dot (wrapping), one
    # memory-bound pass over the dealer's M [N, K, M]; cheaper than the limb GEMMs here, and
    # ~10x faster on CPU than a broadcast multiply-and-sum (0.12 vs 1.3 s at N = 128,
    # K = 768, M = 3072). The opened operands enter as this party's own arrays (_own).
    sel = _own(sel_hat).reshape(rep, t0, e)
    g = ring_einsum("rte,tem->rtm", sel, item["g"], backend="native")
    em = ring_einsum("nk,nkm->nm", _own(e_v), item["m"], backend="native")
    h = h + g.reshape(n, -1) + em + item["c"]
    bias = None
    if biases:
        b_op = jnp.concatenate([b.f + b.b for b in biases], axis=-1)
        bias = ring_einsum("ne,em->nm", p0 * sel_hat + sa, b_op) + item["cb"]
    return h, bias


def _sel_req(rep: int, e: int, banks: list[MaskedWeight], biases: list) -> tuple:
    return (
        rep,
        e,
        tuple((w.mask_id, tuple(w.f.shape)) for w in banks),
        tuple((b.mask_id, tuple(b.f.shape)) for b in biases),
    )


# --------------------------------------------------------------------------------------------
# Routing.
# --------------------------------------------------------------------------------------------
def _positions(oh: Ring) -> Ring:
    """``pos[j, t, e]`` = running count of choice-j tokens of expert e before t, after all
    first choices for j = 2 (local; integer shares, -1 where the count is still 0)."""
    p0 = is_party0()
    counts = jnp.cumsum(oh, axis=1, dtype=jnp.uint64) - p0
    if oh.shape[0] == 1:
        return counts
    offset = jnp.sum(oh[0], axis=0, dtype=jnp.uint64)  # first choices per expert
    return jnp.stack([counts[0], counts[1] + offset[None, :]])


def _pos_bits(tokens: int, top_k: int, capacity: int) -> int:
    """Comparison width for ``pos - c``: ``|pos - c| <= k T + C + 1`` < ``2^(bits-1)``."""
    return max(6, (top_k * tokens + capacity + 1).bit_length() + 1)


def _fused_less(pos: Ring, thresholds: list[int], factors: Ring, mat: Material, bits: int):
    """``[pos < c] * factor`` for every threshold and factor, ONE comparison batch.

    Args:
      pos: ``[...]`` integer shares; thresholds: public ints; factors: ``[F, ...]``.

    Returns:
      ``[len(thresholds), F, ...]`` shares (exact: the comparison bit is an integer).
    """
    th = jnp.asarray(thresholds, jnp.uint64).reshape((-1,) + (1,) * pos.ndim)
    d = (pos[None] - is_party0() * th).reshape(-1)
    nf = factors.shape[0]
    ext = jnp.broadcast_to(
        jnp.moveaxis(factors, 0, -1)[None], (len(thresholds), *pos.shape, nf)
    ).reshape(-1, nf)
    _, _, tv = _msb_flat(d, mat, bits=bits, extras=ext)
    tv = tv.reshape(len(thresholds), *pos.shape, nf)
    return jnp.moveaxis(tv, -1, 1)


def route(
    logits_2f: Ring, mat: Material, *, cfg: MoELayerConfig, mask: Any = None
) -> tuple[Ring, Ring]:
    """Secret routing from ``2f``-bit router logits: one-hots and gate-weighted one-hots.

    Args:
      logits_2f: ``uint64[T, E]`` shares of ``x W_g`` at ``2 frac_bits`` bits.
      cfg: the layer config (top_k, router variant, ...).
      mask: optional PUBLIC ``[T]`` 0/1 (1 = real token); padded tokens choose no expert.

    Returns:
      ``(onehot [k, T, E], weighted [k, T, E])``: integer 0/1 one-hots and
      ``onehot * gate`` at ``frac_bits`` (before capacity drops).

    Protocol: scores (:func:`~._topk.router_scores`); top-k with the chosen scores
    (:func:`~._topk.top_k_onehot`); gates: "exact" from the chosen logits without a softmax
    pass (:func:`~._topk.exact_gate_weights`: the maximum is known, k = 2 needs nothing over
    E); "2quad": truncate the logits, ``p = softmax(logits)`` (``protocols._softmax``) and
    :func:`~._topk.gate_weights`.
    """
    f = cfg.frac_bits
    scores = router_scores(logits_2f, mat, variant=cfg.router, c=cfg.softmax_c, frac_bits=f)
    oh, top = top_k_onehot(scores, mat, k=cfg.top_k, bits=cfg.router_cmp_bits, return_values=True)
    if mask is not None:
        m = jnp.asarray(mask).astype(jnp.uint64).reshape(1, -1, 1)
        oh = oh * m
    if cfg.router == "exact":
        weighted = exact_gate_weights(
            logits_2f, top, oh, mat, frac_bits=f, recip_iters=cfg.recip_iters
        )
    else:
        from ._softmax import softmax

        probs = _softmax_call(softmax, trunc(logits_2f, mat, bits=f), mat, cfg)
        weighted = gate_weights(oh, probs, mat, frac_bits=f, recip_iters=cfg.recip_iters)
    return oh, weighted


def _softmax_call(softmax, logits, mat, cfg):
    import inspect

    kw: dict[str, Any] = {"variant": cfg.router}
    params = inspect.signature(softmax).parameters
    if "frac_bits" in params:
        kw["frac_bits"] = cfg.frac_bits
    if cfg.router == "2quad" and "c" in params:
        kw["c"] = cfg.softmax_c
    return softmax(logits, mat, **kw)


# --------------------------------------------------------------------------------------------
# Expert bodies.
# --------------------------------------------------------------------------------------------
def _activation(h: Ring, u: Ring | None, mat: Material, cfg: MoELayerConfig) -> Ring:
    from ._gelu import gelu, silu

    f = cfg.frac_bits
    if cfg.ffn == "swiglu":
        a = silu(h, mat, variant=cfg.silu, strategy=cfg.act_strategy, frac_bits=f)
    else:
        a = gelu(h, mat, variant=cfg.gelu, strategy=cfg.act_strategy, frac_bits=f)
    if cfg.ffn == "gelu":
        return a
    return mul(a, u, mat, frac_bits=f)


def _banks(w: MoEWeights, cfg: MoELayerConfig) -> tuple[list, list]:
    banks = [w.w_in] + ([w.w_up] if cfg.ffn != "gelu" else [])
    biases = [b for b in ([w.b_in] + ([w.b_up] if cfg.ffn != "gelu" else [])) if b is not None]
    if cfg.ffn != "gelu" and w.w_up is None:
        raise ValueError(f"moe_layer: ffn={cfg.ffn!r} needs w_up")
    if biases and len(biases) != len(banks):
        raise ValueError("moe_layer: give all input-side biases (b_in and b_up) or none")
    return banks, biases


def _split(h: Ring, cfg: MoELayerConfig) -> tuple[Ring, Ring | None]:
    if cfg.ffn == "gelu":
        return h, None
    half = h.shape[-1] // 2
    return h[..., :half], h[..., half:]


def _kept(oh, wt, mat, cfg, tokens):
    """(all/stc) Zero the dropped choices of ``oh`` and ``wt`` (one fused comparison batch)."""
    cap = cfg.capacity(tokens)
    if cap >= tokens:  # no choice can reach position T: nothing is ever dropped
        return oh, wt
    bits = _pos_bits(tokens, cfg.top_k, cap)
    out = _fused_less(_positions(oh), [cap], jnp.stack([oh, wt]), mat, bits)
    return out[0, 0], out[0, 1]


def _body_all(x, e_x, item, w, oh, wt, mat, cfg):
    f = cfg.frac_bits
    oh, wt = _kept(oh, wt, mat, cfg, x.shape[0])
    banks, biases = _banks(w, cfg)
    hs = [
        _fixed_product("td,edf->tef", e_x, item["a"], b, c)
        for b, c in zip(banks, item["fixed"][-len(banks) :], strict=True)
    ]
    h = jnp.concatenate(hs, axis=-1)
    if biases:
        h = h + shl(jnp.concatenate([_wshare(b) for b in biases], axis=-1), f)[None]
    h, u = _split(trunc(h, mat, bits=f), cfg)
    act = _activation(h, u, mat, cfg)
    y = einsum_weight("tef,efd->ted", act, w.w_out, mat, frac_bits=f, trunc="none")
    if w.b_out is not None:
        y = y + shl(_wshare(w.b_out), f)[None]
    comb = jnp.sum(wt, axis=0, dtype=jnp.uint64)  # [T, E] at f bits
    out = einsum("te,ted->td", comb, y, mat, frac_bits=f, trunc="none")  # 3f bits
    return trunc(out, mat, bits=2 * f)


def _body_stc(x, e_x, item, w, oh, wt, mat, cfg):
    f = cfg.frac_bits
    k, t, e = oh.shape
    n = k * t
    oh, wt = _kept(oh, wt, mat, cfg, t)
    banks, biases = _banks(w, cfg)
    # product 1: h[v] = sum_e oh[v, e] (x[t] W_in_e + b_in_e), selector integer -> 2f bits
    sel_hat = comm.open(oh.reshape(n, e) - item["sel_a"], label="moe_select")
    h, bias = _selected_product(sel_hat, e_x, item, banks, biases)
    if bias is not None:
        h = h + shl(bias, f)
    h, u = _split(trunc(h, mat, bits=f), cfg)
    act = _activation(h, u, mat, cfg)  # [k T, F]: once per token and choice
    # product 2: y[v] = sum_e wt[v, e] (act[v] W_out_e + b_out_e), selector f bits -> 3f bits
    out_biases = [w.b_out] if w.b_out is not None else []
    item2 = _take_mask(mat, act.shape, sel=_sel_req(1, e, [w.w_out], out_biases))
    o = comm.open(
        {"g": act - item2["a"], "s": wt.reshape(n, e) - item2["sel_a"]}, label="moe_select_out"
    )
    y, bias = _selected_product(o["s"], o["g"], item2, [w.w_out], out_biases)
    if bias is not None:
        y = y + shl(bias, f)
    y = jnp.sum(y.reshape(k, t, -1), axis=0, dtype=jnp.uint64)
    return trunc(y, mat, bits=2 * f)


def _body_dispatch(x, e_x, item, w, oh, wt, mat, cfg):
    f = cfg.frac_bits
    k, t, e = oh.shape
    cap = cfg.capacity(t)
    bits = _pos_bits(t, k, cap)
    # lt[c, {oh, wt}, j, t, e] = [pos <= c] * factor; slot c = lt[c] - lt[c - 1]
    lt = _fused_less(_positions(oh), list(range(1, cap + 1)), jnp.stack([oh, wt]), mat, bits)
    slot = lt - jnp.concatenate([jnp.zeros_like(lt[:1]), lt[:-1]])
    slot = jnp.sum(slot, axis=2, dtype=jnp.uint64)  # [C, 2, T, E]: first + second choices
    disp = jnp.moveaxis(slot[:, 0], 0, -1)  # [T, E, C] integer 0/1
    comb = jnp.moveaxis(slot[:, 1], 0, -1)  # [T, E, C] gates at f bits
    # gather: X[e, c] = sum_t disp[t, e, c] x[t], with x = Ê + A (Ê public, A reused)
    d_hat = comm.open(disp - item["r"], label="moe_dispatch")
    xe = ring_einsum("tec,td->ecd", disp, e_x) + ring_einsum("tec,td->ecd", d_hat, item["a"])
    xe = xe + item["c_disp"]  # [E, C, D] at f bits
    banks, biases = _banks(w, cfg)
    spec = "ecd,edf->ecf"
    item_h = _take_mask(mat, xe.shape, fixed=tuple(_fixed_req(spec, xe.shape, b) for b in banks))
    ex = comm.open(xe - item_h["a"], label="moe_expert_in")
    h = jnp.concatenate(
        [
            _fixed_product(spec, ex, item_h["a"], b, c)
            for b, c in zip(banks, item_h["fixed"], strict=True)
        ],
        axis=-1,
    )
    if biases:
        h = h + shl(jnp.concatenate([_wshare(b) for b in biases], axis=-1), f)[:, None]
    h, u = _split(trunc(h, mat, bits=f), cfg)
    act = _activation(h, u, mat, cfg)  # [E, C, F]
    y = _weight_product("ecf,efd->ecd", act, w.w_out, mat, label="moe_expert_out")
    if w.b_out is not None:
        y = y + shl(_wshare(w.b_out), f)[:, None]
    out = einsum("tec,ecd->td", comb, y, mat, frac_bits=f, trunc="none")  # 3f bits
    return trunc(out, mat, bits=2 * f)


_BODIES = {"all": _body_all, "stc": _body_stc, "dispatch": _body_dispatch}


def _x_item(mat, x, w, cfg, *, router: bool):
    """The layer's ONE mask of ``x`` with every correlation the strategy needs."""
    t, d = x.shape
    fixed = [_fixed_req("td,de->te", x.shape, w.router)] if router else []
    disp: tuple = ()
    sel: tuple = ()
    banks, biases = _banks(w, cfg)
    if cfg.strategy == "all":
        fixed += [_fixed_req("td,edf->tef", x.shape, b) for b in banks]
    elif cfg.strategy == "dispatch":
        disp = (cfg.experts, cfg.capacity(t))
    else:
        sel = _sel_req(cfg.top_k, cfg.experts, banks, biases)
    return _take_mask(mat, x.shape, fixed=tuple(fixed), disp=disp, sel=sel)


def _check(where: str, x: Ring, w: MoEWeights, cfg: MoELayerConfig) -> None:
    if not isinstance(cfg, MoELayerConfig):
        raise TypeError(f"{where}: cfg must be a MoELayerConfig, got {type(cfg).__name__}")
    check_ring(where, x)
    if x.ndim != 2:
        raise ValueError(f"{where}: x must be [T, D], got shape {x.shape}")
    d, e = w.router.f.shape
    if x.shape[1] != d:
        raise ValueError(f"{where}: x has D={x.shape[1]}, the router expects D={d}")
    if e != cfg.experts:
        raise ValueError(f"{where}: the weights have E={e} experts, cfg.experts={cfg.experts}")


def moe_layer(
    x: Ring, weights: MoEWeights, mat: Material, *, cfg: MoELayerConfig, mask: Any = None
) -> Ring:
    """Shares of the MoE FFN output ``y [T, D]`` (routing, gates, capacity all secret).

    Args:
      x: ``uint64[T, D]`` shares of the tokens at ``cfg.frac_bits``.
      weights: :class:`MoEWeights` from :func:`setup_moe` (same dealer weights key).
      mat: dealer material.
      cfg: :class:`MoELayerConfig` (static; ``cfg.strategy`` picks the strategy).
      mask: optional PUBLIC ``[T]`` 0/1 (1 = real token; padded tokens get 0 and take no
        capacity).

    Returns:
      ``uint64[T, D]`` shares at ``cfg.frac_bits``: ``sum over kept choices gate * FFN_e(x_t)``
      (0 for tokens whose choices were all dropped: the residual carries them).

    Protocol:
      1. Open ``Ê = x - A`` (the layer's only opening of ``x``); ``logits = Ê W_g + A F_g + c``
         at ``2f`` bits (``"all"``: the up-projections ``x W_in_e`` of every expert come from the
         same opening).
      2. :func:`route`: one-hots ``[k, T, E]`` and gate-weighted one-hots.
      3. The strategy body (:func:`moe_experts`, see there for steps and costs).

    Cost: the opening of ``x`` (``8 T D`` bytes, 1 round; shared with the body), the scores
    (2quad: one comparison batch), ``k`` tournaments (:func:`~._topk.top_k_onehot`), the
    gates (exact: :func:`~._topk.exact_gate_weights`; 2quad: a logit truncation, the softmax
    on ``[T, E]`` and :func:`~._topk.gate_weights`), then the body (:func:`moe_experts`)
    without its opening of ``x``. Pinned by ``tests/test_moe.py``. At T = 128, d = 256,
    f = 1024, k = 1, cf = 1, exact router, secmoe6 GeLU (both parties): stc 33.5 MB at E = 8,
    39.6 MB at E = 128; dispatch 35.7 / 40.7 MB; all-experts 262 MB / 4.18 GB.

    Capacity rounding: ``C = ceil(cf T k / E)`` rounds up PER EXPERT, so the slot count
    ``E C`` exceeds ``cf T k`` when C is small. At cf = 1.25 (same shapes): ``E C`` = 160 at
    E = 8 (C = 20) but 256 at E = 128 (C = 2, where cf T k / E = 1.25), and dispatch, whose
    traffic is linear in ``E C``, sends 44.3 MB at E = 8 and 75.1 MB at E = 128 (x1.69,
    against x1.14 at cf = 1 where ``E C = T`` for every power-of-two E <= T). stc and
    all-experts do not depend on C (the capacity is one comparison batch on ``k T E``
    elements whatever C): 33.5 / 39.6 MB and 262 MB / 4.18 GB as at cf = 1. The semantics
    are the reference's (``training._moe.capacity``); pick cf with ``cf T k / E`` an integer
    (or cf = 1) to keep dispatch flat in E.
    """
    _check("moe_layer", x, weights, cfg)
    item = _x_item(mat, x, weights, cfg, router=True)
    e_x = comm.open(x - item["a"], label="moe_x")
    logits = _fixed_product("td,de->te", e_x, item["a"], weights.router, item["fixed"][0])
    oh, wt = route(logits, mat, cfg=cfg, mask=mask)
    return _BODIES[cfg.strategy](x, e_x, item, weights, oh, wt, mat, cfg)


def moe_route(
    x: Ring, weights: MoEWeights, mat: Material, *, cfg: MoELayerConfig, mask: Any = None
) -> tuple[Ring, Ring]:
    """The router alone: ``(onehot [k, T, E], weighted [k, T, E])`` shares (see :func:`route`).

    Opens ``x - A`` (1 round, ``8 T D`` bytes per party) for ``x W_g``, then :func:`route`.
    With :func:`moe_experts` this evaluates several strategies on ONE routing (tests, benchmarks);
    :func:`moe_layer` fuses the two and opens ``x`` only once.
    """
    _check("moe_route", x, weights, cfg)
    item = _take_mask(mat, x.shape, fixed=(_fixed_req("td,de->te", x.shape, weights.router),))
    e_x = comm.open(x - item["a"], label="moe_x")
    logits = _fixed_product("td,de->te", e_x, item["a"], weights.router, item["fixed"][0])
    return route(logits, mat, cfg=cfg, mask=mask)


def moe_experts(
    x: Ring,
    weights: MoEWeights,
    onehot: Ring,
    weighted: Ring,
    mat: Material,
    *,
    cfg: MoELayerConfig,
    kept: bool = False,
) -> Ring:
    """The strategy body alone, for a given secret routing (the router is not evaluated).

    Args:
      x: ``uint64[T, D]`` token shares (``f`` bits).
      weights: :class:`MoEWeights` (the router entry is only used for shape checks).
      onehot: ``uint64[k, T, E]`` integer 0/1 one-hots (first choice first).
      weighted: ``uint64[k, T, E]`` ``onehot * gate`` at ``f`` bits.
      cfg: the layer config; ``cfg.strategy`` picks the body.
      kept: ``True`` when ``onehot`` and ``weighted`` already had the capacity applied
        (:func:`moe_capacity` over the WHOLE group): the body then applies none. This is
        what token-chunked execution uses ("all" and "stc" only): the capacity needs the
        running count over all T tokens of the group, so a chunk of tokens must not recount
        it; the bodies are otherwise per token, so the outputs of the chunks, concatenated,
        are the layer's output. "dispatch" cannot be chunked this way (its slots are the
        group's positions) and raises ``ValueError``.

    Returns:
      ``uint64[T, D]`` shares at ``f`` bits.

    Strategies (``N = k T`` virtual tokens, ``n_act(m)`` = the activation's cost on ``m``
    elements, ``[g]`` = 1 for gated FFNs, ``P`` = 1 + [g] banks of width F; bytes per party):

    * ``"all"``: open ``x - A`` (``8 T D``); ``H = x W_in`` for all experts, truncated
      (``8 T E F P``); activation on ``[T, E, F]`` (+ the gating product, ``24 T E F [g]``);
      ``Y = act W_out`` (``8 T E F``, kept at ``2f`` bits); combine
      ``y = sum_e G[t, e] Y[t, e]`` by one Beaver einsum (``8 T E (1 + D)``) and a ``2f``-bit
      truncation (``8 T D``). Rounds: ``5 + act [+ 2 g]``.
    * ``"stc"`` (Select-Then-Compute): open ``x - A`` (``8 T D``) and the one-hot's mask
      ``ô = onehot - a`` (``8 N E``): the degree-3 correlation gives
      ``h[v] = sum_e onehot[v, e] x[t] W_in_e`` locally (see :func:`_selected_product`);
      truncate (``8 N F P``); activation on ``[N, F]`` ONCE per token and choice; open
      ``act - A2`` and the gate-weighted one-hot's mask in ONE round (``8 N (F + E)``):
      ``y[v] = sum_e G[v, e] act[v] W_out_e`` at ``3f`` bits; sum the k choices; truncate by
      ``2f`` (``8 T D``). Rounds: ``5 + act [+ 2 g]``. Online bytes
      ``8 (T D + 2 N E + N F P + N F + T D) + n_act(N F)``: independent of E but for the
      ``16 N E`` one-hot words. Local work ``O(N E D F)`` (the selection; as in SecMoE, whose
      server computation also grows with E), offline ``O(N (D F + E (D + F)) + T E F)``.
    * ``"dispatch"``: positions (local cumsum); ONE comparison batch ``[pos <= c]``,
      ``c < C``, on ``k T E C`` small integers with the products by the one-hot and the gated
      one-hot fused (2-3 rounds); ``disp [T, E, C]`` and ``comb [T, E, C]`` by differences;
      open ``disp - R`` (``8 T E C``): ``X = disp^T x`` [E, C, D] (the mask of ``x`` is
      reused); open ``X - A'`` (``8 E C D``); ``H`` (truncated, ``8 E C F P``); activation on
      ``[E, C, F]``; ``Y`` (``8 E C F``); combine by one Beaver einsum
      (``8 (T E C + E C D)``); truncate (``8 T D``). Rounds ``7 + cmp + act [+ 2 g]``.
      ``E C ~ cf k T``: traffic and local work grow with ``T k cf``, not with E.

    With a capacity below T, "all" and "stc" first zero the dropped choices: one comparison
    batch ``[pos < C]`` on ``k T E`` elements, fused with both products (2-3 rounds; this is
    :func:`moe_capacity`, skipped with ``kept=True``).

    Chunked execution (``secmoe_jax.bench._moe_bench.ChunkedLayer``): the material of
    "stc" is ``O(N D F)`` words (the selection correlation ``M``, one ``[D, F]`` matrix per
    virtual token: inherent to selecting weights per token) and that of "all" ``O(T E F)``;
    both are linear in T, so a group too large for memory runs as :func:`moe_route` +
    :func:`moe_capacity` on all T tokens, then this body with ``kept=True`` on token
    chunks, each with its own fresh material. The chunks' bytes add up to the body's (every
    term above is linear in T); the rounds are the body's per chunk (chunks are independent
    and could run concurrently).
    """
    _check("moe_experts", x, weights, cfg)
    if kept:
        if cfg.strategy == "dispatch":
            raise ValueError(
                "moe_experts: kept=True is for the 'all' and 'stc' bodies; 'dispatch' builds "
                "its slots from the group's positions and applies the capacity itself"
            )
        cfg = cfg.replace(capacity_factor=None)  # C = T: the body drops nothing
    k, t, e = cfg.top_k, x.shape[0], cfg.experts
    for name, v in (("onehot", onehot), ("weighted", weighted)):
        check_ring("moe_experts", v)
        if tuple(v.shape) != (k, t, e):
            raise ValueError(f"moe_experts: {name} must be [k, T, E] = {(k, t, e)}, got {v.shape}")
    item = _x_item(mat, x, weights, cfg, router=False)
    e_x = comm.open(x - item["a"], label="moe_x")
    return _BODIES[cfg.strategy](x, e_x, item, weights, onehot, weighted, mat, cfg)


def moe_capacity(
    onehot: Ring, weighted: Ring, mat: Material, *, cfg: MoELayerConfig
) -> tuple[Ring, Ring]:
    """Apply the expert capacity to a group's routing: the kept one-hots and gated one-hots.

    Args:
      onehot: ``uint64[k, T, E]`` integer 0/1 one-hots of ONE group of T tokens (first choice
        first; from :func:`moe_route`).
      weighted: ``uint64[k, T, E]`` ``onehot * gate`` at ``cfg.frac_bits``.
      cfg: the layer config (``top_k``, ``capacity_factor``).

    Returns:
      ``(kept_onehot, kept_weighted)``, both ``uint64[k, T, E]``: a choice whose position in
      its expert (running count in token order, all first choices before all second ones) is
      ``>= C = cfg.capacity(T)`` is zeroed, as in ``training._moe.moe_reference``. Feed them
      to :func:`moe_experts` with ``kept=True`` (any split of the tokens into chunks).

    Protocol:
      1. ``pos = cumsum_t(onehot) - 1`` (+ the first choices' counts for the second choice;
         local).
      2. ONE comparison batch ``[pos < C]`` on ``ceil(log2(2 k T))``-bit values with the
         products by ``onehot`` and ``weighted`` fused into it (exact: the bit is an integer).

    Cost: nothing when ``C >= T`` (no choice can reach position T); else the comparison batch
    on ``k T E`` elements with two fused factors (2-3 rounds; ``msb_cost(k T E, extras=2)``).
    """
    k, t, e = cfg.top_k, onehot.shape[1] if onehot.ndim == 3 else -1, cfg.experts
    for name, v in (("onehot", onehot), ("weighted", weighted)):
        check_ring("moe_capacity", v)
        if v.ndim != 3 or tuple(v.shape) != (k, t, e):
            raise ValueError(
                f"moe_capacity: {name} must be [k, T, E] with k={k}, E={e}, got {v.shape}"
            )
    return _kept(onehot, weighted, mat, cfg, t)


__all__ = [
    "FFN_KINDS",
    "STRATEGIES",
    "WEIGHT_NAMES",
    "MoELayerConfig",
    "MoEWeights",
    "moe_capacity",
    "moe_experts",
    "moe_layer",
    "moe_route",
    "route",
    "setup_moe",
]
