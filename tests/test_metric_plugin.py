"""A metric defined only here, installed through a fake entry point, describes itself (lower is better,
0-1, detection family, a protocol grid and a robustness curve): `declip test` logs it and writes it to
metrics.json, the leaderboard's default table and the report's leaderboard show its column with the best
mark on the LOWEST value, `declip protocol` draws its grid and `declip robustness` its curve."""
import csv
import importlib.metadata
import json
import logging
import math
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
from declip_plugin.metrics.base import MetricInfo


class BrierScore:
    """Mean squared error of the fake probability against the label: lower is better."""

    keys = ("brier",)
    describe = (MetricInfo("brier", "Brier score", higher_is_better=False, family="detection",
                           tables=("default", "detection"), grid=True, curve=True),)

    def __init__(self, config=None):
        self.sq, self.n = 0.0, 0

    def update_batch(self, data_dict, pred_dict):
        p, y = pred_dict["prob"].detach().float().cpu(), data_dict["label"].float().cpu()
        self.sq += float(((p - y) ** 2).sum())
        self.n += int(y.numel())

    def state(self):
        return {"sq": self.sq, "n": self.n}

    @classmethod
    def from_state(cls, state):
        m = cls()
        m.sq, m.n = state["sq"], state["n"]
        return m

    def merge(self, other):
        self.sq, self.n = self.sq + other.sq, self.n + other.n
        return self

    def compute(self):
        return {"brier": self.sq / self.n if self.n else math.nan}


class ColourDetector(AbstractDetector):
    """Pooled colour statistics -> a linear head: seconds on a CPU."""

    def __init__(self, config):
        super().__init__(config)
        self.backbone = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.AdaptiveAvgPool2d(1),
                                            torch.nn.Flatten())
        self.head = torch.nn.Linear(4, 2)

    def build_backbone(self, config):
        return None

    def build_loss(self, config):
        return None

    def features(self, data_dict):
        return self.backbone(data_dict["image"])

    def classifier(self, features):
        return self.head(features)

    def get_losses(self, data_dict, pred_dict):
        return {"overall": torch.nn.functional.cross_entropy(pred_dict["cls"], data_dict["label"])}

    def get_train_metrics(self, data_dict, pred_dict):
        return {}

    def forward(self, data_dict, inference=False):
        cls = self.classifier(self.features(data_dict))
        return {"cls": cls, "prob": torch.softmax(cls, 1)[:, 1], "feat": cls}


class _Dist(importlib.metadata.Distribution):
    def read_text(self, filename):
        if filename == "METADATA":
            return "Metadata-Version: 2.1\nName: brier-plugin\nVersion: 0.1\n"
        if filename == "entry_points.txt":
            return "[deepfakebench]\nbrier = brier_plugin\n"
        return None

    def locate_file(self, path):
        return path


@pytest.fixture
def brier_plugin(monkeypatch):
    mod = types.ModuleType("brier_plugin")

    @hookimpl
    def deepfakebench_register_metrics(register):
        register("brier", BrierScore)

    @hookimpl
    def deepfakebench_register_detectors(register):
        register("colour", ColourDetector)

    mod.deepfakebench_register_metrics = deepfakebench_register_metrics
    mod.deepfakebench_register_detectors = deepfakebench_register_detectors
    monkeypatch.setitem(sys.modules, "brier_plugin", mod)
    real = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda **kw: list(real(**kw)) + [_Dist()])
    plugins.reset()
    yield
    plugins.reset()


def _checkpoint(tmp_path, cfg, seed):
    from declip_plugin.detectors import build_detector, save_detector_checkpoint

    torch.manual_seed(seed)
    path = tmp_path / f"colour{seed}.pth"
    save_detector_checkpoint(str(path), build_detector(cfg))
    return path


def _cells(line):
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_a_plugin_metric_reaches_test_metrics_json_leaderboard_and_report(tmp_path, brier_plugin, caplog, capsys):
    make_demo_data(tmp_path / "data" / "demo", seed=5, size=64, n_train=2, n_val=2, n_test=6, methods=("telea",))
    cfg = {"model_name": "colour", "resolution": 64, "test_batchSize": 4, "workers": 0, "include_real": True,
           "test_dataset": ["demo-telea"]}
    det_yaml = tmp_path / "colour.yaml"
    det_yaml.write_text(yaml.safe_dump(cfg))
    brier = {}
    caplog.set_level(logging.INFO)
    for name, seed in (("first", 0), ("second", 1)):
        weights = _checkpoint(tmp_path, cfg, seed)
        assert cli_main(["test", "--detector_path", str(det_yaml), "--weights_path", str(weights), "--device", "cpu",
                         "--data_root", str(tmp_path / "data"), "--log_dir", str(tmp_path / "logs" / name),
                         "--opt", f"name={name}"]) == 0
        folder = next((tmp_path / "logs" / name).iterdir()) / "test" / "demo-telea"
        brier[name] = json.loads((folder / "metrics.json").read_text())["metrics"]["brier"]
        with open(folder / "per_image.csv", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        assert {r["label"] for r in rows} == {"0", "1"}
        expect = sum((float(r["score"]) - int(r["label"])) ** 2 for r in rows) / len(rows)
        assert brier[name] == pytest.approx(expect, abs=1e-6)  # the per-image scores, squared by hand
        # `declip test` logs it as its description says (0-1: four decimals)
        assert re.search(rf"test demo-telea: .*\bbrier={brier[name]:.4f}\b", caplog.text)
    assert brier["first"] != brier["second"]
    low, high = sorted(brier, key=brier.get)

    capsys.readouterr()
    assert cli_main(["leaderboard", str(tmp_path / "logs")]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = _cells(lines[0])
    col = header.index("brier mean")  # the default table shows it: its description names "default"
    rows = {_cells(line)[0]: _cells(line) for line in lines[2:4]}
    assert rows[low][col] == f"**{brier[low]:.3f}**" and rows[high][col] == f"{brier[high]:.3f}"
    assert "(lowest for brier and eer)" in "\n".join(lines)

    from declip_plugin.report import write_report

    html_text = open(write_report([tmp_path / "logs" / "first", tmp_path / "logs" / "second"],
                                  out=str(tmp_path / "report.html")), encoding="utf-8").read()
    table = html_text.split("<h3>image detection</h3>")[1].split("</table>")[0]
    head = re.findall(r"<th>(.*?)</th>", table)
    body = {re.findall(r"<td>(.*?)</td>", r)[0]: re.findall(r"<td>(.*?)</td>", r)
            for r in re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1])}
    i = head.index("brier mean")
    assert body[low][i] == f"<b>{brier[low]:.3f}</b>" and body[high][i] == f"{brier[high]:.3f}"


def test_a_plugin_metric_reaches_a_protocol_grid_and_a_robustness_curve(tmp_path, brier_plugin, capsys):
    """Its description (grid=True, curve=True) is all it takes: the protocol writes grid_brier.csv and its
    grid.json rows (each value the cell's own metrics.json figure), the robustness sweep its rows and plot."""
    make_demo_data(tmp_path / "data" / "demo", seed=6, size=64, n_train=4, n_val=2, n_test=4, methods=("telea", "ns"))
    det_yaml = tmp_path / "colour.yaml"
    det_yaml.write_text(yaml.safe_dump({"model_name": "colour", "resolution": 64, "train_batchSize": 4,
                                        "test_batchSize": 4, "workers": 0, "include_real": True, "nEpochs": 1}))
    common = ["--data_root", str(tmp_path / "data"), "--device", "cpu"]
    out = tmp_path / "proto"
    assert cli_main(["protocol", "--method", str(det_yaml), "--train", "demo-telea", "--test", "demo-telea", "demo-ns",
                     "--executor", "debug", "--out", str(out), "--no-report", *common]) == 0
    (marker,) = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    measured = {t: m["brier"] for t, m in marker["results"].items()}
    assert set(measured) == {"demo-telea", "demo-ns"} and all(0 <= v <= 1 for v in measured.values())
    with open(out / "grid_brier.csv", encoding="utf-8") as f:
        (row,) = list(csv.DictReader(f))
    assert {t: float(row[t]) for t in measured} == pytest.approx(measured, rel=1e-5)
    (cell,) = json.loads((out / "grid.json").read_text())["metrics"]["brier"]
    assert cell["values"] == pytest.approx(measured) and cell["id_mean"] == pytest.approx(measured["demo-telea"])

    weights = os.path.join(marker["run_dir"], "ckpt_best.pth")
    assert cli_main(["robustness", "--detector_path", str(det_yaml), "--weights_path", weights, "--kind", "jpeg",
                     "--levels", "30", "--test_dataset", "demo-telea", "--out", str(tmp_path / "rob"), *common]) == 0
    with open(tmp_path / "rob" / "robustness_jpeg.csv", encoding="utf-8") as f:
        curve = {r["level"]: float(r["value"]) for r in csv.DictReader(f) if r["metric"] == "brier"}
    assert set(curve) == {"0", "30"}
    assert curve["0"] == pytest.approx(measured["demo-telea"], rel=1e-5)  # the clean level: the same weights, data
    assert (tmp_path / "rob" / "robustness_jpeg_brier.png").read_bytes()[:4] == b"\x89PNG"


class UndescribedScore(BrierScore):
    """The same metric without its description."""

    keys = ("brier_plain", "n_plain")
    describe = ()

    def compute(self):
        return {"brier_plain": super().compute()["brier"], "n_plain": self.n}


def test_a_plugin_metric_without_its_description_gets_one_warning_naming_it(monkeypatch, caplog):
    """The defaults (higher is better, 0-1, no family) are taken, and its author is told once per process
    which metric of which plugin lacks what (counts such as n_plain need none)."""
    from declip_plugin.metrics import base

    mod = types.ModuleType("plain_plugin")

    @hookimpl
    def deepfakebench_register_metrics(register):
        register("plain", UndescribedScore)

    mod.deepfakebench_register_metrics = deepfakebench_register_metrics
    monkeypatch.setitem(sys.modules, "brier_plugin", mod)
    real = importlib.metadata.distributions
    monkeypatch.setattr(importlib.metadata, "distributions", lambda **kw: list(real(**kw)) + [_Dist()])
    monkeypatch.setattr(base, "_warned", set())
    plugins.reset()
    caplog.set_level(logging.WARNING)
    infos = base.metric_infos()
    base.metric_infos()  # asked again: no second warning
    assert infos["brier_plain"] == MetricInfo("brier_plain")
    lines = [r.getMessage() for r in caplog.records if r.name == "declip_plugin.metrics.base"]
    assert lines == ["metric 'plain' of plugin 'brier' (brier-plugin 0.1) does not describe 'brier_plain': taken as "
                     "higher-is-better on a 0-1 scale, in no leaderboard family; add a MetricInfo per key to its "
                     "`describe` (declip_plugin/metrics/base.py)"]
