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
such files can be listed in $DECLIP_DATASET_CONFIGS (separated like $PATH).
"""
import copy
import functools
import glob
import os

import yaml

from ..errors import ConfigError, DataError
from ..registry import closest

CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "dataset")
EXTRA_DIRS_ENV = "DECLIP_DATASET_CONFIGS"


def config_dirs():
    extra = [d for d in os.environ.get(EXTRA_DIRS_ENV, "").split(os.pathsep) if d]
    return (CONFIG_DIR, *extra)


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


def list_datasets():
    """Sorted names of the declared datasets."""
    return sorted(load_catalog()[0])


def dataset_spec(name):
    """A copy of the spec of the declared dataset ``name``; DataError naming the known ones."""
    specs = load_catalog()[0]
    if name not in specs:
        hint = closest(name, specs)
        msg = f"unknown dataset {name!r}; known datasets: {', '.join(sorted(specs)) or '(none)'}"
        if hint:
            msg += f" (did you mean {hint!r}?)"
        raise DataError(msg)
    return copy.deepcopy(specs[name])
