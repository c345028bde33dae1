"""The DeepfakeBench integration against a small fake checkout built here.

The fake checkout has DeepfakeBench's shape where the launcher relies on it:
``training/metrics/registry.py`` (a Registry with register_module / __getitem__ and a DETECTOR),
``training/detectors/`` registering ``xception`` by decorator, a ``training/dataset`` package whose
``fwa_blend`` / ``lsda_dataset`` fail at import (as on a CPU machine without dlib's landmark file),
``training/config/{train,test}_config.yaml`` and ``training/{train,test}.py`` with argparse,
``init_seed(config)``, ``inference`` / ``test_one_dataset`` / ``test_epoch`` and a ``main()``. The
scripts write what they saw (argv, cwd, sys.path, registered detectors, config) to a JSON file.
"""
import json
import os
import pickle
import textwrap

import numpy as np
import pytest

from declip_plugin.errors import ConfigError, DataError, DeclipError
from declip_plugin.integrations import deepfakebench as dfb
from declip_plugin.integrations.export import export_dfb, label_dict_for, read_summaries

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

FAKEDATA_PY = '''
import torch

def loaders(names=("fake-ds",), batches=1, size=224):
    """Batches as DeepfakeBench's collate_fn makes them: mask (B, H, W, 1), label 0/1."""
    g = torch.Generator().manual_seed(0)
    out = {}
    for name in names:
        items = []
        for _ in range(batches):
            image = torch.randn(2, 3, size, size, generator=g)
            mask = torch.zeros(2, size, size, 1)
            mask[1, 40:120, 60:150] = 1.0
            items.append({"image": image, "label": torch.tensor([0, 1]), "mask": mask, "landmark": None})
        out[name] = items
    return out
'''

TEST_PY = '''
import argparse
import json
import os
import sys

import yaml

from metrics.registry import DETECTOR
from detectors import DETECTOR as DETECTOR_OF_DETECTORS
import dataset

parser = argparse.ArgumentParser()
parser.add_argument("--detector_path", type=str, default="/nowhere/resnet34.yaml")
parser.add_argument("--test_dataset", nargs="+")
parser.add_argument("--weights_path", type=str, default="/nowhere/ckpt.pth")
args = parser.parse_args()


def init_seed(config):
    config["seeded"] = True


def inference(model, data_dict):
    return model(data_dict, inference=True)


def test_one_dataset(model, data_loader):
    preds, labels = [], []
    for data_dict in data_loader:
        predictions = inference(model, data_dict)
        preds += predictions["prob"].tolist()
        labels += data_dict["label"].tolist()
    return preds, labels


def test_epoch(model, test_data_loaders):
    import numpy as np
    out = {}
    for key in test_data_loaders.keys():
        preds, labels = test_one_dataset(model, test_data_loaders[key])
        out[key] = {"acc": 0.5, "auc": 0.75, "eer": 0.25, "ap": 0.6, "video_auc": 0.75,
                    "pred": np.array(preds), "label": np.array(labels)}
        print(f"dataset: {key}")
        for k, v in out[key].items():
            print(f"{k}: {v}")
    return out


def main():
    with open(args.detector_path) as f:
        config = yaml.safe_load(f)
    with open("./training/config/test_config.yaml") as f:
        config2 = yaml.safe_load(f)
    config.update(config2)
    if args.test_dataset:
        config["test_dataset"] = args.test_dataset
    init_seed(config)
    model = None
    if config.get("run_model"):
        import torch
        model = DETECTOR[config["model_name"]](config)
        model.eval()
        if os.path.isfile(args.weights_path):
            model.load_state_dict(torch.load(args.weights_path, map_location="cpu"), strict=True)
    record = {
        "script": "test", "weights_loaded": os.path.isfile(args.weights_path), "argv": sys.argv[1:], "cwd": os.getcwd(), "sys_path0": sys.path[0],
        "detectors": sorted(DETECTOR.data), "same_registry": DETECTOR is DETECTOR_OF_DETECTORS,
        "declip_class": getattr(DETECTOR.data.get("declip"), "__name__", None),
        "fwa_stub": getattr(sys.modules.get("dataset.fwa_blend"), "__declip_stub__", False),
        "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "name": __name__,
        "config": {k: config.get(k) for k in ("workers", "label_dict", "seeded", "test_dataset", "lmdb",
                                              "dataset_json_folder")},
    }
    with open(os.environ["FAKE_DFB_RECORD"], "w") as f:
        json.dump(record, f)
    if model is not None:
        import fakedata
        test_epoch(model, fakedata.loaders(config["test_dataset"]))
    sys.exit(config.get("exit_code", 0))


if __name__ == "__main__":
    main()
'''

TRAINER_PY = '''
import logging
import os
import pickle


class Trainer(object):
    def __init__(self, config, model, log_dir):
        self.config, self.model, self.log_dir = config, model, log_dir
        self.logger = logging.getLogger("fake-trainer")

    def inference(self, data_dict):
        return self.model(data_dict, inference=True)

    def test_one_dataset(self, data_loader):
        return [self.inference(d)["prob"] for d in data_loader]

    def save_metrics(self, phase, metric_one_dataset, dataset_key):
        folder = os.path.join(self.log_dir, phase, dataset_key)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "metric_dict_best.pickle"), "wb") as f:
            pickle.dump(metric_one_dataset, f)

    def test_epoch(self, epoch, iteration, test_data_loaders, step):
        for key in test_data_loaders.keys():
            self.test_one_dataset(test_data_loaders[key])
            self.save_metrics("test", {"auc": 0.5}, key)
'''

TRAIN_PY = '''
import argparse
import json
import os
import sys

import yaml

from trainer.trainer import Trainer
from detectors import DETECTOR

parser = argparse.ArgumentParser()
parser.add_argument("--detector_path", type=str)
parser.add_argument("--train_dataset", nargs="+")
parser.add_argument("--test_dataset", nargs="+")
args = parser.parse_args()


def init_seed(config):
    pass


def main():
    with open(args.detector_path) as f:
        config = yaml.safe_load(f)
    with open("./training/config/train_config.yaml") as f:
        config2 = yaml.safe_load(f)
    if "label_dict" in config:
        config2["label_dict"] = config["label_dict"]
    config.update(config2)
    if args.test_dataset:
        config["test_dataset"] = args.test_dataset
    init_seed(config)
    with open(os.environ["FAKE_DFB_RECORD"], "w") as f:
        json.dump({"script": "train", "argv": sys.argv[1:], "detectors": sorted(DETECTOR.data)}, f)
    import fakedata
    model = DETECTOR[config["model_name"]](config)
    model.eval()
    trainer = Trainer(config, model, os.path.join(config["log_dir"], config["model_name"] + "_2026-01-01-00-00-00"))
    trainer.test_epoch(0, 0, fakedata.loaders(config["test_dataset"]), 0)


if __name__ == "__main__":
    main()
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
    _write(os.path.join(t, "fakedata.py"), FAKEDATA_PY)
    _write(os.path.join(t, "config", "test_config.yaml"),
           "mode: test\nlmdb: true\ndataset_json_folder: ./preprocessing/dataset_json\nlabel_dict:\n  FF-real: 0\n  FF-DF: 1\n")
    _write(os.path.join(t, "config", "train_config.yaml"),
           "mode: train\nlmdb: true\nlog_dir: ./logs/training/\nlabel_dict:\n  FF-real: 0\n")
    _write(os.path.join(t, "test.py"), TEST_PY)
    _write(os.path.join(t, "train.py"), TRAIN_PY)
    return str(root)


TINY = {"model_name": "declip", "backbone": "declip-tiny-rn", "pretrained": "none", "feature_layer": "layer2",
        "decoder_type": "linear", "fully_supervised": True, "fix_backbone": True, "with_mask": True,
        "resolution": 224, "log_dir": "./logs/declip"}


def _yaml(path, data):
    import yaml

    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    return str(path)


@pytest.fixture
def checkout(tmp_path):
    return make_checkout(tmp_path / "DeepfakeBench")


@pytest.fixture
def record(tmp_path):
    return str(tmp_path / "record.json")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------
# checkout validation (no child process)
# ---------------------------------------------------------------------------------------------
def test_validate_checkout_finds_registry_and_host_detectors(checkout):
    info = dfb.validate_checkout(checkout)
    assert info["root"] == os.path.abspath(checkout)
    assert info["registry_kind"] == "register_module"
    assert info["host_detectors"] == {"xception": "training/detectors/host_detector.py"}


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


def test_name_clash_with_the_checkout_is_an_error(tmp_path):
    root = make_checkout(tmp_path / "c", host_detector="declip")
    with pytest.raises(DeclipError, match="'declip' .* already registered by the checkout"):
        dfb.launch(root, "test", [])


def test_cpu_training_is_refused(checkout):
    with pytest.raises(DeclipError, match="torch.cuda.set_device"):
        dfb.launch(checkout, "train", [], cpu=True)
    with pytest.raises(DeclipError, match="mode must be"):
        dfb.launch(checkout, "predict", [])


def test_register_into_both_registry_kinds():
    reg = dfb.check_registry_interface

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
    assert dfb.register_into(r, {"a": (A, "p")}) == ["a"] and r["a"] is A
    d = {}
    assert dfb.register_into(d, {"a": (A, "p")}) == ["a"] and d["a"] is A
    with pytest.raises(dfb.BootstrapError, match="already in"):
        dfb.register_into({"a": object}, {"a": (A, "p")})
    with pytest.raises(dfb.BootstrapError, match="without the interface"):
        dfb.register_into(object(), {"a": (A, "p")})


def test_cpu_stub_classes_raise_with_the_reason():
    mod = dfb._stub_module("dataset.fwa_blend", ("FWABlendDataset",), dfb.CPU_STUB_REASONS["dataset.fwa_blend"])
    with pytest.raises(RuntimeError, match="shape_predictor_81_face_landmarks.dat"):
        mod.FWABlendDataset({})


def test_relative_paths_from_the_callers_folder_become_absolute(tmp_path, monkeypatch, checkout):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "det.yaml").write_text("x: 1\n")
    argv = dfb._absolutize_paths(["--detector_path", "det.yaml", "--weights_path=missing.pth",
                                  "--test_dataset", "a"], checkout)
    assert argv == ["--detector_path", str(tmp_path / "det.yaml"), "--weights_path=missing.pth", "--test_dataset", "a"]


def test_config_problems():
    problems = dfb.dfb_config_problems({"model_name": "declip", "metric_scoring": "iou"}, "train")
    assert "missing key 'data_aug.flip_prob'" in problems
    assert "missing key 'frame_num.test'" in problems
    assert any("metric_scoring is 'iou'" in p for p in problems)
    assert not any("metric_scoring" in p for p in dfb.dfb_config_problems({"metric_scoring": "iou"}, "test"))


# ---------------------------------------------------------------------------------------------
# the launcher, with the child process
# ---------------------------------------------------------------------------------------------
def test_launch_registers_passes_arguments_and_adds_localization(checkout, record, tmp_path, capfd):
    det = _yaml(tmp_path / "det.yaml", {**TINY, "workers": 8, "exit_code": 7, "run_model": True,
                                        "label_dict": {"mine_real": 0, "FF-DF": 0}})
    from declip_plugin import build_detector
    from declip_plugin.checkpoints import save_detector_checkpoint

    # a checkpoint in our format (declip train's ckpt_best.pth) is converted to the plain state dict
    ckpt = save_detector_checkpoint(str(tmp_path / "our format.pth"), build_detector(dict(TINY)))
    argv = ["--detector_path", det, "--test_dataset", "ds 1", "ds2", f"--weights_path={ckpt}"]
    results = tmp_path / "results"
    rc = dfb.launch(checkout, "test", argv, cpu=True, overrides=["workers=0", "dataset_json_folder=/data/json"],
                    results_dir=str(results), env={"FAKE_DFB_RECORD": record})
    assert rc == 7  # the script's own exit status
    r = _read(record)
    assert r["argv"][:5] == argv[:5] and r["argv"][5].startswith("--weights_path=")
    assert r["argv"][5].endswith("weights_deepfakebench.pth") and r["weights_loaded"]  # strict=True load
    assert r["cwd"] == os.path.realpath(checkout)
    assert os.path.realpath(r["sys_path0"]) == os.path.realpath(os.path.join(checkout, "training"))
    assert r["name"] != "__main__" and r["same_registry"]
    assert r["detectors"] == ["clip_enhanced", "clip_stan", "declip", "timesformer_effb0", "xception"] and r["declip_class"] == "DeCLIPDetector"
    assert r["fwa_stub"] is True and r["cuda_visible"] == ""
    cfg = r["config"]
    assert cfg["workers"] == 0 and cfg["dataset_json_folder"] == "/data/json" and cfg["seeded"]
    # test_config's label_dict wins on conflicts; the detector's new entries are added
    assert cfg["label_dict"] == {"FF-real": 0, "FF-DF": 1, "mine_real": 0}
    assert cfg["test_dataset"] == ["ds 1", "ds2"]
    # localization metrics: printed after the host's own table, written beside its metrics
    out = capfd.readouterr().out
    assert "dataset: ds2\n" in out and "dataset: ds2 (localization, declip_plugin)" in out
    assert out.index("dataset: ds2\n") < out.index("dataset: ds2 (localization")
    (run,) = os.listdir(results)
    assert run.startswith("declip_")
    for ds in ("ds 1", "ds2"):
        folder = results / run / "test" / ds
        loc = _read(folder / dfb.LOCALIZATION_FILE)
        assert loc["dataset"] == ds and loc["metrics"]["n_manipulated"] == 1 and loc["metrics"]["n_real"] == 1
        assert 0 <= loc["metrics"]["iou"] <= 100 and 0 <= loc["metrics"]["pixel_auc"] <= 1
        with open(folder / dfb.DFB_METRICS_FILE, "rb") as f:
            m = pickle.load(f)
        assert m["auc"] == 0.75 and len(m["pred"]) == 2
    from declip_plugin.leaderboard import collect

    entries = collect([str(results)])
    assert {(e.method, e.dataset) for e in entries} == {("declip", "ds 1"), ("declip", "ds2")}


def test_launch_reports_a_registry_without_the_interface(tmp_path, record):
    src = "def make():\n    return object()\n\nDETECTOR = make()\n"
    root = make_checkout(tmp_path / "c", registry_py=src)
    assert dfb.validate_checkout(root)["registry_kind"] == "unknown"
    with pytest.raises(DeclipError, match="DETECTOR is a object without the interface"):
        dfb.launch(root, "test", ["--detector_path", _yaml(tmp_path / "d.yaml", TINY)],
                   env={"FAKE_DFB_RECORD": record})
    assert not os.path.exists(record)  # the script never ran


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

    state = dfb._HostState({"mode": "test", "root": "/r", "argv": ["--x"], "script": "test.py", "localization": True,
                            "results_dir": str(tmp_path)})
    state.config = {"model_name": "declip", "with_mask": with_mask}
    g = _host_functions()
    dfb._patch_test_script(g, state, dfb.LocalizationReporter(LocalizationMetrics))
    mask = torch.zeros(2, 32, 32, 1)
    mask[1, 4:20, 4:20] = 1
    batch = {"image": None, "label": torch.tensor([0, 1]), "mask": mask}
    metrics = g["test_epoch"](_MaskModel(), {"a": [batch, batch], "b": [batch]})
    assert metrics == {"a": {"auc": 0.5, "acc": 0.5}, "b": {"auc": 0.5, "acc": 0.5}}
    (run,) = os.listdir(tmp_path)
    assert run == f"declip_{state.time}"
    for ds, n in (("a", 2), ("b", 1)):
        folder = tmp_path / run / "test" / ds
        with open(folder / dfb.DFB_METRICS_FILE, "rb") as f:
            assert pickle.load(f) == {"auc": 0.5, "acc": 0.5}
        if with_mask:
            loc = _read(folder / dfb.LOCALIZATION_FILE)["metrics"]
            assert loc["iou"] == pytest.approx(100.0) and loc["n_manipulated"] == n and loc["real_fp_rate"] == 0
        else:
            assert not (folder / dfb.LOCALIZATION_FILE).exists()


def test_localization_metrics_beside_the_trainers_files(checkout, record, tmp_path):
    logs = tmp_path / "logs"
    det = _yaml(tmp_path / "det.yaml", {**TINY, "log_dir": str(logs)})
    # train_config.yaml's log_dir replaces the detector's, as in DeepfakeBench; an override puts it back
    rc = dfb.launch(checkout, "train", ["--detector_path", det, "--test_dataset", "ds1"],
                    overrides={"log_dir": str(logs)}, env={"FAKE_DFB_RECORD": record})
    assert rc == 0
    assert _read(record)["detectors"] == ["clip_enhanced", "clip_stan", "declip", "timesformer_effb0", "xception"]
    folder = logs / "declip_2026-01-01-00-00-00" / "test" / "ds1"
    assert (folder / "metric_dict_best.pickle").is_file()
    loc = _read(folder / dfb.LOCALIZATION_FILE)
    assert loc["metrics"]["n_manipulated"] == 1 and loc["host"].startswith("DeepfakeBench Trainer")


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
    from declip_plugin.data.io import read_mask

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
    assert cfg["resolution"] == 224 and cfg["with_mask"] is True and cfg["frame_num"] == {"train": 1, "test": 1}
    assert cfg["mean"] == [0.48145466, 0.4578275, 0.40821073] and cfg["metric_scoring"] in dfb.DFB_METRIC_SCORING
    assert cfg["backbone"] == "declip-tiny-rn"  # demo datasets start from declip_demo.yaml
    # the launcher's --data points the checkout at it (rgb tree: paths are relative to this checkout)
    over, summaries = dfb.data_overrides(str(out), checkout)
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
        dfb.data_overrides(str(out), checkout)


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
