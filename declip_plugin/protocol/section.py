"""The protocol folder's section of the HTML report (declip_plugin/report.py assembles the sections): the
plan in one line, the grid of each metric with its ID / OOD means, the heat-maps and the sweep plots."""
import html
import os

from ..metrics.base import info_of
from ..report_html import figures, table
from . import folder


def report_section(out_dir):
    """The section of the protocol folder ``out_dir``; "" when it is no protocol folder."""
    if not folder.is_protocol(out_dir):
        return ""
    parts = [f"<h2>Protocol: {html.escape(os.fspath(out_dir))}</h2>"]
    plan = folder.read_plan(out_dir)
    parts.append(f'<p class="note">methods: {html.escape(", ".join(plan["methods"]))}; trained on: '
                 f'{html.escape(", ".join(plan["train"]))}; tested on: {html.escape(", ".join(plan["test"]))}. '
                 "ID: the test set from the train set's generator; OOD: the others.</p>")
    if os.path.isfile(folder.grid_path(out_dir)):
        summary = folder.read_grid(out_dir)
        tests = summary["test"]
        for metric, rows in summary["metrics"].items():
            fmt = info_of(metric).format
            parts.append(f"<h3>{html.escape(metric)}</h3>")
            parts.append(table(["method", "trained on"] + tests + ["ID mean", "OOD mean"],
                               [[r["method"], r["train"]] + [fmt(r["values"].get(t)) for t in tests]
                                + [fmt(r["id_mean"]), fmt(r["ood_mean"])] for r in rows]))
    figs = folder.figures(out_dir)
    if figs:
        parts.append("<h3>Heat-maps and sweeps</h3>" + figures(figs))
    return "\n".join(parts)
