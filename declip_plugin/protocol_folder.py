"""Where a protocol folder keeps its plan and its cell markers (layout: see :mod:`declip_plugin.protocol`).

Read by the protocol runner and by the report, which must not import the runner (the runner writes the
report once every cell is done).
"""
import json
import os

from .errors import DeclipError

PLAN_FILE = "protocol.json"


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


_PLAN_FIX = "restore it, or start the protocol again in a new --out"


def plan_path(out_dir):
    return os.path.join(out_dir, PLAN_FILE)


def is_protocol(folder):
    """Whether ``folder`` is a protocol folder (holds protocol.json)."""
    return os.path.isfile(plan_path(folder))


def read_plan(out_dir):
    return read_json(plan_path(out_dir), "protocol plan", _PLAN_FIX, keys=("cells",))


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
            out.append(read_marker(path))
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


def read_marker(path):
    """A finished cell's marker (see :func:`marker_path`)."""
    return read_json(path, "cell marker", "delete it and rerun the protocol: the cell is trained again",
                     keys=("run_dir", "results"))
