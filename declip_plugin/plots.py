"""Figures (matplotlib, headless Agg backend): heat-maps of a protocol grid, metric curves, tables.

Every function writes one PNG atomically and returns its path (``path=None``: returns the PNG bytes).
"""
import io
import math

from .atomicio import atomic_write_bytes
from .metrics.base import info_of


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, plt):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue() if path is None else atomic_write_bytes(path, buf.getvalue())


def _scale(metric):
    return 0.0, float(info_of(metric).scale)


def _short(value, metric):
    """A figure's annotation: one decimal on a 0-100 scale, two on 0-1."""
    return f"{value:.1f}" if info_of(metric).scale > 1 else f"{value:.2f}"


def heatmap(path, rows, cols, values, *, metric, title=""):
    """``values[i][j]`` (None = missing) of ``metric`` (its scale and name from its MetricInfo) in row ``rows[i]``
    x column ``cols[j]``, annotated, as a PNG."""
    plt = _pyplot()
    lo, hi = _scale(metric)
    data = [[math.nan if v is None else float(v) for v in r] for r in values]
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 2.0, 0.7 * len(rows) + 1.6))
    im = ax.imshow(data, cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
    ax.set_xticks(range(len(cols)), labels=cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.set_xlabel("tested on")
    ax.set_ylabel("trained on")
    for i, r in enumerate(data):
        for j, v in enumerate(r):
            if not math.isnan(v):
                text = _short(v, metric)
                ax.text(j, i, text, ha="center", va="center", color="white" if v < (lo + hi) / 2 else "black")
    fig.colorbar(im, ax=ax, label=info_of(metric).label)
    ax.set_title(title, fontsize=9)
    return _save(fig, path, plt)


def line_plot(path, xs, lines, xlabel="", ylabel="", title=""):
    """One line per ``lines[name] = [y or None per x]`` over categorical ``xs``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    pos = list(range(len(xs)))
    for name, ys in lines.items():
        pts = [(p, y) for p, y in zip(pos, ys) if y is not None]
        if pts:
            style = "--" if name.endswith("OOD") else "-"
            ax.plot([p for p, _ in pts], [y for _, y in pts], style, marker="o", label=name)
    ax.set_xticks(pos, labels=[str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=9)
    return _save(fig, path, plt)


def table_png(path, header, rows, title=""):
    """A table as a picture (the leaderboard's ``--format png``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(header)), 0.35 * len(rows) + 0.9))
    ax.axis("off")
    table = ax.table(cellText=rows, colLabels=header, loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(len(header))))
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path, plt)


def summary_figure(path, panels):
    """The report's first figure: one panel per task, per method its ID and OOD mean of the task's headline
    metric as two bars. ``panels``: [(title, metric, [(method, id_mean, ood_mean, published)])]; a
    published (not measured) row is drawn hatched, a missing value is left out."""
    plt = _pyplot()
    n = max(1, len(panels))
    widest = max((len(rows) for _, _, rows in panels), default=1)
    fig, axes = plt.subplots(1, n, figsize=(max(3.2, 0.9 * widest + 1.6) * n, 3.6), squeeze=False)
    for ax, (title, metric, rows) in zip(axes[0], panels):
        lo, hi = _scale(metric)
        for i, (method, idm, oodm, published) in enumerate(rows):
            for dx, value, colour, label in ((-0.2, idm, "#1f77b4", "ID"), (0.2, oodm, "#ff7f0e", "OOD")):
                if value is None:
                    continue
                ax.bar(i + dx, value, 0.38, color=colour, hatch="//" if published else None,
                       edgecolor="white" if published else colour, label=label if i == 0 else None)
                ax.text(i + dx, value, _short(value, metric), ha="center",
                        va="bottom", fontsize=7)
        ax.set_xticks(range(len(rows)), labels=[r[0] + (" *" if r[3] else "") for r in rows], rotation=25,
                      ha="right", fontsize=8)
        ax.set_ylim(lo, hi * 1.22)  # room above the bars for the legend
        if hi <= 1:
            ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)  # chance
        ax.set_ylabel(info_of(metric).label)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        uniq = dict(zip(labels, handles))
        ax.legend(uniq.values(), uniq.keys(), fontsize=7, loc="upper right", ncol=2)
    if any(r[3] for _, _, rows in panels for r in rows):
        fig.text(0.01, -0.02, "* published figures (hatched), not measured here", fontsize=7)
    return _save(fig, path, plt)
