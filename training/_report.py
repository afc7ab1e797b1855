"""Renders the training results table (``docs/training.md`` style) from metrics.json files."""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence


def render_results_table(paths: Sequence[str | pathlib.Path]) -> str:
    """A markdown table (model, nonlinearities, accuracy, minutes, command) from metrics files.

    Args:
      paths: ``metrics.json`` files written by ``secmoe train teacher`` / ``train distill``.
        Teachers come first, then students in the given order.

    Returns:
      The table as markdown text, then the runs' notes (conditions, shortened schedules), if
      any, ending with a newline.
    """
    rows = [json.loads(pathlib.Path(p).read_text()) for p in paths]
    rows.sort(key=lambda m: m.get("kind") != "teacher")
    teacher_acc = next((m["test_accuracy"] for m in rows if m.get("kind") == "teacher"), None)
    out = [
        "| model | GeLU / softmax | test accuracy | vs. teacher | minutes | command |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in rows:
        c = m.get("config", {})
        nl = f"{c.get('gelu', '?')} / {c.get('softmax', '?')}"
        if c.get("moe"):
            nl += f", MoE {c['moe']['experts']}x top-{c['moe']['top_k']}"
        acc = m["test_accuracy"]
        ref = m.get("teacher_test_accuracy", teacher_acc)
        delta = "" if m.get("kind") == "teacher" or ref is None else f"{100 * (acc - ref):+.1f} pt"
        out.append(
            f"| {m['name']} | {nl} | {acc:.4f} | {delta} | {m['minutes']:.1f} | `{m['command']}` |"
        )
    notes = [f"- {m['name']}: {m['note']}" for m in rows if m.get("note")]
    if notes:
        out += ["", "Notes:", "", *notes]
    return "\n".join(out) + "\n"
