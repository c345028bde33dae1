"""The DeepfakeBench integration's parts that need no DeepfakeBench environment.

Against the real snapshot's sources (tests/dfb_support.py; read, not run): the signature check of
every wrapped function, including a copy whose test.py lacks one. Against small fake checkouts
built here: layouts and registries the launcher must refuse, the export's layout. Running the real
checkout's scripts is tests/test_integration_dfb_real.py.

The fake checkout has DeepfakeBench's shape where the launcher relies on it:
``training/metrics/registry.py`` (a Registry with register_module / __getitem__ and a DETECTOR),
``training/detectors/`` registering ``xception`` by decorator, a ``training/dataset`` package whose
``fwa_blend`` / ``lsda_dataset`` fail at import (as on a CPU machine without dlib's landmark file),
``training/config/{train,test}_config.yaml`` and ``training/{train,test}.py`` with argparse,
``init_seed(config)``, ``inference`` / ``test_one_dataset`` / ``test_epoch`` and a ``main()`` with the
signatures the launcher checks (their bodies are never run here).
"""
import json
import os
import pickle
import textwrap

import numpy as np
import pytest

from declip_plugin import run_folder
from declip_plugin.config import load_yaml, resolve_config_path
from declip_plugin.errors import ConfigError, DataError, DeclipError
from declip_plugin.integrations import deepfakebench as dfb
from declip_plugin import deepfakebench_facts as facts
from declip_plugin.integrations.deepfakebench import bootstrap, checkout as dfb_checkout, launcher, patches
from declip_plugin.integrations.deepfakebench.export import export_dfb, label_dict_for, read_summaries
from dfb_support import checkout_root
from declip_plugin.cli import main as cli_main
from tests.conftest import TINY_RN, assert_one_line, copy_data, files_under, run_cli, tiny_config

REGISTRY_PY = '''
class Registry(object):
    def __init__(self):
        self.data = {}

    def register_module(self, module_name=None):
        def _register(cls):
            self.data[module_name or cls.__name__] = cls
            return cls
        return _register

    def __getitem__(self, key):
        return self.data[key]

BACKBONE = Registry()
DETECTOR = Registry()
TRAINER = Registry()
LOSSFUNC = Registry()
'''

TEST_PY = '''
import argparse

import yaml

from metrics.registry import DETECTOR
import dataset

parser = argparse.ArgumentParser()
parser.add_argument("--detector_path", type=str, default="/nowhere/resnet34.yaml")
args = parser.parse_args()


def init_seed(config):
    config["seeded"] = True


def inference(model, data_dict):
    return model(data_dict, inference=True)


def test_one_dataset(model, data_loader):
    return [inference(model, d) for d in data_loader]


def test_epoch(model, test_data_loaders):
    return {key: test_one_dataset(model, loader) for key, loader in test_data_loaders.items()}


def main():
    with open(args.detector_path) as f:
        config = yaml.safe_load(f)
    with open("./training/config/test_config.yaml") as f:
        config.update(yaml.safe_load(f))
    init_seed(config)
'''

TRAIN_PY = '''
import yaml

from trainer.trainer import Trainer


def init_seed(config):
    pass


def main():
    with open("./training/config/train_config.yaml") as f:
        config = yaml.safe_load(f)
    init_seed(config)
'''

TRAINER_PY = '''
class Trainer(object):
    def inference(self, data_dict):
        return self.model(data_dict, inference=True)

    def test_one_dataset(self, data_loader):
        return [self.inference(d) for d in data_loader]

    def save_metrics(self, phase, metric_one_dataset, dataset_key):
        pass

    def test_epoch(self, epoch, iteration, test_data_loaders, step):
        pass
'''


def _write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(textwrap.dedent(text))


def make_checkout(root, registry_py=REGISTRY_PY, host_detector="xception"):
    t = os.path.join(root, "training")
    _write(os.path.join(t, "metrics", "__init__.py"), "")
    _write(os.path.join(t, "metrics", "registry.py"), registry_py)
    _write(os.path.join(t, "detectors", "__init__.py"),
           "from metrics.registry import DETECTOR\nfrom .host_detector import HostDetector\n")
    _write(os.path.join(t, "detectors", "host_detector.py"),
           f"from metrics.registry import DETECTOR\n\n@DETECTOR.register_module(module_name='{host_detector}')\n"
           f"class HostDetector:\n    def __init__(self, config):\n        self.config = config\n")
    _write(os.path.join(t, "dataset", "__init__.py"),
           "from .fwa_blend import FWABlendDataset\nfrom .lsda_dataset import LSDADataset\n")
    _write(os.path.join(t, "dataset", "fwa_blend.py"),
           "raise RuntimeError('Unable to open preprocessing/dlib_tools/shape_predictor_81_face_landmarks.dat')\n")
    _write(os.path.join(t, "dataset", "lsda_dataset.py"), "raise RuntimeError('Found no NVIDIA driver')\n")
    _write(os.path.join(t, "trainer", "__init__.py"), "")
    _write(os.path.join(t, "trainer", "trainer.py"), TRAINER_PY)
    _write(os.path.join(t, "config", "test_config.yaml"),
           "mode: test\nlmdb: true\ndataset_json_folder: ./preprocessing/dataset_json\nlabel_dict:\n  FF-real: 0\n  FF-DF: 1\n")
    _write(os.path.join(t, "config", "train_config.yaml"),
           "mode: train\nlmdb: true\nlog_dir: ./logs/training/\nlabel_dict:\n  FF-real: 0\n")
    _write(os.path.join(t, "test.py"), TEST_PY)
    _write(os.path.join(t, "train.py"), TRAIN_PY)
    return str(root)


TINY = tiny_config(backbone=TINY_RN, feature_layer="layer2", decoder_type="linear", with_mask=True, resolution=224,
                   log_dir="./logs/declip")


def _yaml(path, data):
    import yaml

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    return str(path)


@pytest.fixture
def checkout(tmp_path):
    return make_checkout(tmp_path / "DeepfakeBench")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# checkout validation (no child process)
# ---------------------------------------------------------------------------------------------
def test_validate_checkout_finds_registry_and_host_detectors(checkout):
    info = dfb.validate_checkout(checkout, mode="test")
    assert info["root"] == os.path.abspath(checkout)
    assert info["registry_kind"] == "register_module"
    assert info["host_detectors"] == {"xception": "training/detectors/host_detector.py"}
    assert info["commit"] == "unknown (no .git)"


# ---------------------------------------------------------------------------------------------
# the real checkout's sources: every wrapped function as facts.WRAPPED expects
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_checkout(tmp_path_factory):
    return checkout_root(tmp_path_factory)


@pytest.mark.parametrize("mode", ["test", "train"])
def test_the_real_checkout_has_every_wrapped_function(real_checkout, mode):
    info = dfb.validate_checkout(real_checkout, mode=mode, localization=True)
    assert info["registry_kind"] == "register_module"
    assert {"xception", "meso4", "timesformer"} <= set(info["host_detectors"])


def _copy_with(real_checkout, tmp_path, rel, old, new):
    import shutil

    root = tmp_path / "DeepfakeBench"
    shutil.copytree(real_checkout, root, ignore=shutil.ignore_patterns("*.pth", "*.dat", "figures", "analysis"))
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("0123456789abcdef0123456789abcdef01234567\n")
    return str(root)


def test_a_checkout_whose_test_py_lacks_a_wrapped_function_is_refused_in_one_line(real_checkout, tmp_path):
    root = _copy_with(real_checkout, tmp_path, "training/test.py", "def test_one_dataset(", "def evaluate_one_dataset(")
    det = _yaml(tmp_path / "det.yaml", TINY)
    with pytest.raises(DeclipError) as e:
        dfb.launch(dfb.LaunchSpec(root, "test", ["--detector_path", det], cpu=True))
    msg = str(e.value)
    assert "\n" not in msg
    assert "(commit 0123456)" in msg and f"tested with {facts.TESTED_COMMIT}" in msg
    assert "training/test.py has no test_one_dataset(model, data_loader)" in msg


def test_a_changed_signature_is_refused_with_what_changed(real_checkout, tmp_path):
    root = _copy_with(real_checkout, tmp_path, "training/trainer/trainer.py",
                      "def save_metrics(self, phase, metric_one_dataset, dataset_key):",
                      "def save_metrics(self, phase, metric_one_dataset, dataset_key, extra=None):")
    with pytest.raises(dfb_checkout.CheckoutMismatch) as e:
        dfb.validate_checkout(root, mode="train")
    assert ("training/trainer/trainer.py: Trainer.save_metrics now takes (self, phase, metric_one_dataset, "
            "dataset_key, extra), expected Trainer.save_metrics(self, phase, metric_one_dataset, dataset_key)") in str(e.value)
    # without localization the Trainer is not wrapped, so train runs
    assert dfb.validate_checkout(root, mode="train", localization=False)["root"] == root


def test_the_loaded_functions_are_checked_too():
    g = {}
    exec("def init_seed(config):\n    pass\n\ndef inference(model, batch):\n    pass\n", g)
    with pytest.raises(patches.BootstrapError) as e:
        patches.check_objects("training/test.py", g, {"init_seed": ("config",), "inference": ("model", "data_dict"),
                                                      "main": ()}, "abc1234")
    msg = str(e.value)
    assert "inference now takes (model, batch), expected inference(model, data_dict)" in msg
    assert "training/test.py has no main()" in msg and "commit abc1234" in msg


def test_facts_name_every_key_of_the_config_schema():
    from declip_plugin.config.run import RunConfig
    from declip_plugin.config.schema import fields

    assert set(facts.YAML_KEYS) <= set(fields(RunConfig))  # every key DeepfakeBench reads is a run key
    assert {k.split(".")[0] for mode in facts.REQUIRED_KEYS.values() for k in mode} <= set(facts.YAML_KEYS)


def test_overrides_go_where_deepfakebenchs_merge_keeps_them(tmp_path, checkout):
    det = _yaml(tmp_path / "det.yaml", {**TINY, "label_dict": {"mine_real": 0, "FF-DF": 0},
                                        "optimizer": {"type": "adam", "adam": {"lr": 0.1, "eps": 1e-8}}})
    over = {"lmdb": False, "workers": 0, "optimizer": {"adam": {"lr": 0.5}}}
    serve = launcher.prepare_configs("test", checkout, det, det, over, {"mine_real": 0, "FF-DF": 0, "x_fake": 1},
                                     str(tmp_path))
    import yaml

    served = {k: yaml.safe_load(open(v, encoding="utf-8")) for k, v in serve.items()}
    host = served[facts.HOST_CONFIGS["test"]]
    assert host["lmdb"] is False and "workers" not in host  # lmdb is the host config's key
    # test.py: test_config's label_dict replaces the detector's: ours are added, its own win on conflicts
    assert host["label_dict"] == {"FF-real": 0, "FF-DF": 1, "mine_real": 0, "x_fake": 1}
    mine = served[det]
    assert mine["workers"] == 0 and mine["optimizer"]["adam"] == {"lr": 0.5, "eps": 1e-8}  # nested: merged
    # DeepfakeBench's own merge of the two gives the overrides
    merged = {**mine, **host}
    assert patches.override_problems(merged, over, {"x_fake": 1}) == []
    assert patches.override_problems({**merged, "workers": 4}, over, {}) == ["workers is 4, not the override 0"]
    # train.py keeps the host's label_dict when the detector has none: the exported labels go there
    plain = _yaml(tmp_path / "plain.yaml", TINY)
    serve = launcher.prepare_configs("train", checkout, plain, plain, {}, {"x_fake": 1}, str(tmp_path))
    assert list(serve) == [facts.HOST_CONFIGS["train"]]
    assert yaml.safe_load(open(serve[facts.HOST_CONFIGS["train"]], encoding="utf-8"))["label_dict"] == \
        {"FF-real": 0, "x_fake": 1}


@pytest.mark.parametrize("over, match", [({"save_ckpt": False}, "pass --no-save_ckpt"),
                                         ({"lmdb": True, "dataset_json_folder": "/x"}, "dataset_json_v3")])
def test_overrides_the_script_would_replace_are_refused(tmp_path, checkout, over, match):
    det = _yaml(tmp_path / "det.yaml", TINY)
    with pytest.raises(DeclipError, match=match):
        launcher.prepare_configs("train", checkout, det, det, over, {}, str(tmp_path))


def test_root_from_environment(checkout, monkeypatch):
    monkeypatch.setenv("DEEPFAKEBENCH_ROOT", checkout)
    assert dfb.validate_checkout()["root"] == os.path.abspath(checkout)
    monkeypatch.delenv("DEEPFAKEBENCH_ROOT")
    with pytest.raises(DeclipError, match="DEEPFAKEBENCH_ROOT"):
        dfb.validate_checkout()


def test_not_a_checkout_names_missing_files(tmp_path):
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "test.py").write_text("")
    with pytest.raises(DeclipError) as e:
        dfb.validate_checkout(str(tmp_path))
    msg = str(e.value)
    assert "is not a DeepfakeBench checkout" in msg
    assert "missing: training/train.py, training/metrics/registry.py" in msg
    with pytest.raises(DeclipError, match="does not exist"):
        dfb.validate_checkout(str(tmp_path / "nope"))


def test_deepfakebench_root_that_is_no_checkout(tmp_path, capsys):
    (tmp_path / "notdfb").mkdir()
    code, _, err = run_cli(["dfb", "test", "--bench-root", tmp_path / "notdfb", "--cpu", "--", "--detector_path",
                            "x.yaml"], capsys)
    assert code == 2
    assert_one_line(err, str(tmp_path / "notdfb"))


def test_registry_without_detector_is_rejected(tmp_path):
    root = make_checkout(tmp_path / "c", registry_py="DETECTORS = {}\nBACKBONE = {}\n")
    with pytest.raises(DeclipError) as e:
        dfb.validate_checkout(root)
    assert "does not define a top-level DETECTOR registry" in str(e.value)
    assert "BACKBONE, DETECTORS" in str(e.value)


def test_registry_class_without_interface_is_rejected(tmp_path):
    src = "class Reg:\n    def add(self, name, cls):\n        pass\n\nDETECTOR = Reg()\n"
    root = make_checkout(tmp_path / "c", registry_py=src)
    with pytest.raises(DeclipError) as e:
        dfb.validate_checkout(root)
    msg = str(e.value)
    assert "DETECTOR is a Reg, which lacks register_module and __getitem__" in msg
    assert "methods found: add" in msg


def test_dict_registry_is_accepted(tmp_path):
    root = make_checkout(tmp_path / "c", registry_py="DETECTOR = {}\n")
    assert dfb.validate_checkout(root)["registry_kind"] == "dict"


def test_our_names_a_checkout_registers_too_run_under_a_stated_alternative():
    # DeepFakesDetection registers clip_enhanced, clip_stan and timesformer itself: its own stay
    fork = {"clip_enhanced": "training/detectors/clip_enhanced.py", "clip_stan": "training/detectors/clip_stan.py",
            "timesformer": "training/detectors/timesformer_detector.py", "xception": "x.py"}
    assert launcher.names_in_checkout(fork) == {"clip_enhanced": "clip_enhanced_plugin",
                                                "clip_stan": "clip_stan_plugin", "timesformer": "timesformer_effb0"}
    assert launcher.names_in_checkout({"xception": "x.py"}) == {}
    with pytest.raises(DeclipError, match="'declip' .* and so is its alternative 'declip_plugin'"):
        launcher.names_in_checkout({"declip": "a.py", "declip_plugin": "b.py"})


def test_the_renamed_detectors_are_registered_under_their_alternative_names():
    class Registry(dict):
        pass

    registry, state = Registry(), patches.HostState({})
    detectors = bootstrap.plugin_detectors()
    rename = {"clip_enhanced": "clip_enhanced_plugin", "timesformer": "timesformer_effb0"}
    state.registry = registry
    bootstrap.register_into(registry, bootstrap.as_named_in_checkout(detectors, rename))
    assert registry["clip_enhanced_plugin"] is detectors["clip_enhanced"][0] and "clip_enhanced" not in registry
    assert "timesformer" not in registry and registry["timesformer_effb0"] is detectors["timesformer"][0]


def test_plugins_lists_the_names_ours_run_under_in_a_checkout(tmp_path, capsys):
    from declip_plugin import cli

    root = make_checkout(tmp_path / "fork", host_detector="clip_enhanced")
    assert cli.main(["plugins", "--bench_root", root]) == 0
    out = capsys.readouterr().out
    assert "clip_enhanced_plugin" in out and "training/detectors/host_detector.py" in out
    line = next(ln for ln in out.splitlines() if ln.split()[:1] == ["clip_enhanced"])
    assert "runs as clip_enhanced_plugin" in line


def test_a_fork_import_the_environment_lacks_is_one_line(tmp_path):
    root = make_checkout(tmp_path / "fork")
    with open(os.path.join(root, "training", "test.py"), "a", encoding="utf-8") as f:
        f.write("\nimport no_such_module_of_a_fork\n")
    det = _yaml(tmp_path / "det.yaml", TINY)
    with pytest.raises(DeclipError, match=r"no_such_module_of_a_fork \(imported by training/test.py\); run "
                                          r"`declip dfb setup --bench_root "):
        dfb.launch(dfb.LaunchSpec(root, "test", ["--detector_path", det], cpu=True))


def test_a_fork_import_inside_a_function_is_reported_with_the_file_that_imports_it(tmp_path):
    """An import in a function body is not required up front (environment.py); when the run reaches it, the
    one line names the module and the checkout file (and line) that imports it."""
    root = make_checkout(tmp_path / "fork")
    _write(os.path.join(root, "training", "detectors", "late.py"),
           "def build():\n    import no_such_module_of_a_fork\n")
    with open(os.path.join(root, "training", "test.py"), "a", encoding="utf-8") as f:
        f.write("\nfrom detectors.late import build\n_main = main\n\n\ndef main():\n    build()\n")
    det = _yaml(tmp_path / "det.yaml", TINY)
    with pytest.raises(DeclipError) as e:
        dfb.launch(dfb.LaunchSpec(root, "test", ["--detector_path", det], cpu=True))
    msg = str(e.value)
    assert "\n" not in msg
    assert "imports 'no_such_module_of_a_fork' (in training/detectors/late.py:2), which" in msg, msg
    assert f"declip dfb setup --bench_root {root}" in msg


def test_the_dataset_whitelist_of_a_fork_is_one_line():
    err = bootstrap.host_error(ValueError("Dataset demo-telea not found."), {"root": "/x"})
    assert "refused 'demo-telea'" in str(err) and "--name UADFV" in str(err)
    assert bootstrap.host_error(ValueError("something else"), {"root": "/x"}) is None


def test_test_without_cpu_on_a_machine_without_cuda_is_refused_up_front(checkout, tmp_path, capsys):
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from declip_plugin import cli

    det = _yaml(tmp_path / "det.yaml", TINY)
    rc = cli.main(["dfb", "test", "--bench_root", checkout, "--python", sys.executable, "--", "--detector_path", det])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: DeepfakeBench's training/test.py imports its dataset package, which needs CUDA")
    assert "pass --cpu" in err and "Traceback" not in err


def test_deepfakebench_train_without_cuda_is_refused_before_the_child(tmp_path_factory, capsys, monkeypatch):
    """On a machine without CUDA, `declip dfb train` stops before DeepfakeBench's train.py starts."""
    import sys

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    root = checkout_root(tmp_path_factory)
    started = []
    monkeypatch.setattr(launcher, "_run_child", lambda *a, **k: started.append(a) or 0)
    code, _, err = run_cli(["dfb", "train", "--bench-root", root, "--python", sys.executable, "--",
                            "--detector_path", "training/config/detector/meso4.yaml"], capsys)
    assert code == 2 and not started
    assert_one_line(err, "needs CUDA", sys.executable)


@pytest.mark.parametrize("mode", ["test", "train"])
def test_the_fork_deepfakesdetection_has_every_wrapped_function(tmp_path_factory, mode):
    from dfb_support import fork_root

    root = fork_root(tmp_path_factory)
    info = dfb.validate_checkout(root, mode=mode)  # its signatures are DeepfakeBench's: it runs
    assert {"clip_enhanced", "clip_stan", "timesformer"} <= set(info["host_detectors"])
    assert launcher.names_in_checkout(info["host_detectors"]) == {
        "clip_enhanced": "clip_enhanced_plugin", "clip_stan": "clip_stan_plugin", "timesformer": "timesformer_effb0"}


def test_cpu_training_is_refused(checkout):
    from declip_plugin.integrations import LaunchSpec, launch  # the Python API docs/deepfakebench.md names

    with pytest.raises(DeclipError, match="torch.cuda.set_device"):
        launch(LaunchSpec(checkout, "train", [], cpu=True))
    with pytest.raises(DeclipError, match="mode must be"):
        launch(LaunchSpec(checkout, "predict", []))
    with pytest.raises(DeclipError, match="--export writes the exports into the --data folder"):
        launch(LaunchSpec(checkout, "test", [], export=True))


def test_register_into_both_registry_kinds():
    reg = bootstrap.check_registry_interface

    class Reg:
        def __init__(self):
            self.data = {}

        def register_module(self, module_name=None):
            def _r(cls):
                self.data[module_name] = cls
                return cls
            return _r

        def __getitem__(self, k):
            return self.data[k]

    class A:
        pass

    r = Reg()
    assert reg(r) == "register_module"
    assert bootstrap.register_into(r, {"a": (A, "p")}) == ["a"] and r["a"] is A
    d = {}
    assert bootstrap.register_into(d, {"a": (A, "p")}) == ["a"] and d["a"] is A
    with pytest.raises(patches.BootstrapError, match="already in"):
        bootstrap.register_into({"a": object}, {"a": (A, "p")})
    with pytest.raises(patches.BootstrapError, match="without the interface"):
        bootstrap.register_into(object(), {"a": (A, "p")})


def test_cpu_stub_classes_raise_with_the_reason():
    names, reason = facts.CPU_UNIMPORTABLE["dataset.fwa_blend"]
    mod = bootstrap.stub_module("dataset.fwa_blend", names, reason)
    with pytest.raises(RuntimeError, match="shape_predictor_81_face_landmarks.dat"):
        mod.FWABlendDataset({})


def test_relative_paths_from_the_callers_folder_become_absolute(tmp_path, monkeypatch, checkout):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "det.yaml").write_text("x: 1\n")
    argv = launcher._absolutize_paths(["--detector_path", "det.yaml", "--weights_path=missing.pth",
                                  "--test_dataset", "a"], checkout)
    assert argv == ["--detector_path", str(tmp_path / "det.yaml"), "--weights_path=missing.pth", "--test_dataset", "a"]


def test_config_problems():
    problems = dfb.dfb_config_problems({"model_name": "declip", "metric_scoring": "iou"}, "train")
    assert "missing key 'data_aug.flip_prob'" in problems
    assert "missing key 'frame_num.test'" in problems
    assert any("metric_scoring is 'iou'" in p for p in problems)
    assert not any("metric_scoring" in p for p in dfb.dfb_config_problems({"metric_scoring": "iou"}, "test"))


# ---------------------------------------------------------------------------------------------
# the wraps, on test.py's functions as DeepfakeBench writes them
# ---------------------------------------------------------------------------------------------
class _MaskModel:
    """Predicts the GT mask of the batch (as logits), so IoU is 100 on manipulated images."""

    def __call__(self, data_dict, inference=False):
        import torch

        gt = data_dict["mask"][..., 0][:, None].float()
        logits = torch.nn.functional.interpolate(gt * 20 - 10, size=(256, 256), mode="nearest")
        return {"prob": torch.full((gt.shape[0],), 0.5), "mask": logits}


def _host_functions():
    """test.py's three functions, as DeepfakeBench writes them (module globals call each other)."""
    g = {}
    exec(textwrap.dedent('''
        def inference(model, data_dict):
            return model(data_dict, inference=True)

        def test_one_dataset(model, data_loader):
            return [inference(model, d)["prob"] for d in data_loader]

        def test_epoch(model, test_data_loaders):
            return {k: {"auc": 0.5, "acc": 0.5} if test_one_dataset(model, v) else {} for k, v in test_data_loaders.items()}
    '''), g)
    return g


@pytest.mark.parametrize("with_mask", [True, False])
def test_test_py_wrapping(tmp_path, with_mask):
    import torch

    from declip_plugin.metrics.localization import LocalizationMetrics

    state = patches.HostState({"mode": "test", "root": "/r", "argv": ["--x"], "script": "test.py", "localization": True,
                               "results_dir": str(tmp_path)})
    state.config = {"model_name": "declip", "with_mask": with_mask}
    g = _host_functions()
    patches.patch_test_script(g, state, patches.LocalizationReporter(LocalizationMetrics))
    mask = torch.zeros(2, 32, 32, 1)
    mask[1, 4:20, 4:20] = 1
    batch = {"image": None, "label": torch.tensor([0, 1]), "mask": mask}
    metrics = g["test_epoch"](_MaskModel(), {"a": [batch, batch], "b": [batch]})
    assert metrics == {"a": {"auc": 0.5, "acc": 0.5}, "b": {"auc": 0.5, "acc": 0.5}}
    (run,) = os.listdir(tmp_path)
    assert run == f"declip_{state.time}"
    for ds, n in (("a", 2), ("b", 1)):
        folder = tmp_path / run / "test" / ds
        with open(folder / facts.METRICS_FILE, "rb") as f:
            assert pickle.load(f) == {"auc": 0.5, "acc": 0.5}
        if with_mask:
            loc = _read(folder / run_folder.LOCALIZATION)["metrics"]
            assert loc["iou"] == pytest.approx(100.0) and loc["n_manipulated"] == n and loc["empty_gt_fp_rate"] == 0
        else:
            assert not (folder / run_folder.LOCALIZATION).exists()


# ---------------------------------------------------------------------------------------------
# export
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from declip_plugin.data.demo import make_demo_data

    root = tmp_path_factory.mktemp("demo_data")
    make_demo_data(str(root / "demo"), n_train=2, n_val=1, n_test=2, size=64)
    return str(root)


def dfb_collect(summary_json, dataset, mode, label_dict, bench_root):
    """What DeepfakeBench's collect_img_and_label_for_one_dataset + load_rgb/load_mask read."""
    info = _read(summary_json)[dataset]
    out = []
    for label in info:
        for video, v in info[label][mode].items():
            frames = sorted(v["frames"], key=lambda x: int(x.split("/")[-1].split(".")[0]))
            for fp in frames:
                assert fp[0] == "."  # else the loader prefixes f'./{rgb_dir}\\'
                mask = fp.replace("frames", "masks")
                out.append((os.path.join(bench_root, fp), label_dict[v["label"]],
                            os.path.join(bench_root, mask), fp.split("/")[-2]))
    return out


def test_export_writes_what_deepfakebenchs_loader_reads(demo_root, checkout, tmp_path):
    import cv2

    from declip_plugin.data import build_dataset
    from declip_plugin.data.images import read_mask

    out = tmp_path / "export"
    s = export_dfb("demo-telea", str(out), {"data_root": demo_root, "bench_root": checkout, "lmdb": False})
    assert s["label_dict"] == {"demo-telea_real": 0, "demo-telea_fake": 1} == label_dict_for("demo-telea")
    assert s["counts"]["test"] == {"real": 2, "fake": 2, "masks": 2, "total": 4}
    assert s["counts"]["val"]["total"] == 2 and s["counts"]["train"]["total"] == 4
    assert s["json"] == str(out / "dataset_json" / "demo-telea.json")
    doc = _read(s["json"])
    assert set(doc) == {"demo-telea"}
    assert set(doc["demo-telea"]) == {"demo-telea_real", "demo-telea_fake"}
    for label in doc["demo-telea"].values():
        assert set(label) == {"train", "val", "test"}
    items = dfb_collect(s["json"], "demo-telea", "test", s["label_dict"], checkout)
    assert sorted(i[1] for i in items) == [0, 0, 1, 1]
    videos = [i[3] for i in items]
    assert len(set(videos)) == len(videos)  # DeepfakeBench's video AUC groups by this folder name
    src = build_dataset("demo-telea", "test", {"data_root": demo_root, "include_real": True})
    sources = {os.path.basename(p) for p, _, _ in src.samples}
    for frame, label, mask, video in items:
        assert os.path.isfile(frame) and cv2.imread(frame) is not None
        assert os.path.basename(os.path.dirname(os.path.dirname(frame))) == "frames"
        if label == 1:
            m = cv2.imread(mask, 0)
            assert set(np.unique(m)) <= {0, 255}
            origin = s["sources"][f"demo-telea_fake/{video}"]
            assert os.path.basename(origin["image"]) in sources
            expected = read_mask(origin["mask"], "inverted")  # Dolos/demo masks are inverted on disk
            assert np.array_equal(m // 255, expected)  # written the DeepfakeBench way: white = manipulated
        else:
            assert not os.path.exists(mask)  # the loader gives zeros for a missing mask
    # the detector YAML runs in DeepfakeBench's test.py and train.py
    import yaml

    with open(s["yaml"], encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    assert dfb.dfb_config_problems(cfg, "test") == [] and dfb.dfb_config_problems(cfg, "train") == []
    assert cfg["label_dict"] == s["label_dict"] and cfg["test_dataset"] == ["demo-telea"]
    assert cfg["with_mask"] is True and cfg["frame_num"] == {"train": 1, "test": 1}
    assert cfg["mean"] == [0.48145466, 0.4578275, 0.40821073] and cfg["metric_scoring"] in facts.METRIC_SCORING
    # demo sets start from declip_demo.yaml: its tower and resolution as they are, so that a checkpoint
    # of `declip train --detector_path declip_demo` loads strictly from the exported YAML
    demo = load_yaml(resolve_config_path("declip_demo"))
    assert (cfg["backbone"], cfg["resolution"]) == (demo["backbone"], demo["resolution"]) == ("declip-tiny-rn112", 112)
    # the launcher's --data points the checkout at it (rgb tree: paths are relative to this checkout)
    over, summaries = launcher.data_overrides(str(out), checkout)
    assert over["lmdb"] is False and over["dataset_json_folder"] == str(out / "dataset_json")
    assert over["label_dict"] == s["label_dict"] and [x["dataset"] for x in read_summaries(str(out))] == ["demo-telea"]


def test_export_without_checkout_needs_the_lmdb(demo_root, tmp_path, monkeypatch, checkout):
    monkeypatch.delenv("DEEPFAKEBENCH_ROOT", raising=False)
    out = tmp_path / "export"
    s = export_dfb("demo-ns", str(out), {"data_root": demo_root, "lmdb": False, "splits": ["test"],
                                         "include_real": False})
    assert s["paths_relative_to"] == os.path.realpath(out)
    doc = _read(s["json"])["demo-ns"]
    assert set(doc) == {"demo-ns_fake"} and doc["demo-ns_fake"]["train"] == {}
    frame = next(iter(doc["demo-ns_fake"]["test"].values()))["frames"][0]
    assert frame.startswith("./rgb/demo-ns/demo-ns_fake/frames/")
    with pytest.raises(DeclipError, match="have no LMDB"):
        launcher.data_overrides(str(out), checkout)


def test_export_lmdb_keys_are_the_json_paths(demo_root, tmp_path, checkout):
    lmdb = pytest.importorskip("lmdb")
    s = export_dfb("demo-blur", str(tmp_path / "e"), {"data_root": demo_root, "bench_root": checkout,
                                                      "splits": ["test"], "lmdb": True})
    env = lmdb.open(s["lmdb"], readonly=True, lock=False)
    with env.begin() as txn:
        for label in _read(s["json"])["demo-blur"].values():
            for v in label["test"].values():
                assert txn.get(v["frames"][0].encode()) is not None
    env.close()


def test_export_errors(demo_root, tmp_path, checkout):
    cfg = {"data_root": demo_root, "bench_root": checkout, "lmdb": False, "splits": ["test"]}
    with pytest.raises(ConfigError, match="frames"):
        export_dfb("demo-telea", str(tmp_path / "a"), {**cfg, "name": "my_frames"})
    export_dfb("demo-telea", str(tmp_path / "a"), cfg)
    with pytest.raises(DataError, match="overwrite"):
        export_dfb("demo-telea", str(tmp_path / "a"), cfg)
    export_dfb("demo-telea", str(tmp_path / "a"), {**cfg, "overwrite": True})
    with pytest.raises(DataError, match="contains 'frames' more than once"):
        export_dfb("demo-telea", str(tmp_path / "frames_here"), cfg)
    with pytest.raises(DataError, match="unknown dataset"):
        export_dfb("demo-nope", str(tmp_path / "b"), cfg)


@pytest.mark.parametrize("name", ["", "UADFV\n", "../up", "a/b"], ids=["empty", "newline", "dotdot", "slash"])
def test_export_refuses_a_name_that_vanishes_or_escapes(demo_root, tmp_path, capsys, name):
    """--name '' is refused, not replaced by the source name; a trailing newline or a path is refused too."""
    from declip_plugin import cli

    out = tmp_path / "exp"
    code = cli.main(["export-dfb", "demo-telea", str(out), "--data_root", demo_root, "--no-lmdb", "--name", name])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"error: DeepfakeBench dataset name (--name) {name!r}: use letters, digits and . _ + -")
    assert list(tmp_path.iterdir()) == []


# `declip export-dfb` into a file, over an export (the `world` of tests/conftest.py): one line, nothing lost
def test_export_into_a_file(world, tmp_path, capsys):
    (tmp_path / "exp").write_text("keep")
    code, _, err = run_cli(["export-dfb", "demo-telea", tmp_path / "exp", "--data_root", world / "data"], capsys)
    assert code == 2
    assert_one_line(err, "is a file")
    assert (tmp_path / "exp").read_text() == "keep"


def test_failed_overwrite_keeps_the_previous_export(world, tmp_path, capsys):
    data = copy_data(world, tmp_path)
    out = tmp_path / "exp"
    assert cli_main(["export-dfb", "demo-telea", str(out), "--data_root", str(data), "--no-lmdb"]) == 0
    before = {p: (out / p).read_bytes() for p in files_under(out) if (out / p).is_file()}
    bad = sorted((data / "demo" / "celebahq" / "fake" / "telea" / "images" / "test").iterdir())[0]
    truncated = bad.read_bytes()[:40]
    bad.unlink()  # a new file: the export hard-linked the old one
    bad.write_bytes(truncated)
    code, _, err = run_cli(["export-dfb", "demo-telea", out, "--data_root", data, "--no-lmdb", "--overwrite"], capsys)
    assert code == 2
    assert_one_line(err, bad.name)
    after = {p: (out / p).read_bytes() for p in files_under(out) if (out / p).is_file()}
    assert after == before  # every frame the old JSON lists is still there, and nothing new


def test_failed_first_export_leaves_nothing(world, tmp_path, capsys):
    data = copy_data(world, tmp_path)
    bad = sorted((data / "demo" / "celebahq" / "fake" / "telea" / "masks" / "valid").iterdir())[0]
    bad.write_bytes(b"not a png")
    out = tmp_path / "exp"
    code, _, err = run_cli(["export-dfb", "demo-telea", out, "--data_root", data, "--no-lmdb"], capsys)
    assert code == 2
    assert_one_line(err, bad.name)
    assert files_under(out) == []


def test_existing_export_is_not_replaced_without_overwrite(world, tmp_path, capsys):
    out = tmp_path / "exp"
    assert cli_main(["export-dfb", "demo-telea", str(out), "--data_root", str(world / "data"), "--no-lmdb"]) == 0
    code, _, err = run_cli(["export-dfb", "demo-telea", out, "--data_root", world / "data", "--no-lmdb"], capsys)
    assert code == 2
    assert_one_line(err, "--overwrite")


# ---------------------------------------------------------------------------------------------
# `declip dfb --export` (what scripts/train.sh and test.sh pass): which datasets get exported
# ---------------------------------------------------------------------------------------------
def test_our_datasets_are_exported_for_the_checkout_or_named_in_one_line(demo_root, checkout, tmp_path):
    exports = str(tmp_path / "exp")
    argv = ["--detector_path", "declip_demo", "--test_dataset", "demo-telea"]

    def needed(**kw):
        spec = dfb.LaunchSpec(checkout, "test", argv, data_dir=exports, data_root=demo_root, **kw)
        return launcher._datasets_to_export(spec, argv, checkout, {}, launcher._bundled_detector(argv, checkout))

    with pytest.raises(DeclipError, match=r"demo-telea are not in DeepfakeBench's layout \(adapter dolos\) and not exported "
                                          r"for the checkout: "
                                          r"run `declip export-dfb demo-telea .*exp --data_root .* --bench_root "):
        needed()
    assert needed(export=True) == ["demo-telea"]
    export_dfb("demo-telea", exports, {"data_root": demo_root, "bench_root": checkout})
    assert needed(export=True) == [] and needed() == []  # exported once, found again
    meso4 = ["--detector_path", str(dfb_meso4_yaml(checkout)), "--test_dataset", "demo-telea"]
    spec = dfb.LaunchSpec(checkout, "test", meso4, data_dir=exports, export=True)
    assert launcher._datasets_to_export(spec, meso4, checkout, {}, None) == []  # its YAML's train_dataset: not read
    argv += ["UADFV"]  # the checkout's own set cannot be read beside the exports (one dataset_json_folder)
    with pytest.raises(DeclipError, match="UADFV are not among the exports"):
        needed(export=True)
    argv[3:] = ["demo-ns"]
    spec = dfb.LaunchSpec(checkout, "test", argv, data_dir=exports, data_root=str(tmp_path / "none"), export=True)
    with pytest.raises(DeclipError, match=r"dataset demo-ns \(adapter dolos\) is not where its config expects it: missing"):
        launcher._datasets_to_export(spec, argv, checkout, {}, "declip_demo")
    assert launcher._bundled_detector(["--detector_path", "declip_demo"], checkout) == "declip_demo"
    assert launcher._bundled_detector(["--detector_path", str(resolve_config_path("declip_demo"))], checkout) is None


def dfb_meso4_yaml(checkout):
    """A detector YAML of the checkout whose own train_dataset names a set not exported (as meso4.yaml's)."""
    path = os.path.join(checkout, "training", "config", "detector", "meso4.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    _yaml(path, {"model_name": "meso4", "train_dataset": ["FF-NT"], "test_dataset": ["FF-NT"]})
    return path


def test_a_bundled_detector_name_becomes_a_yaml_the_checkout_reads(tmp_path):
    argv = launcher._write_bundled_detector(["--detector_path", "clip_linear_demo", "--test_dataset", "x"],
                                            "clip_linear_demo", str(tmp_path))
    assert argv[1] == str(tmp_path / "clip_linear_demo.yaml") and argv[2:] == ["--test_dataset", "x"]
    cfg = load_yaml(argv[1])
    assert not dfb.dfb_config_problems(cfg, "train") and cfg["metric_scoring"] in facts.METRIC_SCORING
    assert cfg["backbone"] == load_yaml(resolve_config_path("clip_linear_demo"))["backbone"]


# ---------------------------------------------------------------------------------------------
# our detector YAMLs against the keys DeepfakeBench reads
# ---------------------------------------------------------------------------------------------
CONFIG_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", "detector")


@pytest.mark.parametrize("name", sorted(n for n in os.listdir(CONFIG_DIR) if n.endswith(".yaml")))
@pytest.mark.parametrize("mode", ["test", "train"])
def test_detector_yaml_has_the_keys_deepfakebench_reads(name, mode):
    import yaml

    with open(os.path.join(CONFIG_DIR, name), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    problems = dfb.dfb_config_problems(cfg, mode)
    assert not problems, f"configs/detector/{name} in DeepfakeBench's {mode}.py: {'; '.join(problems)}"


# ---------------------------------------------------------------------------------------------
# declip dfb setup (environment.py): what a checkout imports, the recorded interpreter
# ---------------------------------------------------------------------------------------------
def test_the_forks_extra_imports_are_found_by_following_its_scripts(tmp_path_factory, real_checkout):
    from declip_plugin.integrations.deepfakebench.environment import IMPORT_PACKAGES, external_imports
    from dfb_support import fork_root

    base, fork = external_imports(real_checkout), external_imports(fork_root(tmp_path_factory))
    extra = {n: f for n, f in fork.items() if n not in base}
    assert set(extra) == {"dataclasses", "pandas", "peft", "seaborn", "tensorboardX"}
    assert extra["seaborn"] == extra["pandas"] == "training/test.py"
    assert extra["tensorboardX"] == "training/detectors/rfm_detector.py"
    assert extra["peft"] in ("training/detectors/clip_stan.py", "training/detectors/clip_enhanced.py")
    assert {"torch", "cv2", "albumentations", "imgaug", "dlib", "lmdb", "transformers"} <= set(base)
    assert "slowfast" not in base and "training" not in base  # the checkout's own modules
    assert {"pandas", "peft", "seaborn", "tensorboardX"} <= set(IMPORT_PACKAGES)  # dataclasses: stdlib


def test_the_interpreter_setup_recorded_is_the_one_dfb_uses(tmp_path, monkeypatch, checkout):
    from declip_plugin.integrations.deepfakebench.environment import record_python

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.delenv("DEEPFAKEBENCH_PYTHON", raising=False)
    exe = tmp_path / "venv" / "bin" / "python"
    exe.parent.mkdir(parents=True)
    exe.write_text("")
    assert launcher.choose_python(None, checkout) != str(exe)
    record_python(checkout, str(exe))
    assert launcher.choose_python(None, checkout) == str(exe)
    assert launcher.choose_python("/other/python", checkout) == "/other/python"
    monkeypatch.setenv("DEEPFAKEBENCH_PYTHON", "/env/python")
    assert launcher.choose_python(None, checkout) == "/env/python"


def test_setup_refuses_a_venv_folder_that_is_not_one(tmp_path, checkout):
    from declip_plugin.integrations.deepfakebench.environment import setup_environment

    (tmp_path / "notavenv").mkdir()
    with pytest.raises(ConfigError, match="is not a virtual environment"):
        setup_environment(checkout, str(tmp_path / "notavenv"))


def test_imports_in_functions_and_try_blocks_are_not_required(tmp_path):
    from declip_plugin.integrations.deepfakebench.environment import external_imports

    root = make_checkout(tmp_path / "c")
    with open(os.path.join(root, "training", "test.py"), "a", encoding="utf-8") as f:
        f.write("\ntry:\n    import optional_thing\nexcept ImportError:\n    optional_thing = None\n"
                "def later():\n    import only_when_called\nif True:\n    import needed_at_import\n")
    found = external_imports(root)
    assert "needed_at_import" in found and "yaml" in found
    assert "optional_thing" not in found and "only_when_called" not in found
