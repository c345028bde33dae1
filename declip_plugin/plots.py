"""Figures (matplotlib, headless Agg backend): heat-maps of a protocol grid, metric curves, tables.

Every function writes one PNG atomically and returns its path.
"""
import io
import math

from .atomicio import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path, plt):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _scale(metric):
    return (0.0, 100.0) if metric == "iou" else (0.0, 1.0)


def heatmap(path, rows, cols, values, title="", metric="iou"):
    """``values[i][j]`` (None = missing) of row ``rows[i]`` x column ``cols[j]``, annotated, as a PNG."""
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
                text = f"{v:.1f}" if metric == "iou" else f"{v:.2f}"
                ax.text(j, i, text, ha="center", va="center", color="white" if v < (lo + hi) / 2 else "black")
    fig.colorbar(im, ax=ax, label=metric)
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
