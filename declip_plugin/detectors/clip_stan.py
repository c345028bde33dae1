"""``clip_stan``: CLIP-STAN, a CLIP ViT with a spatial-temporal side branch (DeepFakesDetection's
``training/detectors/clip_stan.py``, rebuilt on open_clip).

Architecture (T frames per clip, D the ViT width, N patches per frame, L blocks):

* the CLIP ViT (OpenAI weights by default; ``backbone: ViT-B/16`` is open_clip's
  ``ViT-B-16-quickgelu``) runs every frame as an image;
* beside its last ``depth`` blocks runs a branch holding one CLS (B, D) per clip and the patch
  tokens (B, T, N, D). At the first of those blocks the branch starts from that block's output:
  patches + CLIP's position embeddings + a learned time embedding (``nn.Embedding(64, D)``, so
  T <= 64; its default N(0, 1) init, as the seed), CLS = mean of (the frame-mean CLS, class
  embedding + position 0). At later blocks the
  CLIP block's output (patches, frame-mean CLS) is added into the branch;
* each branch layer is a temporal layer then a spatial block. Temporal (``time_module``):
  ``selfattn``: LayerNorm -> multi-head attention over T for every patch (q, k, v, out projections
  initialised as nn.Linear, as the seed's CLIPAttention) -> ``temporal_fc`` (a Linear initialised
  to zero, so the layer is the identity at init) -> residual; ``conv``: Conv1d(D, D, 3) over T ->
  LayerNorm -> residual. Spatial: a CLIP residual block (LayerNorm, attention, LayerNorm, MLP) run
  per frame on [CLS; frame patches], the CLS update averaged over the frames;
* output: final per-frame CLIP CLS + branch CLS -> CLIP's final LayerNorm -> mean over T -> L2
  normalisation -> Linear(D, 2). ``prob`` = softmax[:, 1].
* regularisation, rate growing linearly 0 -> ``drop_path`` (0.1) over the branch layers:
  ``drop_mode: dropout`` (default, the seed's): element-wise dropout on the temporal attention's
  output before ``temporal_fc`` (conv: after its LayerNorm) and on the spatial attention's output,
  none on the MLP; ``drop_mode: drop_path``: per-sample stochastic depth after ``temporal_fc`` and
  on the spatial attention and MLP outputs (STAN's own design, which the seed's code departs from).

What trains (as the seed): every LayerNorm (the CLIP tower's and the branch's), the temporal
layers, the time embedding and the head; the rest is frozen. One difference, on purpose: the
seed builds its spatial branch blocks at random and never trains them (they stay random); here
they start as copies of the CLIP blocks they sit beside (``branch_init: clip``, default), and
stay frozen. ``branch_init: random`` reproduces the seed (nn.Linear's default init for every
projection, LayerNorms 1 / 0). The seed also trains its class
embedding by accident (an attribute alias escapes its name-based freezing) and holds an unused
CLS parameter: 1,536 parameters more than here (seed log: 11,922,434 of 126,020,354 = 9.46% at
depth 4; :meth:`parameter_summary` gives ours, logged at build). The seed hard-codes T = 8;
here T is the clip length of the input (``clip_size``). The seed also reads its token layout
inconsistently in two places (its branch is held in (patch, time) order): at later branch layers
it adds the CLIP block's patches in (time, patch) order, and its spatial layer reshapes the
(patch, time) patches as (time, patch) frames; here the branch keeps patches as (B, T, N, D)
throughout. With those two reads made consistent the seed's logits equal ours on the same weights
(scripts/parity_seed.py, docs/parity.md).
"""
import copy
import dataclasses
import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones.clip import CLIPViTBackbone, is_clip_name, normalize_clip_name
from ..config.schema import key
from ..errors import ConfigError
from .video import DropPath, VideoDetector, as_clip

logger = logging.getLogger(__name__)

MAX_FRAMES = 64


@dataclasses.dataclass
class ClipSTANConfig:
    backbone: str = key("ViT-B/16", doc="open_clip ViT (OpenAI name or open_clip name; the bundled declip-tiny-vit for tests)")
    pretrained: object = key("openai", doc="openai | none | path to an OpenAI-format CLIP file")
    depth: int = key(4, doc="branch layers, beside the last `depth` CLIP blocks")
    time_module: str = key("selfattn", choices=("selfattn", "conv"), doc="temporal layer of the branch")
    branch_init: str = key("clip", choices=("clip", "random"),
                           doc="spatial branch blocks: copies of the CLIP blocks beside them, or random with "
                               "nn.Linear's default init (DeepFakesDetection)")
    drop_path: float = key(0.1, doc="drop rate of the last branch layer (linear from 0; DeepFakesDetection: 0.1)")
    drop_mode: str = key("dropout", choices=("dropout", "drop_path"),
                         doc="dropout: element-wise, on the temporal attention before temporal_fc and on the "
                             "spatial attention (DeepFakesDetection's); drop_path: per-sample, after temporal_fc and on "
                             "the spatial attention and MLP (STAN's paper)")
    resolution: int = key(224, doc="input size; must be the ViT's native size")


def _mha(attn, x):
    """Self-attention of an nn.MultiheadAttention on batch-first ``x``."""
    if getattr(attn, "batch_first", False):
        return attn(x, x, x, need_weights=False)[0]
    y = x.transpose(0, 1)
    return attn(y, y, y, need_weights=False)[0].transpose(0, 1)


def _drop(rate, mode):
    """The branch's regularisation: element-wise ``nn.Dropout`` (DeepFakesDetection's) or per-sample DropPath."""
    if mode == "dropout":
        return nn.Dropout(rate) if rate > 0 else nn.Identity()
    return DropPath(rate)


def _linear_init_(weight, bias):
    """nn.Linear's default init (what the seed's HF CLIPAttention / CLIPMLP layers start from when
    built outside ``from_pretrained``), for a (out, in) weight and its bias."""
    nn.init.kaiming_uniform_(weight, a=5 ** 0.5)
    bound = 1 / weight.shape[1] ** 0.5
    nn.init.uniform_(bias, -bound, bound)


def _seed_attention_init_(attn):
    """An nn.MultiheadAttention initialised as the seed's CLIPAttention: q, k, v and out projections
    each with nn.Linear's default (MultiheadAttention's own is xavier with zero biases)."""
    d = attn.embed_dim
    with torch.no_grad():
        for i in range(3):
            _linear_init_(attn.in_proj_weight[i * d:(i + 1) * d], attn.in_proj_bias[i * d:(i + 1) * d])
    attn.out_proj.reset_parameters()


class TemporalAttention(nn.Module):
    """LayerNorm -> attention over T for every patch -> zero-initialised ``temporal_fc`` -> residual.
    ``drop_mode`` dropout drops the attention output before ``temporal_fc`` (DeepFakesDetection's); drop_path
    drops the layer's output per sample."""

    def __init__(self, width, heads, drop_path=0.0, drop_mode="drop_path"):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        _seed_attention_init_(self.attn)
        self.temporal_fc = nn.Linear(width, width)
        nn.init.zeros_(self.temporal_fc.weight)
        nn.init.zeros_(self.temporal_fc.bias)
        self.drop_mode = drop_mode
        self.drop_path = _drop(drop_path, drop_mode)

    def forward(self, patches):  # (B, T, N, D)
        b, t, n, d = patches.shape
        x = patches.permute(0, 2, 1, 3).reshape(b * n, t, d)
        y = _mha(self.attn, self.norm(x))
        if self.drop_mode == "dropout":  # element-wise, before temporal_fc (DeepFakesDetection's)
            return patches + self.temporal_fc(self.drop_path(y)).reshape(b, n, t, d).permute(0, 2, 1, 3)
        return patches + self.drop_path(self.temporal_fc(y).reshape(b, n, t, d).permute(0, 2, 1, 3))  # per sample


class TemporalConv(nn.Module):
    """Conv1d(D, D, 3) over T for every patch -> LayerNorm -> residual (the seed's ``conv``)."""

    def __init__(self, width, heads=None, drop_path=0.0, drop_mode="drop_path"):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel_size=3, padding=1)
        self.norm = nn.LayerNorm(width)
        self.drop_path = _drop(drop_path, drop_mode)

    def forward(self, patches):
        b, t, n, d = patches.shape
        x = patches.permute(0, 2, 3, 1).reshape(b * n, d, t)
        y = self.norm(self.conv(x).transpose(1, 2))  # (B*N, T, D)
        y = y.reshape(b, n, t, d).permute(0, 2, 1, 3)
        return patches + self.drop_path(y)


class SpatialBlock(nn.Module):
    """A CLIP residual block run per frame on [clip CLS; frame patches]; the CLS update is averaged
    over the frames. ``block`` is an open_clip ResidualAttentionBlock (ln_1, attn, ln_2, mlp).
    ``drop_mode`` dropout drops the attention output only (DeepFakesDetection's); drop_path the attention and
    MLP outputs, per sample."""

    def __init__(self, block, drop_path=0.0, drop_mode="drop_path"):
        super().__init__()
        self.block = block
        self.drop_path = _drop(drop_path, drop_mode)
        self.drop_mlp = nn.Identity() if drop_mode == "dropout" else self.drop_path

    def forward(self, cls, patches):  # (B, D), (B, T, N, D)
        b, t, n, d = patches.shape
        blk = self.block
        seq = torch.cat([cls[:, None, None, :].expand(b, t, 1, d), patches], dim=2).reshape(b * t, n + 1, d)
        y = blk.ls_1(_mha(blk.attn, blk.ln_1(seq))).reshape(b, t, n + 1, d)
        y = self.drop_path(y)
        cls = cls + y[:, :, 0].mean(dim=1)
        patches = patches + y[:, :, 1:]
        cls = cls + self.drop_mlp(blk.ls_2(blk.mlp(blk.ln_2(cls))))
        patches = patches + self.drop_mlp(blk.ls_2(blk.mlp(blk.ln_2(patches))))
        return cls, patches


def _reset_block(block):
    """Random init of a residual block as the seed's spatial branch (never loaded, never trained):
    every projection with nn.Linear's default, LayerNorms 1 / 0."""
    for m in block.modules():
        if isinstance(m, nn.MultiheadAttention):
            _seed_attention_init_(m)
        elif isinstance(m, (nn.Linear, nn.LayerNorm)):
            m.reset_parameters()


class ClipSTANDetector(VideoDetector):
    """``model_name: clip_stan``."""

    config_class = ClipSTANConfig

    def __init__(self, config):
        super().__init__(config)
        cfg = self.cfg
        self.backbone = self.build_backbone(self.config)
        visual = self.backbone.visual
        visual.proj = None  # the CLIP projection is not used (the head reads the width-D CLS)
        blocks = visual.transformer.resblocks
        n_blocks = len(blocks)
        if not 1 <= cfg.depth <= n_blocks:
            raise ConfigError(f"clip_stan: depth {cfg.depth} must be between 1 and the {n_blocks} blocks of "
                              f"{cfg.backbone}")
        self.width = visual.conv1.out_channels
        heads = blocks[0].attn.num_heads
        self.first = n_blocks - cfg.depth
        rates = torch.linspace(0, cfg.drop_path, cfg.depth).tolist()
        temporal = TemporalAttention if cfg.time_module == "selfattn" else TemporalConv
        self.temporal = nn.ModuleList(temporal(self.width, heads, rates[i], cfg.drop_mode) for i in range(cfg.depth))
        spatial = []
        for i in range(cfg.depth):
            block = copy.deepcopy(blocks[self.first + i])
            if cfg.branch_init == "random":
                _reset_block(block)
            spatial.append(SpatialBlock(block, rates[i], cfg.drop_mode))
        self.spatial = nn.ModuleList(spatial)
        self.time_embed = nn.Embedding(MAX_FRAMES, self.width)  # nn.Embedding's N(0, 1), as the seed
        self.head = nn.Linear(self.width, 2)
        self.tap = nn.Identity()  # the last CLIP block's tokens, for Grad-CAM (engine/explain.py)
        self.loss_func = self.build_loss(self.config)
        self._select_trainable()
        self.log_parameters()


    # --- construction ---------------------------------------------------------------------------
    def build_backbone(self, config):
        cfg = self.cfg
        if not is_clip_name(normalize_clip_name(cfg.backbone), "vit"):
            raise ConfigError(f"clip_stan: backbone {cfg.backbone!r} is not an open_clip ViT (e.g. ViT-B/16)")
        return CLIPViTBackbone(cfg.backbone, feature_layer=None, pretrained=cfg.pretrained,
                               image_size=cfg.resolution)

    def _select_trainable(self):
        """LayerNorms, temporal layers, time embedding and head train; everything else is frozen."""
        self.requires_grad_(False)
        for m in self.modules():
            if isinstance(m, nn.LayerNorm):
                m.requires_grad_(True)
        for m in (self.temporal, self.time_embed, self.head):
            m.requires_grad_(True)

    # --- forward --------------------------------------------------------------------------------
    def _embed(self, x):
        v = self.backbone.visual
        x = v.conv1(x).flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        return v.ln_pre(x)

    def _branch_start(self, tokens):
        """The branch after the first CLIP block beside it: (cls (B, D), patches (B, T, N, D))."""
        v = self.backbone.visual
        t = tokens.shape[1]
        pos = v.positional_embedding.to(tokens.dtype)
        patches = tokens[:, :, 1:] + pos[1:] + self.time_embed.weight[:t, None, :].to(tokens.dtype)
        cls = (tokens[:, :, 0].mean(dim=1) + v.class_embedding.to(tokens.dtype) + pos[0]) / 2
        return cls, patches

    def features(self, data_dict):
        clip = as_clip(data_dict["image"], "clip_stan")
        b, t = clip.shape[:2]
        if t > MAX_FRAMES:
            raise ConfigError(f"clip_stan: clips of {t} frames exceed the time embedding ({MAX_FRAMES}); "
                              f"lower clip_size")
        v = self.backbone.visual
        x = self._embed(clip.flatten(0, 1))
        batch_first = getattr(v.transformer, "batch_first", True)
        cls = patches = None
        for i, block in enumerate(v.transformer.resblocks):
            x = block(x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)
            if i == len(v.transformer.resblocks) - 1:
                x = self.tap(x)
            if i < self.first:
                continue
            tokens = x.reshape(b, t, *x.shape[1:])
            j = i - self.first
            if j == 0:
                cls, patches = self._branch_start(tokens)
            else:
                cls = cls + tokens[:, :, 0].mean(dim=1)
                patches = patches + tokens[:, :, 1:]
            patches = self.temporal[j](patches)
            cls, patches = self.spatial[j](cls, patches)
        out = x[:, 0].reshape(b, t, -1) + cls[:, None, :]
        out = v.ln_post(out).mean(dim=1)
        return F.normalize(out, dim=-1)

    def classifier(self, features):
        return self.head(features)

    def explain_tap(self):
        """The module whose output (the last CLIP block's tokens, per frame) Grad-CAM reads."""
        return self.tap

    # --- weights --------------------------------------------------------------------------------
    def state_to_save(self):
        """Everything when the tower is random (``pretrained: none``); else what trains plus what the
        config cannot rebuild (all trained tensors; the frozen CLIP and branch weights come from
        ``pretrained``)."""
        state = self.state_dict()
        if str(self.backbone.pretrained).lower() == "none":
            return state
        trained = {n for n, p in self.named_parameters() if p.requires_grad}
        return {k: v for k, v in state.items() if k in trained}



__all__ = ["ClipSTANDetector", "ClipSTANConfig", "TemporalAttention", "TemporalConv", "SpatialBlock"]
