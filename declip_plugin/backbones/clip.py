"""CLIP image towers from open_clip, run only up to the tapped layer."""
import functools
import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import load_module_weights
from ..errors import ConfigError
from .base import Backbone, parse_layer
from .weights import load_openai_state_dict, resolve_openai_weights

logger = logging.getLogger(__name__)

# OpenAI names (as in the official DeCLIP / OpenAI CLIP) -> open_clip models with QuickGELU
OPENAI_NAMES = {
    "RN50": "RN50-quickgelu",
    "RN101": "RN101-quickgelu",
    "RN50x4": "RN50x4-quickgelu",
    "RN50x16": "RN50x16-quickgelu",
    "RN50x64": "RN50x64-quickgelu",
    "ViT-B/32": "ViT-B-32-quickgelu",
    "ViT-B/16": "ViT-B-16-quickgelu",
    "ViT-L/14": "ViT-L-14-quickgelu",
    "ViT-L/14@336px": "ViT-L-14-336-quickgelu",
}


def normalize_clip_name(name):
    return OPENAI_NAMES.get(name, name.replace("/", "-"))


@functools.lru_cache(maxsize=None)
def list_clip_models():
    import open_clip

    register_bundled_configs()
    names = []
    for n in open_clip.list_models():
        cfg = open_clip.get_model_config(n) or {}
        vc = cfg.get("vision_cfg", {})
        if "timm_model_name" not in vc and "hf_model_name" not in cfg.get("text_cfg", {}) and "layers" in vc:
            names.append(n)
    return names


@functools.lru_cache(maxsize=None)
def register_bundled_configs():
    """Tiny CLIP-shaped towers (declip-tiny-vit, declip-tiny-rn) for CPU demos and tests."""
    from importlib import resources

    import open_clip

    open_clip.add_model_config(str(resources.files("declip_plugin") / "model_configs"))


def _vision_cfg(oc_name):
    import open_clip

    register_bundled_configs()
    cfg = open_clip.get_model_config(oc_name)
    if not cfg:
        return None
    return cfg


def is_clip_name(oc_name, family):
    cfg = _vision_cfg(oc_name)
    if not cfg or "timm_model_name" in cfg.get("vision_cfg", {}):
        return False
    layers = cfg["vision_cfg"].get("layers")
    is_resnet = isinstance(layers, (list, tuple))
    return is_resnet if family == "resnet" else not is_resnet


def _build_visual(oc_name):
    from open_clip.model import _build_vision_tower

    cfg = _vision_cfg(oc_name)
    return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], quick_gelu=cfg.get("quick_gelu", False))


class _CLIPBackbone(Backbone):
    """Shared weight loading of the open_clip towers; subclasses cut the tower and run it."""

    def __init__(self, name, feature_layer, pretrained, image_size):
        super().__init__()
        self.name = name
        self.oc_name = normalize_clip_name(name)
        self.visual = _build_visual(self.oc_name)
        native = self.visual.image_size
        native = native[0] if isinstance(native, (tuple, list)) else native
        if image_size != native:
            raise ConfigError(f"resolution {image_size} does not fit backbone {name!r}, which takes {native}x{native}")
        self.image_size = image_size
        self._cut(feature_layer)
        self.pretrained = self._load_pretrained(pretrained)
        self.cache_key = f"{self.oc_name}|{self.pretrained}|layer{self.layer}|{image_size}"

    def _load_pretrained(self, pretrained):
        source = "none" if pretrained in (None, False) else str(pretrained)
        if source.lower() in ("none", "", "false", "random"):
            self.init_random()
            return "none"
        path = resolve_openai_weights(self.oc_name, self.name) if source.lower() == "openai" else source
        self.load_openai_state_dict(load_openai_state_dict(path), source=path)
        return source

    def init_random(self):
        """Hook for a tower trained from scratch (``pretrained: none``); open_clip's init is kept by default."""

    def load_openai_state_dict(self, state, source):
        """Load a full OpenAI/open_clip CLIP state dict (``visual.*`` keys used, the text tower ignored)."""
        visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        if not visual:
            raise ConfigError(f"{source}: no 'visual.*' keys; is this an OpenAI-format CLIP checkpoint?")
        load_module_weights(self.visual, visual, source, droppable=self.dropped_prefixes, what=f"backbone {self.name}")


class CLIPViTBackbone(_CLIPBackbone):
    """Tokens (B, 1+N, C) of ViT residual block ``layer`` (0-based), CLS first."""

    kind = "tokens"

    def _cut(self, feature_layer):
        blocks = self.visual.transformer.resblocks
        self.layer = parse_layer(feature_layer, range(len(blocks)), len(blocks) - 1, self.name)
        self.dropped_prefixes = tuple(f"transformer.resblocks.{i}." for i in range(self.layer + 1, len(blocks)))
        self.visual.transformer.resblocks = nn.ModuleList(list(blocks)[: self.layer + 1])
        self.out_channels = self.visual.conv1.out_channels
        self.grid = self.image_size // self.visual.conv1.kernel_size[0]
        self.skip_upsamples = 0
        self._batch_first = getattr(self.visual.transformer, "batch_first", True)

    def forward(self, x):
        v = self.visual
        x = v.conv1(x)
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.patch_dropout(x)
        x = v.ln_pre(x)
        if not self._batch_first:
            x = x.transpose(0, 1)
        for block in v.transformer.resblocks:
            x = block(x)
        if not self._batch_first:
            x = x.transpose(0, 1)
        return x

    def attention_blocks(self):
        """``(blocks, batch_first)``: the tower's residual blocks kept up to the tap (see the detector capability)."""
        return list(self.visual.transformer.resblocks), self._batch_first


class CLIPResNetBackbone(_CLIPBackbone):
    """Feature map (B, C, H, W) of ModifiedResNet stage ``layer`` (1..4)."""

    kind = "map"

    def _cut(self, feature_layer):
        self.layer = parse_layer(feature_layer, range(1, 5), 4, self.name)
        self.dropped_prefixes = tuple(f"layer{i}." for i in range(self.layer + 1, 5)) + ("attnpool.",)
        for i in range(self.layer + 1, 5):
            setattr(self.visual, f"layer{i}", None)
        self.visual.attnpool = None
        stage = getattr(self.visual, f"layer{self.layer}")
        self.out_channels = stage[-1].bn3.num_features
        self.grid = self.image_size // (2 ** (self.layer + 1))
        # the official decoder skips early x2 upsamples for large (layer1/layer2) maps
        self.skip_upsamples = {1: 2, 2: 1}.get(self.layer, 0)

    def init_random(self):
        """Residual branches start active: open_clip zero-initialises every block's last BN (a trick for large
        pretraining batches), which left the demo's tiny tower, trained from scratch, idle for its first
        ~100 steps (measured on the demo set: train loss 0.51 vs 0.39 after 48 steps with these at one)."""
        for i in range(1, self.layer + 1):
            for block in getattr(self.visual, f"layer{i}"):
                nn.init.ones_(block.bn3.weight)

    def forward(self, x):
        v = self.visual
        x = v.stem(x.to(v.conv1.weight.dtype))
        for i in range(1, self.layer + 1):
            x = getattr(v, f"layer{i}")(x)
        return x


def resize_map(x, size):
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
