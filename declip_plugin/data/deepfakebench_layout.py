"""Where a DeepfakeBench dataset lives: its JSON, its frames and its LMDB.

DeepfakeBench's preprocessing leaves ``<dataset_json_folder>/<name>.json``, frames under
``rgb_dir`` and, by default (``lmdb: True``), ``<lmdb_dir>/<name>_lmdb``; its train_config.yaml and
test_config.yaml name these folders and carry ``label_dict``. Each of those keys is taken from the
first of these that sets it:

1. the dataset spec (configs/dataset/*.yaml): paths relative to the data root;
2. the run config (a detector YAML, ``--opt rgb_dir=...``): paths relative to the current directory;
3. the DeepfakeBench config named by ``dfb_config`` (``--dfb_config``): a train_config.yaml /
   test_config.yaml, or a checkout folder (its ``training/config/<mode>_config.yaml``); paths
   relative to the checkout root, where DeepfakeBench's scripts run;
4. defaults: ``<data root>/dataset_json``, ``<data root>/rgb`` (the data root itself for a spec with
   ``json:``), ``<data root>/lmdb``, ``lmdb: false``.

``label_dict`` is the spec's with the entries of 3 and then 2 added (theirs win on a clash). A spec
that names its own JSON file (``json:``) is self-contained: 2 and 3 do not apply to its folders and
``lmdb``.
JSON frame paths starting with "." are relative to ``base_dir`` (the spec's, else the checkout root
of ``dfb_config``, else the current directory); others to ``rgb_dir``.
"""
import dataclasses
import functools
import os

import yaml

from .. import deepfakebench_facts as facts
from ..config import RunConfig
from ..errors import ConfigError
from .deepfakebench_lmdb import lmdb_name

FOLDER_KEYS = ("dataset_json_folder", "rgb_dir", "lmdb_dir")
DEFAULT_FOLDERS = {"dataset_json_folder": "dataset_json", "rgb_dir": "rgb", "lmdb_dir": "lmdb"}


@dataclasses.dataclass
class Layout:
    dataset: str            # the JSON's file stem and top-level key
    json: str               # the JSON file
    rgb_dir: str
    base_dir: str
    lmdb: bool
    lmdb_path: str          # <lmdb_dir>/<name>_lmdb
    label_dict: dict
    origin: dict            # key -> where its value came from (for messages)

    def locations(self):
        """``[(what, path)]``: the files a read needs (``declip datasets``)."""
        return [("JSON", self.json), ("LMDB", self.lmdb_path) if self.lmdb else ("frames", self.rgb_dir)]


def _absolute(path, base):
    path = os.path.expanduser(str(path))
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


def _check_host_value(key, value, where):
    if key == "lmdb":
        ok = isinstance(value, bool)
    elif key == "label_dict":
        ok = isinstance(value, dict) and all(isinstance(v, int) for v in value.values())
    else:
        ok = isinstance(value, str) and value.strip() != ""
    if not ok:
        expected = {"lmdb": "true or false", "label_dict": "a mapping of label names to 0 / 1"}.get(key, "a folder path")
        raise ConfigError(f"{where}: {key} must be {expected}, got {value!r}")


def host_config_file(dfb_config, mode):
    """``(yaml file, checkout root)`` of ``dfb_config``: a YAML file, or a checkout folder."""
    path = os.path.abspath(os.path.expanduser(str(dfb_config)))
    if os.path.isdir(path):
        rel = facts.HOST_CONFIG_FILES["test" if mode == "test" else "train"]
        yaml_path = os.path.join(path, rel)
        if not os.path.isfile(yaml_path):
            raise ConfigError(f"dfb_config {dfb_config}: a folder, but not a DeepfakeBench checkout (no {rel} in it); "
                              f"give its train_config.yaml / test_config.yaml or the checkout root")
        return yaml_path, path
    if not os.path.isfile(path):
        raise ConfigError(f"dfb_config {dfb_config} does not exist: give DeepfakeBench's "
                          f"training/config/train_config.yaml (or test_config.yaml), or its checkout folder")
    parent = os.path.dirname(path)
    in_checkout = os.path.basename(parent) == "config" and os.path.basename(os.path.dirname(parent)) == "training"
    return path, os.path.dirname(os.path.dirname(parent)) if in_checkout else parent


@functools.lru_cache(maxsize=8)
def _read_host_config(yaml_path, root, mtime):
    try:
        with open(yaml_path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"dfb_config {yaml_path}: cannot read it: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"dfb_config {yaml_path}: not a mapping of keys (is it DeepfakeBench's train_config.yaml?)")
    if not any(k in doc for k in facts.HOST_DATA_KEYS):  # another kind of YAML: nothing here would be read
        kind = (f"a detector config (model_name: {doc['model_name']})" if "model_name" in doc
                else "not DeepfakeBench's train_config.yaml / test_config.yaml")
        raise ConfigError(f"dfb_config {yaml_path}: {kind}; it sets none of {', '.join(facts.HOST_DATA_KEYS)}: give "
                          f"the checkout's {facts.HOST_CONFIG_FILES['train']} (or test_config.yaml), or the checkout "
                          f"folder (a detector YAML goes to --detector_path)")
    out = {}
    for k in facts.HOST_DATA_KEYS:
        if doc.get(k) is None:
            continue
        _check_host_value(k, doc[k], f"dfb_config {yaml_path}")
        out[k] = _absolute(doc[k], root) if k in FOLDER_KEYS else doc[k]
    return out


def host_keys(config):
    """``(keys, origin, checkout root)`` of the run config's ``dfb_config`` (empty when it has none)."""
    dfb = config.dfb_config
    if not dfb:
        return {}, None, None
    yaml_path, root = host_config_file(dfb, config.mode)
    return dict(_read_host_config(yaml_path, root, os.path.getmtime(yaml_path))), f"dfb_config {yaml_path}", root


def _pick(key, spec, config, host, data_root, self_contained):
    """``(value, origin)`` of one host data key by the precedence of the module docstring."""
    if spec.get(key) is not None:
        return (_absolute(spec[key], data_root) if key in FOLDER_KEYS else spec[key]), "the dataset config"
    if not self_contained:
        value = getattr(config, key)  # a run key of the same name (config/run.py)
        if value is not None:
            return (_absolute(value, os.getcwd()) if key in FOLDER_KEYS else value), "the run config"
        keys, origin, _ = host
        if key in keys:
            return keys[key], origin
    if key == "rgb_dir" and self_contained:
        return _absolute(".", data_root), "the default: the data root"
    if key in DEFAULT_FOLDERS:
        return _absolute(DEFAULT_FOLDERS[key], data_root), "the default under the data root"
    return False, "the default"


def layout(spec, config, data_root, name):
    """The :class:`Layout` of the dataset ``name`` declared by ``spec`` (see the module docstring); ``config``
    the run config (a RunConfig, or a dict of run keys)."""
    config = RunConfig.of(config)
    self_contained = bool(spec.get("json"))
    host = host_keys(config)
    picked = {k: _pick(k, spec, config, host, data_root, self_contained) for k in FOLDER_KEYS + ("lmdb",)}
    dataset = spec.get("dataset")
    if self_contained:
        json_path = _absolute(spec["json"], data_root)
        picked["dataset_json_folder"] = (os.path.dirname(json_path), "the dataset config")
        dataset = dataset or os.path.splitext(os.path.basename(json_path))[0]
    else:
        dataset = dataset or name
        stem = dataset[: -len(facts.C40_SUFFIX)] if dataset.endswith(facts.C40_SUFFIX) else dataset
        json_path = os.path.join(picked["dataset_json_folder"][0], f"{stem}.json")
    labels = dict(spec.get("label_dict") or {})
    for source in (host[0].get("label_dict"), config.label_dict):
        labels.update(source or {})
    base = spec.get("base_dir")
    base_dir = _absolute(base, os.getcwd()) if base else ((not self_contained and host[2]) or os.getcwd())
    lmdb = picked["lmdb"][0]
    if not isinstance(lmdb, bool):
        raise ConfigError(f"dataset {name}: lmdb must be true or false (from {picked['lmdb'][1]}), got {lmdb!r}")
    return Layout(dataset=dataset, json=json_path, rgb_dir=picked["rgb_dir"][0], base_dir=base_dir, lmdb=lmdb,
                  lmdb_path=os.path.join(picked["lmdb_dir"][0], spec.get("lmdb_name") or lmdb_name(dataset)),
                  label_dict=labels, origin={k: v[1] for k, v in picked.items()})


def host_json_folder(config):
    """The DeepfakeBench JSON folder the run config points at (its ``dataset_json_folder``, else its
    ``dfb_config``'s), or None."""
    config = RunConfig.of(config)
    folder = config.dataset_json_folder
    return _absolute(folder, os.getcwd()) if folder else host_keys(config)[0].get("dataset_json_folder")


def host_json_names(config):
    """Sorted names of the dataset JSONs in :func:`host_json_folder` (empty without one)."""
    folder = host_json_folder(config)
    if not folder or not os.path.isdir(folder):
        return []
    return sorted(os.path.splitext(n)[0] for n in os.listdir(folder) if n.endswith(".json"))


def host_json(name, config):
    """The JSON of an undeclared dataset ``name`` in the DeepfakeBench JSON folder the run config
    points at (its ``dataset_json_folder`` or its ``dfb_config``'s), or None."""
    folder = host_json_folder(config)
    if not folder:
        return None
    stem = name[: -len(facts.C40_SUFFIX)] if name.endswith(facts.C40_SUFFIX) else name
    path = os.path.join(folder, f"{stem}.json")
    return path if os.path.isfile(path) else None


__all__ = ["Layout", "layout", "host_keys", "host_config_file", "host_json", "host_json_folder", "host_json_names"]
