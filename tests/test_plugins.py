import importlib.metadata
import logging
import os
import sys
import types

import pytest
import torch

from declip_plugin import build_detector, plugins
from declip_plugin.detectors.base import AbstractDetector
from declip_plugin.errors import RegistryError
from declip_plugin.hookspecs import hookimpl
from declip_plugin.registry import Registry
from tests.conftest import tiny_config


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
    declip = build_detector(tiny_config(feature_layer="layer0", decoder_type="linear"))
    assert type(declip).__name__ == "DeCLIPDetector"


def _disabled_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "declip_plugin.plugins" and r.levelname == "WARNING"]


def test_a_name_another_plugin_has_disables_the_later_plugin(external_plugin, caplog):
    """The built-in plugin registers first: a plugin taking one of its names is disabled (all it registers),
    with one warning naming both; the built-in detector stays the one `declip` builds."""
    external_plugin("evil-plugin", "evil", "evil_plugin", detector_name="declip")
    reg = plugins.get_registry("detectors")
    assert reg.source("declip").startswith("plugin 'declip'") and "evil" not in " ".join(map(reg.source, reg.names()))
    (line,) = _disabled_warnings(caplog)
    assert line.startswith("plugin 'evil' (evil-plugin 1.0) is disabled: it registers detector 'declip', which plugin "
                           "'declip'") and "the built-in commands and the other plugins work without it" in line


def _install_module(monkeypatch, dist_name, ep_name, module):
    monkeypatch.setitem(sys.modules, module.__name__, module)
    real = importlib.metadata.distributions
    fake = FakeDist(dist_name, {ep_name: module.__name__})
    monkeypatch.setattr(importlib.metadata, "distributions", lambda **kw: list(real(**kw)) + [fake])
    plugins.reset()


def _broken_commands_module(name):
    mod = make_plugin_module(name, detector_name="half_registered")

    @hookimpl
    def deepfakebench_register_commands(register):
        raise RuntimeError("cannot find my config file")

    mod.deepfakebench_register_commands = deepfakebench_register_commands
    return mod


def _misspelt_hook_module(name):
    mod = types.ModuleType(name)

    @hookimpl
    def deepfakebench_register_detector(register):  # no such hook: pluggy refuses the plugin
        register("never", TinyDetector)

    mod.deepfakebench_register_detector = deepfakebench_register_detector
    return mod


def _bad_parser_module(name):
    from declip_plugin.commands import Command

    def add_arguments(parser):
        parser.add_argument("--x", type="not a callable")  # argparse refuses it

    mod = types.ModuleType(name)

    @hookimpl
    def deepfakebench_register_commands(register):
        register("broken-cmd", Command("a command whose parser fails", add_arguments, lambda args: 0))

    mod.deepfakebench_register_commands = deepfakebench_register_commands
    return mod


BROKEN = [("register hook raises", _broken_commands_module,
           "its deepfakebench_register_commands raised RuntimeError: cannot find my config file"),
          ("misspelt hook", _misspelt_hook_module, "unknown hook 'deepfakebench_register_detector'"),
          ("command parser fails", _bad_parser_module,
           "the parser of its command 'broken-cmd' cannot be built (ValueError: ")]


@pytest.mark.parametrize("what,make,why", BROKEN, ids=[b[0] for b in BROKEN])
def test_a_broken_plugin_is_disabled_with_one_warning_and_the_builtin_commands_run(monkeypatch, caplog, capsys,
                                                                                   what, make, why):
    from declip_plugin import cli

    _install_module(monkeypatch, "broken-plugin", "broken", make("broken_plugin"))
    caplog.set_level(logging.WARNING)
    assert cli.main(["plugins"]) == 0  # a built-in command: every registry built
    out = capsys.readouterr().out
    (line,) = _disabled_warnings(caplog)
    assert line.startswith("plugin 'broken' (broken-plugin 1.0) is disabled: ") and why in line, line
    (listed,) = [ln for ln in out.splitlines() if ln.startswith("plugins: ")]
    assert listed == "plugins: declip"
    (disabled,) = [ln for ln in out.splitlines() if ln.startswith("disabled: ")]  # `declip plugins` says why
    assert disabled.startswith("disabled: plugin 'broken' (broken-plugin 1.0): ") and why in disabled
    registered = out[:out.index("plugins: ")]
    for name in ("half_registered", "never", "broken-cmd", "broken"):  # nothing of it is used
        assert name not in registered
    assert "declip" in plugins.get_registry("detectors").names()


def test_a_plugin_that_cannot_be_imported_is_disabled_the_user_sees_one_line(tmp_path):
    """End to end, as installed: a distribution whose entry point's module raises at import. `declip
    datasets` runs, and stderr has the one warning line naming the plugin and its distribution."""
    import subprocess

    site = tmp_path / "site"
    (site / "broken_dist-2.0.dist-info").mkdir(parents=True)
    (site / "broken_dist-2.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-dist\n"
                                                                 "Version: 2.0\n")
    (site / "broken_dist-2.0.dist-info" / "entry_points.txt").write_text("[deepfakebench]\nbroken = broken_mod\n")
    (site / "broken_mod.py").write_text("import no_such_dependency_of_the_plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "declip_plugin", "datasets", "--data_root", str(tmp_path)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "dolos-lama" in done.stdout
    (line,) = done.stderr.strip().splitlines()
    assert line.split(" ", 2)[1] == "WARNING" and line.split(" ", 2)[2] == (
        "plugin 'broken' (broken-dist 2.0) is disabled: loading it raised ModuleNotFoundError: No module named "
        "'no_such_dependency_of_the_plugin'; the built-in commands and the other plugins work without it (fix or "
        "uninstall it; declip --debug shows its traceback)")


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
