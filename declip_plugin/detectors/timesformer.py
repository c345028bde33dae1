"""``timesformer_effb0``: DeepFakesDetection's "TimeSformer + EfficientNet-B0" video baseline (its
``model_name: timesformer``), rebuilt on timm. Registered as ``timesformer_effb0`` because DeepfakeBench
itself registers ``timesformer`` (its HF TimeSformer) and a plugin may not replace a checkout's
detector (``declip dfb`` refuses the clash); the seed replaced DeepfakeBench's in its copy.

* frame encoder: timm ``efficientnet_b0`` without pooling and classifier, every frame to a
  (1280, h, w) map (7 x 7 at 224 px), its cells the tokens (B, T, P = h*w, 1280);
* ``layers`` divided space-time attention blocks (TimeSformer's "divided" scheme), each
  ``x += attn_time(LN(x))`` over T for every cell, ``x += attn_space(LN(x))`` over the P cells of
  every frame, ``x += MLP(LN(x))``; ``heads`` heads (DeepFakesDetection: one block, 8 heads, with neither
  residuals nor LayerNorms nor MLP: a fix here);
* head: mean over all T x P tokens -> LayerNorm -> dropout 0.1 -> Linear(1280, 2) (the seed reads
  token 0, the top-left cell of frame 0, instead of pooling, and never applies its Dropout(0.1)).

The seed's encoder is efficientnet_pytorch's EfficientNet-B0 (TF "same" padding, BatchNorm eps
1e-3, TF-ported weights): ``encoder: tf_efficientnet_b0`` is that network in timm, and its tokens
equal the seed's on the same weights (scripts/parity_seed.py; docs/video.md lists every difference).

Everything trains. ``pretrained``: ``none`` (random init) or the path of a timm ``efficientnet_b0``
state dict (ImageNet weights as timm saves them; the classifier keys are ignored). Nothing is
downloaded: a missing file fails and names it. The seed's optimiser: Adam lr 2e-5, weight decay
5e-4; inputs normalised with mean 0.45 / std 0.225 (configs/detector/timesformer.yaml).
"""
import dataclasses
import logging
import os

import torch
from torch import nn

from ..checkpoints import load_module_weights, read_checkpoint
from ..config.schema import key
from ..errors import CheckpointError, ConfigError
from .video import DropPath, VideoDetector, as_clip

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class TimeSformerConfig:
    encoder: str = key("efficientnet_b0", doc="timm frame encoder (DeepFakesDetection: EfficientNet-B0)")
    pretrained: object = key("none", doc="none | path to a timm state dict of the encoder (no download)")
    layers: int = key(1, doc="divided space-time attention blocks")
    heads: int = key(8, doc="attention heads")
    mlp_ratio: float = key(4.0, doc="MLP width / token width in each block (0: no MLP)")
    drop_path: float = key(0.0, doc="drop-path rate of the attention blocks")
    dropout: float = key(0.1, doc="dropout before the head (DeepFakesDetection defines Dropout(0.1) and never "
                                  "applies it)")
    resolution: int = key(224, doc="input size (224: 7x7 maps)")


class DividedSpaceTimeBlock(nn.Module):
    """Time attention per cell, then space attention per frame, then an MLP; pre-LN residuals."""

    def __init__(self, width, heads, mlp_ratio=4.0, drop_path=0.0):
        super().__init__()
        self.norm_t = nn.LayerNorm(width)
        self.attn_t = nn.MultiheadAttention(width, heads, batch_first=True)
        self.norm_s = nn.LayerNorm(width)
        self.attn_s = nn.MultiheadAttention(width, heads, batch_first=True)
        hidden = int(width * mlp_ratio)
        self.norm_m = nn.LayerNorm(width) if hidden else None
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width)) if hidden else None
        self.drop_path = DropPath(drop_path)

    @staticmethod
    def _attend(attn, x):
        return attn(x, x, x, need_weights=False)[0]

    def forward(self, x):  # (B, T, P, D)
        b, t, p, d = x.shape
        xt = x.permute(0, 2, 1, 3).reshape(b * p, t, d)
        yt = self._attend(self.attn_t, self.norm_t(xt)).reshape(b, p, t, d).permute(0, 2, 1, 3)
        x = x + self.drop_path(yt)
        xs = x.reshape(b * t, p, d)
        ys = self._attend(self.attn_s, self.norm_s(xs)).reshape(b, t, p, d)
        x = x + self.drop_path(ys)
        if self.mlp is not None:
            x = x + self.drop_path(self.mlp(self.norm_m(x)))
        return x


class TimeSformerDetector(VideoDetector):
    """``model_name: timesformer_effb0`` (the seed's ``timesformer``)."""

    config_class = TimeSformerConfig

    def __init__(self, config):
        super().__init__(config)
        cfg = self.cfg
        self.backbone = self.build_backbone(self.config)
        width = self.backbone.num_features
        if width % cfg.heads:
            raise ConfigError(f"timesformer: heads {cfg.heads} must divide the encoder width {width}")
        rates = torch.linspace(0, cfg.drop_path, max(cfg.layers, 1)).tolist()
        self.blocks = nn.ModuleList(DividedSpaceTimeBlock(width, cfg.heads, cfg.mlp_ratio, rates[i])
                                    for i in range(cfg.layers))
        self.norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(width, 2)
        self.tap = nn.Identity()  # the encoder's per-frame maps, for Grad-CAM (engine/explain.py)
        self.loss_func = self.build_loss(self.config)
        self.log_parameters()

    def build_backbone(self, config):
        import timm

        cfg = self.cfg
        try:
            encoder = timm.create_model(cfg.encoder, pretrained=False, num_classes=0, global_pool="")
        except RuntimeError as e:
            raise ConfigError(f"timesformer: encoder {cfg.encoder!r} is not a timm model ({e})") from None
        source = "none" if cfg.pretrained in (None, False) else str(cfg.pretrained)
        if source.lower() not in ("none", "", "false", "random"):
            path = os.path.expanduser(source)
            if not os.path.isfile(path):
                raise CheckpointError(f"timesformer: pretrained encoder weights {path!r} do not exist; put a timm "
                                      f"{cfg.encoder} state dict there, or set pretrained: none")
            state = read_checkpoint(path, "pretrained encoder weights")
            if isinstance(state.get("state_dict"), dict):
                state = state["state_dict"]
            load_module_weights(encoder, state, path, droppable=("classifier.",), what=f"encoder {cfg.encoder}")
        encoder.pretrained = source
        return encoder

    def features(self, data_dict):
        clip = as_clip(data_dict["image"], "timesformer")
        b, t = clip.shape[:2]
        maps = self.tap(self.backbone.forward_features(clip.flatten(0, 1)))  # (B*T, D, h, w)
        d = maps.shape[1]
        x = maps.flatten(2).transpose(1, 2).reshape(b, t, -1, d)
        for block in self.blocks:
            x = block(x)
        return self.norm(x.mean(dim=(1, 2)))

    def classifier(self, features):
        return self.head(self.dropout(features))

    def explain_tap(self):
        """The module whose output (the encoder's (B*T, D, h, w) maps) Grad-CAM reads."""
        return self.tap



__all__ = ["TimeSformerDetector", "TimeSformerConfig", "DividedSpaceTimeBlock"]
