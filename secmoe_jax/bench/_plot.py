"""Figures of benchmark records (``secmoe bench moe --plot``, reusable by ``bench model``).

matplotlib is optional (the ``plot`` and ``dev`` extras); it is imported lazily, with the Agg
backend through the object-oriented API (no pyplot, no global backend switch), so importing
this module never needs it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Y = str | tuple[str, str] | tuple[str, str, float]


def _matplotlib() -> tuple[Any, Any, Any]:
    try:
        from matplotlib import ticker
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "plotting needs matplotlib: pip install matplotlib "
            "(or install secmoe-jax with the 'plot' or 'dev' extra)"
        ) from exc
    return Figure, FigureCanvasAgg, ticker


def _y_spec(y: Y) -> tuple[str, str, float]:
    if isinstance(y, str):
        return y, y, 1.0
    if len(y) == 2:
        return y[0], y[1], 1.0
    return y[0], y[1], float(y[2])


def plot_records(
    records: Sequence[Mapping[str, Any]],
    *,
    x: str,
    ys: Sequence[Y],
    series: str,
    path: str,
    title: str | None = None,
    xlabel: str | None = None,
    logx: bool = True,
    logy: bool = True,
) -> None:
    """Write a PNG with one panel per ``ys`` entry: ``y`` against ``x``, one line per series.

    Args:
      records: benchmark records (dicts). A record whose ``x`` or ``y`` is missing or None
        (skipped, cost only) is left out of that panel.
      x: the field on the x axis (e.g. ``"experts"``, or the sequence length for
        ``bench model``); log2 scale when ``logx``.
      ys: the panels: a field name, ``(field, label)`` or ``(field, label, factor)`` (the
        value is multiplied by ``factor``, e.g. ``1e-6`` for bytes -> MB).
      series: the field whose values make the lines (e.g. ``"strategy"``), in order of first
        appearance.
      path: output file (PNG).
      title: figure title.
      xlabel: x-axis label (default ``x``).
      logx: log2 x axis. logy: log10 y axes.

    Raises:
      ImportError: matplotlib is not installed (the message says ``pip install matplotlib``).
      ValueError: no record has a value for any panel.
    """
    if not ys:
        raise ValueError("plot_records: give at least one y field")
    specs = [_y_spec(y) for y in ys]
    names: list[Any] = []
    for r in records:
        if r.get(series) not in names:
            names.append(r.get(series))
    panels = []
    for field, label, factor in specs:
        lines = []
        for name in names:
            pts = sorted(
                (float(r[x]), float(r[field]) * factor)
                for r in records
                if r.get(series) == name and r.get(x) is not None and r.get(field) is not None
            )
            if pts:
                lines.append((name, pts))
        panels.append((label, lines))
    if not any(lines for _, lines in panels):
        raise ValueError(f"plot_records: no record has {x!r} and any of {[s[0] for s in specs]}")
    figure_cls, canvas_cls, ticker = _matplotlib()
    plain = ticker.FuncFormatter(lambda v, _: f"{v:g}")
    some = ticker.FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else "")
    fig = figure_cls(figsize=(5.2 * len(panels), 4.0), layout="constrained")
    canvas_cls(fig)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (label, lines) in zip(axes, panels, strict=True):
        for name, pts in lines:
            xs, vs = zip(*pts, strict=True)
            ax.plot(xs, vs, marker="o", label=str(name))
        if logx:
            ax.set_xscale("log", base=2)
            ticks = sorted({px for _, pts in lines for px, _ in pts})
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        if logy:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(plain)
            ax.yaxis.set_minor_formatter(some)
            ax.tick_params(axis="y", which="minor", labelsize=7)
        ax.set_xlabel(xlabel or x)
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if lines:
            ax.legend(title=series)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=110)


__all__ = ["plot_records"]
