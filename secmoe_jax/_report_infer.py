"""``docs/inference.md``: private-inference results rendered from the JSON the commands write.

Sources (all under ``docs/results/``):

* ``model/*.json`` — ``secmoe bench model --out`` documents (``{"meta", "records"}``);
* ``eval/*.json`` — ``secmoe eval --private --out`` reports (one file per checkpoint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Published peers measured on this machine class (REFERENCES: CrypTen and SPU SEMI2K, one
# BERT-base layer, sequence 128, both parties on a 2-core CPU). Shown next to our records.
PEERS_BERT_LAYER = (
    ("CrypTen (exact)", 3.24, 765, 190),
    ("SPU SEMI2K (exact)", 7.8, 756, 293),
    ("SPU CHEETAH, dealer-free 2PC (exact)", 278.0, 2170, None),
)


def _mb(b: float) -> str:
    return f"{b / 1e6:,.1f}"


def render_model(docs: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "## Model presets (`secmoe bench model`)",
        "",
        "Random weights, both parties in simulate mode on one 2-core CPU; seconds are the median",
        "online time after compilation (dealer material generated and timed separately);",
        "online MB counts both parties; `max abs err` is against the float32 Flax model on the",
        "same weights (layer output or logits).",
        "",
    ]
    for name, doc in sorted(docs.items()):
        meta, records = doc.get("meta", {}), doc.get("records", [])
        out += [f"### {name}", ""]
        if meta.get("command"):
            out += [f"Command: `{meta['command']}` ({meta.get('date', '')}).", ""]
        if meta.get("note"):
            out += [f"Note: {meta['note']}.", ""]
        head = (
            "| preset | variant | GeLU | softmax | MoE strategy | seq | batch | online MB | "
            "rounds | offline MB | seconds | dealer s | max abs err | LAN s | WAN s | "
            "MB / example | s / example |"
        )
        out += [head, "|" + "---|" * (head.count("|") - 1)]
        for r in records:
            out.append(
                f"| {r['preset']} | {r['variant']} | {r['gelu']} | {r['softmax']} | "
                f"{r['strategy'] if r.get('experts') else '-'} | {r['seq']} | {r['batch']} | "
                f"{_mb(r['online_bytes'])} | {r['rounds']} | {_mb(r['offline_bytes'])} | "
                f"{r['seconds']:.3f} | {r['dealer_seconds']:.3f} | {r['max_abs_err']:.2e} | "
                f"{r['lan_seconds']:.3f} | {r['wan_seconds']:.3f} | "
                f"{_mb(r['online_bytes_per_example'])} | {r['seconds_per_example']:.3f} |"
            )
        if any(r["preset"] == "bert-base-layer" for r in records):
            out += [
                "",
                "Peers on this machine class (one BERT-base layer, sequence 128; from the "
                "project's reference measurements):",
                "",
                "| system | seconds | online MB | rounds |",
                "|---|---|---|---|",
            ]
            for sys_, s, mb, rd in PEERS_BERT_LAYER:
                out.append(f"| {sys_} | {s} | {mb:,} | {rd if rd is not None else '-'} |")
        out.append("")
    return out


def _opt(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _batch(r: dict[str, Any]) -> str:
    cap = r.get("max_batch_tokens")
    return f"{r['batch_size']}" + (f", ≤ {cap} tokens" if cap else "")


def render_eval(reports: dict[str, dict[str, Any]]) -> list[str]:
    out = [
        "## Accuracy under MPC (`secmoe eval --private`)",
        "",
        "The trained checkpoints themselves run privately on the test split (split by movie);",
        "`plaintext` is the same weights in float32. Per-example cost at the batch size shown",
        "(bytes exact from the traced cost; seconds: both parties in simulate mode, compilation",
        'excluded). A run that stopped early leaves a partial report, marked "(partial)".',
        "",
        "| checkpoint | student | embedding | MoE strategy | examples | private acc | "
        "plaintext acc | Δ (points) | agreement | max logit diff | batch | MB / example | "
        "rounds / batch | s / example | WAN s / example | wall min | peak GB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in sorted(reports.items()):
        delta = 100 * (r["private_accuracy"] - r["plaintext_accuracy"])
        done = f"{r['examples']}" + (" (partial)" if r.get("complete") is False else "")
        out.append(
            f"| {name} | {r.get('student') or '-'} | {r.get('embedding', 'private')} | "
            f"{r.get('moe_strategy') or '-'} | {done} | "
            f"{r['private_accuracy']:.4f} | {r['plaintext_accuracy']:.4f} | {delta:+.2f} | "
            f"{r['agreement']:.4f} | {r['max_logit_diff']:.2e} | {_batch(r)} | "
            f"{_mb(r['online_bytes_per_example'])} | {r['rounds']} | "
            f"{r['seconds_per_example']:.3f} | {r['wan_seconds_per_example']:.3f} | "
            f"{_opt(r.get('wall_minutes'), '.1f')} | {_opt(r.get('peak_rss_gb'), '.1f')} |"
        )
    cmds = [r.get("command") for _, r in sorted(reports.items()) if r.get("command")]
    if cmds:
        out += ["", "Commands:", ""] + [f"- `{c}`" for c in cmds]
    notes = [f"- {name}: {r['note']}" for name, r in sorted(reports.items()) if r.get("note")]
    if notes:
        out += ["", "Notes:", "", *notes]
    out.append("")
    return out


def render_demo(rep: dict[str, Any]) -> list[str]:
    """The ``secmoe demo --json`` record: predictions, plaintext check, cost, wall time."""
    m = rep["model"]
    out = [
        "## The demo (`secmoe demo`)",
        "",
        f"The embedded default model ({m['layers']} layers, hidden {m['hidden']}, GeLU "
        f"{m['gelu']}, softmax {m['softmax']}, vocabulary {m['vocab']}) classifies "
        f"{rep['batch']} sentences privately in one batch of {rep['seq_len']} tokens; a cold "
        "process (no compilation cache), times in seconds.",
        "",
        "| text | private | plaintext | agree | max logit diff |",
        "|---|---|---|---|---|",
    ]
    for p in rep["predictions"]:
        out.append(
            f"| {p['text']} | {p['label']} ({p['probability']:.2f}) | {p['plaintext_label']} | "
            f"{'yes' if p['agree'] else 'NO'} | {p['max_logit_diff']:.1e} |"
        )
    out += [
        "",
        "| online MB | rounds | dealer MB | setup s | compile s | dealer s | online s | "
        "total s | LAN s | WAN s |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {rep['online_mb']:.1f} | {rep['rounds']} | {_mb(rep['offline_bytes'])} | "
        f"{rep['setup_seconds']:.1f} | {rep.get('compile_seconds', float('nan')):.1f} | "
        f"{rep['dealer_seconds']:.2f} | {rep['seconds']:.2f} | "
        f"{rep.get('total_seconds', float('nan')):.1f} | {rep['lan_seconds']:.2f} | "
        f"{rep['wan_seconds']:.2f} |",
        "",
    ]
    if rep.get("note"):
        out += [f"Note: {rep['note']}", ""]
    return out


def write_inference_doc(results_dir: str | Path, out_dir: str | Path) -> Path | None:
    """Writes ``inference.md`` if there are model or eval results; returns its path."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    models = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("model/*.json"))}
    evals = {p.stem: json.loads(p.read_text()) for p in sorted(results_dir.glob("eval/*.json"))}
    demo_path = results_dir / "demo.json"
    demo = json.loads(demo_path.read_text()) if demo_path.exists() else None
    if not models and not evals and demo is None:
        return None
    lines = [
        "# Private inference results",
        "",
        "Generated by `secmoe docs` from `docs/results/demo.json`, `docs/results/model/` and "
        "`docs/results/eval/`.",
        "",
    ]
    if demo is not None:
        lines += render_demo(demo)
    if evals:
        lines += render_eval(evals)
    if models:
        lines += render_model(models)
    path = out_dir / "inference.md"
    path.write_text("\n".join(lines))
    return path
