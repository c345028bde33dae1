"""Detectors, and ``build_detector``: the one way to make one from a config."""
__all__ = ["AbstractDetector", "build_detector", "capability", "load_weights", "save_detector_checkpoint"]
import logging

import torch

from ..errors import ConfigError
from .base import AbstractDetector, capability, save_detector_checkpoint

logger = logging.getLogger(__name__)


def build_detector(config, weights_path=None, device=None):
    """A detector from a config dict, a run's typed config (its merged dict), a YAML path or a bundled
    config name.

    The class comes from the detector registry (``model_name``); ``weights_path`` loads a
    checkpoint through the detector's ``load_weights``. When the checkpoint carries the backbone,
    the configured ``pretrained`` weights are not fetched at all.
    """
    from ..config import RunConfig, load_detector_config
    from ..plugins import get_registry

    if isinstance(config, RunConfig):
        config = config.to_dict()  # DeepfakeBench's contract: cls(config) with the merged dict
    elif not isinstance(config, dict):
        config = load_detector_config(config)
    config = dict(config)
    name = config.get("model_name")
    if not name:
        raise ConfigError("the detector config has no 'model_name' (e.g. model_name: declip)")
    cls = get_registry("detectors").get(name)
    ckpt = None
    if weights_path is not None:
        from ..checkpoints import DetectorCheckpoint, read_detector_checkpoint

        ckpt = weights_path if isinstance(weights_path, DetectorCheckpoint) else read_detector_checkpoint(weights_path)
        if hasattr(cls, "config_from_checkpoint"):
            config = cls.config_from_checkpoint(ckpt, config)
    detector = cls(config)
    if ckpt is not None:
        load_weights(detector, ckpt)
    if device is not None:
        detector = detector.to(torch.device(device))
    return detector


def load_weights(detector, ckpt):
    """``detector.load_weights(ckpt)``, or the strict default for DeepfakeBench's duck type."""
    if hasattr(detector, "load_weights"):
        return detector.load_weights(ckpt)
    return AbstractDetector.load_weights(detector, ckpt)
