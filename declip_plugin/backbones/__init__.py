"""Frozen feature extractors: one obvious way to build one by name (``build_backbone``).

Names follow the official DeCLIP release (``ViT-L/14``, ``RN50``, ``ViT-L/14,RN50``,
``xceptionnet``, with or without the ``CLIP:`` prefix); any other open_clip ViT or
ModifiedResNet model name works too (``ViT-B-16``, ``RN101``, ...).
"""
from .base import Backbone, parse_layer
from .clip import CLIPResNetBackbone, CLIPViTBackbone, is_clip_name, normalize_clip_name
from .fusion import FusionBackbone
from .xception import XceptionBackbone

__all__ = ["Backbone", "build_backbone", "normalize_backbone_name", "parse_layer"]


def normalize_backbone_name(name):
    """Strip the official ``CLIP:`` prefix and spaces: ``'CLIP:ViT-L/14, RN50'`` -> ``'ViT-L/14,RN50'``."""
    name = str(name).strip()
    if name.startswith("CLIP:"):
        name = name[len("CLIP:"):]
    return ",".join(part.strip() for part in name.split(","))


def build_backbone(name, feature_layer=None, pretrained="openai", image_size=224):
    """Build the backbone ``name`` tapped at ``feature_layer`` (e.g. ``'layer20'``).

    ``pretrained``: ``'openai'`` (open_clip's loader, cached files only unless the network is up),
    a path to an OpenAI-format checkpoint, ``'none'`` (random init), or for the fusion a mapping
    ``{'ViT-L/14': ..., 'RN50': ...}``.
    """
    name = normalize_backbone_name(name)
    parts = name.split(",")
    if len(parts) == 2:
        return FusionBackbone(parts[0], parts[1], feature_layer=feature_layer, pretrained=pretrained,
                              image_size=image_size)
    if len(parts) > 2:
        from ..errors import ConfigError

        raise ConfigError(f"backbone {name!r}: a fusion takes exactly two backbones (a ViT and a ResNet)")
    if name.lower() == "xceptionnet":
        return XceptionBackbone(feature_layer=feature_layer, pretrained=pretrained, image_size=image_size)
    oc_name = normalize_clip_name(name)
    if is_clip_name(oc_name, "vit"):
        return CLIPViTBackbone(name, feature_layer=feature_layer, pretrained=pretrained, image_size=image_size)
    if is_clip_name(oc_name, "resnet"):
        return CLIPResNetBackbone(name, feature_layer=feature_layer, pretrained=pretrained, image_size=image_size)
    from ..errors import ConfigError
    from ..registry import closest

    known = ["ViT-L/14", "RN50", "ViT-L/14,RN50", "xceptionnet"] + available_clip_names()
    hint = closest(name, known)
    raise ConfigError(
        f"unknown backbone {name!r}; use one of ViT-L/14, RN50, ViT-L/14,RN50, xceptionnet or an open_clip "
        f"ViT / ModifiedResNet model name" + (f" (did you mean {hint!r}?)" if hint else "")
    )


def available_clip_names():
    from .clip import list_clip_models

    return list_clip_models()
