"""A protocol's outputs from its complete cells: per metric a grid (CSV, and every grid in grid.json) with
the in-domain (ID) and out-of-domain (OOD) means, means.csv, a heat-map per method (the paper's Figure 5),
the sweep plots (the paper's Figure 3: the metric against the swept value, ID and OOD lines), the
leaderboard and, once every cell is done, the HTML report.

Which metrics get a grid comes from the metrics (metrics/base.py ``MetricInfo.grid``) unless the plan names
them (a preset's ``metrics``); the heat-maps' metric is the plan's ``headline``, else the headline metric of
the task the grid's results belong to (``lead_metric``). Grids and the leaderboard hold complete cells only;
the others are listed as missing.
"""
import re

from ..atomicio import atomic_write_text, write_csv_rows
from ..errors import ConfigError
from ..metrics.base import grid_metrics, info_of, lead_metric
from . import folder
from .plan import is_in_domain


def metrics_present(p):
    """The grid metrics of protocol ``p``: the plan's, else those the metrics mark as grid metrics, that some
    complete cell reports."""
    found = set()
    for c in p.cells_done():
        for m in c["results"].values():
            found |= {k for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    wanted = p.plan.get("metrics")
    return [m for m in wanted if m in found] if wanted else grid_metrics(found)


def headline(p, metrics):
    """The metric of the heat-maps and the grid printed first: the plan's headline (a preset's), else the headline
    metric of the task these results belong to (metrics/base.py ``lead_metric``), else the first of ``metrics``
    (None if there is none)."""
    if p.plan.get("headline") in metrics:
        return p.plan["headline"]
    return lead_metric(metrics) or (metrics[0] if metrics else None)


def _num(v):
    return "" if v is None else f"{v:.6g}"


def grid_of(cells, tests, metric):
    """[{method, train, values: {test: value}}] in plan order."""
    rows = []
    for c in cells:
        vals = {}
        for t in tests:
            v = c["results"].get(t, {}).get(metric)
            vals[t] = v if isinstance(v, (int, float)) and v == v else None
        rows.append({"method": c["method"], "train": c["train"], "values": vals})
    return rows


def id_ood_means(train, values):
    """Mean over the in-domain test sets and over the others (None where there is none)."""
    ids = [v for t, v in values.items() if v is not None and is_in_domain(train, t)]
    oods = [v for t, v in values.items() if v is not None and not is_in_domain(train, t)]
    return (sum(ids) / len(ids) if ids else None), (sum(oods) / len(oods) if oods else None)


def grid_rows(grid, tests):
    """The CSV rows of one grid, the header first."""
    rows = [["method", "train"] + list(tests) + ["id_mean", "ood_mean"]]
    for row in grid:
        idm, oodm = id_ood_means(row["train"], row["values"])
        rows.append([row["method"], row["train"]] + [_num(row["values"].get(t)) for t in tests] + [_num(idm), _num(oodm)])
    return rows


def format_grid(out_dir, metric):
    """The grid of ``metric`` as a Markdown table (what the CLI prints)."""
    summary = folder.read_grid(out_dir)
    rows = summary["metrics"].get(metric)
    if rows is None:
        raise ConfigError(f"{out_dir}: no metric {metric!r} in {folder.GRID}; present: {', '.join(summary['metrics'])}")
    tests = summary["test"]
    fmt = info_of(metric).format
    head = ["method", "train"] + tests + ["ID mean", "OOD mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([r["method"], r["train"]] + [fmt(r["values"].get(t)) for t in tests]
                                       + [fmt(r["id_mean"]), fmt(r["ood_mean"])]) + " |")
    return "\n".join(lines) + "\n"


def _write_grids(p, grids, tests):
    """grid_<metric>.csv, grid.json and means.csv; returns (paths, the summary's rows per metric)."""
    paths = {"grids": [write_csv_rows(folder.grid_csv_path(p.out, m), grid_rows(g, tests)) for m, g in grids.items()]}
    summary = {"test": tests, "metrics": {}, "missing": p.missing()}
    mean_rows = [["method", "train", "metric", "id_mean", "ood_mean"]]
    for m, g in grids.items():
        summary["metrics"][m] = []
        for row in g:
            idm, oodm = id_ood_means(row["train"], row["values"])
            summary["metrics"][m].append({**row, "id_mean": idm, "ood_mean": oodm})
            mean_rows.append([row["method"], row["train"], m, _num(idm), _num(oodm)])
    folder.write_grid(p.out, summary)
    paths["means"] = [write_csv_rows(folder.means_path(p.out), mean_rows)]
    return paths, summary["metrics"]


def _write_heatmaps(p, grid, metric, tests):
    from ..plots import heatmap

    out = []
    for method in dict.fromkeys(r["method"] for r in grid):
        rows = [r for r in grid if r["method"] == method]
        out.append(heatmap(folder.heatmap_path(p.out, method, metric), [r["train"] for r in rows], tests,
                           [[r["values"].get(t) for t in tests] for r in rows], metric=metric,
                           title=f"{method}: {metric} (rows: trained on, columns: tested on)"))
    return out


def _write_leaderboard(p, done):
    from ..leaderboard import collect, render_by_task

    # only complete cells: a run that was stopped mid-cell may hold some test sets' numbers, never shown
    board = "\n".join(f"### {task}\n\n{table}" for task, table in
                      render_by_task(collect([c["run_dir"] for c in done]), reference=p.plan.get("reference")))
    missing = p.missing()
    if missing:
        board += (f"\n_{len(missing)} of {len(p.plan['cells'])} cell(s) not finished, not in this table: "
                  f"{', '.join(missing)}_\n")
    return atomic_write_text(folder.leaderboard_path(p.out), board)


def write_outputs(p, metrics=None):
    """Grids, means, heat-maps, sweep plot and leaderboard of protocol ``p``; returns {kind: [paths]}."""
    done = p.cells_done()
    if not done:
        raise ConfigError(f"{p.out}: no finished cell yet")
    metrics = list(metrics or metrics_present(p))
    tests = p.plan["test"]
    grids = {m: grid_of(done, tests, m) for m in metrics}
    paths, summary = _write_grids(p, grids, tests)
    paths.update({"heatmaps": [], "sweep": []})
    primary = headline(p, list(grids))
    if primary:
        paths["heatmaps"] = _write_heatmaps(p, grids[primary], primary, tests)
    if p.plan.get("sweep") and primary:
        paths["sweep"] = _write_sweep(p, summary, metrics)
    paths["leaderboard"] = [_write_leaderboard(p, done)]
    return paths


def finish(p, report=True):
    """Every output of the finished cells (the missing ones named); the HTML report (unless ``report`` is
    false) once every cell is done (its leaderboard reads every run folder, and an unfinished cell's folder
    may hold partial numbers)."""
    paths = write_outputs(p)
    if not report or not p.all_done():
        return paths
    from ..report import write_report

    paths["report"] = [write_report([p.out])]
    return paths


# ---- the sweep --------------------------------------------------------------------------------------------

def sweep_value_order(values):
    """Values in a numeric order where they carry one number (layer8 < layer20, conv-4 < conv-20)."""
    def num(v):
        m = re.search(r"(\d+)", str(v))
        return (0, int(m.group(1)), str(v)) if m else (1, 0, str(v))

    return sorted(values, key=num)


def _split_sweep_label(label, key):
    m = re.fullmatch(rf"(.*)\[{re.escape(key)}=(.*)\]", label)
    return (m.group(1), m.group(2)) if m else (label, "")


def _sweep_lines(rows, key, order):
    """``({"<method> ID"|"<method> OOD": [mean per value]}, [csv rows])`` of one metric's summary rows."""
    series = {}
    for row in rows:
        base, value = _split_sweep_label(row["method"], key)
        series.setdefault(base, {}).setdefault(value, []).append((row["id_mean"], row["ood_mean"]))
    lines, csv_rows = {}, []
    for base, per_value in series.items():
        for part, idx in (("ID", 0), ("OOD", 1)):
            ys = []
            for v in order:
                vals = [pair[idx] for pair in per_value.get(v, []) if pair[idx] is not None]
                ys.append(sum(vals) / len(vals) if vals else None)
            lines[f"{base} {part}"] = ys
        csv_rows += [[base, v, idm, oodm] for v in order for idm, oodm in per_value.get(v, [])]
    return lines, csv_rows


def _write_sweep(p, summary, metrics):
    from ..plots import line_plot

    key = p.plan["sweep"]["key"]
    order = [str(v) for v in sweep_value_order(p.plan["sweep"]["values"])]
    out, rows = [], [["method", key, "metric", "id_mean", "ood_mean"]]
    for m in metrics:
        lines, csv_rows = _sweep_lines(summary[m], key, order)
        rows += [[base, v, m, _num(idm), _num(oodm)] for base, v, idm, oodm in csv_rows]
        out.append(line_plot(folder.sweep_plot_path(p.out, key, m), order, lines, xlabel=key, ylabel=m,
                             title=f"{m} against {key} (ID and OOD means)"))
    return out + [write_csv_rows(folder.sweep_csv_path(p.out, key), rows)]
