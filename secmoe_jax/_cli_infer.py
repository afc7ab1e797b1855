"""``secmoe demo``, ``secmoe infer``, ``secmoe eval`` and ``secmoe bench model``.

Private inference of trained checkpoints from the command line. Registered into the main
parser by :func:`register` (see :mod:`secmoe_jax.cli`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

DEMO_TEXTS = (
    "A warm, funny and beautifully acted film that earns every one of its tears.",
    "The plot is a mess and the jokes fall flat; two hours I will never get back.",
    "An ambitious, visually stunning epic with a heart as big as its budget.",
    "Dull, lifeless and far too long.",
)

_INFER_EPILOG = """examples:
  secmoe infer --text "a gorgeous, moving film" --text "tedious and overlong"
  secmoe infer --checkpoint runs/student_d/model.npz --strategy stc --text "..." --json
"""
_EVAL_EPILOG = """examples:
  secmoe eval --private --limit 64                   # the embedded demo model, 64 examples
  secmoe eval --checkpoint runs/student_a/model.npz --private --json > eval_a.json
  secmoe eval --checkpoint runs/student_d/model.npz --private --strategy dispatch
  # the full test split of a MiniLM-size student on a 2-core CPU (what docs/inference.md ran):
  secmoe eval --checkpoint CKPT --private --embedding public --batch-size 4 --max-batch-tokens 64

Batches hold texts of one sequence bucket (lengths rounded up to 16); each bucket compiles
one program, freed when the bucket is done. --out is rewritten after every bucket.
"""


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _options(args: argparse.Namespace) -> Any:
    from .secure import SecureOptions

    return SecureOptions(
        moe_strategy=args.strategy, gelu_strategy=args.gelu_strategy, embedding=args.embedding
    )


def _load(args: argparse.Namespace) -> Any:
    """The checkpoint (default: the embedded demo model) set up for private inference."""
    from . import assets
    from .secure import SecureModel

    path = args.checkpoint or assets.default_model_path()
    t0 = time.perf_counter()
    model = SecureModel.from_checkpoint(str(path), opts=_options(args))
    model.setup_seconds = time.perf_counter() - t0
    # the embedded default is named by its place in the package, not by this machine's path
    model.path = str(args.checkpoint) if args.checkpoint else "secmoe_jax/assets/demo_student.npz"
    return model


def _classify_report(model: Any, texts: list[str]) -> dict[str, Any]:
    from . import comm

    ids, mask = model.encode(texts)
    t0 = time.perf_counter()
    preds = model.classify(texts)  # compiles first (both phases at once), then runs
    first = time.perf_counter() - t0
    seconds = model.last_timing["online_seconds"]  # the run alone, compilation excluded
    cost = model.cost(*ids.shape)
    return {
        "checkpoint": model.path,
        "model": _model_summary(model),
        "predictions": preds,
        "all_agree": all(p["agree"] for p in preds),
        "batch": int(ids.shape[0]),
        "seq_len": int(ids.shape[1]),
        "online_bytes": cost.online_bytes,
        "online_mb": cost.online_bytes / 1e6,
        "rounds": cost.rounds,
        "offline_bytes": cost.offline_bytes,
        "seconds": seconds,
        "dealer_seconds": model.last_timing["dealer_seconds"],
        "compile_seconds": model.last_timing["compile_seconds"],
        "first_call_seconds": first,
        "setup_seconds": model.setup_seconds,
        "total_seconds": model.setup_seconds + first,
        "lan_seconds": cost.estimate(seconds, comm.LAN),
        "wan_seconds": cost.estimate(seconds, comm.WAN),
    }


def _model_summary(model: Any) -> dict[str, Any]:
    cfg = model.cfg
    out = {
        "layers": cfg.layers,
        "hidden": cfg.hidden,
        "heads": cfg.heads,
        "ffn": cfg.ffn,
        "vocab": cfg.vocab_size,
        "gelu": cfg.gelu,
        "softmax": cfg.softmax,
        "labels": list(model.label_names),
    }
    if cfg.moe is not None:
        out["moe"] = {"experts": cfg.moe.experts, "top_k": cfg.moe.top_k}
        out["moe_strategy"] = model.opts.moe_strategy
    return out


def _print_report(rep: dict[str, Any], title: str) -> None:
    m = rep["model"]
    print(f"{title}: {rep['checkpoint']}")
    print(
        f"  model: {m['layers']} layers, hidden {m['hidden']}, {m['heads']} heads, FFN "
        f"{m['ffn']}, GeLU {m['gelu']}, softmax {m['softmax']}"
        + (f", MoE {m['moe']['experts']} experts ({m['moe_strategy']})" if "moe" in m else "")
    )
    print()
    w = max(len(p["text"]) for p in rep["predictions"])
    w = min(w, 72)
    print(f"  {'text':<{w}}  {'private':>8} {'p':>5}  {'plaintext':>9}  agree")
    for p in rep["predictions"]:
        text = p["text"] if len(p["text"]) <= w else p["text"][: w - 3] + "..."
        print(
            f"  {text:<{w}}  {p['label']:>8} {p['probability']:5.2f}  "
            f"{p['plaintext_label']:>9}  {'yes' if p['agree'] else 'NO'}"
        )
    diff = max(p["max_logit_diff"] for p in rep["predictions"])
    print()
    print(
        f"  plaintext check: {'all predictions agree' if rep['all_agree'] else 'DISAGREEMENT'}"
        f"; max |private - plaintext| logit difference {diff:.2e}"
    )
    print(
        f"  cost (batch {rep['batch']}, {rep['seq_len']} tokens, both parties): "
        f"{rep['online_mb']:.1f} MB online, {rep['rounds']} rounds, "
        f"{rep['offline_bytes'] / 1e6:.1f} MB dealer material"
    )
    print(
        f"  time: online {rep['seconds']:.2f} s (both parties on this machine, simulate mode), "
        f"dealer {rep['dealer_seconds']:.2f} s; compilation {rep['compile_seconds']:.1f} s; "
        f"total with setup {rep['total_seconds']:.1f} s"
    )
    print(
        f"  estimated end to end: LAN (1 Gbps, 0.5 ms) {rep['lan_seconds']:.2f} s, "
        f"WAN (400 Mbps, 4 ms) {rep['wan_seconds']:.2f} s"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    model = _load(args)
    rep = _classify_report(model, list(DEMO_TEXTS))
    if args.json:
        _print_json(rep)
    else:
        _print_report(rep, "secmoe demo: private sentiment classification with")
    return 0 if rep["all_agree"] else 1


def cmd_infer(args: argparse.Namespace) -> int:
    texts = list(args.text or [])
    if args.file:
        with open(args.file, encoding="utf-8") as f:
            texts += [line.strip() for line in f if line.strip()]
    if not texts:
        print("secmoe infer: give at least one --text or a --file", file=sys.stderr)
        return 2
    model = _load(args)
    rep = _classify_report(model, texts)
    if args.json:
        _print_json(rep)
    else:
        _print_report(rep, "secmoe infer")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .secure import evaluate
    from .secure._eval import peak_rss_gb
    from .training import load_data_file, load_rotten_tomatoes

    if not args.private:
        print(
            "secmoe eval: pass --private (plaintext-only evaluation is `secmoe train`'s job)",
            file=sys.stderr,
        )
        return 2
    model = _load(args)
    if args.data:
        data = load_data_file(
            args.data, text_column=args.text_column, label_column=args.label_column
        )
    else:
        data = load_rotten_tomatoes()
    texts, labels = list(data.texts[args.split]), list(data.labels[args.split])
    if args.limit:
        texts, labels = texts[: args.limit], labels[: args.limit]
    if not texts:
        print(f"secmoe eval: the {args.split} split is empty", file=sys.stderr)
        return 2
    show = not args.quiet and sys.stderr.isatty()
    t0 = time.perf_counter()
    done, last_line = [0], [t0]

    def log_line(n: int) -> None:  # not a terminal (a log file): a line a minute
        done[0] += n
        now = time.perf_counter()
        if not args.quiet and now - last_line[0] >= 60.0:
            last_line[0] = now
            rate = done[0] / (now - t0)
            eta = (len(texts) - done[0]) / max(rate, 1e-9)
            print(
                f"[private eval] {done[0]}/{len(texts)} examples {rate:.2f} ex/s "
                f"ETA {eta / 60:.1f} min, peak memory {peak_rss_gb():.1f} GB",
                file=sys.stderr,
                flush=True,
            )

    def full(res: dict[str, Any]) -> dict[str, Any]:
        return {
            "checkpoint": model.path,
            "student": model.meta.get("extra", {}).get("student"),
            "split": args.split,
            "model": _model_summary(model),
            **res,
            "wall_minutes": (time.perf_counter() - t0) / 60,
            "command": "secmoe " + " ".join(sys.argv[1:]) if sys.argv else None,
        }

    def write(rep: dict[str, Any]) -> None:
        if args.out:  # written after every bucket too: a run that dies leaves its partial report
            with open(args.out, "w", encoding="utf-8") as f:
                json.dump(rep, f, indent=2)
                f.write("\n")

    with tqdm(total=len(texts), desc="private eval", unit="ex", disable=not show) as bar:
        res = evaluate(
            model,
            texts,
            labels,
            batch_size=args.batch_size,
            max_batch_tokens=args.max_batch_tokens,
            progress=bar.update if show else log_line,
            partial=lambda res: write(full(res)),
        )
    rep = full(res)
    write(rep)
    if args.json:
        _print_json(rep)
    else:
        print(f"secmoe eval: {rep['checkpoint']} on {res['examples']} {args.split} examples")
        print(f"  private accuracy   {res['private_accuracy']:.4f}")
        print(f"  plaintext accuracy {res['plaintext_accuracy']:.4f}")
        print(f"  agreement          {res['agreement']:.4f}")
        print(f"  max logit diff     {res['max_logit_diff']:.2e}")
        print(
            f"  per example: {res['online_bytes_per_example'] / 1e6:.1f} MB online, "
            f"{res['rounds']} rounds per batch of {res['batch_size']}, "
            f"{res['seconds_per_example']:.2f} s (LAN {res['lan_seconds_per_example']:.2f} s, "
            f"WAN {res['wan_seconds_per_example']:.2f} s)"
        )
    return 0


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help="a `secmoe train` model.npz (default: the embedded demo model)",
    )
    p.add_argument(
        "--strategy",
        default="dispatch",
        choices=("all", "stc", "dispatch"),
        help="MoE strategy for MoE checkpoints (default dispatch)",
    )
    p.add_argument(
        "--gelu-strategy",
        default="stc",
        choices=("stc", "cts"),
        help="piecewise GeLU evaluation (default stc: Select-Then-Compute)",
    )
    p.add_argument(
        "--embedding",
        default="private",
        choices=("private", "public"),
        help="private: secret one-hot tokens times the secret table (default); public: the "
        "client looks tokens up in a public table (cheaper; reveals the table)",
    )
    p.add_argument("--json", action="store_true", help="print a JSON report")


def register(sub: Any) -> None:
    """Adds ``demo``, ``infer`` and ``eval`` to the top-level subparsers."""
    p = sub.add_parser(
        "demo",
        help="classify a few sentences privately with the embedded model",
        description="The main job on an embedded default: classify four example sentences "
        "privately (two parties, secret weights and secret tokens) with the small distilled "
        "student shipped in the package, check against the plaintext model and print the "
        "cost. Offline; under a minute on a 2-core CPU.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_model_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "infer",
        help="classify your own sentences privately",
        description="Private classification of --text / --file sentences with a checkpoint "
        "(the server's secret weights) on the client's secret tokens; only the client learns "
        "the logits.",
        epilog=_INFER_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--text", action="append", help="a sentence (repeatable)")
    p.add_argument("--file", help="a text file, one sentence per line")
    _add_model_args(p)
    p.set_defaults(func=cmd_infer)

    p = sub.add_parser(
        "eval",
        help="accuracy of a checkpoint under MPC on a test split",
        description="Runs a labelled split through private inference in batches and reports "
        "private accuracy, plaintext accuracy of the same weights, prediction agreement, "
        "online bytes, rounds and seconds per example.",
        epilog=_EVAL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--private", action="store_true", help="run under MPC (required)")
    p.add_argument("--limit", type=_positive, help="only the first N examples of the split")
    p.add_argument("--batch-size", type=_positive, default=8, help="examples per query (default 8)")
    p.add_argument(
        "--max-batch-tokens",
        type=_positive,
        metavar="N",
        help="cap batch x padded length: long buckets use smaller batches (bounds memory)",
    )
    p.add_argument(
        "--split", default="test", choices=("train", "validation", "test"), help="default test"
    )
    p.add_argument("--data", metavar="FILE", help="your CSV/JSONL (default: Rotten Tomatoes)")
    p.add_argument("--text-column", default="text", help="text column of --data")
    p.add_argument("--label-column", default="label", help="label column of --data")
    p.add_argument("--out", help="also write the JSON report to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_args(p)
    p.set_defaults(func=cmd_eval)


_BENCH_MODEL_EPILOG = """examples:
  secmoe bench model --preset bert-base-layer --json        # exact and mpc-friendly, seq 128
  secmoe bench model --preset minilm --batch 8 --json        # per-example cost at batch 8
  secmoe bench model --preset moe-small --strategy stc,dispatch
  secmoe bench model --preset bert-base-layer --seq 32,64,128 --plot seq.png
"""


def cmd_bench_model(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .bench._model_bench import PRESETS, model_records

    seqs = tuple(int(s) for s in args.seq.split(",")) if args.seq else None
    variants = tuple(v.strip() for v in args.variant.split(",") if v.strip())
    strategies = tuple(s.strip() for s in args.strategy.split(",") if s.strip())
    p = PRESETS[args.preset]
    n = len(variants) * len(seqs or (p["seq"],)) * (len(strategies) if "experts" in p else 1)
    show = not args.quiet and sys.stderr.isatty()
    with tqdm(total=n, desc=f"bench model {args.preset}", disable=not show) as bar:

        def progress(rec: dict[str, Any]) -> None:
            bar.update(1)
            if not show and not args.quiet:
                print(_fmt_model(rec), file=sys.stderr)

        records = model_records(
            args.preset,
            variants=variants,
            seqs=seqs,
            batch=args.batch,
            strategies=strategies,
            repeats=args.repeats,
            progress=progress,
        )
    doc = {"meta": _bench_meta(args), "records": records}
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    if args.plot:
        from .bench._plot import plot_records

        plot_records(
            records,
            x="seq",
            ys=("online_bytes", "seconds"),
            series="variant" if "experts" not in p else "strategy",
            path=args.plot,
            title=f"secmoe bench model --preset {args.preset} (batch {args.batch})",
        )
    if args.json:
        _print_json(doc)
    elif show or args.quiet:
        for rec in records:
            print(_fmt_model(rec))
    return 0


def _fmt_model(r: dict[str, Any]) -> str:
    s = f" {r['strategy']}" if r["experts"] else ""
    return (
        f"{r['preset']} {r['variant']}{s} seq {r['seq']} batch {r['batch']}: "
        f"{r['online_bytes'] / 1e6:.1f} MB, {r['rounds']} rounds, {r['seconds']:.3f} s "
        f"(dealer {r['dealer_seconds']:.3f} s, offline {r['offline_bytes'] / 1e6:.0f} MB), "
        f"max err {r['max_abs_err']:.1e}"
    )


def _bench_meta(args: argparse.Namespace) -> dict[str, Any]:
    import os
    import platform

    import jax

    return {
        "command": "secmoe " + " ".join(sys.argv[1:]),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "mode": "simulate (both parties in one process)",
        "date": time.strftime("%Y-%m-%d"),
    }


def register_bench(bsub: Any) -> None:
    """Adds ``bench model`` to the ``bench`` subparsers."""
    from .bench._model_bench import PRESETS

    b = bsub.add_parser(
        "model",
        help="random-weight model presets (BERT-base layer, MiniLM, small MoE)",
        description="Timing presets for comparison with published systems: one record per "
        "(variant, sequence length[, MoE strategy]) with preset, variant, gelu, softmax, "
        "strategy, seq, batch, online_bytes, rounds, offline_bytes, seconds, dealer_seconds, "
        "max_abs_err (against the float model on the same weights), LAN/WAN estimates and "
        "per-example bytes and seconds. Variants: exact (exact-form softmax and GeLU, what "
        "CrypTen and SPU run) and mpc-friendly (2quad softmax, secmoe6 GeLU by STC).",
        epilog=_BENCH_MODEL_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    b.add_argument("--preset", required=True, choices=sorted(PRESETS), help="what to run")
    b.add_argument(
        "--variant", default="exact,mpc-friendly", help="exact, mpc-friendly or both (default)"
    )
    b.add_argument("--seq", help="comma-separated sequence lengths (default: the preset's)")
    b.add_argument("--batch", type=int, default=1, help="sequences per query (default 1)")
    b.add_argument("--strategy", default="all,stc,dispatch", help="MoE strategies (moe-small only)")
    b.add_argument("--repeats", type=int, default=3, help="timed runs per record (median)")
    b.add_argument("--json", action="store_true", help="print the records as JSON")
    b.add_argument("--out", help="also write the records to this JSON file")
    b.add_argument("--plot", metavar="FILE.png", help="plot bytes and seconds against --seq")
    b.add_argument("--quiet", action="store_true", help="no progress output")
    b.set_defaults(func=cmd_bench_model)
