"""Accuracy under MPC: a labelled split run through private inference, batch by batch.

MPCFormer and SecFormer report their students' accuracy in plaintext and time random-weight
models under MPC; :func:`evaluate` runs the trained checkpoint itself privately and reports
the accuracy it actually gets next to the plaintext accuracy of the same weights.

Batching: examples are sorted by length and cut into batches of ``batch_size``; each batch is
padded to its longest text rounded up to a multiple of 16 (:func:`bucket_length`), so at most
``max_len / 16`` programs are compiled. A short last batch is filled with copies of its first
example (their outputs are discarded), so the batch shape never changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import comm
from ._model import SecureModel, bucket_length


def evaluate(
    model: SecureModel,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Private and plaintext accuracy of ``model`` on ``(texts, labels)``.

    Args:
      model: a :class:`SecureModel` built by :meth:`SecureModel.from_checkpoint`.
      texts, labels: the examples (labels are class indices).
      batch_size: examples per private query batch.
      progress: called with the number of examples finished after every batch.

    Returns:
      ``examples, private_accuracy, plaintext_accuracy, agreement, max_logit_diff``,
      ``online_bytes_per_example`` and ``rounds`` (exact, traced per batch shape; rounds are
      those of one batch), ``seconds_per_example`` (online time of the private batches, both
      parties in simulate mode, compilation excluded), ``dealer_seconds_per_example`` (the
      dealer's material, timed apart), LAN/WAN estimates, ``compile_seconds`` and ``batches``.
    """
    if len(texts) != len(labels):
        raise ValueError(f"evaluate: {len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise ValueError("evaluate: no examples")
    if batch_size < 1:
        raise ValueError("evaluate: batch_size must be >= 1")
    labels = np.asarray(labels, np.int64)
    ids_all, mask_all = model.encode(list(texts))
    lengths = mask_all.sum(1)
    order = np.argsort(lengths, kind="stable")
    private_pred = np.zeros(len(texts), np.int64)
    plain_pred = np.zeros(len(texts), np.int64)
    max_diff, online_bytes, rounds = 0.0, 0, 0
    run_seconds, compile_seconds, batches = 0.0, 0.0, 0
    lan_seconds, wan_seconds, dealer_seconds = 0.0, 0.0, 0.0
    costs: dict[tuple[int, int], Any] = {}
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        fill = np.concatenate([idx, np.repeat(idx[:1], batch_size - len(idx))])
        t = bucket_length(int(lengths[idx].max()), model.max_len)
        ids, mask = ids_all[fill, :t], mask_all[fill, :t]
        shape = (batch_size, t)
        private = model.logits(ids, mask)  # a new shape compiles first, timed apart
        compile_seconds += model.last_timing["compile_seconds"]
        elapsed = model.last_timing["online_seconds"]
        dealer_seconds += model.last_timing["dealer_seconds"]
        if shape not in costs:
            costs[shape] = model.cost(*shape)
        run_seconds += elapsed
        lan_seconds += costs[shape].estimate(elapsed, comm.LAN)
        wan_seconds += costs[shape].estimate(elapsed, comm.WAN)
        plain = model.plaintext_logits(ids, mask)
        n = len(idx)
        private_pred[idx] = np.argmax(private[:n], axis=1)
        plain_pred[idx] = np.argmax(plain[:n], axis=1)
        max_diff = max(max_diff, float(np.max(np.abs(private[:n] - plain[:n]))))
        online_bytes += costs[shape].online_bytes
        rounds = max(rounds, costs[shape].rounds)
        batches += 1
        if progress is not None:
            progress(n)
    n = len(texts)
    examples = batches * batch_size  # including fillers: what was actually computed
    return {
        "examples": n,
        "private_accuracy": float(np.mean(private_pred == labels)),
        "plaintext_accuracy": float(np.mean(plain_pred == labels)),
        "agreement": float(np.mean(private_pred == plain_pred)),
        "max_logit_diff": max_diff,
        "batch_size": batch_size,
        "batches": batches,
        "online_bytes_per_example": online_bytes / examples,
        "rounds": rounds,
        "seconds_per_example": run_seconds / examples,
        "dealer_seconds_per_example": dealer_seconds / examples,
        "lan_seconds_per_example": lan_seconds / examples,
        "wan_seconds_per_example": wan_seconds / examples,
        "compile_seconds": compile_seconds,
        "embedding": model.opts.embedding,
        "gelu_strategy": model.opts.gelu_strategy,
        "moe_strategy": model.opts.moe_strategy if model.cfg.moe is not None else None,
    }
