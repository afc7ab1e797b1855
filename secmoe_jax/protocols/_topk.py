"""Secure top-k routing (k = 1, 2): secret one-hots by a comparison tournament, and gate weights.

The router of a Switch/GShard mixture of experts picks, per token, the expert(s) with the
largest gate probability. Here the choice stays secret: the output is an arithmetic 0/1 one-hot
``[k, T, E]`` (no index is ever opened), and the gates are secret fixed-point values.

* :func:`top_k_onehot`: argmax over the experts by :func:`~._compare.max_along` (a tournament of
  ``ceil(log2 E)`` comparison levels whose one-hot products are fused into the comparisons);
  the second choice is the argmax of ``s - BIG * onehot_1`` (the first choice pushed below
  every other score). Ties go to the LOWEST index at every level, like ``numpy.argmax``.
* :func:`router_scores`: the score that decides the choice, monotone in the gate probability
  and computed without truncation so that exactly tied logits stay exactly tied: the ``2f``-bit
  logits for the exact softmax, and ``|logit + c|`` (at ``2f`` bits) for 2Quad, whose
  probability ``(logit + c)^2 / sum (.)^2`` is monotone in ``|logit + c|``.
* :func:`gate_weights`: ``onehot_j * p`` (k = 1, Switch: not renormalised), or
  ``onehot_j * p / (p_first + p_second)`` (k = 2) with a Goldschmidt reciprocal.

References:
  W. Fedus, B. Zoph, N. Shazeer, "Switch Transformers", JMLR 2022 (top-1 routing, gates).
  D. Lepikhin et al., "GShard", ICLR 2021 (top-2, renormalised gates).
  SecMoE, arXiv:2601.06790 (secret one-hot selector, Protocol 1 steps 2-4).
"""

from __future__ import annotations

import jax.numpy as jnp

from ..approx._iterative import goldschmidt_iters
from ..dealer import Material
from ..kernels import DEFAULT_FRAC_BITS, Ring, check_ring, ring_const
from ._arith import einsum, is_party0, trunc
from ._compare import max_along, relu

#: Scores must satisfy ``|s| < 2^59`` (signed ring value); the first choice is lowered by this.
TOPK_BIG = 1 << 60
#: ``router_scores`` bound: ``|logit| < 2^26`` at ``frac_bits = 16`` keeps ``2f``-bit scores
#: below ``2^58``.
ROUTER_VARIANTS = ("exact", "2quad")


def top_k_onehot(
    scores: Ring, mat: Material, *, k: int, bits: int = 64, return_values: bool = False
) -> Ring | tuple[Ring, Ring]:
    """Arithmetic 0/1 shares of the top-``k`` one-hots along the last axis (ties: lowest index).

    Args:
      scores: ``uint64[..., E]`` shares of signed ring values with ``|s| < 2^59`` (any fixed
        point scale: only the order matters; scales ``2f`` are fine for ``|value| < 2^27``).
      mat: dealer material.
      k: 1 or 2 (static), ``k <= E``.
      bits: comparison width (see :func:`~._compare.msb`; 64 is exact for the stated range).
      return_values: also return the chosen scores (the tournaments' maxima, no extra cost).

    Returns:
      ``uint64[k, ..., E]``: row ``j`` is the one-hot of the ``j``-th choice (integer 0/1);
      with ``return_values`` also ``uint64[k, ...]``, the ``j``-th largest score.

    Protocol:
      1. ``oh_1 = argmax-onehot(s)`` by the tournament of :func:`~._compare.max_along`
         (``ceil(log2 E)`` comparison batches; at each node ``b = [hi > lo]`` so ties keep
         ``lo``, the lower index).
      2. (k = 2) ``s' = s - 2^60 oh_1`` (local): the first choice drops below every other score
         (``|s| < 2^59``), and the differences stay within 64 signed bits.
      3. (k = 2) ``oh_2 = argmax-onehot(s')``.

    Cost: ``k`` tournaments; with ``n = |...|`` rows and 64-bit comparisons, level ``L`` of a
    tournament compares ``n m_L`` pairs (5 rounds), opening ``8 n m_L (1 + 2^(L+1) [L >= 1])``
    plus ``336 ceil(n m_L / 64)`` bytes per party (:func:`~._compare.msb_cost`). Rounds:
    ``5 k ceil(log2 E)``.
    """
    check_ring("top_k_onehot", scores)
    if k not in (1, 2):
        raise ValueError(f"top_k_onehot: k must be 1 or 2, got {k!r}")
    if scores.ndim < 1 or scores.shape[-1] < k:
        raise ValueError(
            f"top_k_onehot: need at least k={k} entries on the last axis, got {scores.shape}"
        )
    m1, oh1 = max_along(scores, mat, axis=-1, return_argmax_onehot=True, bits=bits)
    if k == 1:
        return (oh1[None], m1[None]) if return_values else oh1[None]
    lowered = scores - oh1 * ring_const(TOPK_BIG)
    m2, oh2 = max_along(lowered, mat, axis=-1, return_argmax_onehot=True, bits=bits)
    oh = jnp.stack([oh1, oh2])
    return (oh, jnp.stack([m1, m2])) if return_values else oh


def router_scores(
    logits_2f: Ring,
    mat: Material,
    *,
    variant: str,
    c: float = 5.0,
    frac_bits: int = DEFAULT_FRAC_BITS,
) -> Ring:
    """Scores whose order (and ties) along the experts equals that of the gate probabilities.

    Args:
      logits_2f: ``uint64[..., E]`` shares of the router logits at ``2 frac_bits`` fractional
        bits (an untruncated product ``x W_g``: equal logits are bit-identical here, while a
        truncation could break their tie by one unit).
      variant: the router softmax, ``"exact"`` or ``"2quad"``.
      c: the 2Quad shift (``(x + c)^2 / sum (x + c)^2``).

    Returns:
      ``"exact"``: the logits themselves (softmax is strictly monotone; 0 rounds).
      ``"2quad"``: ``|x + c| = 2 relu(x + c) - (x + c)`` at ``2f`` bits (one comparison batch
      with the product fused: 5 rounds, ``8 n + 336 ceil(n / 64)`` bytes per party).
    """
    check_ring("router_scores", logits_2f)
    if variant == "exact":
        return logits_2f
    if variant == "2quad":
        shift = ring_const(round(c * 2.0 ** (2 * frac_bits)))
        u = logits_2f + is_party0() * shift
        return jnp.uint64(2) * relu(u, mat) - u
    raise ValueError(f"router_scores: variant must be one of {ROUTER_VARIANTS}, got {variant!r}")


def renorm_iters(experts: int, *, tol: float = 2.0**-12) -> int:
    """Goldschmidt iterations for ``1 / (p_1 + p_2)``: the sum lies in ``[2 / E, 1]``."""
    return goldschmidt_iters("reciprocal", max(1.0, experts / 2.0), tol)


def gate_weights(
    onehots: Ring,
    probs: Ring,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    recip_iters: int | None = None,
) -> Ring:
    """Shares of the gate-weighted one-hots ``G[j, t, e] = onehot_j[t, e] * gate_j[t]``.

    Args:
      onehots: ``uint64[k, T, E]`` integer 0/1 one-hots from :func:`top_k_onehot`.
      probs: ``uint64[T, E]`` gate probabilities at ``frac_bits``.
      recip_iters: Goldschmidt iterations for k = 2 (default :func:`renorm_iters`).

    Returns:
      ``uint64[k, T, E]`` at ``frac_bits``; ``gate_j[t] = sum_e G[j, t, e]``. Capacity drops
      are applied later (the MoE layer zeroes dropped choices); the renormalisation (k = 2)
      uses both chosen probabilities, dropped or not, like the plaintext reference.

    Protocol:
      k = 1: ``G = onehot * p`` (one Beaver einsum ``'jte,te->jte'``; no truncation: the
      one-hot is an integer).
      k = 2: one Beaver einsum ``P_j = onehot_j p``; ``s = sum_e (P_1 + P_2)`` (local);
      ``r = 1 / s`` by Goldschmidt with the public bound 1 (``s`` lies in ``[2/E, 1]``: the
      two largest of E probabilities); then ``G_j = P_j r`` by one Beaver einsum
      ``'jte,t->jte'`` and one truncation.

    Cost (per party, ``n = T E``): k = 1: 1 round, ``16 n`` bytes. k = 2: 1 round and
    ``24 n`` bytes, the reciprocal on ``T`` (``t + 1`` rounds, ``8 T (2 t - 1)`` bytes for
    ``t >= 2``), then ``1 + 1`` rounds and ``8 (2 n + T) + 16 n`` bytes.
    """
    from ._iterative import reciprocal

    check_ring("gate_weights", onehots, probs)
    if onehots.ndim != 3 or onehots.shape[0] not in (1, 2) or onehots.shape[1:] != probs.shape:
        raise ValueError(
            f"gate_weights: onehots must be [k, T, E] with k in (1, 2) and probs [T, E]; got "
            f"{onehots.shape} and {probs.shape}"
        )
    k = onehots.shape[0]
    prods = einsum("jte,te->jte", onehots, probs, mat, frac_bits=frac_bits, trunc="none")
    if k == 1:
        return prods
    total = jnp.sum(prods, axis=(0, 2), dtype=jnp.uint64)  # p_first + p_second, [T]
    iters = renorm_iters(probs.shape[-1]) if recip_iters is None else recip_iters
    inv = reciprocal(total, mat, iters=iters, bound=1.0, frac_bits=frac_bits)
    g = einsum("jte,t->jte", prods, inv, mat, frac_bits=frac_bits, trunc="none")
    return trunc(g, mat, bits=frac_bits)


#: Squarings of the limit-form exponential in :func:`exact_gate_weights` (as the softmax).
EXP_SQUARINGS = 9


def exact_gate_weights(
    logits_2f: Ring,
    top: Ring,
    onehots: Ring,
    mat: Material,
    *,
    frac_bits: int = DEFAULT_FRAC_BITS,
    recip_iters: int | None = None,
) -> Ring:
    """Gate-weighted one-hots for the EXACT softmax, from the top-k maxima (no softmax pass).

    With ``l_1 >= l_2`` the chosen logits (the tournaments' maxima), the exact-softmax gates are
    ``p_1 = 1 / sum_e exp(l_e - l_1)`` (k = 1: ``exp(l_1 - l_1) = 1``; the maximum is already
    known, so the softmax's own max tournament is not needed) and, k = 2,
    ``g_1 = p_1 / (p_1 + p_2) = 1 / (1 + exp(l_2 - l_1))``, ``g_2 = 1 - g_1``: nothing over
    the E experts at all.

    Args:
      logits_2f: ``uint64[T, E]`` router logits at ``2 frac_bits`` bits.
      top: ``uint64[k, T]`` the chosen logits (``2f`` bits), from
        :func:`top_k_onehot` ``(return_values=True)`` on the logits.
      onehots: ``uint64[k, T, E]`` integer one-hots.
      recip_iters: Goldschmidt iterations (default: relative error ``2^-12`` on the range).

    Returns:
      ``uint64[k, T, E]`` ``onehot_j gate_j`` at ``frac_bits``.

    Protocol:
      k = 1: truncate ``d = l - l_1`` (``[T, E]``, 1 round); ``e = exp(d)`` by the limit form
      (``n = 9`` squarings, as the softmax protocol; ``d >= -512`` assumed); ``s = sum_e e``
      in ``[1, E]``; ``g = 1 / s`` (Goldschmidt, bound ``2^ceil(log2 E)``).
      k = 2: truncate ``d = l_2 - l_1`` (``[T]``); ``e = exp(d)``; ``g_1 = 1 / (1 + e)``
      (bound 2, range 2); ``g_2 = 1 - g_1``.
      Then ``onehot_j g_j`` by one Beaver einsum ``'jte,jt->jte'`` (no truncation).

    Cost (bytes per party, ``n = T E``): k = 1: ``8 n`` + exp ``8 n (9 + 1)`` + reciprocal
    on ``T`` + ``8 (n + T)``; rounds ``1 + 10 + (t + 1) + 1``. k = 2: ``O(T)`` + ``8 (2 n + 2 T)``.
    """
    from ._iterative import exp, reciprocal

    check_ring("exact_gate_weights", logits_2f, top, onehots)
    k, t, e = onehots.shape
    f = frac_bits
    if k == 1:
        d = trunc(logits_2f - top[0][:, None], mat, bits=f)
        ex = exp(d, mat, n=EXP_SQUARINGS, frac_bits=f)
        total = jnp.sum(ex, axis=-1, dtype=jnp.uint64)
        ratio = 2.0 ** max(0, (e - 1).bit_length())
        iters = (
            goldschmidt_iters("reciprocal", ratio, 2.0**-12) if recip_iters is None else recip_iters
        )
        gates = reciprocal(total, mat, iters=iters, bound=ratio, frac_bits=f)[None]
    else:
        d = trunc(top[1] - top[0], mat, bits=f)
        ex = exp(d, mat, n=EXP_SQUARINGS, frac_bits=f)
        iters = (
            goldschmidt_iters("reciprocal", 2.0, 2.0**-12) if recip_iters is None else recip_iters
        )
        g1 = reciprocal(
            is_party0() * ring_const(1 << f) + ex, mat, iters=iters, bound=2.0, frac_bits=f
        )
        gates = jnp.stack([g1, is_party0() * ring_const(1 << f) - g1])
    return einsum("jte,jt->jte", onehots, gates, mat, frac_bits=f, trunc="none")
