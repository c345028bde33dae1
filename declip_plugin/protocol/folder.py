"""The protocol folder: its layout is known here and nowhere else; the runner, the cluster, the outputs,
the report section and the commands read and write its files through this module.

Layout::

    <out>/protocol.json                 the plan (methods, datasets, sweep, overrides, cells, references)
    <out>/runs/<name>_<time>/           each cell's run directory (declip_plugin/run_folder.py); name: the
                                        method label, plus __<train> when there are several train sets
    <out>/cells/<cell id>.json          the cell's marker: written atomically once the cell is complete
                                        (trained and tested on every test set): the cell, run_dir, results
    <out>/jobs/<cell id>.json           the cell's job record (executor, job id, state, log paths)
    <out>/jobs/submitit/<job id>/       submitit's own files of the job (pickles and logs)
    <out>/grid_<metric>.csv             rows "<method> | <train>", columns the test sets, ID / OOD means
    <out>/grid.json                     every metric, every cell, and the ID / OOD means; the missing cells
    <out>/means.csv                     method, train, metric, ID mean, OOD mean
    <out>/heatmap_<method>_<metric>.png
    <out>/sweep_<key>_<metric>.png, sweep_<key>.csv
    <out>/leaderboard.md
"""
import glob
import json
import os
import re

from ..atomicio import write_json
from ..errors import DeclipError

PLAN_FILE = "protocol.json"
CELLS = "cells"
RUNS = "runs"
JOBS = "jobs"
GRID = "grid.json"
MEANS = "means.csv"
LEADERBOARD = "leaderboard.md"


def safe_name(text):
    """``text`` as a part of a file name (cell ids, figure names): runs of other characters as one ``-``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-") or "x"


def read_json(path, what, fix, keys=()):
    """The JSON mapping in ``path`` (one of the protocol folder's files: ``what`` names it); a file that
    does not parse, or lacks one of ``keys``, is a DeclipError naming it and ``fix`` (what to do)."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError: truncated or overwritten
        raise DeclipError(f"{what} {path} is damaged ({e}); {fix}") from None
    missing = [k for k in keys if k not in doc] if isinstance(doc, dict) else ["(not a mapping)"]
    if missing:
        raise DeclipError(f"{what} {path} is damaged (no {', '.join(missing)}); {fix}")
    return doc


# ---- the plan and the cell markers --------------------------------------------------------------------

_PLAN_FIX = "restore it, or start the protocol again in a new --out"


def plan_path(out_dir):
    return os.path.join(os.fspath(out_dir), PLAN_FILE)


def is_protocol(folder):
    """Whether ``folder`` is a protocol folder (holds protocol.json)."""
    return os.path.isfile(plan_path(folder))


def read_plan(out_dir):
    return read_json(plan_path(out_dir), "protocol plan", _PLAN_FIX, keys=("cells",))


def create(out_dir, plan):
    """A new protocol folder: its cells/ folder and protocol.json (written last: the folder is a protocol
    once it is there)."""
    os.makedirs(os.path.join(os.fspath(out_dir), CELLS), exist_ok=True)
    write_json(plan_path(out_dir), plan)


def ensure_cells(out_dir):
    os.makedirs(os.path.join(os.fspath(out_dir), CELLS), exist_ok=True)


def runs_dir(out_dir):
    """Where the cells' run directories go (their ``log_dir``)."""
    return os.path.join(os.fspath(out_dir), RUNS)


def marker_path(out_dir, cell):
    """The marker of ``cell`` (a plan cell dict): written atomically once the cell is complete."""
    return os.path.join(os.fspath(out_dir), CELLS, cell["id"] + ".json")


def read_marker(path):
    """A finished cell's marker (see :func:`marker_path`)."""
    return read_json(path, "cell marker", "delete it and rerun the protocol: the cell is trained again",
                     keys=("run_dir", "results"))


def write_marker(out_dir, cell, marker):
    """The marker of ``cell``: atomic, so the cell is either done (with every result) or not."""
    return write_json(marker_path(out_dir, cell), marker)


def finished_cells(out_dir, plan=None):
    """The markers (dicts: the cell plus its ``run_dir`` and ``results``) of the plan's finished cells."""
    plan = read_plan(out_dir) if plan is None else plan
    out = []
    for cell in plan["cells"]:
        path = marker_path(out_dir, cell)
        if os.path.isfile(path):
            out.append(read_marker(path))
    return out


def reference_blocks(paths):
    """The published reference blocks (references.py) of the protocol folders among ``paths``, each once: a
    protocol.json of an older version holds one block, a newer one a list."""
    from ..references import blocks

    out = []
    for p in paths:
        if is_protocol(p):
            out += [b for b in blocks(read_plan(p).get("reference")) if b not in out]
    return out


# ---- job records --------------------------------------------------------------------------------------

def record_path(out_dir, cell_id):
    return os.path.join(os.fspath(out_dir), JOBS, f"{cell_id}.json")


def read_record(out_dir, cell_id):
    """The job record of a cell (None without one); a damaged one is named (DeclipError)."""
    path = record_path(out_dir, cell_id)
    if not os.path.isfile(path):
        return None
    return read_json(path, "job record", "delete it once the cell's job no longer runs (squeue, sacct) and rerun the "
                     "command: the cell is submitted again", keys=("executor", "job_id", "stdout", "stderr"))


def write_record(out_dir, cell_id, record):
    return write_json(record_path(out_dir, cell_id), record)


def submitit_folder(out_dir):
    """submitit's folder of the jobs (``%j``: the job id)."""
    return os.path.join(os.fspath(out_dir), JOBS, "submitit", "%j")


# ---- outputs ------------------------------------------------------------------------------------------

def grid_csv_path(out_dir, metric):
    return os.path.join(os.fspath(out_dir), f"grid_{metric}.csv")


def grid_path(out_dir):
    return os.path.join(os.fspath(out_dir), GRID)


def read_grid(out_dir):
    """grid.json: ``{"test": [...], "metrics": {metric: [row]}, "missing": [cell ids]}``."""
    return read_json(grid_path(out_dir), "protocol grid", "rerun the protocol with --report_only to write it again",
                     keys=("test", "metrics"))


def write_grid(out_dir, summary):
    return write_json(grid_path(out_dir), summary)


def means_path(out_dir):
    return os.path.join(os.fspath(out_dir), MEANS)


def leaderboard_path(out_dir):
    return os.path.join(os.fspath(out_dir), LEADERBOARD)


def heatmap_path(out_dir, method, metric):
    return os.path.join(os.fspath(out_dir), f"heatmap_{safe_name(method)}_{metric}.png")


def sweep_plot_path(out_dir, key, metric):
    return os.path.join(os.fspath(out_dir), f"sweep_{safe_name(key)}_{metric}.png")


def sweep_csv_path(out_dir, key):
    return os.path.join(os.fspath(out_dir), f"sweep_{safe_name(key)}.csv")


def figures(out_dir):
    """The heat-maps, then the sweep plots, of a protocol folder (by name)."""
    out = os.fspath(out_dir)
    return (sorted(glob.glob(os.path.join(glob.escape(out), "heatmap_*.png")))
            + sorted(glob.glob(os.path.join(glob.escape(out), "sweep_*.png"))))

