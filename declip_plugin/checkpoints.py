"""Checkpoints: our format, the official DeCLIP format, and DeepfakeBench's plain state dicts.

Formats read (all with ``torch.load(weights_only=True)``):
  ours        {'format': 'declip-plugin', 'model': state_dict, 'detector': describe(), 'config': {...}, ...};
              from declip train also 'frames': how each training dataset's frames were made
              (engine/preprocessing.py frames_record: what declip predict makes a new video's frames by)
  plain       a state dict of the detector module (DeepfakeBench's ``ckpt_best.pth``)
  a detector's own release format, recognised by its class's ``convert_checkpoint(obj, path)``
              (DeCLIP: the official files)
All are turned into one canonical state dict with the detector module's keys.
Also here: :func:`read_checkpoint` (any ``.pth`` file, errors naming it) and :func:`load_module_weights`
(strict loading into a module, every mismatch listed), which backbones and detectors use. Saving a
detector (which reads its capabilities) is :func:`declip_plugin.detectors.base.save_detector_checkpoint`.
Writes are atomic: a temporary file in the same folder, then ``os.replace``.
"""
import dataclasses
import os

import torch

from .atomicio import atomic_open
from .errors import CheckpointError
from .plugins import get_registry

FORMAT = "declip-plugin"
FORMAT_VERSION = 1


@dataclasses.dataclass
class DetectorCheckpoint:
    path: str
    format: str  # 'declip-plugin' | 'official' | 'plain'
    state: dict  # canonical keys: decoder.* / backbone.*
    meta: dict  # what the detector's describe() recorded (ours) or the file's own fields
    config: dict = None  # ours: the detector config it was trained with
    frames: dict = None  # ours, from declip train: how each training dataset's frames were made (engine/preprocessing.py)

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
                                  dict(obj["config"]) if isinstance(obj.get("config"), dict) else None,
                                  obj.get("frames"))
    if obj.get("format") is None:  # a detector's own release format (e.g. the official DeCLIP files)
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


def resolve_weights(value):
    """A ``--weights_path`` as a local file: a name a registered detector publishes weights under (its
    class's ``resolve_weights_name(value)``, e.g. DeCLIP's ``declip:<name>``) becomes that file (fetched
    if missing); any other value is returned unchanged."""
    if not isinstance(value, str):
        return value
    for _, cls in get_registry("detectors").items():
        resolve = getattr(cls, "resolve_weights_name", None)
        found = resolve(value) if resolve is not None else None
        if found is not None:
            return found
    return value


def atomic_save(obj, path):
    """``torch.save`` that leaves no half-written file behind (see atomicio)."""
    with atomic_open(path, suffix=".pth") as f:
        torch.save(obj, f)
    return os.fspath(path)


def read_checkpoint(path, what="checkpoint"):
    """``torch.load(weights_only=True)`` with errors that name the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{what} {path!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - turn every load failure into a clear message
        text = str(exc)
        if "Unsupported global" in text or "GLOBAL" in text:  # a well-formed pickle that wants to run code
            raise CheckpointError(
                f"{what} {path!r} needs arbitrary pickled objects, which are refused for safety "
                f"(torch.load weights_only=True). Re-save it as a plain dict of tensors/numbers/strings."
            ) from exc
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise CheckpointError(f"{what} {path!r} is corrupt or not a PyTorch file ({first[:120]}): re-download or "
                              f"re-save it") from exc


def load_module_weights(module, state, source, droppable=(), what="backbone"):
    """Load ``state`` into ``module`` strictly, tolerating only keys of layers cut off after the tap.

    Missing keys, unexpected keys and shape mismatches are errors that list them.
    """
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected and not any(k.startswith(p) for p in droppable)]
    shapes = [
        f"{k}: expected {tuple(expected[k].shape)}, got {tuple(state[k].shape)}"
        for k in expected
        if k in state and tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_preview(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_preview(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_preview(shapes)}")
    if problems:
        raise CheckpointError(f"{what} weights from {source} do not fit the configured {what}: " + "; ".join(problems))
    with torch.no_grad():
        for k, v in expected.items():
            v.copy_(state[k].to(dtype=v.dtype))


def _preview(items, n=8):
    items = list(items)
    more = f" ... (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more
