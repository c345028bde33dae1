"""The backbone contract shared by every feature extractor."""
import re

from torch import nn

from ..data.transforms import CLIP_MEAN, CLIP_STD
from ..errors import ConfigError


def parse_layer(feature_layer, valid, default, backbone):
    """``'layer20'`` -> 20, checked against ``valid`` (a range or list); None -> ``default``."""
    if feature_layer is None:
        return default
    m = re.fullmatch(r"layer(\d+)", str(feature_layer).strip())
    if not m or int(m.group(1)) not in valid:
        lo, hi = min(valid), max(valid)
        raise ConfigError(
            f"feature_layer {feature_layer!r} is not valid for backbone {backbone!r}; use layer{lo} ... layer{hi}"
        )
    return int(m.group(1))


class Backbone(nn.Module):
    """A feature extractor that stops at its tapped layer.

    Attributes every backbone sets:
      kind          'tokens' (B, 1+N, C) with the CLS token first, or 'map' (B, C, H, W)
      out_channels  C
      grid          spatial size of the feature map (tokens: sqrt(N)) at ``image_size``
      image_size    the input resolution the backbone expects (224)
      name          the normalized backbone name
      layer         the tapped layer index
      cache_key     a string that identifies architecture + weights + layer (for feature caches)
    """

    kind = "map"
    mean, std = CLIP_MEAN, CLIP_STD

    def describe(self):
        return f"{self.name} layer{self.layer} ({self.kind}, {self.out_channels} ch, grid {self.grid})"

    def pooled(self, feats):
        """A (B, C) pooled feature (DeepfakeBench's ``feat``)."""
        if self.kind == "tokens":
            return feats[:, 1:].mean(dim=1)
        return feats.mean(dim=(2, 3))
