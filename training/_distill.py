"""MPCFormer-style two-stage distillation into MPC-friendly students.

Stage 1 (intermediate layers): the sum over student layers of the MSE between the student's
and the teacher's pre-softmax attention scores (``q k^T / sqrt(d)``; only entries whose query
and key are both real tokens count) plus the sum over the embedding output and every layer of
the MSE between hidden states (real tokens only). Constant learning rate, as in MPCFormer.
Stage 2 (prediction layer): soft cross-entropy ``-sum softmax(t) log_softmax(s)`` on the logits
at temperature 1, warm-up + linear decay, best validation checkpoint kept. MoE students add
``aux_loss_weight * aux_loss`` in both stages.

Student/teacher mapping (used for initialisation and for the stage-1 losses):

- **Depth.** Student layer ``i`` (0-based) corresponds to teacher layer
  ``(i + 1) * Lt / Ls - 1`` (uniform, TinyBERT); the embedding outputs correspond.
  With equal depth this is the identity. ``Lt`` must be a multiple of ``Ls``.
- **Width.** Every student parameter is the leading block of the mapped teacher parameter
  (``[:n]`` on every axis): the student keeps the teacher's first ``D_s`` hidden dimensions,
  its first ``H_s`` heads (the head width must be equal) and first ``F_s`` FFN units.
  Student head ``h`` is matched with teacher head ``h``. When ``D_s != D_t`` the hidden-state
  loss compares ``h_s W`` with ``h_t``, ``W [D_s, D_t]`` learned in stage 1 (initialised to the
  identity on the first ``D_s`` dimensions) and discarded afterwards.
- **Vocabulary.** A pruned student vocabulary takes the teacher's embedding rows
  ``vocab_map`` (see :func:`secmoe_jax.training.prune_vocab`); the student's token ids are
  ``remap[teacher ids]``.
- **MoE.** A dense teacher FFN becomes E experts by :func:`upcycle` (copies plus noise); for
  top-1 students every expert's output projection is scaled by E so that ``gate * expert``
  starts equal to the dense FFN (the gate starts near ``1/E``; see :func:`upcycle`).

References: Li et al., "MPCFormer" (ICLR 2023); Jiao et al., "TinyBERT" (2020).
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ._checkpoint import flat_to_model, load_checkpoint, params_to_flat, save_checkpoint
from ._config import EncoderConfig
from ._model import Encoder
from ._moe import upcycle
from ._train import Encoded, TrainConfig, accuracy, run_loop


def layer_map(teacher_layers: int, student_layers: int) -> list[int]:
    """Teacher layer index for each student layer (uniform mapping, module docstring)."""
    if teacher_layers % student_layers:
        raise ValueError(
            f"teacher depth {teacher_layers} is not a multiple of student depth {student_layers}"
        )
    k = teacher_layers // student_layers
    return [(i + 1) * k - 1 for i in range(student_layers)]


def init_student_from_teacher(
    teacher: Encoder,
    cfg: EncoderConfig,
    *,
    key: jax.Array,
    vocab_map: np.ndarray | None = None,
    upcycle_noise: float = 0.001,
) -> Encoder:
    """A student of config ``cfg`` initialised from ``teacher`` (mapping in the module docstring).

    Raises:
      ValueError: if the student is larger than the teacher in some dimension, the head widths
        differ, or the depths are not multiples.
    """
    tc = teacher.cfg
    if cfg.hidden > tc.hidden or cfg.ffn > tc.ffn or cfg.heads > tc.heads:
        raise ValueError("student must not be wider than the teacher")
    if cfg.head_dim != tc.head_dim:
        raise ValueError(f"student head width {cfg.head_dim} != teacher's {tc.head_dim}")
    if tc.moe is not None:
        raise ValueError("the teacher must be dense")
    lmap = layer_map(tc.layers, cfg.layers)
    t_flat = params_to_flat(teacher)
    dense_cfg = cfg.replace(moe=None)
    skeleton = params_to_flat(Encoder(dense_cfg, rngs=nnx.Rngs(0)))
    flat: dict[str, np.ndarray] = {}
    for name, ref in skeleton.items():
        parts = name.split("/")
        if parts[0] == "layers":
            parts[1] = str(lmap[int(parts[1])])
        src = t_flat["/".join(parts)]
        if name == "embeddings/word_embeddings/embedding" and vocab_map is not None:
            src = src[np.asarray(vocab_map)]
        if src.ndim != ref.ndim or any(s < r for s, r in zip(src.shape, ref.shape, strict=True)):
            raise ValueError(
                f"cannot map teacher {'/'.join(parts)} {src.shape} to student {name} {ref.shape}"
            )
        flat[name] = np.asarray(src[tuple(slice(0, r) for r in ref.shape)], np.float32)
    if cfg.moe is None:
        return flat_to_model(cfg, flat)
    keys = jax.random.split(key, cfg.layers)
    moe_flat = {k: v for k, v in flat.items() if "/intermediate/" not in k and "/output/" not in k}
    for i in range(cfg.layers):
        p = f"layers/{i}/"
        dense = {
            "w_in": flat[p + "intermediate/kernel"],
            "b_in": flat[p + "intermediate/bias"],
            "w_out": flat[p + "output/kernel"],
            "b_out": flat[p + "output/bias"],
        }
        if cfg.moe.ffn_kind != "gelu":
            raise ValueError("upcycling a GeLU teacher into GLU experts is not defined")
        ex = upcycle(
            dense,
            cfg.moe.experts,
            upcycle_noise,
            keys[i],
            router_std=cfg.moe.router_init_std,
            output_scale=float(cfg.moe.experts) if cfg.moe.top_k == 1 else 1.0,
        )
        for k, v in ex.items():
            moe_flat[p + "moe/" + k] = np.asarray(v)
    return flat_to_model(cfg, moe_flat)


def _masked_mse(a: jax.Array, b: jax.Array, w: jax.Array) -> jax.Array:
    w = jnp.broadcast_to(w, a.shape).astype(jnp.float32)
    return jnp.sum(jnp.square(a - b) * w) / jnp.maximum(jnp.sum(w), 1.0)


def distill(
    teacher: Encoder,
    student: Encoder,
    data: dict[str, Encoded],
    stage1: TrainConfig,
    stage2: TrainConfig,
    out_dir: str | pathlib.Path,
    *,
    label_names: tuple[str, ...],
    max_len: int,
    vocab_map: np.ndarray | None = None,
    dtype: str = "float32",
    resume: bool = False,
    quiet: bool = False,
    extra_meta: dict | None = None,
) -> dict[str, Any]:
    """Runs both stages and saves the best stage-2 student as ``out_dir/model.npz``.

    Args:
      teacher, student: encoders (the teacher is frozen).
      data: tokenized splits (teacher token ids).
      stage1, stage2: optimisation settings (``stage1.epochs == 0`` skips stage 1).
      vocab_map: the student's pruned vocabulary, if any.
      dtype: storage dtype of the student checkpoint ("float16" for the demo student).

    Returns:
      metrics: dev/test accuracy of the student, steps per stage, seconds, checkpoint path.
    """
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s_cfg, t_cfg = student.cfg, teacher.cfg
    lmap = layer_map(t_cfg.layers, s_cfg.layers)
    t_graph, t_state = nnx.split(teacher)
    s_graph, s_state = nnx.split(student)
    remap = None
    if vocab_map is not None:
        remap = np.full(t_cfg.vocab_size, int(np.searchsorted(vocab_map, 100)), np.int32)
        remap[vocab_map] = np.arange(len(vocab_map), dtype=np.int32)
    extra = {s: {"sids": remap[d.ids] if remap is not None else d.ids} for s, d in data.items()}
    aux_w = s_cfg.moe.aux_loss_weight if s_cfg.moe is not None else 0.0

    def teacher_out(t_st, batch):
        return nnx.merge(t_graph, jax.lax.stop_gradient(t_st))(batch["ids"], batch["mask"])

    def stage1_loss(tr, t_st, batch):
        s_out = nnx.merge(s_graph, tr["model"])(batch["sids"], batch["mask"])
        t_out = jax.lax.stop_gradient(teacher_out(t_st, batch))
        m = batch["mask"].astype(jnp.float32)
        keep = m[:, None, :, None] * m[:, None, None, :]
        hs_ = s_cfg.heads  # student head h <-> teacher head h
        att = sum(
            _masked_mse(s, t_out.attention_scores[j][:, :hs_], keep)
            for s, j in zip(s_out.attention_scores, lmap, strict=True)
        )
        t_hidden = [t_out.hidden_states[0]] + [t_out.hidden_states[j + 1] for j in lmap]
        hid = 0.0
        for hs, ht in zip(s_out.hidden_states, t_hidden, strict=True):
            if "proj" in tr:
                hs = hs @ tr["proj"]
            hid = hid + _masked_mse(hs, ht, m[..., None])
        loss = att + hid + aux_w * s_out.aux_loss
        return loss, {"att": att, "hid": hid}

    def stage2_loss(tr, t_st, batch):
        s_out = nnx.merge(s_graph, tr["model"])(batch["sids"], batch["mask"])
        t_logits = jax.lax.stop_gradient(teacher_out(t_st, batch).logits)
        soft = -jnp.sum(jax.nn.softmax(t_logits) * jax.nn.log_softmax(s_out.logits), -1).mean()
        return soft + aux_w * s_out.aux_loss, {"soft_ce": soft}

    def eval_fn(tr, _, batch):
        out = nnx.merge(s_graph, tr["model"])(batch["sids"], batch["mask"])
        return jnp.argmax(out.logits, axis=-1)

    ckpt = out_dir / "model.npz"

    def save(tr, step, acc, stage):
        save_checkpoint(
            ckpt,
            nnx.merge(s_graph, tr["model"]),
            tokenizer_max_len=max_len,
            label_names=label_names,
            vocab_map=vocab_map,
            dtype=dtype,
            extra={"stage": stage, "step": step, "dev_accuracy": acc, **(extra_meta or {})},
        )

    trainables: dict[str, Any] = {"model": s_state}
    if s_cfg.hidden != t_cfg.hidden:
        trainables["proj"] = jnp.eye(s_cfg.hidden, t_cfg.hidden, dtype=jnp.float32)
    steps1 = 0
    if stage1.epochs > 0:
        r1 = run_loop(
            name="stage1",
            trainables=trainables,
            loss_fn=stage1_loss,
            eval_fn=eval_fn,
            train=data["train"],
            dev=data["validation"],
            tc=stage1,
            out_dir=out_dir,
            on_best=lambda tr, st, acc: save(tr, st, acc, 1),
            resume=resume,
            quiet=quiet,
            extra_train=extra["train"],
            extra_dev=extra["validation"],
            select_best=False,
            frozen=t_state,
        )
        trainables, steps1, secs1 = r1.trainables, r1.steps, r1.seconds
    else:
        secs1 = 0.0
    r2 = run_loop(
        name="stage2",
        trainables={"model": trainables["model"]},
        loss_fn=stage2_loss,
        eval_fn=eval_fn,
        train=data["train"],
        dev=data["validation"],
        tc=stage2,
        out_dir=out_dir,
        on_best=lambda tr, st, acc: save(tr, st, acc, 2),
        resume=resume,
        quiet=quiet,
        extra_train=extra["train"],
        extra_dev=extra["validation"],
        frozen=t_state,
    )
    best = load_checkpoint(ckpt)
    best_state = {"model": nnx.state(best.model)}
    test_acc = accuracy(
        jax.jit(eval_fn), best_state, data["test"], stage2.eval_batch_size, extra["test"]
    )
    t_acc = accuracy(
        jax.jit(lambda _, t_st, b: jnp.argmax(teacher_out(t_st, b).logits, -1)),
        None,
        data["test"],
        stage2.eval_batch_size,
        frozen=t_state,
    )
    return {
        "dev_accuracy": r2.best_dev,
        "test_accuracy": test_acc,
        "teacher_test_accuracy": t_acc,
        "steps": steps1 + r2.steps,
        "steps_stage1": steps1,
        "steps_stage2": r2.steps,
        "seconds": secs1 + r2.seconds,
        "checkpoint": str(ckpt),
        "checkpoint_bytes": ckpt.stat().st_size,
    }
