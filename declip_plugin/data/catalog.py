"""Named datasets, declared in the YAML files of ``configs/dataset/``.

File format (every file in the directory is read; names must be unique across files)::

    defaults:            # optional: keys merged under every dataset of this file
      adapter: dolos
      root: dolos_data   # relative to the data root (config data_root, $DECLIP_DATA_ROOT,
                         #   ./datasets) unless absolute
    datasets:
      dolos-lama:        # the name given to build_dataset / --dataset
        generator: lama  # the adapter's own keys (see declip_plugin/data/<adapter>.py)

Every dataset needs ``adapter``, the name of a registered dataset adapter. More directories of
such files can be listed in $DECLIP_DATASET_CONFIGS (separated like $PATH); the user's own folder
(:func:`user_dataset_dir`, ``$XDG_CONFIG_HOME/declip/datasets``) is read too: ``declip prepare``
writes the config of each dataset it prepares there.

A name no file declares is still a dataset when the run config points at DeepfakeBench's JSON
folder (``dataset_json_folder``, or ``dfb_config``) and ``<that folder>/<name>.json`` exists: it is
read by the ``deepfakebench_json`` adapter (data/deepfakebench_layout.py).
"""
import copy
import functools
import glob
import logging
import os

import yaml

from ..config import RunConfig
from ..errors import ConfigError, DataError
from ..plugins import get_registry
from ..registry import closest

logger = logging.getLogger(__name__)

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "dataset")
EXTRA_DIRS_ENV = "DECLIP_DATASET_CONFIGS"


def user_dataset_dir():
    """The user's dataset configs: ``$XDG_CONFIG_HOME/declip/datasets`` (default ``~/.config/declip/datasets``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "declip", "datasets")


def config_dirs():
    """The bundled folder, the user's (``declip prepare`` writes there), then each folder of
    $DECLIP_DATASET_CONFIGS (each must be a folder)."""
    extra = [d for d in os.environ.get(EXTRA_DIRS_ENV, "").split(os.pathsep) if d]
    for d in extra:
        if os.path.isfile(d):
            raise ConfigError(f"${EXTRA_DIRS_ENV} names the file {d}, but it lists folders of dataset YAMLs "
                              f"(separated by {os.pathsep!r}): put the file in a folder and list the folder")
        if not os.path.isdir(d):
            raise ConfigError(f"${EXTRA_DIRS_ENV} names {d}, which does not exist; list existing folders of dataset "
                              f"YAMLs (separated by {os.pathsep!r})")
    return (CONFIG_DIR, user_dataset_dir(), *extra)


def _read(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"cannot read dataset config {path}: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("datasets", {}), dict):
        raise ConfigError(f"dataset config {path} must be a mapping with a 'datasets' mapping")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"dataset config {path}: 'defaults' must be a mapping")
    out = {}
    for name, spec in (doc.get("datasets") or {}).items():
        if not isinstance(spec, dict):
            raise ConfigError(f"dataset config {path}: dataset {name!r} must be a mapping")
        merged = {**copy.deepcopy(defaults), **spec}
        if not isinstance(merged.get("adapter"), str):
            raise ConfigError(f"dataset config {path}: dataset {name!r} needs an 'adapter'")
        out[str(name)] = merged
    return out


@functools.lru_cache(maxsize=8)
def _catalog(dirs):
    specs, sources = {}, {}
    for d in dirs:
        for path in sorted(glob.glob(os.path.join(d, "*.yaml")) + glob.glob(os.path.join(d, "*.yml"))):
            for name, spec in _read(path).items():
                if name in specs:
                    raise ConfigError(f"dataset {name!r} is declared twice: in {sources[name]} and in {path}")
                specs[name], sources[name] = spec, path
    return specs, sources


def load_catalog():
    """``({name: spec}, {name: yaml file})`` of every declared dataset (cached)."""
    return _catalog(config_dirs())


def reload_catalog():
    """Forget the cached catalog (after a dataset config was written)."""
    _catalog.cache_clear()


def list_datasets():
    """Sorted names of the declared datasets."""
    return sorted(load_catalog()[0])


def dataset_spec(name, config=None):
    """A copy of the spec of the declared dataset ``name``, else of a DeepfakeBench JSON of that name
    in the folder ``config`` points at; DataError naming the known ones."""
    specs = load_catalog()[0]
    if name in specs:
        return copy.deepcopy(specs[name])
    if config is not None:
        from .deepfakebench_layout import host_json

        found = host_json(name, config)
        if found:
            logger.info("dataset %s: not declared in a dataset config; read from DeepfakeBench's JSON %s", name, found)
            return {"adapter": "deepfakebench_json", "dataset": name}
    hint = closest(name, specs)
    msg = f"unknown dataset {name!r}; known datasets: {', '.join(sorted(specs)) or '(none)'}"
    if hint:
        msg += f" (did you mean {hint!r}?)"
    msg += ("; a DeepfakeBench dataset of your own is read from <dataset_json_folder>/<name>.json when "
            "--dfb_config or dataset_json_folder names that folder")
    raise DataError(msg)


def get_adapter(name):
    """The dataset adapter class registered as ``name`` (built-in and plugin adapters alike)."""
    return get_registry("datasets").get(name)


def locate(name, config=None):
    """``(adapter, [(what, path, exists)])``: where the files of dataset ``name`` are expected."""
    from .base import data_root

    spec = dataset_spec(name, config)
    cls = get_adapter(spec["adapter"])
    locations = getattr(cls, "locations", None)
    found = locations(spec, RunConfig.of(config), data_root(config), name) if locations else []
    return spec["adapter"], [(what, path, os.path.exists(path)) for what, path in found]
