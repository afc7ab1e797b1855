"""Training loop shared by teacher fine-tuning and distillation; teacher fine-tuning.

The loop is plain: a jitted step function over ``(trainable pytree, optimizer state, batch)``
(NNX functional split/merge), batches drawn from a per-epoch permutation seeded by
``(seed, epoch)`` so a resumed run sees exactly the batches it would have seen, periodic
evaluation on the validation split, the best-validation model saved as a checkpoint, and a
resume file (step, trainables, optimizer state, best score) written at every evaluation.

Batches are padded to the smallest multiple of 16 that holds their longest sequence (at most
``max_len``), so attention costs follow the real lengths; a handful of shapes are compiled.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from ._checkpoint import load_checkpoint, save_checkpoint
from ._config import EncoderConfig
from ._data import Dataset
from ._model import Encoder

Batch = dict[str, np.ndarray]
_NO_DECAY = ("bias", "scale", "b_in", "b_out", "b_up")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of one training stage."""

    lr: float = 5e-5  # peak learning rate (AdamW)
    batch_size: int = 32  # examples per step
    epochs: float = 3.0  # passes over the training split (fractions allowed)
    max_steps: int | None = None  # stop after this many steps (overrides epochs when smaller)
    warmup: float = 0.1  # fraction of steps with linear warm-up; then linear decay to 0
    schedule: str = "warmup_linear"  # "warmup_linear" or "constant"
    weight_decay: float = 0.01  # AdamW decay on kernels/embeddings (not biases, LayerNorm)
    clip_norm: float = 1.0  # global gradient-norm clipping
    eval_every: int = 200  # steps between validation evaluations (and resume files)
    eval_batch_size: int = 128  # examples per evaluation batch
    seed: int = 0  # data order and initialisation


@dataclasses.dataclass
class Encoded:
    """A tokenized split: ids/mask ``[N, max_len]`` int32, labels ``[N]`` int32."""

    ids: np.ndarray
    mask: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def encode_dataset(data: Dataset, tokenizer: Any) -> dict[str, Encoded]:
    """Tokenizes every split of ``data``."""
    out = {}
    for s, texts in data.texts.items():
        if texts:
            ids, mask = tokenizer.encode(texts)
        else:
            ids = mask = np.zeros((0, tokenizer.max_len), np.int32)
        out[s] = Encoded(ids, mask, np.asarray(data.labels[s], np.int32))
    return out


def _trim(batch: Batch, max_len: int) -> Batch:
    longest = int(batch["mask"].sum(1).max()) if batch["mask"].size else 1
    t = min(max_len, max(16, 16 * math.ceil(longest / 16)))
    return {k: (v[:, :t] if v.ndim == 2 else v) for k, v in batch.items()}


def train_batches(
    data: Encoded, batch_size: int, seed: int, start_step: int, extra: dict | None = None
) -> Iterator[Batch]:
    """Endless training batches from step ``start_step`` (drop-last, reshuffled per epoch)."""
    n = len(data)
    bs = min(batch_size, n)
    per_epoch = n // bs
    step = start_step
    while True:
        epoch, i = divmod(step, per_epoch)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        idx = perm[i * bs : (i + 1) * bs]
        batch = {"ids": data.ids[idx], "mask": data.mask[idx], "labels": data.labels[idx]}
        for k, v in (extra or {}).items():
            batch[k] = v[idx]
        yield _trim(batch, data.ids.shape[1])
        step += 1


def eval_batches(data: Encoded, batch_size: int, extra: dict | None = None) -> Iterator[Batch]:
    """Evaluation batches in order; the last one is padded with empty rows (``valid`` = 0)."""
    n = len(data)
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(start + batch_size, n))
        pad = batch_size - idx.size
        valid = np.concatenate([np.ones(idx.size, np.int32), np.zeros(pad, np.int32)])
        idx = np.concatenate([idx, np.zeros(pad, idx.dtype)])
        batch = {
            "ids": data.ids[idx],
            "mask": data.mask[idx] * valid[:, None],
            "labels": data.labels[idx],
            "valid": valid,
        }
        for k, v in (extra or {}).items():
            batch[k] = v[idx]
        batch["mask"][:, 0] = 1  # keep one token in empty rows (avoids an all-masked softmax)
        yield _trim(batch, data.ids.shape[1])


def _leaf_name(path: tuple) -> str:
    names = [getattr(p, "key", getattr(p, "name", None)) for p in path]
    names = [n for n in names if isinstance(n, str) and n != "value"]
    return names[-1] if names else ""


def make_optimizer(tc: TrainConfig, total_steps: int, params: Any) -> optax.GradientTransformation:
    """AdamW with gradient clipping, warm-up + linear decay (or constant) learning rate."""
    if tc.schedule == "constant":
        sched = optax.constant_schedule(tc.lr)
    else:
        w = max(1, int(tc.warmup * total_steps))
        sched = optax.join_schedules(
            [
                optax.linear_schedule(0.0, tc.lr, w),
                optax.linear_schedule(tc.lr, 0.0, max(1, total_steps - w)),
            ],
            [w],
        )
    mask = jax.tree_util.tree_map_with_path(lambda p, _: _leaf_name(p) not in _NO_DECAY, params)
    return optax.chain(
        optax.clip_by_global_norm(tc.clip_norm),
        optax.adamw(sched, weight_decay=tc.weight_decay, mask=mask),
    )


def total_steps(tc: TrainConfig, n_train: int) -> int:
    """Steps of a stage: ``epochs * (n_train // batch_size)``, capped by ``max_steps``."""
    per_epoch = max(1, n_train // min(tc.batch_size, n_train))
    steps = max(1, int(round(tc.epochs * per_epoch)))
    return min(steps, tc.max_steps) if tc.max_steps else steps


def accuracy(
    eval_fn: Callable,
    trainables: Any,
    data: Encoded,
    bs: int,
    extra: dict | None = None,
    frozen: Any = None,
) -> float:
    """Accuracy of ``eval_fn(trainables, frozen, batch) -> labels`` on ``data``."""
    if len(data) == 0:
        return float("nan")
    correct = 0
    for b in eval_batches(data, bs, extra):
        pred = np.asarray(eval_fn(trainables, frozen, b))
        correct += int(np.sum((pred == b["labels"]) * b["valid"]))
    return correct / len(data)


def _save_state(
    path: pathlib.Path, step: int, best: float, trainables: Any, opt_state: Any, done: bool
) -> None:
    leaves = jax.tree_util.tree_leaves((trainables, opt_state))
    payload = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
    payload["__info__"] = np.frombuffer(
        json.dumps({"step": step, "best": best, "done": done, "leaves": len(leaves)}).encode(),
        np.uint8,
    )
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **payload)
    tmp.replace(path)


def _load_state(path: pathlib.Path, trainables: Any, opt_state: Any):
    from ._checkpoint import CheckpointError

    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
            info = json.loads(z["__info__"].tobytes().decode())
            leaves = [z[f"leaf_{i:05d}"] for i in range(info["leaves"])]
    except Exception as e:  # any read failure means the resume file is unusable
        raise CheckpointError(f"cannot resume from {path}: {e}. Delete it to start over") from e
    treedef = jax.tree_util.tree_structure((trainables, opt_state))
    if treedef.num_leaves != len(leaves):
        raise CheckpointError(
            f"resume file {path} does not match this run's model/optimizer; "
            "delete it or use another --out"
        )
    tr, op = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(x) for x in leaves])
    return info, tr, op


@dataclasses.dataclass
class LoopResult:
    """What a training stage produced."""

    trainables: Any  # the trainables at the best validation accuracy (or the last step)
    best_dev: float  # best validation accuracy
    steps: int  # steps run in total (including resumed ones)
    seconds: float  # wall time of this invocation


LOG_EVERY_S = 60.0  # progress lines when stderr is not a terminal


def run_loop(
    *,
    name: str,
    trainables: Any,
    loss_fn: Callable[[Any, Any, Batch], tuple[jax.Array, dict]],
    eval_fn: Callable[[Any, Any, Batch], jax.Array],
    train: Encoded,
    dev: Encoded,
    tc: TrainConfig,
    out_dir: pathlib.Path,
    on_best: Callable[[Any, int, float], None] | None,
    resume: bool = False,
    quiet: bool = False,
    extra_train: dict | None = None,
    extra_dev: dict | None = None,
    select_best: bool = True,
    frozen: Any = None,
) -> LoopResult:
    """Runs one stage: jitted AdamW steps, periodic evaluation, best-dev saving, resume file.

    Args:
      name: stage name (progress bar label; resume file ``out_dir/state_<name>.npz``).
      trainables: the pytree to optimise.
      loss_fn: ``(trainables, frozen, batch) -> (loss, metrics)``, traced under ``jax.jit``.
      eval_fn: ``(trainables, frozen, batch) -> predicted labels [B]``, under ``jax.jit``.
      on_best: called with ``(trainables, step, dev_acc)`` whenever validation accuracy
        improves (``select_best``) or at the end (always).
      select_best: keep the best-validation trainables (False: keep the last ones).
      frozen: a pytree passed to ``loss_fn``/``eval_fn`` as an argument (e.g. the teacher),
        not optimised and not baked into the compiled program as constants.
    """
    t0 = time.time()
    steps = total_steps(tc, len(train))
    opt = make_optimizer(tc, steps, trainables)
    opt_state = opt.init(trainables)
    state_path = out_dir / f"state_{name}.npz"
    start, best = 0, -1.0
    if resume and state_path.is_file():
        info, trainables, opt_state = _load_state(state_path, trainables, opt_state)
        start, best = info["step"], info["best"]
        if not quiet:
            print(f"[{name}] resuming from step {start} ({state_path})", file=sys.stderr)
        if info["done"]:
            return LoopResult(trainables, best, start, time.time() - t0)

    @jax.jit
    def step_fn(tr, os_, fr, batch):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(tr, fr, batch)
        updates, os_ = opt.update(grads, os_, tr)
        return optax.apply_updates(tr, updates), os_, loss, metrics

    jit_eval = jax.jit(eval_fn)
    best_tr = trainables
    show = not quiet and sys.stderr.isatty()
    bar = tqdm(
        total=steps, initial=start, desc=name, disable=not show, unit="step", dynamic_ncols=True
    )
    batches = train_batches(train, tc.batch_size, tc.seed, start, extra_train)
    ex_seen, t_run = 0, time.time()
    last_line = t_run
    for step in range(start + 1, steps + 1):
        batch = next(batches)
        trainables, opt_state, loss, _ = step_fn(trainables, opt_state, frozen, batch)
        ex_seen += batch["ids"].shape[0]
        if step % 10 == 0 or step == steps:
            rate = ex_seen / max(time.time() - t_run, 1e-9)
            if show:
                bar.set_postfix(loss=f"{float(loss):.4f}", ex_s=f"{rate:.1f}")
            elif not quiet and time.time() - last_line >= LOG_EVERY_S:  # logs: a line a minute
                last_line = time.time()
                eta = (steps - step) * tc.batch_size / max(rate, 1e-9)
                print(
                    f"[{name}] step {step}/{steps} loss {float(loss):.4f} {rate:.1f} ex/s "
                    f"ETA {eta / 60:.1f} min",
                    file=sys.stderr,
                    flush=True,
                )
        bar.update(1)
        if step % tc.eval_every == 0 or step == steps:
            acc = accuracy(jit_eval, trainables, dev, tc.eval_batch_size, extra_dev, frozen)
            improved = acc > best
            if improved or not select_best:
                best_tr = trainables
            if improved:
                best = acc
                if on_best is not None and select_best:
                    on_best(trainables, step, acc)
            if not quiet:
                msg = (
                    f"[{name}] step {step}/{steps} loss {float(loss):.4f} dev_acc {acc:.4f} "
                    f"best {best:.4f} {ex_seen / max(time.time() - t_run, 1e-9):.1f} ex/s"
                )
                (bar.write(msg) if show else print(msg, file=sys.stderr))
            _save_state(state_path, step, best, trainables, opt_state, done=step == steps)
    bar.close()
    if on_best is not None and not select_best:
        on_best(trainables, steps, best)
    return LoopResult(best_tr if select_best else trainables, best, steps, time.time() - t0)


def classifier_fns(graphdef: Any) -> tuple[Callable, Callable]:
    """Cross-entropy ``loss_fn`` and argmax ``eval_fn`` for a model state ``{"model": ...}``."""

    def loss_fn(tr, _, batch):
        model = nnx.merge(graphdef, tr["model"])
        out = model(batch["ids"], batch["mask"])
        ce = optax.softmax_cross_entropy_with_integer_labels(out.logits, batch["labels"]).mean()
        aux_w = model.cfg.moe.aux_loss_weight if model.cfg.moe is not None else 0.0
        return ce + aux_w * out.aux_loss, {"ce": ce}

    def eval_fn(tr, _, batch):
        model = nnx.merge(graphdef, tr["model"])
        return jnp.argmax(model(batch["ids"], batch["mask"]).logits, axis=-1)

    return loss_fn, eval_fn


def train_teacher(
    model: Encoder,
    data: dict[str, Encoded],
    tc: TrainConfig,
    out_dir: str | pathlib.Path,
    *,
    label_names: tuple[str, ...],
    max_len: int,
    resume: bool = False,
    quiet: bool = False,
    extra_meta: dict | None = None,
) -> dict[str, Any]:
    """Fine-tunes ``model`` with cross entropy; saves ``out_dir/model.npz`` (best dev).

    Returns:
      metrics: dev/test accuracy, steps, minutes, checkpoint path.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    graphdef, state = nnx.split(model)
    loss_fn, eval_fn = classifier_fns(graphdef)
    ckpt = out_dir / "model.npz"

    def on_best(tr, step, acc):
        save_checkpoint(
            ckpt,
            nnx.merge(graphdef, tr["model"]),
            tokenizer_max_len=max_len,
            label_names=label_names,
            extra={"step": step, "dev_accuracy": acc, **(extra_meta or {})},
        )

    res = run_loop(
        name="teacher",
        trainables={"model": state},
        loss_fn=loss_fn,
        eval_fn=eval_fn,
        train=data["train"],
        dev=data["validation"],
        tc=tc,
        out_dir=out_dir,
        on_best=on_best,
        resume=resume,
        quiet=quiet,
    )
    best = {"model": nnx.state(load_checkpoint(ckpt).model)}
    test_acc = accuracy(jax.jit(eval_fn), best, data["test"], tc.eval_batch_size)
    return {
        "dev_accuracy": res.best_dev,
        "test_accuracy": test_acc,
        "steps": res.steps,
        "seconds": res.seconds,
        "checkpoint": str(ckpt),
    }


def config_summary(cfg: EncoderConfig) -> dict[str, Any]:
    """A short description of a model config for metrics files."""
    d = {
        "layers": cfg.layers,
        "hidden": cfg.hidden,
        "heads": cfg.heads,
        "ffn": cfg.ffn,
        "gelu": cfg.gelu,
        "softmax": cfg.softmax,
        "vocab_size": cfg.vocab_size,
    }
    if cfg.moe is not None:
        d["moe"] = {
            "experts": cfg.moe.experts,
            "top_k": cfg.moe.top_k,
            "capacity_factor": cfg.moe.capacity_factor,
        }
    return d
