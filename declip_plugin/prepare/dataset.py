"""The files that make the prepared videos a dataset: written once every video is done.

::

    <out>/dataset_json/<NAME>.json     {NAME: {<NAME>_real|<NAME>_fake: {train|val|test: {video: {label, frames}}}}}
    <out>/lmdb/<NAME>_lmdb/            with --lmdb: frames, masks and landmarks under their JSON paths
                                       (the key DeepfakeBench's loader looks up; .npy as raw array bytes)
    <out>/export_<NAME>.json           the summary `declip dfb --data <out>` reads (as `declip export-dfb`'s)
    <user dataset dir>/<NAME>.yaml     the dataset config (data/catalog.py's user folder), so that
                                       `declip train --train_dataset NAME` reads it at once

Frame paths in the JSON are as `declip export-dfb` writes them (integrations/deepfakebench/export.py):
relative to the DeepfakeBench checkout (``--bench_root``, default $DEEPFAKEBENCH_ROOT) and starting
with ``.``, where its scripts run, else relative to ``<out>``; every label has the three splits.
"""
import datetime
import json
import logging
import os
import shutil

import yaml

from ..atomicio import atomic_write_text
from ..data.base import SPLITS
from ..data.catalog import load_catalog, reload_catalog, user_dataset_dir
from ..errors import DataError
from .. import deepfakebench_facts as facts
from ..integrations.deepfakebench.export import json_frame_path, label_dict_for, write_lmdb
from .writer import LANDMARKS_DIR

logger = logging.getLogger(__name__)

PRODUCER = "declip prepare"


def registration_file(name):
    return os.path.join(user_dataset_dir(), f"{name}.yaml")


def check_registration(name):
    """Fail before any work when another config already declares dataset ``name``."""
    _, sources = load_catalog()
    if name in sources and os.path.realpath(sources[name]) != os.path.realpath(registration_file(name)):
        raise DataError(f"--name {name}: a dataset of that name is declared in {sources[name]}; choose another name")


def _frame_files(tree, item, marker, base):
    """``[(JSON path, file)]`` of the frames of a done item, then its masks and landmarks (for the LMDB)."""
    frames, extra = [], []
    for index in marker["frames"]:
        stem = f"{index:03d}"
        frame = os.path.join(tree.folder(item, facts.FRAMES_DIR), stem + ".png")
        key = json_frame_path(frame, base)
        if key.count(facts.FRAMES_DIR) != 1:
            raise DataError(f"the frame path {key} contains 'frames' more than once, so DeepfakeBench would look for its "
                            f"mask in the wrong place: prepare into a folder whose path does not contain 'frames'")
        frames.append((key, frame))
        for kind, ext in ((facts.MASKS_DIR, ".png"), (LANDMARKS_DIR, ".npy")):
            path = os.path.join(tree.folder(item, kind), stem + ext)
            if os.path.exists(path):
                extra.append((key.replace(facts.FRAMES_DIR, kind)[:-len(".png")] + ext, path))
    return frames, extra


def dataset_json(tree, done, base):
    """``(JSON tree, counts, LMDB files)`` of the done items [(item, marker)]."""
    labels = {tree.label_folder(0): {s: {} for s in SPLITS}, tree.label_folder(1): {s: {} for s in SPLITS}}
    counts = {s: {"real": 0, "fake": 0, "frames": 0, "masks": 0} for s in SPLITS}
    files = []
    for item, marker in done:
        frames, extra = _frame_files(tree, item, marker, base)
        label = tree.label_folder(item.label)
        labels[label][item.split][item.name] = {"label": label, "frames": [k for k, _ in frames]}
        c = counts[item.split]
        c["fake" if item.label else "real"] += 1
        c["frames"] += len(frames)
        c["masks"] += len(marker["frames"]) if marker.get("masks") else 0
        files += frames + extra
    present = {tree.label_folder(it.label) for it, _ in done}
    return {tree.name: {k: v for k, v in labels.items() if k in present}}, counts, files


def dataset_spec(tree, summary):
    """The dataset config entry of the prepared set (a self-contained deepfakebench_json spec); its
    ``prepared`` record (faces, crop size, margin, sampling) tells `declip predict` how to make the
    frames of a new video for a checkpoint trained on it (engine/preprocessing.py)."""
    return {"adapter": "deepfakebench_json", "json": summary["json"], "dataset": tree.name,
            "rgb_dir": tree.out, "base_dir": summary["paths_relative_to"], "label_dict": summary["label_dict"],
            "with_mask": bool(summary["has_masks"]), "lmdb": False, "prepared": summary["settings"]}


def register(tree, summary, src):
    """Write the dataset config into the user's dataset folder; returns its path."""
    path = registration_file(tree.name)
    header = (f"# written by `declip prepare` on {summary['prepared_at']} from {src}: the dataset in {tree.out}\n"
              f"# (its summary: {os.path.join(tree.out, f'export_{tree.name}.json')}); rerun prepare to update it\n")
    atomic_write_text(path, header + yaml.safe_dump({"datasets": {tree.name: dataset_spec(tree, summary)}},
                                                    sort_keys=False, default_flow_style=None))
    reload_catalog()
    return path


def _write_lmdb(tree, files, want):
    """A fresh LMDB (an earlier one's keys may be other paths), written beside and swapped in; without
    ``want`` an earlier run's is removed. Returns its path or None."""
    path = os.path.join(tree.out, "lmdb", f"{tree.name}_lmdb")
    staged = path + ".tmp-new"
    shutil.rmtree(staged, ignore_errors=True)
    if want:
        write_lmdb(staged, files)
    shutil.rmtree(path, ignore_errors=True)
    if want:
        os.replace(staged, path)
    return path if want else None


def write_dataset(tree, done, base, want_lmdb, info):
    """Write the JSON, the LMDB (``want_lmdb``) and the summary; returns the summary. ``info`` holds the
    run's own entries (settings, no_face, failed, ...), merged into the summary."""
    tree_json, counts, files = dataset_json(tree, done, base)
    json_path = os.path.join(tree.out, "dataset_json", f"{tree.name}.json")
    atomic_write_text(json_path, json.dumps(tree_json, indent=1))
    lmdb_path = _write_lmdb(tree, files, want_lmdb)
    present = next(iter(tree_json.values()))
    summary = {
        "dataset": tree.name, "producer": PRODUCER, "out_dir": tree.out, "json": json_path,
        "rgb_dir": tree.rgb_root, "lmdb": lmdb_path, "paths_relative_to": base,
        "label_dict": {k: v for k, v in label_dict_for(tree.name).items() if k in present},
        "counts": counts, "has_masks": any(c["masks"] for c in counts.values()),
        "prepared_at": datetime.datetime.now().isoformat(timespec="seconds"), **info,
    }
    atomic_write_text(os.path.join(tree.out, f"export_{tree.name}.json"), json.dumps(summary, indent=1, sort_keys=True))
    return summary


__all__ = ["check_registration", "dataset_json", "dataset_spec", "register", "registration_file", "write_dataset",
           "PRODUCER"]
