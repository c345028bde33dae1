"""The detector contract: DeepfakeBench's ``AbstractDetector`` plus the capabilities the engine reads.

A detector is built as ``cls(config)`` from the merged YAML dict and works on DeepfakeBench's
``data_dict`` (image, label, mask, landmark, ...) and returns a ``pred_dict`` (cls, prob, feat
[, mask]). Everything the engine (trainer, evaluator, predict, feature cache, bench, the
DeepfakeBench launcher) needs to know about a detector it reads from this class, never from a
detector's own attributes:

* ``config_class``: a dataclass of the detector's own YAML keys (each key once, with its default;
  ``declip_plugin.config.schema.key`` adds allowed values and a description). ``self.cfg`` is the
  parsed instance. DeepfakeBench's and the engine's keys live in the run schema, not here.
* ``produces_mask``: ``pred_dict['mask']`` holds (B, 1, h, w) manipulation logits.
* ``input_kind``: ``'frame'`` (``image`` is (B, 3, H, W)) or ``'clip'`` ((B, T, 3, H, W)).
* :meth:`feature_tap`: the frozen module whose output :meth:`features` computes, which the feature
  cache may store and hand back as ``data_dict['features']`` (None: nothing to cache).
* :meth:`state_to_save`, :meth:`load_weights`, :meth:`config_from_checkpoint`, :meth:`describe`:
  what a checkpoint holds and how a config is rebuilt from one.
* :meth:`attention_blocks`: the ViT tower's attention blocks, for attention rollout (none by default).
* :meth:`default_val_metric`: the validation metric when the config names none.
* :meth:`training_data`: whether training needs masks, and whether real images are used by default.
* :meth:`parameter_summary`: trainable / total parameter counts (logged and written to run.json).
* :meth:`prepare_fast_paths`: channels_last / compile of the parts where they pay off.
* ``bench_reference()`` (optional): a module whose ``forward(data_dict)`` runs the model the way its
  official code does, for ``declip bench``'s reference configuration.
* ``bench_configs`` (optional class attribute): ``{"default": name, "quick": name}``, the bundled
  configs ``declip bench`` measures when no detector is named (DeCLIP declares them).

A detector that only follows DeepfakeBench's duck type (no base class) still runs: the engine
reads every capability with :func:`capability`, which falls back to the defaults below.
"""
import abc
import dataclasses
import logging

from torch import nn

from ..checkpoints import FORMAT, FORMAT_VERSION, atomic_save, load_module_weights, read_detector_checkpoint


logger = logging.getLogger(__name__)


class AbstractDetector(nn.Module, abc.ABC):
    #: dataclass of the detector's own YAML keys (None: it has none)
    config_class = None
    #: pred_dict carries 'mask' (B, 1, h, w) logits
    produces_mask = False
    #: 'frame': image (B, 3, H, W); 'clip': image (B, T, 3, H, W)
    input_kind = "frame"

    def __init__(self, config=None):
        super().__init__()
        self.config = dict(config or {})
        self.cfg = self.parse_config(self.config)

    @classmethod
    def parse_config(cls, config):
        """``config_class`` filled from the merged config dict (values checked), or None."""
        if cls.config_class is None:
            return None
        from ..config.schema import from_mapping

        return from_mapping(cls.config_class, config, where=f"detector {cls.__name__}")

    # --- DeepfakeBench's contract ---------------------------------------------------------------
    @abc.abstractmethod
    def build_backbone(self, config):
        """Build and return the backbone."""

    @abc.abstractmethod
    def build_loss(self, config):
        """Build and return the loss function."""

    @abc.abstractmethod
    def features(self, data_dict):
        """Backbone features of ``data_dict['image']`` (``data_dict['features']`` when the cache set it)."""

    @abc.abstractmethod
    def classifier(self, features):
        """Map features to the detector's raw outputs."""

    @abc.abstractmethod
    def get_losses(self, data_dict, pred_dict):
        """``{'overall': loss, ...}``."""

    @abc.abstractmethod
    def get_train_metrics(self, data_dict, pred_dict):
        """Batch metrics for the training log: ``{'acc', 'auc', 'eer', 'ap', ...}``."""

    @abc.abstractmethod
    def forward(self, data_dict, inference=False):
        """``pred_dict`` with at least ``cls`` (B, 2), ``prob`` (B,) and ``feat`` (B, D)."""

    # --- capabilities the engine reads ----------------------------------------------------------
    def feature_tap(self):
        """The frozen module whose per-image output :meth:`features` returns and the feature cache
        may store (it has a ``cache_key`` string naming architecture, weights source and layer), or
        None when there is none (no frozen trunk, or it is trained)."""
        return None

    def training_data(self):
        """What training needs of the data: ``needs_masks`` (a train split without masks is an
        error) and ``real_images`` (the default of ``include_real``)."""
        return {"needs_masks": False, "real_images": True}

    def attention_blocks(self):
        """``(blocks, batch_first)``: the residual blocks of the detector's ViT image tower in order, each
        with an ``nn.MultiheadAttention`` ``attn``, for attention rollout (engine/explain.py); ``([], True)``
        when there is none. The default asks the backbone (``backbone.attention_blocks()``, which
        :class:`~declip_plugin.backbones.clip.CLIPViTBackbone` declares)."""
        blocks = getattr(getattr(self, "backbone", None), "attention_blocks", None)
        return blocks() if callable(blocks) else ([], True)

    def default_val_metric(self):
        """The validation metric when the config sets no ``val_metric``."""
        return "auc"

    def state_to_save(self):
        """The state dict a checkpoint must hold to rebuild this detector from its config."""
        return self.state_dict()

    def load_weights(self, ckpt):
        """Load a :class:`declip_plugin.checkpoints.DetectorCheckpoint` (or a path): strict, every
        mismatch listed. Keys absent from the file must be rebuilt by the config (see
        :meth:`state_to_save`)."""
        if not hasattr(ckpt, "state"):
            ckpt = read_detector_checkpoint(ckpt)
        saved = set(capability(self, "state_to_save"))
        state = {k: v for k, v in self.state_dict().items() if k not in saved}  # rebuilt by the config
        state.update(ckpt.state)
        name = (getattr(self, "config", None) or {}).get("model_name") or type(self).__name__
        load_module_weights(self, state, ckpt.path, what=f"detector {name}")
        return self

    @classmethod
    def config_from_checkpoint(cls, ckpt, config=None):
        """The config to build this detector for ``ckpt``: ``config`` adjusted to the file (e.g. do
        not fetch pretrained weights the file replaces), or, with ``config=None``, a config rebuilt
        from a file in a foreign format this class recognises (None when it does not)."""
        return config

    def describe(self):
        """What the detector is, for checkpoints, run.json and predictions.json."""
        out = {"model_name": (getattr(self, "config", None) or {}).get("model_name")}
        cfg = getattr(self, "cfg", None)
        if dataclasses.is_dataclass(cfg):
            out.update(dataclasses.asdict(cfg))
        return out

    def parameter_summary(self):
        """``{'trainable': n, 'total': N, 'fraction': n / N}`` over this module's parameters."""
        return parameter_summary(self)

    def prepare_fast_paths(self, device, channels_last=False, compile=False):
        """Apply channels_last / ``Module.compile`` where they pay off (in place: state dict keys
        unchanged). The default leaves the detector as it is."""
        return self


def parameter_summary(module):
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "fraction": trainable / total if total else 0.0}


_DEFAULTS = {"produces_mask": False, "input_kind": "frame", "config_class": None}


def capability(detector, name):
    """A capability of ``detector`` (class attribute or method result), falling back to the default
    of :class:`AbstractDetector` for detectors that follow DeepfakeBench's duck type only."""
    if name in _DEFAULTS:
        return getattr(detector, name, _DEFAULTS[name])
    fn = getattr(detector, name, None)
    if fn is None:
        fn = getattr(AbstractDetector, name).__get__(detector)
    return fn()


def save_detector_checkpoint(path, detector, **extra):
    """Save ``detector`` in our format: what its ``state_to_save()`` holds (the parts its config
    cannot rebuild), its ``describe()`` and its config, so the file alone rebuilds the detector."""
    state = capability(detector, "state_to_save")
    config = {k: v for k, v in dict(getattr(detector, "config", {}) or {}).items() if not str(k).startswith("_")}
    obj = {"format": FORMAT, "format_version": FORMAT_VERSION, "model": state,
           "detector": capability(detector, "describe"), "config": config}
    obj.update(extra)
    return atomic_save(obj, path)
