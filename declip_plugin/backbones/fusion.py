"""The DeCLIP fusion: ViT tokens of layer N (as a grid) + RN50 layer3 resized to that grid."""
import torch

from ..errors import ConfigError
from .base import Backbone
from .clip import CLIPResNetBackbone, CLIPViTBackbone, is_clip_name, normalize_clip_name, resize_map


def _pretrained_for(pretrained, name):
    if isinstance(pretrained, dict):
        for key in (name, f"CLIP:{name}", normalize_clip_name(name)):
            if key in pretrained:
                return pretrained[key]
        raise ConfigError(
            f"pretrained mapping {pretrained!r} has no entry for backbone {name!r}; give one per backbone, "
            f"e.g. {{{name}: openai}}"
        )
    if pretrained not in (None, "none", "openai", False):
        raise ConfigError(
            f"pretrained {pretrained!r}: the fusion backbone has two towers; map each to its source, "
            f"e.g. pretrained: {{ViT-L/14: openai, RN50: /path/RN50.pt}}"
        )
    return pretrained


class FusionBackbone(Backbone):
    kind = "map"

    def __init__(self, vit_name, rn_name, feature_layer=None, pretrained="openai", image_size=224):
        super().__init__()
        if not is_clip_name(normalize_clip_name(vit_name), "vit") or not is_clip_name(normalize_clip_name(rn_name), "resnet"):
            raise ConfigError(f"fusion backbone {vit_name},{rn_name}: expected a CLIP ViT followed by a CLIP ResNet")
        self.name = f"{vit_name},{rn_name}"
        self.vit = CLIPViTBackbone(vit_name, feature_layer, _pretrained_for(pretrained, vit_name), image_size)
        self.rn = CLIPResNetBackbone(rn_name, "layer3", _pretrained_for(pretrained, rn_name), image_size)
        self.layer = self.vit.layer
        self.image_size = image_size
        self.grid = self.vit.grid
        self.out_channels = self.vit.out_channels + self.rn.out_channels
        self.skip_upsamples = 0
        self.pretrained = {vit_name: self.vit.pretrained, rn_name: self.rn.pretrained}
        self.cache_key = f"fusion[{self.vit.cache_key}+{self.rn.cache_key}]"

    def forward(self, x):
        tokens = self.vit(x)[:, 1:]
        b, n, c = tokens.shape
        vit_map = tokens.transpose(1, 2).reshape(b, c, self.grid, self.grid)
        rn_map = resize_map(self.rn(x), self.grid)
        return torch.cat([vit_map, rn_map.to(vit_map.dtype)], dim=1)
