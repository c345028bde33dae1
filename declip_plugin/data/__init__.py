"""Datasets for DeCLIP: adapters (dolos, autosplice, folder, deepfakebench_json), transforms,
the demo-data generator and the catalog of named datasets (configs/dataset/*.yaml).

    from declip_plugin.data import build_dataset, collate_fn
    ds = build_dataset("dolos-lama", "train", config)
    loader = DataLoader(ds, batch_size=64, collate_fn=collate_fn)
"""
import logging

from ..config import RunConfig
from ..errors import ConfigError
from .base import ManipulationDataset, collate_fn, data_root, normalize_split
from .catalog import dataset_spec, get_adapter, list_datasets
from .demo import make_demo_data

logger = logging.getLogger(__name__)


def build_dataset(name, split, config=None):
    """The ``split`` ('train' | 'val' | 'test'; 'valid' accepted) of dataset ``name``.

    ``name`` is a dataset declared in configs/dataset/*.yaml (see :func:`list_datasets`) or a
    spec dict ``{adapter: ..., root: ..., ...}``. ``config`` is the run config, a
    :class:`~declip_plugin.config.RunConfig` or a dict of run keys (resolution, mean, std, data_root,
    mask_size, include_real, augmentation, flip_prob, skip_bad_files, max_samples; the others take their
    defaults). Returns a torch Dataset of item dicts; see :class:`~declip_plugin.data.base.ManipulationDataset`.
    """
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
