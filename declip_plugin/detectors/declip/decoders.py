"""DeCLIP decoders: ``linear``, ``attention`` and ``conv-K`` (K = 4, 12, 20, ...).

Each maps backbone features to (B, 1, 256, 256) mask logits. The layer order inside ``layers``
matches the official ``fc`` Sequential index for index, so official checkpoints map onto
``decoder.layers.<i>`` unchanged (see checkpoints.py).
"""
import re

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from open_clip.transformer import QuickGELU
from torch import nn

from ...errors import ConfigError

OUTPUT_SIZE = 256
CONV_WIDTHS = (512, 256, 128, 64)
DECODER_TYPES = ("linear", "attention", "conv-4", "conv-12", "conv-20")


def tokens_to_map(tokens, grid):
    """(B, N, C) patch tokens (no CLS) -> (B, C, grid, grid), row-major as the official code."""
    b, n, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, grid, grid)


def _patch_tokens(feats, kind):
    """Per-location features as (B, N, C) tokens (CLS dropped)."""
    return feats[:, 1:] if kind == "tokens" else feats.flatten(2).transpose(1, 2)


def init_decoder_(module, gain=0.02):
    """The official init: weights of every conv / BN / linear layer ~ N(0, gain); biases kept."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)) and m.weight is not None:
            nn.init.normal_(m.weight, 0.0, gain)


class ConvDecoder(nn.Module):
    """Stages of Conv5x5-BN-ReLU (K/4 per stage) over widths [C, 512, 256, 128, 64], each followed by a
    bilinear x2 upsample (the first ``skip_upsamples`` omitted), a final resize to 256 for map inputs
    (or whenever the grid does not reach 256), then Conv5x5 64 -> 1."""

    def __init__(self, in_channels, kind, grid, depth, skip_upsamples=0):
        super().__init__()
        self.kind, self.grid = kind, grid
        per_stage = depth // 4
        widths = (in_channels,) + CONV_WIDTHS
        layers, size = [], grid
        for i in range(1, len(widths)):
            for j in range(per_stage):
                layers += [nn.Conv2d(widths[i - 1] if j == 0 else widths[i], widths[i], 5, padding=2),
                           nn.BatchNorm2d(widths[i]), nn.ReLU()]
            if i > skip_upsamples:
                layers.append(nn.Upsample(scale_factor=2, mode="bilinear"))
                size *= 2
        if kind == "map" or size != OUTPUT_SIZE:
            layers.append(nn.Upsample(size=(OUTPUT_SIZE, OUTPUT_SIZE), mode="bilinear"))
        layers.append(nn.Conv2d(widths[-1], 1, 5, padding=2))
        self.layers = nn.Sequential(*layers)

    def forward(self, feats):
        x = tokens_to_map(feats[:, 1:], self.grid) if self.kind == "tokens" else feats
        if self.layers[0].weight.is_contiguous(memory_format=torch.channels_last):  # see engine channels_last
            x = x.contiguous(memory_format=torch.channels_last)
        else:  # tokens_to_map gives channels-last strides; the CPU convs are ~25% faster on NCHW
            x = x.contiguous()
        return self.layers(x)


class LinearDecoder(nn.Module):
    """Linear(C, 1) on every patch token / map location -> grid x grid -> bicubic to 256."""

    def __init__(self, in_channels, kind, grid):
        super().__init__()
        self.kind, self.grid = kind, grid
        self.layers = nn.Sequential(nn.Linear(in_channels, 1))

    def head(self, tokens):
        logits = self.layers(tokens)  # (B, N, 1)
        x = tokens_to_map(logits, self.grid)
        return F.interpolate(x, size=(OUTPUT_SIZE, OUTPUT_SIZE), mode="bicubic", align_corners=False)

    def forward(self, feats):
        return self.head(_patch_tokens(feats, self.kind))


class AttentionDecoder(LinearDecoder):
    """Two CLIP residual attention blocks (QuickGELU, causal mask over all tokens) + the linear head."""

    def __init__(self, in_channels, kind, grid):
        super().__init__(in_channels, kind, grid)
        heads = max(1, in_channels // 64)
        if in_channels % heads:
            raise ConfigError(f"attention decoder: width {in_channels} is not divisible into {heads} heads")
        self.att1 = ResidualAttentionBlock(in_channels, heads, act_layer=QuickGELU, batch_first=True)
        self.att2 = ResidualAttentionBlock(in_channels, heads, act_layer=QuickGELU, batch_first=True)
        n = grid * grid + (1 if kind == "tokens" else 0)
        self.register_buffer("attn_mask", torch.full((n, n), float("-inf")).triu_(1), persistent=False)

    def forward(self, feats):
        x = feats if self.kind == "tokens" else feats.flatten(2).transpose(1, 2)
        mask = self.attn_mask.to(x.dtype)
        x = self.att2(self.att1(x, attn_mask=mask), attn_mask=mask)
        return self.head(x[:, 1:] if self.kind == "tokens" else x)


def build_decoder(decoder_type, backbone, init_gain=0.02):
    """The decoder ``decoder_type`` for ``backbone`` (uses its kind, out_channels, grid, skip_upsamples)."""
    kind, c, grid = backbone.kind, backbone.out_channels, backbone.grid
    m = re.fullmatch(r"conv-(\d+)", str(decoder_type))
    if m and int(m.group(1)) >= 4 and int(m.group(1)) % 4 == 0:
        dec = ConvDecoder(c, kind, grid, int(m.group(1)), getattr(backbone, "skip_upsamples", 0))
    elif decoder_type == "linear":
        dec = LinearDecoder(c, kind, grid)
    elif decoder_type == "attention":
        dec = AttentionDecoder(c, kind, grid)
    else:
        raise ConfigError(f"unknown decoder_type {decoder_type!r}; use one of {', '.join(DECODER_TYPES)} (conv-K, K a multiple of 4)")
    init_decoder_(dec.layers, init_gain)
    return dec
