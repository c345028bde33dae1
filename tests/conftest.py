import logging

import pytest
import torch

from declip_plugin import plugins
from declip_plugin.backbones.clip import register_bundled_configs

register_bundled_configs()  # the tiny CLIP-shaped towers, also for open_clip.create_model in tests

TINY_VIT = "declip-tiny-vit"
TINY_RN = "declip-tiny-rn"


@pytest.fixture(autouse=True)
def _fresh_plugins_and_seed():
    plugins.reset()
    torch.manual_seed(0)
    yield
    plugins.reset()


def tiny_config(**overrides):
    cfg = {"model_name": "declip", "backbone": TINY_VIT, "pretrained": "none", "feature_layer": "layer1",
           "decoder_type": "conv-4", "fully_supervised": True, "fix_backbone": True}
    cfg.update(overrides)
    return cfg


@pytest.fixture
def caplog_info(caplog):
    caplog.set_level(logging.INFO)
    return caplog
