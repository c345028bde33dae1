"""`declip leaderboard`: one table of methods x test datasets x metrics, from our run directories
and from DeepfakeBench's own result files (``<log_dir>/<model>_<time>/test/<dataset>/
metric_dict_best.pickle``), so DeCLIP ranks beside DeepfakeBench's detectors.
"""
import csv
import dataclasses
import io
import math
import os

from . import references
from .errors import DeclipError
from .metrics.base import in_task, info_of, is_count, metric_infos, ordered_infos, tasks
from .run_folder import DFB_METRICS, METRICS, ResultFolder, name_of, result_folders


@dataclasses.dataclass
class Entry:
    method: str
    dataset: str
    metrics: dict
    in_domain: object  # True / False / None (unknown)
    source: str


def _number(v):
    try:
        if hasattr(v, "shape") and getattr(v, "shape", ()) != ():
            return None
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


class NoResultsError(DeclipError):
    """A folder with no result file under it."""


def collect(paths):
    """Entries from every run directory (ours or DeepfakeBench's) found under ``paths``."""
    entries = []
    for root in paths:
        if not os.path.exists(root):
            raise DeclipError(f"leaderboard: {root} does not exist")
        found = result_folders(root)
        if not found:
            raise NoResultsError(f"leaderboard: no results under {root} (expected test/<dataset>/{METRICS} or "
                                 f"DeepfakeBench's test/<dataset>/{DFB_METRICS})")
        entries += [_our_entry(folder) if folder.is_ours() else _dfb_entry(folder) for folder in found]
    return _disambiguate(entries)


def _dfb_entry(folder):
    metrics = {k: _number(v) for k, v in folder.read_dfb_metrics().items() if _number(v) is not None}
    loc = folder.read_localization()  # written beside it by `declip dfb`
    metrics.update({k: v for k, v in loc.items() if _number(v) is not None and k not in metrics})
    return Entry(name_of(folder.run.path), folder.dataset, metrics, None, folder.dfb_metrics)


def _our_entry(folder):
    data = folder.read_metrics()
    metrics = {k: v for k, v in data.get("metrics", {}).items() if isinstance(v, (int, float)) and v == v}
    if metrics.get("n_real") == 0 or metrics.get("n_fake") == 0:  # a test set of one class: no detection figure
        infos = metric_infos()
        metrics = {k: v for k, v in metrics.items() if not info_of(k, infos).needs_both_classes}
    return Entry(data.get("method") or "run", data.get("dataset") or folder.dataset, metrics, data.get("in_domain"),
                 folder.metrics)


def _disambiguate(entries):
    """Two runs of one method get their run folder in the name."""
    runs = {}
    for e in entries:
        runs.setdefault(e.method, set()).add(_run_of(e.source))
    for e in entries:
        if len(runs[e.method]) > 1:
            e.method = f"{e.method} ({os.path.basename(_run_of(e.source))})"
    return entries


def _run_of(source):
    return ResultFolder(os.path.dirname(source)).run.path


# Which metrics each table shows comes from the metrics' own descriptions (metrics/base.py MetricInfo):
# a family's headline gets one column per test set, the metrics whose ``tables`` name the table get ID / OOD
# means; families in the order of metrics/base.py FAMILIES.
def known_metrics(entries=()):
    found = {k for e in entries for k in e.metrics if not is_count(k)}
    return sorted(set(metric_infos()) | found)


def check_metrics(metrics, entries=()):
    """Refuse a metric name no run can have: one line listing the known ones."""
    known = known_metrics(entries)
    bad = [m for m in metrics if m not in known]
    if bad:
        raise DeclipError(f"leaderboard: unknown metric{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}; "
                          f"known: {', '.join(known)}")


def _columns_of(table, present):
    """(per-dataset metrics, mean-only metrics) of ``table`` ("default" or a family) among ``present``."""
    infos = [i for i in ordered_infos() if i.name in present]
    if table == "default":
        per_dataset = [i.name for i in infos if i.headline]
    else:
        per_dataset = [i.name for i in infos if i.headline and i.family == table]
    means = [i.name for i in infos if table in i.tables and i.name not in per_dataset]
    return per_dataset, means


def default_columns(entries):
    """(per-dataset metrics, mean-only metrics) of the default table: every family present in any entry."""
    return _columns_of("default", {k for e in entries for k in e.metrics})


def by_task(entries):
    """[(task title, its entries, (per-dataset metrics, mean-only metrics))] for every task some entry has: one
    task per metric family (image localization, image detection, video detection: metrics/base.py ``TASKS``)."""
    infos = metric_infos()
    out = []
    for task in tasks(infos):
        mine = [e for e in entries if in_task(task, e.metrics, infos)]
        if mine:
            present = {k for e in mine for k in e.metrics}
            out.append((task.title, mine, _columns_of(task.family, present)))
    return out


def build_table(entries, metrics=None, in_domain=None, columns=None):
    """Rows (method) and columns (metric/dataset, plus ID / OOD means); best value marked.

    ``metrics`` given: per-dataset columns and means for each. ``columns`` = (per-dataset metrics,
    mean-only metrics) given: those present. Default: every metric family any entry has (detection,
    localization, video): per-dataset columns for each family's headline metric, ID / OOD means (or the
    plain mean where the in-domain split is unknown) for those and for the metrics whose description
    names the default table (metrics/base.py ``MetricInfo.tables``).
    """
    if metrics:
        check_metrics(metrics, entries)
        per_dataset = [m for m in metrics if any(m in e.metrics for e in entries)]
        means_only = []
    elif columns:
        per_dataset, means_only = ([m for m in group if any(m in e.metrics for e in entries)] for group in columns)
    else:
        per_dataset, means_only = default_columns(entries)
    if not per_dataset and not means_only:
        raise DeclipError("leaderboard: none of the requested metrics appear in the results")
    datasets = sorted({e.dataset for e in entries})
    methods = list(dict.fromkeys(e.method for e in entries))
    cell = {(e.method, e.dataset): e for e in entries}

    def is_id(method, dataset):
        if in_domain is not None:
            return dataset in in_domain
        e = cell.get((method, dataset))
        return None if e is None else e.in_domain

    columns, values = [], {}

    def add_means(m):
        for label, want in (("ID mean", True), ("OOD mean", False), ("mean", None)):
            col = f"{m} {label}"
            vals_any = False
            for meth in methods:
                vs = [cell[(meth, d)].metrics.get(m) for d in datasets
                      if (meth, d) in cell and cell[(meth, d)].metrics.get(m) is not None
                      and (want is None or is_id(meth, d) is want)]
                if want is None and any(is_id(meth, d) is not None for d in datasets if (meth, d) in cell):
                    vs = []  # the plain mean only for rows without an in-domain split
                values[(meth, col)] = sum(vs) / len(vs) if vs else None
                vals_any = vals_any or bool(vs)
            if vals_any:
                columns.append((col, m))

    for m in per_dataset:
        for d in datasets:
            col = f"{m} {d}"
            columns.append((col, m))
            for meth in methods:
                e = cell.get((meth, d))
                values[(meth, col)] = e.metrics.get(m) if e else None
        add_means(m)
    for m in means_only:
        add_means(m)
    best, infos = {}, metric_infos()
    for col, m in columns:
        vals = [values[(meth, col)] for meth in methods if values[(meth, col)] is not None]
        if len(vals) > 1 and len(set(vals)) > 1:  # a column where all are equal has no best
            best[col] = info_of(m, infos).best(vals)
    return methods, columns, values, best


def _fmt(v, metric):
    return info_of(metric).format(v)


FORMATS = ("md", "csv", "html", "png")
def _and(names):
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def note(metrics):
    """The line under a table of ``metrics``: their scales and which way their best goes."""
    infos = metric_infos()
    shown = [info_of(m, infos) for m in dict.fromkeys(metrics)]
    wide = [i.label for i in shown if i.scale > 1]
    scale = (f"{_and(wide)} on a 0-{max(i.scale for i in shown if i.scale > 1):g} scale, the other metrics on 0-1"
             if wide else "metrics on a 0-1 scale")
    lowest = [i.name for i in shown if not i.higher_is_better]
    return f"{scale}; best of each column in bold" + (f" (lowest for {_and(lowest)})." if lowest else ".")


PUBLISHED = references.PUBLISHED


def reference_rows(reference, columns, id_sets=None, ood_sets=None):
    """The published rows of a preset's ``reference`` blocks (references.py: one block or a list) laid on
    ``columns``: a block's rows where the table has a column of its metric, each published figure under
    ``<metric> <test set>`` / ``<metric> ID mean`` / ``OOD mean``, every other cell empty. ``id_sets`` /
    ``ood_sets``: the table's in-domain / out-of-domain test sets, for the means of rows published per
    test set (:func:`references.row_means`). Returns ``(rows, the blocks shown)``."""
    rows, shown = [], []
    for block in references.blocks(reference):
        metric = block.get("metric")
        if not any(m == metric for _, m in columns):
            continue
        shown.append(block)
        for name, vals in (block.get("rows") or {}).items():
            idm, oodm = references.row_means(vals, id_sets or (), ood_sets or ())
            cells = {f"{metric} {d}": v for d, v in (vals.get("datasets") or {}).items()}
            cells.update({f"{metric} ID mean": idm, f"{metric} OOD mean": oodm})
            rows.append([references.row_name(name, block)] + [_fmt(cells.get(col), m) if m == metric else ""
                                                              for col, m in columns])
    return rows, shown


def split_sets(entries, in_domain=None):
    """``(in-domain test sets, out-of-domain test sets)`` of ``entries`` (``in_domain``: the --in_domain list)."""
    datasets = {e.dataset for e in entries}
    if in_domain is not None:
        return datasets & set(in_domain), datasets - set(in_domain)
    return {e.dataset for e in entries if e.in_domain is True}, {e.dataset for e in entries if e.in_domain is False}


def render(entries, fmt="md", metrics=None, in_domain=None, out=None, reference=None, columns=None):
    """The table as text (md, csv, html); ``png`` writes a picture to ``out`` and returns its path.

    ``reference``: a preset's published figures (references.py: one block or a list), appended as rows named
    ``<method> (published)``, never ranked (no best mark) and explained under the table. ``columns``: see
    :func:`build_table`."""
    if fmt not in FORMATS:
        raise DeclipError(f"leaderboard format {fmt!r}: use one of {', '.join(FORMATS)}")
    methods, columns, values, best = build_table(entries, metrics, in_domain, columns)
    header = ["method"] + [c for c, _ in columns]
    rows, marks = [], []
    for meth in methods:
        row, mark = [meth], [False]
        for col, m in columns:
            v = values[(meth, col)]
            row.append(_fmt(v, m))
            mark.append(v is not None and col in best and v == best[col])
        rows.append(row)
        marks.append(mark)
    published, shown = reference_rows(reference, columns, *split_sets(entries, in_domain))
    rows += published
    marks += [[False] * len(header) for _ in published]
    note_line = note([m for _, m in columns]) + (references.note(shown) if published else "")
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(header)
        w.writerows([[f"{t}*" if k else t for t, k in zip(r, mk)] for r, mk in zip(rows, marks)])
        return buf.getvalue()
    if fmt == "html":
        import html

        cells = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td><b>{html.escape(t)}</b></td>" if k else f"<td>{html.escape(t)}</td>"
                                        for t, k in zip(r, mk)) + "</tr>\n" for r, mk in zip(rows, marks))
        return (f'<table class="leaderboard">\n<thead><tr>{cells}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n'
                f'<p class="note">{html.escape(note_line)}</p>\n')
    if fmt == "png":
        if not out:
            raise DeclipError("leaderboard --format png needs --out FILE.png")
        from .plots import table_png

        return table_png(out, header, [[f"{t}*" if k else t for t, k in zip(r, mk)] for r, mk in zip(rows, marks)],
                         title="leaderboard (* best of the column)")
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(f"**{t}**" if k else t for t, k in zip(r, mk)) + " |" for r, mk in zip(rows, marks)]
    return "\n".join(lines) + "\n\n" + note_line + "\n"


def render_by_task(entries, fmt="md", reference=None):
    """[(task, table text)]: one leaderboard per task (image localization, image detection, video detection)."""
    return [(task, render(mine, fmt=fmt, reference=reference, columns=cols)) for task, mine, cols in by_task(entries)]
