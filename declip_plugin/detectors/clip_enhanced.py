"""``clip_enhanced``: CLIP image tower with LayerNorm tuning and a small head (DeepFakesDetection).

The method of DeepFakesDetection's ``clip_enhanced`` (its ``model_name`` kept): an open_clip ViT
(OpenAI CLIP ViT-B/16 with QuickGELU by default) whose weights are all frozen except the weight and
bias of every LayerNorm of the image tower (``ln_pre``, ``ln_1`` / ``ln_2`` of each block,
``ln_post``), plus a head on the L2-normalised pooled feature: the CLS token after the final
LayerNorm, before CLIP's projection (the projection is pruned from the tower). ``mlp_layer: 1`` is
one Linear(D, 2), ``mlp_layer: 2`` Linear(D, 512)-ReLU-Linear(512, 2). Cross-entropy on the two
logits; ``prob`` = softmax(cls)[:, 1]; ``feat`` = the normalised pooled feature.

On ViT-B/16 that is 41,474 trainable parameters of 85,800,962 (0.0483%) with one linear layer and
434,690 of 86,194,178 (0.5043%) with the MLP: the trainable counts the original logs (its totals
are 39,936 higher, as its PEFT wrapper keeps a copy of every LayerNorm). The pooled feature equals
the original's on the same weights: scripts/parity_seed.py runs DeepFakesDetection's own
clip_enhanced beside ours and compares the logits (docs/parity.md).

Checkpoints (:meth:`ClipEnhancedDetector.state_to_save`): with ``pretrained: openai`` only the
trainable part (LayerNorms and head) is saved, the frozen weights being rebuilt from the OpenAI
file; with ``pretrained: none`` or a local file the whole state, so the file alone reproduces the
outputs (and :meth:`~ClipEnhancedDetector.config_from_checkpoint` then skips ``pretrained``).
"""
import contextlib
import dataclasses
import logging
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import normalize_backbone_name
from ..backbones.clip import is_clip_name, normalize_clip_name, register_bundled_configs
from ..backbones.weights import load_openai_state_dict, resolve_openai_weights
from ..checkpoints import load_module_weights
from ..config.schema import key
from ..errors import CheckpointError, ConfigError
from .base import AbstractDetector

logger = logging.getLogger(__name__)

MLP_HIDDEN = 512  # the hidden width of the original mlp_layer: 2 head


@dataclasses.dataclass
class ClipEnhancedConfig:
    """The detector keys of a ``clip_enhanced`` YAML."""

    backbone: str = key("ViT-B/16", doc="open_clip ViT: an OpenAI name (ViT-B/16, ViT-L/14: QuickGELU models) or "
                                        "any open_clip ViT model name (declip-tiny-vit for tests)")
    pretrained: str = key("openai", doc="openai (the OpenAI CLIP weights, from the local caches) | none (random "
                                        "init) | path to an OpenAI-format CLIP checkpoint")
    mlp_layer: int = key(1, choices=(1, 2), doc="head: 1 = Linear(D,2); 2 = Linear(D,512)-ReLU-Linear(512,2)")
    resolution: int = key(224, doc="input size; must be the tower's own (224 for ViT-B/16 and ViT-L/14)")


class _DropOpenClipRandomInitWarning(logging.Filter):
    """open_clip warns on the root logger that a model built without weights is random; ours are
    loaded right after (or random init was asked for), so that line would only mislead."""

    def filter(self, record):
        return not str(record.msg).startswith("No pretrained weights loaded for model")


@contextlib.contextmanager
def _quiet_random_init():
    root = logging.getLogger()
    flt = _DropOpenClipRandomInitWarning()
    root.addFilter(flt)
    try:
        yield
    finally:
        root.removeFilter(flt)


def build_image_tower(name, resolution):
    """The open_clip image tower of ``name`` (random init) with its projection pruned, so that its
    own forward returns the pooled feature before the projection (CLS after ``ln_post``)."""
    import open_clip

    register_bundled_configs()
    oc_name = normalize_clip_name(name)
    if not is_clip_name(oc_name, "vit"):
        from ..backbones.clip import list_clip_models
        from ..registry import closest

        vits = [n for n in list_clip_models() if is_clip_name(n, "vit")]
        hint = closest(name, ["ViT-B/16", "ViT-L/14"] + vits)
        raise ConfigError(f"backbone {name!r} is not an open_clip ViT; use ViT-B/16, ViT-L/14 or another open_clip "
                          f"ViT model name" + (f" (did you mean {hint!r}?)" if hint else ""))
    with _quiet_random_init():
        visual = open_clip.create_model(oc_name, pretrained=None).visual
    if getattr(visual, "attn_pool", None) is not None:
        raise ConfigError(f"backbone {name!r} pools with attention; clip_enhanced needs a tower whose pooled "
                          f"feature is a token after the final LayerNorm (OpenAI-style ViT)")
    native = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    if resolution != native:
        raise ConfigError(f"resolution {resolution} does not fit backbone {name!r}, which takes {native}x{native}; "
                          f"set resolution: {native}")
    visual.prune_intermediate_layers(indices=1, prune_norm=False, prune_head=True)  # drops only `proj`
    visual.output_tokens = False
    return visual


class ClipEnhancedDetector(AbstractDetector):
    """``model_name: clip_enhanced``."""

    config_class = ClipEnhancedConfig
    produces_mask = False
    input_kind = "frame"

    def __init__(self, config):
        super().__init__(config)
        self.cfg.backbone = normalize_backbone_name(self.cfg.backbone)
        weights_file = self._pretrained_file()  # before the (slow) build: a missing file fails at once
        self.backbone = self.build_backbone(self.config)
        if weights_file is not None:
            self._load_tower(weights_file)
        self.width = self.backbone.transformer.width
        self.head = self.build_head()
        self.loss_func = self.build_loss(self.config)
        self.backbone.requires_grad_(False)
        for module in self.backbone.modules():
            if isinstance(module, nn.LayerNorm):
                module.requires_grad_(True)
        s = self.parameter_summary()
        logger.info("clip_enhanced %s (pretrained %s, mlp_layer %d): %s of %s parameters trainable (%.4f%%): every "
                    "LayerNorm of the image tower and the head", self.cfg.backbone, self.cfg.pretrained,
                    self.cfg.mlp_layer, f"{s['trainable']:,}", f"{s['total']:,}", 100 * s["fraction"])

    # --- building -------------------------------------------------------------------------------
    @property
    def pretrained_source(self):
        """'none', 'openai' or the path of the configured weights file."""
        source = str(self.cfg.pretrained).strip()
        return source.lower() if source.lower() in ("none", "openai") else source

    def _pretrained_file(self):
        source = self.pretrained_source
        if source == "none":
            return None
        if source == "openai":
            return resolve_openai_weights(normalize_clip_name(self.cfg.backbone), self.cfg.backbone)
        if not os.path.isfile(source):
            raise CheckpointError(f"pretrained weights file {source!r} does not exist (key `pretrained` of the "
                                  f"clip_enhanced config): give an OpenAI-format CLIP checkpoint, openai or none")
        return source

    def _load_tower(self, path):
        state = load_openai_state_dict(path)
        visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        if not visual:
            raise CheckpointError(f"{path}: no 'visual.*' keys; is this an OpenAI-format CLIP checkpoint?")
        load_module_weights(self.backbone, visual, path, droppable=("proj",), what=f"backbone {self.cfg.backbone}")
        logger.info("backbone %s: weights from %s", self.cfg.backbone, path)

    def build_backbone(self, config):
        return build_image_tower(self.cfg.backbone, self.cfg.resolution)

    def attention_blocks(self):
        """The blocks of open_clip's image tower, which is this detector's backbone itself."""
        transformer = self.backbone.transformer
        return list(transformer.resblocks), getattr(transformer, "batch_first", True)

    def build_head(self):
        if self.cfg.mlp_layer == 2:
            return nn.Sequential(nn.Linear(self.width, MLP_HIDDEN), nn.ReLU(), nn.Linear(MLP_HIDDEN, 2))
        return nn.Linear(self.width, 2)

    def build_loss(self, config):
        name = (config or {}).get("loss_func")
        if name not in (None, "cross_entropy"):
            raise ConfigError(f"loss_func {name!r}: clip_enhanced trains with cross_entropy on its two logits; set "
                              f"loss_func: cross_entropy (or remove the key)")
        return nn.CrossEntropyLoss()

    # --- DeepfakeBench contract -----------------------------------------------------------------
    def features(self, data_dict):
        """(B, D) pooled feature of the image tower (CLS after its final LayerNorm, no projection)."""
        return self.backbone(data_dict["image"])

    def classifier(self, features):
        return self.head(features)

    def forward(self, data_dict, inference=False):
        feat = F.normalize(self.features(data_dict), dim=1)
        cls = self.classifier(feat)
        return {"cls": cls, "prob": torch.softmax(cls.float(), dim=1)[:, 1], "feat": feat.float()}

    def get_losses(self, data_dict, pred_dict):
        cls = pred_dict["cls"].float()
        return {"overall": self.loss_func(cls, data_dict["label"].long().to(cls.device))}

    @torch.no_grad()
    def get_train_metrics(self, data_dict, pred_dict):
        from ..metrics.detection import batch_metrics

        return batch_metrics(pred_dict["prob"], data_dict["label"])

    # --- capabilities ---------------------------------------------------------------------------
    def feature_tap(self):
        return None  # the tower's LayerNorms train: no part of the trunk is frozen end to end

    def trainable_keys(self):
        return [name for name, p in self.named_parameters() if p.requires_grad]

    def state_to_save(self):
        """``pretrained: openai``: the trainable part only (LayerNorms and head; the frozen weights
        come back from the OpenAI file). Otherwise the whole state."""
        state = self.state_dict()
        if self.pretrained_source == "openai":
            keep = set(self.trainable_keys())
            return {k: v for k, v in state.items() if k in keep}
        return state

    @classmethod
    def config_from_checkpoint(cls, ckpt, config=None):
        """A checkpoint that carries the tower needs no ``pretrained`` weights (set to none); one
        with the trainable part only is rebuilt on the weights it was trained on (its ``pretrained``)."""
        if config is None:
            return None
        config = dict(config)
        if "backbone.conv1.weight" in ckpt.state:
            config["pretrained"] = "none"
            return config
        saved = ckpt.meta.get("pretrained")
        if saved and str(saved) != str(config.get("pretrained", "openai")):
            logger.info("checkpoint %s holds the trainable part only, trained on pretrained %s: building on those "
                        "weights (the config says %s)", ckpt.path, saved, config.get("pretrained"))
            config["pretrained"] = saved
        return config

    def load_weights(self, ckpt):
        from ..checkpoints import read_detector_checkpoint

        if not hasattr(ckpt, "state"):
            ckpt = read_detector_checkpoint(ckpt)
        for name in ("backbone", "mlp_layer"):
            saved = ckpt.meta.get(name)
            ours = getattr(self.cfg, name)
            if saved is not None and (normalize_backbone_name(saved) if name == "backbone" else saved) != ours:
                raise CheckpointError(f"checkpoint {ckpt.path} was trained with {name}: {saved}, the config says "
                                      f"{ours}: set {name}: {saved}")
        return super().load_weights(ckpt)

    def prepare_fast_paths(self, device, channels_last=False, compile=False):
        if compile:
            self.backbone.compile()  # in place: state dict keys unchanged
        return self
