"""`declip protocol`: the paper's evaluation grid in one command.

Methods (detector configs, optionally each with overrides) x train datasets x test datasets: each
(method, train set) cell is trained once with :func:`declip_plugin.engine.run.train` and tested on
every test set; the results are gathered into, per metric, a grid (CSV and JSON), the in-domain
(ID) and out-of-domain (OOD) means, a heat-map PNG per method (the paper's Figure 5), and a
leaderboard. A sweep over one config key (for DeCLIP its feature layer, decoder or backbone; any key)
turns every method into one method per value and draws the paper's Figure 3 (metric against
the swept value, ID and OOD lines).

Layout of the output folder::

    <out>/protocol.json                 the plan (methods, datasets, sweep, overrides)
    <out>/runs/<name>_<time>/           each cell's run directory (engine.run.train); name: the method
                                        label, plus __<train> when there are several train sets
    <out>/cells/<label>__<train>.json   the cell's marker: written atomically once the cell is
                                        complete (trained and tested on every test set)
    <out>/grid_<metric>.csv             rows "<method> | <train>", columns the test sets
    <out>/grid.json                     every metric, every cell, and the ID / OOD means
    <out>/means.csv                     method, train, metric, ID mean, OOD mean
    <out>/heatmap_<method>_<metric>.png
    <out>/sweep_<key>_<metric>.png, sweep_<key>.csv
    <out>/leaderboard.md

Each cell runs as one job of an executor (:mod:`declip_plugin.cluster`: submitit's local, SLURM or
debug executor; job records under ``<out>/jobs/``). Everything the protocol reads is checked by
:func:`check_plan` before anything is written.

Resumable: a cell whose marker exists is kept and never retrained; a cell that was running when
the protocol was killed continues from its last finished epoch (``train(resume=...)``) when its
run directory holds ``ckpt_last.pth``, otherwise it starts again (its dead run folder removed).
Grids and the leaderboard hold complete cells only; the others are listed as missing.

ID: the test set is the train set, or both declare the same ``generator`` in configs/dataset.
"""
import csv
import io
import json
import logging
import os
import re

from .errors import ConfigError
from .engine.rundir import atomic_write_text, write_json
from .protocol_folder import finished_cells, marker_path, plan_path, read_marker, read_plan

logger = logging.getLogger(__name__)

DOLOS = ["dolos-lama", "dolos-ldm", "dolos-pluralistic", "dolos-repaint-p2-9k"]
AUTOSPLICE = ["autosplice-75", "autosplice-90", "autosplice-100"]
DEMO_TEST = ["demo-telea", "demo-ns", "demo-blur", "demo-resample", "demo-noise", "demo-grid"]
DEMO_VIDEO_TEST = ["demo-video-flicker", "demo-video-jitter", "demo-video-freeze"]

# Published figures shown beside a preset's measured rows (never mixed with them): per method, the
# ID and OOD means of ``metric`` as its paper reports them.
DOLOS_REFERENCE = {
    "source": "DeCLIP paper (Smeu et al., WACV 2025), Dolos, 4x4 train/test generators",
    "metric": "iou",
    "rows": {"Patch Forensics": {"id": 69.3, "ood": 20.4}, "CLIP-linear": {"id": 36.2, "ood": 18.5},
             "DeCLIP ViT-L/14+RN50": {"id": 73.8, "ood": 34.7}, "PSCC-Net": {"id": 81.0, "ood": 21.6}},
}

PRESETS = {
    # the paper's Table 1 / Figure 5: every Dolos generator against every other
    "dolos": {"methods": ["declip", "clip_linear"], "train": DOLOS, "test": DOLOS, "reference": DOLOS_REFERENCE},
    # the paper's Table 3: Dolos-trained models on AutoSplice (all out-of-domain)
    "autosplice": {"methods": ["declip", "clip_linear"], "train": DOLOS, "test": AUTOSPLICE},
    # CPU-sized: three methods trained on one demo manipulation, tested on all of them
    "demo": {"methods": ["declip_demo", "clip_linear_demo", "xception_demo"], "train": ["demo-telea"],
             "test": DEMO_TEST},
    # CPU-sized video detection: DeepFakesDetection's detectors trained on one demo video manipulation,
    # tested on all three (`declip make-demo-videos <root>/demo_video --methods flicker jitter freeze`)
    "demo-video": {"methods": ["clip_enhanced_demo_video", "clip_stan_demo", "timesformer_demo"],
                   "train": ["demo-video-flicker"], "test": DEMO_VIDEO_TEST},
}
DEFAULT_METRICS = ("iou", "f1_best", "pixel_auc", "empty_gt_fp_rate", "auc", "ap", "eer", "video_auc")
PRIMARY = ("iou", "video_auc", "auc")  # the heat-map's metric: the first of these the grid has


def _safe(text):
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-") or "x"


def parse_sweep(text):
    """``key=v1,v2,...`` -> (key, [values]) with YAML-typed values."""
    import yaml

    if not text or "=" not in text:
        raise ConfigError(f"--sweep {text!r}: expected KEY=V1,V2,... (e.g. a detector key with values layer8,layer16,layer20)")
    key, _, values = text.partition("=")
    key = key.strip()
    vals = [yaml.safe_load(v) for v in values.split(",") if v.strip()]
    if not key or len(vals) < 2:
        raise ConfigError(f"--sweep {text!r}: give one key and at least two values")
    return key, vals


def sweep_value_order(values):
    """Values in a numeric order where they carry one number (layer8 < layer20, conv-4 < conv-20)."""
    def num(v):
        m = re.search(r"(\d+)", str(v))
        return (0, int(m.group(1)), str(v)) if m else (1, 0, str(v))

    return sorted(values, key=num)


def preset_names():
    """Every preset name: those written here (:data:`PRESETS`) and the files of configs/protocol
    (:mod:`declip_plugin.protocol_presets`)."""
    from .protocol_presets import preset_files

    return sorted(set(PRESETS) | set(preset_files()))


def preset_definition(name):
    """The preset ``name``: methods, train, test and, where it has them, optional_test, headline, metrics and
    reference (published figures: one block or a list, references.py)."""
    from .protocol_presets import load_preset, preset_files

    files = preset_files()
    if name in PRESETS and name in files:
        raise ConfigError(f"--preset {name!r} is defined twice: in protocol.py and in {files[name]}; remove one")
    if name in PRESETS:
        return dict(PRESETS[name])
    if name in files:
        return load_preset(name)
    from .registry import closest

    hint = closest(name, preset_names())
    raise ConfigError(f"--preset {name!r}: unknown protocol preset; known: {', '.join(preset_names())}"
                      + (f" (did you mean {hint!r}?)" if hint else ""))


def method_label(config):
    """A method's label: its detector YAML's name (``configs/detector/clip_stan.yaml`` -> ``clip_stan``)."""
    return os.path.splitext(os.path.basename(str(config)))[0]


def split_method_opts(items):
    """``--opt`` items -> (the plain ones, ``{method label: overrides}`` of the ``LABEL:KEY=VALUE`` ones)."""
    from .config import merge, parse_overrides

    plain, scoped = [], {}
    for item in items or []:
        key = str(item).split("=", 1)[0]
        if ":" not in key:
            plain.append(item)
            continue
        label, _, rest = str(item).partition(":")
        if not label.strip():
            raise ConfigError(f"--opt {item!r}: expected METHOD:KEY=VALUE (e.g. clip_stan:depth=2) or KEY=VALUE")
        scoped[label.strip()] = merge(scoped.get(label.strip(), {}), parse_overrides([rest]))
    return plain, scoped


def make_plan(preset=None, methods=None, train=None, test=None, sweep=None, overrides=None, optional_tests=False,
              method_overrides=None):
    """The protocol's plan: a dict saved as protocol.json. ``optional_tests``: add the preset's optional test
    sets; ``method_overrides``: ``{method label: overrides}`` (``--opt METHOD:KEY=VALUE``) for that method's cells."""
    base = preset_definition(preset) if preset else {}
    methods = list(methods or base.get("methods") or [])
    train = list(train or base.get("train") or [])
    test = list(test or base.get("test") or [])
    if optional_tests:
        if not base.get("optional_test"):
            raise ConfigError("--optional_tests: " + (f"preset {preset!r} has no optional test sets" if preset else
                                                      "give a --preset with optional test sets (ff-cross)"))
        test += [t for t in base["optional_test"] if t not in test]
    for what, val in (("--method", methods), ("--train", train), ("--test", test)):
        if not val:
            raise ConfigError(f"protocol: no {what[2:]} given; pass {what} or a --preset ({', '.join(preset_names())})")
    method_overrides = _check_method_overrides(method_overrides, methods)
    from .references import blocks

    plan = {"preset": preset, "methods": methods, "train": train, "test": test,
            "sweep": {"key": sweep[0], "values": sweep[1]} if sweep else None,
            "overrides": dict(overrides or {}), "cells": _cells(methods, train, sweep, method_overrides),
            "reference": blocks(base.get("reference")), "headline": base.get("headline"),
            "metrics": list(base.get("metrics") or []) or None}
    if method_overrides:
        plan["method_overrides"] = method_overrides
    return plan


def _check_method_overrides(method_overrides, methods):
    labels = [method_label(m) for m in methods]
    for label in method_overrides or {}:
        if label not in labels:
            from .registry import closest

            hint = closest(label, labels)
            raise ConfigError(f"--opt {label}:...: no method {label!r} in this protocol; its methods: "
                              f"{', '.join(labels)}" + (f" (did you mean {hint!r}?)" if hint else ""))
    return {k: v for k, v in (method_overrides or {}).items() if v}


def _cells(methods, train, sweep, method_overrides):
    from .config import merge

    cells = []
    for cfg in methods:
        label = method_label(cfg)
        variants = [(label, {})]
        if sweep:
            key, values = sweep
            variants = [(f"{label}[{key}={v}]", {key: v}) for v in values]
        for mlabel, extra in variants:
            for t in train:
                cid = f"{_safe(mlabel)}__{_safe(t)}"
                cells.append({"method": mlabel, "config": str(cfg), "train": t,
                              "overrides": merge(method_overrides.get(label, {}), extra), "id": cid,
                              # the run's method name (leaderboard rows): the train set only when there are several
                              "name": cid if len(train) > 1 else _safe(mlabel)})
    return cells


def generator_of(name):
    from .data import dataset_spec

    try:
        return dataset_spec(name).get("generator")
    except Exception:  # noqa: BLE001 - a test set unknown to the catalog has no generator
        return None


def is_in_domain(train, test):
    if train == test:
        return True
    g = generator_of(train)
    return g is not None and g == generator_of(test)


class Protocol:
    """One protocol folder: plan, cell markers, results."""

    def __init__(self, out_dir, plan=None):
        self.out = os.fspath(out_dir)
        path = plan_path(self.out)
        if plan is None:
            if not os.path.isfile(path):
                raise ConfigError(f"{self.out}: no protocol.json; start a protocol with --preset or --method/--train/--test")
            plan = read_plan(self.out)
        elif os.path.isfile(path):
            old = read_plan(self.out)
            if _plan_key(old) != _plan_key(plan):
                raise ConfigError(f"{self.out} holds another protocol (protocol.json differs); choose a new --out "
                                  f"or rerun it with the same arguments to continue it")
            plan = old  # continued as it was planned
        else:
            os.makedirs(os.path.join(self.out, "cells"), exist_ok=True)
            write_json(path, plan)
        self.plan = plan
        if not os.path.isdir(os.path.join(self.out, "cells")):
            os.makedirs(os.path.join(self.out, "cells"), exist_ok=True)

    def marker(self, cell):
        return marker_path(self.out, cell)

    def done(self, cell):
        return os.path.isfile(self.marker(cell))

    def read_cell(self, cell):
        return read_marker(self.marker(cell))

    def cell(self, cell_id):
        for c in self.plan["cells"]:
            if c["id"] == cell_id:
                return c
        raise ConfigError(f"{self.out}: no cell {cell_id!r} in protocol.json")

    def all_done(self):
        return all(self.done(c) for c in self.plan["cells"])

    def run(self, train_fn=None, extra_overrides=None):
        """Train and test every unfinished cell in this process; returns the number of cells trained now."""
        trained = 0
        for cell in self.plan["cells"]:
            if self.done(cell):
                logger.info("protocol: cell %s done, kept (%s)", cell["id"], self.read_cell(cell)["run_dir"])
                continue
            self.run_cell(cell, train_fn, extra_overrides)
            trained += 1
        return trained

    def cell_overrides(self, cell, extra_overrides=None):
        from .config import merge

        return {**merge(merge(self.plan.get("overrides", {}), extra_overrides or {}), cell["overrides"]),
                "train_dataset": [cell["train"]], "test_dataset": list(self.plan["test"]),
                "in_domain": [t for t in self.plan["test"] if is_in_domain(cell["train"], t)] or None,
                "log_dir": os.path.join(self.out, "runs"), "name": cell["name"]}

    def run_cell(self, cell, train_fn=None, extra_overrides=None):
        """Train ``cell`` (continuing its interrupted run, if any), test it, write its marker; returns the marker."""
        if train_fn is None:
            from .engine.run import train as train_fn
        overrides = self.cell_overrides(cell, extra_overrides)
        resume = self.interrupted_run(cell)
        if resume:
            logger.info("protocol: cell %s was interrupted; resuming %s", cell["id"], resume)
        if int(os.environ.get("RANK", "0")) == 0:  # one task of a multi-GPU job cleans, before its run starts
            self._remove_dead_runs(cell, keep=resume)
        logger.info("protocol: training %s on %s, testing on %s", cell["method"], cell["train"],
                    ", ".join(self.plan["test"]))
        run_dir = train_fn(cell["config"], overrides if not resume else {}, resume=resume)
        results = {}
        for t in self.plan["test"]:
            p = os.path.join(run_dir, "test", t, "metrics.json")
            if not os.path.isfile(p):
                raise ConfigError(f"protocol: cell {cell['id']}: {p} missing after training; the run did not test {t}")
            with open(p, encoding="utf-8") as f:
                results[t] = json.load(f).get("metrics", {})
        marker = {**cell, "run_dir": run_dir, "results": results}
        if int(os.environ.get("RANK", "0")) == 0:
            write_json(self.marker(cell), marker)  # atomic: the cell is done
        return marker

    def _runs_of(self, cell):
        runs = os.path.join(self.out, "runs")
        if not os.path.isdir(runs):
            return []
        pat = re.compile(re.escape(cell["name"]) + r"_\d{4}-\d{2}-\d{2}-\d{2}-\d{2}-\d{2}(-\d+)?$")
        return sorted(os.path.join(runs, d) for d in os.listdir(runs) if pat.match(d))

    def interrupted_run(self, cell):
        """The newest run directory of ``cell`` that can be resumed (config.yaml and ckpt_last.pth), or None."""
        found = [d for d in self._runs_of(cell) if os.path.isfile(os.path.join(d, "ckpt_last.pth"))
                 and os.path.isfile(os.path.join(d, "config.yaml"))]
        return found[-1] if found else None

    def _remove_dead_runs(self, cell, keep=None):
        """Run folders of ``cell`` that a killed run left before its first finished epoch (no
        ckpt_last.pth: nothing to continue, nothing to show); the cell starts again in a new one."""
        import shutil

        for d in self._runs_of(cell):
            if d != keep and not os.path.isfile(os.path.join(d, "ckpt_last.pth")):
                logger.info("protocol: cell %s: removing %s (killed before its first epoch ended)", cell["id"], d)
                shutil.rmtree(d, ignore_errors=True)

    # ---- results ----------------------------------------------------------------------------------

    def missing(self):
        """Ids of the cells without a complete result."""
        return [c["id"] for c in self.plan["cells"] if not self.done(c)]

    def finish(self, report=True):
        """Every output of the finished cells (the missing ones named); the HTML report (unless ``report`` is
        false) once every cell is done (its leaderboard reads every run folder, and an unfinished cell's folder
        may hold partial numbers)."""
        paths = self.write_outputs()
        if not report or not self.all_done():
            return paths
        try:
            from .report import write_report
        except ImportError:  # the report module is optional
            return paths
        paths["report"] = [write_report([self.out])]
        return paths

    def cells_done(self):
        return finished_cells(self.out, self.plan)

    def metrics_present(self):
        found = []
        for c in self.cells_done():
            for m in c["results"].values():
                found += [k for k, v in m.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        return [m for m in (self.plan.get("metrics") or DEFAULT_METRICS) if m in found]

    def headline(self, metrics):
        """The metric of the heat-maps and the grid printed first: the plan's headline (a preset's), else the
        first of :data:`PRIMARY` among ``metrics``, else the first of ``metrics`` (None if there is none)."""
        if self.plan.get("headline") in metrics:
            return self.plan["headline"]
        return next((m for m in PRIMARY if m in metrics), metrics[0] if metrics else None)

    def write_outputs(self, metrics=None):
        """Grids, means, heat-maps, sweep plot and leaderboard; returns {kind: [paths]}."""
        done = self.cells_done()
        if not done:
            raise ConfigError(f"{self.out}: no finished cell yet")
        metrics = list(metrics or self.metrics_present())
        tests = self.plan["test"]
        grids = {m: grid_of(done, tests, m) for m in metrics}
        paths = {"grids": [], "heatmaps": [], "sweep": []}
        for m, g in grids.items():
            p = os.path.join(self.out, f"grid_{m}.csv")
            atomic_write_text(p, grid_csv(g, tests))
            paths["grids"].append(p)
        summary = {"test": tests, "metrics": {}, "missing": self.missing()}
        mean_rows = []
        for m, g in grids.items():
            summary["metrics"][m] = []
            for row in g:
                idm, oodm = id_ood_means(row["train"], row["values"])
                summary["metrics"][m].append({**row, "id_mean": idm, "ood_mean": oodm})
                mean_rows.append([row["method"], row["train"], m, _num(idm), _num(oodm)])
        write_json(os.path.join(self.out, "grid.json"), summary)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["method", "train", "metric", "id_mean", "ood_mean"])
        w.writerows(mean_rows)
        atomic_write_text(os.path.join(self.out, "means.csv"), buf.getvalue())
        paths["means"] = [os.path.join(self.out, "means.csv")]
        primary = self.headline(list(grids))
        if primary:
            from .plots import heatmap

            for method in dict.fromkeys(r["method"] for r in grids[primary]):
                rows = [r for r in grids[primary] if r["method"] == method]
                p = os.path.join(self.out, f"heatmap_{_safe(method)}_{primary}.png")
                heatmap(p, [r["train"] for r in rows], tests, [[r["values"].get(t) for t in tests] for r in rows],
                        title=f"{method}: {primary} (rows: trained on, columns: tested on)", metric=primary)
                paths["heatmaps"].append(p)
        if self.plan.get("sweep") and primary:
            paths["sweep"] = self._write_sweep(summary["metrics"], metrics)
        from .leaderboard import collect, render_by_task

        # only complete cells: a run that was stopped mid-cell may hold some test sets' numbers, never shown
        board = "\n".join(f"### {task}\n\n{table}" for task, table in
                          render_by_task(collect([c["run_dir"] for c in done]), reference=self.plan.get("reference")))
        missing = self.missing()
        if missing:
            board += (f"\n_{len(missing)} of {len(self.plan['cells'])} cell(s) not finished, not in this table: "
                      f"{', '.join(missing)}_\n")
        atomic_write_text(os.path.join(self.out, "leaderboard.md"), board)
        paths["leaderboard"] = [os.path.join(self.out, "leaderboard.md")]
        return paths

    def _write_sweep(self, summary, metrics):
        from .plots import line_plot

        key = self.plan["sweep"]["key"]
        values = self.plan["sweep"]["values"]
        out = []
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["method", key, "metric", "id_mean", "ood_mean"])
        for m in metrics:
            series = {}
            for row in summary[m]:
                base, value = _split_sweep_label(row["method"], key)
                series.setdefault(base, {}).setdefault(value, []).append((row["id_mean"], row["ood_mean"]))
            lines = {}
            order = [str(v) for v in sweep_value_order(values)]
            for base, per_value in series.items():
                for part, idx in (("ID", 0), ("OOD", 1)):
                    ys = []
                    for v in order:
                        vals = [p[idx] for p in per_value.get(v, []) if p[idx] is not None]
                        ys.append(sum(vals) / len(vals) if vals else None)
                    lines[f"{base} {part}"] = ys
                for v in order:
                    for idm, oodm in per_value.get(v, []):
                        w.writerow([base, v, m, _num(idm), _num(oodm)])
            p = os.path.join(self.out, f"sweep_{_safe(key)}_{m}.png")
            line_plot(p, order, lines, xlabel=key, ylabel=m, title=f"{m} against {key} (ID and OOD means)")
            out.append(p)
        p = os.path.join(self.out, f"sweep_{_safe(key)}.csv")
        atomic_write_text(p, buf.getvalue())
        return out + [p]


def _plan_key(plan):
    key = {k: plan.get(k) for k in ("methods", "train", "test", "sweep", "overrides")}
    if plan.get("method_overrides"):  # absent from older plans: they had none
        key["method_overrides"] = plan["method_overrides"]
    return json.dumps(key, sort_keys=True, default=str)


def _split_sweep_label(label, key):
    m = re.fullmatch(rf"(.*)\[{re.escape(key)}=(.*)\]", label)
    return (m.group(1), m.group(2)) if m else (label, "")


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


def grid_csv(grid, tests):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "train"] + list(tests) + ["id_mean", "ood_mean"])
    for row in grid:
        idm, oodm = id_ood_means(row["train"], row["values"])
        w.writerow([row["method"], row["train"]] + [_num(row["values"].get(t)) for t in tests] + [_num(idm), _num(oodm)])
    return buf.getvalue()


def format_grid(out_dir, metric):
    """The grid of ``metric`` as a Markdown table (what the CLI prints)."""
    with open(os.path.join(out_dir, "grid.json"), encoding="utf-8") as f:
        summary = json.load(f)
    rows = summary["metrics"].get(metric)
    if rows is None:
        raise ConfigError(f"{out_dir}: no metric {metric!r} in grid.json; present: {', '.join(summary['metrics'])}")
    tests = summary["test"]
    from .metrics.base import info_of

    fmt = info_of(metric).format
    head = ["method", "train"] + tests + ["ID mean", "OOD mean"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|"]
    for r in rows:
        lines.append("| " + " | ".join([r["method"], r["train"]] + [fmt(r["values"].get(t)) for t in tests]
                                       + [fmt(r["id_mean"]), fmt(r["ood_mean"])]) + " |")
    return "\n".join(lines) + "\n"


def cell_config(plan, cell):
    """The run config of ``cell`` as its job will load it (the plan's and the cell's overrides on its YAML)."""
    from .config import load_run_config, merge

    return load_run_config(cell["config"], "train", merge(dict(plan.get("overrides") or {}), cell["overrides"]))


def check_plan(plan, sweep_text=None):
    """Everything a protocol reads, checked before anything is written: the dataset names, each method's
    config with the command's overrides (errors blame --opt), the sweep's key and values (errors blame
    --sweep), that every dataset is where it is expected (all missing ones named at once), and every file of
    every split (a corrupt image is named now, not after hours of training)."""
    from .config import merge, validate
    from .data import dataset_spec

    for name in dict.fromkeys(plan["train"] + plan["test"]):
        dataset_spec(name)  # an unknown name: a DataError naming it, with the closest known one
    sweep = plan.get("sweep")
    first, seen = None, set()
    for cell in plan["cells"]:
        own = {k: v for k, v in cell["overrides"].items() if not sweep or k != sweep["key"]}
        key = json.dumps([cell["config"], own], sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        try:
            config = cell_config(plan, {**cell, "overrides": own})
        except ConfigError as e:  # which method refuses a key of --opt
            hint = "; --opt METHOD:KEY=VALUE sets a key for one method" if len(plan["methods"]) > 1 else ""
            raise type(e)(f"method {method_label(cell['config'])}: {e}{hint}") from None
        if sweep:
            label = f"--sweep {sweep_text or sweep['key'] + '=' + ','.join(map(str, sweep['values']))}"
            for value in sweep["values"]:
                validate(merge(config.to_dict(), {sweep["key"]: value}), where=f"{label} (method {cell['config']})",
                         origins={sweep["key"]: label})
        first = first or config
    check_data_present(plan, first)
    _check_data_files(plan, first)


def dataset_roles(plan):
    """``{dataset: ["train", "test"]}``: what the plan uses each dataset for, in plan order."""
    roles = {}
    for role in ("train", "test"):
        for name in plan[role]:
            roles.setdefault(name, []).append(role)
    return roles


def data_status(plan, config=None):
    """``[(dataset, roles, adapter, [(what, path, exists)])]``: where the files of each dataset of the plan are
    expected (data/catalog.py ``locate``: for DeepfakeBench's sets its JSON and its LMDB or frame folder, from
    --dfb_config / --data_root), with the run config ``config`` (default: the first cell's)."""
    from .data.catalog import locate

    config = config if config is not None else cell_config(plan, plan["cells"][0])
    return [(name, roles, *locate(name, config)) for name, roles in dataset_roles(plan).items()]


def data_source(config):
    """Where the dataset folders come from, for messages: the dfb_config and the data root."""
    from .data import data_root

    dfb = config.dfb_config
    return ((f"dfb_config {os.path.abspath(os.path.expanduser(str(dfb)))}, " if dfb else "")
            + f"data root {os.path.abspath(data_root(config))}")


def check_data_present(plan, config):
    """A DataError naming every dataset of the plan whose files are not where they are expected, with the paths."""
    from .errors import DataError

    status = data_status(plan, config)
    missing = [(name, [(what, path) for what, path, ok in where if not ok]) for name, _, _, where in status
               if not all(ok for _, _, ok in where)]
    if missing:
        listed = "; ".join(f"{name} ({', '.join(f'{what} {path}' for what, path in paths)} not found)"
                           for name, paths in missing)
        raise DataError(f"protocol: {len(missing)} of {len(status)} dataset(s) missing: {listed} (folders from "
                        f"{data_source(config)}); `declip protocol ... --status` lists where every dataset is "
                        f"expected; set --dfb_config / --data_root, or leave the missing sets out with --test")


def _check_data_files(plan, config):
    from .data import build_dataset
    from .errors import DataError

    checks = [(t, "train") for t in plan["train"]] + [(t, "val") for t in plan["train"]]
    checks += [(t, "test") for t in plan["test"]]
    own_skip = config.skip_bad_files
    quiet = logging.getLogger("declip_plugin.data.base")  # its "skipped (skip_bad_files: true)" is not the user's
    for name, split in checks:
        level = quiet.level
        quiet.setLevel(logging.ERROR if not own_skip else level)
        try:
            ds = build_dataset(name, split, config.replace(skip_bad_files=True))
        finally:
            quiet.setLevel(level)
        if ds.skipped and not own_skip:
            path, reason = ds.skipped[0]
            more = f" (and {len(ds.skipped) - 1} more bad file(s) in {name}/{split})" if len(ds.skipped) > 1 else ""
            raise DataError(f"dataset {name}/{split}: {reason}{more}; replace or remove the file, or set "
                            f"skip_bad_files: true (--opt skip_bad_files=true) to leave bad files out")
