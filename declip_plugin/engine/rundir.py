"""Run directories and atomic result files.

Layout (DeepfakeBench's, plus our files)::

    <log_dir>/<name>_<YYYY-mm-dd-HH-MM-SS>/
        config.yaml          the merged config as run
        run.json             what the leaderboard needs: method name, datasets, in-domain set
        training.log         the log of this run
        tensorboard/         scalars (losses, metrics, lr) and predicted masks
        ckpt_last.pth        resume state (every epoch)
        ckpt_best.pth        the best checkpoint on validation (our format, ``declip test`` reads it)
        test/<dataset>/      metrics.json, per_image.csv, metric_dict_best.pickle, masks/*.png
"""
import csv
import datetime
import io
import json
import logging
import os
import pickle

import yaml

from ..atomicio import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)


def write_json(path, obj):
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def write_yaml(path, obj):
    return atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False, default_flow_style=None))


def write_pickle(path, obj):
    return atomic_write_bytes(path, pickle.dumps(obj))


def write_csv(path, rows, fieldnames):
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fieldnames, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in fieldnames})
    return atomic_write_text(path, buf.getvalue())


def _jsonable(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def timestamp():
    return datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")


def new_run_dir(log_dir, name):
    """``<log_dir>/<name>_<time>`` (a numeric suffix if two runs start in the same second)."""
    base = os.path.join(log_dir, f"{name}_{timestamp()}")
    path, i = base, 1
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    os.makedirs(path)
    return path


def add_log_file(run_dir, filename="training.log"):
    """Send this package's log records to ``run_dir/filename`` too; returns the handler."""
    handler = logging.FileHandler(os.path.join(run_dir, filename), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    logging.getLogger("declip_plugin").addHandler(handler)
    return handler


def remove_log_file(handler):
    logging.getLogger("declip_plugin").removeHandler(handler)
    handler.close()
