"""The Patch-Forensics XceptionNet front (up to block 2), as DeCLIP's ``xceptionnet`` baseline.

Module names follow the Cadene/Patch-Forensics layout (conv1, bn1, conv2, bn2, block1, block2 with
``rep``/``skip``/``skipbn``) so that checkpoints trained with the official code load unchanged.
It is randomly initialised (as in the official release) unless ``pretrained`` names a state dict.
"""
from torch import nn

from ..errors import ConfigError
from .base import Backbone
from ..checkpoints import load_module_weights, read_checkpoint


class SeparableConv2d(nn.Module):
    def __init__(self, cin, cout, kernel_size=3, padding=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, kernel_size, 1, padding, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        return self.pointwise(self.conv1(x))


class XceptionBlock(nn.Module):
    """Two separable convs (grow first), max-pool stride 2, and a 1x1 strided skip."""

    def __init__(self, cin, cout, start_with_relu):
        super().__init__()
        self.skip = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.skipbn = nn.BatchNorm2d(cout)
        layers = [nn.ReLU(inplace=False)] if start_with_relu else []
        layers += [SeparableConv2d(cin, cout), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                   SeparableConv2d(cout, cout), nn.BatchNorm2d(cout), nn.MaxPool2d(3, 2, 1)]
        self.rep = nn.Sequential(*layers)

    def forward(self, x):
        return self.rep(x) + self.skipbn(self.skip(x))


class _XceptionFront(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu2 = nn.ReLU(inplace=True)
        self.block1 = XceptionBlock(64, 128, start_with_relu=False)
        self.block2 = XceptionBlock(128, 256, start_with_relu=True)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.block2(self.block1(x))


class XceptionBackbone(Backbone):
    kind = "map"

    def __init__(self, feature_layer=None, pretrained="none", image_size=224):
        super().__init__()
        if feature_layer not in (None, "xceptionnet", "block2"):
            raise ConfigError(f"feature_layer {feature_layer!r} is not valid for xceptionnet; use block2 (or leave it empty)")
        self.name = "xceptionnet"
        self.layer = 2
        self.net = _XceptionFront()
        self.image_size = image_size
        self.out_channels = 256
        size = (image_size - 3) // 2 + 1 - 2  # conv1 (stride 2, no pad), conv2 (no pad)
        for _ in range(2):
            size = (size + 1) // 2  # max-pool 3/2/1
        self.grid = size
        self.skip_upsamples = 0
        src = "none" if pretrained in (None, False) else str(pretrained)
        if src.lower() == "openai":
            raise ConfigError("xceptionnet has no OpenAI weights; set pretrained: none (random init, as the official "
                              "release) or the path of an xceptionnet state dict")
        if src.lower() not in ("none", "random", ""):
            state = read_checkpoint(src, "xceptionnet weights")
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            load_module_weights(self.net, state, src, what="backbone xceptionnet")
        self.pretrained = src
        self.cache_key = f"xceptionnet|{src}|block2|{image_size}"

    def forward(self, x):
        return self.net(x)
