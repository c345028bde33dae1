"""Run a real DeepfakeBench checkout (SCLBD/DeepfakeBench) with this package's detectors.

``launch(bench_root, mode, argv)`` runs the checkout's own, unchanged ``training/train.py`` or
``training/test.py`` with ``argv`` (its own flags: ``--detector_path``, ``--test_dataset``,
``--weights_path``, ...). No file of the checkout is edited or copied.

How (see docs/deepfakebench.md for the user's view)
---------------------------------------------------
*Parent* (:func:`launch`): checks the checkout (:func:`validate_checkout`), then starts a child
process ``python -P -m declip_plugin.integrations.deepfakebench`` with

* ``cwd`` = the checkout root (its scripts open ``./training/config/*.yaml``), and
* ``PYTHONPATH`` = ``<root>/training`` first, then the caller's ``PYTHONPATH``. That is the import
  environment ``python training/test.py`` gives the script (``sys.path[0]`` is the script's
  folder); ``-P`` (Python >= 3.11) keeps the current folder off ``sys.path``, as in that case
  (on older Pythons the checkout root is on it too, which the checkout's own modules append anyway).
  Nothing here touches ``sys.path``; the checkout's own modules still append to it as they always do.

With ``convert_weights`` (test), a ``--weights_path`` in our checkpoint format or the official
DeCLIP format is first written as the plain state dict test.py loads (a temporary file).

*Child* (:func:`bootstrap_main`, the module's ``__main__``), in this order:

1. with ``cpu``: puts stub modules in ``sys.modules`` for ``dataset.lsda_dataset`` and
   ``dataset.fwa_blend`` (and their ``training.dataset.*`` twins) - the two dataset modules that
   cannot be imported without a GPU (``torch.cuda.get_device_name()`` in a class body) or without
   dlib's landmark file (``shape_predictor_81_face_landmarks.dat`` loaded at import). The stubs'
   classes raise when used. ``CUDA_VISIBLE_DEVICES`` is set empty, so ``test.py`` picks the CPU.
2. imports ``metrics.registry`` - the same module object the checkout's ``detectors`` package
   registers into (``from metrics.registry import DETECTOR``) - and registers every detector of
   every plugin of entry-point group ``deepfakebench`` (our plugin manager) into its ``DETECTOR``:
   ``DETECTOR.register_module(module_name=name)(cls)``, or ``DETECTOR[name] = cls`` for a
   dict-like registry.
3. loads the unchanged script as a module (its top level runs: argparse, imports; the
   ``if __name__ == '__main__'`` guard does not fire), wraps a few of its module-level functions
   (below) and calls its ``main()``.

What is wrapped (only in the child, at run time; the checkout's files are untouched):

* ``init_seed(config)`` (train.py and test.py; both call it right after merging the YAMLs and the
  command line, before any data loader or model is built): applies the launcher's config
  overrides (``overrides``, and ``data_dir``'s dataset_json_folder / lmdb / lmdb_dir), adds the
  detector YAML's ``label_dict`` entries that the host's test_config.yaml lacks (test.py lets
  test_config's ``label_dict`` replace the detector's; train.py already keeps the detector's),
  checks that our detectors are still registered, then calls the original.
* test.py: ``inference(model, data_dict)`` (records ``pred['mask']`` against ``data_dict['mask']``
  and the label), ``test_one_dataset(model, loader)`` (one localization accumulator per test
  dataset) and ``test_epoch(model, loaders)`` (after the original has computed and printed its own
  metrics: prints the localization metrics in the same ``key: value`` form and writes, per test
  dataset, ``<results>/<model_name>_<time>/test/<dataset>/metric_dict_best.pickle`` - the dict
  test.py computed, in the format DeepfakeBench's Trainer saves; test.py itself writes no file -
  and ``localization_metrics.json`` beside it).
* train.py: the Trainer's ``inference``, ``test_one_dataset``, ``test_epoch`` and ``save_metrics``
  methods (class attributes of ``trainer.trainer.Trainer``): the localization metrics of each test
  round are logged with the Trainer's logger and written as ``localization_metrics.json`` beside
  each ``metric_dict_best.pickle`` the Trainer saves.

Localization is added only when the merged config has ``with_mask: true``, the model's
prediction dict has ``mask`` and the batch has a ground-truth ``mask``. Everything else -
argument parsing, data loading, the model, the checkpoint loading, DeepfakeBench's metrics and
their printing - is the checkout's own code.
"""
import ast
import contextlib
import copy
import datetime
import json
import logging
import math
import os
import pickle
import re
import shlex
import subprocess
import sys
import tempfile
import types

from ..errors import DeclipError

# a fixed name: in the child this module runs as __main__
LOGGER_NAME = "declip_plugin.integrations.deepfakebench"
logger = logging.getLogger(LOGGER_NAME)

ENV_ROOT = "DEEPFAKEBENCH_ROOT"
ENV_PYTHON = "DEEPFAKEBENCH_PYTHON"
BOOTSTRAP_ENV = "DECLIP_DFB_BOOTSTRAP"
BOOTSTRAP_MODULE = "declip_plugin.integrations.deepfakebench"
HOST_MODULE_NAME = "__deepfakebench_host__"
MODES = {"train": "training/train.py", "test": "training/test.py"}
REGISTRY_FILE = "training/metrics/registry.py"
DETECTORS_DIR = "training/detectors"
REQUIRED_FILES = ("training/train.py", "training/test.py", REGISTRY_FILE)
EXIT_BOOTSTRAP_ERROR = 3
LOCALIZATION_FILE = "localization_metrics.json"
DFB_METRICS_FILE = "metric_dict_best.pickle"
#: dataset modules replaced by stubs with ``cpu=True``: module -> names it must provide
CPU_STUBS = {
    "dataset.lsda_dataset": ("LSDADataset", "CustomSampler"),
    "dataset.fwa_blend": ("FWABlendDataset",),
}
CPU_STUB_REASONS = {
    "dataset.lsda_dataset": "it calls torch.cuda.get_device_name() in a class body at import (needs a GPU)",
    "dataset.fwa_blend": "it loads preprocessing/dlib_tools/shape_predictor_81_face_landmarks.dat at import",
}
#: flags of train.py / test.py whose value is a file path (made absolute when relative to the caller)
PATH_FLAGS = ("--detector_path", "--weights_path")
#: DeepfakeBench's scoring metrics (train.py's choose_metric)
DFB_METRIC_SCORING = ("eer", "auc", "acc", "ap")
DATA_AUG_KEYS = ("flip_prob", "rotate_prob", "rotate_limit", "blur_prob", "blur_limit", "brightness_limit",
                 "contrast_limit", "quality_lower", "quality_upper")

# Keys the checkout reads from the merged config with config[...] (no default), by where they must
# come from. The host's train_config.yaml / test_config.yaml supply lmdb, rgb_dir, lmdb_dir,
# dataset_json_folder, label_dict, (train) log_dir, dry_run, SWA, save_avg; the detector YAML the rest.
DFB_KEYS_TEST = (
    # test.py
    "model_name", "manualSeed", "cuda", "cudnn", "test_dataset", "test_batchSize", "workers",
    # dataset/abstract_dataset.py (also for testing: the augmentation pipeline is always built)
    "compression", "frame_num.test", "resolution", "with_mask", "with_landmark", "use_data_augmentation",
    "mean", "std", *(f"data_aug.{k}" for k in DATA_AUG_KEYS),
)
DFB_KEYS_TRAIN = DFB_KEYS_TEST + (
    # train.py + trainer/trainer.py
    "train_dataset", "frame_num.train", "train_batchSize", "optimizer.type", "lr_scheduler", "metric_scoring",
    "nEpochs", "start_epoch", "save_ckpt", "log_dir",
)


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------
def find_bench_root(bench_root=None):
    """``bench_root`` or ``$DEEPFAKEBENCH_ROOT`` as an absolute path (DeclipError if neither)."""
    root = bench_root or os.environ.get(ENV_ROOT)
    if not root:
        raise DeclipError(f"no DeepfakeBench checkout given: pass its folder (--bench-root DIR) or set ${ENV_ROOT} "
                          f"(git clone https://github.com/SCLBD/DeepfakeBench)")
    return os.path.abspath(os.path.expanduser(str(root)))


def validate_checkout(bench_root=None):
    """Check that ``bench_root`` (or $DEEPFAKEBENCH_ROOT) is a DeepfakeBench checkout.

    Expects ``training/train.py``, ``training/test.py`` and ``training/metrics/registry.py`` that
    defines a top-level ``DETECTOR`` registry with ``register_module()`` or item assignment.
    Returns ``{'root', 'registry_kind', 'host_detectors'}``; DeclipError naming what is missing.
    """
    root = find_bench_root(bench_root)
    if not os.path.isdir(root):
        raise DeclipError(f"DeepfakeBench checkout {root} does not exist (or is not a folder)")
    missing = [p for p in REQUIRED_FILES if not os.path.isfile(os.path.join(root, p))]
    if missing:
        raise DeclipError(
            f"{root} is not a DeepfakeBench checkout: expected {', '.join(REQUIRED_FILES)} (the SCLBD/DeepfakeBench "
            f"layout); missing: {', '.join(missing)}. Pass the folder that contains training/ "
            f"(the root of the clone)")
    kind = _check_registry_source(os.path.join(root, REGISTRY_FILE))
    return {"root": root, "registry_kind": kind, "host_detectors": host_detector_names(root)}


def _check_registry_source(path):
    """Statically check registry.py for a DETECTOR registry; returns 'register_module', 'dict' or 'unknown'."""
    try:
        with open(path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError) as e:
        raise DeclipError(f"cannot read the DeepfakeBench registry {path}: {e}") from None
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    assigned, value = [], None
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            for name in ([t] if isinstance(t, ast.Name) else getattr(t, "elts", [])):
                if isinstance(name, ast.Name):
                    assigned.append(name.id)
                    if name.id == "DETECTOR":
                        value = node.value
    if "DETECTOR" not in assigned:
        raise DeclipError(
            f"{path} does not define a top-level DETECTOR registry (DeepfakeBench has `DETECTOR = Registry()` "
            f"with register_module(module_name=...) and DETECTOR[name]); top-level names found: "
            f"{', '.join(sorted(set(assigned))) or '(none)'}. This registry layout is not supported")
    if isinstance(value, ast.Dict) or (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                                       and value.func.id in ("dict", "OrderedDict", "defaultdict")):
        return "dict"
    if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id in classes:
        cls = classes[value.func.id]
        methods = {n.name for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        if "register_module" in methods and "__getitem__" in methods:
            return "register_module"
        if {"__setitem__", "__getitem__"} <= methods:
            return "dict"
        if not cls.bases:
            need = [m for m in ("register_module", "__getitem__") if m not in methods]
            raise DeclipError(
                f"{path}: DETECTOR is a {cls.name}, which lacks {' and '.join(need)} (DeepfakeBench's Registry has "
                f"register_module(module_name=...) to register and __getitem__ for DETECTOR[name]); methods found: "
                f"{', '.join(sorted(methods)) or '(none)'}. This registry layout is not supported")
    return "unknown"  # checked for real in the child, on the object


_REGISTER_RE = re.compile(r"""DETECTOR\.register_module\(\s*(?:module_name\s*=\s*)?['"]([^'"]+)['"]""")


def host_detector_names(root):
    """{name: file} of the detectors the checkout registers (a scan of training/detectors/*.py)."""
    out = {}
    folder = os.path.join(root, DETECTORS_DIR)
    if not os.path.isdir(folder):
        return out
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".py"):
            continue
        try:
            with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
                text = f.read()
        except OSError:
            continue
        for m in _REGISTER_RE.finditer(text):
            out.setdefault(m.group(1), f"{DETECTORS_DIR}/{name}")
    return out


def _get(config, dotted):
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def dfb_config_problems(config, mode="test"):
    """What keeps ``config`` (a detector YAML's dict) from running in DeepfakeBench's ``mode`` script.

    Lists the keys the checkout reads without a default (``config['x']``) that the detector YAML
    must supply (those of the host's train/test_config.yaml are not counted), and values it rejects
    (train.py's ``metric_scoring`` must be one of eer, auc, acc, ap; the chosen optimizer needs its
    section). Returns a list of messages (empty: fine).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be 'train' or 'test', got {mode!r}")
    keys = DFB_KEYS_TRAIN if mode == "train" else DFB_KEYS_TEST
    problems = [f"missing key {k!r}" for k in keys if not _get(config, k)[0]]
    if mode == "train":
        ms = config.get("metric_scoring")
        if "metric_scoring" in config and ms not in DFB_METRIC_SCORING:
            problems.append(f"metric_scoring is {ms!r}, but DeepfakeBench's train.py accepts only "
                            f"{', '.join(DFB_METRIC_SCORING)} (choose_metric raises NotImplementedError)")
        ok, opt_type = _get(config, "optimizer.type")
        if ok:
            sec = (config.get("optimizer") or {}).get(opt_type)
            need = {"adam": ("lr", "weight_decay", "beta1", "beta2", "eps", "amsgrad"),
                    "sgd": ("lr", "momentum", "weight_decay"), "sam": ("lr", "momentum")}.get(opt_type)
            if need is None:
                problems.append(f"optimizer.type is {opt_type!r}; DeepfakeBench knows adam, sgd, sam")
            elif not isinstance(sec, dict):
                problems.append(f"missing key 'optimizer.{opt_type}' (the section of optimizer.type)")
            else:
                problems += [f"missing key 'optimizer.{opt_type}.{k}'" for k in need if k not in sec]
        sched = config.get("lr_scheduler")
        need = {"step": ("lr_step", "lr_gamma"), "cosine": ("lr_T_max", "lr_eta_min")}.get(sched, ())
        problems += [f"missing key {k!r} (lr_scheduler: {sched})" for k in need if k not in config]
    fn = config.get("frame_num")
    if isinstance(fn, int) and not isinstance(fn, bool):
        problems.append("frame_num must be a mapping {train: N, test: N} for DeepfakeBench (config['frame_num'][mode])")
    return problems


# ----------------------------------------------------------------------------------------------
# parent side
# ----------------------------------------------------------------------------------------------
def _argv_value(argv, flag):
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            return i + 1, argv[i + 1]
        if a.startswith(flag + "="):
            return i, a.split("=", 1)[1]
    return None, None


def _absolutize_paths(argv, root):
    """Relative --detector_path / --weights_path that exist from the caller's folder (and not from the
    checkout root, where the script runs) are made absolute."""
    argv = list(argv)
    for flag in PATH_FLAGS:
        i, value = _argv_value(argv, flag)
        if value is None or os.path.isabs(value):
            continue
        here = os.path.abspath(value)
        if os.path.exists(here) and not os.path.exists(os.path.join(root, value)):
            argv[i] = here if argv[i] == value else f"{flag}={here}"
            logger.info("%s %s is relative to the current folder: passing %s (the script runs from %s)",
                        flag, value, here, root)
    return argv


def _read_yaml(path):
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise DeclipError(f"cannot read {path}: {e}") from None
    return data if isinstance(data, dict) else {}


def read_exports(data_dir):
    """The export summaries (``export_<dataset>.json``) written by :func:`export.export_dfb` in ``data_dir``."""
    from .export import SUMMARY_GLOB, read_summaries

    summaries = read_summaries(data_dir)
    if not summaries:
        raise DeclipError(f"{data_dir} holds no dataset exported by `declip export-dfb` (no {SUMMARY_GLOB}); "
                          f"export one first: declip export-dfb DATASET {data_dir}")
    return summaries


def data_overrides(data_dir, root, lmdb=None):
    """Config overrides that point the checkout at the exported tree in ``data_dir``.

    ``dataset_json_folder`` = ``<data_dir>/dataset_json``; ``lmdb_dir`` = ``<data_dir>/lmdb``;
    ``lmdb``: ``False`` (read the rgb tree) when every export's frame paths are relative to this
    checkout ``root``, else ``True`` (read the LMDB, whose keys are the frame paths as written).
    ``lmdb`` forces one. ``label_dict`` gets every exported label. Returns (overrides, summaries).
    """
    data_dir = os.path.abspath(os.path.expanduser(str(data_dir)))
    summaries = read_exports(data_dir)
    rooted = all(s.get("paths_relative_to") == os.path.realpath(root) for s in summaries)
    with_lmdb = all(s.get("lmdb") for s in summaries)
    if lmdb is None:
        lmdb = not rooted
    if lmdb and not with_lmdb:
        names = ", ".join(s["dataset"] for s in summaries if not s.get("lmdb"))
        raise DeclipError(
            f"exported dataset(s) {names} in {data_dir} have no LMDB, and their frame paths are relative to "
            f"{summaries[0].get('paths_relative_to')} instead of this checkout ({root}); re-export with "
            f"--bench-root {root} (or install lmdb and re-export)")
    if not lmdb and not rooted:
        raise DeclipError(f"the frame paths in {data_dir} are not relative to {root}: re-export with --bench-root {root}")
    label_dict = {}
    for s in summaries:
        label_dict.update(s.get("label_dict") or {})
    out = {"dataset_json_folder": os.path.join(data_dir, "dataset_json"), "lmdb_dir": os.path.join(data_dir, "lmdb"),
           "lmdb": bool(lmdb), "label_dict": label_dict}
    return out, summaries


def _normalize_overrides(overrides):
    if overrides is None:
        return {}
    if isinstance(overrides, dict):
        return copy.deepcopy(overrides)
    if isinstance(overrides, str):
        overrides = [overrides]
    from ..config import parse_overrides

    return parse_overrides(list(overrides))


def plugin_detectors():
    """{name: (class, source label)} of every detector our plugin manager knows."""
    from ..plugins import build_registries, create_plugin_manager

    reg = build_registries(create_plugin_manager())["detectors"]
    return {name: (cls, reg.source(name)) for name, cls in reg.items()}


def dfb_weights(weights_path, detector_config, out_path):
    """Write ``weights_path`` (our checkpoint format or the official DeCLIP one) as the plain state
    dict DeepfakeBench's test.py loads (``model.load_state_dict(torch.load(path), strict=True)``)
    of the detector built from ``detector_config`` (a dict or YAML path). Returns ``out_path``."""
    import torch

    from ..detectors import build_detector

    config = _read_yaml(detector_config) if isinstance(detector_config, (str, os.PathLike)) else dict(detector_config)
    detector = build_detector(config, weights_path=weights_path)
    torch.save(detector.state_dict(), out_path)
    return out_path


def _convert_weights_if_needed(argv, root, det_file, workdir):
    """test: a --weights_path in our / the official format becomes a plain state dict (temp file)."""
    i, value = _argv_value(argv, "--weights_path")
    if not value:
        return argv
    path = value if os.path.isabs(value) else os.path.join(root, value)
    if not os.path.isfile(path):
        return argv
    from ..checkpoints import read_detector_checkpoint
    from ..errors import CheckpointError

    try:
        fmt = read_detector_checkpoint(path).format
    except CheckpointError:
        return argv  # not ours to judge: the script reports it
    if fmt == "plain":
        return argv
    if det_file is None:
        raise DeclipError(f"--weights_path {value} is a {fmt} checkpoint; converting it for DeepfakeBench needs "
                          f"--detector_path (the YAML its detector is built from)")
    out = dfb_weights(path, det_file, os.path.join(workdir, "weights_deepfakebench.pth"))
    logger.info("--weights_path %s is in the %s format: passing %s, the plain state dict DeepfakeBench's test.py "
                "loads", value, fmt, out)
    argv = list(argv)
    argv[i] = out if argv[i] == value else f"--weights_path={out}"
    return argv


def launch(bench_root=None, mode="test", argv=(), *, cpu=False, data_dir=None, lmdb=None, overrides=None,
           results_dir=None, localization=True, convert_weights=True, python=None, env=None):
    """Run the checkout's unchanged ``training/<mode>.py`` with ``argv``, our detectors registered.

    bench_root   the checkout (default ``$DEEPFAKEBENCH_ROOT``)
    mode         ``'train'`` or ``'test'``
    argv         the script's own arguments, e.g. ``['--detector_path', 'x.yaml', '--test_dataset',
                 'demo-telea', '--weights_path', 'ckpt.pth']``
    cpu          opt-in CPU mode (test only): hide GPUs and stub the two dataset modules that cannot
                 be imported without CUDA / dlib's landmark file (module docstring)
    data_dir     a folder written by ``declip export-dfb``: point dataset_json_folder / lmdb_dir /
                 lmdb / label_dict at it (:func:`data_overrides`); ``lmdb`` forces True/False
    overrides    config overrides applied after DeepfakeBench's own merge: a dict (nested) or
                 ``['KEY=VALUE', 'data_aug.flip_prob=0']``
    results_dir  test: where ``<model_name>_<time>/test/<dataset>/`` result files go (default: the
                 config's ``log_dir``, relative to the checkout root)
    localization add our localization metrics when the config has ``with_mask: true``
    convert_weights  test: a ``--weights_path`` in our checkpoint format (``declip train``'s
                 ckpt_best.pth) or the official DeCLIP format is converted to the plain state dict
                 test.py loads (a temporary file; see :func:`dfb_weights`)
    python       the interpreter of the child (default ``$DEEPFAKEBENCH_PYTHON`` or this one); it
                 needs DeepfakeBench's requirements and this package installed
    env          extra environment variables for the child

    Returns the script's exit status. Raises DeclipError for a checkout or registry that does not
    fit, or when our detectors could not be registered.
    """
    if mode not in MODES:
        raise DeclipError(f"mode must be 'train' or 'test', got {mode!r}")
    info = validate_checkout(bench_root)
    root = info["root"]
    if results_dir and mode == "train":
        raise DeclipError(
            "results_dir is for test: DeepfakeBench's train.py writes its run folder under the log_dir of "
            "training/config/train_config.yaml (its merge replaces the detector's), before any override could apply")
    if cpu and mode == "train":
        raise DeclipError(
            "DeepfakeBench's training/train.py cannot run on the CPU: it calls torch.cuda.set_device() at import and "
            "its Trainer moves every batch with .cuda(). Train on a GPU machine, or use `declip train` (our embedded "
            "DeepfakeBench-compatible trainer runs on the CPU); --cpu is for test")
    argv = [str(a) for a in argv]
    if argv[:1] == ["--"]:  # argparse.REMAINDER may keep the separator
        argv = argv[1:]
    argv = _absolutize_paths(argv, root)
    ours = plugin_detectors()
    clash = {n: info["host_detectors"][n] for n in ours if n in info["host_detectors"]}
    if clash:
        raise DeclipError("; ".join(
            f"detector name {n!r} of {ours[n][1]} is already registered by the checkout ({f})" for n, f in clash.items())
            + ": DeepfakeBench's registry would silently replace one with the other; rename the plugin's detector")
    over = _normalize_overrides(overrides)
    label_dict_extra = {}
    summaries = []
    if data_dir is not None:
        data_over, summaries = data_overrides(data_dir, root, lmdb=lmdb)
        label_dict_extra.update(data_over.pop("label_dict"))
        over = {**data_over, **over}
    elif lmdb is not None:
        over.setdefault("lmdb", bool(lmdb))
    _, det_path = _argv_value(argv, "--detector_path")
    det_file = None
    if det_path is None:
        logger.warning("no --detector_path given: training/%s.py uses its built-in default path", mode)
    else:
        det_file = det_path if os.path.isabs(det_path) else os.path.join(root, det_path)
        if not os.path.isfile(det_file):
            det_file = None
        if det_file is not None:
            det_cfg = _read_yaml(det_file)
            label_dict_extra = {**(det_cfg.get("label_dict") or {}), **label_dict_extra}
            from ..config import merge

            problems = dfb_config_problems(merge(det_cfg, over), mode)
            if problems:
                logger.warning("%s may not run in DeepfakeBench's %s.py: %s", det_path, mode, "; ".join(problems))
            model_name = det_cfg.get("model_name")
            if model_name and model_name not in ours and model_name not in info["host_detectors"]:
                logger.warning("model_name %r of %s is neither one of our detectors (%s) nor registered by the "
                               "checkout", model_name, det_path, ", ".join(sorted(ours)) or "none")
        else:
            logger.warning("--detector_path %s not found (relative paths are relative to %s)", det_path, root)

    spec = {
        "mode": mode, "root": root, "script": os.path.join(root, MODES[mode]), "argv": argv, "cpu": bool(cpu),
        "overrides": over, "label_dict": label_dict_extra, "localization": bool(localization),
        "results_dir": os.path.abspath(os.path.expanduser(str(results_dir))) if results_dir else None,
        "host_detectors": sorted(info["host_detectors"]), "registry_kind": info["registry_kind"],
    }
    python = python or os.environ.get(ENV_PYTHON) or sys.executable
    with tempfile.TemporaryDirectory(prefix="declip-dfb-") as workdir:
        if mode == "test" and convert_weights:
            spec["argv"] = argv = _convert_weights_if_needed(argv, root, det_file, workdir)
        spec["status_file"] = os.path.join(workdir, "status.json")
        return _run_child(spec, python, root, env, cpu)


def _run_child(spec, python, root, env, cpu):
    mode, argv, status_file = spec["mode"], spec["argv"], spec["status_file"]
    child_env = dict(os.environ)
    child_env.update({str(k): str(v) for k, v in (env or {}).items()})
    training = os.path.join(root, "training")
    child_env["PYTHONPATH"] = os.pathsep.join([training] + [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p])
    child_env[BOOTSTRAP_ENV] = json.dumps(spec)
    if cpu:
        child_env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [python] + (["-P"] if _supports_P(python) else []) + ["-m", BOOTSTRAP_MODULE]
    logger.info("running DeepfakeBench's %s in %s: %s %s", MODES[mode], root, " ".join(cmd),
                " ".join(shlex.quote(a) for a in argv))
    try:
        rc = subprocess.call(cmd, cwd=root, env=child_env)
    except OSError as e:
        raise DeclipError(f"cannot start {python}: {e.strerror or e}") from None
    status = None
    try:
        with open(status_file, encoding="utf-8") as f:
            status = json.load(f)
    except (OSError, ValueError):
        pass
    if status and status.get("error"):
        raise DeclipError(status["error"])
    if status is None and rc != 0:
        raise DeclipError(
            f"the DeepfakeBench bootstrap failed under {python} before the script ran (exit status {rc}; its error is "
            f"above): it needs this package and DeepfakeBench's requirements installed in that environment (see "
            f"docs/deepfakebench.md), or choose another interpreter with --python / ${ENV_PYTHON}")
    if status:
        logger.info("registered into the checkout's DETECTOR: %s", ", ".join(status.get("registered", [])))
    return rc


_P_CACHE = {}


def _supports_P(python):
    """Whether ``python`` has the -P flag (3.11+)."""
    if python == sys.executable:
        return sys.version_info >= (3, 11)
    if python not in _P_CACHE:
        try:
            out = subprocess.run([python, "-c", "import sys; print(sys.version_info >= (3, 11))"],
                                 capture_output=True, text=True, timeout=60)
            _P_CACHE[python] = out.stdout.strip() == "True"
        except (OSError, subprocess.SubprocessError):
            _P_CACHE[python] = False
    return _P_CACHE[python]


# ----------------------------------------------------------------------------------------------
# child side (runs inside the checkout's import environment)
# ----------------------------------------------------------------------------------------------
class BootstrapError(DeclipError):
    """A problem found by the child before the host script ran; reported by the parent."""


def _stub_module(name, attrs, reason):
    mod = types.ModuleType(name)
    mod.__doc__ = f"declip_plugin --cpu stub of DeepfakeBench's {name}: {reason}"

    def make(attr):
        def _unavailable(*args, **kwargs):
            raise RuntimeError(
                f"{name}.{attr} is a stub: `declip dfb --cpu` replaced {name} because {reason}. Run without --cpu "
                f"on a GPU machine (with dlib's landmark file in preprocessing/dlib_tools/) to use it")

        return type(attr, (), {"__init__": _unavailable, "__module__": name, "__doc__": mod.__doc__})

    for attr in attrs:
        setattr(mod, attr, make(attr))
    mod.__declip_stub__ = True
    return mod


def install_cpu_stubs():
    """Put the --cpu stub modules in sys.modules (both import names the checkout uses)."""
    installed = []
    for name, attrs in CPU_STUBS.items():
        for full in (name, "training." + name):
            if full in sys.modules and not getattr(sys.modules[full], "__declip_stub__", False):
                continue  # already imported for real (cannot happen before the script runs)
            sys.modules[full] = _stub_module(full, attrs, CPU_STUB_REASONS[name])
            installed.append(full)
    return installed


def _registry_names(registry):
    data = getattr(registry, "data", None)
    if isinstance(data, dict):
        return set(data)
    if hasattr(registry, "keys"):
        try:
            return set(registry.keys())
        except Exception:  # noqa: BLE001 - a foreign object; only used for messages
            return set()
    return set()


def _registry_get(registry, name):
    try:
        return registry[name]
    except Exception:  # noqa: BLE001
        return None


def check_registry_interface(registry, where="metrics.registry.DETECTOR"):
    """'register_module' or 'setitem': how to register into ``registry`` (BootstrapError if neither,
    or if it cannot be read back with ``registry[name]`` as the scripts do)."""
    has_register = callable(getattr(registry, "register_module", None))
    has_setitem = callable(getattr(type(registry), "__setitem__", None))
    if not callable(getattr(type(registry), "__getitem__", None)) or not (has_register or has_setitem):
        members = sorted(m for m in dir(registry) if not m.startswith("__") or m in ("__getitem__", "__setitem__"))
        raise BootstrapError(
            f"{where} is a {type(registry).__name__} without the interface DeepfakeBench's scripts use: expected "
            f"register_module(module_name=...) (or item assignment) to register and DETECTOR[name] to look up; "
            f"found members: {', '.join(members) or '(none)'}")
    return "register_module" if has_register else "setitem"


def register_into(registry, detectors, where="metrics.registry.DETECTOR"):
    """Register ``{name: (cls, source)}`` into DeepfakeBench's ``DETECTOR``; returns the names."""
    has_register = check_registry_interface(registry, where) == "register_module"
    existing = _registry_names(registry)
    done = []
    for name, (cls, source) in sorted(detectors.items()):
        if name in existing and _registry_get(registry, name) is not cls:
            raise BootstrapError(f"detector name {name!r} of {source} is already in {where}; rename the plugin's detector")
        if has_register:
            registry.register_module(module_name=name)(cls)
        else:
            registry[name] = cls
        if _registry_get(registry, name) is not cls:
            raise BootstrapError(f"registering {name!r} into {where} did not take: {where}[{name!r}] does not return it")
        done.append(name)
    return done


def _finite(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


class LocalizationReporter:
    """Accumulates our localization metrics per test dataset while the host evaluates."""

    def __init__(self, metric_cls):
        self.metric_cls = metric_cls
        self.current = None
        self.loader_keys = {}
        self.results = {}
        self.enabled = True
        self._noted = set()

    def note_once(self, key, msg, *args):
        if key not in self._noted:
            self._noted.add(key)
            logger.info(msg, *args)

    def begin(self, loader):
        key = self.loader_keys.get(id(loader))
        self.current = (key, self.metric_cls()) if self.enabled else None

    def end(self):
        if self.current is None:
            return None
        key, acc = self.current
        self.current = None
        if len(acc) == 0:
            return None
        result = {k: _finite(v) for k, v in acc.compute().items()}
        if key is not None:
            self.results[key] = result
        return key, result

    def record(self, data_dict, predictions):
        if self.current is None or not isinstance(predictions, dict):
            return
        pred = predictions.get("mask")
        gt = data_dict.get("mask") if isinstance(data_dict, dict) else None
        if pred is None:
            self.note_once("nopred", "the model returns no 'mask': no localization metrics")
            return
        if gt is None:
            self.note_once("nogt", "the batches carry no ground-truth 'mask': no localization metrics")
            return
        try:
            self.current[1].update(pred.detach().float(), gt.detach(), data_dict.get("label"))
        except (ValueError, RuntimeError, TypeError) as e:  # never break the host's own evaluation
            key = self.current[0]
            self.current = None
            logger.error("localization metrics for %s are skipped: %s (prediction %s, ground truth %s)", key, e,
                         tuple(pred.shape), tuple(gt.shape))


_TABLE = logging.getLogger(LOGGER_NAME + ".table")


def _print_table(key, result):
    _TABLE.info("dataset: %s (localization, declip_plugin)", key)
    for k, v in result.items():
        _TABLE.info("%s: %s", k, v)


class _HostState:
    def __init__(self, spec):
        self.spec = spec
        self.config = None
        self.time = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
        self.registry = None
        self.ours = {}


def _apply_overrides(config, spec):
    from ..config import merge

    over = spec.get("overrides") or {}
    if over:
        merged = merge(config, over)
        config.clear()
        config.update(merged)
        logger.info("config overrides applied after DeepfakeBench's merge: %s", ", ".join(sorted(over)))
    extra = spec.get("label_dict") or {}
    if extra:
        label_dict = config.get("label_dict")
        if not isinstance(label_dict, dict):
            label_dict = config["label_dict"] = {}
        added = {k: v for k, v in extra.items() if k not in label_dict}
        label_dict.update(added)
        if added:
            logger.info("label_dict entries added: %s", ", ".join(f"{k}: {v}" for k, v in added.items()))


def _wrap_init_seed(g, state):
    original = g.get("init_seed")
    if not callable(original):
        if state.spec.get("overrides"):
            raise BootstrapError(f"{state.spec['script']} has no init_seed(config) function, where the config overrides "
                                 f"are applied; run without --data / --opt")
        if state.spec.get("label_dict"):
            logger.warning("%s has no init_seed(config): the label_dict entries %s are not added", state.spec["script"],
                           ", ".join(state.spec["label_dict"]))
        return

    def init_seed(config, *args, **kwargs):
        _apply_overrides(config, state.spec)
        state.config = config
        for name, cls in state.ours.items():
            if _registry_get(state.registry, name) is not cls:
                logger.error("our detector %r was replaced in DETECTOR by the checkout's own registration", name)
        return original(config, *args, **kwargs)

    g["init_seed"] = init_seed


def _localization_on(state):
    cfg = state.config or {}
    return bool(state.spec.get("localization")) and bool(cfg.get("with_mask"))


def _results_base(state):
    cfg = state.config or {}
    base = state.spec.get("results_dir") or cfg.get("log_dir")
    if not base:
        return None
    task = cfg.get("task_target")
    name = f"{cfg.get('model_name', 'model')}{'_' + task if task else ''}_{state.time}"
    return os.path.join(os.path.abspath(base), name)


def _write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")
    os.replace(tmp, path)


def _json_default(o):
    try:
        return _finite(float(o))
    except (TypeError, ValueError):
        return str(o)


def _localization_record(state, key, result, where):
    cfg = state.config or {}
    return {"dataset": key, "model_name": cfg.get("model_name"), "weights_path": cfg.get("weights_path"),
            "metrics": result, "host": where, "written_by": "declip_plugin.integrations.deepfakebench",
            "protocol": "declip_plugin.metrics.localization (pred mask logits -> sigmoid -> bilinear to GT size; "
                        "GT binarised at 0.5; IoU 0-100)"}


def _patch_test_script(g, state, reporter):
    missing = [f for f in ("inference", "test_one_dataset", "test_epoch") if not callable(g.get(f))]
    if missing:
        logger.warning("%s has no %s(): localization metrics and result files are not added",
                       state.spec["script"], ", ".join(missing))
        return
    orig_inference, orig_one, orig_epoch = g["inference"], g["test_one_dataset"], g["test_epoch"]

    def inference(model, data_dict, *args, **kwargs):
        predictions = orig_inference(model, data_dict, *args, **kwargs)
        reporter.record(data_dict, predictions)
        return predictions

    def test_one_dataset(model, data_loader, *args, **kwargs):
        reporter.enabled = _localization_on(state)
        reporter.begin(data_loader)
        try:
            return orig_one(model, data_loader, *args, **kwargs)
        finally:
            reporter.end()

    def test_epoch(model, test_data_loaders, *args, **kwargs):
        reporter.loader_keys = {id(v): k for k, v in dict(test_data_loaders).items()}
        metrics = orig_epoch(model, test_data_loaders, *args, **kwargs)
        for key, result in reporter.results.items():
            _print_table(key, result)
        _save_test_results(state, metrics, reporter.results)
        return metrics

    g.update(inference=inference, test_one_dataset=test_one_dataset, test_epoch=test_epoch)


def _save_test_results(state, metrics, localization):
    base = _results_base(state)
    if base is None:
        logger.warning("no results folder (neither --results-dir nor log_dir in the config): result files not written")
        return
    keys = list(metrics or {}) if isinstance(metrics, dict) else []
    keys += [k for k in localization if k not in keys]
    try:
        for key in keys:
            folder = os.path.join(base, "test", str(key))
            os.makedirs(folder, exist_ok=True)
            if isinstance(metrics, dict) and key in metrics:
                with open(os.path.join(folder, DFB_METRICS_FILE), "wb") as f:
                    pickle.dump(metrics[key], f)
            if key in localization:
                _write_json(os.path.join(folder, LOCALIZATION_FILE),
                            _localization_record(state, key, localization[key], "DeepfakeBench training/test.py"))
        _write_json(os.path.join(base, "declip_dfb_run.json"), {
            "mode": state.spec["mode"], "checkout": state.spec["root"], "argv": state.spec["argv"],
            "cpu": state.spec.get("cpu"), "overrides": state.spec.get("overrides"), "datasets": keys,
            "localization": sorted(localization)})
    except OSError as e:
        logger.error("cannot write the result files under %s: %s (pass --results-dir)", base, e)
        return
    _TABLE.info("===> results written to %s", base)


def _patch_trainer(state, reporter):
    try:
        import trainer.trainer as host_trainer  # noqa: PLC0415 - the checkout's module, as train.py imports it
    except ImportError as e:
        logger.warning("cannot import the checkout's trainer.trainer (%s): no localization metrics during training", e)
        return
    T = getattr(host_trainer, "Trainer", None)
    needed = ("inference", "test_one_dataset", "test_epoch", "save_metrics")
    if T is None or any(not callable(getattr(T, n, None)) for n in needed):
        logger.warning("trainer.trainer.Trainer lacks %s: no localization metrics during training", ", ".join(needed))
        return
    orig_inference, orig_one, orig_epoch, orig_save = (getattr(T, n) for n in needed)

    def inference(self, data_dict, *args, **kwargs):
        predictions = orig_inference(self, data_dict, *args, **kwargs)
        reporter.record(data_dict, predictions)
        return predictions

    def test_one_dataset(self, data_loader, *args, **kwargs):
        reporter.enabled = bool(state.spec.get("localization")) and bool(getattr(self, "config", {}).get("with_mask"))
        reporter.begin(data_loader)
        try:
            return orig_one(self, data_loader, *args, **kwargs)
        finally:
            done = reporter.end()
            if done and done[0] is not None:
                log = getattr(self, "logger", None) or logger
                log.info("dataset: %s    localization (declip_plugin): %s", done[0],
                         "    ".join(f"{k}: {v}" for k, v in done[1].items()))

    def test_epoch(self, epoch, iteration, test_data_loaders, *args, **kwargs):
        reporter.loader_keys = {id(v): k for k, v in dict(test_data_loaders).items()}
        reporter.results = {}
        return orig_epoch(self, epoch, iteration, test_data_loaders, *args, **kwargs)

    def save_metrics(self, phase, metric_one_dataset, dataset_key, *args, **kwargs):
        out = orig_save(self, phase, metric_one_dataset, dataset_key, *args, **kwargs)
        result = reporter.results.get(dataset_key)
        if result is not None:
            path = os.path.join(self.log_dir, phase, dataset_key, LOCALIZATION_FILE)
            try:
                _write_json(path, _localization_record(state, dataset_key, result, "DeepfakeBench Trainer (train.py)"))
            except OSError as e:
                logger.error("cannot write %s: %s", path, e)
        return out

    for name, fn in zip(needed, (inference, test_one_dataset, test_epoch, save_metrics)):
        fn.__wrapped__ = getattr(T, name)
        setattr(T, name, fn)


def _write_status(path, data):
    if not path:
        return
    with contextlib.suppress(OSError):
        with open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)


def _setup_child_logging():
    root = logging.getLogger("declip_plugin")
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("[declip] %(levelname)s %(message)s"))
        root.addHandler(h)
        root.setLevel(logging.INFO)
    _TABLE.propagate = False
    if not _TABLE.handlers:
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(message)s"))
        _TABLE.addHandler(h)
        _TABLE.setLevel(logging.INFO)


def bootstrap_main():
    """The child: register our detectors into the checkout's DETECTOR, wrap, run its script."""
    _setup_child_logging()
    raw = os.environ.get(BOOTSTRAP_ENV)
    if not raw:
        logger.error("%s is not set: this module is started by declip_plugin.integrations.deepfakebench.launch()",
                     BOOTSTRAP_ENV)
        return 2
    spec = json.loads(raw)
    status_file = spec.get("status_file")
    state = _HostState(spec)
    try:
        if spec.get("cpu"):
            stubbed = install_cpu_stubs()
            logger.info("--cpu: stub modules for %s (GPUs hidden)", ", ".join(stubbed))
        try:
            import metrics.registry as host_registry  # noqa: PLC0415 - the checkout's module
        except Exception as e:  # noqa: BLE001
            raise BootstrapError(f"cannot import the checkout's metrics.registry ({REGISTRY_FILE}) with "
                                 f"{os.path.join(spec['root'], 'training')} on the import path: {e}") from None
        registry = getattr(host_registry, "DETECTOR", None)
        if registry is None:
            raise BootstrapError(f"{REGISTRY_FILE} defines no DETECTOR")
        check_registry_interface(registry)
        try:
            detectors = plugin_detectors()
        except Exception as e:  # noqa: BLE001 - a broken plugin: say which step failed
            raise BootstrapError(f"loading the plugins of entry-point group 'deepfakebench' failed: "
                                 f"{type(e).__name__}: {e}") from None
        registered = register_into(registry, detectors)
        state.registry, state.ours = registry, {n: detectors[n][0] for n in registered}
        script = spec["script"]
        try:
            with open(script, encoding="utf-8") as f:
                code = compile(f.read(), script, "exec")
        except (OSError, SyntaxError) as e:
            raise BootstrapError(f"cannot read {script}: {e}") from None
    except BootstrapError as e:
        _write_status(status_file, {"error": str(e)})
        logger.error("%s", e)
        return EXIT_BOOTSTRAP_ERROR
    _write_status(status_file, {"registered": registered, "host_detectors": spec.get("host_detectors", [])})
    logger.info("registered into DeepfakeBench's DETECTOR: %s", ", ".join(registered))

    from ..plugins import build_registries, create_plugin_manager

    metrics_reg = build_registries(create_plugin_manager())["metrics"]
    reporter = LocalizationReporter(metrics_reg.get("localization"))
    module = types.ModuleType(HOST_MODULE_NAME)
    module.__file__ = script
    sys.modules[HOST_MODULE_NAME] = module
    sys.argv = [script] + list(spec.get("argv") or [])
    g = module.__dict__
    g["__builtins__"] = __builtins__
    exec(code, g)  # the script's top level (argparse, imports); its __main__ guard does not fire  # noqa: S102
    main = g.get("main")
    if not callable(main):
        _write_status(status_file, {"error": f"{script} has no main() function to run"})
        return EXIT_BOOTSTRAP_ERROR
    try:
        _wrap_init_seed(g, state)
    except BootstrapError as e:
        _write_status(status_file, {"error": str(e)})
        return EXIT_BOOTSTRAP_ERROR
    if spec["mode"] == "test":
        _patch_test_script(g, state, reporter)
    elif spec.get("localization"):
        _patch_trainer(state, reporter)
    result = main()
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


if __name__ == "__main__":
    sys.exit(bootstrap_main())
