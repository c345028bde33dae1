"""Datasets and DataLoaders of a run, from the dataset registry and the config: where a detector
meets the data (:func:`data_config`)."""
import logging

import torch
from torch.utils.data import ConcatDataset, DataLoader, DistributedSampler

from ..config import RunConfig
from ..data import build_dataset, collate_fn
from ..detectors.base import capability
from ..errors import ConfigError
from . import runtime
from .signals import worker_ignores_sigterm

logger = logging.getLogger(__name__)


def data_config(config, detector):
    """``config`` with what ``detector``'s training needs of the data (its ``training_data()``):
    ``include_real`` when the config leaves it null, and whether a train split needs masks."""
    needs = capability(detector, "training_data")
    include_real = config.include_real
    return config.replace(include_real=bool(needs.get("real_images", True)) if include_real is None else include_real,
                          require_masks=bool(needs.get("needs_masks", False)))


def build_split(names, split, config):
    """One dataset over the list ``names`` (concatenated) for ``split``."""
    if isinstance(names, str):
        raise TypeError(f"build_split takes a list of dataset names, got the string {names!r}")
    parts = [build_dataset(n, split, config) for n in names]
    for p in parts:
        logger.info("dataset %s [%s]: %d images%s", p.name, split, len(p),
                    f" ({len(p.skipped)} bad files skipped)" if getattr(p, "skipped", None) else "")
    _same_mask_size(parts, split)
    return parts[0] if len(parts) == 1 else ConcatDataset(parts)


def _same_mask_size(parts, split):
    """Masks of datasets mixed in one batch must have one size: DeepfakeBench-format data resizes them
    to ``resolution`` (as its loader), every other adapter to ``mask_size``."""
    sizes, resolution = {}, None
    for p in parts:
        transform = getattr(p, "transform", None)
        if getattr(p, "has_masks", False) and transform is not None:
            sizes.setdefault(transform.mask_size, []).append(f"{p.name} ({transform.resize.name} resize)")
            resolution = transform.resolution
    if len(sizes) > 1:
        found = "; ".join(f"{size} px: {', '.join(names)}" for size, names in sorted(sizes.items()))
        raise ConfigError(f"the {split} datasets give masks of different sizes ({found}), which cannot share a batch: "
                          f"DeepfakeBench-format data resizes masks to resolution as its loader does; set mask_size to "
                          f"the resolution (--opt mask_size={resolution})")


def make_loader(dataset, config, train, device, batch_size=None, seed=0):
    """DataLoader with DeepfakeBench's batch keys; sharded across ranks under torchrun."""
    config = RunConfig.of(config)
    workers = config.workers
    bs = int(batch_size or config.batch_size(train))
    sampler, shuffle = None, train
    if runtime.world_size() > 1:
        sampler = DistributedSampler(dataset, shuffle=True, seed=seed) if train else runtime.ShardSampler(dataset)
        shuffle = False
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=bs, shuffle=shuffle if sampler is None else False, sampler=sampler,
        num_workers=workers, collate_fn=collate_fn, drop_last=False, generator=generator,
        worker_init_fn=worker_ignores_sigterm if workers > 0 else None,  # the main process handles it
        pin_memory=config.pin_memory and device.type == "cuda",
        # persistent workers keep their random streams across epochs, so a resumed run would draw
        # other augmentations than an uninterrupted one: only when the pipeline draws nothing
        persistent_workers=(config.persistent_workers and workers > 0 and train
                            and not random_pipeline(config)),
    )


class Batches:
    """The batches of ``loader`` for one loop. A loop that ends early (an error raised here or in a
    worker, Ctrl-C, SIGTERM) stops the loader's worker processes at once: the traceback in flight keeps
    the iterator alive, so DataLoader's own shutdown (in ``__del__``) would come only at exit, and its
    workers ignore SIGTERM (engine/signals.py)."""

    def __init__(self, loader):
        self.loader = loader

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        iterator = iter(self.loader)
        finished = False
        try:
            yield from iterator
            finished = True
        finally:
            if not finished:
                stop_workers(self.loader, iterator)


def stop_workers(loader, iterator):
    """Shut down the worker processes of a multi-process DataLoader ``iterator`` (a no-op without
    workers); a loader with persistent workers forgets the iterator, so a later loop starts afresh."""
    shutdown = getattr(iterator, "_shutdown_workers", None)  # torch's own shutdown, as its __del__ calls it
    if shutdown is not None:
        shutdown()
    if getattr(loader, "_iterator", None) is iterator:
        loader._iterator = None


def random_pipeline(config):
    """Whether training images go through random augmentation (``augmentation`` or ``flip_prob``)."""
    return config.augmentation != "none" or config.flip_prob > 0


def skipped_files(dataset):
    parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
    return [{"path": p, "reason": r} for d in parts for p, r in getattr(d, "skipped", [])]
