"""Checkpoints: our format, the official DeCLIP format, and DeepfakeBench's plain state dicts.

Formats read (all with ``torch.load(weights_only=True)``):
  ours        {'format': 'declip-plugin', 'model': state_dict, 'detector': {...}, ...}
  official    {'model': state_dict, 'feature_layer', 'decoder_type', 'optimizer', 'total_steps'}
              with decoder keys ``fc.<i>.*`` / ``att1.*`` / ``att2.*`` and, for single-backbone
              checkpoints, the OpenAI CLIP (or xceptionnet) weights under ``model.``
  plain       a state dict of the detector module (DeepfakeBench's ``ckpt_best.pth``)
All are turned into one canonical state dict with ``decoder.*`` / ``backbone.*`` keys.
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
    meta: dict  # feature_layer, decoder_type, backbone, ... where the file says

    def section(self, prefix):
        return {k[len(prefix):]: v for k, v in self.state.items() if k.startswith(prefix)}

    @property
    def has_backbone(self):
        return any(k.startswith("backbone.") for k in self.state)


def _official_to_canonical(model_state):
    state = {}
    clip_backbone = any(k.startswith("model.visual.") for k in model_state)
    for k, v in model_state.items():
        if k.startswith("fc."):
            state["decoder.layers." + k[3:]] = v
        elif k.startswith(("att1.", "att2.")):
            state["decoder." + k] = v
        elif k.startswith("model."):
            state[("backbone." if clip_backbone else "backbone.net.") + k[len("model."):]] = v
        else:
            state[k] = v  # reported as unexpected by the loader
    return state


def read_detector_checkpoint(path):
    """Read ``path`` in any supported format into a :class:`DetectorCheckpoint`."""
    obj = read_checkpoint(str(path), "checkpoint")
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"checkpoint {path!r} is not a dict of weights")
    if obj.get("format") == FORMAT:
        return DetectorCheckpoint(str(path), FORMAT, dict(obj["model"]), dict(obj.get("detector", {})))
    model = obj.get("model")
    if isinstance(model, dict) and any(k.startswith(("fc.", "att1.")) for k in model):
        meta = {k: obj[k] for k in ("feature_layer", "decoder_type", "arch") if obj.get(k) is not None}
        return DetectorCheckpoint(str(path), "official", _official_to_canonical(model), meta)
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not state:
        raise CheckpointError(
            f"checkpoint {path!r} is in no known format: expected our format, the official DeCLIP format "
            f"({{'model': ..., 'decoder_type', 'feature_layer'}}) or a plain detector state dict"
        )
    if all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return DetectorCheckpoint(str(path), "plain", state, {})


def atomic_save(obj, path):
    """``torch.save`` that leaves no half-written file behind (see atomicio)."""
    with atomic_open(path, suffix=".pth") as f:
        torch.save(obj, f)
    return os.fspath(path)


def save_detector_checkpoint(path, detector, include_backbone=None, **extra):
    """Save ``detector`` in our format. The backbone goes in when it was trained or randomly
    initialised (``include_backbone=None``), so the file alone reproduces the outputs."""
    state = detector.state_dict()
    if include_backbone is None:
        include_backbone = detector.backbone_needs_saving()
    if not include_backbone:
        state = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    obj = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": state, "detector": detector.describe()}
    obj.update(extra)
    return atomic_save(obj, path)
