"""`declip robustness`: a checkpoint tested under growing test-time perturbations (data/perturb.py),
written as degradation curves (CSV + PNG) of the metrics that describe themselves as curves
(metrics/base.py ``MetricInfo.curve``: detection AUC / AP, IoU, best-threshold F1, pixel AUC, and any
plugin metric that says so).

Layout::

    <out>/runs/<name>_<kind>-<level>_<time>/   one `declip test` run per level (level 0: clean)
    <out>/robustness_<kind>.csv                  kind, level, dataset, metric, value
    <out>/robustness_<kind>_<metric>.png         the metric against the level, one line per test set

:func:`report_section` is this folder's part of the HTML report (declip_plugin/report.py).
"""
import csv
import glob
import html
import os

from ..atomicio import write_csv_rows
from ..data import perturb as _perturb
from ..errors import ConfigError
from ..metrics.base import curve_metrics
from ..run_folder import RunDir

DEFAULT_LEVELS = {"jpeg": [90, 70, 50, 30], "blur": [0.5, 1.0, 2.0, 3.0], "noise": [2, 5, 10, 20],
                  "downscale": [1.5, 2, 3, 4]}
RUNS = "runs"


def curves_path(out_dir, kind):
    return os.path.join(os.fspath(out_dir), f"robustness_{kind}.csv")


def plot_path(out_dir, kind, metric):
    return os.path.join(os.fspath(out_dir), f"robustness_{kind}_{metric}.png")


def _measure(detector_config, weights_path, kind, levels, overrides, out_dir, test_fn):
    """One test run per level (clean first); returns the curve rows ``(level, dataset, metric, value)``."""
    base = os.path.splitext(os.path.basename(str(detector_config)))[0]
    rows = []
    for level in [None] + levels:
        label = "clean" if level is None else f"{kind}-{level:g}"
        ov = {**(overrides or {}), "log_dir": os.path.join(out_dir, RUNS), "name": f"{base}_{label}",
              "perturb": None if level is None else f"{kind}={level:g}"}
        run_dir = test_fn(detector_config, weights_path, ov)
        for tested in RunDir(run_dir).tests():
            metrics = tested.read_metrics().get("metrics", {})
            for m in curve_metrics(metrics):
                v = metrics.get(m)
                if isinstance(v, (int, float)) and v == v:
                    rows.append((0 if level is None else level, tested.dataset, m, float(v)))
    return rows


def sweep(detector_config, weights_path, kind, levels=None, overrides=None, out_dir="logs/robustness", test_fn=None):
    """Test at the clean level and at every level of ``kind``; returns {"csv": path, "plots": [paths]}."""
    if kind not in _perturb.KINDS:
        raise ConfigError(f"robustness: unknown perturbation {kind!r}; kinds: {', '.join(_perturb.KINDS)}")
    levels = list(levels or DEFAULT_LEVELS[kind])
    for lv in levels:
        _perturb.parse(f"{kind}={lv}")  # each level valid before anything runs
    if test_fn is None:
        from .run import test as test_fn
    base = os.path.splitext(os.path.basename(str(detector_config)))[0]
    rows = _measure(detector_config, weights_path, kind, levels, overrides, out_dir, test_fn)
    csv_path = write_csv_rows(curves_path(out_dir, kind), [["kind", "level", "dataset", "metric", "value"]]
                              + [[kind, f"{level:g}", ds, m, f"{v:.6g}"] for level, ds, m, v in rows])
    from ..plots import line_plot

    xs = [0] + levels
    plots = []
    for m in curve_metrics():
        mine = [r for r in rows if r[2] == m]
        if not mine:
            continue
        lines = {}
        for ds in sorted({r[1] for r in mine}):
            vals = {r[0]: r[3] for r in mine if r[1] == ds}
            lines[ds] = [vals.get(x) for x in xs]
        labels = ["clean"] + [f"{x:g}" for x in levels]
        plots.append(line_plot(plot_path(out_dir, kind, m), labels, lines, xlabel=f"{kind} ({_perturb.KINDS[kind]})",
                               ylabel=m, title=f"{base}: {m} under {kind}"))
    return {"csv": csv_path, "plots": plots, "rows": rows}


def _files(folder, pattern):
    return sorted(glob.glob(os.path.join(glob.escape(os.fspath(folder)), pattern)))


def report_section(folder):
    """The HTML report's section of a robustness folder: each curve CSV as a table, then the curves; "" when
    ``folder`` holds no robustness curves."""
    from ..report_html import figures, table

    tables = _files(folder, "robustness_*.csv")
    if not tables:
        return ""
    parts = [f"<h2>Robustness: {html.escape(os.fspath(folder))}</h2>"]
    for path in tables:
        with open(path, encoding="utf-8") as f:
            rows = list(csv.reader(f))
        if rows:
            parts.append(table(rows[0], rows[1:]))
    parts.append(figures(_files(folder, "robustness_*.png")))
    return "\n".join(parts)
