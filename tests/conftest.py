"""What many test files share: the tiny towers and DeCLIP configs, the `world` of demo data with a tiny
detector (YAML + checkpoints), and the helpers that run a `declip` command in this process and check its
one `error:` line. A module whose data differs on purpose builds its own world with ``make_world``."""
import logging
import shutil

import pytest
import torch
import yaml

from declip_plugin import plugins
from declip_plugin.backbones.clip import register_bundled_configs

register_bundled_configs()  # the tiny CLIP-shaped towers, also for open_clip.create_model in tests

TINY_VIT = "declip-tiny-vit"
TINY_RN = "declip-tiny-rn"
TINY_RN112 = "declip-tiny-rn112"


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


def tiny_rn112_config(**overrides):
    """The tiny ResNet at 112 px with a linear decoder: the quickest DeCLIP to train (protocol, cluster, report)."""
    return tiny_config(**{"backbone": TINY_RN112, "feature_layer": "layer1", "resolution": 112, "mask_size": 64,
                          "decoder_type": "linear", **overrides})


@pytest.fixture
def caplog_info(caplog):
    caplog.set_level(logging.INFO)
    return caplog


# --- a world of demo data and a tiny detector --------------------------------------------------------------
def make_world(root, config, **demo):
    """``root``/data/demo: the procedural demo set (``demo``: make_demo_data's arguments), and ``config`` as
    ``root``/tiny.yaml. Returns ``root``."""
    from declip_plugin.data.demo import make_demo_data

    make_demo_data(root / "data" / "demo", **demo)
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Demo data (4 train images: one batch per epoch), a tiny detector YAML, a checkpoint of it (tiny.pth),
    and a checkpoint without the backbone it needs (decoder_only.pth)."""
    from declip_plugin import build_detector
    from declip_plugin.detectors.base import save_detector_checkpoint

    cfg = tiny_config(feature_layer="layer0", decoder_type="linear", fix_backbone=False, train_batchSize=4,
                      test_batchSize=4, workers=0, nEpochs=1, train_dataset=["demo-telea"], test_dataset=["demo-telea"],
                      tensorboard_masks=0, early_stopping={"enabled": False})
    root = make_world(tmp_path_factory.mktemp("world"), cfg, seed=2, size=64, n_train=4, n_val=2, n_test=2)
    det = build_detector(cfg)
    save_detector_checkpoint(root / "tiny.pth", det)
    # a checkpoint without the (trained, random-init) backbone: it cannot rebuild this config
    state = {k: v for k, v in det.state_dict().items() if k.startswith("decoder.")}
    torch.save(state, root / "decoder_only.pth")
    return root


def data_args(world):
    return ["--data_root", world / "data", "--device", "cpu"]


def copy_data(world, tmp_path):
    """A copy of ``world``'s data to damage."""
    shutil.copytree(world / "data", tmp_path / "data")
    return tmp_path / "data"


# --- running a command and reading its outcome ---------------------------------------------------------------
def run_cli(argv, capsys):
    """`declip argv` in this process, through the CLI's own error handling: (exit status, stdout, stderr)."""
    from declip_plugin.cli import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line(err, *words):
    """``err`` holds one `error:` line, with each of ``words``, and no traceback. Returns the line."""
    lines = [ln for ln in err.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def assert_nothing_under(path):
    assert files_under(path) == [], files_under(path)
