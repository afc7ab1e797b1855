"""Accuracy under MPC: a labelled split run through private inference, batch by batch.

MPCFormer and SecFormer report their students' accuracy in plaintext and time random-weight
models under MPC; :func:`evaluate` runs the trained checkpoint itself privately and reports
the accuracy it actually gets next to the plaintext accuracy of the same weights.

Batching: examples are sorted by length and grouped by bucket: each text is padded to its
length rounded up to a multiple of 16 (:func:`bucket_length`), so at most ``max_len / 16``
programs are compiled. A bucket is cut into batches of ``batch_size`` examples, fewer for long
buckets when ``max_batch_tokens`` caps ``batch * length`` (the dealer's material grows with
it); a short last batch is filled with copies of its first example (their outputs are
discarded), so a bucket's batch shape never changes. Buckets are visited shortest first and
never come back, so the model's compiled programs are freed when a bucket is done: memory
stays that of the current bucket however many buckets the split has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .. import comm
from ._model import SecureModel, bucket_length


def eval_batches(
    lengths: np.ndarray, batch_size: int, max_len: int, max_batch_tokens: int | None = None
) -> list[tuple[np.ndarray, int, int]]:
    """The evaluation's batches: ``(example indices, padded length, batch size)``, shortest
    bucket first (the last batch of a bucket may hold fewer indices than its size).

    Every batch holds examples of one bucket; its size is ``batch_size``, or for long
    buckets the largest size with ``size * length <= max_batch_tokens`` (at least 1).
    """
    if batch_size < 1:
        raise ValueError("evaluate: batch_size must be >= 1")
    if max_batch_tokens is not None and max_batch_tokens < 1:
        raise ValueError("evaluate: max_batch_tokens must be >= 1")
    buckets = np.array([bucket_length(int(n), max_len) for n in lengths])
    order = np.argsort(lengths, kind="stable")
    out = []
    for t in np.unique(buckets):
        idx = order[buckets[order] == t]
        size = batch_size
        if max_batch_tokens is not None:
            size = max(1, min(batch_size, max_batch_tokens // int(t)))
        out += [(idx[i : i + size], int(t), size) for i in range(0, len(idx), size)]
    return out


def peak_rss_gb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def evaluate(
    model: SecureModel,
    texts: Sequence[str],
    labels: Sequence[int],
    *,
    batch_size: int = 8,
    max_batch_tokens: int | None = None,
    progress: Callable[[int], None] | None = None,
    partial: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Private and plaintext accuracy of ``model`` on ``(texts, labels)``.

    Args:
      model: a :class:`SecureModel` built by :meth:`SecureModel.from_checkpoint`.
      texts, labels: the examples (labels are class indices).
      batch_size: examples per private query batch.
      max_batch_tokens: if set, long buckets use smaller batches so that
        ``batch * length <= max_batch_tokens`` (bounds the dealer's material in memory).
      progress: called with the number of examples finished after every batch.
      partial: called after every bucket with the report so far (``complete`` false,
        accuracies over the examples done): a long run that dies leaves what it measured.

    Returns:
      ``examples, private_accuracy, plaintext_accuracy, agreement, max_logit_diff``,
      ``online_bytes_per_example`` and ``rounds`` (exact, traced per batch shape; ``rounds``
      is the largest over the batch shapes), ``seconds_per_example`` (online time of the
      private batches, both parties in simulate mode, compilation excluded),
      ``dealer_seconds_per_example`` (the dealer's material, timed apart), LAN/WAN estimates,
      ``compile_seconds``, ``batches``, ``computed_examples`` (with fillers),
      ``peak_rss_gb`` (the process's peak resident memory) and ``complete``.
    """
    if len(texts) != len(labels):
        raise ValueError(f"evaluate: {len(texts)} texts but {len(labels)} labels")
    if not texts:
        raise ValueError("evaluate: no examples")
    labels = np.asarray(labels, np.int64)
    ids_all, mask_all = model.encode(list(texts))
    plan = eval_batches(mask_all.sum(1), batch_size, model.max_len, max_batch_tokens)
    private_pred = np.full(len(texts), -1, np.int64)
    plain_pred = np.full(len(texts), -1, np.int64)
    acc = {"max_diff": 0.0, "bytes": 0, "rounds": 0, "run": 0.0, "compile": 0.0, "lan": 0.0}
    acc.update({"wan": 0.0, "dealer": 0.0, "batches": 0, "computed": 0})

    def report(complete: bool) -> dict[str, Any]:
        done = private_pred >= 0
        computed = max(acc["computed"], 1)
        return {
            "examples": int(done.sum()),
            "private_accuracy": float(np.mean(private_pred[done] == labels[done])),
            "plaintext_accuracy": float(np.mean(plain_pred[done] == labels[done])),
            "agreement": float(np.mean(private_pred[done] == plain_pred[done])),
            "max_logit_diff": acc["max_diff"],
            "batch_size": batch_size,
            "max_batch_tokens": max_batch_tokens,
            "batches": acc["batches"],
            "computed_examples": acc["computed"],
            "online_bytes_per_example": acc["bytes"] / computed,
            "rounds": acc["rounds"],
            "seconds_per_example": acc["run"] / computed,
            "dealer_seconds_per_example": acc["dealer"] / computed,
            "lan_seconds_per_example": acc["lan"] / computed,
            "wan_seconds_per_example": acc["wan"] / computed,
            "compile_seconds": acc["compile"],
            "peak_rss_gb": peak_rss_gb(),
            "embedding": model.opts.embedding,
            "gelu_strategy": model.opts.gelu_strategy,
            "moe_strategy": model.opts.moe_strategy if model.cfg.moe is not None else None,
            "complete": complete,
        }

    cost = None
    for k, (idx, t, size) in enumerate(plan):
        fill = np.concatenate([idx, np.repeat(idx[:1], size - len(idx))])
        ids, mask = ids_all[fill, :t], mask_all[fill, :t]
        private = model.logits(ids, mask)  # a new shape compiles first, timed apart
        timing = model.last_timing
        if k == 0 or plan[k - 1][1] != t:  # a new bucket: its exact cost, traced once
            cost = model.cost(size, t)
        plain = model.plaintext_logits(ids, mask)
        n = len(idx)
        private_pred[idx] = np.argmax(private[:n], axis=1)
        plain_pred[idx] = np.argmax(plain[:n], axis=1)
        acc["max_diff"] = max(acc["max_diff"], float(np.max(np.abs(private[:n] - plain[:n]))))
        acc["compile"] += timing["compile_seconds"]
        acc["run"] += timing["online_seconds"]
        acc["dealer"] += timing["dealer_seconds"]
        acc["lan"] += cost.estimate(timing["online_seconds"], comm.LAN)
        acc["wan"] += cost.estimate(timing["online_seconds"], comm.WAN)
        acc["bytes"] += cost.online_bytes
        acc["rounds"] = max(acc["rounds"], cost.rounds)
        acc["batches"] += 1
        acc["computed"] += size
        if progress is not None:
            progress(n)
        if k + 1 == len(plan) or plan[k + 1][1] != t:  # the bucket is done and won't return
            model.release()
            if partial is not None and k + 1 < len(plan):
                partial(report(complete=False))
    return report(complete=True)
