"""`declip dfb`: run a real DeepfakeBench checkout's unchanged ``training/train.py`` / ``test.py``
with our detectors registered (the parent side; the child is bootstrap.py).

:func:`launch` checks the checkout (checkout.validate_checkout with the mode: layout, registry,
every wrapped function's signature), prepares the configs DeepfakeBench will read (the detector
YAML and its host config with the overrides merged, served to the script by patches.serve_configs
so its own merge gives the config that runs, logs and saves), then starts
``python -P -m declip_plugin.integrations.deepfakebench.bootstrap`` with ``cwd`` = the checkout
root and ``<root>/training`` first on PYTHONPATH (the import environment ``python training/test.py``
gives the script; nothing here touches ``sys.path``). No file of the checkout is edited or copied.
"""
import copy
import dataclasses
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
from typing import Optional, Sequence, Union

from ...atomicio import write_yaml
from ...errors import DeclipError
from ... import deepfakebench_facts as facts
from .checkout import dfb_config_problems, validate_checkout

logger = logging.getLogger("declip_plugin.integrations.deepfakebench")

ENV_PYTHON = "DEEPFAKEBENCH_PYTHON"
#: flags of train.py / test.py whose value is a file path (made absolute when relative to the caller)
PATH_FLAGS = ("--detector_path", "--weights_path")


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
    """The export summaries (``export_<dataset>.json``) written by export.export_dfb in ``data_dir``."""
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
    from ...config import parse_overrides

    return parse_overrides(list(overrides))


def split_overrides(overrides, host_config):
    """(detector part, host part): a top-level key the host config sets goes into the host config
    (``config.update(host)`` makes its keys win), every other key into the detector YAML."""
    host = {k: v for k, v in overrides.items() if k in host_config}
    det = {k: v for k, v in overrides.items() if k not in host_config}
    return det, host


def check_overrides_can_hold(mode, over, host_config):
    """Overrides the script would replace after its merge (facts.SET_AFTER_MERGE) are errors."""
    for key, instead in facts.SET_AFTER_MERGE[mode].items():
        if key in over:
            raise DeclipError(f"override {key}: DeepfakeBench's {facts.SCRIPTS[mode]} sets {key} itself after merging "
                              f"the YAMLs, so the override would not hold; {instead} instead")
    lmdb = over.get("lmdb", host_config.get("lmdb"))
    if mode == "train" and lmdb and "dataset_json_folder" in over:
        raise DeclipError(
            f"override dataset_json_folder with lmdb true: DeepfakeBench's {facts.SCRIPTS['train']} replaces "
            f"dataset_json_folder by {facts.TRAIN_LMDB_JSON_FOLDER} whenever lmdb is true; train from the rgb tree "
            f"(lmdb false: export with --bench-root this checkout) or place the JSONs there")


def prepare_configs(mode, root, det_file, det_path_arg, over, label_dict_extra, workdir):
    """Write the detector YAML and the host config with the overrides merged into ``workdir``;
    returns {path as the script opens it: file to serve}."""
    from ...config import merge

    host_rel = facts.HOST_CONFIGS[mode]
    host_cfg = _read_yaml(os.path.join(root, host_rel))
    check_overrides_can_hold(mode, over, host_cfg)
    det_over, host_over = split_overrides(over, host_cfg)
    serve = {}
    if det_over and det_file is None:
        raise DeclipError(f"the overrides {', '.join(sorted(det_over))} go into the detector YAML, which needs "
                          f"--detector_path (an existing file)")
    det_cfg = _read_yaml(det_file) if det_file is not None else {}
    # train.py keeps the detector's label_dict when it has one (else the host's): extend whichever is used
    det_labels = "label_dict" in det_cfg and bool(label_dict_extra)
    if det_over or det_labels:
        det_cfg = merge(det_cfg, det_over)
        if det_labels:
            det_cfg["label_dict"] = {**label_dict_extra, **(det_cfg.get("label_dict") or {})}
        serve[det_path_arg] = write_yaml(os.path.join(workdir, "detector.yaml"), det_cfg)
    if host_over or label_dict_extra:
        host_cfg = merge(host_cfg, host_over)
        if label_dict_extra:
            host_cfg["label_dict"] = {**label_dict_extra, **(host_cfg.get("label_dict") or {})}
        serve[host_rel] = write_yaml(os.path.join(workdir, os.path.basename(host_rel)), host_cfg)
    return serve


def dfb_weights(weights_path, detector_config, out_path):
    """Write ``weights_path`` (our checkpoint format or the official DeCLIP one) as the plain state
    dict DeepfakeBench's test.py loads (``model.load_state_dict(torch.load(path), strict=True)``)
    of the detector built from ``detector_config`` (a dict or YAML path). Returns ``out_path``."""
    import torch

    from ...detectors import build_detector

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
    from ...checkpoints import read_detector_checkpoint
    from ...errors import CheckpointError

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


@dataclasses.dataclass
class LaunchSpec:
    """What `declip dfb train|test` runs: the checkout's unchanged ``training/<mode>.py`` with ``argv``.

    bench_root   the checkout (default ``$DEEPFAKEBENCH_ROOT``)
    mode         ``'train'`` or ``'test'``
    argv         the script's own arguments, e.g. ``['--detector_path', 'x.yaml', '--test_dataset',
                 'demo-telea', '--weights_path', 'ckpt.pth']``
    cpu          opt-in CPU mode (test only): hide GPUs; implies ``stub_datasets``
    stub_datasets  replace the dataset modules that cannot be imported without a GPU or without
                 dlib's landmark file (facts.CPU_UNIMPORTABLE) by stubs whose classes raise when
                 used (default: ``cpu``); also for train on a GPU machine that lacks the landmark file
    data_dir     a folder written by ``declip export-dfb``: point dataset_json_folder / lmdb_dir /
                 lmdb / label_dict at it (:func:`data_overrides`); ``lmdb`` forces True/False
    overrides    config overrides: a dict (nested) or ``['KEY=VALUE', 'data_aug.flip_prob=0']``;
                 merged into the YAMLs the script reads, so its own merge gives the config that
                 runs (train.py logs it and names its log folder from it)
    results_dir  test: where ``<model_name>_<time>/test/<dataset>/`` result files go (default: the
                 config's ``log_dir``, relative to the checkout root)
    localization add our localization metrics when the config has ``with_mask: true``
    convert_weights  test: a ``--weights_path`` in our checkpoint format (``declip train``'s
                 ckpt_best.pth) or the official DeCLIP format is converted to the plain state dict
                 test.py loads (a temporary file; see :func:`dfb_weights`)
    python       the interpreter of the child (default ``$DEEPFAKEBENCH_PYTHON`` or this one); it
                 needs DeepfakeBench's requirements and this package installed
    env          extra environment variables for the child
    export       export the datasets the script is given (--train_dataset / --test_dataset) that are
                 ours (a Dolos, AutoSplice, folder or demo dataset: adapters the checkout cannot read)
                 and that ``data_dir`` lacks, into ``data_dir`` first (:func:`export.export_dfb`);
                 without it such a dataset is an error saying how to export it
    data_root    the data root of those datasets (as for ``declip train``)
    cpu_if_no_cuda  test: run as with ``cpu`` when the interpreter sees no GPU

    ``--detector_path`` may name a bundled detector config (``declip_demo``): the script then gets
    that YAML with every key DeepfakeBench reads (export.dfb_detector_config), written to a
    temporary file.
    """

    bench_root: Optional[str] = None
    mode: str = "test"
    argv: Sequence[str] = ()
    cpu: bool = False
    stub_datasets: Optional[bool] = None
    data_dir: Optional[str] = None
    lmdb: Optional[bool] = None
    overrides: Union[dict, Sequence[str], None] = None
    results_dir: Optional[str] = None
    localization: bool = True
    convert_weights: bool = True
    python: Optional[str] = None
    env: Optional[dict] = None
    export: bool = False
    data_root: Optional[str] = None
    cpu_if_no_cuda: bool = False


def launch(spec):
    """Run the checkout's unchanged ``training/<mode>.py`` as ``spec`` (a :class:`LaunchSpec`) says, our
    detectors registered.

    Returns the script's exit status. Raises DeclipError for a checkout that does not fit (one line
    naming the file and function), or when our detectors could not be registered. Everything is
    checked before anything is written (exports, temporary configs) or started.
    """
    mode, results_dir, env = spec.mode, spec.results_dir, spec.env
    _check_spec(spec)
    info = validate_checkout(spec.bench_root, mode=mode, localization=spec.localization)
    root = info["root"]
    argv = [str(a) for a in spec.argv]
    if argv[:1] == ["--"]:  # argparse.REMAINDER may keep the separator
        argv = argv[1:]
    argv = _absolutize_paths(argv, root)
    over = _normalize_overrides(spec.overrides)
    bundled = _bundled_detector(argv, root)
    python = choose_python(spec.python, root)
    cpu = bool(spec.cpu)
    if spec.cpu_if_no_cuda and not cpu and mode == "test" and _cuda_probe(python, root, env) == 3:
        logger.info("%s sees no GPU: running DeepfakeBench's test.py on the CPU (as --cpu)", python)
        cpu = True
    stub = bool(cpu if spec.stub_datasets is None else spec.stub_datasets)
    if mode == "train" or not stub:
        _require_cuda(python, root, env, mode)
    _require_imports(python, root)
    to_export = _datasets_to_export(spec, argv, root, over, bundled)
    with tempfile.TemporaryDirectory(prefix="declip-dfb-") as workdir:
        _export_datasets(to_export, spec, root, bundled)
        if bundled:
            argv = _write_bundled_detector(argv, bundled, workdir)
        label_dict_extra = {}
        if spec.data_dir is not None and (not spec.export or _has_exports(spec.data_dir)):
            data_over, _ = data_overrides(spec.data_dir, root, lmdb=spec.lmdb)
            label_dict_extra.update(data_over.pop("label_dict"))
            over = {**data_over, **over}
        elif spec.lmdb is not None:
            over.setdefault("lmdb", bool(spec.lmdb))
        det_path, det_file, model_name, label_dict_extra = _detector_yaml(argv, root, mode, over, label_dict_extra,
                                                                          info)
        rename = names_in_checkout(info["host_detectors"])
        if model_name in rename:
            logger.warning("model_name %r of %s is the checkout's own detector (%s), which runs; ours runs as %r (set "
                           "model_name: %s to run it)", model_name, det_path, info["host_detectors"][model_name],
                           rename[model_name], rename[model_name])
        child = {
            "mode": mode, "root": root, "commit": info["commit"], "script": os.path.join(root, facts.SCRIPTS[mode]),
            "argv": argv, "cpu": cpu, "stub_datasets": stub, "overrides": over, "label_dict": label_dict_extra,
            "localization": bool(spec.localization), "rename": rename,
            "results_dir": os.path.abspath(os.path.expanduser(str(results_dir))) if results_dir else None,
        }
        child["serve"] = prepare_configs(mode, root, det_file, det_path, over, label_dict_extra, workdir)
        if mode == "test" and spec.convert_weights:
            child["argv"] = _convert_weights_if_needed(argv, root, det_file, workdir)
        child["status_file"] = os.path.join(workdir, "status.json")
        return _run_child(child, python, root, env, cpu)


def _check_spec(spec):
    if spec.mode not in facts.SCRIPTS:
        raise DeclipError(f"mode must be 'train' or 'test', got {spec.mode!r}")
    if spec.results_dir and spec.mode == "train":
        raise DeclipError(
            "results_dir is for test: DeepfakeBench's train.py writes its run folder under log_dir (pass "
            "--opt log_dir=DIR)")
    if spec.cpu and spec.mode == "train":
        raise DeclipError(
            "DeepfakeBench's training/train.py cannot run on the CPU: it calls torch.cuda.set_device() at import and "
            "its Trainer moves every batch with .cuda(). Train on a GPU machine, or use `declip train` (our embedded "
            "DeepfakeBench-compatible trainer runs on the CPU); --cpu is for test")
    if spec.export and spec.data_dir is None:
        raise DeclipError("--export writes the exports into the --data folder: pass --data DIR too")


#: the flags of train.py / test.py that name the datasets each reads
DATASET_FLAGS = {"train": ("--train_dataset", "--test_dataset"), "test": ("--test_dataset",)}


def _argv_values(argv, flag):
    """The values of a ``nargs='+'`` flag of the script (``--flag a b`` or ``--flag=a``); None if absent."""
    for i, a in enumerate(argv):
        if a.startswith(flag + "="):
            return [a.split("=", 1)[1]]
        if a == flag:
            out = []
            for b in argv[i + 1:]:
                if b.startswith("-"):
                    break
                out.append(b)
            return out
    return None


def _bundled_detector(argv, root):
    """The bundled detector config that ``--detector_path`` names (``declip_demo``: no such file from
    here or the checkout root), else None."""
    from ...config import bundled_names

    _, det_path = _argv_value(argv, "--detector_path")
    if not det_path or os.path.exists(det_path) or os.path.exists(os.path.join(root, det_path)):
        return None
    return det_path if det_path in bundled_names("detector") else None


def _write_bundled_detector(argv, name, workdir):
    """``--detector_path NAME`` -> a YAML the checkout reads (export.dfb_detector_config) in ``workdir``."""
    from .export import dfb_detector_config

    source, cfg, notes = dfb_detector_config(name)
    path = write_yaml(os.path.join(workdir, f"{name}.yaml"), cfg)
    logger.info("--detector_path %s is a bundled detector config: passing %s (%s with the keys DeepfakeBench reads: "
                "%s)", name, path, source, ", ".join(notes) or "none added")
    i, value = _argv_value(argv, "--detector_path")
    argv = list(argv)
    argv[i] = path if argv[i] == value else f"--detector_path={path}"
    return argv


def _script_datasets(argv, root, bundled, mode):
    """The dataset names the ``mode`` script will read: its flags', else the detector YAML's."""
    names = []
    det_cfg = None
    for flag in DATASET_FLAGS[mode]:
        values = _argv_values(argv, flag)
        if values is None:
            if det_cfg is None:
                _, det_path = _argv_value(argv, "--detector_path")
                det_file = None
                if bundled:
                    from ...config import resolve_config_path

                    det_file = str(resolve_config_path(bundled, "detector"))
                elif det_path:
                    det_file = det_path if os.path.isabs(det_path) else os.path.join(root, det_path)
                det_cfg = _read_yaml(det_file) if det_file and os.path.isfile(det_file) else {}
            values = det_cfg.get(flag[2:]) or []
            values = [values] if isinstance(values, str) else list(values)
        names += [str(v) for v in values if str(v) not in names]
    return names


def _checkout_has_json(root, mode, over, name):
    """Whether a dataset JSON ``<name>.json`` is where the checkout will look (its dataset_json_folder,
    or train.py's LMDB one)."""
    host = _read_yaml(os.path.join(root, facts.HOST_CONFIG_FILES[mode]))
    folders = [over.get("dataset_json_folder") or host.get("dataset_json_folder"), facts.TRAIN_LMDB_JSON_FOLDER]
    return any(f and os.path.isfile(os.path.join(root, str(f), f"{name}.json")) for f in folders)


def _datasets_to_export(spec, argv, root, over, bundled):
    """The script's datasets that only `declip export-dfb` makes readable for the checkout (declared by
    us with an adapter other than deepfakebench_json) and that neither ``spec.data_dir``'s exports nor
    the checkout hold: with ``spec.export`` the ones to export now (their files checked here, before
    anything is written), else an error naming the command that exports them."""
    from ...data.catalog import load_catalog, locate
    from .export import read_summaries

    specs = load_catalog()[0]
    exported = set()
    if spec.data_dir is not None and os.path.isdir(spec.data_dir):
        exported = {s["dataset"] for s in read_summaries(spec.data_dir)}
    names = _script_datasets(argv, root, bundled, spec.mode)
    ours = [n for n in names if n in specs and specs[n].get("adapter") != "deepfakebench_json"]
    needed = [n for n in ours if n not in exported and not _checkout_has_json(root, spec.mode, over, n)]
    elsewhere = [n for n in names if n not in exported and n not in needed]
    if spec.data_dir is not None and (exported or needed) and elsewhere:
        raise DeclipError(
            f"dataset(s) {', '.join(elsewhere)} are not among the exports in {spec.data_dir}, and DeepfakeBench reads "
            f"every dataset JSON from one dataset_json_folder, which --data points at the exports: run them in a "
            f"separate command without --data, or export them there too")
    if not needed:
        return []
    data_root = f" --data_root {spec.data_root}" if spec.data_root else ""
    if not spec.export:
        out = spec.data_dir or "EXPORT_DIR"
        others = " (and the same for the others)" if len(needed) > 1 else ""
        raise DeclipError(
            f"dataset(s) {', '.join(needed)} are not in DeepfakeBench's layout (adapter "
            f"{', '.join(sorted({specs[n]['adapter'] for n in needed}))}) and not exported for the checkout: run `declip export-dfb {needed[0]} {out}{data_root} "
            f"--bench_root {root}`{others} and pass --data {out}, or pass --export --data {out} and `declip dfb` "
            f"exports them first")
    config = {"data_root": spec.data_root} if spec.data_root else {}
    for name in needed:
        adapter, where = locate(name, config)
        lost = [f"{what} {path}" for what, path, ok in where if not ok]
        if lost:
            raise DeclipError(f"dataset {name} (adapter {adapter}) is not where its config expects it: missing {'; '.join(lost)} "
                              f"(`declip datasets{data_root}` shows every dataset; docs/data.md says where to get them)")
    return needed


def _has_exports(data_dir):
    from .export import read_summaries

    return os.path.isdir(data_dir) and bool(read_summaries(data_dir))


def _export_datasets(names, spec, root, bundled):
    """``declip export-dfb NAME <data_dir>`` for each of ``names``, paths relative to the checkout."""
    from .export import export_dfb

    for name in names:
        config = {"bench_root": root}
        if spec.data_root:
            config["data_root"] = spec.data_root
        if bundled:
            config["detector"] = bundled
        summary = export_dfb(name, spec.data_dir, config)
        logger.info("exported %s for the checkout into %s (labels %s)", name, summary["out_dir"],
                    ", ".join(summary["label_dict"]))


def _detector_yaml(argv, root, mode, over, label_dict_extra, info):
    """The --detector_path the script gets: (as passed, the file or None, its model_name, label_dict
    with its entries added); warns about what may not run."""
    _, det_path = _argv_value(argv, "--detector_path")
    det_file, model_name = None, None
    if det_path is None:
        logger.warning("no --detector_path given: training/%s.py uses its built-in default path", mode)
        return det_path, det_file, model_name, label_dict_extra
    det_file = det_path if os.path.isabs(det_path) else os.path.join(root, det_path)
    if not os.path.isfile(det_file):
        logger.warning("--detector_path %s not found (relative paths are relative to %s)", det_path, root)
        return det_path, None, model_name, label_dict_extra
    from ...config import merge

    ours = _plugin_detector_sources()
    det_cfg = _read_yaml(det_file)
    label_dict_extra = {**(det_cfg.get("label_dict") or {}), **label_dict_extra}
    problems = dfb_config_problems(merge(det_cfg, over), mode)
    if problems:
        logger.warning("%s may not run in DeepfakeBench's %s.py: %s", det_path, mode, "; ".join(problems))
    model_name = det_cfg.get("model_name")
    if model_name and model_name not in ours and model_name not in info["host_detectors"]:
        logger.warning("model_name %r of %s is neither one of our detectors (%s) nor registered by the "
                       "checkout", model_name, det_path, ", ".join(sorted(ours)) or "none")
    return det_path, det_file, model_name, label_dict_extra


def choose_python(python, root):
    """``python``, else $DEEPFAKEBENCH_PYTHON, else the interpreter `declip dfb setup` recorded for
    ``root``, else this one."""
    from .environment import recorded_python

    chosen = python or os.environ.get(ENV_PYTHON) or recorded_python(root)
    if chosen:
        return chosen
    logger.info("no --python, $%s or environment recorded by `declip dfb setup` for %s: running the checkout "
                "under %s", ENV_PYTHON, root, sys.executable)
    return sys.executable


def _plugin_detector_sources():
    from ...plugins import build_registries, create_plugin_manager

    reg = build_registries(create_plugin_manager())["detectors"]
    return {name: reg.source(name) for name in reg.names()}


#: what a plugin detector whose name the checkout registers too is called inside it (when no other of
#: our names for the same class is free)
ALIAS_SUFFIX = "_plugin"


def names_in_checkout(host_detectors):
    """{our detector name: the name it runs under in the checkout} for our names the checkout
    registers too (its detector keeps the name): another of our names for the same class when one is
    free, else ``<name>_plugin``. E.g. DeepFakesDetection registers clip_enhanced, clip_stan and
    timesformer: ours run as clip_enhanced_plugin, clip_stan_plugin and timesformer_effb0."""
    from ...plugins import build_registries, create_plugin_manager

    reg = build_registries(create_plugin_manager())["detectors"]
    classes = dict(reg.items())
    out = {}
    for name, cls in classes.items():
        if name not in host_detectors:
            continue
        twins = [n for n, c in classes.items() if c is cls and n != name and n not in host_detectors]
        if twins:
            out[name] = twins[0]
            continue
        alias = name + ALIAS_SUFFIX
        if alias in host_detectors or alias in classes:
            raise DeclipError(f"detector name {name!r} of {reg.source(name)} is registered by the checkout "
                              f"({host_detectors[name]}) and so is its alternative {alias!r}: rename the plugin's detector")
        out[name] = alias
    for name, alias in out.items():
        logger.info("the checkout registers %r itself (%s): ours runs as %r", name, host_detectors[name], alias)
    return out


def _require_imports(python, root):
    """Every module the checkout's scripts import is there (a fork's extras: one line, before it runs)."""
    from .environment import missing_imports, missing_imports_line

    missing = missing_imports(python, root)
    if missing:
        raise DeclipError(missing_imports_line(missing, python, root))


#: set in the environment of the CUDA check that precedes train.py
CUDA_PROBE_ENV = "DECLIP_CUDA_PROBE"


def _child_env(env):
    out = dict(os.environ)
    out.update({str(k): str(v) for k, v in (env or {}).items()})
    return out


def _cuda_probe(python, root, env):
    """0 when ``python`` (in the child's environment) sees a GPU, 3 when it does not, else its exit status."""
    probe = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)"
    try:  # CUDA_PROBE_ENV marks the probe, so that a test harness can answer it alone
        return subprocess.run([python, "-c", probe], cwd=root, env={**_child_env(env), CUDA_PROBE_ENV: "1"},
                              capture_output=True, timeout=300).returncode
    except (OSError, subprocess.SubprocessError) as e:
        raise DeclipError(f"cannot start {python} to check for CUDA: {e}") from None


def _require_cuda(python, root, env, mode="train"):
    """DeepfakeBench's train.py needs CUDA (torch.cuda.set_device at import, .cuda() in its Trainer),
    and so does importing its dataset package unstubbed (test.py without --cpu): ask the interpreter
    that will run it, in the environment it will get, before starting it."""
    rc = _cuda_probe(python, root, env)
    if rc == 3 and mode == "test":
        module, (_, why) = next(iter(facts.CPU_UNIMPORTABLE.items()))
        raise DeclipError(
            f"DeepfakeBench's training/test.py imports its dataset package, which needs CUDA ({module}: {why}), and "
            f"{python} sees no GPU (torch.cuda.is_available() is false): pass --cpu (it stubs those modules and "
            f"test.py runs on the CPU), or run on a GPU machine")
    if rc == 3:
        raise DeclipError(
            f"DeepfakeBench's training/train.py needs CUDA and {python} sees no GPU (torch.cuda.is_available() is "
            f"false): train on a GPU machine, or use `declip train` (the embedded trainer runs on the CPU)")
    if rc != 0:
        raise DeclipError(f"{python} cannot import torch (exit status {rc}): choose the interpreter of the checkout's "
                          f"environment with --python / ${ENV_PYTHON}")


def _run_child(spec, python, root, env, cpu):
    from .bootstrap import BOOTSTRAP_ENV, BOOTSTRAP_MODULE

    mode, argv, status_file = spec["mode"], spec["argv"], spec["status_file"]
    child_env = _child_env(env)
    training = os.path.join(root, "training")
    child_env["PYTHONPATH"] = os.pathsep.join([training] + [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p])
    child_env[BOOTSTRAP_ENV] = json.dumps(spec)
    if cpu:
        child_env["CUDA_VISIBLE_DEVICES"] = ""
    cmd = [python] + (["-P"] if _supports_P(python) else []) + ["-m", BOOTSTRAP_MODULE]
    logger.info("running DeepfakeBench's %s in %s: %s %s", facts.SCRIPTS[mode], root, " ".join(cmd),
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
