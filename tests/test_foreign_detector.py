"""The engine hosts any detector: one defined only here (image-level, no mask, not DeCLIP),
registered through a fake entry point, trains, tests, predicts, benches and gets a leaderboard row."""
import importlib.metadata
import json
import os
import re
import sys
import types

import pytest
import torch
import yaml

from declip_plugin import plugins
from declip_plugin.cli import main as cli_main
from declip_plugin.data.demo import make_demo_data
from declip_plugin.detectors.base import AbstractDetector
from declip_plugin.hookspecs import hookimpl

PACKAGE = os.path.dirname(plugins.__file__)


class MeanColourDetector(AbstractDetector):
    """Pooled colour statistics -> a linear head. No mask, no frozen tap, no config keys of its own."""

    def __init__(self, config):
        super().__init__(config)
        self.backbone = self.build_backbone(config)
        self.head = torch.nn.Linear(8, 2)
        self.loss_func = self.build_loss(config)

    def build_backbone(self, config):
        return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(),
                                   torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())

    def build_loss(self, config):
        return torch.nn.CrossEntropyLoss()

    def features(self, data_dict):
        return self.backbone(data_dict["image"])

    def classifier(self, features):
        return self.head(features)

    def get_losses(self, data_dict, pred_dict):
        return {"overall": self.loss_func(pred_dict["cls"], data_dict["label"])}

    def get_train_metrics(self, data_dict, pred_dict):
        return {}

    def forward(self, data_dict, inference=False):
        feat = self.features(data_dict)
        cls = self.classifier(feat)
        return {"cls": cls, "prob": torch.softmax(cls, 1)[:, 1], "feat": feat}


class _Dist(importlib.metadata.Distribution):
    def __init__(self, module):
        self._module = module

    def read_text(self, filename):
        if filename == "METADATA":
            return "Metadata-Version: 2.1\nName: mean-colour-plugin\nVersion: 0.1\n"
        if filename == "entry_points.txt":
            return f"[deepfakebench]\nmeancolour = {self._module}\n"
        return None

    def locate_file(self, path):
        return path


@pytest.fixture
def foreign_plugin(monkeypatch):
    mod = types.ModuleType("mean_colour_plugin")

    @hookimpl
    def deepfakebench_register_detectors(register):
        register("mean_colour", MeanColourDetector)

    mod.deepfakebench_register_detectors = deepfakebench_register_detectors
    monkeypatch.setitem(sys.modules, "mean_colour_plugin", mod)
    real = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions",
                        lambda **kw: list(real(**kw)) + [_Dist("mean_colour_plugin")])
    plugins.reset()
    yield
    plugins.reset()


def test_a_foreign_detector_goes_through_every_command(tmp_path, foreign_plugin, capsys):
    make_demo_data(tmp_path / "data" / "demo", seed=3, size=64, n_train=8, n_val=4, n_test=4)
    cfg = {"model_name": "mean_colour", "name": "mean_colour", "train_batchSize": 4, "test_batchSize": 4,
           "workers": 0, "nEpochs": 2, "include_real": True, "train_dataset": ["demo-telea"], "resolution": 64,
           "test_dataset": ["demo-telea", "demo-ns"], "optimizer": {"type": "adam", "adam": {"lr": 0.01}}}
    det_yaml = tmp_path / "mean_colour.yaml"
    det_yaml.write_text(yaml.safe_dump(cfg))
    common = ["--data_root", str(tmp_path / "data"), "--device", "cpu"]

    assert cli_main(["train", "--detector_path", str(det_yaml), "--log_dir", str(tmp_path / "logs"), *common]) == 0
    run = next((tmp_path / "logs").iterdir())
    run_json = json.loads((run / "run.json").read_text())
    assert run_json["model_name"] == "mean_colour"
    assert run_json["parameters"]["trainable"] == run_json["parameters"]["total"] == 8 * 3 * 25 + 8 + 8 * 2 + 2
    metrics = json.loads((run / "test" / "demo-ns" / "metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["auc"] <= 1.0 and "iou" not in metrics  # detection only: it makes no mask
    header = (run / "test" / "demo-ns" / "per_image.csv").read_text().splitlines()[0]
    assert header == "path,label,score"

    assert cli_main(["test", "--detector_path", str(det_yaml), "--weights_path", str(run / "ckpt_best.pth"),
                     "--test_dataset", "demo-blur", "--log_dir", str(tmp_path / "tests"), *common]) == 0
    tested = next((tmp_path / "tests").iterdir())
    assert json.loads((tested / "test" / "demo-blur" / "metrics.json").read_text())["metrics"]["n"] == 8

    image = next((tmp_path / "data" / "demo").rglob("*.png"))
    out = tmp_path / "pred"
    assert cli_main(["predict", str(image), "--weights_path", str(run / "ckpt_best.pth"), "--out", str(out),
                     "--device", "cpu"]) == 0  # the config comes from the checkpoint
    pred = json.loads((out / "predictions.json").read_text())
    assert pred["detector"]["model_name"] == "mean_colour" and 0.0 <= pred["predictions"][0]["prob_fake"] <= 1.0
    assert "mask" not in pred["predictions"][0] and sorted(os.listdir(out)) == ["predictions.csv", "predictions.json"]

    capsys.readouterr()
    assert cli_main(["bench", str(det_yaml), "--device", "cpu", "--batch-size", "2", "--n-images", "2"]) == 0
    table = capsys.readouterr().out
    assert "mean_colour" in table and re.search(r"^train\s+optimized\s", table, re.M)
    assert "no reference configuration" in table and not re.search(r"^(inference|train)\s+reference\s", table, re.M)

    assert cli_main(["leaderboard", str(tmp_path / "logs"), "--format", "csv"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert any(r.startswith("mean_colour,") for r in rows)


def test_engine_metrics_leaderboard_and_bench_do_not_know_declip():
    """Nothing outside detectors/ and backbones/ names DeCLIP's keys or its bundled configs (bench's
    default ones come from DeCLIP's bench_configs)."""
    keys = re.compile(r"feature_layer|decoder_type|fully_supervised|fix_backbone|score_reduction|init_gain|"
                      r"DeCLIPDetector|detectors\.declip|declip_quick|[\"']declip[\"']")
    paths = [os.path.join(PACKAGE, "engine"), os.path.join(PACKAGE, "metrics"),
             os.path.join(PACKAGE, "leaderboard.py"), os.path.join(PACKAGE, "bench"),
             os.path.join(PACKAGE, "checkpoints.py")]
    hits = []
    for p in paths:
        files = [os.path.join(r, f) for r, _, fs in os.walk(p) for f in fs if f.endswith(".py")] if os.path.isdir(p) \
            else [p]
        for f in files:
            for n, line in enumerate(open(f, encoding="utf-8"), 1):
                if keys.search(line):
                    hits.append(f"{os.path.relpath(f, PACKAGE)}:{n}: {line.strip()}")
    assert hits == []
