"""Checkpoints: our format, the official DeCLIP format, and DeepfakeBench's plain state dicts.

Formats read (all with ``torch.load(weights_only=True)``):
  ours        {'format': 'declip-plugin', 'model': state_dict, 'detector': describe(), 'config': {...}, ...}
  plain       a state dict of the detector module (DeepfakeBench's ``ckpt_best.pth``)
  a detector's own release format, recognised by its class's ``convert_checkpoint(obj, path)``
              (DeCLIP: the official files)
All are turned into one canonical state dict with the detector module's keys.
Writes are atomic: a temporary file in the same folder, then ``os.replace``.
"""
import dataclasses
import os

import torch

from .atomicio import atomic_open
from .backbones.weights import read_checkpoint
from .errors import CheckpointError

FORMAT = "declip-plugin"
FORMAT_VERSION = 1


@dataclasses.dataclass
class DetectorCheckpoint:
    path: str
    format: str  # 'declip-plugin' | 'official' | 'plain'
    state: dict  # canonical keys: decoder.* / backbone.*
    meta: dict  # what the detector's describe() recorded (ours) or the file's own fields
    config: dict = None  # ours: the detector config it was trained with

    def section(self, prefix):
        return {k[len(prefix):]: v for k, v in self.state.items() if k.startswith(prefix)}

    @property
    def has_backbone(self):
        return any(k.startswith("backbone.") for k in self.state)


def read_detector_checkpoint(path):
    """Read ``path`` in any supported format into a :class:`DetectorCheckpoint`."""
    obj = read_checkpoint(str(path), "checkpoint")
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"checkpoint {path!r} is not a dict of weights")
    if obj.get("format") == FORMAT:
        return DetectorCheckpoint(str(path), FORMAT, dict(obj["model"]), dict(obj.get("detector", {})),
                                  dict(obj["config"]) if isinstance(obj.get("config"), dict) else None)
    if obj.get("format") is None:  # a detector's own release format (e.g. the official DeCLIP files)
        from .plugins import get_registry

        for _, cls in get_registry("detectors").items():
            convert = getattr(cls, "convert_checkpoint", None)
            found = convert(obj, path) if convert is not None else None
            if found is not None:
                return found
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(
            f"checkpoint {path!r} is in no known format: expected our format, a registered detector's release "
            f"format (such as the official DeCLIP files) or a plain state dict"
        )
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return DetectorCheckpoint(str(path), "plain", state, {})


def atomic_save(obj, path):
    """``torch.save`` that leaves no half-written file behind (see atomicio)."""
    with atomic_open(path, suffix=".pth") as f:
        torch.save(obj, f)
    return os.fspath(path)


def save_detector_checkpoint(path, detector, **extra):
    """Save ``detector`` in our format: what its ``state_to_save()`` holds (the parts its config
    cannot rebuild), its ``describe()`` and its config, so the file alone rebuilds the detector."""
    from .detectors.base import capability

    state = capability(detector, "state_to_save")
    config = {k: v for k, v in dict(getattr(detector, "config", {}) or {}).items() if not str(k).startswith("_")}
    obj = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": state,
           "detector": capability(detector, "describe"), "config": config}
    obj.update(extra)
    return atomic_save(obj, path)
