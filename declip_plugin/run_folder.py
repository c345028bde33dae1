"""The run directory: its layout is known here and nowhere else; every reader and writer of a run's
files goes through this module (as :mod:`declip_plugin.protocol.folder` does for protocol folders).

Layout (DeepfakeBench's, plus our files)::

    <log_dir>/<name>[_<task_target>]_<YYYY-mm-dd-HH-MM-SS>[-N]/
        config.yaml          the merged config as run (``--resume`` reads it back)
        run.json             what the leaderboard and the report need: method name, datasets, in-domain sets
        training.log         the log of a training run (test.log: of a `declip test` run)
        tensorboard/         scalars (losses, metrics, lr) and predicted masks
        feature_cache/       frozen features reused across epochs, when the cache keeps them here
        ckpt_last.pth        resume state (every epoch)
        ckpt_best.pth        the best checkpoint on validation (our format, ``declip test`` reads it)
        test/<dataset>/      metrics.json, per_image.csv, metric_dict_best.pickle, masks/<index>_<stem>.png,
                             and the files a metric writes itself (the video metrics' per_video.csv)

DeepfakeBench's own log folders (its train.py and Trainer) have the same name pattern
``<model_name>[_<task_target>]_<time>`` and share three names with ours: training.log, ckpt_best.pth and
``test/<dataset>/metric_dict_best.pickle``; ``declip dfb`` writes localization_metrics.json beside that
pickle, and declip_dfb_run.json for a run of its test.py (integrations/deepfakebench/results.py).

A run directory is a :class:`RunDir`, a test set's folder in it a :class:`ResultFolder`; ``str()`` of either is
its path. Writes are atomic (:mod:`declip_plugin.atomicio`).
"""
import datetime
import json
import logging
import os
import pickle
import re

from .atomicio import write_csv, write_json, write_pickle, write_yaml
from .errors import DeclipError

CONFIG = "config.yaml"
INFO = "run.json"
LOGS = {"train": "training.log", "test": "test.log"}
TENSORBOARD = "tensorboard"
FEATURE_CACHE = "feature_cache"
LAST_CHECKPOINT = "ckpt_last.pth"
BEST_CHECKPOINT = "ckpt_best.pth"
TESTS = "test"
METRICS = "metrics.json"
PER_IMAGE = "per_image.csv"
DFB_METRICS = "metric_dict_best.pickle"
MASKS = "masks"
LOCALIZATION = "localization_metrics.json"
DFB_RUN = "declip_dfb_run.json"

#: the time in a run directory's name (DeepfakeBench's train.py: datetime.now().strftime of this)
TIME_FORMAT = "%Y-%m-%d-%H-%M-%S"
#: a run directory's name: ``<name>_<time>``, ``-<n>`` after the time when two runs started in the same second
_NAMED = re.compile("^(?P<name>.+)_" + re.sub("%[mdHMS]", r"\\d{2}", TIME_FORMAT.replace("%Y", r"\d{4}")) + r"(-\d+)?$")


def timestamp():
    return datetime.datetime.now().strftime(TIME_FORMAT)


def folder_name(name, task_target=None, time=None):
    """``<name>[_<task_target>]_<time>`` (default time: now), as DeepfakeBench's train.py names its log folders."""
    return f"{name}{'_' + str(task_target) if task_target else ''}_{time or timestamp()}"


def new_run_dir(log_dir, name, task_target=None):
    """A new ``<log_dir>/<name>[_<task_target>]_<time>`` (a numeric suffix if two runs start in the same
    second), created; returns its path."""
    base = os.path.join(log_dir, folder_name(name, task_target))
    path, i = base, 1
    while os.path.exists(path):
        path, i = f"{base}-{i}", i + 1
    os.makedirs(path)
    return path


def name_of(folder):
    """The name of a run directory without its time (``declip_demo_2026-01-01-00-00-00`` -> ``declip_demo``);
    the folder's own name when it carries no time."""
    base = os.path.basename(os.path.normpath(os.fspath(folder)))
    m = _NAMED.match(base)
    return m.group("name") if m else base


def runs_named(parent, name):
    """The run directories ``<parent>/<name>_<time>`` (any task target left out), oldest first."""
    parent = os.fspath(parent)
    if not os.path.isdir(parent):
        return []
    return sorted(os.path.join(parent, d) for d in os.listdir(parent)
                  if _NAMED.match(d) and _NAMED.match(d).group("name") == name)


def find_runs(root):
    """Our run directories under ``root`` (run.json beside a test/ folder), in walk order."""
    out = []
    for folder, dirs, files in os.walk(os.fspath(root)):
        dirs.sort()
        if INFO in files and os.path.isdir(os.path.join(folder, TESTS)):
            out.append(folder)
            dirs[:] = []
    return out


def result_folders(root):
    """Every test folder with results under ``root``: ours (metrics.json) and DeepfakeBench's
    (``test/<dataset>/metric_dict_best.pickle``), as :class:`ResultFolder`, in walk order."""
    out = []
    for folder, dirs, files in os.walk(os.fspath(root)):
        dirs.sort()
        if METRICS in files:
            out.append(ResultFolder(folder))
        elif DFB_METRICS in files and os.path.basename(os.path.dirname(folder)) == TESTS:
            out.append(ResultFolder(folder))
    return out


class _Folder:
    """A folder of the layout, given by its path: usable wherever a path is (``os.fspath``, ``str``)."""

    def __init__(self, path):
        self.path = os.fspath(path)

    def __fspath__(self):
        return self.path

    def __str__(self):
        return self.path

    def _file(self, name):
        return os.path.join(self.path, name)


class RunDir(_Folder):
    """One run directory (see the module docstring)."""

    config = property(lambda self: self._file(CONFIG))
    info = property(lambda self: self._file(INFO))
    tensorboard = property(lambda self: self._file(TENSORBOARD))
    feature_cache = property(lambda self: self._file(FEATURE_CACHE))
    last_checkpoint = property(lambda self: self._file(LAST_CHECKPOINT))
    best_checkpoint = property(lambda self: self._file(BEST_CHECKPOINT))

    def log(self, mode):
        """training.log (``mode`` train) or test.log."""
        return self._file(LOGS["train" if mode == "train" else "test"])

    def test(self, dataset, phase=TESTS):
        """The folder of one test set's results (DeepfakeBench's Trainer: ``<phase>/<dataset>``)."""
        return ResultFolder(os.path.join(self.path, phase, str(dataset)))

    def tests(self):
        """The test folders of this run, by dataset name."""
        root = self._file(TESTS)
        if not os.path.isdir(root):
            return []
        return [ResultFolder(os.path.join(root, d)) for d in sorted(os.listdir(root)) if os.path.isdir(os.path.join(root, d))]

    def has_tests(self):
        return os.path.isdir(self._file(TESTS))

    def resumable(self):
        """Whether ``--resume`` can continue this run: its config.yaml and ckpt_last.pth are there."""
        return os.path.isfile(self.config) and os.path.isfile(self.last_checkpoint)

    def finished_an_epoch(self):
        return os.path.isfile(self.last_checkpoint)

    def read_config(self):
        """config.yaml as a dict (an empty file: {}); a file that does not parse is a DeclipError naming it."""
        import yaml

        try:
            with open(self.config, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise DeclipError(f"cannot read {self.config}: {e}") from None
        return data if isinstance(data, dict) else {}

    def write_config(self, config):
        return write_yaml(self.config, config)

    def read_info(self):
        """run.json ({} when the run has none: DeepfakeBench's folders)."""
        return _read_json(self.info) if os.path.isfile(self.info) else {}

    def write_info(self, info):
        return write_json(self.info, info)

    def name(self):
        """The run's method name (run.json), else its folder's name without the time."""
        return self.read_info().get("name") or name_of(self.path)

    def checkpoint(self):
        """The weights a finished run was tested with: ckpt_best.pth, else those run.json names (a `declip test`
        run); None when there is neither."""
        if os.path.isfile(self.best_checkpoint):
            return self.best_checkpoint
        weights = self.read_info().get("weights")
        return weights if weights and os.path.isfile(str(weights)) else None

    def open_log(self, mode):
        """Send this package's log records to :meth:`log` too; returns the handler (:func:`close_log`)."""
        handler = logging.FileHandler(self.log(mode), encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        logging.getLogger("declip_plugin").addHandler(handler)
        return handler


def close_log(handler):
    logging.getLogger("declip_plugin").removeHandler(handler)
    handler.close()


def mask_file_name(image_path, index):
    """The saved mask of the ``index``-th test image: ``<index:06d>_<stem>.png``."""
    stem = os.path.splitext(os.path.basename(str(image_path)))[0]
    return f"{index:06d}_{stem}.png"


class ResultFolder(_Folder):
    """The results of one test set: ``<run>/test/<dataset>/`` (ours or DeepfakeBench's)."""

    dataset = property(lambda self: os.path.basename(os.path.normpath(self.path)))
    run = property(lambda self: RunDir(os.path.dirname(os.path.dirname(os.path.normpath(self.path)))))
    metrics = property(lambda self: self._file(METRICS))
    per_image = property(lambda self: self._file(PER_IMAGE))
    dfb_metrics = property(lambda self: self._file(DFB_METRICS))
    masks = property(lambda self: self._file(MASKS))
    localization = property(lambda self: self._file(LOCALIZATION))

    def mask(self, image_path, index):
        """The saved mask PNG of the ``index``-th image ``image_path`` (``save_masks``)."""
        return os.path.join(self.masks, mask_file_name(image_path, index))

    def is_ours(self):
        return os.path.isfile(self.metrics)

    def read_metrics(self):
        """metrics.json: ``{"dataset", "method", "in_domain", ..., "metrics": {name: value}}``; a file that does not
        parse, or is no such mapping, is a DeclipError naming it."""
        data = _read_json(self.metrics)
        if not isinstance(data, dict) or not isinstance(data.get("metrics", {}), dict):
            raise DeclipError(f"{self.metrics}: expected {{'metrics': {{name: value}}, ...}}, as `declip test` writes")
        return data

    def write_metrics(self, doc):
        return write_json(self.metrics, doc)

    def read_per_image(self):
        """per_image.csv as a list of dicts (of strings); [] when there is none."""
        import csv

        if not os.path.isfile(self.per_image):
            return []
        with open(self.per_image, encoding="utf-8", newline="") as f:
            return list(csv.DictReader(f))

    def write_per_image(self, rows, fields):
        return write_csv(self.per_image, rows, fields)

    def read_dfb_metrics(self):
        """DeepfakeBench's metric_dict_best.pickle: a dict (floats and numpy arrays only are loaded)."""
        return read_dfb_pickle(self.dfb_metrics)

    def write_dfb_metrics(self, metrics):
        return write_pickle(self.dfb_metrics, metrics)

    def read_localization(self):
        """The metrics of localization_metrics.json (``declip dfb``), {} without the file."""
        if not os.path.isfile(self.localization):
            return {}
        doc = _read_json(self.localization)
        doc = doc.get("metrics", doc) if isinstance(doc, dict) else {}
        return doc if isinstance(doc, dict) else {}

    def write_localization(self, record):
        return write_json(self.localization, record, sort_keys=True)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DeclipError(f"cannot read {path}: {exc}") from exc


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """DeepfakeBench's pickles hold dicts of floats and numpy arrays; nothing else is loaded."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("collections", "defaultdict"), ("builtins", "float")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED or (module == "numpy" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a metrics pickle")


def read_dfb_pickle(path):
    """A metric_dict_best.pickle as a dict; a malformed file is a DeclipError naming it."""
    try:
        with open(path, "rb") as f:
            data = _NumpyOnlyUnpickler(f).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, OverflowError, UnicodeDecodeError, MemoryError,
            AttributeError, ImportError, IndexError, KeyError, TypeError) as exc:  # whatever a malformed file raises
        raise DeclipError(f"cannot read DeepfakeBench metrics {path}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else 'malformed pickle'}") from exc
    if not isinstance(data, dict):
        raise DeclipError(f"{path}: expected a dict of metrics, got {type(data).__name__}")
    return data


def write_dfb_run(folder, record):
    """declip_dfb_run.json of a `declip dfb test` run folder."""
    return write_json(os.path.join(os.fspath(folder), DFB_RUN), record, sort_keys=True)
