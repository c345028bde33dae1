"""`declip robustness`: a checkpoint tested under growing test-time perturbations (data/perturb.py),
written as degradation curves (CSV + PNG) for detection and localization metrics.

Layout::

    <out>/runs/<name>_<kind>-<level>_<time>/   one `declip test` run per level (level 0: clean)
    <out>/robustness_<kind>.csv                  kind, level, dataset, metric, value
    <out>/robustness_<kind>_<metric>.png         the metric against the level, one line per test set
"""
import csv
import io
import json
import os

from ..data import perturb as _perturb
from ..errors import ConfigError
from .rundir import atomic_write_text

DEFAULT_LEVELS = {"jpeg": [90, 70, 50, 30], "blur": [0.5, 1.0, 2.0, 3.0], "noise": [2, 5, 10, 20],
                  "downscale": [1.5, 2, 3, 4]}
CURVE_METRICS = ("auc", "ap", "iou", "f1_best", "pixel_auc")


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
    rows = []  # (level, dataset, metric, value)
    for level in [None] + levels:
        label = "clean" if level is None else f"{kind}-{level:g}"
        ov = {**(overrides or {}), "log_dir": os.path.join(out_dir, "runs"), "name": f"{base}_{label}",
              "perturb": None if level is None else f"{kind}={level:g}"}
        run_dir = test_fn(detector_config, weights_path, ov)
        test_root = os.path.join(run_dir, "test")
        for ds in sorted(os.listdir(test_root)):
            with open(os.path.join(test_root, ds, "metrics.json"), encoding="utf-8") as f:
                metrics = json.load(f).get("metrics", {})
            for m in CURVE_METRICS:
                v = metrics.get(m)
                if isinstance(v, (int, float)) and v == v:
                    rows.append((0 if level is None else level, ds, m, float(v)))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["kind", "level", "dataset", "metric", "value"])
    for level, ds, m, v in rows:
        w.writerow([kind, f"{level:g}", ds, m, f"{v:.6g}"])
    csv_path = os.path.join(out_dir, f"robustness_{kind}.csv")
    atomic_write_text(csv_path, buf.getvalue())
    from ..plots import line_plot

    xs = [0] + levels
    plots = []
    for m in CURVE_METRICS:
        mine = [r for r in rows if r[2] == m]
        if not mine:
            continue
        lines = {}
        for ds in sorted({r[1] for r in mine}):
            vals = {r[0]: r[3] for r in mine if r[1] == ds}
            lines[ds] = [vals.get(x) for x in xs]
        labels = ["clean"] + [f"{x:g}" for x in levels]
        path = os.path.join(out_dir, f"robustness_{kind}_{m}.png")
        plots.append(line_plot(path, labels, lines, xlabel=f"{kind} ({_perturb.KINDS[kind]})", ylabel=m,
                               title=f"{base}: {m} under {kind}"))
    return {"csv": csv_path, "plots": plots, "rows": rows}
