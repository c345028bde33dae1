"""Where a protocol folder keeps its plan and its cell markers (layout: see :mod:`declip_plugin.protocol`).

Read by the protocol runner and by the report, which must not import the runner (the runner writes the
report once every cell is done).
"""
import json
import os

PLAN_FILE = "protocol.json"


def plan_path(out_dir):
    return os.path.join(out_dir, PLAN_FILE)


def is_protocol(folder):
    """Whether ``folder`` is a protocol folder (holds protocol.json)."""
    return os.path.isfile(plan_path(folder))


def read_plan(out_dir):
    with open(plan_path(out_dir), encoding="utf-8") as f:
        return json.load(f)


def marker_path(out_dir, cell):
    """The marker of ``cell`` (a plan cell dict): written atomically once the cell is complete."""
    return os.path.join(out_dir, "cells", cell["id"] + ".json")


def finished_cells(out_dir, plan=None):
    """The markers (dicts: the cell plus its ``run_dir`` and ``results``) of the plan's finished cells."""
    plan = read_plan(out_dir) if plan is None else plan
    out = []
    for cell in plan["cells"]:
        path = marker_path(out_dir, cell)
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                out.append(json.load(f))
    return out


def reference_blocks(paths):
    """The published reference blocks (references.py) of the protocol folders among ``paths``, each once: a
    protocol.json of an older version holds one block, a newer one a list."""
    from .references import blocks

    out = []
    for p in paths:
        if is_protocol(p):
            out += [b for b in blocks(read_plan(p).get("reference")) if b not in out]
    return out
