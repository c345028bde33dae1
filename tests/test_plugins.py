import importlib.metadata
import sys
import types

import pytest
import torch

from declip_plugin import build_detector, plugins
from declip_plugin.detectors.base import AbstractDetector
from declip_plugin.errors import RegistryError
from declip_plugin.hookspecs import hookimpl
from declip_plugin.registry import Registry


class TinyDetector(AbstractDetector):
    """An external plugin's detector: one conv, DeepfakeBench's contract."""

    def __init__(self, config):
        super().__init__(config)
        self.backbone = self.build_backbone(config)
        self.loss_func = self.build_loss(config)

    def build_backbone(self, config):
        return torch.nn.Conv2d(3, 1, 3, padding=1)

    def build_loss(self, config):
        return torch.nn.BCEWithLogitsLoss()

    def features(self, data_dict):
        return self.backbone(data_dict["image"])

    def classifier(self, features):
        return features.flatten(1).mean(1)

    def get_losses(self, data_dict, pred_dict):
        return {"overall": self.loss_func(pred_dict["cls"][:, 1], data_dict["label"].float())}

    def get_train_metrics(self, data_dict, pred_dict):
        return {}

    def forward(self, data_dict, inference=False):
        z = self.classifier(self.features(data_dict))
        return {"cls": torch.stack([-z / 2, z / 2], 1), "prob": torch.sigmoid(z), "feat": z[:, None]}


def make_plugin_module(name, detector_name="tiny_external"):
    mod = types.ModuleType(name)

    @hookimpl
    def deepfakebench_register_detectors(register):
        register(detector_name, TinyDetector)

    mod.deepfakebench_register_detectors = deepfakebench_register_detectors
    return mod


class FakeDist(importlib.metadata.Distribution):
    """A distribution with entry points only, the way pluggy's own tests fake one."""

    def __init__(self, name, entry_points):
        self._name = name
        self._eps = entry_points

    def read_text(self, filename):
        if filename == "METADATA":
            return f"Metadata-Version: 2.1\nName: {self._name}\nVersion: 1.0\n"
        if filename == "entry_points.txt":
            return "[deepfakebench]\n" + "".join(f"{k} = {v}\n" for k, v in self._eps.items())
        return None

    def locate_file(self, path):
        return path


@pytest.fixture
def external_plugin(monkeypatch):
    def install(dist_name, ep_name, module_name, detector_name="tiny_external"):
        monkeypatch.setitem(sys.modules, module_name, make_plugin_module(module_name, detector_name))
        real = importlib.metadata.distributions
        fake = FakeDist(dist_name, {ep_name: module_name})
        monkeypatch.setattr(importlib.metadata, "distributions", lambda **kw: list(real(**kw)) + [fake])
        plugins.reset()

    return install


def test_external_plugin_is_discovered_through_entry_points(external_plugin):
    external_plugin("tiny-detector-plugin", "tiny", "tiny_detector_plugin")
    names = plugins.get_registry("detectors").names()
    assert "tiny_external" in names and "declip" in names
    src = plugins.get_registry("detectors").source("tiny_external")
    assert "tiny-detector-plugin" in src
    tiny = build_detector({"model_name": "tiny_external"})
    out = tiny({"image": torch.randn(2, 3, 32, 32)})
    assert out["cls"].shape == (2, 2)
    declip = build_detector({"model_name": "declip", "backbone": "declip-tiny-vit", "pretrained": "none",
                             "feature_layer": "layer0", "decoder_type": "linear"})
    assert type(declip).__name__ == "DeCLIPDetector"


def test_duplicate_name_names_both_sources(external_plugin):
    external_plugin("evil-plugin", "evil", "evil_plugin", detector_name="declip")
    with pytest.raises(RegistryError, match=r"'declip' is registered twice: by plugin 'declip'.* and by plugin 'evil'"):
        plugins.get_registry("detectors")


def test_builtin_plugin_is_registered_like_an_external_one():
    pm = plugins.create_plugin_manager(load_entrypoints=False)
    from declip_plugin import builtin

    assert pm.get_plugin(plugins.BUILTIN_PLUGIN_NAME) is builtin
    regs = plugins.build_registries(pm)
    assert {"dolos", "autosplice", "folder", "deepfakebench_json"} <= set(regs["datasets"].names())
    assert {"detection", "localization"} <= set(regs["metrics"].names())
    # loading entry points on top registers nothing twice (the installed entry point is the same plugin)
    pm2 = plugins.create_plugin_manager(load_entrypoints=True)
    assert plugins.build_registries(pm2)["detectors"].names().count("declip") == 1


def test_registry_unknown_name_lists_names_and_closest_match():
    reg = Registry("dataset")
    reg.register("dolos", object, source="a")
    reg.register("autosplice", object, source="a")
    with pytest.raises(RegistryError) as info:
        reg.get("dolso")
    msg = str(info.value)
    assert "available: autosplice, dolos" in msg and "did you mean 'dolos'" in msg
