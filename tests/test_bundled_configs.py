"""Every bundled detector config in configs/detector loads through the CLI's own path (`declip
train --detector_path <bundled name>`) and trains one step on demo data: images, or demo videos
for the clip detectors (video_mode). A bundled config that does not load or run fails here.

Configs of full-size towers (pretrained: openai, ViT-L/14, EfficientNet-B0) keep every key of their
file; only the tower is swapped for a bundled tiny one of the same family on the command line
(`--opt`), so that the test runs offline on a CPU in seconds. A new full-size config whose tower has
no tiny twin below fails (it would need a download): add its rule to TINY_TOWERS.
"""
import glob
import os

import pytest
import yaml

from declip_plugin.cli import main as cli_main
from declip_plugin.config import bundled_names, configs_dir, normalise
from declip_plugin.data.demo import make_demo_data
from declip_plugin.data.demo_video import make_demo_videos

NAMES = bundled_names("detector")
TINY_VIT = "declip-tiny-vit-96"


def _vit_tiny(cfg):
    out = {"backbone": TINY_VIT, "pretrained": "none", "resolution": 96}
    if cfg.get("feature_layer"):
        out["feature_layer"] = "layer1"  # the tiny ViT has 2 blocks
    if cfg.get("depth"):
        out["depth"] = 2
    return out


def tiny_tower(cfg):
    """The --opt overrides that swap a full-size tower for a bundled tiny one (none for demo configs)."""
    backbone = str(cfg.get("backbone") or "")
    if cfg.get("model_name") == "timesformer_effb0" and cfg.get("encoder") != "test_efficientnet":
        return {"encoder": "test_efficientnet", "resolution": 96, "heads": 4}
    if backbone.startswith("declip-tiny") or backbone == "xceptionnet" or not backbone:
        return {}
    if "," in backbone:  # the ViT + RN50 fusion
        return {"backbone": "declip-tiny-vit,declip-tiny-rn", "pretrained": "none", "feature_layer": "layer1"}
    if "ViT" in backbone:
        return _vit_tiny(cfg)
    return {}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundled")
    make_demo_data(root / "demo", seed=1, size=64, n_train=2, n_val=1, n_test=1)
    make_demo_videos(root / "demo_video", seed=1, size=32, n_frames=8, n_train=1, n_val=1, n_test=1)
    return root


def test_every_bundled_config_is_covered():
    on_disk = sorted(os.path.splitext(os.path.basename(p))[0]
                     for p in glob.glob(os.path.join(str(configs_dir()), "detector", "*.yaml")))
    assert NAMES == on_disk and len(NAMES) >= 15


@pytest.mark.parametrize("name", NAMES)
def test_bundled_config_trains_one_step(name, data_root, tmp_path, capsys):
    with open(os.path.join(str(configs_dir()), "detector", f"{name}.yaml"), encoding="utf-8") as f:
        cfg = yaml.safe_load(f)
    video = bool(cfg.get("video_mode"))
    dataset = "demo-video" if video else "demo-telea"
    opts = {"nEpochs": 1, "workers": 0, "tensorboard_masks": 0, "train_batchSize": 2, "test_batchSize": 2,
            "log_every": 1, "precision": "fp32", "val_dataset": None, **tiny_tower(cfg)}
    if not video:
        opts["max_samples"] = 2  # one step of 2 images; each video split has 2 clips (1 video per label)
    argv = ["train", "--detector_path", name, "--data_root", str(data_root), "--device", "cpu",
            "--log_dir", str(tmp_path / "logs"), "--train_dataset", dataset, "--test_dataset", dataset]
    for k, v in opts.items():
        argv += ["--opt", f"{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"]
    capsys.readouterr()
    code = cli_main(argv)
    err = capsys.readouterr().err
    assert code == 0, err
    (run_dir,) = glob.glob(str(tmp_path / "logs" / "*"))
    with open(os.path.join(run_dir, "config.yaml"), encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    for key, value in normalise(cfg).items():  # the bundled file's own keys ran (as loaded: lists are lists),
        if key in cfg and key not in opts and key not in ("train_dataset", "test_dataset", "val_dataset", "log_dir"):
            assert saved[key] == value, key  # except the tower swapped above
    assert os.path.isfile(os.path.join(run_dir, "ckpt_best.pth"))
    assert os.path.isfile(os.path.join(run_dir, "test", dataset, "metrics.json"))
