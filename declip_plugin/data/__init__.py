"""Datasets for DeCLIP: adapters (dolos, autosplice, folder, deepfakebench_json), transforms,
the demo-data generator and the catalog of named datasets (configs/dataset/*.yaml).

    from declip_plugin.data import build_dataset, collate_fn
    ds = build_dataset("dolos-lama", "train", config)
    loader = DataLoader(ds, batch_size=64, collate_fn=collate_fn)
"""
import importlib

from ..config import RunConfig
from ..errors import ConfigError

# the exports that live in submodules, imported on first use: importing a light submodule (the demo video
# generator, whose methods `declip make-demo-videos` lists in its help) then imports no torch, so a
# `declip` command line that trains nothing starts in about a second
_FROM = {"ManipulationDataset": "base", "collate_fn": "base", "data_root": "base", "normalize_split": "base",
         "dataset_spec": "catalog", "get_adapter": "catalog", "list_datasets": "catalog", "make_demo_data": "demo"}


def __getattr__(name):
    if name not in _FROM:  # AttributeError lets `from declip_plugin.data import <submodule>` import it
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
    globals()[name] = value
    return value


def build_dataset(name, split, config=None):
    """The ``split`` ('train' | 'val' | 'test'; 'valid' accepted) of dataset ``name``.

    ``name`` is a dataset declared in configs/dataset/*.yaml (see :func:`list_datasets`) or a
    spec dict ``{adapter: ..., root: ..., ...}``. ``config`` is the run config, a
    :class:`~declip_plugin.config.RunConfig` or a dict of run keys (resolution, mean, std, data_root,
    mask_size, include_real, augmentation, flip_prob, skip_bad_files, max_samples; the others take their
    defaults). Returns a torch Dataset of item dicts; see :class:`~declip_plugin.data.base.ManipulationDataset`.
    """
    from .catalog import dataset_spec, get_adapter

    config = RunConfig.of(config)
    if isinstance(name, dict):
        spec = dict(name)
        if not isinstance(spec.get("adapter"), str):
            raise ConfigError(f"a dataset spec needs an 'adapter' (one of the registered adapters); got {name!r}")
        spec.setdefault("name", spec["adapter"])
    elif isinstance(name, str):
        spec = dataset_spec(name, config)
        spec["name"] = name
    else:
        raise ConfigError(f"a dataset is a declared name or a spec mapping, got {type(name).__name__}")
    return get_adapter(spec["adapter"])(spec, split, config)


__all__ = [
    "build_dataset", "collate_fn", "list_datasets", "dataset_spec", "get_adapter", "make_demo_data",
    "ManipulationDataset", "data_root", "normalize_split",
]
